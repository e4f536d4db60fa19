"""Bad settings through every entry point: one line on stderr naming the source, exit code 2, no traceback.

One table: for each way a setting gets in (the CLI's --set and scenario files, the in-process
launcher's --set and --params, the node executables' --ros-args and parameter files, configs built
in code) a wrong type, a value out of range, an unknown name and bad YAML.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_ros_support import isolate

from liquid_pilot import cli
from liquid_pilot.ros import launcher
from liquid_pilot.settings import SettingsError, parse_assignments, read_yaml
from liquid_pilot.sim.config import InjectConfig, SceneConfig, Scenario

BANNER = "pybullet build time"  # PyBullet prints this line on import; it is not ours to silence

FILES = {  # name -> content, written to tmp_path
    "broken.yaml": "inject: {image_noise: [0.1\n",
    "typed.yaml": "inject: {image_noise: lots}\n",
    "unknown.yaml": "inject: {fog: 0.5}\n",
    "range.yaml": "task: {occlusion: 0.9}\n",
    "params_broken.yaml": "/**/sim_node:\n  ros__parameters:\n    seed: [1\n",
    "params_typed.yaml": "/**/sim_node:\n  ros__parameters:\n    seed: first\n",
    "params_unknown.yaml": "/**/sim_node:\n  ros__parameters:\n    sed: 1\n",
}

# (entry point, arguments with {tmp} for the files' folder, what the one line says)
IN_PROCESS = [
    # liquid-pilot sim / collect: scenario settings
    ("cli", ["sim", "--set", "inject.image_noise=abc"], "error: --set: inject.image_noise must be a number, got 'abc'"),
    ("cli", ["sim", "--set", "inject.frame_drop=1.5"], "error: --set: inject.frame_drop must be in [0, 1), got 1.5"),
    ("cli", ["sim", "--set", "inject.fog=1"], "error: --set: unknown setting 'inject.fog'; settings are section.field"),
    ("cli", ["sim", "--set", "sim.camera_hz=[16"], "error: --set 'sim.camera_hz=[16': value is not valid YAML: "),
    ("cli", ["sim", "--set", "sim.camera_hz"], "error: --set expects section.field=value, got 'sim.camera_hz'"),
    ("cli", ["collect", "--episodes", "1", "--out", "{tmp}/bags", "--set", "task.hold_s=-1"],
     "error: --set: task.hold_s must be >= 0, got -1"),
    ("cli", ["sim", "--scenario", "{tmp}/broken.yaml"], "error: {tmp}/broken.yaml: not valid YAML: "),
    ("cli", ["sim", "--scenario", "{tmp}/typed.yaml"],
     "error: {tmp}/typed.yaml: inject.image_noise must be a number, got 'lots'"),
    ("cli", ["sim", "--scenario", "{tmp}/unknown.yaml"], "error: {tmp}/unknown.yaml: unknown inject settings ['fog']"),
    ("cli", ["sim", "--scenario", "{tmp}/range.yaml"],
     "error: {tmp}/range.yaml: task.occlusion must be in [0, 0.8], got 0.9"),
    # liquid-pilot ros MODE: node parameters, before any node starts
    ("ros", ["sim", "--set", "real_time_factor=fast"],
     "error: --set: sim_node: parameter 'real_time_factor' must be a number, got 'fast'"),
    ("ros", ["sim", "--set", "pilot_node.max_speed_z=9.0"],
     "error: --set: pilot_node: parameter 'max_speed_z' must be in [0.0, 5.0], got 9.0"),
    ("ros", ["sim", "--set", "autopilot=human"],
     "error: --set: sim_node: parameter 'autopilot' must be one of none, expert, got 'human'"),
    ("ros", ["sim", "--set", "senario=urban"], "error: --set 'senario=urban': no node in this mode"),
    ("ros", ["sim", "--set", "seed=[1"], "error: --set 'seed=[1': value is not valid YAML: "),
    ("ros", ["record", "--set", "output"], "error: --set expects name=value or node.name=value, got 'output'"),
    ("ros", ["sim", "--params", "{tmp}/params_broken.yaml"], "error: {tmp}/params_broken.yaml: not valid YAML: "),
    ("ros", ["sim", "--params", "{tmp}/params_typed.yaml"],
     "error: {tmp}/params_typed.yaml: sim_node: parameter 'seed' must be a whole number, got 'first'"),
    ("ros", ["sim", "--params", "{tmp}/params_unknown.yaml"],
     "error: {tmp}/params_unknown.yaml: sim_node has no parameter 'sed'"),
    ("ros", ["sim", "--set", "overrides=[inject.image_noise=abc]"],  # checked when the node loads its scenario
     "error: sim_node parameter 'overrides': inject.image_noise must be a number, got 'abc'"),
]

# The node executables, as `ros2 run liquid_pilot NODE --ros-args ...` runs them (each in its own process).
EXECUTABLES = [
    ("sim_node", ["-p", "real_time_factor:=fast"], "error: sim_node: parameter 'real_time_factor' must be a number, "
                                                   "got 'fast'"),
    ("sim_node", ["-p", "seed:=-3"], "error: sim_node: parameter 'seed' must be in [0, 2147483647], got -3"),
    ("sim_node", ["-p", "senario:=urban"], "error: sim_node has no parameter 'senario' (given by --ros-args or a "
                                           "parameter file); it has: "),
    ("sim_node", ["--params-file", "{tmp}/params_broken.yaml"], "error: {tmp}/params_broken.yaml: not valid YAML: "),
    ("sim_node", ["-p", "overrides:=[inject.blur=-1]"],
     "error: sim_node parameter 'overrides': inject.blur must be >= 0, got -1"),
    ("pilot_node", ["-p", "max_speed_z:=9.0"], "error: pilot_node: parameter 'max_speed_z' must be in [0.0, 5.0], "
                                               "got 9.0"),
]


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if not line.startswith(BANNER)]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(("entry", "argv", "message"), IN_PROCESS)
def test_bad_settings_on_the_command_line(entry: str, argv: list[str], message: str, files: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    argv = [a.replace("{tmp}", str(files)) for a in argv]
    code = cli.main(argv) if entry == "cli" else launcher.main(argv)
    assert code == 2
    assert one_line(capsys.readouterr().err).startswith(message.replace("{tmp}", str(files)))


@pytest.mark.parametrize(("node", "args", "message"), EXECUTABLES)
def test_bad_settings_given_to_the_node_executables(node: str, args: list[str], message: str, files: Path) -> None:
    args = [a.replace("{tmp}", str(files)) for a in args]
    result = subprocess.run([sys.executable, "-m", f"liquid_pilot.ros.{node}", "--ros-args", *args],
                            capture_output=True, text=True, timeout=120, env=isolate())
    assert result.returncode == 2, result.stderr
    assert one_line(result.stderr).startswith(message.replace("{tmp}", str(files)))


@pytest.mark.parametrize(("build", "message"), [
    (lambda: InjectConfig(image_noise="abc"), "inject.image_noise must be a number, got 'abc'"),
    (lambda: InjectConfig(wind=-0.1), "inject.wind must be >= 0, got -0.1"),
    (lambda: SceneConfig(kind="desert"), "scene.kind must be one of forest, urban, got 'desert'"),
    (lambda: Scenario("mine", sim={"camera_hz": 16}), "sim must be SimConfig, got {'camera_hz': 16}"),
    (lambda: parse_assignments(["inject.blur"], "--set"), "--set expects name=value, got 'inject.blur'"),
])
def test_bad_settings_in_code(build, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        build()
    assert str(raised.value) == message


def test_read_yaml_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^.*missing.yaml: no such file$"):
        read_yaml(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1\n")
    with pytest.raises(SettingsError, match=r"bad.yaml: not valid YAML: expected ',' or '\]', but got '<stream end>' "
                                            r"\(line 2, column 1\)$"):
        read_yaml(tmp_path / "bad.yaml")
