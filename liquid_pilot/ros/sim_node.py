"""The simulator node: the PyBullet drone as a ROS robot, on simulated time.

Publishes ``camera/image_raw`` and ``camera/camera_info`` (same stamp, ``camera_optical_frame``),
``imu/data`` (REP-145), ``odom`` (``odom`` -> ``base_link``, ground truth), ``/clock``, the episode
status (JSON on ``~/status``, latched: each start and end), the world for RViz and Foxglove
(``~/markers``, visualization_msgs/MarkerArray, latched: chairs, look-alikes, obstacles and the path
flown, ``liquid_pilot.ros.markers``), ``/diagnostics``, and every finished episode's outcome
(JSON on ``~/outcomes``, latched: one message holding the whole list, so a subscriber that joins
late, or keeps only the newest message, still has them all). Flies ``cmd_vel`` (body FLU
velocities, held until the next one for at most ``command_timeout`` of simulated time, then zero:
the drone hovers when its pilot stops publishing, e.g. killed or crashed; zero at the start of
every episode) or, with ``autopilot: expert``, its privileged expert, whose commands it publishes
on ``cmd_vel`` for recording demonstrations (no timeout).

The simulator runs in its own thread, paced at ``real_time_factor``; all stamps are simulated
time. Before the first episode it waits (at most ``wait_timeout``) for subscribers on the topics
in ``wait_for_subscribers`` (a recorder, the pilot) and for the pilot's enable service, so the
first episode is flown and recorded whole. Between episodes the clock advances by
``EPISODE_GAP_S`` without sensor data; with ``pilot_enable_service`` the pilot is disabled over
that gap (a quiet, logged event) and enabled when the next episode starts, otherwise it sees its
camera go stale and resets its network.
"""
from __future__ import annotations

import json
import queue
import threading
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout  # not the builtin before 3.11
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from geometry_msgs.msg import Twist, TwistStamped
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, Imu
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger
from visualization_msgs.msg import MarkerArray

from liquid_pilot.flight.types import ZERO
from liquid_pilot.ros.convert import camera_info, imu_message, odometry_message, rgb_to_image, time_msg
from liquid_pilot.ros.diagnostics import QosProblems, RateMeter, Reporter, sim_report
from liquid_pilot.ros.markers import scene_markers
from liquid_pilot.ros.params import declare_parameters, params_from
from liquid_pilot.ros.spin import run
from liquid_pilot.settings import Range, SettingsError, check_fields, parse_assignments, setting
from liquid_pilot.sim.config import load_scenario
from liquid_pilot.sim.episode import ExpertPolicy
from liquid_pilot.sim.quadrotor import quaternion
from liquid_pilot.sim.tasks import SUCCESS
from liquid_pilot.sim.world import Observation, Simulator


@dataclass(frozen=True)
class SimNodeSettings:
    """sim_node's settings, each documented and bounded once: its ROS parameters are made of them."""

    scenario: str = setting("forest_summer", "scenario name (sim/scenarios/NAME.yaml) or path of a scenario YAML file")
    seed: int = setting(0, "seed of the first episode; episode k flies seed + k", Range(0, 2**31 - 1))
    overrides: list[str] = setting(help="scenario settings as 'section.field=value' (value read as YAML), e.g. "
                                        "inject.image_noise=0.1", factory=list)
    real_time_factor: float = setting(1.0, "simulated seconds per wall-clock second: 1 real time, 4 four times "
                                           "faster, 0 as fast as possible (subscribers should use_sim_time)",
                                      Range(0.0, 1000.0))
    autopilot: str = setting("none", "none: fly cmd_vel; expert: fly the privileged expert and publish its commands "
                                     "on cmd_vel (demonstrations)", ("none", "expert"))
    auto_reset: bool = setting(True, "start the next episode (next seed) when one ends; false: wait for ~/reset")
    command_type: str = setting("twist_stamped", "cmd_vel message: geometry_msgs/TwistStamped or Twist",
                                ("twist_stamped", "twist"))
    command_timeout: float = setting(
        0.5, "s after the last cmd_vel before the drone hovers (zero command): a pilot that stops publishing never "
             "leaves the drone flying its last command. Simulated time: a command counts from the simulated time at "
             "which it arrives; at real_time_factor 0 simulated time runs as fast as the simulator can, so a pilot "
             "slower than that in wall time looks silent (raise this, or pace the simulator). Not used with "
             "autopilot: expert", Range(0.05, 10.0))
    pilot_enable_service: str = setting(
        "", "the pilot's std_srvs/SetBool enable service, e.g. pilot_node/enable (relative names resolve in this "
            "node's namespace): disabled when an episode ends and enabled when the next starts, so the pause between "
            "episodes is a quiet event for the pilot instead of a sensor timeout; before the first episode it is "
            "waited for like wait_for_subscribers. Empty: none (the pilot must start enabled). Not used with "
            "autopilot: expert")
    wait_for_subscribers: list[str] = setting(
        help="topics this node publishes (e.g. camera/image_raw, imu/data) that must each have a subscriber before "
             "the first episode starts, so a pilot or a recorder sees it from its first frame", factory=list)
    wait_timeout: float = setting(30.0, "s (wall time) to wait for wait_for_subscribers and pilot_enable_service "
                                        "before starting the first episode anyway (with a warning)",
                                  Range(0.0, 3600.0))

    def __post_init__(self) -> None:
        check_fields(self, "sim_node parameter ")


