"""Tasks and their rules: the expert succeeds; collisions, bounds, distractors and timeouts fail."""
import math

import numpy as np
import pytest

from liquid_pilot.sim.config import load_scenario
from liquid_pilot.sim.episode import ExpertPolicy, EpisodeResult, fly
from liquid_pilot.sim.world import Observation, Simulator


class Constant:
    """A policy that always sends the same command."""

    def __init__(self, command: list[float]):
        self.command = np.array(command, dtype=float)

    def reset(self) -> None:
        pass

    def act(self, obs: Observation, sim: Simulator) -> np.ndarray:
        return self.command


def run(name: str, policy: object, seed: int = 0, **overrides: object) -> EpisodeResult:
    scenario = load_scenario(name)
    return fly(Simulator(scenario.with_overrides(overrides) if overrides else scenario), policy, seed)


@pytest.mark.parametrize("name,reason", [
    ("forest_summer", "reached"), ("hike", "visited_all"), ("moving_target", "tracked"),
    ("distractors", "reached"), ("occluded_target", "reached"), ("urban", "reached")])
def test_expert_completes_each_task(name: str, reason: str) -> None:
    result = run(name, ExpertPolicy(), seed=1)
    assert result.success and result.reason == reason
    assert result.time_to_target is not None and result.collisions == 0
    assert result.final_distance == pytest.approx(load_scenario(name).task.standoff, abs=0.75)


def test_expert_is_reliable_in_distribution() -> None:
    sim = Simulator(load_scenario("forest_summer"))
    results = [fly(sim, ExpertPolicy(), seed) for seed in range(20, 40)]
    assert sum(r.success for r in results) >= 19


def test_hovering_forever_times_out() -> None:
    result = run("forest_summer", Constant([0, 0, 0, 0]), **{"task.timeout_s": 3.0})
    assert not result.success and result.reason == "timeout"
    assert result.duration == pytest.approx(3.0, abs=0.05) and result.path_length < 0.1


def test_flying_into_the_target_is_a_collision() -> None:
    class Ram(ExpertPolicy):
        def act(self, obs: Observation, sim: Simulator) -> np.ndarray:
            command = self.expert.act(sim)
            command[0] = 1.0  # ignore the stand-off distance
            command[2] = 1.5 * (0.5 - sim.state.position[2])  # down to the seat
            return command

    result = run("forest_summer", Ram(), seed=2)
    assert result.reason == "collision" and result.collisions == 1 and result.final_distance < 0.45


def test_flying_away_leaves_the_bounds_and_climbing_too() -> None:
    away = run("forest_summer", Constant([-1.0, 0, 0, 0]), **{"scene.obstacles": 0, "task.timeout_s": 40.0})
    assert away.reason == "out_of_bounds"
    up = run("forest_summer", Constant([0, 0, 0.5, 0]), **{"task.timeout_s": 30.0})
    assert up.reason == "out_of_bounds"


def test_approaching_a_distractor_fails() -> None:
    class Lured(ExpertPolicy):
        def reset(self) -> None:
            super().reset()
            self.lured = False

        def act(self, obs: Observation, sim: Simulator) -> np.ndarray:
            if not self.lured:  # fly to the first distractor instead of the chair
                sim.monitor.target_xy = sim.scene.distractors[0][:2].copy()
                self.lured = True
            command = self.expert.act(sim)
            command[:2] = [0.6, 0.0]  # straight at it, no stopping, no avoidance
            return command

    result = run("distractors", Lured(), seed=3)
    assert result.reason == "distractor" and result.min_distractor_distance < 1.0


def test_excessive_tilt_fails() -> None:
    result = run("forest_summer", Constant([1.0, 0, 0, 0]), **{"sim.max_tilt_deg": 5.0})
    assert result.reason == "tilt"


def test_metrics_are_consistent() -> None:
    result = run("forest_summer", ExpertPolicy(), seed=4)
    trajectory = np.array(result.trajectory)
    assert result.steps == len(trajectory)
    steps = np.linalg.norm(np.diff(trajectory[:, 1:4], axis=0), axis=1).sum()
    assert result.path_length == pytest.approx(steps, rel=0.05)
    assert result.time_to_target == pytest.approx(result.duration)
    smooth, jerky = result.jerk, run("forest_summer", ExpertPolicy(perturbation=0.5, seed=1), seed=4).jerk
    assert jerky > smooth
    assert result.min_distractor_distance is None


def test_perturbed_expert_explores_but_labels_stay_clean() -> None:
    policy = ExpertPolicy(perturbation=0.3, seed=5)
    sim = Simulator(load_scenario("forest_summer"))
    obs = sim.reset(5)
    policy.reset()
    differences = []
    for _ in range(30):
        executed = policy.act(obs, sim)
        differences.append(np.abs(executed - policy.label).max())
        np.testing.assert_allclose(policy.label, policy.expert.act(sim))
        obs = sim.step(executed)
    assert max(differences) > 0.1


def test_hike_removes_visited_targets() -> None:
    sim = Simulator(load_scenario("hike"))
    seen = []
    fly(sim, ExpertPolicy(), 6, on_step=lambda s, o, c: seen.append(s.monitor.index))
    assert sorted(set(seen)) == [0, 1, 2] and seen == sorted(seen)
    assert math.isclose(sim.scene.solids.boxes[sim.chairs[0][1]][0], 1e3)


