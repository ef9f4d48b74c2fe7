"""The closed loop's pieces: cached last-layer inputs reproduce the detector, labels and
retraining behave, the summary pairs seeds, and the command runs end to end (smoke size)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from importance_sampler_ros.closed_loop.experiment import (
    COVERAGE_ROW,
    TWO_STAGE_ROW,
    format_gain,
    headroom_line,
    summarise,
)
from importance_sampler_ros.closed_loop.finetune import FinetuneSettings, finetune, label_frame
from importance_sampler_ros.closed_loop.head_cache import (
    LastLayers,
    SourceFrame,
    cache_frames,
    detect_cached,
)
from importance_sampler_ros.closed_loop.selection import CEILING, COVER, UNIFORM
from importance_sampler_ros.detection.detector import Detector, DetectorConfig
from importance_sampler_ros.synth.world import Drive, SynthConfig


@pytest.fixture(scope='module')
def detector() -> Detector:
    torch.set_num_threads(2)
    return Detector(DetectorConfig(score_threshold=0.3, candidate_floor=0.05))


@pytest.fixture(scope='module')
def cached(detector):
    drive = Drive(SynthConfig(seconds=2.0, fps=5.0, seed=5101))
    frames = [SourceFrame(f.image, f.stamp_ns, f.truth, 5101, f.index) for f in drive]
    return list(cache_frames(detector, frames, label_rois=True, batch_size=2)), frames


@pytest.mark.slow
def test_cached_last_layers_reproduce_the_detector(detector, cached):
    frames, sources = cached
    again = detect_cached(LastLayers(detector), detector, frames, score_floor=0.05)
    for frame, source, mine in zip(frames, sources, again, strict=True):
        direct = detector.detect(source.image, source.stamp_ns)
        assert frame.detections.boxes.shape == direct.boxes.shape
        # every box above the floor: published detections and candidates together
        n_direct = len(direct) + len(direct.candidates)
        assert abs(len(mine) - n_direct) <= max(2, n_direct // 10)  # float16 features
        top = np.argsort(-mine.scores)[:5]
        ref = np.sort(np.concatenate([direct.scores, direct.candidates.scores]))[::-1][:5]
        np.testing.assert_allclose(np.sort(mine.scores[top])[::-1], ref, atol=0.03)
    # the rows are proposals, then truth boxes, then detection boxes
    frame = frames[-1]
    assert frame.n_truth == len(frame.truth) and frame.n_detections == len(frame.detections)
    assert frame.features.dtype == torch.float16 and frame.features.shape[0] == len(frame.rois)


@pytest.mark.slow
def test_label_rows_and_retraining_lower_the_loss(detector, cached):
    frames, _ = cached
    coder = detector.model.roi_heads.box_coder
    frame = next(f for f in frames if len(f.truth) >= 2)
    labelled = label_frame(frame, frame.truth.boxes, frame.truth.class_ids, coder, 'truth')
    p, t = frame.n_proposals, frame.n_truth
    # a truth box is its own RoI: foreground with its class and a zero regression target
    np.testing.assert_array_equal(labelled.labels[p:p + t].numpy(), frame.truth.class_ids)
    assert labelled.targets[p:p + t].abs().max() < 1e-4
    own = label_frame(frame, frame.detections.boxes, frame.detections.class_ids, coder,
                      'detections')
    assert len(own.labels) == p + frame.n_detections  # truth rows left out of self-labels
    with pytest.raises(ValueError):
        label_frame(frame, frame.truth.boxes, frame.truth.class_ids, coder, 'both')
    data = [label_frame(f, f.truth.boxes, f.truth.class_ids, coder, 'truth') for f in frames]
    layers = LastLayers(detector)
    losses = finetune(layers, data, [], FinetuneSettings(iterations=60, batch_size=4, lr=2e-3,
                                                         warmup=5), seed=0)
    assert losses['final_loss'] < losses['first_loss']


def _run(strategy, seed, m, tag_m):
    return {'budget': 0.05, 'strategy': strategy, 'seed': seed, 'frames': 10,
            'selected_error_enrichment': 1.0, 'near_duplicate_share': 0.0,
            'test': {'mAP': m, 'rare_tags': tag_m, 'by_tag': {'night': tag_m},
                     'by_distance': {'<20 m': m}}}


def test_summary_pairs_each_strategy_with_random_of_the_same_seed():
    runs = [_run('random', 0, 0.50, 0.20), _run('random', 1, 0.60, 0.30),
            _run('top', 0, 0.55, 0.40), _run('top', 1, 0.62, 0.30)]
    table = summarise(runs)['0.05']
    gain = table['top']['gain_over_random']
    assert gain['mean'] == pytest.approx(0.035) and gain['n'] == 2
    assert gain['std'] == pytest.approx(np.std([0.05, 0.02], ddof=1))
    assert table['top']['by_tag']['night']['gain_over_random']['mean'] == pytest.approx(0.10)
    assert table['top']['rare_tags']['gain_over_random']['mean'] == pytest.approx(0.10)
    assert table['random']['gain_over_random']['mean'] == 0.0
    assert math.isclose(table['top']['mAP']['mean'], 0.585)
    assert gain['se'] == pytest.approx(gain['std'] / math.sqrt(2)) and gain['positive'] == 2
    assert format_gain(gain) == f"+3.50 +- {100 * gain['se']:.2f}, 2/2"


def test_gain_report_counts_the_seeds_that_lost():
    runs = [_run('random', s, 0.50, 0.20) for s in range(3)]
    runs += [_run('x', 0, 0.52, 0.2), _run('x', 1, 0.49, 0.2), _run('x', 2, 0.47, 0.2)]
    gain = summarise(runs)['0.05']['x']['gain_over_random']
    assert gain['positive'] == 1 and gain['mean'] == pytest.approx(-0.02 / 3)
    assert format_gain(gain, '±').startswith('-0.67 ± ') and format_gain(gain).endswith(', 1/3')


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_closed_loop_command_smoke(tmp_path, capsys, monkeypatch):
    from importance_sampler_ros.cli import main
    from importance_sampler_ros.closed_loop import experiment
    from importance_sampler_ros.offline.pipeline import load_parameters

    # the product sampler's runs get the parameter file's candidate floor, not the cache's
    run_floors = []
    product_sampler = experiment.run_product_sampler

    def recording_floor(pool, params):
        run_floors.append(params['detector_node'].of(DetectorConfig).published_candidate_floor)
        return product_sampler(pool, params)

    monkeypatch.setattr(experiment, 'run_product_sampler', recording_floor)
    file_floor = load_parameters(None, {})[0]['detector_node'].of(
        DetectorConfig).published_candidate_floor
    assert file_floor is not None and file_floor > experiment.CANDIDATE_FLOOR
    out = tmp_path / 'loop'
    code = main(['closed-loop', '--out', str(out), '--pool-seeds', '5201', '5202',
                 '--test-seeds', '6201', '--seconds', '3', '--seeds', '0', '--iterations', '3',
                 '--replay-frames', '4', '--budgets', '0.1', '--tail-seconds', '0.1',
                 '--no-progress'])
    assert code == 0
    assert run_floors and set(run_floors) == {file_floor}  # every variant of the sampler
    assert 'frames (100%)' not in capsys.readouterr().err  # --no-progress: no detector passes
    result = json.loads((out / 'closed_loop.json').read_text())
    strategies = {r['strategy'] for r in result['runs']}
    assert {'random', 'sampler, 1/q weights', 'sampler, self-labels',
            'oracle (true errors)', CEILING, 'sampler, coverage frame score', UNIFORM,
            COVER, COVERAGE_ROW, TWO_STAGE_ROW} <= strategies
    two_stage = next(r for r in result['runs'] if r['strategy'] == TWO_STAGE_ROW)
    assert two_stage['frames'] == next(r['frames'] for r in result['runs']
                                       if r['strategy'] == 'random')
    assert next(r['frames'] for r in result['runs'] if r['strategy'] == CEILING) == 60
    assert len(result['runs']) == len(strategies)  # one seed
    assert result['pool']['frames'] == 60 and result['test']['natural_frames'] == 10
    assert result['test']['frames'] > 10  # plus one short forced drive per rare kind
    for run in result['runs']:
        assert 0.0 <= run['test']['mAP'] <= 1.0 and run['frames'] >= 1
        assert 'night' in run['test']['by_tag'] and 0.0 <= run['near_duplicate_share'] <= 1.0
    assert {'before_relabels', 'after_relabels'} <= set(result['self_labels']['0.1'])
    assert any(row['scorer'] == 'prob_residual' for row in result['scoring'])
    assert all('rare_auroc' in row for row in result['scoring'])
    assert 0.0 <= result['pool']['rare_share'] <= 1.0
    assert all(0.0 <= r['selected_rare_share'] <= 1.0 for r in result['runs'])
    assert (out / 'closed_loop_gain.png').stat().st_size > 10_000


def test_uniform_selection_is_evenly_spaced_in_pool_order():
    from importance_sampler_ros.closed_loop.selection import select_uniform

    chosen = select_uniform(100, 10, seed=3)
    assert chosen.strategy == UNIFORM and len(chosen.indices) == 10
    assert set(np.diff(chosen.indices)) == {10}
    offsets = {int(select_uniform(100, 10, seed=s).indices[0]) for s in range(20)}
    assert len(offsets) > 3 and max(offsets) < 10  # a random offset within the first step


def test_sampler_keeps_weigh_by_the_power_of_one_over_q():
    from importance_sampler_ros.closed_loop.selection import SamplerRun, sampler_selection

    q = np.array([0.5, 1.0, 0.1, 0.25])
    run = SamplerRun(kept=np.array([True, False, True, True]), probability=q, weight=1.0 / q,
                     reasons=['sampled', '', 'sampled', 'relabel'], relabels=[])
    full, tempered, flat = (sampler_selection(run, 0, p) for p in (1.0, 0.5, 0.0))
    assert list(full.indices) == [0, 2, 3] and full.info['relabel_keeps'] == 1
    np.testing.assert_allclose(full.weights, [2.0, 10.0, 4.0])
    np.testing.assert_allclose(tempered.weights, np.sqrt([2.0, 10.0, 4.0]))
    np.testing.assert_allclose(flat.weights, 1.0)
    assert (full.strategy, flat.strategy) == ('sampler, 1/q weights', 'sampler, unweighted')
    assert tempered.strategy == 'sampler, (1/q)^0.5 weights'


def test_cover_picks_every_cluster_before_a_second_frame_of_any():
    from importance_sampler_ros.closed_loop.selection import select_cover

    rng = np.random.default_rng(0)
    centres = rng.normal(0.0, 20.0, (5, 3))
    # 5 tight clusters of very different sizes: 400 frames of one scene, 5 of the rarest
    sizes = [400, 100, 40, 10, 5]
    pool = np.concatenate([c + rng.normal(0.0, 0.1, (n, 3))
                           for c, n in zip(centres, sizes, strict=True)])
    cluster = np.repeat(np.arange(5), sizes)
    reference = rng.normal(0.0, 20.0, (50, 3))
    for seed in range(4):
        chosen = select_cover(pool, reference, 5, seed)
        assert chosen.strategy == COVER and sorted(cluster[chosen.indices]) == [0, 1, 2, 3, 4]
    randomly = [len(set(cluster[rng.choice(len(pool), 5, replace=False)])) for _ in range(50)]
    assert np.mean(randomly) < 3.5  # random picks mostly the big scene


def test_strategies_subset_always_runs_random_first():
    from pathlib import Path

    from importance_sampler_ros.closed_loop.experiment import ClosedLoopSettings

    settings = ClosedLoopSettings(out=Path('.'), strategies=('cover', 'sampler', 'random'))
    assert settings.strategies == ('random', 'cover', 'sampler')
    with pytest.raises(ValueError, match='unknown strategies'):
        ClosedLoopSettings(out=Path('.'), strategies=('best',))


def test_headroom_compares_the_ceiling_with_the_spread_of_gains():
    runs = [_run('random', 0, 0.50, 0.2), _run('random', 1, 0.52, 0.2),
            _run('top', 0, 0.51, 0.2), _run('top', 1, 0.51, 0.2),
            _run(CEILING, 0, 0.505, 0.2), _run(CEILING, 1, 0.525, 0.2)]
    line = headroom_line(summarise(runs)['0.05'])
    assert '+0.50 +- 0.00 points' in line and 'spread 1.41 points' in line
    assert 'no selection of fewer frames' in line
    wide = [*runs[:4], _run(CEILING, 0, 0.6, 0.2), _run(CEILING, 1, 0.62, 0.2)]
    assert 'room to differ' in headroom_line(summarise(wide)['0.05'])
    assert 'one seed' in headroom_line(summarise(runs[::2])['0.05'])


def test_near_duplicates_are_selected_frames_close_in_the_same_drive():
    from types import SimpleNamespace

    from importance_sampler_ros.closed_loop.experiment import near_duplicate_share

    pool = [SimpleNamespace(drive_seed=d, index=i) for d, i in
            [(1, 0), (1, 1), (1, 10), (2, 11), (2, 30)]]
    assert near_duplicate_share(pool, np.array([0, 1, 2, 3, 4])) == pytest.approx(0.4)
    assert near_duplicate_share(pool, np.array([2, 3])) == 0.0  # other drive


def test_disk_cache_reuses_only_the_same_key(tmp_path):
    from importance_sampler_ros.closed_loop.head_cache import cached_on_disk

    calls = []

    def compute(value):
        def run():
            calls.append(value)
            return [{'frame': value, 'features': torch.ones(2, 3) * value}]
        return run

    first = cached_on_disk(tmp_path, {'what': 'pool', 'seeds': [1]}, compute(1))
    again = cached_on_disk(tmp_path, {'what': 'pool', 'seeds': [1]}, compute(2))
    other = cached_on_disk(tmp_path, {'what': 'pool', 'seeds': [2]}, compute(3))
    assert calls == [1, 3]
    assert again[0]['frame'] == 1 and torch.equal(again[0]['features'], first[0]['features'])
    assert other[0]['frame'] == 3
    assert sorted(p.suffix for p in tmp_path.iterdir()) == ['.pt', '.pt']  # no partial left
    assert cached_on_disk(None, {'what': 'pool'}, compute(4))[0]['frame'] == 4


@pytest.mark.slow
def test_retraining_from_fc6_caches_roi_features_and_reproduces_fc7(detector, cached):
    frames, sources = cached
    deep = list(cache_frames(detector, sources[:3], label_rois=False, from_layer='fc6'))
    assert deep[0].features.shape[1] == detector.model.roi_heads.box_head.fc6.in_features
    shallow = detect_cached(LastLayers(detector), detector, frames[:3])
    again = detect_cached(LastLayers(detector, 'fc6'), detector, deep)
    for a, b in zip(shallow, again, strict=True):
        top_a, top_b = np.sort(a.scores)[::-1][:5], np.sort(b.scores)[::-1][:5]
        np.testing.assert_allclose(top_a, top_b, atol=0.03)  # float16 either way
    with pytest.raises(ValueError, match='from_layer'):
        LastLayers(detector, 'backbone')
