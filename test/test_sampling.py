"""Tests of the importance sampler: keep ratio, unbiasedness, floor, budget, redundancy, R(M)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from importance_sampler_ros.sampling.sampler import (
    REASON_BUDGET,
    REASON_DROPPED,
    REASON_FORCED,
    REASON_SAMPLED,
    ImportanceSampler,
    RelativeVarianceTally,
    SamplerConfig,
    importance_probabilities,
    relative_variance,
    relative_variance_curve,
)

NS = 1_000_000_000
FRAME_NS = NS // 10  # a 10 Hz stream


def paper_rule(**values) -> SamplerConfig:
    """The paper's q = min(1, rho g / g_mean) these tests check: no sharpening and no keep-rate
    steering (the defaults add both; test_sampling_defaults.py)."""
    return SamplerConfig(**{'sharpness': 1.0, 'rate_horizon_frames': 0, **values})


def run(sampler: ImportanceSampler, importances: np.ndarray, nbytes: int = 0) -> list:
    return [sampler.decide(i * FRAME_NS, g, nbytes) for i, g in enumerate(importances)]


def test_keep_ratio_is_close_to_rho_on_a_long_stream() -> None:
    g = np.random.default_rng(1).exponential(1.0, 20_000)
    decisions = run(ImportanceSampler(paper_rule(keep_ratio=0.1, seed=2)), g)
    kept = sum(d.kept for d in decisions)
    q = np.array([d.probability for d in decisions])
    # The draws given q: kept ~ sum q with variance sum q(1-q) (~42^2 here); 4 sd.
    assert abs(kept - q.sum()) < 4 * math.sqrt((q * (1 - q)).sum())
    # q itself: a 300-frame window mean of exponential g is off by ~6 %, which by Jensen raises
    # E[1/g_mean] by ~1/300; warm-up and clipping (P(g > 10 mean) = 5e-5) add less. 5 % relative
    # tolerance covers all of that with room, and fails for a sampler keeping e.g. 0.11.
    assert abs(kept / len(g) - 0.1) < 0.005
    assert all(d.weight == pytest.approx(1 / d.probability) for d in decisions if d.kept)
    assert {d.reason for d in decisions} == {REASON_SAMPLED, REASON_DROPPED}


def test_weighted_sum_of_kept_importances_is_unbiased() -> None:
    g = np.random.default_rng(3).exponential(1.0, 1000)
    estimates = []
    for seed in range(100):
        decisions = run(ImportanceSampler(paper_rule(keep_ratio=0.1, seed=seed)), g)
        estimates.append(sum(d.weight * d.importance for d in decisions if d.kept))
    estimates = np.array(estimates)
    standard_error = estimates.std(ddof=1) / math.sqrt(len(estimates))
    # 4 standard errors: a false failure has probability ~1e-4. Weights of 1/rho instead of 1/q
    # would give ~sum g^2 / mean g = 2 sum g here, tens of standard errors away.
    assert abs(estimates.mean() - g.sum()) < 4 * standard_error
    assert standard_error < 0.05 * g.sum()  # the test has power: the estimate is not all noise


def test_same_seed_same_decisions() -> None:
    g = np.random.default_rng(4).exponential(1.0, 500)
    first = run(ImportanceSampler(paper_rule(seed=7)), g)
    second = run(ImportanceSampler(paper_rule(seed=7)), g)
    assert first == second


def test_probability_follows_the_formula_after_warm_up() -> None:
    sampler = ImportanceSampler(paper_rule(keep_ratio=0.2, mean_window=4, warmup_frames=0))
    for i, g in enumerate([1.0, 3.0, 2.0, 2.0]):
        decision = sampler.decide(i * FRAME_NS, g)
    assert decision.importance_mean == pytest.approx(2.0)
    assert decision.probability == pytest.approx(0.2 * 2.0 / 2.0)
    decision = sampler.decide(5 * FRAME_NS, 40.0)  # window now 3, 2, 2, 40: mean 11.75
    assert decision.probability == pytest.approx(min(1.0, 0.2 * 40 / 11.75))


def test_warm_up_keeps_at_least_rho() -> None:
    sampler = ImportanceSampler(paper_rule(keep_ratio=0.3, warmup_frames=3, seed=0))
    decisions = run(sampler, np.array([5.0, 0.1, 0.1, 0.1]))
    assert [d.probability for d in decisions[:3]] == pytest.approx([0.3, 0.3, 0.3])
    assert decisions[3].probability == pytest.approx(0.3 * 0.1 / 1.325)


def test_fixed_importance_mean_is_the_papers_formula_from_the_first_frame() -> None:
    sampler = ImportanceSampler(paper_rule(keep_ratio=0.2, fixed_importance_mean=4.0))
    decisions = run(sampler, np.array([1.0, 8.0, 40.0, 0.0]))
    assert [d.probability for d in decisions] == pytest.approx([0.05, 0.4, 1.0, 0.0])
    assert all(d.importance_mean == 4.0 for d in decisions)


def test_zero_importance_frames_need_the_floor() -> None:
    g = np.zeros(4000)
    no_floor = run(ImportanceSampler(paper_rule(warmup_frames=0, seed=1)), g)
    assert not any(d.kept for d in no_floor)
    assert all(d.probability == 0.0 and d.weight == 0.0 for d in no_floor)

    floored = run(
        ImportanceSampler(paper_rule(warmup_frames=0, floor_probability=0.05, seed=1)), g
    )
    kept = [d for d in floored if d.kept]
    assert all(d.probability == 0.05 and d.weight == pytest.approx(20.0) for d in kept)
    # binomial(4000, 0.05): mean 200, sd 13.8; 4 sd.
    assert abs(len(kept) - 200) < 4 * 13.8


def test_keep_all_is_forced() -> None:
    decisions = run(ImportanceSampler(paper_rule(keep_all=True)), np.array([0.0, 1.0, 9.0]))
    assert all(d.kept and d.reason == REASON_FORCED and d.weight == 1.0 for d in decisions)


def test_byte_budget_adapts_rho_to_the_budget() -> None:
    frame_bytes = 1_000_000
    # 10 frames/s of 1 MB come in; the budget is 1 MB/s, so rho should settle near 0.1.
    config = paper_rule(keep_ratio=0.5, bytes_per_hour=3600 * 1e6, seed=5)
    sampler = ImportanceSampler(config)
    g = np.random.default_rng(6).exponential(1.0, 6000)  # 10 minutes of stream
    decisions = run(sampler, g, frame_bytes)
    kept_bytes = frame_bytes * sum(d.kept for d in decisions)
    allowance = 1e6 * (600 + config.budget_burst_s)
    # The controller spends the allowance within a few horizons' worth of noise (sd of the
    # kept count here ~25 frames = 25 MB of 630 MB).
    assert kept_bytes == pytest.approx(allowance, rel=0.1)
    late_rhos = [d.keep_ratio for d in decisions[3000:]]
    assert np.mean(late_rhos) == pytest.approx(0.1, rel=0.2)


def test_overspending_drops_frames_for_budget() -> None:
    sampler = ImportanceSampler(paper_rule(bytes_per_hour=3600 * 1e6, budget_burst_s=10))
    sampler.decide(0, 1.0, 1000)
    sampler.note_kept(0, 50_000_000)  # e.g. relabel keeps: 50 MB against a 10 MB credit
    decision = sampler.decide(FRAME_NS, 1.0, 1000)
    assert not decision.kept and decision.reason == REASON_BUDGET and decision.weight == 0.0
    # 50 s later the allowance has caught up: back to sampling.
    decision = sampler.decide(50 * NS, 1.0, 1000)
    assert decision.reason in (REASON_SAMPLED, REASON_DROPPED)


def test_redundancy_control_one_keep_per_gap_per_track() -> None:
    config = paper_rule(keep_ratio=1.0, warmup_frames=0, min_gap_s=1.0, seed=0)
    sampler = ImportanceSampler(config)

    def decide(t_s: float, g: float, tracks: list[int], track_g: list[float]) -> bool:
        return sampler.decide(int(t_s * NS), g, 0, tracks, track_g).kept

    assert decide(0.0, 1.0, [5], [1.0])  # q = 1: kept, track 5 noted
    assert not decide(0.1, 1.0, [5], [1.0])  # same track within the gap: suppressed
    assert decide(0.2, 1.0, [5, 0], [1.0, 0.5])  # an untracked (maybe new) object: kept
    assert not decide(0.3, 1.0, [5], [1.5])  # 1.5x the importance is not "much higher"
    assert decide(0.4, 1.0, [5], [2.5])  # 2.5x is (ratio 2)
    assert decide(1.5, 1.0, [5], [1.0])  # after the gap
    assert decide(1.6, 1.0, [6], [1.0])  # another track
    assert sampler.suppressed == 2


def test_bad_importance_is_a_clear_error() -> None:
    sampler = ImportanceSampler()
    for bad in (float('nan'), -1.0, float('inf')):
        with pytest.raises(ValueError, match='importance'):
            sampler.decide(0, bad)
    with pytest.raises(ValueError, match='keep_ratio'):
        paper_rule(keep_ratio=0.0)


def test_relative_variance_matches_hand_computation() -> None:
    g = np.array([1.0, 2.0, 3.0, 0.0])
    q = np.array([0.5, 1.0, 0.25, 0.1])
    # sum g^2 = 14; sum g^2/q = 2 + 4 + 36 = 42
    assert relative_variance(g, q) == pytest.approx(14 / 42)
    assert relative_variance(g, np.ones(4)) == 1.0
    assert relative_variance(g, np.full(4, 0.3)) == pytest.approx(0.3)
    assert relative_variance(g, np.array([0.0, 1.0, 1.0, 1.0])) == 0.0  # g > 0 never seen
    assert relative_variance(np.zeros(3), np.zeros(3)) == 1.0


def test_relative_variance_curve_matches_hand_computation() -> None:
    curve = relative_variance_curve(np.array([1.0, 3.0]), [0.5, 1.0])
    # rho 0.5: mean 2, q = [0.25, 0.75]: R = 10 / (4 + 12); expected keep 0.5
    # rho 1.0: q = [0.5, min(1, 1.5)]: R = 10 / (2 + 9); expected keep 0.75
    assert curve['keep_ratio'] == pytest.approx([0.5, 1.0])
    assert curve['expected_keep_ratio'] == pytest.approx([0.5, 0.75])
    assert curve['importance'] == pytest.approx([10 / 16, 10 / 11])
    assert curve['uniform'] == pytest.approx([0.5, 0.75])


def test_importance_sampling_beats_uniform_on_skewed_importances() -> None:
    g = np.random.default_rng(8).lognormal(0.0, 1.5, 5000)
    curve = relative_variance_curve(g, [0.01, 0.05, 0.2])
    assert np.all(curve['importance'] > curve['uniform'])


def test_run_tally_equals_the_batch_formula() -> None:
    g = np.random.default_rng(9).exponential(1.0, 2000)
    decisions = run(ImportanceSampler(paper_rule(seed=1)), g)
    tally = RelativeVarianceTally()
    for d in decisions:
        tally.add(d.importance, d.probability)
    q = np.array([d.probability for d in decisions])
    result = tally.result()
    assert result['relative_variance'] == pytest.approx(relative_variance(g, q))
    assert result['relative_variance_uniform'] == pytest.approx(q.mean())
    assert importance_probabilities(np.array([1.0, 3.0]), 0.5) == pytest.approx([0.25, 0.75])


def test_sharpening_concentrates_keeps_and_stays_unbiased():
    rng = np.random.default_rng(5)
    g = rng.exponential(1.0, 20_000)
    plain = ImportanceSampler(paper_rule(keep_ratio=0.1, seed=1, warmup_frames=0))
    sharp = ImportanceSampler(paper_rule(keep_ratio=0.1, seed=1, warmup_frames=0,
                                            sharpness=3.0))
    d_plain = [plain.decide(i, float(v)) for i, v in enumerate(g)]
    d_sharp = [sharp.decide(i, float(v)) for i, v in enumerate(g)]
    kept_plain = np.array([d.kept for d in d_plain])
    kept_sharp = np.array([d.kept for d in d_sharp])
    # the same budget, spent on more important frames
    assert abs(kept_sharp.mean() - kept_plain.mean()) < 0.03
    assert g[kept_sharp].mean() > 1.3 * g[kept_plain].mean()
    # Horvitz-Thompson: the weighted sum of a per-frame quantity estimates its total; the mean
    # over repeated draws converges to it (a = 2 here: with a = 3 and g ~ Exp(1) one draw's
    # spread is many times the total, the price of tiny q for dull frames)
    small = g[:1000]
    for value in (small, small + 1.0):
        estimates = []
        for seed in range(200):
            sampler = ImportanceSampler(paper_rule(keep_ratio=0.1, seed=seed, sharpness=2.0,
                                                      warmup_frames=0))
            ds = [sampler.decide(i, float(v)) for i, v in enumerate(small)]
            estimates.append(sum(d.weight * x for d, x in zip(ds, value, strict=True) if d.kept))
        # 4 standard errors of the mean (measured: 0.009 and 0.03 relative)
        assert abs(np.mean(estimates) / value.sum() - 1.0) < 4 * np.std(estimates) / np.sqrt(
            200) / value.sum() + 0.01
    assert d_sharp[-1].importance == pytest.approx(g[-1])
    with pytest.raises(ValueError, match='sharpness'):
        paper_rule(sharpness=0.0)


def _inclusion_rates(config: dict, g: np.ndarray, runs: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the share of `runs` seeded runs that kept it, and its (seed-independent) q."""
    kept = np.zeros(len(g))
    q = None
    for seed in range(runs):
        sampler = ImportanceSampler(paper_rule(seed=seed, **config))
        decisions = run(sampler, g)
        kept += [d.kept for d in decisions]
        q = np.array([d.probability for d in decisions])
    return kept / runs, q


