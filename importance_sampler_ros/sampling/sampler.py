"""Importance sampling of frames: keep frame i with probability q_i = min(1, rho * g_i / g_mean).

g_i is the frame importance (DetectionArray.frame_importance), rho the target keep ratio (M/N in
the paper's eq. 5) and g_mean a running estimate of the mean importance. Every kept frame carries
the weight 1/q_i, so that sums over the kept set, weighted, estimate sums over all frames.

Why a sliding-window mean, and why it does not bias the weighted sums
--------------------------------------------------------------------
The Horvitz-Thompson sum  sum_kept g_i / q_i  is an unbiased estimate of sum_all g_i for *any*
q_i > 0 that is fixed before frame i's coin is thrown, even when q_i depends on earlier frames and
earlier coins: E[1{kept_i} / q_i | past] = 1 for every i, so the expectation of the sum is the
sum (a martingale argument; frames with g_i = 0 add nothing either way). So g_mean, the adapted
rho of the byte budget and the warm-up rule below change only *how many* frames are kept and the
variance, never the expectation of the weighted sums. The estimate of g_mean therefore only has
to be good enough to keep the realised keep ratio near rho. A window of the last `mean_window`
frames (the current one included) does that: every frame in it counts equally, it forgets a
scene change (city -> highway) in a known number of frames, and its memory is bounded. An EMA
would behave much the same; the window was chosen because its mean is the plain mean the paper's
formula assumes and its forgetting time is stated in frames.

Warm-up: over the first `warmup_frames` frames the window mean rests on few values, so
q = max(rho, min(1, rho * g / g_mean)): the sampler keeps at least the target ratio while it learns
the scale of g (a few more frames kept at start-up, never fewer).

Resuming (SamplerState, the recorder's `sampler_state` file): a car restarts the recorder every
drive, and a window learnt afresh each time keeps as many frames of a dull drive as of a hard one
and spends its warm-up on every start. A run can instead start from the window of g^a, the
relabel-keep share and the keep-rate lead the previous run ended with, when that run's g had the
same scale (detector model, scorer, aggregation) and rule (sharpness, frame score). The state is
fixed before this run's first coin, so the argument above holds unchanged.

`fixed_importance_mean` replaces the window by a known normaliser, e.g. the mean over a whole fleet
from a first pass (replay-fleet): then q is exactly the paper's q = min(1, rho g / g_mean) over
all frames, and a dull drive keeps fewer frames than a hard one.

Clipping at 1 keeps the expected keep ratio at or below rho when a few frames have g > g_mean/rho,
and a window mean that lags behind a rising g (the first seconds of a night episode) pushes it
above. The byte-budget mode corrects both through its feedback on the bytes kept. The keep-ratio
mode with the window steers the *expected* keeps: with Q the sum of the q so far and T the sum of
rho, q = min(1, c rho g / g_mean) with c = 1 + (T - Q) / (rho H) clipped to [1/4, 4] and H =
`rate_horizon_frames`. c depends on earlier q only, never on a coin, so q_i is still fixed before
frame i's coin (the weights stay unbiased, and systematic draws keep inclusion probabilities of
exactly q_i); the kept count then follows rho within a few frames per horizon.

Sharpening: with `sharpness` a != 1 the rule is applied to g^a instead of g, q = min(1,
rho g^a / mean(g^a)), the window (or fixed) mean being a mean of g^a. The argument above needs only
that q_i > 0 is fixed before frame i's coin, so the weights 1/q_i keep every weighted sum
unbiased for any a; a > 1 spends the budget on the frames with the largest g (closer to ranking),
a < 1 spreads it towards uniform. The SampleDecision still reports the frame's own g; its
importance_mean is then the mean of g^a.

Systematic draws (`draw: systematic`): instead of one uniform per frame, one uniform offset u is
drawn for the run and frame i is kept when the running sum Q_i = q_1 + ... + q_i passes a point
u + k (k integer), i.e. when (Q_{i-1}, Q_i] holds one. This is systematic sampling with
probabilities proportional to size (Madow 1949). Over u, the interval of length q_i <= 1 holds a
point with probability exactly q_i, so when the q sequence does not depend on the draws (keep-ratio
mode with the window or a fixed mean, and no redundancy control) every frame is kept with
probability q_i and the 1/q_i weights stay unbiased, by linearity of expectation, though the coins
are no longer independent. What it buys: two frames whose q add up to at most 1 are never both
kept, so a run of similar consecutive frames yields about one keep per 1/rho frames instead of a
random clump (consecutive near-duplicates were what ranking and independent coins over-select),
and the number of keeps differs from sum q by less than 1 (no binomial spread). Where q does
depend on earlier draws (the byte budget adapts rho to what was kept; redundancy control looks at
kept tracks) the inclusion probability is q_i only approximately; a test measures the weighted
sums' bias in both modes.

Threshold draws (`draw: threshold`): no coin. A frame is kept (q = 1) when its g^a exceeds a
threshold, else q = floor_probability; the threshold follows the keep rate (Robbins-Monro on its
logarithm: up by THRESHOLD_GAIN (1 - rho) / rho at a keep, down by THRESHOLD_GAIN at a drop), so
keeps settle at rho of the frames. With the coverage score this is the online cover: a frame is
kept when it is farther than the threshold from every kept frame. It is a choice, not a sample:
with floor_probability 0 the frames under the threshold can never be kept and the weights 1/q
estimate nothing; with a floor > 0 they do, approximately (q depends on earlier keeps, as above).

Relabel keeps inside the budget (`relabel_keeps_in_budget`, default on): the recorder keeps every
frame a relabel names (thinned by its relabel_keep_gap_s) whatever the coin said, on top of the
sampled ones; on drives with many relabels that doubled the keep ratio asked for (measured in the
closed loop: 132 frames kept at rho = 0.05 of 1200). With the option the draws aim at rho minus
the share of the last `mean_window` final frames that a relabel kept (at least min_keep_ratio), so
that sampled plus relabel keeps stay near rho. (In byte-budget mode relabel keeps are charged to
the byte budget like any keep, so its rho needs no such correction.) Which frames a relabel
names is the tracker's choice, not the coins', so this rho too is fixed before each coin (the
weights stay as argued above; the share lags by the recorder's buffer_seconds).

Relative variance (paper eq. 6-7): R = sum g^2 / sum (g^2 / q), in (0, 1]; 1 when every frame is
kept, rho for uniform sampling with q = rho, and larger is better (the variance of the weighted
sum relative to keeping everything).
"""
from __future__ import annotations