def _labels(name: str, policy: ExpertPolicy, seed: int, **overrides: object) -> tuple[EpisodeResult, list]:
    scenario = load_scenario(name)
    sim = Simulator(scenario.with_overrides(overrides) if overrides else scenario)
    steps: list = []

    def record(s: Simulator, o: Observation, c: np.ndarray) -> None:
        steps.append((policy.label.copy(), c.copy(), s.camera.in_view(s.state, s.monitor.target)))

    return fly(sim, policy, seed, on_step=record), steps


def test_the_search_rule_never_acts_when_the_chair_starts_in_view() -> None:
    plain, plain_steps = _labels("forest_summer", ExpertPolicy(0.2, seed=3), 3)
    searching, search_steps = _labels("forest_summer", ExpertPolicy(0.2, seed=3, search="left"), 3)
    assert plain.success and plain.trajectory == searching.trajectory
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(plain_steps, search_steps))


@pytest.mark.parametrize("search,sign", [("left", 1.0), ("right", -1.0)])
def test_the_search_rule_turns_one_way_until_the_chair_is_first_seen(search: str, sign: float) -> None:
    # The chair 120-150 degrees to the right: the privileged expert turns right (the shortest way), the
    # search rule turns `search`'s way on the spot until the chair comes into view, then flies to it.
    result, steps = _labels("search_right", ExpertPolicy(search=search), 5, **{"task.start_bearing_deg": [-150, -120]})
    assert result.success
    first = next(i for i, (_, _, seen) in enumerate(steps) if seen)
    assert first > 10  # it had to search
    for label, flown, _ in steps[:first]:
        assert label[3] == pytest.approx(sign * 1.0) and label[0] == 0.0 and np.array_equal(label, flown)
    assert max(label[0] for label, _, _ in steps[first:]) > 0.3  # then the usual expert: it approaches
    behind = {"task.start_bearing_deg": [-150, -120]}
    privileged, privileged_steps = _labels("search_right", ExpertPolicy(), 5, **behind)
    assert privileged.success and privileged_steps[0][0][3] < 0  # the shortest way: right
    with pytest.raises(ValueError, match="search must be one of left, right or None, got 'up'"):
        ExpertPolicy(search="up")


def test_the_search_rule_resumes_once_the_chair_has_been_out_of_view_for_lost_s() -> None:
    # A driver spins on the spot to the right: the chair leaves the view on the left and comes back from the
    # right every turn. Within lost_s of the last sighting the label is the usual expert's (the shortest turn
    # back, which memory can know); after it, the search turn (left, forward 0) until the chair is in view.
    spin = {"task.timeout_s": 14.0}

    def flown(lost_s: float | None) -> tuple[EpisodeResult, list]:
        policy = ExpertPolicy(search="left", driver=Constant([0.0, 0.0, 0.0, -0.8]), lost_s=lost_s)
        sim = Simulator(load_scenario("forest_summer").with_overrides(spin))
        steps: list = []
        result = fly(sim, policy, 2, on_step=lambda s, o, c: steps.append(
            (s.time, policy.label.copy(), s.camera.in_view(s.state, s.monitor.target))))
        return result, steps

    lost, steps = flown(1.0)
    usual, usual_steps = flown(None)
    assert lost.trajectory == usual.trajectory  # the labeller changes the labels, never the flight
    last_seen, searched, kept = -1.0, 0, 0
    for (t, label, in_view), (_, usual_label, _) in zip(steps, usual_steps):
        if in_view:
            last_seen = t
        if not in_view and t - last_seen >= 1.0:
            assert label[0] == 0.0 and label[3] == pytest.approx(1.0)  # the search turn: left, on the spot
            searched += 1
        else:
            np.testing.assert_array_equal(label, usual_label)
            kept += not in_view
    assert searched > 20 and kept > 5  # both parts of the rule acted
    assert any(label[3] < -0.2 for _, label, in_view in usual_steps if not in_view)  # which the usual expert
    with pytest.raises(ValueError, match="lost_s must be a positive number of seconds, got 0"):  # does not do
        ExpertPolicy(search="left", lost_s=0)
    with pytest.raises(ValueError, match="needs a search direction: give search too"):
        ExpertPolicy(lost_s=1.0)


def test_a_driver_flies_while_the_expert_labels() -> None:
    # DAgger: the driver's command is flown (here, turning on the spot), the label is the expert's correction.
    driver = Constant([0.0, 0.0, 0.0, 0.5])
    policy = ExpertPolicy(driver=driver)
    result, steps = _labels("forest_summer", policy, 2, **{"task.timeout_s": 3.0})
    assert result.reason == "timeout" and result.path_length < 0.5  # the expert would have reached the chair
    assert all(np.array_equal(flown, [0.0, 0.0, 0.0, 0.5]) for _, flown, _ in steps)
    assert any(label[0] > 0.2 for label, _, _ in steps)  # the expert asked to fly forward
    assert any(label[3] < -0.2 for label, _, _ in steps[10:])  # and to turn back toward the chair