def test_systematic_draws_keep_each_frame_with_probability_q_and_spread_the_keeps():
    rng = np.random.default_rng(8)
    # scenes: runs of 40 near-identical frames, a hard one every 5th scene
    g = np.repeat(rng.choice([1.0, 1.0, 1.0, 1.0, 6.0], 50), 40) * rng.uniform(0.9, 1.1, 2000)
    config = {'keep_ratio': 0.1, 'draw': 'systematic'}
    rates, q = _inclusion_rates(config, g, 400)
    # inclusion probability q_i, frame by frame: binomial sd sqrt(q(1-q)/400) <= 0.025; 5 sd
    assert np.abs(rates - q).max() < 0.125
    assert abs(rates.mean() - q.mean()) < 0.005
    # Horvitz-Thompson stays unbiased: mean over runs of sum(kept g / q) = sum g
    assert np.sum(rates * g / q) == pytest.approx(g.sum(), rel=0.02)
    for seed in range(20):
        decisions = run(ImportanceSampler(paper_rule(seed=seed, **config)), g)
        kept = np.flatnonzero([d.kept for d in decisions])
        total_q = sum(d.probability for d in decisions)
        # the count is within 1 of sum q, and no two keeps whose q sum to < 1 are adjacent
        assert abs(len(kept) - total_q) < 1.0 + 1e-9
        adjacent = kept[1:][np.diff(kept) == 1]
        assert all(q[i - 1] + q[i] > 1.0 for i in adjacent)
    independent = [np.flatnonzero([d.kept for d in run(ImportanceSampler(
        paper_rule(seed=s, keep_ratio=0.1, draw='independent')), g)]) for s in range(20)]
    systematic = [np.flatnonzero([d.kept for d in run(ImportanceSampler(
        paper_rule(seed=s, **config)), g)]) for s in range(20)]

    def clumped(kept: np.ndarray) -> float:
        return float(np.mean(np.diff(kept) <= 2))

    # the hard scenes have q ~ 0.45: independent coins keep neighbours there, systematic rarely
    assert np.mean([clumped(k) for k in systematic]) < 0.5 * np.mean(
        [clumped(k) for k in independent])
    with pytest.raises(ValueError, match='draw'):
        paper_rule(draw='lottery')