import io
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from importance_sampler_ros.files import write_atomically
from importance_sampler_ros.params import ParameterError
from importance_sampler_ros.sampling.config import SamplerConfig
from importance_sampler_ros.sampling.coverage import CoverageScore, load_reference

# The REASON_* constants of msg/SampleDecision.msg.
REASON_SAMPLED = 'sampled'
REASON_RELABEL = 'relabel'
REASON_FORCED = 'forced'
REASON_DROPPED = 'dropped'
REASON_BUDGET = 'budget'

_NS = 1_000_000_000
# Threshold draws: the threshold's log step per dropped frame (a keep steps up (1 - rho) / rho
# times as far): halving takes 35 drops, and after a scene change that lifts every score tenfold
# six keeps in a row (at rho = 0.05) bring the threshold up to it.
THRESHOLD_GAIN = 0.02
RATE_CORRECTION_RANGE = 4.0  # the keep-ratio steering changes rho by at most this factor


@dataclass(frozen=True)
class Decision:
    """The sampler's decision about one frame (the fields of msg/SampleDecision.msg)."""

    stamp_ns: int
    kept: bool
    probability: float
    weight: float
    reason: str
    importance: float
    importance_mean: float
    keep_ratio: float


@dataclass(frozen=True)
class SamplerState:
    """A run's learnt scale of g (ImportanceSampler.state); `matches` says whether another run
    may start from it: same scale name, sharpness and frame score."""

    scale: str
    sharpness: float
    frame_score: str
    window: np.ndarray  # g^a of the latest frames, oldest first
    relabel_share: np.ndarray  # 1 per relabel keep, 0 else, oldest first
    keep_lead: float  # expected keeps minus rho per frame, summed
    frames_seen: int

    def mismatch(self, scale: str, config: SamplerConfig) -> str:
        """Why a run with `scale` and `config` cannot start from this state ('' = it can)."""
        ours = (self.scale, self.sharpness, self.frame_score)
        theirs = (scale, config.sharpness, config.frame_score)
        if ours == theirs:
            return ''
        return f'learnt on (scale, sharpness, frame score) {ours}, this run is {theirs}'

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, scale=np.array(self.scale), sharpness=np.array(self.sharpness),
                 frame_score=np.array(self.frame_score), window=self.window,
                 relabel_share=self.relabel_share, keep_lead=np.array(self.keep_lead),
                 frames_seen=np.array(self.frames_seen), version=np.array(_STATE_VERSION))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> SamplerState:
        """ValueError for anything that is not a state file of this version."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as f:
                if int(f['version']) != _STATE_VERSION:
                    raise ValueError(f"state version {int(f['version'])}, expected "
                                     f'{_STATE_VERSION}')
                state = cls(str(f['scale']), float(f['sharpness']), str(f['frame_score']),
                            np.asarray(f['window'], np.float64),
                            np.asarray(f['relabel_share'], np.float64),
                            float(f['keep_lead']), int(f['frames_seen']))
        except (OSError, KeyError, EOFError, TypeError, ValueError) as error:
            raise ValueError(f'not a sampler state file ({error})') from None
        finite = np.all(np.isfinite(state.window)) and np.all(np.isfinite(state.relabel_share))
        if not finite or np.any(state.window < 0) or not math.isfinite(state.keep_lead):
            raise ValueError('sampler state holds non-finite or negative values')
        return state


_STATE_VERSION = 1


class _WindowMean:
    """Mean of the last `size` values, O(1) per update (re-summed now and then against drift)."""

    def __init__(self, size: int) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._sum = 0.0
        self._updates = 0

    def add(self, value: float) -> None:
        if len(self._values) == self._values.maxlen:
            self._sum -= self._values[0]
        self._values.append(value)
        self._sum += value
        self._updates += 1
        if self._updates % 4096 == 0:
            self._sum = math.fsum(self._values)

    @property
    def mean(self) -> float:
        return max(self._sum, 0.0) / len(self._values) if self._values else 0.0

    @property
    def values(self) -> list[float]:
        return list(self._values)


class _ByteBudget:
    """Adapts rho so that kept bytes follow `bytes_per_hour` of stream time.

    The allowance grows at the budget rate B from the first frame (plus a start credit); rho is
    set to spend the incoming byte rate's share B plus the balance (allowance - spent) spread over
    `horizon_s`. A negative balance means the credit is used up: frames are then dropped with
    reason 'budget' until the allowance catches up.
    """

    def __init__(self, config: SamplerConfig) -> None:
        self.rate = config.bytes_per_hour / 3600.0
        self.horizon_s = config.budget_horizon_s
        self.credit = self.rate * config.budget_burst_s
        self.min_rho = config.min_keep_ratio
        self.rho = config.keep_ratio
        self.start_ns: int | None = None
        self.latest_ns = 0
        self.spent = 0.0
        self._arrivals: deque[tuple[int, int]] = deque(maxlen=max(config.mean_window, 2))
        self._arrival_bytes = 0

    def observe(self, stamp_ns: int, nbytes: int) -> None:
        if self.start_ns is None:
            self.start_ns = stamp_ns
        self.latest_ns = max(self.latest_ns, stamp_ns)
        if len(self._arrivals) == self._arrivals.maxlen:
            self._arrival_bytes -= self._arrivals[0][1]
        self._arrivals.append((stamp_ns, nbytes))
        self._arrival_bytes += nbytes
        incoming = self._incoming_rate()
        if incoming > 0.0:
            wanted = (self.rate + self.balance / self.horizon_s) / incoming
            self.rho = min(1.0, max(self.min_rho, wanted))

    def _incoming_rate(self) -> float:
        """Bytes per second of stream time over the arrival window (0 until it spans time)."""
        n = len(self._arrivals)
        span_s = (self._arrivals[-1][0] - self._arrivals[0][0]) / _NS if n > 1 else 0.0
        if span_s <= 0.0:
            return 0.0
        # n arrivals span n - 1 frame intervals.
        return self._arrival_bytes * (n - 1) / n / span_s

    @property
    def balance(self) -> float:
        elapsed_s = (self.latest_ns - (self.start_ns or 0)) / _NS
        return self.credit + self.rate * elapsed_s - self.spent

    def charge(self, nbytes: int) -> None:
        self.spent += nbytes


class ImportanceSampler:
    """Decides, frame by frame, whether to keep it; see the module docstring for the rule."""

    def __init__(self, config: SamplerConfig | None = None) -> None:
        self.config = config or SamplerConfig()
        self._rng = np.random.default_rng(None if self.config.seed < 0 else self.config.seed)
        self._mean = _WindowMean(self.config.mean_window)
        self._relabel_share = _WindowMean(self.config.mean_window)
        self._budget = _ByteBudget(self.config) if self.config.bytes_per_hour > 0 else None
        self._frames_seen = 0
        # keep-ratio mode: the sums of rho and of q so far (rate_horizon_frames)
        self._target_keeps = 0.0
        self._expected_keeps = 0.0
        # systematic draws: the run's points sit at 1 - u + k; the phase is Q + u modulo 1 (drawn
        # only for them, so that independent draws keep their sequence for a given seed)
        self._phase = float(self._rng.random()) if self.config.draw == 'systematic' else 0.0
        # track id -> (stamp_ns, importance) of the track's detection in its latest kept frame
        self._track_keeps: dict[int, tuple[int, float]] = {}
        self.suppressed = 0
        # threshold draws: the keep threshold on g^a (None until the first positive g)
        self._threshold: float | None = None
        self._coverage = None
        if self.config.frame_score == 'coverage':
            self._coverage = self._coverage_score()

    def _coverage_score(self) -> CoverageScore:
        """The coverage score from its files; ParameterError (one line naming the parameter)
        for a file that cannot be read or does not fit."""
        config = self.config
        reference = self._descriptor_file('coverage_reference', missing_ok=False)
        bank = self._descriptor_file('coverage_bank', missing_ok=True)
        try:
            return CoverageScore(config.coverage_memory, reference, bank=bank)
        except ValueError as error:
            raise ParameterError(f'coverage_reference {config.coverage_reference!r} / '
                                 f'coverage_bank {config.coverage_bank!r}: {error}') from None

    def _descriptor_file(self, name: str, missing_ok: bool) -> np.ndarray | None:
        """The descriptors in the file parameter `name` names; None for '' (and for a file not
        written yet with `missing_ok`: a bank before its first run)."""
        path = getattr(self.config, name)
        if not path or (missing_ok and not Path(path).exists()):
            return None
        try:
            return load_reference(path)
        except (OSError, ValueError) as error:
            raise ParameterError(f'{name} {path!r}: not a descriptor file ({error})') from None

    @property
    def keep_ratio(self) -> float:
        """The current rho of the draws: adapted online in byte-budget mode (whose feedback
        already sees relabel keeps), else keep_ratio less the recent share of relabel keeps with
        relabel_keeps_in_budget."""
        if self._budget:
            return self._budget.rho  # relabel keeps are charged to the byte budget (note_kept)
        rho = self.config.keep_ratio
        if self.config.relabel_keeps_in_budget:
            rho = max(self.config.min_keep_ratio, rho - self._relabel_share.mean)
        return rho

    def allow_relabel_keep(self) -> bool:
        """Whether a relabel may keep one more frame: relabel keeps over the last mean_window
        final frames stay under relabel_keep_share of the keep ratio (of the byte budget's rho in
        that mode). Depends on earlier relabel keeps only, never on the coins."""
        base = self._budget.rho if self._budget else self.config.keep_ratio
        return self._relabel_share.mean < self.config.relabel_keep_share * base

    def note_final(self, relabel_keep: bool) -> None:
        """A frame's decision became final; `relabel_keep`: a relabel keeps it (whatever its
        coin said). Frames named by relabels are chosen by the tracker, not by the coins, so the
        share that follows stays fixed before each later coin."""
        self._relabel_share.add(1.0 if relabel_keep else 0.0)

    @property
    def importance_mean(self) -> float:
        return self.config.fixed_importance_mean or self._mean.mean

    def decide(
        self,
        stamp_ns: int,
        importance: float,
        nbytes: int = 0,
        track_ids: Sequence[int] | np.ndarray = (),
        track_importances: Sequence[float] | np.ndarray = (),
        descriptor: np.ndarray | None = None,
    ) -> Decision:
        """Throw the coin for one frame.

        `nbytes` is what keeping the frame costs (used by the byte budget, which it charges when
        the frame is kept). `track_ids` / `track_importances` are the frame's detections' track
        ids (0 = untracked) and importances, used by redundancy control. `descriptor`: the
        frame's descriptor (DetectionArray.frame_descriptor), required with frame_score
        'coverage', whose distance to the kept frames then replaces `importance` as g.
        """
        # with nothing kept yet every frame is equally far from the kept set: q = rho
        uncovered = False
        if self._coverage is not None:
            if descriptor is None or len(descriptor) == 0:
                raise ValueError("frame_score 'coverage' needs the frame's descriptor "
                                 '(DetectionArray.frame_descriptor is empty)')
            uncovered = self._coverage.kept == 0
            importance = self._coverage.observe(descriptor)
        if self.config.frame_score == 'uniform':
            importance = 1.0
        g = float(importance)
        if not math.isfinite(g) or g < 0.0:
            raise ValueError(f'frame importance must be finite and >= 0, got {importance!r}')
        self._frames_seen += 1
        sharpened = g if self.config.sharpness == 1.0 else g ** self.config.sharpness
        self._mean.add(sharpened)
        if self._budget:
            self._budget.observe(stamp_ns, nbytes)
        rho = self.keep_ratio
        g_mean = self.importance_mean

        def decision(kept: bool, q: float, weight: float, reason: str) -> Decision:
            return Decision(stamp_ns, kept, q, weight, reason, g, g_mean, rho)

        if self.config.keep_all:
            self._note_kept(stamp_ns, nbytes, track_ids, track_importances, descriptor)
            return decision(True, 1.0, 1.0, REASON_FORCED)

        if self.config.draw == 'threshold':
            over = uncovered or (self._threshold is not None and sharpened > self._threshold)
            q = 1.0 if over else self.config.floor_probability
        else:
            steered = rho * self._rate_correction(rho)
            q = min(1.0, steered * sharpened / g_mean) if g_mean > 0.0 else 0.0
            if uncovered or (self._frames_seen <= self.config.warmup_frames
                             and not self.config.fixed_importance_mean):
                q = max(q, rho)
            q = max(q, self.config.floor_probability)
        if self._is_redundant(stamp_ns, track_ids, track_importances):
            self.suppressed += 1
            q *= self.config.redundancy_scale
        self._target_keeps += rho
        self._expected_keeps += q
        if self._budget and self._budget.balance < 0.0:
            return decision(False, q, 0.0, REASON_BUDGET)
        kept = q > 0.0 and self._draw(q)
        if self.config.draw == 'threshold':
            self._follow_keep_rate(kept, sharpened, rho)
        if kept:
            self._note_kept(stamp_ns, nbytes, track_ids, track_importances, descriptor)
            return decision(True, q, 1.0 / q, REASON_SAMPLED)
        return decision(False, q, 0.0, REASON_DROPPED)

    def state(self, scale: str) -> SamplerState:
        """What this run learnt of g's scale, for the next run of the same car to start from
        (recorder sampler_state): the window of g^a, the relabel-keep share, the keep-rate lead.
        `scale` names what g was computed by (detector model, scorer, aggregation)."""
        return SamplerState(
            scale, self.config.sharpness, self.config.frame_score,
            np.array(self._mean.values, np.float64),
            np.array(self._relabel_share.values, np.float64),
            self._expected_keeps - self._target_keeps, self._frames_seen)

    def resume(self, state: SamplerState) -> None:
        """Start from an earlier run's state (before the first decide()): its window mean, no
        warm-up when it saw warmup_frames frames, and its keep-rate lead. The state is fixed
        before any coin of this run, so the weights stay unbiased (module docstring)."""
        if self._frames_seen:
            raise RuntimeError('resume() after the first decision')
        for value in state.window[-self.config.mean_window:]:
            self._mean.add(float(value))
        for value in state.relabel_share[-self.config.mean_window:]:
            self._relabel_share.add(float(value))
        self._frames_seen = state.frames_seen
        self._expected_keeps = state.keep_lead

    @property
    def coverage_bank_size(self) -> int:
        """Kept frames the coverage score compares with (0 without coverage)."""
        return self._coverage.kept if self._coverage is not None else 0

    def save_coverage_bank(self) -> Path | None:
        """Write the remembered kept descriptors to `coverage_bank` (atomically), for the next
        run to start from; None when there is no bank to write. Raises OSError."""
        if self._coverage is None or not self.config.coverage_bank:
            return None
        path = Path(self.config.coverage_bank)
        buffer = io.BytesIO()
        np.save(buffer, self._coverage.bank().astype(np.float32), allow_pickle=False)
        write_atomically(path, buffer.getvalue())
        return path

    def _rate_correction(self, rho: float) -> float:
        """Keep-ratio mode with the window: the factor on rho that pays back the expected keeps
        run ahead of (or behind) rho per frame over rate_horizon_frames (module docstring)."""
        horizon = self.config.rate_horizon_frames
        if (horizon == 0 or self._budget or self.config.fixed_importance_mean
                or self.config.draw == 'threshold'):
            return 1.0
        lead = self._expected_keeps - self._target_keeps
        return min(RATE_CORRECTION_RANGE, max(1.0 / RATE_CORRECTION_RANGE,
                                              1.0 - lead / (rho * horizon)))

    def _follow_keep_rate(self, kept: bool, sharpened: float, rho: float) -> None:
        """Threshold draws: a keep raises the threshold by THRESHOLD_GAIN (1 - rho) / rho in log
        terms, a drop lowers it by THRESHOLD_GAIN, so it settles where the keep rate is rho."""
        if self._threshold is None:
            if sharpened > 0.0:
                self._threshold = sharpened
            return
        step = ((1.0 if kept else 0.0) - rho) / rho
        self._threshold *= math.exp(THRESHOLD_GAIN * step)

    def _draw(self, q: float) -> bool:
        if self.config.draw == 'threshold' and q >= 1.0:
            return True  # over the threshold; below it only a floor_probability coin remains
        if self.config.draw in ('independent', 'threshold'):
            return bool(self._rng.random() < q)
        self._phase += q
        if self._phase >= 1.0:
            self._phase -= math.floor(self._phase)
            return True
        return False

    def note_kept(
        self,
        stamp_ns: int,
        nbytes: int,
        track_ids: Sequence[int] | np.ndarray = (),
        track_importances: Sequence[float] | np.ndarray = (),
        descriptor: np.ndarray | None = None,
    ) -> None:
        """Account for a frame kept for another reason than the draw (a relabel)."""
        self._note_kept(stamp_ns, nbytes, track_ids, track_importances, descriptor)

    def _note_kept(
        self,
        stamp_ns: int,
        nbytes: int,
        track_ids: Sequence[int] | np.ndarray,
        track_importances: Sequence[float] | np.ndarray,
        descriptor: np.ndarray | None = None,
    ) -> None:
        if self._budget:
            self._budget.charge(nbytes)
        if self._coverage is not None and descriptor is not None and len(descriptor):
            self._coverage.note_kept(descriptor)
        if self.config.min_gap_s <= 0.0:
            return
        track_g = _importances_for(track_ids, track_importances)
        for track_id, g in zip(track_ids, track_g, strict=True):
            if int(track_id) > 0:
                self._track_keeps[int(track_id)] = (stamp_ns, float(g))
        self._forget_old_tracks(stamp_ns)

    def _is_redundant(
        self,
        stamp_ns: int,
        track_ids: Sequence[int] | np.ndarray,
        track_importances: Sequence[float] | np.ndarray,
    ) -> bool:
        """All of the frame's detections belong to tracks kept < min_gap_s ago, none much
        more important now than then. Untracked detections (id 0) may be new objects: not
        redundant."""
        if self.config.min_gap_s <= 0.0 or len(track_ids) == 0:
            return False
        gap_ns = self.config.min_gap_s * _NS
        ratio = self.config.redundancy_importance_ratio
        track_g = _importances_for(track_ids, track_importances)
        for track_id, g in zip(track_ids, track_g, strict=True):
            last = self._track_keeps.get(int(track_id)) if int(track_id) > 0 else None
            if last is None or stamp_ns - last[0] >= gap_ns or g > ratio * last[1]:
                return False
        return True

    def _forget_old_tracks(self, stamp_ns: int) -> None:
        if len(self._track_keeps) < 1024:
            return
        gap_ns = self.config.min_gap_s * _NS
        self._track_keeps = {
            t: kept for t, kept in self._track_keeps.items() if stamp_ns - kept[0] < gap_ns
        }


def _importances_for(
    track_ids: Sequence[int] | np.ndarray, track_importances: Sequence[float] | np.ndarray
) -> Sequence[float] | np.ndarray:
    if len(track_importances) == 0:
        return np.zeros(len(track_ids))
    if len(track_importances) != len(track_ids):
        raise ValueError(
            f'{len(track_importances)} track importances for {len(track_ids)} track ids'
        )
    return track_importances


def relative_variance(importances: np.ndarray, probabilities: np.ndarray) -> float:
    """R = sum g^2 / sum(g^2 / q) (paper eq. 6-7) for keep probabilities q of frames with
    importances g.

    Frames with g = 0 add nothing to either sum. A frame with g > 0 and q = 0 makes the weighted
    sum unable to see it: R = 0. With no frame of g > 0 there is nothing to estimate: R = 1.
    """
    g = np.asarray(importances, np.float64)
    q = np.asarray(probabilities, np.float64)
    if g.shape != q.shape:
        raise ValueError(f'{g.shape} importances and {q.shape} probabilities')
    if np.any(q < 0.0) or np.any(q > 1.0):
        raise ValueError('probabilities must be in [0, 1]')
    g2 = g * g
    mask = g2 > 0.0
    if not mask.any():
        return 1.0
    if np.any(q[mask] == 0.0):
        return 0.0
    return float(g2[mask].sum() / (g2[mask] / q[mask]).sum())


def importance_probabilities(
    importances: np.ndarray, keep_ratio: float, floor_probability: float = 0.0
) -> np.ndarray:
    """q = max(floor, min(1, rho g / mean(g))) with the mean over the whole run (the offline
    ideal of the online sampler)."""
    g = np.asarray(importances, np.float64)
    mean = g.mean() if g.size else 0.0
    q = np.minimum(1.0, keep_ratio * g / mean) if mean > 0.0 else np.zeros_like(g)
    return np.maximum(q, floor_probability)


def relative_variance_curve(
    importances: np.ndarray, keep_ratios: Sequence[float] | np.ndarray
) -> dict[str, np.ndarray]:
    """R(M) over keep ratios, for importance sampling and for uniform sampling keeping the same
    expected number of frames (clipping q at 1 keeps a little less than rho: both use that
    expected ratio).

    Returns arrays of the keep ratios' length: 'keep_ratio' (rho), 'expected_keep_ratio'
    (mean q), 'importance' (R of q = min(1, rho g / mean g)) and 'uniform' (R of q = mean q).
    """
    g = np.asarray(importances, np.float64)
    rhos = np.asarray(keep_ratios, np.float64)
    expected = np.empty_like(rhos)
    r_importance = np.empty_like(rhos)
    r_uniform = np.empty_like(rhos)
    for i, rho in enumerate(rhos):
        q = importance_probabilities(g, float(rho))
        expected[i] = q.mean() if q.size else 0.0
        r_importance[i] = relative_variance(g, q)
        r_uniform[i] = relative_variance(g, np.full_like(g, expected[i]))
    return {
        'keep_ratio': rhos,
        'expected_keep_ratio': expected,
        'importance': r_importance,
        'uniform': r_uniform,
    }


class RelativeVarianceTally:
    """Running sums for R of a run: the sampler's q of every frame, and uniform sampling at the
    run's expected keep ratio (mean q)."""

    def __init__(self) -> None:
        self.frames = 0
        self.sum_q = 0.0
        self.sum_g2 = 0.0
        self.sum_g2_over_q = 0.0
        self.unseen = 0  # frames with g > 0 and q = 0

    def add(self, importance: float, probability: float) -> None:
        g2 = float(importance) ** 2
        self.frames += 1
        self.sum_q += probability
        self.sum_g2 += g2
        if g2 > 0.0:
            if probability > 0.0:
                self.sum_g2_over_q += g2 / probability
            else:
                self.unseen += 1

    def result(self) -> dict[str, float]:
        expected = self.sum_q / self.frames if self.frames else 0.0
        if self.sum_g2 == 0.0:
            r_run = r_uniform = 1.0
        else:
            r_run = 0.0 if self.unseen else self.sum_g2 / self.sum_g2_over_q
            r_uniform = expected
        return {
            'relative_variance': r_run,
            'relative_variance_uniform': r_uniform,
            'expected_keep_ratio': expected,
        }
