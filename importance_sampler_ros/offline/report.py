"""The replay report: report.json and PNG plots next to the sampled bag.

Everything here works on plain records that the pipeline fills while it runs; nothing reads bags.
"""
from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np

from importance_sampler_ros.files import write_atomically

NS_PER_S = 1e9


@dataclass
class FrameRecord:
    """What the pipeline decided about one frame."""

    stamp_ns: int
    frame_importance: float
    probability: float
    kept: bool
    reason: str
    weight: float
    image_bytes: int
    detections: int
    # With ground truth only: detector errors in this frame (misses + false positives + wrong
    # class among matched boxes), the visible ones among them (without the misses), those on
    # labelled objects (evaluation.errors LABELLED_MIN_HEIGHT_PX), and the detections matched to
    # a true object.
    detector_errors: int | None = None
    visible_errors: int | None = None
    labelled_errors: int | None = None
    matched: int | None = None
    situations: tuple[str, ...] = ()  # the ground truth's situation tags


@dataclass
class RelabelExample:
    """Crops of one track from far to near, for the relabel strip."""

    track_id: int
    old_class: str
    new_class: str
    crops: list[np.ndarray] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)


# One phrase per number of the summary and report.json, keyed by its report.json name. The
# relative-variance names are those of the recorder's stats.json, with the same values.
MEANINGS: dict[str, str] = {
    'frames_in': 'camera frames replayed',
    'frames_kept': 'frames written to the sampled bag',
    'keep_ratio': 'frames_kept / frames_in',
    'keep_ratio_target': "the sampler's rho (recorder_node.keep_ratio)",
    'expected_keep_ratio': 'mean keep probability q over the run (rho less clipping at q = 1)',
    'relative_variance': ("R of this run's keep probabilities: 1 = as good as keeping every "
                          'frame, higher is better'),
    'relative_variance_uniform': ('R of uniform sampling keeping the same expected number of '
                                  'frames (always equals expected_keep_ratio)'),
    'detector_errors_per_frame_kept': 'misses + false positives + wrong classes per kept frame',
    'visible_errors_per_frame_kept': 'false positives + wrong classes per kept frame',
    'detector_errors_per_frame_dropped': 'the same per dropped frame (lower than kept is good)',
    'visible_errors_per_frame_dropped': 'the same per dropped frame (lower than kept is good)',
    'labelled_errors_per_frame_kept': ('errors on labelled objects (box height >= 20 px) per kept '
                                       'frame'),
    'labelled_errors_per_frame_dropped': 'the same per dropped frame (lower than kept is good)',
    'kept_error_enrichment': ('errors per kept frame / errors per frame of the whole run: 1 = a '
                              'random choice, higher = the kept frames hold more errors'),
    'kept_visible_error_enrichment': 'the same for the visible errors',
    'kept_labelled_error_enrichment': ('the same for the errors on labelled objects (box height '
                                       '>= 20 px; smaller ones are not labelled: '
                                       'evaluation/errors.py)'),
    'situation_shares_all_to_kept': ('share of frames carrying each situation tag, all frames -> '
                                     'kept frames (higher kept = the sampler favours it)'),
    'matched_detections': 'detections matched to a true object (IoU)',
    'far_field_threshold_m': 'objects at least this far count as far',
    'far_accuracy_before_relabel': 'class accuracy of far matched detections from the detector',
    'far_accuracy_after_relabel': 'the same after near-to-far relabels',
    'far_errors_corrected_ratio': 'share of far class errors that a relabel corrected',
    'accuracy_by_distance': 'class accuracy before->after relabels per distance bin',
    'model': 'detector that scored the frames (or recorded detections)',
    'stale_frames_skipped': 'frames older than the previous one, skipped as the node would',
    'frames_rejected': 'frames the recorder refused (image data not fitting its size), not '
                       'recorded, as the node would',
    'unmatched_images': 'images without a recorded detection array (not replayed)',
    'unmatched_detection_arrays': 'recorded detection arrays without their image',
}


