"""`importance-sampler replay-fleet`: every bag of a directory replayed as a Ray task.

Each bag goes through `replay.replay_bag` (the same core as `importance-sampler replay`) into
OUT_DIR/<bag name>/: the sampled recording, its report.json and plots. OUT_DIR/fleet_report.json
and fleet_*.png merge the bags (fleet_report.py).

Discovery (sorted, recursive, symlinks not followed, hidden entries and OUT_DIR skipped): a
directory holding metadata.yaml is one rosbag2 bag (not searched further; so each split of a split
recording is a bag of its own); a .mcap or .db3 file outside such a directory is one bag. The bag's
name is its path relative to INPUT_DIR, '/' replaced by '__', a file's suffix dropped unless that
would collide with another bag's name.

Two passes per bag. The first reads every frame's importance g: with --use-recorded-detections a
plain read of the recorded DetectionArrays; with the detector it is the inference itself, whose
detections are cached next to the images in OUT_DIR/.first_pass/<bag>/ (a rosbag2 copy of the
image topic plus detections; disk cost: the input's size until the bag is done), and the second
pass replays that cache with recorded detections, so inference runs once per frame. The second
pass samples. With --fleet-keep-ratio R the first passes of all bags finish first and the fleet
mean importance g_mean = sum g / N over every frame of every bag becomes the sampler's fixed
normaliser (recorder parameter fixed_importance_mean) at keep ratio R: q = min(1, R g / g_mean) (g
stands for g^a, a the recorder's sharpness: the first pass stores what the sampler normalises), so
a dull drive keeps fewer frames than a hard one and the fleet keeps about R N frames (the paper's
sum over all N frames, at fleet scale) plus the frames kept for relabels, which come on top.
Without it each bag is sampled on its own (sliding-window g_mean, the node's behaviour) and the
first pass only feeds the fleet's importance distribution. A bag completed in an earlier run
keeps the normaliser it was sampled with; the fleet report lists the bags whose normaliser has
drifted since (normaliser_drift).

Faults: anything a bag raises fails that bag alone (status 'failed' and the one-line reason in
the fleet report); a bag read up to damage is 'truncated'. A bag is complete when
OUT_DIR/<bag>/fleet_done.json exists (written last, atomically, after report.json and
frame_importances.npy) and names the same input (file sizes and mtimes) and the same settings;
re-running skips complete bags, redoes incomplete ones (their partial output is removed) and
fails bags whose output came from another input or other settings, rather than overwrite it.

Ray: without --ray-address a local Ray is started on loopback with --num-workers CPUs, no
dashboard, no usage stats. With an address (e.g. 'auto' or ray://head:10001) the tasks run on
that cluster: every node needs this package installed and INPUT_DIR / OUT_DIR at the same paths.
With --seed S every bag gets its own seed derived from S and the bag's name.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from importance_sampler_ros import registry
from importance_sampler_ros.bags import bag_io
from importance_sampler_ros.offline.fleet_report import (
    STATUS_FAILED,
    STATUS_OK,
    STATUS_TRUNCATED,
    fleet_totals,
    write_fleet_report,
    write_json_atomically,
)
from importance_sampler_ros.progress import Progress, add_progress_arguments, progress_mode

MARKER = 'fleet_done.json'
IMPORTANCES_FILE = 'frame_importances.npy'
CACHE_DIR = '.first_pass'
CACHE_DETECTIONS_TOPIC = '/fleet/first_pass/detections'
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TRUNCATED = 3
LOG = logging.getLogger('importance_sampler.fleet')


class FleetError(RuntimeError):
    """The fleet replay cannot run at all (no bags, bad settings, Ray unavailable)."""


@dataclass(frozen=True)
class FleetBag:
    name: str
    path: Path


@dataclass(frozen=True)
class FleetOptions:
    """What every task needs (sent to the workers)."""

    out_dir: Path
    params_file: Path | None = None
    image_topic: str | None = None
    detections_topic: str | None = None
    use_recorded_detections: bool = False
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    fleet_keep_ratio: float | None = None

    @property
    def sharpness(self) -> float:
        """The recorder's sharpening exponent a: the first pass keeps g^a, what the sampler's
        fixed normaliser must be the mean of."""
        from importance_sampler_ros.offline.pipeline import load_parameters

        return float(load_parameters(self.params_file, self.overrides)[0]['recorder_node']
                     ['sharpness'])

    @property
    def settings_id(self) -> str:
        """Fingerprint of everything that changes a bag's output except the fleet mean."""
        params = Path(self.params_file) if self.params_file else _default_params_file()
        settings = {
            'params': hashlib.sha256(params.read_bytes()).hexdigest() if params.exists() else '',
            'overrides': self.overrides, 'image_topic': self.image_topic,
            'detections_topic': self.detections_topic,
            'use_recorded_detections': self.use_recorded_detections,
            'fleet_keep_ratio': self.fleet_keep_ratio,
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class FirstPass:
    """Frame importances of one bag (and, with the detector, the cached detections)."""

    importances: np.ndarray
    truncated: str = ''
    cache: Path | None = None
    model: str = 'recorded detections'
    seconds: float = 0.0
    error: str = ''


def _default_params_file() -> Path:
    from importance_sampler_ros.offline.pipeline import DEFAULT_PARAMS_FILE

    return DEFAULT_PARAMS_FILE


# --- discovery ------------------------------------------------------------------------------

def discover_bags(input_dir: str | Path, exclude: str | Path | None = None) -> list[FleetBag]:
    """Every bag under `input_dir` (rules in the module docstring), sorted by name."""
    root = Path(input_dir).resolve()
    if not root.is_dir():
        raise FleetError(f'{input_dir} is not a directory')
    skip = Path(exclude).resolve() if exclude else None
    found: list[tuple[Path, bool]] = []  # (path, is a file)
    for directory, subdirs, files in os.walk(root):
        here = Path(directory)
        if 'metadata.yaml' in files:
            found.append((here, False))
            subdirs[:] = []
            continue
        subdirs[:] = sorted(d for d in subdirs
                            if not d.startswith('.') and (skip is None or here / d != skip))
        found += [(here / f, True) for f in sorted(files)
                  if f.endswith(bag_io.BAG_FILE_SUFFIXES) and not f.startswith('.')]
    bags = []
    short = [_bag_name(root, path, drop_suffix=is_file) for path, is_file in found]
    for (path, is_file), name in zip(found, short, strict=True):
        if is_file and short.count(name) > 1:
            name = _bag_name(root, path, drop_suffix=False)
        bags.append(FleetBag(name, path))
    return sorted(bags, key=lambda bag: bag.name)


def _bag_name(root: Path, path: Path, drop_suffix: bool) -> str:
    relative = path.relative_to(root)
    if drop_suffix:
        relative = relative.with_suffix('')
    return '__'.join(relative.parts) or root.name


def input_fingerprint(path: Path) -> str:
    """Sizes and modification times of the bag's files: changes when the input does ('' when
    they cannot be listed)."""
    try:
        files = sorted(p for p in path.rglob('*') if p.is_file()) if path.is_dir() else [path]
        listing = [(str(p.relative_to(path)) if path.is_dir() else p.name, p.stat().st_size,
                    p.stat().st_mtime_ns) for p in files]
    except OSError:
        return ''
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]


