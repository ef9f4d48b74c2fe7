"""The `importance-sampler` command line: one entry point, one subcommand per job.

The table below names, for each subcommand, the module that does the work, the function that
configures its parser (`(parser: argparse.ArgumentParser) -> None`) and the one that runs it
(`(args: argparse.Namespace) -> int`, the exit status).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, its parser-configuring function, its runner, one-line help). Modules are
# imported only when their subcommand runs, so `--help` stays fast and needs no torch.
_PKG = 'importance_sampler_ros'
SUBCOMMANDS: dict[str, tuple[str, str, str, str]] = {
    'synth': (f'{_PKG}.synth.bag', 'configure_synth_parser', 'run_synth',
              'write a synthetic drive (images + ground truth) to a bag'),
    'train': (f'{_PKG}.training.train', 'configure_train_parser', 'run_train',
              'train the default detector on synthetic drives'),
    'evaluate': (f'{_PKG}.training.train', 'configure_evaluate_parser', 'run_evaluate',
                 'mAP of a detector checkpoint by distance bin'),
    'replay': (f'{_PKG}.offline.replay', 'configure_replay_parser', 'run_replay',
               'run a bag through detector, tracker and sampler offline'),
    'replay-fleet': (f'{_PKG}.offline.fleet', 'configure_replay_fleet_parser', 'run_replay_fleet',
                     'replay every bag of a directory on Ray'),
    'bag-repair': (f'{_PKG}.recording.repair', 'configure_parser', 'run',
                   'recover what can be read of an unclosed bag split'),
    'coverage-reference': (f'{_PKG}.detection.coverage_reference', 'configure_parser', 'run',
                           "the detector's frame descriptors on its training frames (.npy)"),
    'select': (f'{_PKG}.offline.select', 'configure_parser', 'run',
               'pick the recorded frames to label: a k-center cover of their descriptors'),
    'closed-loop': (f'{_PKG}.closed_loop.experiment', 'configure_closed_loop_parser',
                    'run_closed_loop_command',
                    'does retraining on the kept frames beat retraining on random ones?'),
    'up': (f'{_PKG}.nodes.launcher', 'configure_up_parser', 'run_up',
           'start the three nodes as processes (ros2 launch stand-in)'),
    'play': (f'{_PKG}.nodes.player', 'configure_play_parser', 'run_play',
             "publish a bag's images (and ground truth) with rclpy"),
}


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends '(default: X)' where it says something: not for flags (False), not for None
    (the help then says what an absent option means), not where the help names its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ''
        if 'default' in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='importance-sampler',
        description='Keep only the camera frames worth retraining on.',
    )
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for name, (_module, _configure, _run, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        build_parser().parse_args(argv)  # prints usage / help and exits
        return 2
    name, rest = argv[0], argv[1:]
    module_name, configure_name, run_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f'importance-sampler {name}', description=help_text,
                                     formatter_class=DefaultsHelpFormatter)
    getattr(module, configure_name)(parser)
    return int(getattr(module, run_name)(parser.parse_args(rest)) or 0)


if __name__ == '__main__':
    sys.exit(main())
