"""Parameters declared once: a config dataclass field carries name, type, default, range, text.

A settings class is a frozen dataclass deriving from `Settings` whose fields are made with
`param(default, description, ...)`; the field name is the parameter name and the default's type
is the parameter's type (bool, int, float, str, or a tuple of str for a string list). Everything
else is derived from those fields:

- `specs(cls)`: the `Param` of every field (nested settings classes included, see `nested`),
  for the ROS declaration (nodes/parameters.py), the YAML file and the launch file's overrides;
- `Settings.__post_init__` converts and checks every field with `check`, the one validation there
  is: a value of another type is taken where that is lossless (an int for a float, 3.0 for an
  int) and otherwise refused with a ParameterError whose one-line message names the parameter;
- `build(cls, values)`: an instance from a flat {name: value} mapping (a node's parameters, a
  YAML section, command-line overrides), other keys ignored.

Which settings classes make up each node's parameters: registry.py.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

Scalar = bool | int | float | str
_PARAM = 'importance_sampler_ros.param'
_NESTED = 'importance_sampler_ros.nested'
_TYPE_NAMES = {bool: 'bool', int: 'int', float: 'float', str: 'string', tuple: 'string list'}


class ParameterError(ValueError):
    """A parameter value that does not fit its specification; the message names the parameter."""


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter: its default's type is the parameter's type; limits are inclusive.

    pattern: a regular expression the whole string must match (e.g. 'cpu|cuda(:[0-9]+)?').
    check: for what a range cannot say; returns the problem as text, or None when the value is
    fine.
    """

    name: str
    default: Scalar | tuple[str, ...]
    description: str
    min_value: float | None = None
    max_value: float | None = None
    choices: tuple[str, ...] = ()
    pattern: str = ''
    check: Callable[[Any], str | None] | None = None

    @property
    def type(self) -> type:
        return type(self.default)

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES[self.type]

    def describe_range(self) -> str:
        """The allowed values in words; '' when any value of the type is allowed."""
        if self.choices:
            return f'one of {", ".join(c or repr(c) for c in self.choices)}'
        if self.pattern:
            return f'matching {self.pattern}'
        if self.min_value is None and self.max_value is None:
            return ''
        if self.max_value is None:
            return f'>= {self.min_value:g}'
        if self.min_value is None:
            return f'<= {self.max_value:g}'
        return f'in [{self.min_value:g}, {self.max_value:g}]'

    def ros_default(self) -> Scalar | list[str]:
        """The default as a ROS parameter value (a list for a string list)."""
        return list(self.default) if isinstance(self.default, tuple) else self.default


def param(default: Scalar | tuple[str, ...], description: str, *,
          min_value: float | None = None, max_value: float | None = None,
          choices: tuple[str, ...] = (), pattern: str = '',
          check: Callable[[Any], str | None] | None = None) -> Any:
    """A dataclass field that is a parameter (see Param for the arguments)."""
    if type(default) not in _TYPE_NAMES:
        raise TypeError(f'parameter default {default!r}: not one of {list(_TYPE_NAMES)}')
    spec = Param('', default, description, min_value, max_value, tuple(choices), pattern, check)
    return dataclasses.field(default=default, metadata={_PARAM: spec})


def nested(cls: type) -> Any:
    """A field holding another settings class, whose parameters belong to the same node."""
    return dataclasses.field(default_factory=cls, metadata={_NESTED: cls})


def own_specs(cls: type) -> tuple[Param, ...]:
    """The Param of every parameter field of a settings class itself (not of nested ones)."""
    return tuple(dataclasses.replace(f.metadata[_PARAM], name=f.name)
                 for f in dataclasses.fields(cls) if _PARAM in f.metadata)


def nested_classes(cls: type) -> tuple[type, ...]:
    """The settings classes nested in `cls` (its `nested` fields), in field order."""
    return tuple(f.metadata[_NESTED] for f in dataclasses.fields(cls) if _NESTED in f.metadata)


def specs(cls: type) -> tuple[Param, ...]:
    """The Param of every parameter field of a settings class, nested classes included."""
    return own_specs(cls) + tuple(s for inner in nested_classes(cls) for s in specs(inner))


def _type_error(spec: Param, value: Any) -> ParameterError:
    return ParameterError(f'parameter {spec.name!r}: expected {spec.type_name}, got {value!r}'
                          f' ({type(value).__name__})')


def _convert(spec: Param, value: Any) -> Any:
    """The value as the parameter's type where that loses nothing; ParameterError otherwise."""
    kind = spec.type
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, float):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and float(value) == value:
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise _type_error(spec, value)


