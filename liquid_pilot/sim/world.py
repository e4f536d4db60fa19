"""The closed-loop simulator: physics, inner controller, sensors, scene, task and disturbances.

One ``step`` holds a velocity command until the next camera frame arrives and returns that
frame with the IMU sample and the real elapsed time. Physics runs at ``physics_hz``, the
inner controller at ``control_hz``, the camera at ``camera_hz``; dropped frames make the
next step longer, exactly as a pilot would experience them.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import pybullet as pb

from liquid_pilot.sim.camera import Camera
from liquid_pilot.sim.config import Scenario
from liquid_pilot.sim.control import VelocityController
from liquid_pilot.sim.inject import DROPPED, FROZEN, Injector
from liquid_pilot.sim.quadrotor import GRAVITY, BodyState, Quadrotor, load_params
from liquid_pilot.sim.scene import Scene
from liquid_pilot.sim.tasks import Layout, TaskMonitor, make_layout

IMU_SIZE = 6
DRONE_RADIUS = 0.06  # m: arm plus propeller
# Sensor ranges (a 2000 deg/s gyro, a 16 g accelerometer): readings saturate there.
IMU_RANGE = np.array([34.9] * 3 + [156.9] * 3, dtype=np.float32)


@dataclass
class Observation:
    """What the pilot gets at a camera frame: the image, the IMU sample and the elapsed time."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    imu: np.ndarray  # (6,) float32: gyro xyz (rad/s), accelerometer xyz (m/s^2), body frame
    dt: float  # seconds since the previous observation
    time: float  # seconds since the episode started