def bag_seed(seed: int, name: str) -> int:
    """A seed of its own for each bag, stable across runs and bag orders."""
    digest = hashlib.sha256(f'{seed}:{name}'.encode()).digest()
    return int.from_bytes(digest[:4], 'little') & 0x7FFF_FFFF


# --- the work of one bag (runs in a Ray worker) --------------------------------------------

def first_pass(bag: FleetBag, options: FleetOptions) -> FirstPass:
    """Frame importances of `bag`; never raises (a failure is returned in `error`)."""
    started = time.perf_counter()
    try:
        if options.use_recorded_detections:
            result = _recorded_importances(bag, options)
        else:
            result = _detect_and_cache(bag, options)
    except Exception as error:  # one bag's failure must not end the fleet
        return FirstPass(np.zeros(0), error=_one_line(error), seconds=time.perf_counter() - started)
    result.seconds = time.perf_counter() - started
    return result


def _recorded_importances(bag: FleetBag, options: FleetOptions) -> FirstPass:
    from importance_sampler_ros.bags.frames import FrameSource

    source = FrameSource(bag.path, image_topic=options.image_topic,
                         detections_topic=options.detections_topic, use_recorded_detections=True)
    importances = [frame.detections.frame_importance for frame in source]
    return FirstPass(np.asarray(importances, np.float64) ** options.sharpness,
                     truncated=source.truncated)


