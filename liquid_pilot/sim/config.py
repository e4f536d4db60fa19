"""Scenario configuration: the simulator, the scene, the task and the injected disturbances.

A scenario is a YAML file in ``sim/scenarios/`` whose sections override these dataclasses'
defaults. Each dataclass checks its own fields on construction (``__post_init__``: types through
``liquid_pilot.settings``, then ranges and choices), and ``Scenario`` checks what spans sections,
so a scenario built in code is checked as strictly as one loaded from a file or changed with
``--set``; an error is one line naming the source, the field and what is allowed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from liquid_pilot.paths import data_dir
from liquid_pilot.settings import NON_NEGATIVE, POSITIVE, PROBABILITY, Range, SettingsError, build, check_fields, \
    read_yaml

SCENE_KINDS = ("forest", "urban")
SEASONS = ("summer", "autumn", "winter", "spring", "dry")
TASK_KINDS = ("fly_to_target", "moving_target", "hike")


class ScenarioError(SettingsError):
    """A scenario that cannot be flown; the message says where, which field and what is allowed."""


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

    LIMITS: ClassVar = {
        "physics_hz": Range(1, 10_000), "control_hz": Range(1), "camera_hz": Range(1), "image_width": Range(8, 4096),
        "image_height": Range(8, 4096), "fov_deg": Range(10, 150), "camera_pitch_deg": Range(-90, 90),
        "max_speed_xy": POSITIVE, "max_speed_z": POSITIVE, "max_yaw_rate": POSITIVE, "motor_time_constant": POSITIVE,
        "max_tilt_deg": Range(0, 180, open_low=True)}

    def __post_init__(self) -> None:
        check_fields(self, "sim.", self.LIMITS)
        for key in ("control_hz", "camera_hz"):
            if self.physics_hz % getattr(self, key):
                divisors = [d for d in range(1, self.physics_hz + 1) if self.physics_hz % d == 0]
                raise ScenarioError(f"sim.{key}={getattr(self, key)} must divide sim.physics_hz={self.physics_hz}; "
                                    f"allowed: {divisors}")


@dataclass
class SceneConfig:
    kind: str = "forest"
    season: str = "summer"  # forest only; spring and dry are held out for validation
    obstacles: int = 36  # trees or buildings
    light: float = 1.0  # scales the scene's lighting (renderer), 1 = normal
    radius: float = 14.0  # the scene's half size, m; leaving it ends the flight

    LIMITS: ClassVar = {"kind": SCENE_KINDS, "season": SEASONS, "obstacles": NON_NEGATIVE, "light": POSITIVE,
                        "radius": Range(5)}

    def __post_init__(self) -> None:
        check_fields(self, "scene.", self.LIMITS)


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

    LIMITS: ClassVar = {"kind": TASK_KINDS, "standoff": POSITIVE, "tolerance": POSITIVE, "hold_s": NON_NEGATIVE,
                        "timeout_s": POSITIVE, "occlusion": Range(0, 0.8), "distractors": NON_NEGATIVE,
                        "distractor_radius": POSITIVE, "target_speed": NON_NEGATIVE, "targets": Range(1)}
    RANGES: ClassVar = ("start_distance", "start_bearing_deg", "target_yaw_deg", "start_height")

    def __post_init__(self) -> None:
        check_fields(self, "task.", self.LIMITS)
        for key in self.RANGES:
            value = getattr(self, key)
            if len(value) != 2 or value[0] > value[1]:
                raise ScenarioError(f"task.{key} must be a [low, high] range, got {value}")
        if self.start_distance[0] <= self.standoff + self.tolerance:
            raise ScenarioError(f"task.start_distance must start beyond the stand-off band "
                                f"({self.standoff + self.tolerance} m), got {self.start_distance}")


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

    LIMITS: ClassVar = {
        "image_noise": NON_NEGATIVE, "blur": NON_NEGATIVE, "brightness": Range(-1, 1), "contrast": POSITIVE,
        "frame_drop": PROBABILITY, "frozen_frame": PROBABILITY, "camera_latency_s": NON_NEGATIVE,
        "gyro_noise": NON_NEGATIVE, "gyro_bias": NON_NEGATIVE, "accel_noise": NON_NEGATIVE, "accel_bias": NON_NEGATIVE,
        "wind": NON_NEGATIVE, "wind_tau_s": POSITIVE, "actuator_noise": NON_NEGATIVE}

    def __post_init__(self) -> None:
        check_fields(self, "inject.", self.LIMITS)


@dataclass
class Scenario:
    name: str
    description: str = ""
    sim: SimConfig = field(default_factory=SimConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    inject: InjectConfig = field(default_factory=InjectConfig)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.task.start_distance[1] > self.scene.radius - 2:
            raise ScenarioError(f"task.start_distance must fit in the scene (at most scene.radius - 2 = "
                                f"{self.scene.radius - 2} m), got {self.task.start_distance}")

    def with_overrides(self, overrides: dict[str, Any], origin: str = "") -> Scenario:
        """Return a copy with "section.field" values replaced, checked; ``origin`` (e.g. ``--set``) names them."""
        data = dataclasses.asdict(self)
        for key, value in overrides.items():
            section, _, name = key.partition(".")
            if section not in SECTIONS or name not in data[section]:
                raise ScenarioError(f"{origin + ': ' if origin else ''}unknown setting {key!r}; settings are "
                                    f"section.field with sections {', '.join(SECTIONS)}")
            data[section][name] = value
        return _build(self.name, data, origin)


SECTIONS = {"sim": SimConfig, "scene": SceneConfig, "task": TaskConfig, "inject": InjectConfig}


def scenario_dir() -> Path:
    return data_dir("sim") / "scenarios"


def validation_dir() -> Path:
    """Held-out conditions for choosing training recipes; never part of the results table."""
    return data_dir("sim") / "validation"


def hard_dir() -> Path:
    """Return the hard tier's folder: longer, harder and combined shifts; never in all, ood or validation."""
    return data_dir("sim") / "hard"


