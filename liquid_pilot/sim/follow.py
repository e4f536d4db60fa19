"""The simulator's scenes around a vehicle that flies elsewhere: an autopilot's SITL, or a real drone.

``Follower`` builds an episode's scene, task and camera exactly as ``Simulator.reset`` does, but flies no
physics of its own: the vehicle's pose comes from outside (the autopilot's odometry, ``observe``), the
camera renders the scene at that pose, and the task monitor judges the flight (reached, collided, out of
bounds, timed out) as in the simulator. The IMU is the vehicle's own (the autopilot's), so none is made here.

The vehicle's local frame (ENU, the autopilot's origin) is anchored to the scene at ``reset``: the pose the
vehicle has then becomes the layout's start (its position, and its heading as the start heading), so an
episode starts wherever the vehicle hovers. Heights are kept as flown: the scene's ground lies ``height`` below
the vehicle at the anchor (its height above the ground it took off from, when the caller knows it; else the
layout's start height). Camera frames are due every ``1 / camera_hz`` of the caller's clock; image injection
(noise, blur, colour, dropped and frozen frames) applies as in the simulator; camera latency is the real one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from liquid_pilot.sim.config import Scenario
from liquid_pilot.sim.inject import DROPPED, FROZEN
from liquid_pilot.sim.quadrotor import BodyState
from liquid_pilot.sim.world import DRONE_RADIUS, Simulator


@dataclass(frozen=True)
class Pose:
    """A vehicle's state in its own local frame: ENU position and velocity, body FLU -> ENU attitude."""

    position: tuple[float, float, float]  # m
    orientation: tuple[float, float, float, float]  # (x, y, z, w)
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)  # m/s, world ENU
    rates: tuple[float, float, float] = (0.0, 0.0, 0.0)  # rad/s, body FLU


def rotation_matrix(q: tuple[float, float, float, float]) -> np.ndarray:
    """Return the 3x3 rotation (body -> world) of an (x, y, z, w) quaternion."""
    x, y, z, w = (v / (math.sqrt(sum(c * c for c in q)) or 1.0) for v in q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _about_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class Follower(Simulator):
    """A scenario's scene, camera and task around an externally flown vehicle (module docstring)."""

    def __init__(self, scenario: Scenario):
        super().__init__(scenario)
        self.frame_period = 1.0 / scenario.sim.camera_hz
        self._turn = np.eye(3)  # local frame -> scene, about z
        self._shift = np.zeros(3)
        self._t = 0.0

    def reset(self, seed: int, pose: Pose | None = None, height: float | None = None) -> None:  # type: ignore[override]
        """Build the episode of ``seed`` and anchor the vehicle's local frame to it at ``pose``."""
        super().reset(seed)
        pose = pose or Pose((0.0, 0.0, float(self.layout.start[2])), (0.0, 0.0, 0.0, 1.0))
        r = rotation_matrix(pose.orientation)
        yaw = math.atan2(r[1, 0], r[0, 0])
        self._turn = _about_z(self.layout.start_yaw - yaw)
        start = np.array(self.layout.start, dtype=float)
        if height is not None:
            start[2] = height
        self._shift = start - self._turn @ np.asarray(pose.position, float)
        self._t, self.tick, self.next_frame = 0.0, 0, 0.0
        self.state = self.to_scene(pose)
        self.last_image = None

    def to_scene(self, pose: Pose) -> BodyState:
        """Return the scene's body state of a pose in the vehicle's local frame."""
        rotation = self._turn @ rotation_matrix(pose.orientation)
        return BodyState(self._turn @ np.asarray(pose.position, float) + self._shift, rotation,
                         self._turn @ np.asarray(pose.velocity, float), np.asarray(pose.rates, float))

    @property
    def time(self) -> float:
        return self._t

    def observe(self, pose: Pose, t: float) -> np.ndarray | None:
        """Take the vehicle's pose at ``t`` s into the episode; return the camera frame due now, or None.

        The task is judged at every call (call it at least at the camera's rate); after the end, nothing is
        rendered (``done``).
        """
        if self.done:
            return None
        dt = max(0.0, t - self._t)
        self._t = t
        self.state = state = self.to_scene(pose)
        self.monitor.update(t, dt, state, self.scene.solids.hits(state.position, DRONE_RADIUS))
        if self.done or t + 1e-9 < self.next_frame:
            return None
        self.next_frame += self.frame_period * max(1, math.floor((t - self.next_frame) / self.frame_period) + 1)
        fate = self.injector.frame_fate()
        if fate == DROPPED:
            return None
        if fate != FROZEN or self.last_image is None:
            self.last_image = self.injector.image(self.camera.render(state))
        return self.last_image

    def step(self, command: np.ndarray):  # type: ignore[override]
        raise RuntimeError("a Follower flies no physics: give it the vehicle's poses with observe()")
