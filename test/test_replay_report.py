"""The replay summary and report explain themselves: names shared with stats.json, meanings,
plot paths, warnings when the numbers would look broken, and what the plots show."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from replay_bags import write_drive

from importance_sampler_ros.offline import report as report_module
from importance_sampler_ros.offline.replay import replay_bag
from importance_sampler_ros.sampling.sampler import relative_variance_curve
from importance_sampler_ros.synth.bag import write_drive_bag
from importance_sampler_ros.synth.world import SynthConfig

# the paper's rule (a = 1), whose R beats uniform sampling's; the sharpened default spends R on
# error-rich frames (docs/measurements/frame_scores.md)
OVERRIDES = {'recorder_node': {'keep_ratio': 0.3, 'seed': 4, 'buffer_seconds': 3.0,
                               'warmup_frames': 5, 'sharpness': 1.0}}
SHARED = ('relative_variance', 'relative_variance_uniform', 'expected_keep_ratio')


@pytest.fixture
def figures(monkeypatch):
    """Each figure the report saves, looked at before it is closed: {file name: texts}."""
    seen: dict[str, dict[str, list[str]]] = {}
    original = report_module.save_figure

    def capture(fig, path):
        ax = fig.axes[0]
        legend = ax.get_legend()
        seen[Path(path).name] = {
            'legend': [t.get_text() for t in legend.get_texts()] if legend else [],
            'text': [t.get_text() for t in ax.texts],
        }
        return original(fig, path)

    monkeypatch.setattr(report_module, 'save_figure', capture)
    return seen


def test_report_and_stats_share_names_and_values(tmp_path, figures):
    write_drive(tmp_path / 'drive', 60)
    result = replay_bag(tmp_path / 'drive', tmp_path / 'out', use_recorded_detections=True,
                        overrides=OVERRIDES)
    data = json.loads(result.report_path.read_text())
    stats = json.loads((tmp_path / 'out' / 'stats.json').read_text())
    for key in SHARED:
        assert data[key] == pytest.approx(stats[key], rel=1e-12), key
        assert data['meanings'][key]
    # uniform sampling's R is its keep ratio; the hand-made importances beat it
    assert data['relative_variance_uniform'] == pytest.approx(data['expected_keep_ratio'])
    assert data['relative_variance'] > data['relative_variance_uniform']
    assert data['truncated'] is None and data['warnings'] == []
    summary = '\n'.join(result.report.summary_lines())
    assert 'higher is better' in summary and 'better than uniform' in summary
    histogram = figures['importance_histogram.png']['legend']
    kept = result.report.frames_kept
    assert histogram == [f'dropped ({60 - kept})', f'kept ({kept})']
    (marker,) = [t for t in figures['relative_variance.png']['legend'] if 'this run' in t]
    assert marker.startswith("this run's rho 0.3: R ")
    assert figures['relative_variance.png']['text'] == []  # the curves differ: no overlap note


@pytest.mark.ros
def test_ground_truth_as_recorded_detections_warns_why_few_frames_are_kept(tmp_path):
    write_drive_bag(SynthConfig(width=160, height=96, seconds=3.0, fps=10.0, seed=2),
                    tmp_path / 'synth')
    cli = [sys.executable, '-m', 'importance_sampler_ros.cli', 'replay', str(tmp_path / 'synth'),
           '--out', str(tmp_path / 'out'), '--use-recorded-detections', '--seed', '1',
           '--progress', 'plain']
    done = subprocess.run(cli, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / 'out' / 'report.json').read_text())
    (warning,) = data['warnings']
    assert 'every frame has importance 0' in warning
    assert '/ground_truth/detections are ground truth' in warning
    assert 'without --use-recorded-detections' in warning
    assert f'warning: {warning}' in done.stderr
    assert 'replay: 30/30 frames (100%)' in done.stderr  # the plain progress line, with total
    for name, path in data['plots'].items():
        assert f'plot {name}: {path}' in done.stdout and Path(path).is_file()
    # R is 1 for both (nothing to estimate): the two curves overlap, and the plot says so
    assert data['relative_variance'] == data['relative_variance_uniform'] == 1.0


def test_overlapping_curves_get_a_note(tmp_path, figures):
    flat = np.full(200, 3.0)
    report_module._plot_relative_variance(flat, 0.1, relative_variance_curve, tmp_path / 'r.png')
    (note,) = figures['r.png']['text']
    assert 'overlap' in note and 'gains nothing' in note
    assert report_module.curves_overlap(np.array([0.1, 0.5]), np.array([0.1, 0.49]))
    assert not report_module.curves_overlap(np.array([0.2, 0.5]), np.array([0.1, 0.5]))


def _record(i: int, kept: bool, errors: int, tags: tuple[str, ...]) -> report_module.FrameRecord:
    return report_module.FrameRecord(
        stamp_ns=i, frame_importance=1.0, probability=0.5, kept=kept, reason='', weight=2.0,
        image_bytes=10, detections=1, detector_errors=errors, visible_errors=errors // 2,
        labelled_errors=int(errors >= 4), matched=0, situations=tags)


def test_kept_error_enrichment_and_situation_shares():
    # 8 frames, 2 kept: the kept ones hold 6 + 4 errors against 20 in all (2.5 per frame)
    records = [_record(0, True, 6, ('night',)), _record(1, True, 4, ('day',))]
    records += [_record(i, False, e, ('day',)) for i, e in enumerate([2, 2, 2, 2, 1, 1], 2)]
    rates = report_module.detector_error_rates(records)
    assert rates['kept_error_enrichment'] == pytest.approx(5.0 / 2.5)
    assert rates['detector_errors_per_frame_kept'] == pytest.approx(5.0)
    # labelled errors only in the two kept frames: 1 per kept frame against 2 / 8 overall
    assert rates['kept_labelled_error_enrichment'] == pytest.approx(1.0 / 0.25)
    assert (rates['labelled_errors_per_frame_kept'], rates['labelled_errors_per_frame_dropped']) \
        == (1.0, 0.0)
    shares = report_module.situation_shares(records)
    assert shares == {'day': {'all': 7 / 8, 'kept': 0.5}, 'night': {'all': 1 / 8, 'kept': 0.5}}
    report = report_module.ReplayReport('in', 'out', '/camera', ground_truth={
        **rates, 'situation_shares_all_to_kept': shares})
    text = '\n'.join(report.summary_lines())
    assert 'kept error enrichment: 2.000' in text and 'night 0.125->0.500' in text
    assert set(report.to_dict()['meanings']) >= {'kept_error_enrichment',
                                                 'situation_shares_all_to_kept'}
