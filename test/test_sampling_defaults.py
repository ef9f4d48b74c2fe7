"""The sampler as configured by default: sharpened (a = 2), steered to the keep ratio, and able
to start from the scale an earlier run learnt (SamplerState)."""
from __future__ import annotations

import numpy as np
import pytest

from importance_sampler_ros.sampling.sampler import ImportanceSampler, SamplerConfig, SamplerState

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


def assert_unbiased(estimates: np.ndarray, total: float) -> None:
    standard_error = estimates.std(ddof=1) / np.sqrt(len(estimates))
    assert abs(estimates.mean() - total) < 4 * standard_error
    assert standard_error < 0.05 * total  # tight enough that a biased rule would fail


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
    # Horvitz-Thompson: the mean over runs of sum(kept g / q) is sum g (within 4 standard
    # errors of the runs' own spread, which sharpening makes wide: a dull frame's q is << rho)
    assert_unbiased((kept * (g / q)).sum(axis=1), g.sum())
    assert kept.mean(axis=0) == pytest.approx(q, abs=5 * np.sqrt(0.25 / len(runs)))


def test_a_fixed_mean_is_the_papers_rule_on_g_squared_unsteered():
    g = episodes()
    fixed = decisions(SamplerConfig(keep_ratio=0.05, fixed_importance_mean=2.0, seed=0,
                                    sharpness=2.0), g)
    assert [d.probability for d in fixed] == pytest.approx(
        np.minimum(1.0, 0.05 * g ** 2 / 2.0).tolist())


def test_a_resumed_sampler_continues_where_the_earlier_run_stopped():
    g = episodes()
    config = SamplerConfig(keep_ratio=0.05, seed=0)
    whole = decisions(config, g)
    first = ImportanceSampler(config)
    for i, v in enumerate(g[:360]):  # ends with a hard episode: its g^a fill the window
        first.decide(i * FRAME_NS, float(v))
    state = SamplerState.from_bytes(first.state('model|gradient_norm|sum').to_bytes())
    assert state.mismatch('model|gradient_norm|sum', config) == ''
    second = ImportanceSampler(SamplerConfig(keep_ratio=0.05, seed=7))
    second.resume(state)
    rest = [second.decide(i * FRAME_NS, float(v)) for i, v in enumerate(g[360:])]
    # the same q as one uninterrupted run: window mean, steering lead, no second warm-up
    assert [d.probability for d in rest] == pytest.approx([d.probability for d in whole[360:]])
    fresh = decisions(SamplerConfig(keep_ratio=0.05, seed=7), g[360:])
    # a fresh run warms up at q >= rho and then keeps dull frames at rho, not knowing the
    # hard frames' scale
    assert fresh[0].probability >= 0.05 > 2 * rest[0].probability


def test_a_state_of_another_scale_or_rule_is_refused_and_garbage_is_no_state():
    sampler = ImportanceSampler(SamplerConfig())
    for i in range(40):
        sampler.decide(i * FRAME_NS, 1.0 + i % 3)
    state = sampler.state('a|gradient_norm|sum')
    assert 'scale' in state.mismatch('b|gradient_norm|sum', SamplerConfig())
    assert state.mismatch('a|gradient_norm|sum', SamplerConfig(sharpness=1.0))
    with pytest.raises(RuntimeError):
        sampler.resume(state)  # only before the first decision
    with pytest.raises(ValueError, match='not a sampler state'):
        SamplerState.from_bytes(b'not an npz')
    poisoned = SamplerState(**{**state.__dict__, 'window': np.array([1.0, np.nan])})
    with pytest.raises(ValueError, match='non-finite'):
        SamplerState.from_bytes(poisoned.to_bytes())


def test_resumed_steering_still_never_looks_at_the_coins():
    g = episodes()
    first = ImportanceSampler(SamplerConfig(keep_ratio=0.05, seed=0))
    for i, v in enumerate(g[:400]):
        first.decide(i * FRAME_NS, float(v))
    state = first.state('s')
    runs = []
    for seed in range(200):
        sampler = ImportanceSampler(SamplerConfig(keep_ratio=0.05, seed=seed, draw='independent'))
        sampler.resume(state)
        runs.append([sampler.decide(i * FRAME_NS, float(v)) for i, v in enumerate(g[400:])])
    q = np.array([d.probability for d in runs[0]])
    for run in runs[1:]:
        assert np.array_equal([d.probability for d in run], q)
    kept = np.array([[d.kept for d in run] for run in runs])
    assert_unbiased((kept * (g[400:] / q)).sum(axis=1), g[400:].sum())