def test_systematic_draws_in_byte_budget_mode_stay_close_to_unbiased():
    g = np.random.default_rng(9).exponential(1.0, 1500)
    config = {'keep_ratio': 0.1, 'draw': 'systematic', 'bytes_per_hour': 0.1 * 36000 * 1000,
              'budget_burst_s': 5.0}
    estimates = []
    for seed in range(200):
        sampler = ImportanceSampler(paper_rule(seed=seed, **config))
        decisions = run(sampler, g, nbytes=1000)
        estimates.append(sum(d.weight * x for d, x in zip(decisions, g, strict=True) if d.kept))
    # q depends on earlier keeps here, so unbiasedness is approximate: within 3 % measured
    # (the independent draws' exact unbiasedness is tested above)
    assert np.mean(estimates) == pytest.approx(g.sum(), rel=0.03)


def test_independent_draws_use_one_uniform_per_frame_from_the_seed():
    g = np.random.default_rng(3).exponential(1.0, 500)
    decisions = run(ImportanceSampler(paper_rule(keep_ratio=0.1, seed=7,
                                                    draw='independent')), g)
    coins = np.random.default_rng(7).random(len(g))
    assert [d.kept for d in decisions] == [bool(c < d.probability)
                                           for c, d in zip(coins, decisions, strict=True)]


