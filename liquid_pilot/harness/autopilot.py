"""A real autopilot in the loop: PX4 or ArduPilot (SITL, or a vehicle) flies the liquid pilot through our scenes.

The loop, in real time::

    Follower (scene + camera at the autopilot's pose) -> flight core (the pilot, its gate) -> supervisor +
    MAVLink backend (the bridge) -> the autopilot's firmware and physics -> its odometry and IMU -> Follower

The simulator flies no physics here (``sim.follow.Follower``): it renders the camera at the pose the autopilot
reports and judges the task as in the simulator; the pilot's IMU is the autopilot's own (``HIGHRES_IMU``).
The bridge is the one ``bridge_node`` runs: the supervisor with its keep-alive thread, the same backend, the
same hovers and geofence; the pilot is the flight core ``pilot_node`` runs (onnxruntime by default).

One take-off serves every episode. The bridge takes off by itself (``auto_takeoff``, to ``takeoff_height``)
and, where the autopilot refuses to arm (its estimator not ready yet), the harness asks again as an operator
would, until ``start_timeout``. Each episode anchors a new scene at the hovering vehicle (its heading becomes
the layout's start heading), flies the pilot until the task ends, then flies back over the take-over point
at ``takeoff_height`` and waits for the vehicle to settle before the next. Episode time is wall time, which
is the autopilot's when its SITL keeps real time (``--speedup 1``).

Chosen over ArduPilot's JSON physics interface (our PyBullet vehicle as ArduPilot's physics), measured and
written down in docs/autopilot.md (The autopilot in the loop): this way flies PX4 as well, flies the autopilot's own
vehicle model and estimator, and needs no lockstep between two simulators.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from liquid_pilot.bridge.conversions import rotate, world_to_body
from liquid_pilot.bridge.mavlink import MavlinkBackend
from liquid_pilot.bridge.runner import Runner
from liquid_pilot.bridge.supervisor import FLYING, PILOT, TERMINAL, Supervisor, SupervisorConfig
from liquid_pilot.bridge.telemetry import ImuSample, OdometrySample
from liquid_pilot.flight.core import FlightCore
from liquid_pilot.flight.gate import GateConfig
from liquid_pilot.flight.types import Log
from liquid_pilot.flight.runtime import Runtime
from liquid_pilot.sim.config import Scenario
from liquid_pilot.sim.episode import EpisodeResult, outcome
from liquid_pilot.sim.follow import Follower, Pose

RETURN_SPEED = 1.0  # m/s: flying back between episodes
RETURN_GAIN = 1.0  # 1/s
SETTLED_DISTANCE = 0.4  # m from the return point
SETTLED_SPEED = 0.4  # m/s, the estimate averaged over SPEED_AVERAGE_S: PX4 SIH's wanders by 0.1-0.4 m/s at rest
SPEED_AVERAGE_S = 0.5
RETURN_TIMEOUT_S = 60.0  # a loaded machine slows the SITL's control loop (30 s was too short for PX4 under CI load)


@dataclass
class LoopConfig:
    """How the harness flies: the bridge's take-off and the episodes' pacing."""

    takeoff_height: float = 1.0  # m above the ground: where every episode starts (the scenes' flight height)
    start_timeout: float = 240.0  # s for the autopilot to arm and take off (its estimator needs tens of seconds)
    settle_s: float = 1.0  # s hovering still over the return point before an episode starts
    supervisor: dict = field(default_factory=dict)  # SupervisorConfig fields to change (fence, timeouts, ...)

    def __post_init__(self) -> None:
        if not 0.5 <= self.takeoff_height <= 3.0:
            raise ValueError(f"takeoff_height = {self.takeoff_height} m must be in [0.5, 3] (the scenes' heights)")
        if not 10.0 <= self.start_timeout <= 3600.0:
            raise ValueError(f"start_timeout = {self.start_timeout} s must be in [10, 3600]")


class AutopilotLoop:
    """The loop of the module docstring around one MAVLink autopilot; ``start``, then ``episode`` per seed."""

    def __init__(self, runtime: Runtime, scenario: Scenario, address: str, flavour: str,
                 config: LoopConfig | None = None, log: Log | None = None,
                 clock: Callable[[], int] = time.monotonic_ns, backend_options: dict | None = None):
        self.config = c = config or LoopConfig()
        self.log = log or (lambda level, message: None)
        self.clock = clock
        self.scenario = scenario
        s = scenario.sim
        self.core = FlightCore(runtime, GateConfig(max_speed_xy=s.max_speed_xy, max_speed_z=s.max_speed_z,
                                                   max_yaw_rate=s.max_yaw_rate), clock, self.log)
        self.follower = Follower(scenario)
        self.backend = MavlinkBackend(address, flavour, log=self.log, **(backend_options or {}))
        self.backend.on_sample = self._on_sample
        # The scene ends an episode at its own bounds (14 m from the chair, 6 m up): the fence stands outside them.
        self.supervisor_config = SupervisorConfig(**{"auto_takeoff": True, "takeoff_height": c.takeoff_height,
                                                     "fence_radius": 25.0, "fence_height": 7.0, **c.supervisor})
        self._lock = threading.Lock()  # the gate: IMU samples arrive on the keep-alive thread
        self._odometry: OdometrySample | None = None
        self._odometry_at = 0
        self.supervisor: Supervisor | None = None
        self.runner: Runner | None = None
        self.imu_samples = 0

    # Telemetry (the keep-alive thread).
    def _on_sample(self, sample: object) -> None:
        if isinstance(sample, ImuSample):
            with self._lock:
                self.core.imu(np.array([*sample.angular_velocity, *sample.linear_acceleration], np.float32))
            self.imu_samples += 1
        elif isinstance(sample, OdometrySample):
            self._odometry, self._odometry_at = sample, self.clock()

    def pose(self) -> Pose | None:
        """Return the vehicle's latest pose, carried forward to now by its velocity."""
        odometry = self._odometry
        if odometry is None:
            return None
        velocity = rotate(odometry.orientation, odometry.linear_velocity)
        age = max(0.0, (self.clock() - odometry.stamp) / 1e9)
        position = tuple(p + v * age for p, v in zip(odometry.position, velocity))
        return Pose(position, odometry.orientation, velocity, odometry.angular_velocity)

    # Start and stop.
    def start(self) -> None:
        """Arm and take off through the bridge, asking again while the autopilot refuses; RuntimeError on time-out."""
        deadline = self.clock() + self.config.start_timeout * 1e9
        while True:
            self._new_supervisor()
            while self.supervisor.state != FLYING and self.supervisor.state not in TERMINAL:
                if self.clock() > deadline:
                    raise RuntimeError(f"the autopilot did not take off within {self.config.start_timeout:g} s "
                                       f"(bridge state {self.supervisor.state}: {self.supervisor.reason})")
                self._wait(0.1)
            if self.supervisor.state == FLYING:
                self.log("info", f"flying at {self._height():.2f} m: episodes can start")
                return
            reason = self.supervisor.reason
            self.runner.stop(0.0)
            if self.clock() > deadline or not self._refused(reason):
                raise RuntimeError(f"the bridge could not take off: {reason}")
            self.log("info", f"{reason}: asking again in 2 s (an autopilot refuses to arm until its estimator is "
                             "ready)")
            self._wait(2.0)

    @staticmethod
    def _refused(reason: str) -> bool:
        return "refused arm" in reason or "not armed within" in reason or "refused takeoff" in reason

    def _new_supervisor(self) -> None:
        self.supervisor = Supervisor(self.backend, self.supervisor_config, self.clock, self.log)
        self.runner = Runner(self.supervisor, self.backend.rate, self.log)
        self.runner.start()

    def close(self, land: bool = True) -> None:
        """Land (or just stop the stream) and close the link."""
        if self.runner is not None:
            if not land:
                self.supervisor.config.shutdown_action = "hover"
            self.runner.stop(60.0 if land else 1.0)
        self.backend.close()
        self.follower.close()

    # Episodes.
    def episode(self, seed: int, on_frame: Callable[[np.ndarray, np.ndarray], None] | None = None) -> EpisodeResult:
        """Fly one episode of the scenario from ``seed``, anchored where the vehicle hovers now."""
        self._return()
        pose = self.pose()
        self.follower.reset(seed, pose, height=self._height())
        with self._lock:
            self.core.start()
        period = self.follower.frame_period
        t0 = self.clock()
        wall = time.perf_counter()
        commands, dts, trajectory = [], [], []
        last_frame_t, reason = 0.0, None
        k = 0
        while not self.follower.done:
            k += 1
            self._wait_until(t0 + round(k * period / 2 * 1e9))  # judge twice per frame period
            if self.supervisor.state not in PILOT:  # the bridge took the vehicle back: geofence, link lost
                reason = f"bridge_{self.supervisor.state}"
                break
            now = self.clock()
            t = (now - t0) / 1e9
            image = self.follower.observe(self.pose(), t)
            if image is None:
                continue
            with self._lock:
                command = np.array(self.core.frame(image, now), dtype=np.float64)
            self.supervisor.command(tuple(command))
            if on_frame is not None:
                on_frame(image, command)
            commands.append(command)
            dts.append(t - last_frame_t)
            last_frame_t = t
            state = self.follower.state
            trajectory.append([t, *state.position.tolist(), state.yaw])
        result = outcome(self.follower, seed, commands, dts, trajectory, time.perf_counter() - wall, reason)
        reached = f" in {result.time_to_target:.2f} s" if result.time_to_target else ""
        self.log("info", f"seed {seed}: {result.reason}{reached}")
        if reason is not None:
            self.supervisor.resume()
        return result

    def _return(self) -> None:
        """Fly back over the take-over point at the take-off height and hover there still for ``settle_s``."""
        if self.supervisor.state not in PILOT:
            ok, message = self.supervisor.resume()
            if not ok:
                raise RuntimeError(f"the bridge cannot fly the next episode: {message}")
        target = np.array(self.supervisor.takeover or self.pose().position, dtype=float)
        target[2] = (self.supervisor.ground or 0.0) + self.config.takeoff_height
        deadline = self.clock() + RETURN_TIMEOUT_S * 1e9
        settled_since, speed, last = None, None, self.clock()
        while True:
            pose = self.pose()
            error = target - np.asarray(pose.position)
            now = self.clock()
            weight = min(1.0, (now - last) / 1e9 / SPEED_AVERAGE_S)
            last = now
            sample = float(np.linalg.norm(pose.velocity))
            speed = sample if speed is None else speed + weight * (sample - speed)
            if np.linalg.norm(error) < SETTLED_DISTANCE and speed < SETTLED_SPEED:
                settled_since = settled_since or self.clock()
                if self.clock() - settled_since >= self.config.settle_s * 1e9:
                    return
            else:
                settled_since = None
            if self.clock() > deadline:
                raise RuntimeError(f"the vehicle did not settle over the return point within {RETURN_TIMEOUT_S:g} s "
                                   f"({np.linalg.norm(error):.2f} m from it at {speed:.2f} m/s)")
            velocity = error * RETURN_GAIN
            norm = float(np.linalg.norm(velocity))
            if norm > RETURN_SPEED:
                velocity *= RETURN_SPEED / norm
            r = pose.orientation
            yaw = math.atan2(2.0 * (r[3] * r[2] + r[0] * r[1]), 1.0 - 2.0 * (r[1] ** 2 + r[2] ** 2))
            self.supervisor.command((*world_to_body(tuple(velocity), yaw), 0.0))
            if self.supervisor.state not in PILOT:  # a hold (the geofence, a lost estimate) or worse: said at once
                raise RuntimeError(f"the bridge stopped flying back to the take-over point: {self.supervisor.state}: "
                                   f"{self.supervisor.reason}")
            self._wait(0.05)

    # Helpers.
    def _height(self) -> float:
        pose = self.pose()
        return 0.0 if pose is None else pose.position[2] - (self.supervisor.ground or 0.0)

    def _wait(self, seconds: float) -> None:
        self._wait_until(self.clock() + round(seconds * 1e9))

    def _wait_until(self, deadline: int) -> None:
        """Sleep until the clock reaches ``deadline`` (the loop's pacing, in real time)."""
        delay = (deadline - self.clock()) / 1e9
        if delay > 0:
            time.sleep(delay)
