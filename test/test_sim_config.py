"""Scenarios: every shipped one loads, and impossible ones are refused with what is allowed."""
from pathlib import Path

import pytest

from liquid_pilot.sim.config import InjectConfig, SceneConfig, Scenario, ScenarioError, SimConfig, TaskConfig, \
    list_all, list_hard, list_scenarios, list_training, list_validation, list_validation2, load_scenario

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
    table_rates = {load_scenario(n).sim.camera_hz for n in list_scenarios()}
    slow = {load_scenario(n).sim.camera_hz for n in held_out} - table_rates
    assert slow and min(slow) < load_scenario("forest_summer").sim.camera_hz  # a slow camera no table condition has
    assert not {load_scenario(n).scene.season for n in list_scenarios()} & {"spring", "dry"}


def test_the_second_validation_set_is_held_out_and_shifts_beyond_the_first() -> None:
    """Round 8's set: looks no training or test flight has, one outside the random looks' range, deeper dusk, far."""
    import colorsys

    from liquid_pilot.sim.scene import LOOKS

    second = list_validation2()
    assert set(second) == {"ash", "frost", "sunset", "dusk", "far_summer", "search_ash_right"}
    others = set(list_scenarios()) | set(list_validation()) | set(list_hard()) | set(list_training())
    assert not set(second) & others and sorted(list_all()) == sorted(others | set(second))
    looks = {load_scenario(n).scene.season for n in second}
    used = {load_scenario(n).scene.season for n in others}
    assert {"ash", "frost", "sunset"} <= looks and not {"ash", "frost", "sunset"} & used
    for name in second:
        scenario = load_scenario(name)
        assert scenario.name == name and scenario.description.startswith("Validation 2")
    ash, frost, sunset = LOOKS["ash"], LOOKS["frost"], LOOKS["sunset"]
    assert max(ash["ground"]) < 0.25  # darker than the random looks' darkest ground (scene.random_look)
    assert min(frost["ground"]) > max(frost["sky"])  # a ground brighter than its sky
    hue, saturation, _ = colorsys.rgb_to_hsv(*sunset["sky"])
    assert saturation > 0.45 and hue < 30 / 360  # warmer and more saturated than any random sky
    dusk, dark, hard_dark = (load_scenario(n).scene.light for n in ("dusk", "dark", "hard_dark"))
    assert hard_dark < dusk < dark
    far, wide = load_scenario("far_summer"), load_scenario("far_wide")
    assert far.scene.season == "summer" and far.task.start_distance[0] > wide.task.start_distance[1]
    search = load_scenario("search_ash_right").task
    assert min(abs(b) for b in search.start_bearing_deg) > 40  # out of the first view


HARD = {"hard_far", "hard_behind_left", "hard_behind_right", "hard_dense", "hard_noise_blur", "hard_dark",
        "hard_autumn_wind", "hard_urban_noise", "hard_hike"}


def test_the_hard_tier_loads_and_never_overlaps_the_other_conditions() -> None:
    hard = list_hard()
    assert HARD <= set(hard)
    assert not set(hard) & (set(list_scenarios()) | set(list_validation()))
    for name in hard:
        scenario = load_scenario(name)
        assert scenario.name == name and scenario.description.startswith("Hard")
    far = load_scenario("hard_far").task
    assert far.start_distance == [10.0, 15.0]
    for name in ("hard_behind_left", "hard_behind_right"):  # the chair starts outside the camera's view
        low, high = load_scenario(name).task.start_bearing_deg
        assert min(abs(low), abs(high)) >= 90
    assert load_scenario("hard_hike").task.targets > load_scenario("hike").task.targets
    assert load_scenario("hard_dense").scene.obstacles > load_scenario("forest_summer").scene.obstacles


def test_training_only_scenarios_join_no_group_of_conditions() -> None:
    from liquid_pilot.eval.evaluate import resolve_conditions

    training = set(list_training())
    assert {"search_left", "search_right"} <= training
    assert not training & (set(list_scenarios()) | set(list_validation()) | set(list_hard()))
    assert not training & set(resolve_conditions(["all", "ood", "validation", "hard"]))
    for name in training:  # loadable by name, for collect
        scenario = load_scenario(name)
        assert scenario.name == name and scenario.description.startswith("Training only")
    assert load_scenario("search_left").task.start_distance == load_scenario("forest_summer").task.start_distance
    far = load_scenario("far").task.start_distance  # farther than the table's flights, nearer than the hard tier's
    assert far[0] >= load_scenario("forest_summer").task.start_distance[1]
    assert far[1] <= load_scenario("hard_far").task.start_distance[0]


def test_the_search_validation_conditions_start_out_of_view_and_differ_from_the_hard_tier() -> None:
    hard = {name: load_scenario(name).task for name in ("hard_behind_left", "hard_behind_right")}
    for name in ("search_far_left", "search_far_right"):
        assert name in list_validation()
        task = load_scenario(name).task
        low, high = task.start_bearing_deg
        assert min(abs(low), abs(high)) > 40  # beyond the camera's half field of view: search first
        assert all((task.start_distance, task.start_bearing_deg) != (h.start_distance, h.start_bearing_deg)
                   for h in hard.values())


