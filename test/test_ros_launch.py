"""Launch files (checked statically), the parameter YAML files, and the in-process launcher."""
from __future__ import annotations

import ast
import importlib
import itertools
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cli_support import cli
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.serialization import deserialize_message
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from std_msgs.msg import String
from test_ros_support import Ros, isolate, wait_for

from liquid_pilot.nn.checkpoint import save_pilot
from liquid_pilot.nn.policy import Pilot
from liquid_pilot.ros import launcher
from liquid_pilot.ros.params import BUILTIN
from liquid_pilot.ros.pilot_node import PilotNode
from liquid_pilot.ros.player_node import PlayerNode
from liquid_pilot.ros.recorder_node import RecorderNode
from liquid_pilot.ros.sim_node import EPISODE_GAP_S, SimNode

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
SHARE = "$share"  # FindPackageShare("liquid_pilot") in the paths launch_nodes reads
STACKS = ["px4", "mavros", "ardupilot", "crazyflie"]  # launch/STACK.launch.py: bridge.launch.py stack:=STACK


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "pilot.pt"
    save_pilot(Pilot(), path)
    return path


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bag") / "one"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/chatter", "std_msgs/msg/String",
                                           typestore=get_typestore(Stores.ROS2_KILTED))
        writer.write(connection, 1, b"\x00\x01\x00\x00\x03\x00\x00\x00hi\x00\x00")
    return path


def console_scripts() -> dict[str, str]:
    """The console_scripts of setup.py, read without running it."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    entries = next(node for node in ast.walk(tree) if isinstance(node, ast.Dict)
                   and any(isinstance(k, ast.Constant) and k.value == "console_scripts" for k in node.keys))
    scripts = [e.value for e in ast.walk(entries) if isinstance(e, ast.Constant) and "=" in str(e.value)]
    return dict((part.strip() for part in item.split("=")) for item in scripts)


def launch_arguments(path: Path) -> dict[str, dict]:
    """Each DeclareLaunchArgument of a launch file: its default (an AST node or None), choices and description."""
    arguments = {}
    for call in ast.walk(ast.parse(path.read_text())):
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "DeclareLaunchArgument":
            kwargs = {k.arg: k.value for k in call.keywords}
            description = kwargs.get("description")
            arguments[call.args[0].value] = {
                "default": kwargs.get("default_value"),
                "choices": ast.literal_eval(kwargs["choices"]) if "choices" in kwargs else None,
                "description": ast.literal_eval(description) if description is not None else ""}
    return arguments


def launch_variants(path: Path) -> list[dict[str, str]]:
    """The launch arguments to check a launch file with: each combination of the choices of its arguments that
    have no default (bridge.launch.py: each stack:=STACK); a file without such arguments: none (``[{}]``)."""
    required = {name: argument["choices"] or [] for name, argument in launch_arguments(path).items()
                if argument["default"] is None}
    return [dict(zip(required, values)) for values in itertools.product(*required.values())]


def launch_nodes(path: Path, **given: str) -> list[dict]:
    """Each Node(...) a launch file starts, an included launch file's too, with the launch arguments ``given``
    (``name:=value``; the others take their defaults): executable, name, shipped parameter files (in config/) in
    order, whether the user's ``params_file`` comes last (and the file its default names), the names of literal
    parameters, and the launch file that declares the node. A file whose name depends on an argument with neither
    a value nor a default is left out."""
    tree = ast.parse(path.read_text())
    assigned = {t.id: node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    arguments = launch_arguments(path)

    def resolve(expr: ast.AST) -> ast.AST:
        while isinstance(expr, ast.Name) and expr.id in assigned:
            expr = assigned[expr.id]
        return expr

    def called(expr: ast.AST, name: str) -> bool:
        return isinstance(expr, ast.Call) and getattr(expr.func, "id", "") == name

    def user_file(expr: ast.AST) -> bool:
        expr = resolve(expr)
        return called(expr, "LaunchConfiguration") and expr.args[0].value == "params_file"

    def text(expr: ast.AST) -> str | None:
        """What a substitution gives, through variables and launch arguments (None: not known statically):
        a list concatenates, PathJoinSubstitution joins with '/', FindPackageShare('liquid_pilot') is SHARE."""
        expr = resolve(expr)
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return expr.value
        if isinstance(expr, ast.List) or called(expr, "PathJoinSubstitution"):
            parts = [text(e) for e in (expr.elts if isinstance(expr, ast.List) else resolve(expr.args[0]).elts)]
            return None if None in parts else ("" if isinstance(expr, ast.List) else "/").join(parts)
        if called(expr, "FindPackageShare"):
            return SHARE if text(expr.args[0]) == "liquid_pilot" else None
        if called(expr, "LaunchConfiguration"):
            name = text(expr.args[0])
            if name in given:
                return given[name]
            default = arguments.get(name, {}).get("default")
            return None if default is None else text(default)
        return None

    def config_files(expr: ast.AST) -> list[str]:
        """The file in config/ a parameter file expression names (a path elsewhere stays whole)."""
        path = text(expr)
        return [] if path is None else [path.removeprefix(f"{SHARE}/config/")]

    nodes = []
    for call in ast.walk(tree):  # breadth first: a LaunchDescription's actions in their order
        kwargs = {k.arg: k.value for k in call.keywords} if isinstance(call, ast.Call) else {}
        if called(call, "IncludeLaunchDescription"):
            # IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments={...}.items())
            source = resolve(call.args[0])
            assert called(source, "PythonLaunchDescriptionSource"), (path, ast.dump(source))
            location = text(source.args[0]) or ""
            assert location.startswith(f"{SHARE}/launch/"), (path, location)  # an installed launch file of ours
            passed = resolve(kwargs["launch_arguments"].func.value) if "launch_arguments" in kwargs else ast.Dict()
            nodes += launch_nodes(path.parent / location.removeprefix(f"{SHARE}/launch/"),
                                  **{**given, **{text(k): text(v) for k, v in zip(passed.keys, passed.values)}})
        elif called(call, "Node"):
            elements = resolve(kwargs.get("parameters", ast.List(elts=[]))).elts
            user = bool(elements) and user_file(elements[-1])
            nodes.append({
                "launch_file": path.name, "executable": kwargs["executable"].value, "name": kwargs["name"].value,
                "files": [name for element in (elements[:-1] if user else elements) for name in config_files(element)],
                "user": user,
                "user_default": config_files(elements[-1]) if user else [],
                "literal": [k.value for element in elements if isinstance(resolve(element), ast.Dict)
                            for k in resolve(element).keys],
            })
    return nodes


# Each launch file with each set of launch arguments it is checked with (bridge.launch.py: once per stack).
VARIANTS = [(path, given) for path in LAUNCH_FILES for given in launch_variants(path)]


def table(node: str) -> set[str]:
    """The parameter names a node's module declares in its PARAMETERS table (nodes of other engineers too)."""
    module = console_scripts()[node].split(":")[0]
    return {p.name for p in importlib.import_module(module).PARAMETERS}