def check(spec: Param, value: Any) -> Any:
    """The value converted to the parameter's type and checked against its limits.

    The one place a parameter value is validated; a ParameterError names the parameter.
    """
    value = _convert(spec, value)
    bad = False
    if isinstance(value, int | float) and not isinstance(value, bool):
        bad = (value != value  # NaN
               or (spec.min_value is not None and value < spec.min_value)
               or (spec.max_value is not None and value > spec.max_value))
    elif isinstance(value, str):
        bad = bool((spec.choices and value not in spec.choices)
                   or (spec.pattern and not re.fullmatch(spec.pattern, value)))
    if bad:
        raise ParameterError(f'parameter {spec.name!r} = {value!r}: must be '
                             f'{spec.describe_range()}')
    problem = spec.check(value) if spec.check is not None else None
    if problem:
        raise ParameterError(f'parameter {spec.name!r} = {value!r}: {problem}')
    return value


class Settings:
    """Base of the settings dataclasses: fields converted and checked when an instance is made.

    A subclass may define `_check_together(self) -> None` for rules across fields; it raises
    ParameterError naming the parameters.
    """

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            spec = f.metadata.get(_PARAM)
            if spec is not None:
                value = check(dataclasses.replace(spec, name=f.name), getattr(self, f.name))
                object.__setattr__(self, f.name, value)
        self._check_together()

    def _check_together(self) -> None:
        pass


S = TypeVar('S')


def build(cls: type[S], values: Mapping[str, Any]) -> S:
    """An instance of settings class `cls` from flat parameter values (unknown keys ignored)."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if _PARAM in f.metadata and f.name in values:
            kwargs[f.name] = values[f.name]
        elif _NESTED in f.metadata:
            kwargs[f.name] = build(f.metadata[_NESTED], values)
    return cls(**kwargs)


def parse_assignments(items: Iterable[str], params: Iterable[Param]) -> dict[str, Any]:
    """{name: value} from 'name=value' texts (the benchmarks' --set), each value read as its
    parameter's type ('1' or 'true' for a true bool); KeyError for a name no param has."""
    by_name = {spec.name: spec for spec in params}
    out = {}
    for item in items:
        name, _, text = item.partition('=')
        kind = by_name[name].type
        out[name] = text.lower() in ('1', 'true') if kind is bool else kind(text)
    return out


def flat_values(instance: Any) -> dict[str, Any]:
    """{parameter name: value} of a settings instance, nested settings included."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(instance):
        if _PARAM in f.metadata:
            out[f.name] = getattr(instance, f.name)
        elif _NESTED in f.metadata:
            out.update(flat_values(getattr(instance, f.name)))
    return out


def _section_matches(key: str, node_name: str) -> bool:
    """Whether a parameter file's top-level key applies to node `node_name` (root namespace):
    its name, `/name`, or a wildcard pattern such as `/**` or `/**/name` (rcl's rules)."""
    pattern = '/' + key.lstrip('/')
    target = f'/{node_name}'
    candidates = {pattern, pattern.replace('/**/', '/')}
    return any(fnmatch.fnmatchcase(target, c.replace('**', '*')) for c in candidates)


def load_node_parameters(path: str | Path, node_name: str) -> dict[str, Any]:
    """The `ros__parameters` that a ROS 2 parameter YAML file gives node `node_name`.

    Every section that applies (the node's own and wildcard ones such as `/**`) is merged in file
    order, later keys winning, as rcl does; {} when none applies. ParameterError (naming the file)
    when it is not valid YAML.
    """
    try:
        with open(path) as stream:
            document = yaml.safe_load(stream) or {}
    except yaml.YAMLError as error:
        detail = ' '.join(str(error).split())
        raise ParameterError(f'parameter file {path} is not valid YAML: {detail}') from None
    if not isinstance(document, dict):
        raise ParameterError(f'parameter file {path}: expected a mapping of node names')
    values: dict[str, Any] = {}
    for key, section in document.items():
        if isinstance(section, dict) and _section_matches(str(key), node_name):
            parameters = section.get('ros__parameters') or {}
            if not isinstance(parameters, dict):
                raise ParameterError(f'parameter file {path}: {key}.ros__parameters is not a '
                                     'mapping')
            values.update(parameters)
    return values


def finite(value: float) -> str | None:
    """A Param check: the problem with a non-finite number, or None."""
    return None if math.isfinite(value) else 'must be finite'
