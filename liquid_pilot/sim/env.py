"""The simulator as a gymnasium environment (``LiquidPilot-v0``).

Observation: {"image": (H, W, 3) uint8 RGB, "imu": (6,) float32, "dt": (1,) float32 seconds}.
Action: [vx, vy, vz, yaw_rate] in the body frame, bounded by the scenario's limits.
Reward: progress toward the stand-off distance per step, +10 on success, -10 on failure.
``info`` carries the episode's end reason and, at the end, its metrics.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from liquid_pilot.sim.config import Scenario, load_scenario
from liquid_pilot.sim.tasks import SUCCESS
from liquid_pilot.sim.world import IMU_RANGE, IMU_SIZE, Observation, Simulator


class LiquidPilotEnv(gym.Env):
    """The simulator as a gymnasium environment (LiquidPilot-v0): observations image, imu and dt."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 16}

    def __init__(self, scenario: str | Scenario = "forest_summer", overrides: dict[str, Any] | None = None,
                 render_mode: str | None = None):
        scenario = load_scenario(scenario) if isinstance(scenario, str) else scenario
        self.scenario = scenario.with_overrides(overrides) if overrides else scenario
        self.sim = Simulator(self.scenario)
        s = self.scenario.sim
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": s.camera_hz}
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0, 255, (s.image_height, s.image_width, 3), np.uint8),
            "imu": spaces.Box(-IMU_RANGE, IMU_RANGE, (IMU_SIZE,), np.float32),
            "dt": spaces.Box(0.0, self.scenario.task.timeout_s + 1.0, (1,), np.float32),
        })
        self.action_space = spaces.Box(-self.sim.limits.astype(np.float32), self.sim.limits.astype(np.float32),
                                       dtype=np.float32)
        self._last: Observation | None = None

    def _obs(self, obs: Observation) -> dict[str, np.ndarray]:
        self._last = obs
        return {"image": obs.image, "imu": obs.imu, "dt": np.array([obs.dt], dtype=np.float32)}

    def _gap(self) -> float:
        return abs(self.sim.monitor.distance(self.sim.state) - self.scenario.task.standoff)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        episode_seed = int(self.np_random.integers(2 ** 31 - 1))
        obs = self.sim.reset(episode_seed)
        self._gap_before = self._gap()
        return self._obs(obs), {"episode_seed": episode_seed}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        obs = self.sim.step(np.asarray(action, dtype=np.float64))
        gap = self._gap()
        reward, self._gap_before = self._gap_before - gap, gap
        reason = self.sim.monitor.reason
        info: dict[str, Any] = {"reason": reason}
        if reason is not None:
            reward += 10.0 if reason in SUCCESS else -10.0
            info["time_to_target"] = self.sim.monitor.time_to_target
            info["path_length"] = self.sim.monitor.path_length
        terminated = reason is not None and reason != "timeout"
        return self._obs(obs), float(reward), terminated, reason == "timeout", info

    def render(self) -> np.ndarray | None:
        return None if self._last is None else self._last.image

    def close(self) -> None:
        self.sim.close()
