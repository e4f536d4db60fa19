"""Parameters declared up front from one table per node, with descriptions, ranges and choices.

The same table checks a value wherever it comes from, through ``liquid_pilot.settings``: the
in-process launcher checks YAML files and ``--set`` values before any node starts, and each node
checks what ``--ros-args``, parameter files and ``parameter_overrides`` give it before declaring
(an unknown name, a wrong type, a value out of range or not among the choices: one-line error).
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from liquid_pilot.settings import Range, SettingsError, coerce, read_yaml

# Parameters rclpy itself declares or reads on every node.
BUILTIN = ("use_sim_time", "start_type_description_service")
BUILTIN_PREFIXES = ("qos_overrides.",)


@dataclass(frozen=True)
class Param:
    """One ROS parameter: name, default, documentation, and its range or choices, checked wherever it is set."""

    name: str
    default: bool | int | float | str | list[str]
    description: str
    low: float | None = None  # inclusive range for numbers
    high: float | None = None
    choices: tuple[str, ...] = ()
    read_only: bool = True  # False: may change while running (ros2 param set)

    def descriptor(self) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only)
        if self.choices:
            descriptor.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.low is not None and isinstance(self.default, float):
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(self.low),
                                                                  to_value=float(self.high))]
        elif self.low is not None and isinstance(self.default, int) and not isinstance(self.default, bool):
            descriptor.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high), step=1)]
        return descriptor

    def check(self, value: Any) -> Any:
        """Return ``value`` as this parameter's type, in range and among the choices, or raise SettingsError.

        A whole number may stand for a float; the error says what is allowed.
        """
        name = f"parameter {self.name!r}"
        value = coerce(value, list[str] if isinstance(self.default, list) else type(self.default), name)
        if self.low is not None and not self.low <= value <= self.high:
            raise SettingsError(f"{name} must be in [{self.low}, {self.high}], got {value!r}")
        if self.choices and value not in self.choices:
            raise SettingsError(f"{name} must be one of {', '.join(self.choices)}, got {value!r}")
        return value


def params_from(config: type, names: Sequence[str] | None = None, read_only: bool = True,
                live: Sequence[str] = ()) -> tuple[Param, ...]:
    """Make parameters of a config dataclass's fields (``settings.setting``): the same names, defaults, text and range.

    ``names`` chooses and orders the fields (default: all); ``live`` names fields that may change while the node
    runs (``ros2 param set``), as every field may when ``read_only`` is false. So a node's parameter and the config
    field it feeds are declared once, and ``ros2 param describe`` shows what the config checks.
    """
    by_name = {f.name: f for f in dataclasses.fields(config)}
    out = []
    for name in names or list(by_name):
        f = by_name[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, int) and not isinstance(default, bool) and \
                typing.get_type_hints(config)[name] is float:
            default = float(default)
        allowed, text = f.metadata.get("allowed"), f.metadata.get("help", "")
        fixed = read_only and name not in live
        if isinstance(allowed, tuple):
            out.append(Param(name, default, text, choices=allowed, read_only=fixed))
        elif isinstance(allowed, Range) and allowed.low is not None and allowed.high is not None:
            out.append(Param(name, default, text, low=allowed.low, high=allowed.high, read_only=fixed))
        else:
            out.append(Param(name, default, text, read_only=fixed))
    unknown = sorted(set(live) - set(by_name))
    if unknown:
        raise ValueError(f"{config.__name__} has no field {unknown[0]!r} to make live")
    return tuple(out)


def check_parameter_files(args: Sequence[str]) -> None:
    """Read each ``--params-file FILE`` of a command line with the settings loader.

    A missing or malformed file is then one line naming it, before rcl's own parser reports it less clearly.
    """
    for flag, path in zip(args, args[1:]):
        if flag == "--params-file":
            read_yaml(path)


def builtin(name: str) -> bool:
    """Whether rclpy, not the node's table, owns parameter ``name``."""
    return name in BUILTIN or name.startswith(BUILTIN_PREFIXES)


def declare_parameters(node: Node, table: Sequence[Param]) -> dict[str, Any]:
    """Check the values given to ``node``, declare every parameter of ``table`` and return their values.

    The returned dict stays current: parameters that are not read-only update it when set
    while the node runs (``ros2 param set`` is checked by the same table). A value given for a
    parameter the table lacks, of the wrong type, out of range or not among the choices raises
    SettingsError naming the node and the parameter.
    """
    by_name = {p.name: p for p in table}
    given = {name: param.value for name, param in getattr(node, "_parameter_overrides", {}).items()}
    unknown = sorted(name for name in given if name not in by_name and not builtin(name))
    if unknown:
        raise SettingsError(f"{node.get_name()} has no parameter {unknown[0]!r} (given by --ros-args or a parameter "
                            f"file); it has: {', '.join(sorted(by_name))}")
    values: dict[str, Any] = {}
    for p in table:
        try:
            value = p.check(given[p.name]) if p.name in given else p.default
        except SettingsError as exc:
            raise SettingsError(f"{node.get_name()}: {exc}") from None
        if value == []:
            # rclpy cannot infer a type from an empty list: declare the type, no value.
            node.declare_parameter(p.name, Parameter.Type.STRING_ARRAY, p.descriptor(), ignore_override=True)
        else:
            node.declare_parameter(p.name, value, p.descriptor(), ignore_override=True)
        values[p.name] = value

    def validate(params: list[Parameter]) -> SetParametersResult:
        try:
            for param in params:
                if param.name in by_name:
                    by_name[param.name].check(param.value)
        except SettingsError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def remember(params: list[Parameter]) -> None:
        for param in params:
            if param.name in values:
                values[param.name] = param.value

    node.add_on_set_parameters_callback(validate)
    node.add_post_set_parameters_callback(remember)
    return values
