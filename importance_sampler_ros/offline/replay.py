"""`importance-sampler replay`: a recorded drive through detector, tracker and recorder, offline.

Writes the sampled bag exactly as the recorder node would (the same Recorder core), and a report
(report.json + plots) into the output directory. Parameters come from the same YAML file as the
nodes' and are checked the same way (registry.load): a value that does not fit is refused with one
line naming the node and the parameter.

Exit status: 0 done; 1 the replay could not start or finish, one line says why (unreadable bag,
--out a file or not empty, recording stopped, report not writable: disk full); 2 a bad parameter
or option (nothing written); 3 done on damaged input (MCAP chunks failing their CRC, a file cut
off, a garbage metadata.yaml): what could be read was replayed and the report names each damaged
byte range.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from importance_sampler_ros import registry
from importance_sampler_ros.bags.frames import GROUND_TRUTH_TOPIC, FrameSource, FrameSourceError
from importance_sampler_ros.offline.pipeline import DEFAULT_PARAMS_FILE, Pipeline, load_parameters
from importance_sampler_ros.offline.report import (
    FrameRecord,
    ReplayReport,
    detector_error_rates,
    situation_shares,
    write_report,
)
from importance_sampler_ros.params import ParameterError
from importance_sampler_ros.progress import Progress, add_progress_arguments, progress_mode
from importance_sampler_ros.recording.recorder import RecorderError
from importance_sampler_ros.sampling.sampler import relative_variance_curve

LOG = logging.getLogger('importance_sampler.replay')
EXIT_ERROR = 1
EXIT_BAD_PARAMETER = 2
EXIT_TRUNCATED = 3


@dataclass
class ReplayResult:
    report: ReplayReport
    report_path: Path
    exit_code: int
    frames: list[FrameRecord]  # every decided frame, in decision order


class ReplayError(RuntimeError):
    """A replay that cannot start or cannot finish; the message is the one line users see."""

    exit_code = EXIT_ERROR


class ReplayParameterError(ReplayError):
    """A parameter value (file or option) that does not fit: nothing was written."""

    exit_code = EXIT_BAD_PARAMETER


def replay_bag(input_bag: str | Path, output: str | Path, *,
               params_file: str | Path | None = None, image_topic: str | None = None,
               use_recorded_detections: bool = False, detections_topic: str | None = None,
               overrides: dict[str, dict[str, Any]] | None = None,
               progress: str = 'off') -> ReplayResult:
    """Replay one bag into `output` (a recording directory: splits, report.json, plots).

    `progress` is a mode of `importance_sampler_ros.progress.Progress` (auto, bar, plain, off).
    """
    input_bag, output = Path(input_bag), Path(output)
    try:
        params, ignored = load_parameters(params_file, overrides)
    except ParameterError as error:
        raise ReplayParameterError(str(error)) from None
    try:
        source = FrameSource(input_bag, image_topic=image_topic,
                             detections_topic=detections_topic,
                             use_recorded_detections=use_recorded_detections,
                             join_timeout_s=params['recorder_node']['join_timeout_s'])
    except (FrameSourceError, OSError) as error:
        raise ReplayError(str(error)) from None
    if ignored:
        LOG.debug('parameters replay does not use (ROS-only or undeclared): %s',
                  ', '.join(ignored))
    if output.exists() and not output.is_dir():
        raise ReplayError(f'--out {output} is a file, not a directory; choose another --out')
    if output.exists() and any(output.iterdir()):
        raise ReplayError(f'{output} exists and is not empty; choose another --out')
    if output.exists():
        output.rmdir()
    try:
        # kept images keep the name they came under, as recorder_node records its input topic
        pipeline = Pipeline(params, output, need_detector=not use_recorded_detections,
                            image_topic=source.image_topic)
    except (RecorderError, ValueError, RuntimeError) as error:
        raise ReplayError(str(error)) from None

    started = time.perf_counter()
    read_seconds = 0.0
    bar = Progress(source.image_count, desc='replay', unit='frame', mode=progress)
    frames = iter(source)
    try:
        while True:
            before = time.perf_counter()
            frame = next(frames, None)
            read_seconds += time.perf_counter() - before
            if frame is None:
                break
            pipeline.process(frame)
            bar.update(1, kept=pipeline.frames_kept)
    except RecorderError as error:
        raise ReplayError(f'recording stopped: {error}') from None
    finally:
        bar.close()
        pipeline.close()
    wall = time.perf_counter() - started

    records = pipeline.finished
    stats = pipeline.recorder.stats()
    report = ReplayReport(
        input_bag=str(input_bag), output_bag=str(output), image_topic=source.image_topic,
        frames_in=len(records), frames_kept=pipeline.frames_kept,
        bytes_in=sum(r.image_bytes for r in records),
        bytes_kept=int(stats['bytes_written']),
        relabel_events=pipeline.relabel_events,
        relabelled_observations=pipeline.relabelled_observations,
        frames_kept_by_relabel=sum(r.reason == 'relabel' for r in records),
        relabels_for_frames_gone=int(stats['relabel_observations_late']),
        keep_ratio_target=float(params['recorder_node']['keep_ratio']),
        seconds_of_drive=(records[-1].stamp_ns - records[0].stamp_ns) / 1e9 if records else 0.0,
        wall_seconds=wall,
        stage_seconds={'read': read_seconds, **pipeline.stage_seconds},
        truncated=source.truncated,
    )
    report.stage_seconds = {k: round(v, 3) for k, v in report.stage_seconds.items()}
    if records:
        # the recorder's own tally, so report.json and stats.json carry one value per name
        for key in ('relative_variance', 'relative_variance_uniform', 'expected_keep_ratio'):
            setattr(report, key, float(stats[key]))
    report.warnings = replay_warnings(records, source, use_recorded_detections)
    report.ground_truth = {}
    if pipeline.has_truth:
        report.ground_truth.update(detector_error_rates(records))
        shares = situation_shares(records)
        if shares:
            report.ground_truth['situation_shares_all_to_kept'] = shares
        report.ground_truth.update(pipeline.truth.summary())
    report.ground_truth.update(
        model=pipeline.model_name, stale_frames_skipped=pipeline.policy.counts.frames_stale,
        tracker_resets=pipeline.policy.counts.tracker_resets,
        images_skipped=pipeline.policy.counts.images_skipped,
        images_undecoded=pipeline.images_undecoded,
        frames_rejected=pipeline.frames_rejected,
        unmatched_images=source.unmatched_images,
        unmatched_detection_arrays=source.unmatched_detections)
    try:
        report_path = write_report(report, records, pipeline.examples, output,
                                   relative_variance_curve)
    except OSError as error:
        raise ReplayError(f'the sampled bag is complete, but the report could not be written '
                          f'into {output}: {error}') from None
    return ReplayResult(report, report_path, EXIT_TRUNCATED if source.truncated else 0, records)


def replay_warnings(records: list[FrameRecord], source: FrameSource,
                    use_recorded_detections: bool) -> list[str]:
    """Lines that explain a result that would otherwise look broken."""
    if not records or any(r.frame_importance > 0.0 for r in records):
        return []
    kept = sum(r.kept for r in records)
    why = ('the sampler cannot rank the frames and keeps little beyond the warm-up frames '
           '(q = rho for the first recorder_node.warmup_frames) and relabel frames')
    if use_recorded_detections:
        topic = source.detections_topic
        origin = ('ground truth, which carries no importance'
                  if topic == GROUND_TRUTH_TOPIC else 'detections without importance scores')
        return [f'every frame has importance 0 ({kept} of {len(records)} kept): the recorded '
                f'detections on {topic} are {origin}, so {why}; replay without '
                '--use-recorded-detections to score the frames with the detector']
    return [f'every frame has importance 0 ({kept} of {len(records)} kept): the detector found '
            f'nothing above its score threshold, so {why}; check detector_node.checkpoint and '
            'score_threshold']


def configure_replay_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('input_bag', type=Path, help='rosbag2 directory or file (mcap, sqlite3)')
    parser.add_argument('--out', type=Path, required=True,
                        help='output recording directory (must not exist or be empty)')
    parser.add_argument('--params', type=Path, default=None,
                        help='ROS 2 parameter YAML for all nodes (default: '
                             f'config/{DEFAULT_PARAMS_FILE.name})')
    parser.add_argument('--image-topic', default=None,
                        help="image topic (default: the bag's only sensor_msgs/Image topic)")
    parser.add_argument('--use-recorded-detections', action='store_true',
                        help='take detections from the bag instead of running the detector')
    parser.add_argument('--detections-topic', default=None,
                        help='DetectionArray topic for --use-recorded-detections (default: '
                             "the bag's only one that is not ground truth)")
    registry.add_override_arguments(parser, registry.OFFLINE_OVERRIDES, helps={
        'keep_ratio': "target keep ratio for this run (default: the parameter file's)",
        'checkpoint': "model weights (.pt) (default: the parameter file's: the shipped model)",
        'device': "cpu, cuda or cuda:N (default: the parameter file's)",
        'seed': 'seed of the sampling draws; the same seed gives the same decisions (default: '
                "the parameter file's, -1 = random)"})
    add_progress_arguments(parser)


def overrides_from_args(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """{node: {parameter: value}} of the override options given."""
    return registry.overrides_from_args(args, registry.OFFLINE_OVERRIDES)


def run_replay(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    try:
        result = replay_bag(
            args.input_bag, args.out, params_file=args.params, image_topic=args.image_topic,
            use_recorded_detections=args.use_recorded_detections,
            detections_topic=args.detections_topic, overrides=overrides_from_args(args),
            progress=progress_mode(args))
    except ReplayError as error:
        print(f'importance-sampler replay: error: {error}', file=sys.stderr)
        return error.exit_code
    for line in result.report.summary_lines():
        print(line)
    print(f'sampled bag: {result.report.output_bag}')
    print(f'report: {result.report_path} (every number with its meaning under "meanings")')
    for name, path in result.report.plots.items():
        print(f'plot {name}: {path}')
    for warning in result.report.warnings:
        print(f'importance-sampler replay: warning: {warning}', file=sys.stderr)
    if result.exit_code == EXIT_TRUNCATED:
        print(f'importance-sampler replay: error: partial input, replayed what could be read: '
              f'{result.report.truncated}', file=sys.stderr)
    return result.exit_code
