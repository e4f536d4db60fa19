"""One list of dependencies (setup.py's DEPENDENCIES) that package.xml and requirements.txt follow.

A ROS user installs with rosdep (package.xml) plus pip (requirements.txt); a pip user with setup.py.
These tests fail when a library is imported but not declared, or declared in one place and not the
others.
"""
from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Top-level modules the package imports -> the requirement (a DEPENDENCIES key) or ROS-only key providing them.
PROVIDERS = {
    "numpy": "numpy", "onnxruntime": "onnxruntime", "cv2": "opencv-python-headless", "yaml": "pyyaml",
    "rosbags": "rosbags", "lz4": "rosbags", "backports": "rosbags",  # rosbags' own dependencies (MCAP chunks)
    "pybullet": "pybullet", "gymnasium": "gymnasium", "torch": "torch==2.13.0", "onnx": "onnx", "tqdm": "tqdm",
    "matplotlib": "matplotlib", "rclpy": "ros-rclpy[fastrtps]", "rcl_interfaces": "ros-rcl-interfaces",
    "builtin_interfaces": "ros-builtin-interfaces", "sensor_msgs": "ros-sensor-msgs",
    "geometry_msgs": "ros-geometry-msgs", "std_msgs": "ros-std-msgs", "std_srvs": "ros-std-srvs",
    "nav_msgs": "ros-nav-msgs", "rosgraph_msgs": "ros-rosgraph-msgs", "launch": "launch", "launch_ros": "launch_ros",
    "diagnostic_msgs": "ros-diagnostic-msgs", "visualization_msgs": "ros-visualization-msgs",
    "ray": "ray[train]", "pymavlink": "pymavlink", "cflib": "cflib",
}


def setup_constant(name: str):  # noqa: ANN201
    """A literal assigned at the top of setup.py, read without running it."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == name)
    return ast.literal_eval(node.value)


def test_package_xml_has_every_rosdep_key_of_the_run_time_dependencies() -> None:
    deps = setup_constant("DEPENDENCIES")
    run = setup_constant("FULL") + ("ros",)
    keys = [key for group in run for key in deps[group].values() if key] + list(setup_constant("ROS_ONLY"))
    manifest = [e.text for e in ET.parse(ROOT / "package.xml").getroot().iter("exec_depend")]
    assert sorted(manifest) == sorted(keys) and len(set(keys)) == len(keys)


def test_requirements_txt_lists_the_run_time_libraries_without_a_rosdep_key() -> None:
    deps = setup_constant("DEPENDENCIES")
    without_key = [name for group in setup_constant("FULL") for name, key in deps[group].items() if key is None]
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert [line for line in lines if line and not line.startswith("#")] == without_key


def test_every_library_the_package_imports_is_declared() -> None:
    deps = setup_constant("DEPENDENCIES")
    declared = {name for group in deps.values() for name in group} | set(setup_constant("ROS_ONLY"))
    imported: dict[str, str] = {}
    for path in sorted((ROOT / "liquid_pilot").rglob("*.py")) + sorted((ROOT / "launch").glob("*.py")):
        tree = ast.parse(path.read_text())
        optional = {id(node) for block in ast.walk(tree) if isinstance(block, ast.Try) and any(
            "ImportError" in ast.unparse(h.type or ast.Name("")) for h in block.handlers)
            for statement in block.body for node in ast.walk(statement)}  # try: import x / except ImportError
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("liquid_pilot", "__future__"):
                    imported.setdefault(top, str(path.relative_to(ROOT)))
    unknown = {top: where for top, where in imported.items() if top not in PROVIDERS}
    assert not unknown, f"add these imports to DEPENDENCIES in setup.py (and PROVIDERS here): {unknown}"
    missing = {top: PROVIDERS[top] for top in imported if PROVIDERS[top] is not None and PROVIDERS[top] not in declared}
    assert not missing, f"imported but not in setup.py's DEPENDENCIES: {missing}"


def test_extras_and_executables_for_the_bridges() -> None:
    deps = setup_constant("DEPENDENCIES")
    assert list(deps["mavlink"]) == ["pymavlink", "pyserial"] and list(deps["crazyflie"]) == ["cflib"]
    text = (ROOT / "setup.py").read_text()
    assert '"test": requirements(*FULL, "test", "mavlink", "crazyflie", "ray")' in text  # the tests use them
    assert '"bridge_node = liquid_pilot.ros.bridge_node:main"' in text
    assert "colcon-common-extensions" in deps["test"]  # test_colcon.py builds the package in CI


def test_the_plain_install_is_the_onboard_flight_core() -> None:
    """`pip install liquid_pilot` is what a drone needs to fly an artefact: no PyTorch, simulator or plots;
    `[ros]` stays the full install docs/install.md gives, and `[onboard]` adds only the ROS 2 wheels."""
    deps = setup_constant("DEPENDENCIES")
    assert setup_constant("ONBOARD") == ("flight",)
    assert not {"torch==2.13.0", "pybullet", "matplotlib", "onnx"} & set(deps["flight"])
    text = (ROOT / "setup.py").read_text()
    assert "install_requires=requirements(*ONBOARD)" in text
    assert '"ros": requirements(*FULL, "ros")' in text and '"onboard": requirements("ros")' in text