@dataclass
class ReplayReport:
    """What one replay did; report.json holds these fields plus keep_ratio, real_time_factor.

    Units: bytes, seconds (of drive time or of wall time, as named). `relative_variance`,
    `relative_variance_uniform` and `expected_keep_ratio` are the recorder's stats.json values
    (None before any frame). `truncated` is None in report.json when the input was read to its
    end, else the reason reading stopped early. `warnings`: lines a user should read before
    trusting the numbers (e.g. every importance 0).
    """

    input_bag: str
    output_bag: str
    image_topic: str
    frames_in: int = 0
    frames_kept: int = 0
    bytes_in: int = 0
    bytes_kept: int = 0
    relabel_events: int = 0
    relabelled_observations: int = 0
    frames_kept_by_relabel: int = 0
    relabels_for_frames_gone: int = 0
    keep_ratio_target: float = 0.0
    seconds_of_drive: float = 0.0
    wall_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    relative_variance: float | None = None
    relative_variance_uniform: float | None = None
    expected_keep_ratio: float | None = None
    ground_truth: dict[str, Any] = field(default_factory=dict)
    truncated: str = ''
    warnings: list[str] = field(default_factory=list)
    plots: dict[str, str] = field(default_factory=dict)

    @property
    def keep_ratio(self) -> float:
        return self.frames_kept / self.frames_in if self.frames_in else 0.0

    @property
    def real_time_factor(self) -> float:
        return self.seconds_of_drive / self.wall_seconds if self.wall_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data['keep_ratio'] = self.keep_ratio
        data['real_time_factor'] = self.real_time_factor
        data['truncated'] = self.truncated or None
        data['meanings'] = {key: meaning for key, meaning in MEANINGS.items()
                            if key in data or key in self.ground_truth}
        return data

    def summary_lines(self) -> list[str]:
        lines = [
            f'frames in / kept: {self.frames_in} / {self.frames_kept} '
            f'(keep ratio {self.keep_ratio:.3f} = kept / in; sampler target rho '
            f'{self.keep_ratio_target:.3f})',
            f'bytes in / kept: {self.bytes_in / 1e6:.1f} MB / {self.bytes_kept / 1e6:.1f} MB '
            '(kept: the sampled bag on disk)',
            f'relabels: {self.relabel_events} events (a track seen near changed the class it had '
            f'far), {self.relabelled_observations} far observations named, '
            f'{self.frames_kept_by_relabel} frames force-kept for them, '
            f'{self.relabels_for_frames_gone} named frames already gone from the buffer',
            f'replay: {self.seconds_of_drive:.1f} s of drive in {self.wall_seconds:.1f} s of wall '
            f'time ({self.real_time_factor:.2f}x real time; above 1 keeps up with the car)',
            'wall time per stage: ' + ', '.join(
                f'{name} {seconds:.2f} s' for name, seconds in self.stage_seconds.items()),
        ]
        if self.relative_variance is not None:
            lines.append(self._relative_variance_line())
        for key, value in self.ground_truth.items():
            if isinstance(value, dict):
                value = ', '.join(
                    f'{name} {v["all"]:.3f}->{v["kept"]:.3f}' if 'kept' in v else
                    f'{name} {v["before"]:.3f}->{v["after"]:.3f} (n={v["n"]})'
                    for name, v in value.items())
            elif isinstance(value, float):
                value = f'{value:.3f}'
            meaning = MEANINGS.get(key)
            lines.append(f'{key.replace("_", " ")}: {value}' + (f'  [{meaning}]' if meaning
                                                                 else ''))
        if self.truncated:
            lines.append(f'PARTIAL INPUT (read what could be read): {self.truncated}')
        lines.extend(f'WARNING: {warning}' for warning in self.warnings)
        return lines

    def _relative_variance_line(self) -> str:
        r, uniform = self.relative_variance, self.relative_variance_uniform
        line = (f'relative variance R (higher is better; 1 = as good as keeping every frame): '
                f'importance sampling {r:.3f}, uniform sampling {uniform:.3f} at the same '
                f'expected keep ratio {self.expected_keep_ratio:.3f}')
        if uniform:
            gain = r / uniform
            verdict = ('no better than uniform' if abs(gain - 1.0) < 0.05 else
                       'better than uniform' if gain > 1.0 else 'worse than uniform')
            line += f' ({gain:.2f}x: {verdict})'
        return line