@pytest.fixture(scope="module")
def declared(ros: Ros, model: Path, bag: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """The parameter names each node really declares, from live instances; other nodes: their table and rclpy's."""
    nodes = {
        "pilot_node": PilotNode(namespace="declared", parameter_overrides=[Parameter("model", value=str(model))]),
        "sim_node": SimNode(namespace="declared", parameter_overrides=[Parameter("real_time_factor", value=0.5)]),
        "recorder_node": RecorderNode(namespace="declared", parameter_overrides=[
            Parameter("output", value=str(tmp_path_factory.mktemp("rec") / "out"))]),
        "player_node": PlayerNode(namespace="declared", parameter_overrides=[Parameter("bag", value=str(bag))]),
    }
    names = {name: set(node.list_parameters([], 0).names) for name, node in nodes.items()}
    for node in nodes.values():
        node.destroy_node()
    for path, given in VARIANTS:
        for node in launch_nodes(path, **given):
            if node["name"] not in names:
                names[node["name"]] = table(node["executable"]) | set(BUILTIN)
    return names


def test_launch_files_name_our_executables_and_existing_config_files(declared: dict[str, set[str]]) -> None:
    scripts = console_scripts()
    assert {"pilot.launch.py", "sim.launch.py", "record.launch.py"} <= {path.name for path in LAUNCH_FILES}
    for path, given in VARIANTS:
        nodes = launch_nodes(path, **given)
        assert nodes, (path, given)
        for node in nodes:
            assert node["executable"] in scripts and node["executable"] != "liquid-pilot", (path, given, node)
            module, function = scripts[node["executable"]].split(":")
            assert callable(getattr(importlib.import_module(module), function))
            assert node["name"] == node["executable"]  # the YAML sections are keyed by these names
            assert node["files"], (path, given, node)
            for name in node["files"] + node["user_default"]:
                assert (CONFIG / name).is_file(), (path, given, name)
            assert set(node["literal"]) <= declared[node["name"]], (path, given, node)


def test_every_launch_argument_is_documented_and_declared() -> None:
    # `ros2 launch liquid_pilot X.launch.py --show-args` prints these descriptions (and those of included files).
    for path in LAUNCH_FILES:
        arguments = launch_arguments(path)
        for name, argument in arguments.items():
            assert len(argument["description"]) > 10, (path, name)
            # Each has a default, or choices that the tests try one by one (launch refuses any other value).
            assert argument["default"] is not None or argument["choices"], (path, name)
        used = {call.args[0].value for call in ast.walk(ast.parse(path.read_text()))
                if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "LaunchConfiguration"}
        assert used <= set(arguments), (path, used - set(arguments))


def test_each_stacks_launch_file_is_the_bridge_launch_file_with_its_stack() -> None:
    # `ros2 launch liquid_pilot px4.launch.py ARGS` runs `bridge.launch.py stack:=px4 ARGS`: the same nodes and
    # arguments for every stack, whose config/STACK.yaml gives the bridge and the recorder their defaults.
    bridge = ROOT / "launch" / "bridge.launch.py"
    assert launch_arguments(bridge)["stack"]["choices"] == STACKS
    for stack in STACKS:
        path = ROOT / "launch" / f"{stack}.launch.py"
        assert launch_arguments(path) == {}, path  # --show-args lists the included bridge.launch.py's
        nodes = launch_nodes(path)
        assert nodes == launch_nodes(bridge, stack=stack), path
        assert {node["launch_file"] for node in nodes} == {"bridge.launch.py"}, path
        assert [(node["name"], node["files"], node["user_default"]) for node in nodes] == [
            ("pilot_node", ["pilot.yaml"], [f"{stack}.yaml"]), ("bridge_node", [f"{stack}.yaml"], [f"{stack}.yaml"]),
            ("recorder_node", [f"{stack}.yaml"], [f"{stack}.yaml"])], path
        assert (CONFIG / f"{stack}.yaml").is_file(), stack


def sections(path: Path) -> set[str]:
    """The node names a parameter file has sections for (``**``: every node)."""
    return {str(key).strip("/").split("/")[-1] for key in yaml.safe_load(path.read_text())}


@pytest.mark.parametrize(("path", "given"), VARIANTS, ids=[
    "-".join([path.name, *(f"{k}={v}" for k, v in given.items())]) for path, given in VARIANTS])
def test_the_users_file_comes_last_over_every_nodes_shipped_defaults(path: Path, given: dict[str, str]) -> None:
    # A user's file sets only what it changes: what it leaves out keeps the shipped value (issue: a file with
    # only a sim_node section used to ground the pilot).
    for node in launch_nodes(path, **given):
        assert node["user"], (path, given, node["name"])
        # The argument's default is one of the node's shipped files, or one with no section for the node (the
        # stack's file for the pilot): applying it again changes nothing.
        assert len(node["user_default"]) == 1, (path, given, node)
        default = node["user_default"][0]
        assert default in node["files"] or not {node["name"], "**"} & sections(CONFIG / default), (path, given, node)


def test_every_parameter_in_the_config_files_is_declared_by_its_node(declared: dict[str, set[str]]) -> None:
    # config/ holds other settings too (training); ROS parameter files have only node sections.
    files = [path for path in sorted(CONFIG.glob("*.yaml")) if all(
        isinstance(body, dict) and "ros__parameters" in body for body in yaml.safe_load(path.read_text()).values())]
    used = {name for nodes in launcher.MODES.values() for _, names in nodes for name in names}
    assert used <= {path.name for path in files}
    for path in files:
        for section, body in yaml.safe_load(path.read_text()).items():
            assert section.startswith("/**/"), section  # applies in any namespace (launch arguments)
            node = section.removeprefix("/**/")
            assert node in declared, (path, section)
            assert set(body) == {"ros__parameters"}
            unknown = set(body["ros__parameters"]) - declared[node]
            assert not unknown, (path, section, unknown)


def test_the_parameter_tables_are_what_the_nodes_declare(declared: dict[str, set[str]]) -> None:
    for node in launcher.NODES:
        assert {p.name for p in launcher.parameters(node)} <= declared[node]
        assert declared[node] - {p.name for p in launcher.parameters(node)} <= set(BUILTIN)


def test_the_launcher_modes_are_the_launch_files() -> None:
    # The flight stacks' launch files (bridge.launch.py, STACK.launch.py) have no mode: a drone runs ros2 launch.
    modes = [path.name.removesuffix(".launch.py") for path in LAUNCH_FILES]
    simulated = [mode for mode in modes if mode not in ("bridge", *STACKS)]
    assert simulated and set(simulated) <= set(launcher.MODES)  # every such launch file is a launcher mode
    for mode in simulated:
        path = ROOT / "launch" / f"{mode}.launch.py"
        assert launcher.MODES[mode] == [(n["name"], n["files"]) for n in launch_nodes(path)], mode


def params_file(*names: str, extra: str = "") -> list[str]:
    args = ["--ros-args"]
    for name in names:
        args += ["--params-file", str(CONFIG / name)]
    return args + (["-p", extra] if extra else [])


def expect(node: Node, *names: str, besides: str = "") -> None:
    """The node's values are those its sections in these files give (later files win), but ``besides``."""
    want: dict = {}
    for name in names:
        want.update(launcher.load_params(CONFIG / name, node.get_name()))
    assert want
    for key, value in want.items():
        if key == besides:
            continue
        assert node.get_parameter(key).value == value or list(node.get_parameter(key).value) == value, key


def test_the_config_files_load_through_rcl_as_launch_files_pass_them(ros: Ros, model: Path, tmp_path: Path) -> None:
    # rcl's own YAML parser reads them (as ros2 launch passes them); the values arrive typed and whole.
    pilot = PilotNode(namespace="yaml", cli_args=params_file("pilot.yaml", "sim.yaml", extra=f"model:={model}"))
    expect(pilot, "pilot.yaml", "sim.yaml", besides="model")
    assert pilot.get_parameter("use_sim_time").value  # in the simulator, sim_node enables the pilot per episode
    assert not pilot.params["start_enabled"]
    pilot.destroy_node()
    # A user's file that sets only the simulator, passed last to both nodes (as sim.launch.py's params_file):
    # the pilot keeps the shipped simulation settings.
    mine = tmp_path / "mine.yaml"
    mine.write_text("/**/sim_node:\n  ros__parameters:\n    scenario: urban\n")
    pilot = PilotNode(namespace="yaml", cli_args=params_file("pilot.yaml", "sim.yaml", extra=f"model:={model}")
                      + ["--params-file", str(mine)])
    assert pilot.get_parameter("use_sim_time").value
    pilot.destroy_node()
    sim = SimNode(namespace="yaml", cli_args=params_file("sim.yaml") + ["--params-file", str(mine)])
    assert sim.params["scenario"] == "urban" and sim.params["pilot_enable_service"] == "pilot_node/enable"
    sim.destroy_node()
    for files in (("sim.yaml",), ("sim.yaml", "record.yaml")):
        sim = SimNode(namespace="yaml", cli_args=params_file(*files))
        expect(sim, *files)
        sim.destroy_node()
    recorder = RecorderNode(namespace="yaml", cli_args=params_file("record.yaml", extra=f"output:={tmp_path / 'r'}"))
    assert recorder.params["topics"] == launcher.load_params(CONFIG / "record.yaml", "recorder_node")["topics"]
    assert recorder.get_parameter("use_sim_time").value
    recorder.destroy_node()


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return cli("ros", *args, timeout=timeout, env=isolate())


@pytest.mark.parametrize(("argv", "message"), [
    (["fly"], "invalid choice: 'fly'"),
    (["sim", "--params", "/no/such.yaml"], "--params /no/such.yaml: no such file"),
    (["pilot", "--set", "control_rate=fast"], "parameter 'control_rate' must be a number, got 'fast'"),
    (["pilot", "--set", "contol_rate=5.0"], "no node in this mode (pilot_node) has parameter 'contol_rate'"),
    (["sim", "--set", "sim_node.model=x.pt"], "sim_node has no parameter 'model'"),
    (["record", "--set", "output"], "--set expects name=value or node.name=value, got 'output'"),
])
def test_launcher_mistakes_are_one_line_and_exit_code_2(argv: list[str], message: str,
                                                        capsys: pytest.CaptureFixture) -> None:
    assert launcher.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_launcher_refuses_unknown_parameters_in_a_params_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "mine.yaml").write_text("pilot_node:\n  ros__parameters:\n    max_speed: 2.0\n")
    assert launcher.main(["pilot", "--params", str(tmp_path / "mine.yaml")]) == 2
    assert "pilot_node has no parameter 'max_speed'" in capsys.readouterr().err


