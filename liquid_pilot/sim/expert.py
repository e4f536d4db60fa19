"""The privileged expert: flies each task from the true target and obstacle positions.

It turns toward the active target, flies forward to the stand-off distance (slower while the
target is off the nose), holds a flight height, and steers around nearby obstacles. With
``perturbation`` > 0 it also returns a perturbed command to execute (DART-style): the flight
wanders off the ideal path while the label stays the expert's correction.

The expert reads the true target position, so it turns the shortest way even to a chair its camera
cannot see. A pilot imitating that from the camera alone cannot tell left from right, and learns the
average (no turn). With ``search`` ("left" or "right") the expert follows a rule the camera can follow:
until the chair has first been in the camera's view in this episode, it turns on the spot in that
one direction at the yaw-rate limit (holding its height, avoiding obstacles); from then on it is the
usual expert. In a flight that starts with the chair in view (every test scenario's start but the
hard tier's search conditions) the rule never acts, so its labels are the usual expert's.

With ``lost_s`` as well, the rule also acts once the chair has been out of view for ``lost_s`` seconds
after a sighting (the best-pilot study's round 5): the expert turns the search way until it is in view
again. Within ``lost_s`` of the last sighting (passing the chair, swerving round a trunk) it keeps the
usual expert's shortest turn, which a pilot with a second of memory can know; after it, the camera
cannot tell which way the chair went, and the shortest turn's labels average to "keep still".
"""
from __future__ import annotations

import math

import numpy as np

from liquid_pilot.sim.world import Simulator

FLIGHT_HEIGHT = 1.0  # m
YAW_GAIN = 2.0  # rad/s per rad of bearing
SPEED_GAIN = 0.8  # m/s per m of distance error
HEIGHT_GAIN = 1.5
AVOID_RANGE = 1.2  # m: obstacles closer than this (surface to drone) push the expert sideways
SEARCH_TURNS = {"left": 1.0, "right": -1.0}  # yaw sign of each search direction (FLU: left is positive)


def check_lost(lost_s: float | None, search: str | None) -> None:
    """Raise a one-line error for a ``lost_s`` the search rule cannot use."""
    if lost_s is None:
        return
    if search is None:
        raise ValueError(f"lost_s ({lost_s}) resumes the search rule, so it needs a search direction: give search too")
    if not (isinstance(lost_s, (int, float)) and math.isfinite(lost_s) and lost_s > 0):
        raise ValueError(f"lost_s must be a positive number of seconds, got {lost_s!r}")


class Expert:
    """The privileged expert; ``search`` ("left", "right" or None) is its rule while the chair has not been seen."""

    def __init__(self, perturbation: float = 0.0, seed: int = 0, correlation_s: float = 0.5,
                 search: str | None = None, lost_s: float | None = None):
        if search is not None and search not in SEARCH_TURNS:
            raise ValueError(f"search must be one of {', '.join(SEARCH_TURNS)} or None, got {search!r}")
        check_lost(lost_s, search)
        self.perturbation, self.correlation_s, self.search, self.lost_s = perturbation, correlation_s, search, lost_s
        self.rng = np.random.default_rng(seed)
        self.noise = np.zeros(4)
        self.last_seen = -math.inf  # simulated time of the last frame with the chair in view

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.noise[:] = 0.0
        self.last_seen = -math.inf

    @property
    def seen(self) -> bool:
        """Whether the chair has been in the camera's view in this episode."""
        return self.last_seen > -math.inf

    def act(self, sim: Simulator) -> np.ndarray:
        """Return the expert's command [vx, vy, vz, yaw_rate] for the current state (the label)."""
        state, task, limits = sim.state, sim.scenario.task, sim.limits
        if self.search is not None and (self.lost_s is not None or not self.seen):
            if sim.camera.in_view(state, sim.monitor.target):
                self.last_seen = sim.time
            lost = self.lost_s is not None and sim.time - self.last_seen >= self.lost_s
            if not self.seen or lost:  # turn on the spot, one way, until the chair comes into view
                command = np.array([0.0, 0.0, HEIGHT_GAIN * (FLIGHT_HEIGHT - state.position[2]),
                                    SEARCH_TURNS[self.search] * limits[3]])
                command[:2] += self._avoid(sim)
                return np.clip(command, -limits, limits)
        bearing = sim.target_bearing()
        distance = sim.monitor.distance(state)
        facing = max(0.0, math.cos(bearing)) ** 2
        forward = float(np.clip(SPEED_GAIN * (distance - task.standoff), -0.5, limits[0])) * facing
        command = np.array([forward, 0.0, HEIGHT_GAIN * (FLIGHT_HEIGHT - state.position[2]), YAW_GAIN * bearing])
        command[:2] += self._avoid(sim)
        return np.clip(command, -limits, limits)

    def _avoid(self, sim: Simulator) -> np.ndarray:
        """Return a body-frame velocity away from obstacles within AVOID_RANGE of their surface."""
        state = sim.state
        push = np.zeros(2)
        centres, radii = sim.scene.obstacle_arrays()
        if len(radii):
            offsets = state.position[:2] - centres
            distances = np.maximum(np.hypot(offsets[:, 0], offsets[:, 1]), 1e-6)
            strength = np.clip((AVOID_RANGE - (distances - radii)) / AVOID_RANGE, 0.0, None)
            push = (offsets / distances[:, None] * strength[:, None]).sum(0)
        c, s = math.cos(state.yaw), math.sin(state.yaw)
        return 0.8 * np.array([c * push[0] + s * push[1], -s * push[0] + c * push[1]])

    def explore(self, label: np.ndarray, sim: Simulator, dt: float) -> np.ndarray:
        """Return the command to execute: the label plus correlated noise scaled by the limits."""
        if self.perturbation <= 0:
            return label
        decay = math.exp(-dt / self.correlation_s)
        self.noise = self.noise * decay + math.sqrt(1 - decay ** 2) * self.rng.normal(size=4)
        return np.clip(label + self.perturbation * sim.limits * self.noise, -sim.limits, sim.limits)