def detector_error_rates(frames: Sequence[FrameRecord]) -> dict[str, float]:
    """Detector errors per frame in kept and in dropped frames (ground truth needed): all errors,
    and the visible ones (false positives and wrong classes, which importance can see)."""
    rates = {}
    known = [f for f in frames if f.detector_errors is not None]
    for name, want_kept in (('kept', True), ('dropped', False)):
        chosen = [f for f in known if f.kept == want_kept]
        for key, values in (('detector_errors', [f.detector_errors for f in chosen]),
                            ('visible_errors', [f.visible_errors for f in chosen]),
                            ('labelled_errors', [f.labelled_errors for f in chosen])):
            rates[f'{key}_per_frame_{name}'] = float(np.mean(values)) if values else float('nan')
    for key, attribute in (('kept_error_enrichment', 'detector_errors'),
                           ('kept_visible_error_enrichment', 'visible_errors'),
                           ('kept_labelled_error_enrichment', 'labelled_errors')):
        overall = np.mean([getattr(f, attribute) for f in known]) if known else 0.0
        kept = [getattr(f, attribute) for f in known if f.kept]
        rates[key] = float(np.mean(kept) / overall) if kept and overall > 0 else float('nan')
    return rates


def situation_shares(frames: Sequence[FrameRecord]) -> dict[str, dict[str, float]]:
    """Per situation tag of the ground truth: the share of all frames and of kept frames that
    carry it (the labellers' view of what the sampler keeps)."""
    kept = [f for f in frames if f.kept]
    tags = sorted({tag for f in frames for tag in f.situations})
    return {tag: {'all': sum(tag in f.situations for f in frames) / max(1, len(frames)),
                  'kept': sum(tag in f.situations for f in kept) / max(1, len(kept))}
            for tag in tags}


def write_report(
    report: ReplayReport,
    frames: Sequence[FrameRecord],
    examples: Sequence[RelabelExample],
    directory: str | Path,
    relative_variance_curve: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]],
) -> Path:
    """Write report.json and the plots into `directory`; returns the json path. Each file is
    written whole or not at all (write_atomically): on a full disk this raises OSError and
    leaves no partial file behind."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    importances = np.array([f.frame_importance for f in frames], np.float64)
    kept = np.array([f.kept for f in frames], bool)
    report.plots = {
        'importance_timeline': str(_plot_timeline(frames, directory / 'importance_timeline.png')),
        'importance_histogram': str(
            _plot_histogram(importances, kept, directory / 'importance_histogram.png')),
        'relative_variance': str(_plot_relative_variance(
            importances, report.keep_ratio_target, relative_variance_curve,
            directory / 'relative_variance.png')),
    }
    if examples:
        report.plots['relabel_examples'] = str(
            _plot_relabel_examples(examples, directory / 'relabel_examples.png'))
    path = directory / 'report.json'
    text = json.dumps(report.to_dict(), indent=2, default=_json_default) + '\n'
    write_atomically(path, text.encode(), sync=False)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f'not JSON serialisable: {type(value).__name__}')


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Lay out, write as PNG (atomically) and release a figure; returns the path."""
    try:
        fig.tight_layout()
        png = io.BytesIO()
        fig.savefig(png, format='png', dpi=110)
    finally:
        plt.close(fig)
    write_atomically(Path(path), png.getvalue(), sync=False)
    return path


def _plot_timeline(frames: Sequence[FrameRecord], path: Path) -> Path:
    seconds = np.array([f.stamp_ns for f in frames], np.float64)
    seconds = (seconds - seconds[0]) / NS_PER_S if len(seconds) else seconds
    importance = np.array([f.frame_importance for f in frames])
    kept = np.array([f.kept for f in frames], bool)
    relabel = np.array([f.reason == 'relabel' for f in frames], bool)
    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.plot(seconds, importance, lw=0.8, color='0.4', label='frame importance g')
    ax.scatter(seconds[kept & ~relabel], importance[kept & ~relabel], s=14, color='tab:blue',
               label='kept (sampled)', zorder=3)
    ax.scatter(seconds[relabel], importance[relabel], s=22, marker='D', color='tab:red',
               label='kept (relabel)', zorder=4)
    ax.set_xlabel('time in drive [s]')
    ax.set_ylabel('g')
    ax.set_title('Frame importance over time, kept frames marked')
    ax.legend(loc='upper right', fontsize=8)
    return save_figure(fig, path)


