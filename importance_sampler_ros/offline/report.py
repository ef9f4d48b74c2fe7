"""The replay report: report.json and PNG plots next to the sampled bag.

Everything here works on plain records that the pipeline fills while it runs; nothing reads bags.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np

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
    # class among matched boxes), the visible ones among them (without the misses), and the
    # detections matched to a true object.
    detector_errors: int | None = None
    visible_errors: int | None = None
    matched: int | None = None


@dataclass
class RelabelExample:
    """Crops of one track from far to near, for the relabel strip."""

    track_id: int
    old_class: str
    new_class: str
    crops: list[np.ndarray] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)


@dataclass
class ReplayReport:
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
    relative_variance: dict[str, float] = field(default_factory=dict)
    ground_truth: dict[str, Any] = field(default_factory=dict)
    truncated: str = ''
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
        return data

    def summary_lines(self) -> list[str]:
        lines = [
            f'frames in / kept: {self.frames_in} / {self.frames_kept} '
            f'(keep ratio {self.keep_ratio:.3f}, target {self.keep_ratio_target:.3f})',
            f'bytes in / kept: {self.bytes_in / 1e6:.1f} MB / {self.bytes_kept / 1e6:.1f} MB',
            f'relabels: {self.relabel_events} events, {self.relabelled_observations} observations,'
            f' {self.frames_kept_by_relabel} frames kept because of them,'
            f' {self.relabels_for_frames_gone} for frames already gone',
            f'replay: {self.seconds_of_drive:.1f} s of drive in {self.wall_seconds:.1f} s '
            f'({self.real_time_factor:.1f}x real time)',
            'time per stage: ' + ', '.join(
                f'{name} {seconds:.2f} s' for name, seconds in self.stage_seconds.items()),
        ]
        if self.relative_variance:
            lines.append(
                "relative variance R at the run's keep ratio: importance "
                f'{self.relative_variance.get("importance", float("nan")):.3f}, uniform '
                f'{self.relative_variance.get("uniform", float("nan")):.3f}'
            )
        for key, value in self.ground_truth.items():
            if isinstance(value, dict):
                value = ', '.join(
                    f'{name} {v["before"]:.3f}->{v["after"]:.3f} (n={v["n"]})'
                    for name, v in value.items())
            elif isinstance(value, float):
                value = f'{value:.3f}'
            lines.append(f'{key.replace("_", " ")}: {value}')
        if self.truncated:
            lines.append(f'TRUNCATED INPUT: {self.truncated}')
        return lines


def detector_error_rates(frames: Sequence[FrameRecord]) -> dict[str, float]:
    """Detector errors per frame in kept and in dropped frames (ground truth needed): all errors,
    and the visible ones (false positives and wrong classes, which importance can see)."""
    rates = {}
    for name, want_kept in (('kept', True), ('dropped', False)):
        chosen = [f for f in frames if f.kept == want_kept and f.detector_errors is not None]
        for key, values in (('detector_errors', [f.detector_errors for f in chosen]),
                            ('visible_errors', [f.visible_errors for f in chosen])):
            rates[f'{key}_per_frame_{name}'] = float(np.mean(values)) if values else float('nan')
    return rates


def write_report(
    report: ReplayReport,
    frames: Sequence[FrameRecord],
    examples: Sequence[RelabelExample],
    directory: str | Path,
    relative_variance_curve: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]],
) -> Path:
    """Write report.json and the plots into `directory`; returns the json path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    importances = np.array([f.frame_importance for f in frames], np.float64)
    report.plots = {
        'importance_timeline': str(_plot_timeline(frames, directory / 'importance_timeline.png')),
        'importance_histogram': str(
            _plot_histogram(importances, directory / 'importance_histogram.png')),
        'relative_variance': str(_plot_relative_variance(
            importances, report.keep_ratio_target, relative_variance_curve,
            directory / 'relative_variance.png')),
    }
    if examples:
        report.plots['relabel_examples'] = str(
            _plot_relabel_examples(examples, directory / 'relabel_examples.png'))
    path = directory / 'report.json'
    path.write_text(json.dumps(report.to_dict(), indent=2, default=_json_default) + '\n')
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f'not JSON serialisable: {type(value).__name__}')


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Lay out, write as PNG and release a figure; returns the path."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
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


def _plot_histogram(importances: np.ndarray, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(importances, bins=40, color='tab:blue')
    ax.set_xlabel('frame importance g')
    ax.set_ylabel('frames')
    ax.set_title('Importance histogram')
    return save_figure(fig, path)


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
    ax.axvline(keep_ratio, color='0.6', lw=0.8)
    ax.set_xlabel('keep ratio M/N')
    ax.set_ylabel('relative variance R(M)')
    ax.set_title('R(M): higher is better (paper Fig. 4)')
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _plot_relabel_examples(examples: Sequence[RelabelExample], path: Path) -> Path:
    rows = list(examples)[:6]
    columns = max(len(e.crops) for e in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.6 * columns, 1.9 * len(rows)),
                             squeeze=False)
    for row, example in zip(axes, rows, strict=False):
        for ax in row:
            ax.axis('off')
        for ax, crop, caption in zip(row, example.crops, example.captions, strict=False):
            ax.imshow(crop, interpolation='nearest')
            ax.set_title(caption, fontsize=7)
        row[0].text(-0.1, 0.5, f'track {example.track_id}\n{example.old_class} -> '
                    f'{example.new_class}', transform=row[0].transAxes, ha='right',
                    va='center', fontsize=8)
    fig.suptitle('Near-to-far relabels: one track from far (left) to near (right)', fontsize=9)
    return save_figure(fig, path)
