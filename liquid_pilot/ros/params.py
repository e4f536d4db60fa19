"""Parameters declared up front from one table per node, with descriptions, ranges and choices.

The same table lets the in-process launcher check a YAML file before any node starts.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import (InvalidParameterTypeException, InvalidParameterValueException,
                              ParameterUninitializedException)
from rclpy.node import Node
from rclpy.parameter import Parameter


@dataclass(frozen=True)
class Param:
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

    def coerce(self, value: Any) -> Any:
        """Return ``value`` as this parameter's type (a whole number may stand for a float), or raise ValueError."""
        kind = type(self.default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        if kind is not list and type(value) is kind:
            return value
        names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
                 list: "a list of strings"}
        raise ValueError(f"parameter {self.name!r} must be {names[kind]}, got {value!r}")


def declare_parameters(node: Node, table: Sequence[Param]) -> dict[str, Any]:
    """Declare every parameter of ``table`` on ``node`` and return their values.

    The returned dict stays current: parameters that are not read-only update it when set
    while the node runs. A value out of range or not among the choices raises ValueError.
    """
    values: dict[str, Any] = {}
    by_name = {p.name: p for p in table}
    for p in table:
        try:
            if p.default == []:
                # rclpy cannot infer a type from an empty list: declare the type, no value.
                node.declare_parameter(p.name, Parameter.Type.STRING_ARRAY, p.descriptor())
            else:
                node.declare_parameter(p.name, p.default, p.descriptor())
        except InvalidParameterValueException:
            raise ValueError(f"{node.get_name()}: parameter {p.name!r} must be in [{p.low}, {p.high}]") from None
        except InvalidParameterTypeException as exc:
            raise ValueError(f"{node.get_name()}: parameter {p.name!r} has the wrong type: {exc}") from None
        try:
            value = node.get_parameter(p.name).value
        except ParameterUninitializedException:
            value = []
        values[p.name] = list(value) if isinstance(p.default, list) else value
        try:
            _check_choice(p, value)
        except ValueError as exc:
            raise ValueError(f"{node.get_name()}: {exc}") from None

    def validate(params: list[Parameter]) -> SetParametersResult:
        try:
            for param in params:
                if param.name in by_name:
                    _check_choice(by_name[param.name], param.value)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def remember(params: list[Parameter]) -> None:
        for param in params:
            if param.name in values:
                values[param.name] = param.value

    node.add_on_set_parameters_callback(validate)
    node.add_post_set_parameters_callback(remember)
    return values


def _check_choice(p: Param, value: Any) -> None:
    if p.choices and value not in p.choices:
        raise ValueError(f"parameter {p.name!r} is {value!r}; allowed: {', '.join(p.choices)}")
