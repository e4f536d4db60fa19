"""Scenarios: every shipped one loads, and impossible ones are refused with what is allowed."""
from pathlib import Path

import pytest

from liquid_pilot.sim.config import ScenarioError, list_scenarios, list_validation, load_scenario

EXPECTED = {"forest_summer", "forest_autumn", "forest_winter", "urban", "range", "rotated_target",
            "occluded_target", "moving_target", "hike", "distractors", "image_noise", "dark", "bright", "blur",
            "wind", "imu_noise", "camera_slow", "camera_fast", "frame_drops", "latency"}


def test_every_shipped_scenario_loads_with_a_description() -> None:
    names = set(list_scenarios())
    assert EXPECTED <= names
    for name in names:
        scenario = load_scenario(name)
        assert scenario.name == name and scenario.description


def test_validation_conditions_are_held_out_from_the_test_scenarios() -> None:
    held_out = list_validation()
    assert {"spring", "dry", "gusts", "imu_bias"} <= set(held_out)
    assert not set(held_out) & set(list_scenarios())
    for name in held_out:
        scenario = load_scenario(name)
        assert scenario.name == name and scenario.description.startswith("Validation")
    assert {load_scenario(n).scene.season for n in held_out} >= {"spring", "dry"}
    assert not {load_scenario(n).scene.season for n in list_scenarios()} & {"spring", "dry"}


def test_the_default_scenario_is_the_training_distribution() -> None:
    s = load_scenario("forest_summer")
    assert (s.scene.kind, s.scene.season, s.task.kind) == ("forest", "summer", "fly_to_target")
    assert (s.sim.physics_hz, s.sim.camera_hz, s.sim.image_width, s.sim.image_height) == (240, 16, 64, 64)


def test_unknown_scenario_lists_the_available_ones() -> None:
    with pytest.raises(ScenarioError, match=r"unknown scenario 'mars'; available: .*forest_summer"):
        load_scenario("mars")


@pytest.mark.parametrize("overrides,message", [
    ({"sim.camera_hz": 7}, r"sim.camera_hz=7 must divide sim.physics_hz=240; allowed: \[1, 2, 3, 4, 5, 6, 8,"),
    ({"sim.camera_hz": -16}, "sim.camera_hz must be a positive whole number"),
    ({"sim.image_width": 0}, "image size must be at least 8x8"),
    ({"scene.kind": "desert"}, "scene.kind 'desert' is unknown; allowed: forest, urban"),
    ({"scene.season": "monsoon"}, "allowed: summer, autumn, winter, spring, dry"),
    ({"task.kind": "race"}, "allowed: fly_to_target, moving_target, hike"),
    ({"task.start_distance": [5.0, 3.0]}, r"task.start_distance must be a \[low, high\] range"),
    ({"inject.frame_drop": 1.5}, "probabilities below 1"),
    ({"inject.image_noise": -0.1}, "inject.image_noise must be >= 0"),
    ({"sim.warp": 2}, "unknown setting 'sim.warp'"),
])
def test_impossible_settings_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_scenario("forest_summer").with_overrides(overrides)


def test_scenario_files_are_checked_too(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("scene: {kind: forest, trees: 3}\n")
    with pytest.raises(ScenarioError, match=r"bad.yaml: unknown scene settings \['trees'\]; allowed: "):
        load_scenario(bad)
    bad.write_text("scene: [1, 2\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "missing.yaml")
