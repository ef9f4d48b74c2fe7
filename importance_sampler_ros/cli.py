"""The `importance-sampler` command line: one entry point, one subcommand per job.

Each subcommand lives in the module that does the work, which provides two functions named after
it (dashes become underscores): `configure_<name>_parser(parser: argparse.ArgumentParser) -> None`
and `run_<name>(args: argparse.Namespace) -> int` (the exit status). Modules are
imported only when their subcommand runs, so `--help` stays fast and needs no torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
_PKG = 'importance_sampler_ros'
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    'synth': (f'{_PKG}.synth', 'write a synthetic drive (images + ground truth) to a bag'),
    'train': (f'{_PKG}.train', 'train the default detector on synthetic drives'),
    'evaluate': (f'{_PKG}.train', 'mAP of a detector checkpoint by distance bin'),
    'replay': (f'{_PKG}.replay', 'run a bag through detector, tracker and sampler offline'),
    'replay-fleet': (f'{_PKG}.fleet', 'replay every bag of a directory on Ray'),
    'bag-repair': (f'{_PKG}.recorder', 'recover what can be read of an unclosed bag split'),
    'up': (f'{_PKG}.launcher', 'start the three nodes as processes (ros2 launch stand-in)'),
    'play': (f'{_PKG}.player', "publish a bag's images (and ground truth) with rclpy"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='importance-sampler',
        description='Keep only the camera frames worth retraining on.',
    )
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for name, (_module, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        build_parser().parse_args(argv)  # prints usage / help and exits
        return 2
    name, rest = argv[0], argv[1:]
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f'importance-sampler {name}', description=help_text)
    configure = getattr(module, f'configure_{name.replace("-", "_")}_parser', None)
    run = getattr(module, f'run_{name.replace("-", "_")}', None)
    if configure is None or run is None:
        print(f'importance-sampler: {name} is not available in this build', file=sys.stderr)
        return 2
    configure(parser)
    return int(run(parser.parse_args(rest)) or 0)


if __name__ == '__main__':
    sys.exit(main())