def test_relabel_share_lowers_rho_only_in_keep_ratio_mode():
    plain = ImportanceSampler(paper_rule(keep_ratio=0.2))
    budget = ImportanceSampler(paper_rule(keep_ratio=0.2, bytes_per_hour=3600.0))
    for sampler in (plain, budget):
        for i in range(10):
            sampler.note_final(relabel_keep=i == 0)  # a share of 0.1 kept by relabels
    assert plain.keep_ratio == pytest.approx(0.1)
    # the byte budget charges relabel keeps through note_kept: no second correction
    assert budget.keep_ratio == 0.2


def test_coverage_distance_is_to_the_nearest_kept_frame_in_standardised_units():
    from importance_sampler_ros.sampling.coverage import CoverageScore

    rng = np.random.default_rng(0)
    # dimension 1 is a thousand times wider than dimension 0: standardising makes both count
    scale = np.array([1.0, 1000.0])
    coverage = CoverageScore()
    frames = rng.normal(size=(500, 2)) * scale
    assert coverage.observe(frames[0]) == 0.0  # nothing kept yet
    coverage.note_kept(frames[0])
    for x in frames[1:]:
        coverage.observe(x)
    near = frames[0] + np.array([0.1, 100.0])
    assert coverage.observe(near) == pytest.approx(math.hypot(0.1, 0.1), rel=0.15)
    assert coverage.observe(frames[0] + np.array([3.0, 0.0])) == pytest.approx(3.0, rel=0.15)
    assert coverage.observe(frames[0] + np.array([0.0, 3000.0])) == pytest.approx(3.0, rel=0.15)
    with pytest.raises(ValueError, match='3 values'):
        coverage.observe(np.zeros(3))
    with pytest.raises(ValueError, match='finite'):
        coverage.observe(np.array([np.nan, 0.0]))


