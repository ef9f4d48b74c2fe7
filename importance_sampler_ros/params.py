"""Parameter specifications shared by the nodes and the offline tools.

Each node's parameters are declared once, as a tuple of `Param`, in the core module it wraps. The
node declares them as ROS parameters (nodes/parameters.py); `replay` and the launcher read the same
YAML file (config/importance_sampler.yaml) and validate it with the same specs, so the car and
the offline replay run with identical settings.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Scalar = bool | int | float | str


@dataclass(frozen=True)
class Param:
    """One parameter: name, default (its type is the parameter's type), description, limits."""

    name: str
    default: Scalar | list[str] | list[float]
    description: str
    min_value: float | None = None
    max_value: float | None = None
    choices: tuple[str, ...] = ()

    def describe_range(self) -> str:
        if self.choices:
            return f'one of {", ".join(self.choices)}'
        low = '-inf' if self.min_value is None else f'{self.min_value:g}'
        high = 'inf' if self.max_value is None else f'{self.max_value:g}'
        return f'in [{low}, {high}]'


class ParameterError(ValueError):
    """A parameter value that does not fit its specification; the message names the parameter."""


def validate(spec: Param, value: Any) -> Any:
    """The value converted to the parameter's type, or ParameterError naming the parameter."""
    default = spec.default
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError
            value = float(value)
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise TypeError
        elif isinstance(default, list):
            if not isinstance(value, list | tuple):
                raise TypeError
            value = list(value)
    except TypeError:
        raise ParameterError(
            f'parameter {spec.name!r}: expected {type(default).__name__}, got {value!r}'
        ) from None
    out_of_range = spec.choices and value not in spec.choices
    if isinstance(value, int | float) and not isinstance(value, bool):
        too_low = spec.min_value is not None and value < spec.min_value
        too_high = spec.max_value is not None and value > spec.max_value
        out_of_range = too_low or too_high or value != value  # value != value: NaN
    if out_of_range:
        raise ParameterError(
            f'parameter {spec.name!r} = {value!r}: must be {spec.describe_range()}'
        )
    return value


def resolve(specs: Iterable[Param], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults with `overrides` applied, all validated; an unknown name is an error."""
    specs = {spec.name: spec for spec in specs}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(specs))
    if unknown:
        raise ParameterError(f'unknown parameter(s): {", ".join(unknown)}')
    return {
        name: validate(spec, overrides.get(name, spec.default)) for name, spec in specs.items()
    }


def load_node_parameters(path: str | Path, node_name: str) -> dict[str, Any]:
    """The `ros__parameters` of `node_name` in a ROS 2 parameter YAML file ({} if absent)."""
    with open(path) as stream:
        document = yaml.safe_load(stream) or {}
    for key in (node_name, f'/{node_name}', '/**', '**'):
        section = document.get(key)
        if isinstance(section, dict) and node_name in key:
            return dict(section.get('ros__parameters') or {})
    return {}
