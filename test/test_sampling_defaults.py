"""The sampler as configured by default: sharpened (a = 2) and steered to the keep ratio."""
from __future__ import annotations

import numpy as np
import pytest

from importance_sampler_ros.sampling.sampler import ImportanceSampler, SamplerConfig

FRAME_NS = 100_000_000


def episodes(seed: int = 3) -> np.ndarray:
    """Three rounds of 30 s ordinary, 6 s hard (five times the importance), 24 s ordinary."""
    rng = np.random.default_rng(seed)
    one = np.concatenate([rng.uniform(0.9, 1.1, 300), rng.uniform(4.0, 6.0, 60),
                          rng.uniform(0.9, 1.1, 240)])
    return np.tile(one, 3)


def decisions(config: SamplerConfig, g: np.ndarray) -> list:
    sampler = ImportanceSampler(config)
    return [sampler.decide(i * FRAME_NS, float(v)) for i, v in enumerate(g)]


def test_defaults_sharpen_and_steer():
    defaults = SamplerConfig()
    assert defaults.sharpness == 2.0 and defaults.rate_horizon_frames == 300


def test_steering_holds_the_expected_keeps_at_the_keep_ratio_where_the_window_lags():
    g = episodes()
    target = 0.05 * len(g)
    unsteered = sum(d.probability for d in decisions(
        SamplerConfig(keep_ratio=0.05, seed=0, rate_horizon_frames=0), g))
    steered = sum(d.probability for d in decisions(SamplerConfig(keep_ratio=0.05, seed=0), g))
    # the window mean of g^2 lags each hard episode: 40 % more keeps than the budget
    assert unsteered > 1.3 * target
    assert steered == pytest.approx(target, rel=0.05)


def test_steering_never_looks_at_the_coins_so_the_weights_stay_unbiased():
    g = episodes()
    runs = [decisions(SamplerConfig(keep_ratio=0.05, seed=s, draw='independent'), g)
            for s in range(300)]
    q = np.array([d.probability for d in runs[0]])
    # q depends on the importances alone: the same in every run, whatever the coins did
    for run in runs[1:]:
        assert np.array_equal([d.probability for d in run], q)
    kept = np.array([[d.kept for d in run] for run in runs])
    # Horvitz-Thompson: the mean over runs of sum(kept g / q) is sum g
    estimates = (kept * (g / q)).sum(axis=1)
    assert estimates.mean() == pytest.approx(g.sum(), rel=0.02)
    assert kept.mean(axis=0) == pytest.approx(q, abs=5 * np.sqrt(0.25 / len(runs)))


def test_a_fixed_mean_is_the_papers_rule_on_g_squared_unsteered():
    g = episodes()
    fixed = decisions(SamplerConfig(keep_ratio=0.05, fixed_importance_mean=2.0, seed=0), g)
    assert [d.probability for d in fixed] == pytest.approx(
        np.minimum(1.0, 0.05 * g ** 2 / 2.0).tolist())