def test_launcher_node_refusal_is_a_clear_error_in_a_process() -> None:
    # Checked by the node itself, not by the launcher before it: the model file.
    result = run_cli("pilot", "--set", "model=/no/such/pilot.pt")
    assert result.returncode == 2, result.stderr
    assert result.stderr == "error: /no/such/pilot.pt: no such file\n"


def test_liquid_pilot_ros_record_writes_a_readable_bag_of_expert_flights(ros: Ros, tmp_path: Path) -> None:
    listener = ros.node("record_listener")
    statuses: list[dict] = []
    listener.create_subscription(String, "/sim_node/status", lambda m: statuses.append(json.loads(m.data)),
                                 QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    process = subprocess.Popen(
        [sys.executable, "-m", "liquid_pilot.cli", "ros", "record", "--set", f"output={tmp_path / 'demos'}",
         "--set", "real_time_factor=0.0", "--set", "seed=2"],
        env=isolate(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # even if the tests ignore Ctrl-C
    try:
        # Two episodes: the first one's end is surely in the bag when the second one ends.
        assert wait_for(lambda: sum(1 for s in statuses if s["reason"]) >= 2, timeout=40), "no two episodes ended"
        process.send_signal(signal.SIGINT)  # Ctrl-C
        output, _ = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, output
    assert "Traceback" not in output and "Failed to publish" not in output
    assert all(s["seed"] == 2 + s["episode"] for s in statuses)
    assert next(s for s in statuses if s["reason"])["reason"] == "reached"
    with AnyReader([tmp_path / "demos"]) as reader:  # one bag folder (recorder_node)
        topics = {topic: info.msgcount for topic, info in reader.topics.items()}
        first = reader.start_time
        recorded = [deserialize_message(data, String) for c, _, data in reader.messages()
                    if c.topic == "/sim_node/status"]
        firsts = {}  # topic -> header stamp of its first message
        for connection, _, data in reader.messages():
            if connection.topic in ("/camera/image_raw", "/imu/data") and connection.topic not in firsts:
                firsts[connection.topic] = reader.deserialize(data, connection.msgtype).header.stamp
    assert topics["/camera/image_raw"] > 40 and topics["/cmd_vel"] > 40
    assert {"/camera/camera_info", "/imu/data", "/odom"} <= set(topics)
    assert 2e9 <= first < 10e9  # stamped in simulated time (the first episode starts at 2 s), not wall time
    # The simulator waited for the recorder: the first episode is in the bag from its first frame.
    assert {topic: (s.sec, s.nanosec) for topic, s in firsts.items()} == {
        "/camera/image_raw": (int(EPISODE_GAP_S), 0), "/imu/data": (int(EPISODE_GAP_S), 0)}
    assert any(json.loads(s.data)["reason"] == "reached" for s in recorded)
    # The first episode's start is published before the first /clock: held, then filed, not lost.
    assert json.loads(recorded[0].data)["episode"] == 0 and json.loads(recorded[0].data)["reason"] is None
    assert "not recorded" not in output


def test_the_flight_stack_launch_shuts_down_when_the_bridge_exits() -> None:
    """bridge.launch.py (and so each STACK.launch.py): launch's standard OnProcessExit on the bridge_node action
    emits Shutdown, so the pilot and the recorder never run on alone."""
    tree = ast.parse((ROOT / "launch" / "bridge.launch.py").read_text())
    assigned = {t.id: node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    handlers = [call for call in ast.walk(tree) if isinstance(call, ast.Call)
                and getattr(call.func, "id", "") == "OnProcessExit"]
    assert len(handlers) == 1
    kwargs = {k.arg: k.value for k in handlers[0].keywords}
    target = assigned[kwargs["target_action"].id]
    assert getattr(target.func, "id", "") == "Node" and \
        {k.arg: k.value.value for k in target.keywords if k.arg == "executable"} == {"executable": "bridge_node"}
    actions = kwargs["on_exit"].elts
    assert [getattr(a.func, "id", "") for a in actions] == ["Shutdown"]
    registered = [call for call in ast.walk(tree) if isinstance(call, ast.Call)
                  and getattr(call.func, "id", "") == "RegisterEventHandler"]
    assert registered and registered[0].args[0] is handlers[0]
    imports = {alias.name: node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for alias in node.names}
    assert imports["OnProcessExit"] == "launch.event_handlers" and imports["Shutdown"] == "launch.actions"
    assert imports["RegisterEventHandler"] == "launch.actions"


@pytest.mark.parametrize("executable", ["pilot_node", "sim_node", "recorder_node", "player_node", "bridge_node"])
def test_help_on_a_node_executable_prints_its_parameters_and_starts_nothing(executable: str, tmp_path: Path) -> None:
    module = importlib.import_module(f"liquid_pilot.ros.{executable}")
    result = subprocess.run([sys.executable, "-m", f"liquid_pilot.ros.{executable}", "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: ros2 run liquid_pilot {executable}")
    for param in module.PARAMETERS:
        assert f"\n  {param.name} (" in result.stdout and param.description in result.stdout
    assert list(tmp_path.iterdir()) == []  # no node ran: the recorder made no bag folder
