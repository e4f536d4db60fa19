"""Scenario configuration: the simulator, the scene, the task and the injected disturbances.

A scenario is a YAML file in ``sim/scenarios/`` whose sections override these dataclasses'
defaults. Every value is checked on load; an error names the field and what is allowed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from liquid_pilot.paths import data_dir

SCENE_KINDS = ("forest", "urban")
SEASONS = ("summer", "autumn", "winter", "spring", "dry")
TASK_KINDS = ("fly_to_target", "moving_target", "hike")


class ScenarioError(ValueError):
    """A scenario that cannot be flown; the message says which field and what is allowed."""


@dataclass
class SimConfig:
    physics_hz: int = 240
    control_hz: int = 48  # the inner cascaded controller
    camera_hz: int = 16  # frames, and so pilot steps, per second
    image_width: int = 64
    image_height: int = 64
    fov_deg: float = 80.0  # vertical field of view
    camera_pitch_deg: float = 0.0  # positive tilts the camera down
    max_speed_xy: float = 1.0  # command limits, m/s and rad/s
    max_speed_z: float = 0.5
    max_yaw_rate: float = 1.0
    motor_time_constant: float = 0.05  # s, first-order motor lag
    max_tilt_deg: float = 60.0  # beyond this the flight counts as lost


@dataclass
class SceneConfig:
    kind: str = "forest"
    season: str = "summer"  # forest only; spring and dry are held out for validation
    obstacles: int = 36  # trees or buildings
    light: float = 1.0  # scales the scene's lighting (renderer), 1 = normal
    radius: float = 14.0  # the scene's half size, m; leaving it ends the flight


@dataclass
class TaskConfig:
    kind: str = "fly_to_target"
    standoff: float = 1.0  # m from the target's centre, horizontally
    tolerance: float = 0.35  # m either side of the stand-off distance
    hold_s: float = 1.0  # time to hold in the stand-off band with the target in view
    timeout_s: float = 25.0
    start_distance: list[float] = field(default_factory=lambda: [3.0, 5.0])  # m, uniform
    start_bearing_deg: list[float] = field(default_factory=lambda: [-25.0, 25.0])  # target off the nose
    target_yaw_deg: list[float] = field(default_factory=lambda: [-30.0, 30.0])  # 0 = chair faces the drone
    start_height: list[float] = field(default_factory=lambda: [0.8, 1.4])  # m
    occlusion: float = 0.0  # share of the target hidden from the start by an occluder, 0..0.8
    distractors: int = 0  # red look-alike objects that must not be approached
    distractor_radius: float = 1.0  # coming closer than this to a distractor fails the flight
    target_speed: float = 0.0  # m/s, moving_target only
    targets: int = 1  # hike: targets to visit in order


@dataclass
class InjectConfig:
    image_noise: float = 0.0  # Gaussian pixel noise, std in [0, 1] image units
    blur: float = 0.0  # Gaussian blur sigma, pixels
    brightness: float = 0.0  # added to pixels, [-1, 1] image units
    contrast: float = 1.0  # pixel contrast multiplier around mid-grey
    frame_drop: float = 0.0  # probability a frame never arrives
    frozen_frame: float = 0.0  # probability a frame repeats the previous image
    camera_latency_s: float = 0.0  # age of the image when it arrives
    gyro_noise: float = 0.005  # rad/s std per sample
    gyro_bias: float = 0.0  # rad/s, drawn per axis per episode with this std
    accel_noise: float = 0.05  # m/s^2 std per sample
    accel_bias: float = 0.0  # m/s^2, drawn per axis per episode with this std
    wind: float = 0.0  # std of the gust force, in g-fractions of the drone's weight
    wind_tau_s: float = 2.0  # gust correlation time (Ornstein-Uhlenbeck)
    actuator_noise: float = 0.0  # relative std of each motor's speed


@dataclass
class Scenario:
    name: str
    description: str = ""
    sim: SimConfig = field(default_factory=SimConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    inject: InjectConfig = field(default_factory=InjectConfig)

    def with_overrides(self, overrides: dict[str, Any]) -> Scenario:
        """Return a copy with "section.field" values replaced, validated."""
        data = dataclasses.asdict(self)
        for key, value in overrides.items():
            section, _, name = key.partition(".")
            if section not in SECTIONS or name not in data[section]:
                raise ScenarioError(f"unknown setting {key!r}; settings are section.field with sections "
                                    f"{', '.join(SECTIONS)}")
            data[section][name] = value
        return _build(self.name, data)


SECTIONS = {"sim": SimConfig, "scene": SceneConfig, "task": TaskConfig, "inject": InjectConfig}


def scenario_dir() -> Path:
    return data_dir("sim") / "scenarios"


def validation_dir() -> Path:
    """Held-out conditions for choosing training recipes; never part of the results table."""
    return data_dir("sim") / "validation"


def list_scenarios() -> list[str]:
    """Return the test conditions: the scenarios of the results table."""
    return sorted(p.stem for p in scenario_dir().glob("*.yaml"))


def list_validation() -> list[str]:
    """Return the held-out validation conditions."""
    return sorted(p.stem for p in validation_dir().glob("*.yaml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a scenario by name (``sim/scenarios/`` or ``sim/validation/NAME.yaml``) or from a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        found = [d / f"{name_or_path}.yaml" for d in (scenario_dir(), validation_dir())]
        path = next((f for f in found if f.is_file()), found[0])
        if not path.is_file():
            names = list_scenarios() + list_validation()
            raise ScenarioError(f"unknown scenario {str(name_or_path)!r}; available: {', '.join(names)}")
    elif not path.is_file():
        raise ScenarioError(f"{path}: no such scenario file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: expected a mapping of sections")
    return _build(path.stem, data, origin=str(path))


def _build(name: str, data: dict[str, Any], origin: str = "") -> Scenario:
    where = f"{origin}: " if origin else ""
    unknown = set(data) - set(SECTIONS) - {"name", "description"}
    if unknown:
        raise ScenarioError(f"{where}unknown sections {sorted(unknown)}; allowed: {', '.join(SECTIONS)}, description")
    sections = {}
    for section, cls in SECTIONS.items():
        values = data.get(section) or {}
        names = {f.name for f in dataclasses.fields(cls)}
        bad = set(values) - names
        if bad:
            raise ScenarioError(f"{where}unknown {section} settings {sorted(bad)}; allowed: {', '.join(sorted(names))}")
        sections[section] = cls(**values)
    scenario = Scenario(name=name, description=str(data.get("description", "")), **sections)
    problems = _problems(scenario)
    if problems:
        raise ScenarioError(f"{where}scenario {name!r}: " + "; ".join(problems))
    return scenario


def _problems(s: Scenario) -> list[str]:
    """Every impossible value, each with what is allowed."""
    out = []
    sim, scene, task, inject = s.sim, s.scene, s.task, s.inject
    for key in ("physics_hz", "control_hz", "camera_hz"):
        if not isinstance(getattr(sim, key), int) or getattr(sim, key) <= 0:
            out.append(f"sim.{key} must be a positive whole number of Hz, got {getattr(sim, key)!r}")
    if not out:
        for key in ("control_hz", "camera_hz"):
            if sim.physics_hz % getattr(sim, key):
                divisors = [d for d in range(1, sim.physics_hz + 1) if sim.physics_hz % d == 0]
                out.append(f"sim.{key}={getattr(sim, key)} must divide sim.physics_hz={sim.physics_hz}; "
                           f"allowed: {divisors}")
    if min(sim.image_width, sim.image_height) < 8:
        out.append(f"image size must be at least 8x8, got {sim.image_width}x{sim.image_height}")
    if not 10 <= sim.fov_deg <= 150:
        out.append(f"sim.fov_deg must be in [10, 150], got {sim.fov_deg}")
    for key in ("max_speed_xy", "max_speed_z", "max_yaw_rate", "motor_time_constant", "max_tilt_deg"):
        if getattr(sim, key) <= 0:
            out.append(f"sim.{key} must be positive, got {getattr(sim, key)}")
    if scene.kind not in SCENE_KINDS:
        out.append(f"scene.kind {scene.kind!r} is unknown; allowed: {', '.join(SCENE_KINDS)}")
    if scene.season not in SEASONS:
        out.append(f"scene.season {scene.season!r} is unknown; allowed: {', '.join(SEASONS)}")
    if scene.obstacles < 0 or scene.light <= 0 or scene.radius < 5:
        out.append("scene.obstacles must be >= 0, scene.light > 0 and scene.radius >= 5")
    if task.kind not in TASK_KINDS:
        out.append(f"task.kind {task.kind!r} is unknown; allowed: {', '.join(TASK_KINDS)}")
    for key in ("start_distance", "start_bearing_deg", "target_yaw_deg", "start_height"):
        value = getattr(task, key)
        if len(value) != 2 or value[0] > value[1]:
            out.append(f"task.{key} must be a [low, high] range, got {value}")
    if task.standoff <= 0 or task.tolerance <= 0 or task.hold_s < 0 or task.timeout_s <= 0:
        out.append("task.standoff, tolerance and timeout_s must be positive and hold_s >= 0")
    if len(task.start_distance) == 2 and task.start_distance[0] <= task.standoff + task.tolerance:
        out.append(f"task.start_distance must start beyond the stand-off band ({task.standoff + task.tolerance} m)")
    if len(task.start_distance) == 2 and task.start_distance[1] > scene.radius - 2:
        out.append(f"task.start_distance must fit in the scene (at most scene.radius - 2 = {scene.radius - 2} m)")
    if not 0 <= task.occlusion <= 0.8 or task.distractors < 0 or task.targets < 1 or task.target_speed < 0:
        out.append("task.occlusion must be in [0, 0.8], distractors >= 0, targets >= 1, target_speed >= 0")
    for key in ("image_noise", "blur", "frame_drop", "frozen_frame", "camera_latency_s", "gyro_noise", "gyro_bias",
                "accel_noise", "accel_bias", "wind", "actuator_noise"):
        if getattr(inject, key) < 0:
            out.append(f"inject.{key} must be >= 0, got {getattr(inject, key)}")
    if inject.frame_drop >= 1 or inject.frozen_frame >= 1:
        out.append("inject.frame_drop and inject.frozen_frame are probabilities below 1")
    if inject.contrast <= 0 or inject.wind_tau_s <= 0 or not -1 <= inject.brightness <= 1:
        out.append("inject.contrast and wind_tau_s must be positive and brightness in [-1, 1]")
    return out