def test_coverage_keeps_a_new_kind_of_scene_more_often_than_the_familiar_one():
    rng = np.random.default_rng(3)
    config = paper_rule(keep_ratio=0.05, seed=4, frame_score='coverage')
    sampler = ImportanceSampler(config)
    day = rng.normal(0.0, 1.0, size=(1500, 8))
    night = rng.normal(0.0, 1.0, size=(100, 8)) + np.array([6.0] + [0.0] * 7)
    frames = np.concatenate([day[:1000], night, day[1000:]])
    decisions = [sampler.decide(i * FRAME_NS, 0.0, descriptor=x) for i, x in enumerate(frames)]
    q = np.array([d.probability for d in decisions])
    kept = np.array([d.kept for d in decisions])
    # the first night frames are far from everything kept (measured 1.65-1.77x over 4 seeds);
    # once some are kept, the rest are not
    assert q[1000:1020].mean() > 1.5 * q[100:1000].mean()
    assert q[1020:1100].mean() < q[1000:1020].mean()
    assert abs(kept.mean() - 0.05) < 0.01  # the budget still holds
    # the importance argument is ignored; a frame without a descriptor is refused
    with pytest.raises(ValueError, match='descriptor'):
        sampler.decide(len(frames) * FRAME_NS, 1.0)


