"""The simulator node: the PyBullet drone as a ROS robot, on simulated time.

Publishes ``camera/image_raw`` and ``camera/camera_info`` (same stamp, ``camera_optical_frame``),
``imu/data`` (REP-145), ``odom`` (``odom`` -> ``base_link``, ground truth), ``/clock`` and the
episode status (JSON on ``~/status``, latched). Flies ``cmd_vel`` (body FLU velocities, held
until the next one for at most ``command_timeout`` of simulated time, then zero: the drone hovers
when its pilot stops publishing, e.g. killed or crashed; zero at the start of every episode) or,
with ``autopilot: expert``, its privileged expert, whose commands it publishes on ``cmd_vel`` for
recording demonstrations (no timeout).

The simulator runs in its own thread, paced at ``real_time_factor``; all stamps are
simulated time. Between episodes the clock advances by ``EPISODE_GAP_S`` without sensor
data, so a pilot sees its camera go stale and resets its network.
"""
from __future__ import annotations

import json
import queue
import threading
import time

import numpy as np
import yaml
from builtin_interfaces.msg import Time as TimeMsg
from geometry_msgs.msg import Twist, TwistStamped
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, Imu
from std_msgs.msg import String
from std_srvs.srv import Trigger

from liquid_pilot.ros.convert import camera_info, rgb_to_image, time_msg
from liquid_pilot.sim.quadrotor import quaternion
from liquid_pilot.ros.params import Param, declare_parameters
from liquid_pilot.ros.spin import run
from liquid_pilot.sim.config import load_scenario
from liquid_pilot.sim.episode import ExpertPolicy
from liquid_pilot.sim.tasks import SUCCESS
from liquid_pilot.sim.world import Observation, Simulator

PARAMETERS = (
    Param("scenario", "forest_summer", "scenario name (sim/scenarios/NAME.yaml) or path of a scenario YAML file"),
    Param("seed", 0, "seed of the first episode; episode k flies seed + k", low=0, high=2**31 - 1),
    Param("overrides", [], "scenario settings as 'section.field=value' (value read as YAML), "
          "e.g. inject.image_noise=0.1"),
    Param("real_time_factor", 1.0, "simulated seconds per wall-clock second: 1 real time, 4 four times faster, "
          "0 as fast as possible (subscribers should use_sim_time)", low=0.0, high=1000.0, read_only=False),
    Param("autopilot", "none", "none: fly cmd_vel; expert: fly the privileged expert and publish its commands on "
          "cmd_vel (demonstrations)", choices=("none", "expert")),
    Param("auto_reset", True, "start the next episode (next seed) when one ends; false: wait for ~/reset",
          read_only=False),
    Param("command_type", "twist_stamped", "cmd_vel message: geometry_msgs/TwistStamped or Twist",
          choices=("twist_stamped", "twist")),
    Param("command_timeout", 0.5, "s after the last cmd_vel before the drone hovers (zero command): a pilot that "
          "stops publishing never leaves the drone flying its last command. Simulated time: a command counts "
          "from the simulated time at which it arrives; at real_time_factor 0 simulated time runs as fast as "
          "the simulator can, so a pilot slower than that in wall time looks silent (raise this, or pace the "
          "simulator). Not used with autopilot: expert", low=0.05, high=10.0, read_only=False),
)

EPISODE_GAP_S = 2.0  # longer than any pilot timeout (at most 1 s)
ZERO = np.zeros(4)
BEHIND_S = 0.25  # wall seconds behind schedule after which pacing restarts instead of catching up


