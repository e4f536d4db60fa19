"""The package as a ROS user builds it: colcon into a fresh workspace, plain and --symlink-install.

Marked ``colcon``; skipped only where colcon is not installed (``make test`` installs it with the
``test`` extra, so CI runs these). Each build copies the package's own files (not .venv or build
outputs) into ``ws/src/liquid_pilot`` and takes a few seconds.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_ros_launch import LAUNCH_FILES, console_scripts, launch_nodes
from test_ros_support import isolate

pytest.importorskip("colcon_core", reason="colcon is not installed (pip install colcon-common-extensions)")
pytestmark = pytest.mark.colcon

ROOT = Path(__file__).resolve().parents[1]
# What the package is made of; the rest of a checkout (.venv, build outputs, results) stays out.
SOURCES = ("setup.py", "setup.cfg", "package.xml", "README.md", "colcon.pkg", "requirements.txt", "resource",
           "liquid_pilot", "launch", "config", "models", "sim")


@pytest.fixture(scope="module", params=["plain", "symlink"])
def install(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with the package built by colcon; returns its install/ folder."""
    ws = tmp_path_factory.mktemp(f"ws_{request.param}")
    src = ws / "src" / "liquid_pilot"
    src.mkdir(parents=True)
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    command = [sys.executable, "-c", "from colcon_core.command import main; raise SystemExit(main())", "build",
               "--event-handlers", "console_cohesion+"]
    if request.param == "symlink":
        command.append("--symlink-install")
    start = time.monotonic()
    result = subprocess.run(command, cwd=ws, capture_output=True, text=True, timeout=300, env=clean_env())
    print(f"colcon build ({request.param}): {time.monotonic() - start:.1f} s")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert "Summary: 1 package finished" in result.stdout + result.stderr
    # colcon-ros warns when a package relies on its fallbacks (marker, package.xml); we install both.
    assert "WARNING" not in result.stderr, result.stderr
    return ws / "install"


def clean_env() -> dict[str, str]:
    """This process's environment without another workspace's prefixes (a user's fresh shell)."""
    return {k: v for k, v in isolate().items() if k not in ("AMENT_PREFIX_PATH", "COLCON_PREFIX_PATH",
                                                            "CMAKE_PREFIX_PATH")}


def sourced(install: Path, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a shell command after `. install/setup.sh`, as a user does after sourcing the workspace."""
    return subprocess.run(["sh", "-c", f". '{install}/setup.sh' && {command}"], capture_output=True, text=True,
                          timeout=timeout, env=clean_env(), cwd=install.parent)


def test_executables_are_where_ros2_run_looks(install: Path) -> None:
    lib = install / "liquid_pilot" / "lib" / "liquid_pilot"
    for name in console_scripts():  # `ros2 run liquid_pilot NAME` runs <prefix>/lib/liquid_pilot/NAME
        assert (lib / name).is_file() and os.access(lib / name, os.X_OK), name


def test_share_holds_the_manifest_launch_files_configs_models_and_scenarios(install: Path) -> None:
    prefix = install / "liquid_pilot"
    share = prefix / "share" / "liquid_pilot"
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "liquid_pilot").is_file()
    assert (share / "package.xml").read_text() == (ROOT / "package.xml").read_text()
    for folder, pattern in (("launch", "*.launch.py"), ("config", "*.yaml"), ("models", "*.pt"),
                            ("sim/scenarios", "*.yaml"), ("sim/validation", "*.yaml"), ("sim/hard", "*.yaml"),
                            ("sim/training", "*.yaml")):
        assert ({p.name for p in (share / folder).glob(pattern)}
                == {p.name for p in (ROOT / folder).glob(pattern)}), folder
    assert (share / "sim" / "assets" / "cf2x.urdf").is_file()


def test_the_installed_launch_files_find_their_parameter_files(install: Path) -> None:
    share = install / "liquid_pilot" / "share" / "liquid_pilot"
    assert LAUNCH_FILES
    checked = 0
    for path in LAUNCH_FILES:
        installed = share / "launch" / path.name
        nodes = launch_nodes(installed)  # FindPackageShare('liquid_pilot') / config / NAME
        assert nodes, path.name
        for node in nodes:
            for name in node["files"] + node.get("user_default", []):
                assert (share / "config" / name).is_file(), (path.name, name)
                checked += 1
    assert checked >= len(LAUNCH_FILES)  # every launch file gives its nodes parameter files


def test_liquid_pilot_and_the_nodes_run_from_the_sourced_install(install: Path) -> None:
    result = sourced(install, "command -v liquid-pilot && python -c 'import liquid_pilot, liquid_pilot.paths as p; "
                              "print(liquid_pilot.__file__); print(p.data_dir(\"config\"))' && liquid-pilot sim --list")
    assert result.returncode == 0, result.stderr
    where, module, config, *scenarios = result.stdout.splitlines()
    ws = install.parent
    assert where == str(install / "liquid_pilot" / "share" / "liquid_pilot" / "bin" / "liquid-pilot")
    assert module.startswith(str(ws)), module  # the workspace's code, not the checkout's editable install
    assert config.startswith(str(ws)), config
    assert any(line.startswith("forest_summer ") for line in scenarios)
    # `ros2 run liquid_pilot sim_node --ros-args -p scenario:=mars`: the node finds its data, refuses in one line.
    result = sourced(install, "liquid_pilot_lib=$(dirname $(command -v liquid-pilot))/../../../lib/liquid_pilot && "
                              "$liquid_pilot_lib/sim_node --ros-args -p scenario:=mars")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("pybullet build time")]
    assert len(lines) == 1 and lines[0].startswith("error: unknown scenario 'mars'; available: "), result.stderr


def test_a_symlink_install_links_to_the_sources(install: Path) -> None:
    share = install / "liquid_pilot" / "share" / "liquid_pilot"
    if "symlink" not in install.parent.name:
        assert not (share / "config" / "sim.yaml").is_symlink()
        return
    # Edit a config or a launch file in src/ and the install has it without a rebuild.
    for path in (share / "config" / "sim.yaml", share / "launch" / "sim.launch.py"):
        assert path.is_symlink() and path.resolve().is_relative_to(install.parent / "src"), path