def test_coverage_without_warm_up_still_keeps_its_first_frame():
    sampler = ImportanceSampler(paper_rule(keep_ratio=0.5, seed=1, warmup_frames=0,
                                              frame_score='coverage'))
    rng = np.random.default_rng(0)
    kept = [sampler.decide(i * FRAME_NS, 0.0, descriptor=rng.normal(size=4)).kept
            for i in range(40)]
    assert 10 < sum(kept) < 30


def test_coverage_reference_whitens_and_the_bank_carries_kept_frames_to_the_next_run(tmp_path):
    from importance_sampler_ros.sampling.coverage import CoverageScore

    rng = np.random.default_rng(5)
    # training frames: dimension 1 varies 4x more than dimension 0 (shrinkage towards the
    # average variance, 0.1, leaves that ratio nearly whole)
    reference = rng.normal(size=(400, 2)) * np.array([1.0, 4.0])
    coverage = CoverageScore(reference=reference)
    assert coverage.kept == 0 and coverage.observe(np.array([0.0, 2.0])) == 0.0
    coverage.note_kept(np.array([0.0, 0.0]))
    # 8 units along each axis: variances 1 and 16 shrunk towards their average 8.5 by 0.1
    along_wide = coverage.observe(np.array([0.0, 8.0]))
    along_narrow = coverage.observe(np.array([8.0, 0.0]))
    assert along_wide == pytest.approx(8.0 / math.sqrt(0.9 * 16 + 0.85), rel=0.1)
    assert along_narrow == pytest.approx(8.0 / math.sqrt(0.9 * 1 + 0.85), rel=0.1)
    with pytest.raises(ValueError, match='2 frames'):
        CoverageScore(reference=reference[:1])

    ref_path, bank_path = tmp_path / 'ref.npy', tmp_path / 'bank.npy'
    np.save(ref_path, reference.astype(np.float32))
    config = paper_rule(keep_ratio=0.1, seed=1, frame_score='coverage', draw='threshold',
                           coverage_reference=str(ref_path), coverage_bank=str(bank_path))
    first_run = ImportanceSampler(config)
    seen = rng.normal(size=(300, 2)) * np.array([1.0, 4.0])
    kept = [x for i, x in enumerate(seen)
            if first_run.decide(i * FRAME_NS, 0.0, descriptor=x).kept]
    assert first_run.save_coverage_bank() == bank_path
    assert np.allclose(np.load(bank_path), np.array(kept), atol=1e-5)
    # the next run starts with those frames kept: a frame it kept is at distance 0
    second_run = ImportanceSampler(config)
    again = second_run.decide(0, 0.0, descriptor=kept[-1])
    assert again.importance == pytest.approx(0.0, abs=1e-4) and not again.kept
    fresh = ImportanceSampler(paper_rule(**{**config.__dict__, 'coverage_bank': ''}))
    assert fresh.decide(0, 0.0, descriptor=kept[-1]).kept  # empty bank: the first frame is kept
    assert fresh.save_coverage_bank() is None


def test_coverage_remembers_only_the_latest_kept_frames():
    from importance_sampler_ros.sampling.coverage import CoverageScore

    reference = np.random.default_rng(2).normal(size=(50, 2))
    coverage = CoverageScore(memory=2, reference=reference)
    far = [np.array([20.0, 0.0]), np.array([0.0, 20.0]), np.array([-20.0, 0.0])]
    for x in far:
        coverage.note_kept(x)
    assert coverage.kept == 2
    assert coverage.observe(far[2]) == pytest.approx(0.0, abs=1e-9)
    assert coverage.observe(far[1]) == pytest.approx(0.0, abs=1e-9)
    assert coverage.observe(far[0]) > 5.0  # pushed out of the bank by the third keep
    assert np.array_equal(coverage.bank(), np.array(far[1:]))  # oldest first


