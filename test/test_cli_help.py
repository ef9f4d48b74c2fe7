"""`--help` of every subcommand: every option explained, defaults shown where they say something."""
import argparse

import pytest

from importance_sampler_ros import cli


def subcommand_parser(name: str) -> argparse.ArgumentParser:
    import importlib

    module_name, configure, _, help_text = cli.SUBCOMMANDS[name]
    parser = argparse.ArgumentParser(prog=f'importance-sampler {name}', description=help_text,
                                     formatter_class=cli.DefaultsHelpFormatter)
    getattr(importlib.import_module(module_name), configure)(parser)
    return parser


@pytest.mark.parametrize('name', sorted(cli.SUBCOMMANDS))
def test_every_option_has_help_and_no_empty_default(name):
    parser = subcommand_parser(name)
    for action in parser._actions:
        assert action.help and len(action.help) > 5, f'{name} {action.option_strings}: no help'
    text = parser.format_help()
    assert '(default: None)' not in text and '(default: False)' not in text


def test_defaults_shown_once_and_params_described_alike():
    replay = subcommand_parser('replay').format_help()
    assert '(default: auto)' in replay
    for name in ('replay', 'replay-fleet', 'up'):
        text = ' '.join(subcommand_parser(name).format_help().split())
        assert ('--params PARAMS ROS 2 parameter YAML for all nodes (default: '
                'config/importance_sampler.yaml)') in text, name
    assert '(default: 60.0)' in subcommand_parser('synth').format_help()
