"""Scenario configuration: the simulator, the scene, the task and the injected disturbances.

A scenario is a YAML file in ``sim/scenarios/`` whose sections override these dataclasses'
defaults. Every field carries its documentation and range once (``settings.setting``); each dataclass
checks its own fields on construction (``__post_init__``: types, ranges and choices through
``liquid_pilot.settings``), and ``Scenario`` checks what spans sections,
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
    read_yaml, setting

SCENE_KINDS = ("forest", "urban")
SEASONS = ("summer", "autumn", "winter", "spring", "dry", "ash", "frost", "sunset", "random")
TASK_KINDS = ("fly_to_target", "moving_target", "hike")


class ScenarioError(SettingsError):
    """A scenario that cannot be flown; the message says where, which field and what is allowed."""


@dataclass
class SimConfig:
    """The simulated vehicle and its sensors' rates."""

    physics_hz: int = setting(240, "physics steps per second", Range(1, 10_000))
    control_hz: int = setting(48, "inner cascaded controller updates per second (divides physics_hz)", Range(1))
    camera_hz: int = setting(16, "camera frames, and so pilot steps, per second (divides physics_hz)", Range(1))
    image_width: int = setting(64, "camera image width, pixels", Range(8, 4096))
    image_height: int = setting(64, "camera image height, pixels", Range(8, 4096))
    fov_deg: float = setting(80.0, "vertical field of view, degrees", Range(10, 150))
    camera_pitch_deg: float = setting(0.0, "camera tilt, degrees; positive tilts it down", Range(-90, 90))
    max_speed_xy: float = setting(1.0, "command limit: horizontal speed, m/s", POSITIVE)
    max_speed_z: float = setting(0.5, "command limit: vertical speed, m/s", POSITIVE)
    max_yaw_rate: float = setting(1.0, "command limit: yaw rate, rad/s", POSITIVE)
    motor_time_constant: float = setting(0.05, "s: first-order motor lag", POSITIVE)
    max_tilt_deg: float = setting(60.0, "degrees: beyond this tilt the flight counts as lost",
                                  Range(0, 180, open_low=True))

    def __post_init__(self) -> None:
        check_fields(self, "sim.")
        for key in ("control_hz", "camera_hz"):
            if self.physics_hz % getattr(self, key):
                divisors = [d for d in range(1, self.physics_hz + 1) if self.physics_hz % d == 0]
                raise ScenarioError(f"sim.{key}={getattr(self, key)} must divide sim.physics_hz={self.physics_hz}; "
                                    f"allowed: {divisors}")


@dataclass
class SceneConfig:
    """What the scene holds and how it looks."""

    kind: str = setting("forest", "forest or urban", SCENE_KINDS)
    season: str = setting("summer", "the forest's look (spring and dry are held out for validation, ash, frost "
                          "and sunset for the second validation set; random: a new look each episode, for training)",
                          SEASONS)
    obstacles: int = setting(36, "trees or buildings", NON_NEGATIVE)
    light: float = setting(1.0, "scales the scene's lighting (renderer), 1 = normal", POSITIVE)
    radius: float = setting(14.0, "m: the scene's half size; leaving it ends the flight", Range(5))

    def __post_init__(self) -> None:
        check_fields(self, "scene.")


@dataclass
class TaskConfig:
    """Where the flight starts, what counts as success, and what fails it."""

    kind: str = setting("fly_to_target", "fly_to_target, moving_target or hike", TASK_KINDS)
    standoff: float = setting(1.0, "m from the target's centre, horizontally", POSITIVE)
    tolerance: float = setting(0.35, "m either side of the stand-off distance", POSITIVE)
    hold_s: float = setting(1.0, "s to hold in the stand-off band with the target in view", NON_NEGATIVE)
    timeout_s: float = setting(25.0, "s before the flight times out", POSITIVE)
    start_distance: list[float] = setting(help="[low, high] m from the target at the start, uniform",
                                          factory=lambda: [3.0, 5.0])
    start_bearing_deg: list[float] = setting(help="[low, high] degrees of the target off the nose at the start",
                                             factory=lambda: [-25.0, 25.0])
    target_yaw_deg: list[float] = setting(help="[low, high] degrees the chair is turned; 0 faces the drone",
                                          factory=lambda: [-30.0, 30.0])
    start_height: list[float] = setting(help="[low, high] m of the start height", factory=lambda: [0.8, 1.4])
    occlusion: float = setting(0.0, "share of the target hidden from the start by an occluder", Range(0, 0.8))
    distractors: int = setting(0, "red look-alike objects that must not be approached", NON_NEGATIVE)
    distractor_radius: float = setting(1.0, "m: coming closer to a distractor fails the flight", POSITIVE)
    target_speed: float = setting(0.0, "m/s the target walks (moving_target)", NON_NEGATIVE)
    targets: int = setting(1, "targets to visit in order (hike)", Range(1))

    RANGES: ClassVar = ("start_distance", "start_bearing_deg", "target_yaw_deg", "start_height")

    def __post_init__(self) -> None:
        check_fields(self, "task.")
        for key in self.RANGES:
            value = getattr(self, key)
            if len(value) != 2 or value[0] > value[1]:
                raise ScenarioError(f"task.{key} must be a [low, high] range, got {value}")
        if self.start_distance[0] <= self.standoff + self.tolerance:
            raise ScenarioError(f"task.start_distance must start beyond the stand-off band "
                                f"({self.standoff + self.tolerance} m), got {self.start_distance}")