PARAMETERS = params_from(SimNodeSettings, live=("real_time_factor", "auto_reset", "command_timeout"))

EPISODE_GAP_S = 2.0  # longer than any pilot timeout (at most 1 s)
BEHIND_S = 0.25  # wall seconds behind schedule after which pacing restarts instead of catching up
PILOT_CALL_S = 5.0  # wall seconds a call of the pilot's enable service may take
OUTCOMES_KEPT = 10_000  # ~/outcomes lists the latest this many episodes (about 100 bytes each); counts cover all
MARKER_PERIOD_S = 0.5  # simulated seconds between ~/markers updates (the path grows)


class SimNode(Node):
    """The simulator as a ROS 2 vehicle: camera, IMU, odometry and /clock out, cmd_vel in, episodes judged.

    A thin shell: the physics, scenes and task are ``liquid_pilot.sim``; this node paces them (real time
    or faster), publishes their sensors and outcomes, and enables the pilot at each episode start.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("sim_node", **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sim: Simulator | None = None  # a node refusing its parameters is destroyed without them
        self.params = p = declare_parameters(self, PARAMETERS)
        scenario = load_scenario(p["scenario"])
        if p["overrides"]:
            origin = "sim_node parameter 'overrides'"
            scenario = scenario.with_overrides(parse_assignments(p["overrides"], origin, "section.field=value"),
                                               origin)
        self.sim = Simulator(scenario)
        self.expert = ExpertPolicy() if p["autopilot"] == "expert" else None
        self._frame_ns = round(1e9 / scenario.sim.camera_hz)
        # The latest cmd_vel and the simulated time of its arrival (None: none this episode), and the
        # simulated time of the latest /clock: written by the subscription, read by the simulation
        # thread, under the lock.
        self._lock = threading.Lock()
        self._command = np.array(ZERO)
        self._command_ns: int | None = None
        self._clock_ns = 0
        self._hovering = False  # flying zero because the last command is older than command_timeout
        self._episode = -1
        self._offset_ns = round(EPISODE_GAP_S * 1e9)  # simulated time of the current episode's start
        self._anchor = (0.0, 0, 0.0)  # wall time, simulated time and factor that pacing counts from
        self._requests: queue.Queue[Future] = queue.Queue()  # ~/reset calls, answered with the next episode
        self._outcomes: list[dict] = []  # the latest OUTCOMES_KEPT finished episodes
        self._ended = self._successes = 0
        self._pilot_warned = False

        # Reliable, so recorders and viewers with default QoS match too; the pilot subscribes
        # best effort. The status is latched (transient local) for late joiners.
        sensors = QoSProfile(depth=10)
        self._clock_pub = self.create_publisher(Clock, "/clock", QoSProfile(depth=10))
        self._image_pub = self.create_publisher(Image, "camera/image_raw", sensors)
        self._info_pub = self.create_publisher(CameraInfo, "camera/camera_info", sensors)
        self._imu_pub = self.create_publisher(Imu, "imu/data", sensors)
        self._odom_pub = self.create_publisher(Odometry, "odom", sensors)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._status_pub = self.create_publisher(String, "~/status", latched)
        self._outcomes_pub = self.create_publisher(String, "~/outcomes", latched)
        self._markers_pub = self.create_publisher(MarkerArray, "~/markers", latched)
        self._path: list[np.ndarray] = []  # the drone's positions this episode, for ~/markers
        self._markers_due = 0
        self._camera_rate = RateMeter(clock=lambda: self._clock_ns)  # simulated time: the scenario's rate
        self._status: dict = {}
        self.qos = QosProblems(self)
        command_type = TwistStamped if p["command_type"] == "twist_stamped" else Twist
        self._pilot = None  # the pilot's enable service client
        if self.expert is not None:
            self._cmd_pub = self.create_publisher(command_type, "cmd_vel", QoSProfile(depth=10))
        else:
            commands = QoSProfile(depth=10)
            self.create_subscription(command_type, "cmd_vel", self._on_command, commands,
                                     callback_group=MutuallyExclusiveCallbackGroup(),
                                     event_callbacks=self.qos.callbacks(self.resolve_topic_name("cmd_vel"), commands))
            if p["pilot_enable_service"]:
                # Its own callback group: the simulation thread waits for the answer while ~/reset may be running.
                self._pilot = self.create_client(SetBool, p["pilot_enable_service"],
                                                 callback_group=MutuallyExclusiveCallbackGroup())
        published = {pub.topic_name: pub for pub in self.publishers}
        self._waits = {}
        for topic in p["wait_for_subscribers"]:
            name = self.resolve_topic_name(topic)
            if name not in published:
                raise SettingsError(f"sim_node: parameter 'wait_for_subscribers': {topic!r} is not a topic this node "
                                    f"publishes; it publishes: {', '.join(sorted(published))}")
            self._waits[name] = published[name]
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.diagnostics = Reporter(self, "simulator", f"sim {scenario.name}", lambda: sim_report(
            self._status, self._ended, self._successes, self._camera_rate.rate(), float(scenario.sim.camera_hz),
            self._hovering, self.qos.lines()))
        self.context.on_shutdown(self._stop.set)  # stop publishing before the context goes away
        self._thread = threading.Thread(target=self._loop, name="sim_node", daemon=True)
        self._thread.start()

    def destroy_node(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.sim is not None:
            self.sim.close()
        super().destroy_node()

    def _on_command(self, msg: Twist | TwistStamped) -> None:
        twist = msg.twist if isinstance(msg, TwistStamped) else msg
        command = np.array([twist.linear.x, twist.linear.y, twist.linear.z, twist.angular.z])
        with self._lock:
            self._command, self._command_ns = command, self._clock_ns

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        answer: Future = Future()
        self._requests.put(answer)
        try:
            episode = answer.result(timeout=10.0)
        except FutureTimeout:
            response.success, response.message = False, "the simulator did not start a new episode within 10 s"
        else:
            response.success, response.message = True, f"episode {episode}, seed {self.params['seed'] + episode}"
        return response

    # The simulation thread.
    def _loop(self) -> None:
        try:
            self._wait_for_consumers()
            self._start_episode()
            while not self._stop.is_set():
                if not self._requests.empty():
                    # Answer first: with a single-threaded executor the waiting service call holds the thread
                    # that must deliver the pilot's answers below.
                    while not self._requests.empty():
                        self._requests.get().set_result(self._episode + 1)
                    if not self.sim.done:
                        self._publish_status("aborted")
                        self._end_episode()
                    self._start_episode()
                elif not self.sim.done:
                    self._fly_one_frame()
                elif self.params["auto_reset"]:
                    self._start_episode()
                else:
                    self._stop.wait(0.05)  # idle until ~/reset
        except Exception as exc:  # keep the node up to report it; the simulator is stopped
            if self.context.ok():  # not a publish racing the shutdown
                self.get_logger().error(f"simulation stopped: {type(exc).__name__}: {exc}")

    def _wait_for_consumers(self) -> None:
        """Wait, at most wait_timeout, until the listed topics have subscribers and the pilot's service is there."""
        def missing() -> list[str]:
            out = [name for name, pub in self._waits.items() if not pub.get_subscription_count()]
            if self._pilot is not None and not self._pilot.service_is_ready():
                out.append(f"the service {self._pilot.srv_name}")
            return out

        deadline = time.monotonic() + self.params["wait_timeout"]
        while missing() and not self._stop.is_set():
            if time.monotonic() > deadline:
                self.get_logger().warning(f"starting the first episode after wait_timeout="
                                          f"{self.params['wait_timeout']} s without a subscriber on "
                                          f"{', '.join(missing())}")
                return
            self._stop.wait(0.01)

    def _start_episode(self) -> None:
        self._episode += 1
        obs = self.sim.reset(self._seed())
        with self._lock:
            self._command, self._command_ns = np.array(ZERO), None
        if self.expert is not None:
            self.expert.reset()
        self._pace_from(self._offset_ns)
        self.get_logger().info(f"episode {self._episode}: {self.sim.scenario.name}, seed {self._seed()}")
        self._publish_status(None)
        self._publish_frame(obs, self._offset_ns, enable_pilot=True)

    def _enable_pilot(self, enabled: bool) -> None:
        """Call the pilot's enable service and wait (bounded) for its answer; nothing without the service."""
        if self._pilot is None or self._stop.is_set():
            return
        if not self._pilot.service_is_ready():
            self._warn_pilot(f"the pilot's enable service {self._pilot.srv_name} is not available")
            return
        future = self._pilot.call_async(SetBool.Request(data=enabled))
        deadline = time.monotonic() + PILOT_CALL_S
        while not future.done():
            if self._stop.is_set():
                return
            if time.monotonic() > deadline:
                self._warn_pilot(f"the pilot's enable service {self._pilot.srv_name} did not answer within "
                                 f"{PILOT_CALL_S} s")
                return
            self._stop.wait(0.001)

    def _warn_pilot(self, message: str) -> None:
        if not self._pilot_warned:  # once: every episode boundary would repeat it
            self._pilot_warned = True
            self.get_logger().warning(f"{message}: flying on without enabling and disabling the pilot")

    def _fly_one_frame(self) -> None:
        # Wait for the next frame's time first, so the step flies the newest command.
        self._wait_until(self._now_ns() + self._frame_ns)
        obs = self.sim.step(self._command if self.expert is not None else self._command_to_fly())
        now = self._now_ns()
        if self.sim.done:
            self._publish_markers(now, end=True)
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
        return np.array(ZERO) if stale else command

    def _end_episode(self) -> None:
        self._enable_pilot(False)  # before the clock jumps over the gap: no sensor timeout for the pilot
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
        self._status = status
        self._status_pub.publish(String(data=json.dumps(status)))
        if reason is not None:
            self.get_logger().info(f"episode {self._episode} ended: {reason} after {self.sim.time:.2f} s")
            self._publish_outcome(status)

    def _publish_outcome(self, status: dict) -> None:
        self._ended += 1
        self._successes += status["success"]
        self._outcomes.append(status)
        del self._outcomes[:-OUTCOMES_KEPT]
        outcomes = {"episodes": self._ended, "successes": self._successes, "outcomes": self._outcomes}
        self._outcomes_pub.publish(String(data=json.dumps(outcomes)))

    def _publish_markers(self, sim_ns: int, start: bool = False, end: bool = False) -> None:
        """Publish the world and the path flown so far on ~/markers (episode start, end, every MARKER_PERIOD_S)."""
        if start:
            self._path, self._markers_due = [], sim_ns
        self._path.append(self.sim.state.position.copy())
        if sim_ns >= self._markers_due or end:
            self._markers_due = sim_ns + round(MARKER_PERIOD_S * 1e9)
            self._markers_pub.publish(scene_markers(self.sim, self._path, time_msg(sim_ns)))

    def _publish_frame(self, obs: Observation, sim_ns: int, enable_pilot: bool = False) -> None:
        stamp = time_msg(sim_ns)
        self._publish_clock(sim_ns)
        self._camera_rate.add(sim_ns)
        self._publish_markers(sim_ns, enable_pilot)
        self._imu_pub.publish(self._imu(obs.imu, stamp))
        self._odom_pub.publish(self._odom(stamp))
        if enable_pilot:
            # Between the IMU sample and the camera frame, answered before the frame goes out: the pilot's
            # first frame of the episode finds its clock and IMU already at the episode's start.
            self._enable_pilot(True)
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
        return imu_message(values[:3], values[3:], stamp, "base_link", None, inject.gyro_noise ** 2,
                           inject.accel_noise ** 2)

    def _odom(self, stamp: TimeMsg) -> Odometry:
        truth = self.sim.truth()
        # REP-105: twist in the child frame.
        return odometry_message(truth.position, quaternion(truth.rotation), truth.rotation.T @ truth.velocity,
                                truth.rates, stamp)


def main(args: list[str] | None = None) -> int:
    return run([SimNode], args)


if __name__ == "__main__":
    raise SystemExit(main())
