"""``liquid-pilot ros MODE``: a launch file's nodes and YAML files in one process, no ROS install needed.

Each mode builds the same node classes with the same parameter files, in the same order,
as its launch file (``play`` has none: it is ``ros2 run liquid_pilot player_node``), and spins
them in one executor, a MultiThreadedExecutor when there are several, until Ctrl-C.
Files and ``--set`` values are checked against the nodes' parameter tables before any
node starts; a mistake is one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from rclpy.parameter import Parameter

from liquid_pilot.paths import data_dir
from liquid_pilot.ros.params import Param
from liquid_pilot.ros.spin import run
from liquid_pilot.settings import SettingsError, parse_assignments, read_yaml

# node name -> module and class; imported only when a mode needs them (the simulator pulls in PyBullet).
NODES = {
    "pilot_node": ("liquid_pilot.ros.pilot_node", "PilotNode"),
    "sim_node": ("liquid_pilot.ros.sim_node", "SimNode"),
    "recorder_node": ("liquid_pilot.ros.recorder_node", "RecorderNode"),
    "player_node": ("liquid_pilot.ros.player_node", "PlayerNode"),
}
# mode -> nodes in start order, each with its parameter files from config/, as in launch/MODE.launch.py
# (test_ros_launch.py checks that they agree); the user's --params files come last, as the launch files'
# params_file does. A real drone's launch/bridge.launch.py (and STACK.launch.py, the same with stack:=STACK)
# has no mode: it runs with ros2 launch.
MODES = {
    "pilot": [("pilot_node", ["pilot.yaml"])],
    "sim": [("pilot_node", ["pilot.yaml", "sim.yaml"]), ("sim_node", ["sim.yaml"])],
    "record": [("sim_node", ["sim.yaml", "record.yaml"]), ("recorder_node", ["record.yaml"])],
    "play": [("player_node", ["player.yaml"])],
}
BUILTIN = {"use_sim_time": Param("use_sim_time", False, "follow /clock")}  # declared by every rclpy node


def node_class(node: str) -> type:
    module, name = NODES[node]
    return getattr(importlib.import_module(module), name)


def parameters(node: str) -> tuple[Param, ...]:
    """Return the parameter table of ``node`` (as its class declares them)."""
    return importlib.import_module(NODES[node][0]).PARAMETERS


def load_params(path: Path, node: str) -> dict[str, Any]:
    """Return the values a ``node_name: ros__parameters:`` YAML file gives ``node``.

    Sections apply as rcl applies them to a node in the root namespace: ``node``, ``/node``,
    ``/**/node`` and ``/**``; a section for another namespace (``/drone1/node``) does not.
    """
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected 'node_name: ros__parameters: {{...}}' sections")
    values: dict[str, Any] = {}
    for key, section in data.items():
        *namespace, name = str(key).strip("/").split("/")
        if name != "**" and name not in NODES:
            raise ValueError(f"{path}: unknown node {key!r}; nodes: {', '.join(NODES)} (or /**)")
        if not isinstance(section, dict) or set(section) != {"ros__parameters"}:
            raise ValueError(f"{path}: {key}: expected a single 'ros__parameters' mapping")
        if name in ("**", node) and namespace in ([], ["**"]):
            values.update(section["ros__parameters"] or {})
    return values


def overrides(node: str, values: dict[str, Any], origin: str) -> list[Parameter]:
    """Check and type parameter overrides for ``node``; ValueError names the parameter and its origin."""
    table = {p.name: p for p in parameters(node)} | BUILTIN
    out = []
    for name, value in values.items():
        if name not in table:
            raise ValueError(f"{origin}: {node} has no parameter {name!r}; it has: {', '.join(sorted(table))}")
        try:
            value = table[name].check(value)
        except SettingsError as exc:
            raise SettingsError(f"{origin}: {node}: {exc}") from None
        if value == [] and table[name].default == []:
            continue  # rclpy cannot type an empty list; the declared default is that empty list
        if value == []:
            raise ValueError(f"{origin}: {node}: parameter {name!r} must not be empty")
        out.append(Parameter(name, value=value))
    return out


def parse_set(items: list[str], nodes: list[str]) -> dict[str, dict[str, Any]]:
    """``[node.]name=value`` (value read as YAML) -> values per node; a bare name goes to every node having it."""
    values: dict[str, dict[str, Any]] = {node: {} for node in nodes}
    for item in items:
        ((key, value),) = parse_assignments([item], "--set", "name=value or node.name=value").items()
        node, dot, name = key.partition(".")
        if dot and node in nodes:
            targets = [node]
        else:
            name = key
            targets = [n for n in nodes if name in {p.name for p in parameters(n)} | set(BUILTIN)]
            if not targets:
                raise ValueError(f"--set {item!r}: no node in this mode ({', '.join(nodes)}) has parameter {name!r}")
        for target in targets:
            values[target][name] = value
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liquid-pilot ros", description="Run the ROS 2 nodes of a launch file in one process.",
        epilog="ROS arguments (remappings, log levels) may follow --ros-args.")
    parser.add_argument("mode", choices=list(MODES), help="pilot: the pilot alone (hardware); sim: simulator + "
                        "pilot; record: simulator flying its expert + recorder; play: replay a recording")
    parser.add_argument("--params", action="append", default=[], metavar="FILE",
                        help="extra parameter YAML file, applied after the mode's files in config/ (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="[NODE.]NAME=VALUE",
                        help="set a parameter, e.g. --set scenario=urban --set pilot_node.model=p.pt (repeatable)")
    return parser


def main(argv: list[str]) -> int:
    argv = list(argv)
    ros_args = argv[argv.index("--ros-args"):] if "--ros-args" in argv else []
    try:
        args = build_parser().parse_args(argv[:len(argv) - len(ros_args)])
    except SystemExit as exc:  # --help, or a usage error that argparse has explained
        return int(exc.code or 0)
    nodes = [node for node, _ in MODES[args.mode]]
    try:
        config = data_dir("config")
        extra = [Path(f) for f in args.params]
        for path in extra:
            if not path.is_file():
                raise ValueError(f"--params {path}: no such file")
        settings = parse_set(args.set, nodes)
        factories = []
        for node, files in MODES[args.mode]:
            params: list[Parameter] = []
            for path in [config / f for f in files] + extra:
                params += overrides(node, load_params(path, node), str(path))
            params += overrides(node, settings[node], "--set")
            factories.append(lambda cls=node_class(node), params=params: cls(parameter_overrides=params))
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run(factories, ["liquid-pilot", *ros_args])