class Simulator:
    """One scenario's closed loop: physics, inner controller, sensors, scene, task and disturbances."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        sim = scenario.sim
        # Two worlds: physics holds only the drone (so a step stays a few microseconds); the
        # visual-only scene lives in its own client that the camera renders.
        self.client = pb.connect(pb.DIRECT)
        self.render_client = pb.connect(pb.DIRECT)
        self.params = load_params()
        self.physics_dt = 1.0 / sim.physics_hz
        self.ticks_per_control = sim.physics_hz // sim.control_hz
        self.ticks_per_frame = sim.physics_hz // sim.camera_hz
        self.latency_ticks = round(scenario.inject.camera_latency_s * sim.physics_hz)
        self.limits = np.array([sim.max_speed_xy, sim.max_speed_xy, sim.max_speed_z, sim.max_yaw_rate])
        self.controller = VelocityController(self.params, 1.0 / sim.control_hz)
        self.tick = 0

    def close(self) -> None:
        if self.client >= 0:
            pb.disconnect(self.client)
            pb.disconnect(self.render_client)
            self.client = -1

    def __del__(self) -> None:
        if getattr(self, "client", -1) >= 0 and pb is not None:
            self.close()

    @property
    def time(self) -> float:
        return self.tick * self.physics_dt

    def reset(self, seed: int) -> Observation:
        """Build a new episode from ``seed``: the same seed gives the same flight, bit for bit."""
        streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]
        layout_rng, scene_rng, inject_rng, self.rng = streams
        s, c = self.scenario, self.client
        pb.resetSimulation(physicsClientId=c)
        pb.resetSimulation(physicsClientId=self.render_client)
        pb.setGravity(0, 0, -GRAVITY, physicsClientId=c)
        pb.setTimeStep(self.physics_dt, physicsClientId=c)
        self.layout: Layout = make_layout(s.task, layout_rng)
        self.scene = Scene(self.render_client, s.scene, scene_rng, self.layout.corridors)
        self.chairs = [self.scene.add_chair(xy, yaw) for xy, yaw in self.layout.targets]
        self.scene.add_distractors(scene_rng, s.task.distractors, keep_away=s.task.distractor_radius + 0.5)
        self.scene.add_occluder(self.layout.targets[0][0], self.layout.start[:2], s.task.occlusion)
        self.drone = Quadrotor(c, self.params, self.physics_dt, s.sim.motor_time_constant)
        self.drone.reset(self.layout.start, self.layout.start_yaw)
        self.camera = Camera(self.render_client, s.sim, self.scene.sky, s.scene.light)
        self.injector = Injector(s.inject, inject_rng, self.params.mass)
        self.monitor = TaskMonitor(s.task, s.sim, self.layout, s.scene.radius, self.camera.in_view,
                                   self.scene.distractors, self._move_chair)
        self.controller.reset()
        self.tick = 0
        self.command = np.zeros(4)
        self.state = self.drone.state()
        self.gyro, self.accel = self.injector.imu(np.zeros(3), np.array([0.0, 0.0, GRAVITY]))
        self.last_delivery = 0
        raw = self.camera.render(self.state)
        # With latency, frames due before the first capture show the (still) starting view.
        self.pending: deque[tuple[int, np.ndarray]] = deque(
            (k * self.ticks_per_frame, raw) for k in range(1, self.latency_ticks // self.ticks_per_frame + 1))
        first = self.last_image = self.injector.image(raw)
        return self._observation(first, 0.0)

    @property
    def done(self) -> bool:
        return self.monitor.reason is not None

    def step(self, command: np.ndarray) -> Observation:
        """Fly ``command`` until the next frame arrives or the flight ends.

        The command is [vx, vy, vz, yaw_rate] in the body frame, clipped to the limits.
        """
        if self.done:
            raise RuntimeError("the episode is over; call reset()")
        command = np.asarray(command, dtype=np.float64).reshape(4)
        self.command = np.clip(np.nan_to_num(command), -self.limits, self.limits)
        while True:
            self._tick()
            if self.done:
                return self._observation(self.last_image, self.time - self.last_delivery * self.physics_dt)
            if self.tick % self.ticks_per_frame == 0:
                image = self._deliver()
                if image is not None:
                    dt = (self.tick - self.last_delivery) * self.physics_dt
                    self.last_delivery = self.tick
                    return self._observation(image, dt)

    def _tick(self) -> None:
        if self.tick % self.ticks_per_control == 0:
            self._actuate()
        self.drone.physics_tick()
        pb.stepSimulation(physicsClientId=self.client)
        self.tick += 1
        if self.tick % self.ticks_per_control == 0:
            self._sense()
            if self.done:
                return
        if (self.tick + self.latency_ticks) % self.ticks_per_frame == 0:  # capture, delivered later
            self.pending.append((self.tick + self.latency_ticks, self.camera.render(self.drone.state())))

    def _sense(self) -> None:
        """Once per control period: read the state and IMU, check the task."""
        previous = self.state
        self.state = state = self.drone.state()
        dt = self.ticks_per_control * self.physics_dt
        accel_world = (state.velocity - previous.velocity) / dt + (0.0, 0.0, GRAVITY)
        self.gyro, self.accel = self.injector.imu(state.rates, state.rotation.T @ accel_world)
        self.monitor.update(self.time, dt, state, self.scene.solids.hits(state.position, DRONE_RADIUS))

    def _actuate(self) -> None:
        """Once per control period: wind, drag and ground effect, then the inner controller."""
        dt = self.ticks_per_control * self.physics_dt
        self.drone.update_slow_forces(self.state, self.injector.wind(dt))
        self.drone.rpm_command[:] = self.injector.motors(self.controller(self.command, self.state, self.gyro))

    def _deliver(self) -> np.ndarray | None:
        """Return the frame due now after injection, or None when it is dropped."""
        due = None
        while self.pending and self.pending[0][0] <= self.tick:
            due = self.pending.popleft()[1]
        if due is None:
            return None
        fate = self.injector.frame_fate()
        if fate == DROPPED:
            return None
        if fate != FROZEN:
            self.last_image = self.injector.image(due)
        return self.last_image

    def _observation(self, image: np.ndarray, dt: float) -> Observation:
        imu = np.clip(np.concatenate([self.gyro, self.accel]).astype(np.float32), -IMU_RANGE, IMU_RANGE)
        return Observation(image, imu, dt, self.time)

    def _move_chair(self, index: int, xy: np.ndarray, yaw: float) -> None:
        self.scene.move_chair(self.chairs[index], xy, yaw)

    def target_bearing(self) -> float:
        """Angle of the active target off the nose (rad, left positive): for metrics and the expert."""
        rel = self.monitor.target_xy - self.state.position[:2]
        return (math.atan2(rel[1], rel[0]) - self.state.yaw + math.pi) % (2 * math.pi) - math.pi

    def truth(self) -> BodyState:
        return self.drone.state()