@dataclass
class InjectConfig:
    """Disturbances: what the camera, the IMU, the air and the motors do wrong."""

    image_noise: float = setting(0.0, "Gaussian pixel noise, std in image units [0, 1]", NON_NEGATIVE)
    blur: float = setting(0.0, "Gaussian blur sigma, pixels", NON_NEGATIVE)
    brightness: float = setting(0.0, "added to pixels, image units", Range(-1, 1))
    contrast: float = setting(1.0, "pixel contrast multiplier around mid-grey", POSITIVE)
    frame_drop: float = setting(0.0, "probability a frame never arrives", PROBABILITY)
    frozen_frame: float = setting(0.0, "probability a frame repeats the previous image", PROBABILITY)
    camera_latency_s: float = setting(0.0, "s: age of the image when it arrives", NON_NEGATIVE)
    gyro_noise: float = setting(0.005, "rad/s std per sample", NON_NEGATIVE)
    gyro_bias: float = setting(0.0, "rad/s, drawn per axis per episode with this std", NON_NEGATIVE)
    accel_noise: float = setting(0.05, "m/s^2 std per sample", NON_NEGATIVE)
    accel_bias: float = setting(0.0, "m/s^2, drawn per axis per episode with this std", NON_NEGATIVE)
    wind: float = setting(0.0, "std of the gust force, in fractions of the drone's weight", NON_NEGATIVE)
    wind_tau_s: float = setting(2.0, "s: gust correlation time (Ornstein-Uhlenbeck)", POSITIVE)
    actuator_noise: float = setting(0.0, "relative std of each motor's speed", NON_NEGATIVE)

    def __post_init__(self) -> None:
        check_fields(self, "inject.")


@dataclass
class Scenario:
    """A named test or training condition: the simulator, the scene, the task and the disturbances."""

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


def validation2_dir() -> Path:
    """Return the second validation set's folder (issue 25, round 8): looks, light and distances beyond the first's.

    Held out like ``validation/`` (never trained on, never in the results table); a group of its own so that the
    earlier rounds' ``--conditions validation`` still fly the episodes they reported.
    """
    return data_dir("sim") / "validation2"


def hard_dir() -> Path:
    """Return the hard tier's folder: longer, harder and combined shifts; never in all, ood or validation."""
    return data_dir("sim") / "hard"


def training_dir() -> Path:
    """Return the training-only scenarios' folder (data collection); never in all, ood, validation or hard."""
    return data_dir("sim") / "training"


def _names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def list_scenarios() -> list[str]:
    """Return the test conditions: the scenarios of the results table."""
    return _names(scenario_dir())


def list_validation() -> list[str]:
    """Return the held-out validation conditions."""
    return _names(validation_dir())


def list_validation2() -> list[str]:
    """Return the second validation set's conditions."""
    return _names(validation2_dir())


def list_hard() -> list[str]:
    """Return the hard-tier conditions."""
    return _names(hard_dir())


def list_training() -> list[str]:
    """Return the training-only scenarios."""
    return _names(training_dir())


def condition_dirs() -> tuple[Path, ...]:
    """Return every folder of named conditions, in the order a name is looked up."""
    return scenario_dir(), validation_dir(), validation2_dir(), hard_dir(), training_dir()


def list_all() -> list[str]:
    """Return every named condition: the test scenarios, both validation sets, the hard tier, training-only."""
    return [name for folder in condition_dirs() for name in _names(folder)]


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a scenario by name (``NAME.yaml`` in one of ``condition_dirs()``) or from a YAML file's path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        found = [d / f"{name_or_path}.yaml" for d in condition_dirs()]
        path = next((f for f in found if f.is_file()), found[0])
        if not path.is_file():
            raise ScenarioError(f"unknown scenario {str(name_or_path)!r}; available: {', '.join(list_all())}")
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