def _plot_histogram(importances: np.ndarray, kept: np.ndarray, path: Path) -> Path:
    """Stacked histogram: dropped frames below, kept frames on top, on the same bins."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    finite = importances[np.isfinite(importances)]
    bins = np.histogram_bin_edges(finite, bins=40) if finite.size else 40
    ax.hist([importances[~kept], importances[kept]], bins=bins, stacked=True,
            color=['0.7', 'tab:blue'],
            label=[f'dropped ({int((~kept).sum())})', f'kept ({int(kept.sum())})'])
    ax.set_xlabel('frame importance g')
    ax.set_ylabel('frames')
    ax.set_title('Importance histogram: kept frames stacked on dropped')
    ax.legend(fontsize=8)
    if finite.size and not finite.any():
        ax.text(0.5, 0.6, 'every frame has importance 0:\nthe sampler cannot rank them',
                transform=ax.transAxes, ha='center', fontsize=8, color='tab:red')
    return save_figure(fig, path)


# Below this relative gap the two R(M) curves are drawn on top of each other.
CURVES_OVERLAP = 0.05


def curves_overlap(importance: np.ndarray, uniform: np.ndarray) -> bool:
    """True when importance and uniform R(M) differ by less than CURVES_OVERLAP (relative)
    everywhere: importance sampling buys nothing here, the frames are about equally important."""
    importance, uniform = np.asarray(importance), np.asarray(uniform)
    valid = uniform > 0
    return bool(valid.any()) and bool(
        np.all(np.abs(importance[valid] / uniform[valid] - 1.0) < CURVES_OVERLAP))


def _plot_relative_variance(
    importances: np.ndarray,
    keep_ratio: float,
    curve: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]],
    path: Path,
) -> Path:
    ratios = np.unique(np.concatenate([np.geomspace(1e-3, 1.0, 40), [keep_ratio]]))
    values = curve(importances, ratios)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.loglog(ratios, values['importance'], label='importance sampling')
    ax.loglog(ratios, values['uniform'], '--', label='uniform sampling')
    at = int(np.searchsorted(ratios, keep_ratio))
    ax.axvline(keep_ratio, color='0.6', lw=0.8,
               label=f"this run's rho {keep_ratio:.3g}: R {values['importance'][at]:.3f} vs "
                     f"{values['uniform'][at]:.3f}")
    if curves_overlap(values['importance'], values['uniform']):
        ax.text(0.03, 0.97, 'the curves overlap: importance sampling gains nothing\nover '
                'uniform here (frames about equally important)', transform=ax.transAxes,
                va='top', fontsize=7, color='tab:red')
    ax.set_xlabel('keep ratio rho (target M/N)')
    ax.set_ylabel('relative variance R(M)')
    ax.set_title('R(M): higher is better, 1 = keep everything (paper Fig. 4)', fontsize=9)
    ax.legend(fontsize=7, loc='lower right')
    return save_figure(fig, path)


def _plot_relabel_examples(examples: Sequence[RelabelExample], path: Path) -> Path:
    rows = list(examples)[:6]
    columns = max(len(e.crops) for e in rows)
    # at least 5 columns wide: the row labels left of the crops and the title need the room
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.6 * max(columns, 5) + 1.2,
                                                          1.9 * len(rows) + 0.4), squeeze=False)
    for row, example in zip(axes, rows, strict=False):
        for ax in row:
            ax.axis('off')
        for ax, crop, caption in zip(row, example.crops, example.captions, strict=False):
            ax.imshow(crop, interpolation='nearest')
            ax.set_title(caption, fontsize=7)
        row[0].text(-0.1, 0.5, f'track {example.track_id}\n{example.old_class} -> '
                    f'{example.new_class}', transform=row[0].transAxes, ha='right',
                    va='center', fontsize=8)
    fig.suptitle('Near-to-far relabels, one track per row:\nrelabelled far observations '
                 '(earliest left), then the near frame that decided', fontsize=9)
    fig.tight_layout(rect=(0.12, 0.0, 1.0, 1.0))  # room for the row labels left of the crops
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