def _detect_and_cache(bag: FleetBag, options: FleetOptions) -> FirstPass:
    """Run the detector over the bag once, writing images + detections (+ ground truth) into a
    cache bag that the sampling pass replays with recorded detections."""
    from importance_sampler_ros.bags import bag_io
    from importance_sampler_ros.bags.frames import GROUND_TRUTH_TOPIC, FrameSource
    from importance_sampler_ros.bags.messages import detections_to_msg
    from importance_sampler_ros.detection.config import DetectorConfig
    from importance_sampler_ros.detection.detector import Detector
    from importance_sampler_ros.frame_policy import FramePolicy
    from importance_sampler_ros.offline.pipeline import load_parameters
    from importance_sampler_ros.registry import TrackerNodeSettings

    params, _ = load_parameters(options.params_file, options.overrides)
    source = FrameSource(bag.path, image_topic=options.image_topic,
                         join_timeout_s=params['recorder_node']['join_timeout_s'])
    detector = Detector(params['detector_node'].of(DetectorConfig))
    policy = FramePolicy.from_settings(params['tracker_node'].of(TrackerNodeSettings))
    cache = options.out_dir / CACHE_DIR / bag.name
    if cache.exists():
        shutil.rmtree(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    types = bag_io.msg_types()
    array_type = bag_io.msgtype('DetectionArray')
    importances = []
    with bag_io.BagWriter(cache) as writer:
        for frame in source:
            detected = policy.detect(detector, frame.image)
            if detected is None:  # skipped as detector_node skips it: not in the cache
                continue
            detections = detected[0]
            importances.append(detections.frame_importance)
            writer.write(source.image_topic, bag_io.IMAGE_TYPE, frame.stamp_ns, frame.image_cdr)
            writer.write(CACHE_DETECTIONS_TOPIC, array_type, frame.stamp_ns,
                         detections_to_msg(detections, types))
            if frame.truth is not None:
                writer.write(GROUND_TRUTH_TOPIC, array_type, frame.stamp_ns,
                             detections_to_msg(frame.truth, types))
    sharpness = float(params['recorder_node']['sharpness'])
    return FirstPass(np.asarray(importances, np.float64) ** sharpness,
                     truncated=source.truncated, cache=cache, model=detector.model_name)


def sample_bag(bag: FleetBag, options: FleetOptions, first: FirstPass,
               importance_mean: float | None) -> dict[str, Any]:
    """The sampling pass: `replay_bag` into OUT_DIR/<bag>, then the completion marker. With
    `importance_mean` the sampler uses it as fixed g_mean at the fleet keep ratio. Never raises."""
    outcome = _outcome(bag, options)
    outcome['first_pass_seconds'] = round(first.seconds, 3)
    if first.error:
        return _failed(outcome, first.error)
    outcome['importance_mean'] = float(first.importances.mean()) if len(first.importances) else 0.0
    started = time.perf_counter()
    out = Path(outcome['output'])
    try:
        if out.exists():  # an interrupted earlier run (complete ones never get here)
            shutil.rmtree(out)
        result = _replay(bag, options, first, importance_mean, out)
        report = result.report
        truncated = first.truncated or report.truncated
        outcome.update(
            status=STATUS_TRUNCATED if truncated else STATUS_OK, reason=truncated,
            frames_in=report.frames_in, frames_kept=report.frames_kept,
            keep_ratio=report.keep_ratio, keep_ratio_target=report.keep_ratio_target,
            frames_kept_by_relabel=report.frames_kept_by_relabel, bytes_in=report.bytes_in,
            bytes_kept=report.bytes_kept, seconds_of_drive=report.seconds_of_drive,
            importance_mean_used=importance_mean, report=str(result.report_path),
            sample_seconds=round(time.perf_counter() - started, 3),
        )
        _annotate_report(result.report_path, bag, first, outcome)
        np.save(out / IMPORTANCES_FILE, first.importances)
        write_json_atomically(out / MARKER, outcome)  # last: the bag is complete
    except Exception as error:  # ReplayError, whatever a damaged bag makes rosbags raise, OSError
        return _failed(outcome, _one_line(error))
    finally:
        if first.cache is not None:
            shutil.rmtree(first.cache, ignore_errors=True)
    return outcome


def _replay(bag: FleetBag, options: FleetOptions, first: FirstPass,
            importance_mean: float | None, out: Path) -> Any:
    from importance_sampler_ros.offline.pipeline import load_parameters
    from importance_sampler_ros.offline.replay import replay_bag

    overrides = {node: dict(values) for node, values in options.overrides.items()}
    recorder = overrides.setdefault('recorder_node', {})
    # bags replay in parallel and in any order: a sampler state carried from one to the next
    # would make each bag's keeps depend on the schedule (the fleet-wide mean is the fleet's
    # shared scale)
    recorder['sampler_state'] = ''
    if importance_mean is not None:
        recorder.update(keep_ratio=options.fleet_keep_ratio,
                        fixed_importance_mean=importance_mean)
    seed = load_parameters(options.params_file, overrides)[0]['recorder_node']['seed']
    if seed >= 0:
        recorder['seed'] = bag_seed(seed, bag.name)
    if first.cache is not None:
        return replay_bag(first.cache, out, params_file=options.params_file,
                          use_recorded_detections=True, detections_topic=CACHE_DETECTIONS_TOPIC,
                          overrides=overrides)
    return replay_bag(bag.path, out, params_file=options.params_file,
                      image_topic=options.image_topic,
                      use_recorded_detections=options.use_recorded_detections,
                      detections_topic=options.detections_topic, overrides=overrides)


def _annotate_report(path: Path, bag: FleetBag, first: FirstPass, outcome: dict) -> None:
    """The bag's report.json names the original input (not the cache) and says how the fleet
    sampled it."""
    report = json.loads(path.read_text())
    report['fleet'] = {
        'bag_name': bag.name, 'importance_mean_used': outcome['importance_mean_used'],
        'normaliser': 'fleet mean' if outcome['importance_mean_used'] else 'sliding window',
        'first_pass_seconds': outcome['first_pass_seconds'],
    }
    if first.cache is not None:
        report['fleet']['replayed_from_first_pass_cache'] = str(first.cache)
        report['input_bag'] = str(bag.path)
        report['truncated'] = report.get('truncated') or first.truncated
        report.setdefault('ground_truth', {})['model'] = first.model
        stages = report.setdefault('stage_seconds', {})
        stages.pop('recorded detections', None)
        stages['detector (first pass)'] = round(first.seconds, 3)
    write_json_atomically(path, report)


def process_bag(bag: FleetBag, options: FleetOptions) -> dict[str, Any]:
    """Both passes in one task (no fleet normaliser to wait for)."""
    first = first_pass(bag, options)
    outcome = sample_bag(bag, options, first, None)
    outcome['_importances'] = first.importances
    return outcome


def _outcome(bag: FleetBag, options: FleetOptions) -> dict[str, Any]:
    return {
        'name': bag.name, 'input': str(bag.path), 'output': str(options.out_dir / bag.name),
        'status': STATUS_FAILED, 'reason': '', 'skipped': False,
        'input_fingerprint': input_fingerprint(bag.path),
        'settings_id': options.settings_id,
    }


def _failed(outcome: dict[str, Any], reason: str) -> dict[str, Any]:
    outcome.update(status=STATUS_FAILED, reason=reason)
    return outcome


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    message = text[-1] if type(error).__name__.startswith('Ray') and text else (
        text[0] if text else '')
    return f'{type(error).__name__}: {message}' if message else type(error).__name__


# --- completeness ---------------------------------------------------------------------------

def earlier_output(bag: FleetBag, options: FleetOptions) -> tuple[str, dict[str, Any] | None]:
    """('absent' | 'incomplete' | 'complete' | 'foreign', the marker when there is one)."""
    out = options.out_dir / bag.name
    if not out.exists():
        return 'absent', None
    try:
        marker = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return 'incomplete', None
    if not (out / IMPORTANCES_FILE).exists() or not Path(marker.get('report', '')).exists():
        return 'incomplete', None
    same = (marker.get('input_fingerprint') == input_fingerprint(bag.path)
            and marker.get('settings_id') == options.settings_id)
    return ('complete' if same else 'foreign'), marker


# --- the driver -----------------------------------------------------------------------------

@dataclass
class FleetResult:
    report: dict[str, Any]
    report_path: Path

    @property
    def exit_code(self) -> int:
        totals = self.report['totals']
        if totals[STATUS_FAILED]:
            return EXIT_FAILED
        return EXIT_TRUNCATED if totals[STATUS_TRUNCATED] else 0


def start_ray(address: str | None, num_workers: int | None) -> bool:
    """Connect to `address` or start a quiet local Ray; False if Ray was already running in this
    process (then the caller must not shut it down)."""
    os.environ.setdefault('RAY_USAGE_STATS_ENABLED', '0')
    import ray

    if ray.is_initialized():
        return False
    common = dict(logging_level=logging.ERROR, log_to_driver=False)
    try:
        if address:
            ray.init(address=address, **common)
        else:
            ray.init(num_cpus=num_workers or os.cpu_count() or 1, include_dashboard=False,
                     _node_ip_address='127.0.0.1', **common)
    except Exception as error:  # Ray raises ConnectionError, RuntimeError, ValueError, ...
        raise FleetError(f'cannot start Ray ({address or "local"}): {_one_line(error)}') from None
    return True


def run_fleet(input_dir: str | Path, out_dir: str | Path, *, ray_address: str | None = None,
              num_workers: int | None = None, fleet_keep_ratio: float | None = None,
              params_file: str | Path | None = None, image_topic: str | None = None,
              use_recorded_detections: bool = False, detections_topic: str | None = None,
              overrides: dict[str, dict[str, Any]] | None = None,
              gpus_per_task: float | None = None,
              echo: Callable[[str], None] = print, progress: str = 'off') -> FleetResult:
    """Replay every bag under `input_dir` into `out_dir` on Ray; see the module docstring.

    `gpus_per_task`: GPUs Ray reserves for each task that runs the detector (fractions share a
    GPU); default 1 with detector device cuda, else 0. Ray hides the GPUs from tasks that reserve
    none, so --device cuda needs it. `progress`: a mode of `progress.Progress`, counting bags."""
    started = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    options = FleetOptions(
        out_dir=out_dir, params_file=Path(params_file).resolve() if params_file else None,
        image_topic=image_topic, detections_topic=detections_topic,
        use_recorded_detections=use_recorded_detections,
        overrides={node: dict(values) for node, values in (overrides or {}).items() if values},
        fleet_keep_ratio=fleet_keep_ratio)
    detector_device = _check_settings(options, num_workers)
    if use_recorded_detections:
        gpus_per_task = 0.0
    elif gpus_per_task is None:
        gpus_per_task = 1.0 if detector_device.startswith('cuda') else 0.0
    if gpus_per_task < 0.0:
        raise FleetError('--gpus-per-task must be >= 0')
    bags = discover_bags(input_dir, exclude=out_dir)
    if not bags:
        raise FleetError(f'no bags under {input_dir} (a directory with metadata.yaml, or a '
                         f'{" / ".join(bag_io.BAG_FILE_SUFFIXES)} file)')
    out_dir.mkdir(parents=True, exist_ok=True)

    outcomes: dict[str, dict[str, Any]] = {}
    importances: dict[str, np.ndarray] = {}
    todo: list[FleetBag] = []
    for bag in bags:
        state, marker = earlier_output(bag, options)
        if state == 'complete':
            outcomes[bag.name] = dict(marker, skipped=True)
            importances[bag.name] = np.load(options.out_dir / bag.name / IMPORTANCES_FILE)
            echo(f'{bag.name}: output complete from an earlier run, skipped')
        elif state == 'foreign':
            outcomes[bag.name] = _failed(_outcome(bag, options), (
                f'{options.out_dir / bag.name} holds the output of another input or other '
                'settings; remove it or choose another --out'))
            echo(f'{bag.name}: failed: {outcomes[bag.name]["reason"]}')
        else:
            todo.append(bag)
    echo(f'{len(bags)} bags, {len(todo)} to replay, {len(bags) - len(todo)} settled')

    fleet_mean = _fleet_mean(importances)
    timing = {'first_pass_seconds': 0.0, 'sampling_seconds': 0.0}
    if todo:
        started_ray = start_ray(ray_address, num_workers)
        try:
            _check_gpus(gpus_per_task)
            fleet_mean = _run_passes(todo, options, num_workers, gpus_per_task, outcomes,
                                     importances, timing, echo, progress)
        finally:
            if started_ray:
                import ray

                ray.shutdown()

    ordered = [outcomes[bag.name] for bag in bags]
    report = {
        'input_dir': str(Path(input_dir).resolve()), 'out_dir': str(out_dir),
        'ray_address': ray_address or 'local', 'num_workers': num_workers,
        'settings_id': options.settings_id, 'use_recorded_detections': use_recorded_detections,
        'fleet_keep_ratio': fleet_keep_ratio,
        'normaliser': 'fleet mean' if fleet_keep_ratio else 'sliding window per bag',
        'importance_mean_fleet': fleet_mean,
        'totals': fleet_totals(ordered, list(importances.values()), fleet_keep_ratio, fleet_mean),
        'wall_seconds': round(time.perf_counter() - started, 3),
        **{k: round(v, 3) for k, v in timing.items()},
        'normaliser_drift': _normaliser_drift(ordered, fleet_mean, fleet_keep_ratio),
        'bags': [{k: v for k, v in o.items() if not k.startswith('_')} for o in ordered],
    }
    path = write_fleet_report(report, ordered, importances, out_dir)
    shutil.rmtree(out_dir / CACHE_DIR, ignore_errors=True)
    return FleetResult(report, path)


def _check_settings(options: FleetOptions, num_workers: int | None) -> str:
    """Refuse bad settings before any work; returns the detector's device."""
    from importance_sampler_ros.offline.pipeline import load_parameters
    from importance_sampler_ros.params import ParameterError

    if num_workers is not None and num_workers < 1:
        raise FleetError('--num-workers must be >= 1')
    ratio = options.fleet_keep_ratio
    if ratio is not None:
        if not 0.0 < ratio <= 1.0:
            raise FleetError('--fleet-keep-ratio must be in (0, 1]')
        if 'keep_ratio' in options.overrides.get('recorder_node', {}):
            raise FleetError('--fleet-keep-ratio and --keep-ratio exclude each other')
    try:
        params, _ = load_parameters(options.params_file, options.overrides)
    except (ParameterError, OSError, ValueError) as error:
        raise FleetError(str(error)) from None
    return str(params['detector_node']['device'])


def _check_gpus(gpus_per_task: float) -> None:
    """A task asking for more GPUs than the cluster has would wait forever: refuse it."""
    import ray

    available = ray.cluster_resources().get('GPU', 0.0)
    if gpus_per_task > available:
        raise FleetError(f'each detector task needs {gpus_per_task:g} GPU(s) but the Ray cluster '
                         f'has {available:g} (detector device cuda, or --gpus-per-task)')


def _run_passes(todo: list[FleetBag], options: FleetOptions, num_workers: int | None,
                gpus_per_task: float,
                outcomes: dict[str, dict[str, Any]], importances: dict[str, np.ndarray],
                timing: dict[str, float], echo: Callable[[str], None],
                progress: str = 'off') -> float:
    """Submit the bags' tasks; fills `outcomes` and `importances`; returns the fleet mean."""
    limit = num_workers or len(todo)
    done_count = [0]
    bar = Progress(len(todo), desc='replay-fleet', unit='bag', mode=progress)
    say = bar.write if echo is print else echo

    def report_bag(outcome: dict[str, Any]) -> None:
        done_count[0] += 1
        outcomes[outcome['name']] = outcome
        detail = (f'{outcome["frames_kept"]} of {outcome["frames_in"]} frames kept'
                  if outcome['status'] != STATUS_FAILED else outcome['reason'])
        say(f'[{done_count[0]}/{len(todo)}] {outcome["name"]}: {outcome["status"]}: {detail}')
        bar.update(1)

    try:
        return _passes(todo, options, limit, gpus_per_task, importances, timing, say,
                       report_bag, bar)
    finally:
        bar.close()


def _passes(todo: list[FleetBag], options: FleetOptions, limit: int, gpus_per_task: float,
            importances: dict[str, np.ndarray], timing: dict[str, float],
            echo: Callable[[str], None], report_bag: Callable[[dict[str, Any]], None],
            bar: Any) -> float:
    import ray

    started = time.perf_counter()
    if options.fleet_keep_ratio is None:
        task = ray.remote(num_cpus=1, num_gpus=gpus_per_task, max_retries=1)(process_bag)
        for bag, outcome in _in_parallel(task, todo, options, limit):
            if isinstance(outcome, BaseException):
                outcome = _failed(_outcome(bag, options), _one_line(outcome))
            array = outcome.pop('_importances', None)
            if array is not None and len(array):
                importances[bag.name] = array
            report_bag(outcome)
        timing['sampling_seconds'] = time.perf_counter() - started
        return _fleet_mean(importances)

    first_task = ray.remote(num_cpus=1, num_gpus=gpus_per_task, max_retries=1)(first_pass)
    firsts: dict[str, FirstPass] = {}
    for bag, first in _in_parallel(first_task, todo, options, limit):
        if isinstance(first, BaseException):
            first = FirstPass(np.zeros(0), error=_one_line(first))
        firsts[bag.name] = first
        if not first.error and len(first.importances):
            importances[bag.name] = first.importances
        echo(f'first pass {len(firsts)}/{len(todo)} {bag.name}: '
             + (f'failed: {first.error}' if first.error else f'{len(first.importances)} frames'))
        bar.update(0, first_pass=f'{len(firsts)}/{len(todo)}')
    timing['first_pass_seconds'] = time.perf_counter() - started
    fleet_mean = _fleet_mean(importances)
    to_sample = []
    for bag in todo:
        reason = firsts[bag.name].error or ('' if fleet_mean > 0.0 else (
            'every frame of the fleet has importance 0: no normaliser for --fleet-keep-ratio'))
        if reason:
            report_bag(_failed(_outcome(bag, options), reason))
        else:
            to_sample.append(bag)
    if to_sample:
        echo(f'fleet mean importance {fleet_mean:.6g} over '
             f'{sum(len(a) for a in importances.values())} frames')
    started = time.perf_counter()
    sample_task = ray.remote(num_cpus=1, max_retries=1)(sample_bag)
    for bag, outcome in _in_parallel(sample_task, to_sample, options, limit,
                                     extra=lambda bag: (firsts[bag.name], fleet_mean)):
        if isinstance(outcome, BaseException):
            outcome = _failed(_outcome(bag, options), _one_line(outcome))
        report_bag(outcome)
    timing['sampling_seconds'] = time.perf_counter() - started
    return fleet_mean


def _in_parallel(task: Any, bags: list[FleetBag], options: FleetOptions, limit: int,
                 extra: Callable[[FleetBag], tuple] = lambda bag: ()) -> Iterable[tuple]:
    """(bag, result or the exception Ray raised) as tasks finish, at most `limit` in flight."""
    import ray

    queue = list(bags)
    running: dict[Any, FleetBag] = {}
    while queue or running:
        while queue and len(running) < limit:
            bag = queue.pop(0)
            running[task.remote(bag, options, *extra(bag))] = bag
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            bag = running.pop(ref)
            try:
                yield bag, ray.get(ref)
            except Exception as error:  # a worker that died, a task Ray could not run
                yield bag, error


def _fleet_mean(importances: dict[str, np.ndarray]) -> float:
    frames = sum(len(a) for a in importances.values())
    return float(sum(a.sum() for a in importances.values()) / frames) if frames else 0.0


def _normaliser_drift(outcomes: list[dict[str, Any]], fleet_mean: float,
                      fleet_keep_ratio: float | None) -> list[str]:
    """Bags sampled in an earlier run with a fleet mean that has changed since (new bags)."""
    if not fleet_keep_ratio or fleet_mean <= 0.0:
        return []
    return [o['name'] for o in outcomes
            if o.get('importance_mean_used')
            and abs(o['importance_mean_used'] / fleet_mean - 1.0) > 0.01]


# --- command line ---------------------------------------------------------------------------

def configure_replay_fleet_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('input_dir', type=Path, help='directory searched for bags (recursively)')
    parser.add_argument('--out', type=Path, required=True,
                        help='output directory: one recording per bag + fleet_report.json')
    parser.add_argument('--ray-address', default=None,
                        help='Ray cluster to run on (default: start a local Ray)')
    parser.add_argument('--num-workers', type=int, default=None,
                        help='bags processed at once (local Ray: its CPUs; default: all cores)')
    parser.add_argument('--fleet-keep-ratio', type=float, default=None,
                        help='global budget: keep ratio over the whole fleet, normalised by the '
                             'fleet-wide mean importance, two passes (default: none, each bag '
                             'sampled on its own)')
    parser.add_argument('--params', type=Path, default=None,
                        help='ROS 2 parameter YAML for all nodes (default: '
                             'config/importance_sampler.yaml)')
    parser.add_argument('--image-topic', default=None,
                        help="image topic of the bags (default: each bag's only image topic)")
    parser.add_argument('--use-recorded-detections', action='store_true',
                        help='take detections from the bags instead of running the detector')
    parser.add_argument('--detections-topic', default=None,
                        help='DetectionArray topic for --use-recorded-detections (default: '
                             "each bag's only one that is not ground truth)")
    registry.add_override_arguments(parser, registry.OFFLINE_OVERRIDES, helps={
        'keep_ratio': "target keep ratio, per bag (default: the parameter file's)",
        'checkpoint': "model weights (.pt) (default: the parameter file's)",
        'device': "cpu, cuda or cuda:N (default: the parameter file's)",
        'seed': 'sampling seed, each bag derives its own from it (default: the parameter '
                "file's recorder_node.seed, -1 = random)"})
    parser.add_argument('--gpus-per-task', type=float, default=None,
                        help='GPUs reserved per detector task, fractions share one (default: 1 '
                             'with --device cuda, else 0)')
    add_progress_arguments(parser)


def run_replay_fleet(args: argparse.Namespace) -> int:
    from importance_sampler_ros.offline.replay import overrides_from_args

    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    try:
        result = run_fleet(
            args.input_dir, args.out, ray_address=args.ray_address, num_workers=args.num_workers,
            fleet_keep_ratio=args.fleet_keep_ratio, params_file=args.params,
            image_topic=args.image_topic, use_recorded_detections=args.use_recorded_detections,
            detections_topic=args.detections_topic, overrides=overrides_from_args(args),
            gpus_per_task=args.gpus_per_task, progress=progress_mode(args))
    except FleetError as error:
        print(f'importance-sampler replay-fleet: error: {error}', file=sys.stderr)
        return EXIT_USAGE
    report = result.report
    totals = report['totals']
    print(f'bags: {totals["bags"]} ({totals[STATUS_OK]} ok, {totals[STATUS_TRUNCATED]} '
          f'truncated, {totals[STATUS_FAILED]} failed, {totals["skipped_complete"]} skipped as '
          'complete)')
    print(f'frames in / kept: {totals["frames_in"]} / {totals["frames_kept"]} '
          f'({totals["frames_kept_by_relabel"]} of them for relabels; keep ratio '
          f'{totals["keep_ratio"]:.3f}'
          + (f', fleet target {report["fleet_keep_ratio"]:g}, expected '
             f'{totals["expected_keep_ratio"]:.3f})' if report['fleet_keep_ratio'] else ')'))
    print(f'wall time: {report["wall_seconds"]:.1f} s')
    for bag in report['bags']:
        if bag['status'] != STATUS_OK:
            print(f'{bag["name"]}: {bag["status"]}: {bag["reason"]}', file=sys.stderr)
    if report['normaliser_drift']:
        print('note: the fleet mean changed since these bags were sampled (re-run them in a new '
              f'--out to resample): {", ".join(report["normaliser_drift"])}', file=sys.stderr)
    print(f'fleet report: {result.report_path}')
    return result.exit_code
