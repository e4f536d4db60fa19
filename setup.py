"""ament_python package that is also an ordinary pip package.

DEPENDENCIES below is the one list of what the package needs, by group, each library with its
rosdep key where one exists: package.xml's exec_depends are those keys, requirements.txt lists the
libraries without one (a ROS install gets them with pip), and test_packaging.py checks that both
follow this list.
"""
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "liquid_pilot"
# Resolved: `colcon build --symlink-install` runs a symlink of this file from the build folder.
ROOT = Path(__file__).resolve().parent

# group -> {pip requirement: rosdep key or None}. `pip install liquid_pilot` installs "flight" alone:
# what a drone needs to fly an exported artefact (docs/install.md, On the drone). The extras add the rest.
DEPENDENCIES = {
    # flying a pilot: the flight core, the ROS nodes, bags
    "flight": {
        "numpy": "python3-numpy",
        "onnxruntime": "python3-onnxruntime-pip",
        "opencv-python-headless": "python3-opencv",  # headless: no libGL needed on servers and robots
        "pyyaml": "python3-yaml",
        "rosbags": "python3-rosbags-pip",
    },
    # the simulator
    "sim": {
        "pybullet": "python3-pybullet-pip",
        "gymnasium": "python3-gymnasium-pip",
    },
    # training, checkpoints and export (a checkpoint is exported to ONNX when a pilot starts)
    "train": {
        "torch==2.13.0": None,  # the CPU build; a looser pin (or rosdep's python3-torch) pulls another build
        "onnx": None,
        "tqdm": "python3-tqdm",
        "ruamel.yaml.clib": None,  # rosbags parses bag metadata with ruamel: the C loader is 3x faster
    },
    # plots, the demo's video and the wiring drawing
    "plot": {
        "matplotlib": "python3-matplotlib",
    },
    # ROS 2 Kilted as pip wheels (a ROS install has them already; launch files need launch and launch_ros,
    # which have no wheels)
    "ros": {
        "ros-rclpy[fastrtps]": "rclpy",
        "ros-rcl-interfaces": "rcl_interfaces",
        "ros-builtin-interfaces": "builtin_interfaces",
        "ros-sensor-msgs": "sensor_msgs",
        "ros-geometry-msgs": "geometry_msgs",
        "ros-std-msgs": "std_msgs",
        "ros-std-srvs": "std_srvs",
        "ros-nav-msgs": "nav_msgs",
        "ros-rosgraph-msgs": "rosgraph_msgs",
        "ros-diagnostic-msgs": "diagnostic_msgs",  # /diagnostics from every node
        "ros-visualization-msgs": "visualization_msgs",  # sim_node's markers for RViz and Foxglove
    },
    # flight stack bridges (liquid_pilot/bridge): MAVLink (PX4, ArduPilot) and Crazyflie
    "mavlink": {"pymavlink": "python3-pymavlink-pip", "pyserial": "python3-serial"},  # pyserial: serial links
    "crazyflie": {"cflib": None},
    # collect, eval and train on a Ray cluster (--ray); train runs its processes as Ray Train workers
    "ray": {"ray[train]": None},
    # the test suite: ncps as the reference implementation, the ament linters' checks, and colcon to
    # build the package as a ROS user does
    "test": {
        "pytest": "python3-pytest",
        "ncps==1.0.1": None,
        "flake8": "python3-flake8",
        "pydocstyle": None,
        "colcon-common-extensions": None,
        "mcap": None,  # a second MCAP writer (Foxglove's), to read what other tools write
    },
}
FULL = ("flight", "sim", "train", "plot")  # the workstation: simulator, training, plots (and a ROS install's)
ONBOARD = ("flight",)  # the flight computer: pilot_node on an exported artefact, nothing else
ROS_ONLY = ("launch", "launch_ros")  # rosdep keys without a pip wheel: package.xml only


def requirements(*groups: str) -> list[str]:
    return [name for group in groups for name in DEPENDENCIES[group]]


def share_files() -> list[tuple[str, list[str]]]:
    """launch/, config/, models/ and sim/ go to share/liquid_pilot/, keeping sub-folders."""
    entries: dict[str, list[str]] = {}
    for top in ("launch", "config", "models", "sim"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                rel = path.relative_to(ROOT)
                entries.setdefault(f"share/{PACKAGE}/{rel.parent}", []).append(str(rel))
    return [
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        # colcon installs: `liquid-pilot` on PATH after sourcing (colcon.pkg lists the hook)
        (f"share/{PACKAGE}/bin", ["resource/liquid-pilot"]),
        (f"share/{PACKAGE}/hook", ["resource/path.dsv", "resource/path.sh"]),
        *sorted(entries.items()),
    ]


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Fly a drone with a liquid neural network (CfC/LTC Neural Circuit Policy)",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(exclude=["test", "test.*", "bench"]),
    data_files=share_files(),
    install_requires=requirements(*ONBOARD),
    extras_require={
        "sim": requirements("sim"),
        "train": requirements("train"),
        "plot": requirements("plot"),
        "full": requirements(*FULL),
        # the full install with the ROS 2 Kilted wheels (`pip install -e '.[ros]'`, as docs/install.md says)
        "ros": requirements(*FULL, "ros"),
        # the flight computer's install: the flight core and the ROS 2 wheels only (no PyTorch, no simulator)
        "onboard": requirements("ros"),
        "mavlink": requirements("mavlink"),
        "crazyflie": requirements("crazyflie"),
        "ray": requirements("ray"),
        # the tests use the bridges and Ray too
        "test": requirements(*FULL, "test", "mavlink", "crazyflie", "ray"),
    },
    zip_safe=True,
    entry_points={"console_scripts": [
        "liquid-pilot = liquid_pilot.cli:main",
        # ROS 2 executables (`ros2 run liquid_pilot pilot_node`); they need the `ros` extra.
        "pilot_node = liquid_pilot.ros.pilot_node:main",
        "sim_node = liquid_pilot.ros.sim_node:main",
        "recorder_node = liquid_pilot.ros.recorder_node:main",
        "player_node = liquid_pilot.ros.player_node:main",
        "bridge_node = liquid_pilot.ros.bridge_node:main",
    ]},
)
