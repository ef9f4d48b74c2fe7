"""The importance sampler's parameters (recorder_node declares them; sampler.py documents the
method: q = min(1, keep_ratio * g / g_mean), weight 1/q)."""
from __future__ import annotations

from dataclasses import dataclass

from importance_sampler_ros.params import Settings, finite, param

DRAWS = ('independent', 'systematic', 'threshold')
# What g is: the detector's frame importance, or the coverage distance (sampling/coverage.py).
FRAME_SCORES = ('importance', 'coverage', 'uniform')


@dataclass(frozen=True)
class SamplerConfig(Settings):
    """The importance sampler: q = min(1, keep_ratio * g / g_mean), weight 1/q."""

    keep_ratio: float = param(0.1, 'Target keep ratio rho (the start value in byte-budget mode)',
                              min_value=1e-6, max_value=1.0)
    mean_window: int = param(300, 'Frames in the window estimating the mean frame importance',
                             min_value=1, max_value=1_000_000)
    warmup_frames: int = param(30, 'Frames during which q is not allowed below rho while g_mean '
                               'is learnt', min_value=0)
    rate_horizon_frames: int = param(
        300, 'Keep-ratio mode with the sliding window: frames over which the expected keeps (the '
        'sum of q) are steered back to keep_ratio per frame when they ran ahead or behind (the '
        'window mean lags when a hard episode starts; with sharpening that overspent 2 %% '
        'budgets by 30 %%); 0 = off', min_value=0, max_value=100_000_000)
    fixed_importance_mean: float = param(
        0.0, 'Fixed normaliser g_mean instead of the sliding window (e.g. a fleet-wide mean from '
        'a first pass; no warm-up then); 0 = sliding window', min_value=0.0, check=finite)
    floor_probability: float = param(0.0, 'Lowest keep probability of any frame (frames with '
                                     'zero importance included); 0 = off',
                                     min_value=0.0, max_value=1.0)
    keep_all: bool = param(False, "Keep every frame (reason 'forced', q = 1)")
    bytes_per_hour: float = param(0.0, 'Byte budget per hour of stream time; rho adapts to it; '
                                  '0 = keep-ratio mode', min_value=0.0, check=finite)
    budget_horizon_s: float = param(60.0, 'Seconds over which the byte budget spends a surplus '
                                    'or recovers a deficit', min_value=1e-3)
    budget_burst_s: float = param(30.0, 'Start credit of the byte budget in seconds of budget; '
                                  "beyond it frames are dropped with reason 'budget'",
                                  min_value=0.0)
    min_keep_ratio: float = param(0.001, 'Lowest rho the byte budget may choose',
                                  min_value=1e-6, max_value=1.0)
    min_gap_s: float = param(0.0, 'Redundancy control: a frame whose tracks were all kept less '
                             'than this many seconds ago is suppressed; 0 = off', min_value=0.0)
    redundancy_importance_ratio: float = param(
        2.0, 'A suppressed frame is kept after all when a track is this many times more '
        'important than at its last keep', min_value=1.0)
    redundancy_scale: float = param(0.0, 'Factor on q of a suppressed frame: 0 = never keep it; '
                                    'in (0, 1) rarely, with the matching larger weight',
                                    min_value=0.0, max_value=1.0)
    sharpness: float = param(2.0, "Sharpening exponent a: q = min(1, rho g^a / mean(g^a)); 1 = the "
                             "paper's rule, larger concentrates the keeps on the most important "
                             'frames (2: docs/measurements/frame_scores.md; 3 finds a little more '
                             "errors but leaves the paper's R at 1-2 % of uniform sampling's, "
                             'session 13)', min_value=0.01, max_value=8.0)
    relabel_keeps_in_budget: bool = param(
        True, 'Relabel keeps count against keep_ratio: the draws aim at keep_ratio minus the '
        'share of recent frames (mean_window) a relabel kept, at least min_keep_ratio (the byte '
        'budget charges relabel keeps anyway)')
    relabel_keep_share: float = param(
        0.0, 'Most share of keep_ratio that relabel keeps may take over the last mean_window '
        "frames; beyond it a relabel's frames are kept only if their coin keeps them. 0 (the "
        'default) = relabels name frames, and their frames are recorded with them when their '
        'coin keeps them, but never force-kept: force-keeps cost 0.4-0.5 mAP points of the '
        'retrained model on both measured pools (closed_loop_cpu.md, sessions 5-6); 1 = the '
        'whole budget', min_value=0.0, max_value=1.0)
    draw: str = param('systematic', "How the keep coins are thrown: 'independent' (one uniform "
                      "per frame) or 'systematic' (one uniform offset for the run: a frame is kept "
                      'when the running sum of q passes the next offset + k; each frame is still '
                      'kept with probability q, but keeps are spread out, about 1/rho frames '
                      "apart, and their number stays within 1 of the sum of q); 'threshold': no "
                      'coin, a frame is kept (q = 1) when its g exceeds a threshold that follows '
                      'the keep rate towards rho, else q = floor_probability (with a floor of 0 '
                      'the weights are not unbiased: a selection, not a sample)', choices=DRAWS)
    frame_score: str = param(
        'importance', "What the frame score g is: 'importance' (DetectionArray.frame_importance, "
        "the detector's scorer), 'coverage' (distance of the frame's descriptor to the nearest "
        "kept frame's, standardised; frames unlike everything kept so far score high) or "
        "'uniform' (g = 1: with systematic draws every (1/rho)-th frame, a fixed frame rate)",
        choices=FRAME_SCORES)
    coverage_reference: str = param(
        '', "Coverage: .npy of descriptors of the detector's training frames (importance-sampler "
        "coverage-reference); they whiten the descriptors; '' = none (running per-dimension "
        'standardisation)')
    coverage_bank: str = param(
        '', 'Coverage: .npy of the descriptors of frames kept before (earlier runs of this car, '
        'or the fleet): read at start when it exists, counted as kept, and rewritten with the '
        "latest coverage_memory kept frames when the recorder closes; '' = start empty each run")
    coverage_memory: int = param(2000, 'Coverage: how many of the latest kept frames a frame is '
                                 'compared with', min_value=1, max_value=100_000)
    seed: int = param(-1, 'Seed of the sampling draws; -1 = random', min_value=-1)