def test_threshold_draws_follow_the_keep_ratio_and_keep_the_highest_scores():
    rng = np.random.default_rng(8)
    g = rng.lognormal(0.0, 1.0, 20_000)
    sampler = ImportanceSampler(paper_rule(keep_ratio=0.05, draw='threshold', seed=0))
    decisions = [sampler.decide(i * FRAME_NS, x) for i, x in enumerate(g)]
    kept = np.array([d.kept for d in decisions])
    assert abs(kept.mean() - 0.05) < 0.005
    # no coin: kept frames have q = 1, dropped ones q = 0 (floor_probability)
    assert {d.probability for d in decisions} == {0.0, 1.0}
    top = g >= np.quantile(g, 0.95)
    assert (kept & top).sum() > 0.6 * top.sum()  # mostly the top 5 % (the threshold wanders)
    # a floor keeps every frame possible, with weight 1/floor
    floored = ImportanceSampler(paper_rule(keep_ratio=0.05, draw='threshold', seed=0,
                                              floor_probability=0.01))
    low = [floored.decide(i * FRAME_NS, x) for i, x in enumerate(g)]
    lucky = [d for d in low if d.kept and d.probability < 1.0]
    assert lucky and all(d.weight == pytest.approx(100.0) for d in lucky)


def test_threshold_coverage_keeps_each_new_scene_once_it_appears():
    rng = np.random.default_rng(3)
    sampler = ImportanceSampler(paper_rule(keep_ratio=0.05, seed=4, frame_score='coverage',
                                              draw='threshold'))
    # four scenes of 500 frames each, far apart; within a scene frames vary little
    scenes = [rng.normal(0.0, 0.3, size=(500, 8)) + 10.0 * np.eye(8)[k] for k in range(4)]
    kept = np.array([sampler.decide(i * FRAME_NS, 0.0, descriptor=x).kept
                     for i, x in enumerate(np.concatenate(scenes))])
    assert abs(kept.mean() - 0.05) < 0.02
    # the first frame of every new scene is farther from the kept set than any frame before it
    assert all(kept[500 * k] for k in range(4))


def test_uniform_frame_score_keeps_every_nth_frame_whatever_the_importance():
    rng = np.random.default_rng(2)
    sampler = ImportanceSampler(paper_rule(keep_ratio=0.1, seed=3, frame_score='uniform'))
    decisions = [sampler.decide(i * FRAME_NS, float(x))
                 for i, x in enumerate(rng.exponential(1.0, 1000))]
    kept = np.flatnonzero([d.kept for d in decisions])
    assert len(kept) == 100 and set(np.diff(kept)) == {10}
    assert all(d.weight == pytest.approx(10.0) for d in decisions if d.kept)


def test_an_unreadable_coverage_file_is_one_parameter_error(tmp_path):
    from importance_sampler_ros.params import ParameterError

    garbage = tmp_path / 'garbage.npy'
    garbage.write_text('not numpy')
    for name in ('coverage_reference', 'coverage_bank'):
        with pytest.raises(ParameterError, match=rf'^{name} .*garbage\.npy'):
            ImportanceSampler(paper_rule(frame_score='coverage', **{name: str(garbage)}))
    with pytest.raises(ParameterError, match=r'coverage_reference .*missing\.npy'):
        ImportanceSampler(paper_rule(frame_score='coverage',
                                        coverage_reference=str(tmp_path / 'missing.npy')))
    # a bank that does not exist yet is the first run's: it starts empty
    sampler = ImportanceSampler(paper_rule(frame_score='coverage',
                                              coverage_bank=str(tmp_path / 'new.npy')))
    assert sampler.coverage_bank_size == 0