def test_the_default_scenario_is_the_training_distribution() -> None:
    s = load_scenario("forest_summer")
    assert (s.scene.kind, s.scene.season, s.task.kind) == ("forest", "summer", "fly_to_target")
    assert (s.sim.physics_hz, s.sim.camera_hz, s.sim.image_width, s.sim.image_height) == (240, 16, 64, 64)


def test_unknown_scenario_lists_the_available_ones() -> None:
    with pytest.raises(ScenarioError, match=r"unknown scenario 'mars'; available: .*forest_summer"):
        load_scenario("mars")


@pytest.mark.parametrize("overrides,message", [
    ({"sim.camera_hz": 7}, r"sim.camera_hz=7 must divide sim.physics_hz=240; allowed: \[1, 2, 3, 4, 5, 6, 8,"),
    ({"sim.camera_hz": -16}, "sim.camera_hz must be >= 1, got -16"),
    ({"sim.camera_hz": 16.5}, "sim.camera_hz must be a whole number, got 16.5"),
    ({"sim.image_width": 0}, r"sim.image_width must be in \[8, 4096\], got 0"),
    ({"scene.kind": "desert"}, "scene.kind must be one of forest, urban, got 'desert'"),
    ({"scene.season": "monsoon"}, "one of summer, autumn, winter, spring, dry"),
    ({"task.kind": "race"}, "one of fly_to_target, moving_target, hike"),
    ({"task.start_distance": [5.0, 3.0]}, r"task.start_distance must be a \[low, high\] range"),
    ({"task.start_distance": [3.0, 20.0]}, r"must fit in the scene \(at most scene.radius - 2 = 12.0 m\)"),
    ({"task.start_distance": "far"}, "task.start_distance must be a list of numbers, got 'far'"),
    ({"inject.frame_drop": 1.5}, r"inject.frame_drop must be in \[0, 1\), got 1.5"),
    ({"inject.image_noise": -0.1}, "inject.image_noise must be >= 0"),
    ({"inject.image_noise": "abc"}, "inject.image_noise must be a number, got 'abc'"),
    ({"inject.blur": True}, "inject.blur must be a number, got True"),
    ({"sim.warp": 2}, "unknown setting 'sim.warp'"),
])
def test_impossible_settings_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_scenario("forest_summer").with_overrides(overrides)


def test_whole_numbers_stand_for_floats_and_the_origin_is_named() -> None:
    scenario = load_scenario("forest_summer").with_overrides({"sim.fov_deg": 90, "task.start_distance": [4, 6]})
    assert scenario.sim.fov_deg == 90.0 and isinstance(scenario.sim.fov_deg, float)
    assert scenario.task.start_distance == [4.0, 6.0]
    with pytest.raises(ScenarioError, match="^--set: inject.blur must be >= 0, got -1$"):
        load_scenario("forest_summer").with_overrides({"inject.blur": -1}, origin="--set")


@pytest.mark.parametrize(("build", "message"), [
    (lambda: InjectConfig(image_noise="abc"), "inject.image_noise must be a number, got 'abc'"),
    (lambda: SimConfig(camera_hz=7), "sim.camera_hz=7 must divide sim.physics_hz=240"),
    (lambda: TaskConfig(start_distance=[0.5, 2.0]), "task.start_distance must start beyond the stand-off band"),
    (lambda: Scenario("mine", scene=SceneConfig(radius=6.0)), r"task.start_distance must fit in the scene"),
    (lambda: Scenario("mine", inject={"wind": 1.0}), "inject must be InjectConfig, got"),
])
def test_configs_built_in_code_are_checked_on_construction(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_scenario_files_are_checked_too(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("scene: {kind: forest, trees: 3}\n")
    with pytest.raises(ScenarioError, match=r"bad.yaml: unknown scene settings \['trees'\]; allowed: "):
        load_scenario(bad)
    bad.write_text("scene: [1, 2\n")
    with pytest.raises(ScenarioError, match="bad.yaml: not valid YAML: "):
        load_scenario(bad)
    bad.write_text("inject: {image_noise: lots}\n")
    with pytest.raises(ScenarioError, match="bad.yaml: inject.image_noise must be a number, got 'lots'"):
        load_scenario(bad)
    bad.write_text("- sim\n")
    with pytest.raises(ScenarioError, match="bad.yaml: expected a mapping of sections"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "missing.yaml")


def test_the_far_validation_condition_is_held_out_from_the_hard_tiers_far_chair() -> None:
    far, hard = load_scenario("far_spring"), load_scenario("hard_far")
    assert "far_spring" in list_validation() and "far_long" in list_training()
    assert far.scene.season in ("spring", "dry") and hard.scene.season not in ("spring", "dry")
    assert far.task.start_distance[0] >= 10.0  # as far as the chair that the hard tier's pilots fail to find
    assert far.scene.radius > far.task.start_distance[1]  # the start fits in the scene
