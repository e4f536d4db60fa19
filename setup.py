"""ament_python package that is also an ordinary pip package."""
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "liquid_pilot"
ROOT = Path(__file__).parent


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
        *sorted(entries.items()),
    ]


ROS = ["ros-rclpy[fastrtps]", "ros-sensor-msgs", "ros-geometry-msgs", "ros-std-msgs", "ros-std-srvs",
       "ros-nav-msgs", "ros-rosgraph-msgs"]

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
    install_requires=[
        "torch==2.13.0",  # the CPU build; a looser pin pulls a multi-GB CUDA build
        "numpy",
        "onnx",
        "onnxruntime",
        "matplotlib",
        "pyyaml",
        "pybullet",
        "gymnasium",
        "opencv-python-headless",  # headless: no libGL needed on servers and robots
        "rosbags",
        "ruamel.yaml.clib",  # rosbags parses bag metadata with ruamel: the C loader is 3x faster
        "tqdm",
    ],
    extras_require={
        "ros": ROS,
        "ray": ["ray"],  # collect and eval on a Ray cluster (--ray)
        "test": ["pytest", "ncps==1.0.1", "flake8", "pydocstyle", "ray"],
    },
    zip_safe=True,
    entry_points={"console_scripts": [
        "liquid-pilot = liquid_pilot.cli:main",
        # ROS 2 executables (`ros2 run liquid_pilot pilot_node`); they need the `ros` extra.
        "pilot_node = liquid_pilot.ros.pilot_node:main",
        "sim_node = liquid_pilot.ros.sim_node:main",
        "recorder_node = liquid_pilot.ros.recorder_node:main",
        "player_node = liquid_pilot.ros.player_node:main",
    ]},
)