def list_scenarios() -> list[str]:
    """Return the test conditions: the scenarios of the results table."""
    return sorted(p.stem for p in scenario_dir().glob("*.yaml"))


def list_validation() -> list[str]:
    """Return the held-out validation conditions."""
    return sorted(p.stem for p in validation_dir().glob("*.yaml"))


def list_hard() -> list[str]:
    """Return the hard-tier conditions."""
    return sorted(p.stem for p in hard_dir().glob("*.yaml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a scenario by name (``sim/scenarios/``, ``sim/validation/`` or ``sim/hard/NAME.yaml``) or a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        found = [d / f"{name_or_path}.yaml" for d in (scenario_dir(), validation_dir(), hard_dir())]
        path = next((f for f in found if f.is_file()), found[0])
        if not path.is_file():
            names = list_scenarios() + list_validation() + list_hard()
            raise ScenarioError(f"unknown scenario {str(name_or_path)!r}; available: {', '.join(names)}")
    elif not path.is_file():
        raise ScenarioError(f"{path}: no such scenario file")
    try:
        data = read_yaml(path)
    except SettingsError as exc:
        raise ScenarioError(str(exc)) from None
    return _build(path.stem, data or {}, origin=str(path))


def _build(name: str, data: Any, origin: str = "") -> Scenario:
    try:
        if not isinstance(data, dict):
            raise ScenarioError(f"expected a mapping of sections ({', '.join(SECTIONS)}), got {data!r}")
        unknown = set(data) - set(SECTIONS) - {"name", "description"}
        if unknown:
            raise ScenarioError(f"unknown sections {sorted(unknown)}; allowed: {', '.join(SECTIONS)}, description")
        sections = {section: build(cls, data.get(section) or {}, section) for section, cls in SECTIONS.items()}
        return Scenario(name=name, description=str(data.get("description", "")), **sections)
    except SettingsError as exc:
        raise ScenarioError(f"{origin}: {exc}" if origin else str(exc)) from None
