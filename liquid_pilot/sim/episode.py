"""Fly one episode with any policy and measure it.

A policy has ``reset()`` and ``act(obs, sim) -> command``; learned pilots read only the
observation, the expert also reads the simulator's ground truth.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from liquid_pilot.sim.config import Scenario
from liquid_pilot.sim.expert import Expert
from liquid_pilot.sim.tasks import SUCCESS
from liquid_pilot.sim.world import Observation, Simulator


class Policy(Protocol):
    """Anything that flies an episode: ``reset()`` and ``act(obs, sim)`` giving a body-frame command."""

    def reset(self) -> None: ...

    def act(self, obs: Observation, sim: Simulator) -> np.ndarray: ...


class ExpertPolicy:
    """The privileged expert as a policy (optionally perturbed, DART-style), or the labeller of another driver.

    ``label`` is always the expert's clean command for the state just seen. What is flown is the expert's
    command, or, with a ``driver`` (a trained pilot: closed-loop data aggregation, DAgger), the driver's;
    either with the DART perturbation added. ``search`` and ``lost_s``: the expert's observable search rule
    (``Expert``).
    """

    def __init__(self, perturbation: float = 0.0, seed: int = 0, search: str | None = None,
                 driver: Policy | None = None, lost_s: float | None = None):
        self.expert = Expert(perturbation, seed, search=search, lost_s=lost_s)
        self.driver = driver
        self.label = np.zeros(4)

    def reset(self) -> None:
        self.expert.reset()
        if self.driver is not None:
            self.driver.reset()

    def act(self, obs: Observation, sim: Simulator) -> np.ndarray:
        self.label = self.expert.act(sim)
        flown = self.label if self.driver is None else np.asarray(self.driver.act(obs, sim), dtype=np.float64)
        return self.expert.explore(flown, sim, obs.dt)


@dataclass
class EpisodeResult:
    """One flown episode's outcome and metrics (and its trajectory, for plots)."""

    scenario: str
    seed: int
    success: bool
    reason: str
    time_to_target: float | None  # s, when the success rule was met
    final_distance: float  # m, horizontal, to the active target at the end
    path_length: float  # m
    min_distractor_distance: float | None  # m, None without distractors
    jerk: float  # RMS of the command's second time derivative: lower is smoother
    collisions: int
    duration: float  # simulated seconds
    steps: int  # pilot steps (frames)
    wall_time: float  # s
    trajectory: list[list[float]] = field(default_factory=list, repr=False)  # t, x, y, z, yaw per step

    def summary(self) -> dict:
        """Everything but the trajectory, rounded for printing."""
        out = {k: v for k, v in asdict(self).items() if k != "trajectory"}
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def command_jerk(commands: np.ndarray, dts: np.ndarray) -> float:
    """RMS over steps of |second difference of the command| / dt^2."""
    if len(commands) < 3:
        return 0.0
    second = commands[2:] - 2 * commands[1:-1] + commands[:-2]
    return float(np.sqrt(np.mean(np.sum(second ** 2, 1) / np.maximum(dts[2:], 1e-6) ** 4)))


def fly(sim: Simulator, policy: Policy, seed: int,
        on_step: Callable[[Simulator, Observation, np.ndarray], None] | None = None) -> EpisodeResult:
    """Fly one episode of ``sim``'s scenario from ``seed``; ``on_step`` sees every frame and command."""
    start = time.perf_counter()
    obs = sim.reset(seed)
    policy.reset()
    commands, dts, trajectory = [], [], []
    while not sim.done:
        command = np.asarray(policy.act(obs, sim), dtype=np.float64)
        if on_step is not None:
            on_step(sim, obs, command)
        commands.append(np.clip(command, -sim.limits, sim.limits))
        dts.append(obs.dt)
        state = sim.state
        trajectory.append([obs.time, *state.position.tolist(), state.yaw])
        obs = sim.step(command)
    return outcome(sim, seed, commands, dts, trajectory, time.perf_counter() - start)


def outcome(sim: Simulator, seed: int, commands: list, dts: list, trajectory: list, wall_time: float,
            reason: str | None = None) -> EpisodeResult:
    """Measure a finished episode of ``sim`` (or one a caller ended for ``reason``) from its commands and path."""
    monitor = sim.monitor
    scenario: Scenario = sim.scenario
    reason = reason or monitor.reason
    return EpisodeResult(
        scenario=scenario.name, seed=seed, success=reason in SUCCESS, reason=reason,
        time_to_target=monitor.time_to_target, final_distance=monitor.distance(sim.state),
        path_length=monitor.path_length,
        min_distractor_distance=None if math.isinf(monitor.min_distractor_distance)
        else monitor.min_distractor_distance,
        jerk=command_jerk(np.array(commands).reshape(-1, 4), np.array(dts)),
        collisions=int(reason == "collision"), duration=sim.time, steps=len(commands),
        wall_time=wall_time, trajectory=trajectory)
