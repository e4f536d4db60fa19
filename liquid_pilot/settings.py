"""One typed settings loader: YAML files, ``name=value`` assignments, and the checks of config dataclasses.

Every way a setting reaches the package goes through here: scenario and parameter YAML files
(``read_yaml``), ``--set name=value`` on the command line and ``sim_node``'s ``overrides`` parameter
(``parse_assignments``), ROS parameters (``liquid_pilot.ros.params.Param.check``) and configs built in
code (``check_fields`` in each config dataclass's ``__post_init__``). So a bad value gives the same
one-line error everywhere, naming where it came from, the setting and what is allowed:
``--set inject.image_noise=abc: inject.image_noise must be a number, got 'abc'``. The CLI, the
launcher and the node executables print it as ``error: ...`` with exit code 2.

Plain dataclasses and a few dozen lines instead of a settings library: pydantic or draccus would
add a dependency (and a second way to declare a config) for the type and range checks below.
"""
from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class SettingsError(ValueError):
    """A setting that cannot be used; the message is one line naming its source, the setting and what is allowed."""


def read_yaml(path: str | Path) -> Any:
    """Return a YAML file's content; a missing, unreadable or malformed file is a SettingsError naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {_one_line(exc)}") from None


def parse_value(text: str, where: str) -> Any:
    """Read one value as YAML (``0.1`` a number, ``true`` a bool, ``[1, 2]`` a list, anything else a string)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"{where}: value is not valid YAML: {_one_line(exc)}") from None


def parse_assignments(items: Iterable[str], origin: str, form: str = "name=value") -> dict[str, Any]:
    """``name=value`` strings (values read as YAML) -> {name: value}.

    ``origin`` names them in errors (``--set``), ``form`` says what an item looks like.
    """
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise SettingsError(f"{origin} expects {form}, got {item!r}")
        out[name.strip()] = parse_value(text, f"{origin} {item!r}")
    return out


@dataclass(frozen=True)
class Range:
    """Allowed numbers: ``low``/``high`` bounds (None: unbounded), inclusive unless ``open_low``/``open_high``."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return self.high is None or (value < self.high or (not self.open_high and value == self.high))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.open_high else '<='} {self.high:g}"
        return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"


POSITIVE = Range(0, open_low=True)
NON_NEGATIVE = Range(0)
PROBABILITY = Range(0, 1, open_high=True)  # a probability that must leave something to chance

_KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def describe(kind: Any) -> str:
    """Say what a value of this annotation looks like, for error messages."""
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        return f"a list of {_plural(describe(item))}"
    return _KINDS.get(kind, getattr(kind, "__name__", str(kind)))


def coerce(value: Any, kind: Any, name: str) -> Any:
    """Return ``value`` as type ``kind``, or raise SettingsError naming ``name``.

    A whole number stands for a float, and numpy's numbers for Python's (configs built in code); an optional
    setting (``X | None``) takes None too.
    """
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        if value is None and len(options) < len(typing.get_args(kind)):
            return None
        for option in options:
            try:
                return coerce(value, option, name)
            except SettingsError:
                pass
        raise SettingsError(f"{name} must be {' or '.join(describe(k) for k in options)} or null, got {value!r}")
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        if isinstance(value, (list, tuple)):
            try:
                return [coerce(v, item, name) for v in value]
            except SettingsError:
                pass
    elif kind is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
    elif kind is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
    elif kind in _KINDS:
        if type(value) is kind:
            return value
    elif isinstance(value, kind):
        return value
    raise SettingsError(f"{name} must be {describe(kind)}, got {value!r}")


Allowed = Range | tuple[str, ...] | None


def setting(default: Any = dataclasses.MISSING, help: str = "", allowed: Allowed = None,
            factory: Any = dataclasses.MISSING) -> Any:
    """Declare a config dataclass field with its documentation and what it allows, once.

    ``allowed`` is a Range or the allowed strings. ``check_fields`` checks it, and the nodes' ROS
    parameters are made from it (``liquid_pilot.ros.params.params_from``): ``ros2 param describe``
    shows the same text and range the config checks. ``factory`` makes a mutable default (a list).
    """
    metadata = {"help": help, "allowed": allowed}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_help(cls: type, name: str) -> str:
    """Return a config field's documentation (``setting(help=...)``)."""
    return next(f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.name == name)


def field_allowed(cls: type, name: str) -> Allowed:
    """Return what a config field allows (``setting(allowed=...)``): a Range, the allowed strings or None."""
    return next(f.metadata.get("allowed") for f in dataclasses.fields(cls) if f.name == name)


def check_fields(config: Any, prefix: str = "", limits: dict[str, Range | tuple[str, ...]] | None = None) -> None:
    """Check a dataclass instance in place: each field's type (numbers made floats where declared) and its limits.

    The limits are each field's ``setting(allowed=...)`` (``limits`` may add or replace some: field name
    -> a Range or the allowed strings). Called from ``__post_init__``, so a config is checked however it
    was built. Errors name the field as ``prefix + name``.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        name = prefix + f.name
        given = getattr(config, f.name)
        value = coerce(given, hints[f.name], name)
        object.__setattr__(config, f.name, value)  # frozen dataclasses too
        allowed = (limits or {}).get(f.name, f.metadata.get("allowed"))
        if isinstance(allowed, Range) and value not in allowed:
            raise SettingsError(f"{name} must be {allowed}, got {given!r}")
        if isinstance(allowed, tuple) and value not in allowed:
            raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {given!r}")


def build(cls: type, values: dict[str, Any], section: str) -> Any:
    """Make config ``cls`` from a mapping (a YAML section); unknown keys name the allowed ones."""
    if not isinstance(values, dict):
        raise SettingsError(f"{section} must be a mapping of settings, got {values!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise SettingsError(f"unknown {section} settings {unknown}; allowed: {', '.join(sorted(names))}")
    return cls(**values)


def _plural(text: str) -> str:
    return {"a whole number": "whole numbers", "a number": "numbers", "a string": "strings",
            "true or false": "true or false values"}.get(text, text)


def _one_line(exc: yaml.YAMLError) -> str:
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())
