"""Tasks: where the drone and targets start, how targets move, and when a flight succeeds or fails.

Success rules (recorded as the episode's ``reason``):
- fly_to_target, ``reached``: hold within stand-off +- tolerance of the target (horizontal
  distance from its centre) with the target in view for ``hold_s`` without a break.
- hike, ``visited_all``: the same at every target in order; a visited target is taken away
  and the next one stands 3-4.5 m beyond it, within 30 degrees of the approach direction.
- moving_target, ``tracked``: the target walks sideways; accumulate ``hold_s`` within
  stand-off +- twice the tolerance with the target in view.
Failures: ``collision`` (any contact), ``out_of_bounds`` (beyond the scene radius, below 5 cm
or above 6 m), ``tilt`` (beyond sim.max_tilt_deg), ``distractor`` (closer than
task.distractor_radius to a look-alike), ``timeout``.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from liquid_pilot.sim.config import SimConfig, TaskConfig
from liquid_pilot.sim.quadrotor import BodyState

TARGET_CENTRE_HEIGHT = 0.45  # m, the chair's seat
MOVE_AMPLITUDE = 1.5  # m either side, moving target
SUCCESS = ("reached", "visited_all", "tracked")


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


@dataclass
class Layout:
    """Where an episode starts and where its targets stand."""

    start: np.ndarray  # (3,) drone position
    start_yaw: float
    targets: list[tuple[np.ndarray, float]]  # chair (x, y) and yaw, in visiting order
    corridors: list[tuple[np.ndarray, np.ndarray]]  # segments the scene keeps clear
    lateral: np.ndarray  # (2,) the moving target's direction of travel


def make_layout(task: TaskConfig, rng: np.random.Generator) -> Layout:
    distance = rng.uniform(*task.start_distance)
    direction = rng.uniform(-math.pi, math.pi)
    start_xy = distance * np.array([math.cos(direction), math.sin(direction)])
    bearing = math.radians(rng.uniform(*task.start_bearing_deg))
    start_yaw = math.atan2(-start_xy[1], -start_xy[0]) - bearing
    start = np.array([*start_xy, rng.uniform(*task.start_height)])

    def facing(chair: np.ndarray, viewer: np.ndarray) -> float:
        toward = viewer - chair
        return math.atan2(toward[1], toward[0]) + math.radians(rng.uniform(*task.target_yaw_deg))

    targets = [(np.zeros(2), facing(np.zeros(2), start_xy))]
    corridors = [(start_xy, np.zeros(2))]
    previous = start_xy
    for _ in range(1, task.targets if task.kind == "hike" else 1):
        chair = targets[-1][0]
        approach = (chair - previous) / np.linalg.norm(chair - previous)
        stop = chair - approach * task.standoff
        following = chair + _rotate(approach, math.radians(rng.uniform(-30, 30))) * rng.uniform(3.0, 4.5)
        targets.append((following, facing(following, stop)))
        corridors.append((stop, following))
        previous = stop
    lateral = _rotate((-start_xy) / distance, math.pi / 2)
    if task.kind == "moving_target":
        ends = [lateral * MOVE_AMPLITUDE, -lateral * MOVE_AMPLITUDE]
        corridors += [(start_xy, ends[0]), (start_xy, ends[1]), (ends[0], ends[1])]
    return Layout(start, start_yaw, targets, corridors, lateral)


class TaskMonitor:
    """Follows one flight: the active target, the success rule, failures and path metrics."""

    def __init__(self, task: TaskConfig, sim: SimConfig, layout: Layout, scene_radius: float,
                 in_view: Callable[[BodyState, np.ndarray], bool], distractors: list[np.ndarray],
                 move_target: Callable[[int, np.ndarray, float], None]):
        self.task, self.sim, self.layout = task, sim, layout
        self.scene_radius, self.in_view, self.distractors = scene_radius, in_view, distractors
        self.move_target = move_target
        self.index = 0  # the target being flown to
        self.held = 0.0
        self.reason: str | None = None
        self.time_to_target: float | None = None
        self.path_length = 0.0
        self.min_distractor_distance = math.inf
        self.last_position: np.ndarray | None = None
        self.target_xy = layout.targets[0][0].copy()

    @property
    def target(self) -> np.ndarray:
        """The active target's centre (x, y, z)."""
        return np.array([*self.target_xy, TARGET_CENTRE_HEIGHT])

    def distance(self, state: BodyState) -> float:
        return float(np.linalg.norm(state.position[:2] - self.target_xy))

    def update(self, t: float, dt: float, state: BodyState, collided: bool) -> str | None:
        """Advance by dt at time t; return the end reason once the flight is over."""
        if self.reason is not None:
            return self.reason
        task = self.task
        if task.kind == "moving_target" and task.target_speed > 0:
            self._walk(t)
        position = state.position
        if self.last_position is not None:
            self.path_length += float(np.linalg.norm(position - self.last_position))
        self.last_position = position.copy()
        for d in self.distractors:
            gap = float(np.linalg.norm(position[:2] - d[:2]))
            self.min_distractor_distance = min(self.min_distractor_distance, gap)
        if collided:
            return self._end("collision")
        if np.linalg.norm(position[:2]) > self.scene_radius or not 0.05 < position[2] < 6.0:
            return self._end("out_of_bounds")
        if state.tilt > math.radians(self.sim.max_tilt_deg):
            return self._end("tilt")
        if self.min_distractor_distance < task.distractor_radius:
            return self._end("distractor")
        wide = 2.0 if task.kind == "moving_target" else 1.0
        in_band = abs(self.distance(state) - task.standoff) <= task.tolerance * wide
        if in_band and self.in_view(state, self.target):
            self.held += dt
        elif task.kind != "moving_target":
            self.held = 0.0  # a break restarts the hold; tracking accumulates
        if self.held >= task.hold_s:
            if task.kind == "hike" and self.index + 1 < len(self.layout.targets):
                self.move_target(self.index, np.array([1e3, 1e3]), 0.0)  # visited: take it away
                self.index += 1
                self.target_xy = self.layout.targets[self.index][0].copy()
                self.held = 0.0
            else:
                self.time_to_target = t
                return self._end({"hike": "visited_all", "moving_target": "tracked"}.get(task.kind, "reached"))
        if t >= task.timeout_s:
            return self._end("timeout")
        return None

    def _walk(self, t: float) -> None:
        """Triangle-wave walk along the lateral direction at the target speed."""
        period = 4 * MOVE_AMPLITUDE / self.task.target_speed
        phase = (t / period) % 1.0
        offset = MOVE_AMPLITUDE * (4 * phase if phase < 0.25 else 2 - 4 * phase if phase < 0.75 else 4 * phase - 4)
        self.target_xy = self.layout.targets[0][0] + self.layout.lateral * offset
        self.move_target(0, self.target_xy, self.layout.targets[0][1])

    def _end(self, reason: str) -> str:
        self.reason = reason
        return reason