def parse_overrides(items: list[str]) -> dict[str, object]:
    """``section.field=value`` strings -> scenario overrides (values read as YAML)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"sim_node: override {item!r} must look like section.field=value")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"sim_node: override {item!r}: value is not valid YAML: {exc}") from None
    return out


class SimNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("sim_node", **kwargs)
        self.params = p = declare_parameters(self, PARAMETERS)
        scenario = load_scenario(p["scenario"])
        if p["overrides"]:
            scenario = scenario.with_overrides(parse_overrides(p["overrides"]))
        self.sim = Simulator(scenario)
        self.expert = ExpertPolicy() if p["autopilot"] == "expert" else None
        self._frame_ns = round(1e9 / scenario.sim.camera_hz)
        # The latest cmd_vel and the simulated time of its arrival (None: none this episode), and the
        # simulated time of the latest /clock: written by the subscription, read by the simulation
        # thread, under the lock.
        self._lock = threading.Lock()
        self._command = ZERO
        self._command_ns: int | None = None
        self._clock_ns = 0
        self._hovering = False  # flying zero because the last command is older than command_timeout
        self._episode = -1
        self._offset_ns = round(EPISODE_GAP_S * 1e9)  # simulated time of the current episode's start
        self._anchor = (0.0, 0, 0.0)  # wall time, simulated time and factor that pacing counts from
        self._requests: queue.Queue[threading.Event] = queue.Queue()
        self._stop = threading.Event()

        # Reliable, so recorders and viewers with default QoS match too; the pilot subscribes
        # best effort. The status is latched (transient local) for late joiners.
        sensors = QoSProfile(depth=10)
        self._clock_pub = self.create_publisher(Clock, "/clock", QoSProfile(depth=10))
        self._image_pub = self.create_publisher(Image, "camera/image_raw", sensors)
        self._info_pub = self.create_publisher(CameraInfo, "camera/camera_info", sensors)
        self._imu_pub = self.create_publisher(Imu, "imu/data", sensors)
        self._odom_pub = self.create_publisher(Odometry, "odom", sensors)
        self._status_pub = self.create_publisher(
            String, "~/status", QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        command_type = TwistStamped if p["command_type"] == "twist_stamped" else Twist
        if self.expert is not None:
            self._cmd_pub = self.create_publisher(command_type, "cmd_vel", QoSProfile(depth=10))
        else:
            self.create_subscription(command_type, "cmd_vel", self._on_command, QoSProfile(depth=10),
                                     callback_group=MutuallyExclusiveCallbackGroup())
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.context.on_shutdown(self._stop.set)  # stop publishing before the context goes away
        self._thread = threading.Thread(target=self._loop, name="sim_node", daemon=True)
        self._thread.start()

    def destroy_node(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sim.close()
        super().destroy_node()

    def _on_command(self, msg: Twist | TwistStamped) -> None:
        twist = msg.twist if isinstance(msg, TwistStamped) else msg
        command = np.array([twist.linear.x, twist.linear.y, twist.linear.z, twist.angular.z])
        with self._lock:
            self._command, self._command_ns = command, self._clock_ns

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        started = threading.Event()
        self._requests.put(started)
        response.success = started.wait(10.0)
        response.message = (f"episode {self._episode}, seed {self._seed()}" if response.success
                            else "the simulator did not start a new episode within 10 s")
        return response

    # The simulation thread.
    def _loop(self) -> None:
        try:
            self._start_episode()
            while not self._stop.is_set():
                if not self._requests.empty():
                    if not self.sim.done:
                        self._publish_status("aborted")
                        self._end_episode()
                    self._start_episode()
                    while not self._requests.empty():
                        self._requests.get().set()
                elif not self.sim.done:
                    self._fly_one_frame()
                elif self.params["auto_reset"]:
                    self._start_episode()
                else:
                    self._stop.wait(0.05)  # idle until ~/reset
        except Exception as exc:  # keep the node up to report it; the simulator is stopped
            if self.context.ok():  # not a publish racing the shutdown
                self.get_logger().error(f"simulation stopped: {type(exc).__name__}: {exc}")

    def _start_episode(self) -> None:
        self._episode += 1
        obs = self.sim.reset(self._seed())
        with self._lock:
            self._command, self._command_ns = ZERO, None
        if self.expert is not None:
            self.expert.reset()
        self._pace_from(self._offset_ns)
        self.get_logger().info(f"episode {self._episode}: {self.sim.scenario.name}, seed {self._seed()}")
        self._publish_status(None)
        self._publish_frame(obs, self._offset_ns)

    def _fly_one_frame(self) -> None:
        # Wait for the next frame's time first, so the step flies the newest command.
        self._wait_until(self._now_ns() + self._frame_ns)
        obs = self.sim.step(self._command if self.expert is not None else self._command_to_fly())
        now = self._now_ns()
        if self.sim.done:
            self._publish_clock(now)
            self._publish_status(self.sim.monitor.reason)
            self._end_episode()
            return
        self._wait_until(now)  # dropped frames make a step longer than one period
        self._publish_frame(obs, now)

    def _command_to_fly(self) -> np.ndarray:
        """Return the latest cmd_vel, or zero once it is older than ``command_timeout`` (simulated time)."""
        now = self._now_ns()
        with self._lock:
            command, since = self._command, self._command_ns
        timeout_ns = round(self.params["command_timeout"] * 1e9)
        stale = since is not None and now - since > timeout_ns
        if since is not None and stale != self._hovering:  # log the changes only
            self._hovering = stale
            if stale:
                self.get_logger().warning(f"no cmd_vel for more than command_timeout="
                                          f"{self.params['command_timeout']} s (simulated time): hovering "
                                          f"until commands resume")
            else:
                self.get_logger().info("cmd_vel resumed: flying the commands again")
        return ZERO if stale else command

    def _end_episode(self) -> None:
        self._offset_ns = self._now_ns() + round(EPISODE_GAP_S * 1e9)
        self._publish_clock(self._offset_ns)

    def _seed(self) -> int:
        return self.params["seed"] + self._episode

    def _now_ns(self) -> int:
        return self._offset_ns + round(self.sim.time * 1e9)

    # Pacing: simulated time t is due at anchor_wall + (t - anchor_sim) / real_time_factor.
    def _pace_from(self, sim_ns: int) -> None:
        self._anchor = (time.monotonic(), sim_ns, self.params["real_time_factor"])

    def _wait_until(self, sim_ns: int) -> None:
        factor = self.params["real_time_factor"]
        if factor <= 0:
            return
        if factor != self._anchor[2]:
            self._pace_from(self._now_ns())
        wall, start, _ = self._anchor
        delay = wall + (sim_ns - start) / 1e9 / factor - time.monotonic()
        if delay < -BEHIND_S:
            self._pace_from(sim_ns)  # far behind (a slow step or a pause): do not rush to catch up
        elif delay > 0:
            self._stop.wait(delay)

    # Messages.
    def _publish_clock(self, sim_ns: int) -> None:
        with self._lock:
            self._clock_ns = sim_ns  # what a command arriving from now on is stamped with
        self._clock_pub.publish(Clock(clock=time_msg(sim_ns)))

    def _publish_status(self, reason: str | None) -> None:
        status = {"scenario": self.sim.scenario.name, "seed": self._seed(), "episode": self._episode,
                  "time": round(self.sim.time, 3), "reason": reason, "success": reason in SUCCESS}
        self._status_pub.publish(String(data=json.dumps(status)))
        if reason is not None:
            self.get_logger().info(f"episode {self._episode} ended: {reason} after {self.sim.time:.2f} s")

    def _publish_frame(self, obs: Observation, sim_ns: int) -> None:
        stamp = time_msg(sim_ns)
        self._publish_clock(sim_ns)
        self._imu_pub.publish(self._imu(obs.imu, stamp))
        self._odom_pub.publish(self._odom(stamp))
        camera = self.sim.camera
        self._info_pub.publish(camera_info(camera.width, camera.height, camera.vfov, stamp, "camera_optical_frame"))
        self._image_pub.publish(rgb_to_image(obs.image, stamp, "camera_optical_frame"))
        if self.expert is not None:
            command = self.expert.act(obs, self.sim)
            self._command = command
            twist = Twist()
            twist.linear.x, twist.linear.y, twist.linear.z, twist.angular.z = (float(v) for v in command)
            if self.params["command_type"] == "twist_stamped":
                msg = TwistStamped(twist=twist)
                msg.header.stamp, msg.header.frame_id = stamp, "base_link"
                self._cmd_pub.publish(msg)
            else:
                self._cmd_pub.publish(twist)

    def _imu(self, values: np.ndarray, stamp: TimeMsg) -> Imu:
        inject = self.sim.scenario.inject
        msg = Imu()
        msg.header.stamp, msg.header.frame_id = stamp, "base_link"
        msg.orientation_covariance[0] = -1.0  # REP-145: no orientation estimate
        msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = (float(v) for v in values[:3])
        msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = (
            float(v) for v in values[3:])
        for i in (0, 4, 8):
            msg.angular_velocity_covariance[i] = inject.gyro_noise ** 2
            msg.linear_acceleration_covariance[i] = inject.accel_noise ** 2
        return msg

    def _odom(self, stamp: TimeMsg) -> Odometry:
        truth = self.sim.truth()
        msg = Odometry()
        msg.header.stamp, msg.header.frame_id, msg.child_frame_id = stamp, "odom", "base_link"
        pose = msg.pose.pose
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in truth.position)
        o = pose.orientation
        o.x, o.y, o.z, o.w = quaternion(truth.rotation)
        body_velocity = truth.rotation.T @ truth.velocity  # REP-105: twist in the child frame
        twist = msg.twist.twist
        twist.linear.x, twist.linear.y, twist.linear.z = (float(v) for v in body_velocity)
        twist.angular.x, twist.angular.y, twist.angular.z = (float(v) for v in truth.rates)
        return msg


def main(args: list[str] | None = None) -> int:
    return run([SimNode], args)


if __name__ == "__main__":
    raise SystemExit(main())
