"""The `importance-sampler` entry point: every registered subcommand is really there."""
import importlib
import subprocess
import sys

import pytest

from importance_sampler_ros.cli import SUBCOMMANDS


@pytest.mark.parametrize('name', sorted(SUBCOMMANDS))
def test_subcommand_module_provides_parser_and_runner(name):
    module_name, configure_name, run_name, _help = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    assert callable(getattr(module, configure_name))
    assert callable(getattr(module, run_name))


@pytest.mark.ros
def test_help_lists_every_subcommand_and_unknown_ones_fail():
    cli = [sys.executable, '-m', 'importance_sampler_ros.cli']
    done = subprocess.run([*cli, '--help'], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert all(name in done.stdout for name in SUBCOMMANDS)
    bad = subprocess.run([*cli, 'frobnicate'], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and 'invalid choice' in bad.stderr
