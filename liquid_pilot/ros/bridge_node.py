"""The bridge node: the pilot's ``cmd_vel`` (body FLU) to a flight controller, under one supervisor.

A thin ROS shell around ``liquid_pilot.bridge`` (plain Python): the supervisor decides, a backend speaks
the stack's protocol, and a keep-alive thread (``bridge.runner``) ticks them at the stack's rate whatever
the pilot does. Backends (``backend``):

- ``mavlink``: PX4 (offboard) or ArduPilot Copter (guided), ``flavour``, through pymavlink on ``address``
  (``udpin:0.0.0.0:14540``, ``udpout:HOST:PORT``, ``tcp:HOST:PORT``, ``serial:/dev/ttyACM0:921600``);
- ``mavros``: ``<mavros_namespace>/setpoint_velocity/cmd_vel`` (TwistStamped; ENU world rotated by the heading
  from ``local_position/pose``, or body with ``mavros_frame: body``); arming and modes are the operator's
  (``mavros_msgs`` has no wheel);
- ``crazyflie``: cflib on ``uri`` (hover setpoints; vz integrated into a height).

Topics: ``cmd_vel`` (TwistStamped or Twist, reliable) in; ``~/status`` (std_msgs/String, JSON, latched:
every transition) and ``/diagnostics`` (link, mode, armed, take-over, geofence margin, battery, setpoint
rate: ``liquid_pilot.ros.diagnostics.bridge_report``) out; and the flight controller's telemetry (mavlink and
crazyflie backends; MAVROS publishes its own): ``imu/data`` (sensor_msgs/Imu, REP-145: ``base_link`` FLU, the
accelerometer with gravity, the attitude as orientation), ``odom`` (nav_msgs/Odometry, REP-105: ``odom`` ->
``base_link``, position ENU from the autopilot's local origin, twist in the body frame FLU) and ``battery``
(sensor_msgs/BatteryState), each stamped with the time of measurement on this computer's clock
(``bridge.telemetry``), best effort (sensor data) but the battery (reliable, latched). Services
(std_srvs/Trigger): ``~/hold`` (hover, pilot disabled), ``~/resume``, ``~/land``, ``~/estop`` (motors off
where the stack allows). The pilot is enabled and disabled through its ``~/enable``
(``pilot_enable_service``). Ctrl-C or SIGTERM: hover, then land (``shutdown_action``), waiting up to
``shutdown_timeout``. The bridge runs on the steady clock, never simulated time: the keep-alive is real.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, fields
from typing import Any

from geometry_msgs.msg import PoseStamped, Twist, TwistStamped
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import BatteryState, Imu
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from liquid_pilot.bridge.conversions import Vector
from liquid_pilot.bridge.runner import Runner
from liquid_pilot.bridge.supervisor import STREAMING, Backend, Supervisor, SupervisorConfig
from liquid_pilot.bridge.telemetry import BatterySample, ImuSample, OdometrySample, Sample
from liquid_pilot.ros.convert import battery_message, imu_message, odometry_message, time_msg
from liquid_pilot.ros.diagnostics import ERROR, QosProblems, Reporter, bridge_report
from liquid_pilot.ros.params import declare_parameters, params_from
from liquid_pilot.ros.spin import run
from liquid_pilot.settings import Range, check_fields, setting

BACKENDS = ("mavlink", "mavros", "crazyflie")


@dataclass(frozen=True)
class BridgeNodeSettings:
    """bridge_node's own settings, each documented and bounded once: its ROS parameters are made of them.

    The supervisor's settings are ``SupervisorConfig``'s.
    """

    backend: str = setting("mavlink", "mavlink (PX4, ArduPilot), mavros (its topics) or crazyflie (cflib)", BACKENDS)
    flavour: str = setting("px4", "mavlink: px4 (offboard, MAV_FRAME_BODY_NED) or ardupilot (Copter guided, "
                                  "MAV_FRAME_BODY_OFFSET_NED)", ("px4", "ardupilot"))
    address: str = setting("udpin:0.0.0.0:14540", "mavlink: udpin:HOST:PORT (listen; PX4 SITL's offboard port is "
                                                  "14540), udpout:HOST:PORT, tcp:HOST:PORT or serial:DEVICE[:BAUD]")
    baud: int = setting(57600, "mavlink: serial baud rate when the address gives none", Range(1200, 12_000_000))
    target_system: int = setting(1, "mavlink: the vehicle's system id (0: the first autopilot of the flavour heard)",
                                 Range(0, 255))
    target_component: int = setting(1, "mavlink: the autopilot's component id", Range(1, 255))
    source_system: int = setting(255, "mavlink: this bridge's system id", Range(1, 255))
    source_component: int = setting(191, "mavlink: this bridge's component id (191: onboard computer)",
                                    Range(1, 255))
    imu_rate: float = setting(200.0, "mavlink: Hz of HIGHRES_IMU (or SCALED_IMU) asked of the autopilot for imu/data; "
                                     "lower it on a slow radio link (57600 baud carries about 60 Hz); 0: none",
                              Range(0.0, 1000.0))
    odom_rate: float = setting(30.0, "mavlink: Hz of LOCAL_POSITION_NED asked of the autopilot for odom (at least "
                                     "20)", Range(0.0, 200.0))
    connect_timeout: float = setting(0.0, "s a link is tried before giving up (mavlink tcp: every second; crazyflie: "
                                          "backing off to every 10 s); 0: for ever", Range(0.0, 86400.0))
    signing_key_file: str = setting("", "mavlink: MAVLink 2 signing key, a file of 32 bytes or 64 hex digits; empty: "
                                        "none")
    signing_passphrase: str = setting("", "mavlink: MAVLink 2 signing key as a passphrase (hashed as MAVProxy's "
                                          "`signing setup` does); empty: none")
    require_signing: bool = setting(False, "mavlink: refuse unsigned messages from the vehicle (needs a key)")
    telemetry: bool = setting(True, "publish the flight controller's imu/data, odom and battery (mavlink, crazyflie)")
    base_frame: str = setting("base_link", "frame_id of imu/data and child_frame_id of odom (the body, FLU)")
    odom_frame: str = setting("odom", "frame_id of odom (the autopilot's local frame, ENU)")
    mavros_namespace: str = setting("mavros", "mavros: the namespace of its topics")
    mavros_frame: str = setting("world", "mavros: world (ENU, MAVROS's default) or body (its mav_frame set to "
                                         "BODY_NED)", ("world", "body"))
    uri: str = setting("radio://0/80/2M/E7E7E7E7E7", "crazyflie: the cflib link URI")
    rate: float = setting(0.0, "Hz of the keep-alive setpoint stream; 0: the stack's own (PX4, MAVROS, Crazyflie 20, "
                               "ArduPilot 10)", Range(0.0, 500.0))
    command_type: str = setting("twist_stamped", "cmd_vel message: geometry_msgs/TwistStamped or Twist",
                                ("twist_stamped", "twist"))
    pilot_enable_service: str = setting("pilot_node/enable", "the pilot's std_srvs/SetBool enable service (called "
                                                             "when the bridge starts and stops flying it); empty: "
                                                             "none")
    shutdown_timeout: float = setting(30.0, "s that Ctrl-C waits for the shutdown (hover, then land) before the "
                                            "stream stops", Range(0.0, 600.0))

    def __post_init__(self) -> None:
        check_fields(self, "bridge_node parameter ")


PARAMETERS = (*params_from(BridgeNodeSettings), *params_from(SupervisorConfig))


class BridgeNode(Node):
    """Carries the pilot's cmd_vel to a flight stack (PX4, ArduPilot, MAVROS, Crazyflie) under a supervisor.

    The supervisor (``liquid_pilot.bridge.supervisor``) decides take-over, hold, stale, fence and landing; the
    backend speaks the stack's protocol; the node publishes the vehicle's telemetry and status.
    """

    def __init__(self, crazyflie: Any = None, **kwargs) -> None:
        """``crazyflie``: a cflib Crazyflie to use instead of opening ``uri`` (tests pass one on a fake link)."""
        super().__init__("bridge_node", **kwargs)
        self.params = p = declare_parameters(self, PARAMETERS)
        self.qos = QosProblems(self)
        self.battery: BatterySample | None = None  # the latest battery reading (mavlink, crazyflie)
        config = SupervisorConfig(**{f.name: p[f.name] for f in fields(SupervisorConfig)})
        self._status_pub = self.create_publisher(String, "~/status", QoSProfile(
            depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self._pilot_client = self.create_client(SetBool, p["pilot_enable_service"]) \
            if p["pilot_enable_service"] else None
        self._pilot_warned = False
        self.backend = self._make_backend(crazyflie)
        if p["telemetry"] and p["backend"] != "mavros":
            self._telemetry_publishers()
        rate = p["rate"] or self.backend.rate
        self.supervisor = Supervisor(self.backend, config, time.monotonic_ns, self._log, self._on_pilot,
                                     self._on_status)
        self.get_logger().info(f"bridge: {self.backend.name} at {rate:g} Hz")
        command_cls = TwistStamped if p["command_type"] == "twist_stamped" else Twist
        commands = QoSProfile(depth=10)
        self.create_subscription(command_cls, "cmd_vel", self._on_command, commands,
                                 callback_group=MutuallyExclusiveCallbackGroup(),
                                 event_callbacks=self.qos.callbacks(self.resolve_topic_name("cmd_vel"), commands))
        services = MutuallyExclusiveCallbackGroup()
        for name, request in (("hold", self.supervisor.hold), ("resume", self.supervisor.resume),
                              ("land", self.supervisor.land), ("estop", self.supervisor.estop)):
            self.create_service(Trigger, f"~/{name}", self._service(request), callback_group=services)
        self._on_status(self.supervisor.status())
        self.runner = Runner(self.supervisor, rate, self._log)
        self.runner.start()
        self._setpoint_samples: list[tuple[float, int]] = []  # (monotonic s, setpoints sent): the measured rate
        link = {"mavlink": p["address"], "crazyflie": p["uri"], "mavros": p["mavros_namespace"]}[p["backend"]]
        self.diagnostics = Reporter(self, "bridge", f"{self.backend.name} {link}", self._diagnostics)

    def _diagnostics(self):
        """Return the bridge's /diagnostics report, from the supervisor's status and the vehicle's telemetry."""
        status = self.supervisor.status()
        now = time.monotonic()
        samples = self._setpoint_samples
        samples.append((now, status["setpoints"]))
        while len(samples) > 2 and now - samples[0][0] > 1.0:
            samples.pop(0)
        span = samples[-1][0] - samples[0][0]
        rate = (samples[-1][1] - samples[0][1]) / span if span > 0.5 else None
        c = self.supervisor.config
        fence = {"radius": c.fence_radius, "height": c.fence_height, "speed": c.fence_speed}
        expected = 1.0 / self.runner.period if status["state"] in STREAMING else 0.0
        report = bridge_report(status, self.battery, fence, rate, expected)
        for line in self.qos.lines():
            report.level, report.message = ERROR, f"{report.message}; {line}"
        return report

    def _make_backend(self, crazyflie: Any) -> Backend:
        p = self.params
        if p["backend"] == "mavlink":
            from liquid_pilot.bridge.mavlink import MavlinkBackend, signing_key
            return MavlinkBackend(p["address"], p["flavour"], p["target_system"], p["target_component"],
                                  p["source_system"], p["source_component"], p["baud"], self._log, p["imu_rate"],
                                  p["odom_rate"], p["connect_timeout"],
                                  signing_key(p["signing_key_file"], p["signing_passphrase"]), p["require_signing"])
        if p["backend"] == "crazyflie":
            from liquid_pilot.bridge.crazyflie import CrazyflieBackend
            return CrazyflieBackend(p["uri"], crazyflie, time.monotonic_ns, self._log,
                                    connect_timeout=p["connect_timeout"])
        from liquid_pilot.bridge.mavros import MavrosBackend
        ns = p["mavros_namespace"].rstrip("/")
        publisher = self.create_publisher(TwistStamped, f"{ns}/setpoint_velocity/cmd_vel", QoSProfile(depth=10))
        setpoint = TwistStamped()

        def publish(linear: Vector, yaw_rate: float, frame_id: str) -> None:
            setpoint.header.stamp = self.get_clock().now().to_msg()
            setpoint.header.frame_id = frame_id
            setpoint.twist.linear.x, setpoint.twist.linear.y, setpoint.twist.linear.z = linear
            setpoint.twist.angular.z = yaw_rate
            publisher.publish(setpoint)

        backend = MavrosBackend(publish, p["mavros_frame"], time.monotonic_ns, self._log)
        # MAVROS's telemetry: best effort matches its publishers whatever their reliability.
        sensors = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        group = MutuallyExclusiveCallbackGroup()
        self.create_subscription(PoseStamped, f"{ns}/local_position/pose", lambda m: backend.on_pose(
            (m.pose.position.x, m.pose.position.y, m.pose.position.z),
            (m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z, m.pose.orientation.w)),
            sensors, callback_group=group)
        self.create_subscription(TwistStamped, f"{ns}/local_position/velocity_local", lambda m: backend.on_velocity(
            (m.twist.linear.x, m.twist.linear.y, m.twist.linear.z)), sensors, callback_group=group)
        return backend

    # Telemetry out.
    def _telemetry_publishers(self) -> None:
        sensors = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        self._imu_pub = self.create_publisher(Imu, "imu/data", sensors)
        self._odom_pub = self.create_publisher(Odometry, "odom", sensors)
        self._battery_pub = self.create_publisher(BatteryState, "battery", QoSProfile(
            depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.samples = {"imu": 0, "odom": 0, "battery": 0}
        self.backend.on_sample = self._on_sample

    def _stamp(self, monotonic_ns: int) -> Any:
        """Return this node's clock at the moment of a sample stamped on the monotonic clock."""
        return time_msg(max(0, self.get_clock().now().nanoseconds - (time.monotonic_ns() - monotonic_ns)))

    def _on_sample(self, sample: Sample) -> None:
        """Publish one telemetry sample (called on the keep-alive thread as the link delivers it)."""
        p, stamp = self.params, self._stamp(sample.stamp)
        if isinstance(sample, ImuSample):
            self._imu_pub.publish(imu_message(sample.angular_velocity, sample.linear_acceleration, stamp,
                                              p["base_frame"], sample.orientation))
            self.samples["imu"] += 1
        elif isinstance(sample, OdometrySample):
            self._odom_pub.publish(odometry_message(sample.position, sample.orientation, sample.linear_velocity,
                                                    sample.angular_velocity, stamp, p["odom_frame"], p["base_frame"]))
            self.samples["odom"] += 1
        elif isinstance(sample, BatterySample):
            self.battery = sample  # the latest, for /diagnostics
            self._battery_pub.publish(battery_message(sample.voltage, sample.current, sample.remaining, stamp,
                                                      p["base_frame"]))
            self.samples["battery"] += 1

    # Callbacks.
    def _on_command(self, msg: Twist | TwistStamped) -> None:
        t = msg.twist if isinstance(msg, TwistStamped) else msg
        self.supervisor.command((t.linear.x, t.linear.y, t.linear.z, t.angular.z))

    def _service(self, request: Any) -> Any:
        def serve(_: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
            response.success, response.message = request()
            return response
        return serve

    def _on_pilot(self, enabled: bool) -> None:
        """Enable or disable the pilot through its service, without waiting (called under the supervisor's lock)."""
        client = self._pilot_client
        if client is None:
            return
        if not client.service_is_ready():
            if not self._pilot_warned:
                self._pilot_warned = True
                self.get_logger().warning(f"the pilot's {client.srv_name} is not available: the pilot was not "
                                          f"{'enabled' if enabled else 'disabled'} (the stream carries whatever "
                                          "cmd_vel says, and hovers when it is stale)")
            return
        future = client.call_async(SetBool.Request(data=enabled))
        future.add_done_callback(lambda f: None if f.exception() is None and f.result().success else
                                 self.get_logger().warning(f"the pilot refused ~/enable {enabled}"))

    def _on_status(self, status: dict) -> None:
        self._status_pub.publish(String(data=json.dumps(status)))

    def _log(self, level: str, message: str) -> None:
        # One call site per severity: rclpy keys a logging call's settings by its line.
        if level == "error":
            self.get_logger().error(message)
        elif level == "warn":
            self.get_logger().warning(message)
        else:
            self.get_logger().info(message)

    def destroy_node(self) -> None:
        """Hover, then land (or stop): the shutdown runs to its end or ``shutdown_timeout``, then the link closes."""
        runner = getattr(self, "runner", None)
        if runner is not None:
            self.supervisor.shutdown()
            deadline = time.monotonic() + self.params["shutdown_timeout"]
            # Telemetry that comes over ROS (MAVROS) needs spinning while the supervisor lands: the
            # process's executor is already shut down, so spin this node on its own.
            executor = None
            try:
                if self.context.ok():
                    executor = SingleThreadedExecutor(context=self.context)
                    executor.add_node(self)
            except Exception:  # no spinning possible: the backends with their own links do not need it
                executor = None
            while not self.supervisor.done and time.monotonic() < deadline:
                try:
                    if executor is not None:
                        executor.spin_once(timeout_sec=0.05)
                        continue
                except Exception:  # the landing goes on on the keep-alive thread whatever this says
                    # rclpy's wait set can race another executor still letting go of this node (its QoS event
                    # handlers: "wait set index too big"); spinning is only for telemetry over ROS (MAVROS).
                    pass
                threading.Event().wait(0.05)
            runner.stop(0.0)  # done, or out of time (it says so)
            if executor is not None:
                executor.shutdown()
            self.backend.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run([BridgeNode], args)


if __name__ == "__main__":
    raise SystemExit(main())
