"""The sampler's fixed normaliser (fixed_importance_mean) as the fleet replay uses it: one g_mean
for several drives, so that the keep ratio follows each drive's importance."""
from __future__ import annotations

import numpy as np
import pytest

from importance_sampler_ros.params import ParameterError
from importance_sampler_ros.recording.config import RecorderConfig
from importance_sampler_ros.registry import NODES
from importance_sampler_ros.sampling.sampler import ImportanceSampler, SamplerConfig

FRAMES = 4000


def paper_rule(**values) -> SamplerConfig:
    """The paper's q = min(1, rho g / g_mean) these tests check: no sharpening and no keep-rate
    steering (the defaults add both; test_sampling_defaults.py)."""
    return SamplerConfig(**{'sharpness': 1.0, 'rate_horizon_frames': 0, **values})


def kept(config: SamplerConfig, importances: np.ndarray) -> int:
    sampler = ImportanceSampler(config)
    return sum(sampler.decide(i * 100_000_000, g).kept for i, g in enumerate(importances))


def test_shared_fixed_mean_keeps_by_importance_and_meets_the_fleet_ratio():
    rng = np.random.default_rng(0)
    dull = 0.1 * rng.uniform(0.5, 1.5, FRAMES)
    hard = 1.0 * rng.uniform(0.5, 1.5, FRAMES)
    rho = 0.2
    fleet_mean = float(np.concatenate([dull, hard]).mean())
    fixed = paper_rule(keep_ratio=rho, fixed_importance_mean=fleet_mean, seed=1)
    kept_dull, kept_hard = kept(fixed, dull), kept(fixed, hard)
    # Expected keeps: sum of q = rho g / g_mean (no clipping at these levels).
    for count, g in ((kept_dull, dull), (kept_hard, hard)):
        expected = float(np.minimum(1.0, rho * g / fleet_mean).sum())
        assert abs(count - expected) < 4 * np.sqrt(expected)
    assert kept_hard > 5 * kept_dull
    assert abs((kept_dull + kept_hard) / (2 * FRAMES) - rho) < 0.02

    # The window normaliser makes each drive keep about rho of its own frames instead.
    window = paper_rule(keep_ratio=rho, seed=1)
    assert abs(kept(window, dull) / FRAMES - rho) < 0.03
    assert abs(kept(window, hard) / FRAMES - rho) < 0.03


def test_fixed_mean_does_not_follow_a_scene_change():
    importances = np.concatenate([np.full(500, 1.0), np.full(500, 10.0)])
    fixed = ImportanceSampler(paper_rule(keep_ratio=0.05, fixed_importance_mean=1.0))
    window = ImportanceSampler(paper_rule(keep_ratio=0.05, mean_window=100))
    last_fixed = last_window = None
    for i, g in enumerate(importances):
        last_fixed = fixed.decide(i, g)
        last_window = window.decide(i, g)
    assert last_fixed.probability == pytest.approx(0.5)
    assert last_fixed.importance_mean == 1.0
    assert last_window.probability == pytest.approx(0.05)


def test_recorder_parameter_reaches_the_sampler():
    recorder = NODES['recorder_node']
    values = {'fixed_importance_mean': 2.5, 'keep_ratio': 0.3}
    config = recorder.build(values).of(RecorderConfig)
    assert config.sampler.fixed_importance_mean == 2.5
    assert recorder.build({}).of(RecorderConfig).sampler.fixed_importance_mean == 0
    with pytest.raises(ParameterError):
        recorder.build({'fixed_importance_mean': -1.0})


@pytest.mark.parametrize('value', [-0.5, float('nan'), float('inf')])
def test_bad_fixed_mean_is_refused(value):
    with pytest.raises(ValueError, match='fixed_importance_mean'):
        paper_rule(fixed_importance_mean=value)
