"""bridge_node over real rclpy topics and services: MAVROS's topics, a MAVLink autopilot on loopback UDP, and
the pilot's enable service.

Every wait polls a condition with a deadline (``wait_for``); nothing sleeps a fixed time.
"""
from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import threading
import time

import pytest
from geometry_msgs.msg import PoseStamped, TwistStamped
from nav_msgs.msg import Odometry
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import BatteryState, Imu
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger
from test_ros_support import Ros, call, isolate, wait_for

from liquid_pilot.bridge.mavlink import MAV_CMD_DO_SET_MODE
from liquid_pilot.ros.bridge_node import PARAMETERS, BridgeNode
from liquid_pilot.harness.mavlink_vehicle import Kinematic, MavlinkVehicle


class Pilot:
    """The pilot's ~/enable, recording what the bridge asked."""

    def __init__(self, ros: Ros, namespace: str):
        self.node = ros.node("fake_pilot", namespace)
        self.calls: list[bool] = []
        self.node.create_service(SetBool, "pilot_node/enable", self._enable)

    def _enable(self, request, response):
        self.calls.append(request.data)
        response.success = True
        return response


class Statuses:
    def __init__(self, ros: Ros, namespace: str):
        self.node = ros.node("status_listener", namespace)
        self.seen: list[dict] = []
        self.node.create_subscription(String, "bridge_node/status", lambda m: self.seen.append(json.loads(m.data)),
                                      QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL))

    def state(self) -> str | None:
        return self.seen[-1]["state"] if self.seen else None


def bridge(ros: Ros, namespace: str, **params) -> BridgeNode:
    overrides = [Parameter(k, value=v) for k, v in params.items()]
    return ros.add(BridgeNode(namespace=namespace, parameter_overrides=overrides))


def test_mavros_world_frame_setpoints_services_status_and_the_pilots_enable(ros: Ros) -> None:
    ns = "mavros_case"
    pilot, statuses = Pilot(ros, ns), Statuses(ros, ns)
    fcu = ros.node("fake_mavros", ns)
    setpoints: list[TwistStamped] = []
    fcu.create_subscription(TwistStamped, "mavros/setpoint_velocity/cmd_vel", setpoints.append, QoSProfile(depth=50))
    pose_pub = fcu.create_publisher(PoseStamped, "mavros/local_position/pose",
                                    QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    yaw = math.pi / 2  # nose to the north (ENU y)
    pose = PoseStamped()
    pose.pose.position.z = 1.2
    pose.pose.orientation.z, pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
    fcu.create_timer(0.02, lambda: pose_pub.publish(pose))
    node = bridge(ros, ns, backend="mavros", prime_s=0.1, telemetry_timeout=1.0, link_timeout=1.0,
                  shutdown_timeout=0.5)  # it never touches down here: the shutdown gives up after 0.5 s
    cmd = ros.node("the_pilot", ns).create_publisher(TwistStamped, "cmd_vel", QoSProfile(depth=10))
    assert wait_for(lambda: statuses.state() == "flying"), statuses.seen[-1:]
    assert wait_for(lambda: pilot.calls == [True])
    forward = TwistStamped()
    forward.twist.linear.x, forward.twist.linear.y, forward.twist.angular.z = 0.5, 0.2, 0.3
    # Body forward 0.5, left 0.2 with the nose north: ENU east -0.2, north 0.5; the yaw rate keeps its sign.
    assert wait_for(lambda: (cmd.publish(forward), setpoints and setpoints[-1].twist.linear.y > 0.4)[1])
    last = setpoints[-1]
    assert last.header.frame_id == "map"
    assert (last.twist.linear.x, last.twist.linear.y, last.twist.angular.z) == pytest.approx((-0.2, 0.5, 0.3))
    # No arming or modes through MAVROS: estop cannot stop the motors, it holds instead, and says so.
    response = call(fcu, Trigger, f"/{ns}/bridge_node/estop", Trigger.Request())
    assert not response.success and "RC kill switch" in response.message
    assert wait_for(lambda: statuses.state() == "hold") and wait_for(lambda: pilot.calls == [True, False])
    assert wait_for(lambda: setpoints[-1].twist.linear.y == 0.0)
    assert call(fcu, Trigger, f"/{ns}/bridge_node/resume", Trigger.Request()).success
    assert wait_for(lambda: pilot.calls == [True, False, True])
    assert call(fcu, Trigger, f"/{ns}/bridge_node/land", Trigger.Request()).success
    assert wait_for(lambda: setpoints[-1].twist.linear.z == pytest.approx(-0.4))  # descending by setpoints
    # A late listener still gets the latest status (latched).
    late = Statuses(ros, ns)
    assert wait_for(lambda: late.state() == "landing")
    ros.remove(node)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mavlink_flight_then_ctrl_c_hovers_and_lands(ros: Ros) -> None:
    ns = "mavlink_case"
    pilot, statuses = Pilot(ros, ns), Statuses(ros, ns)
    port = _free_udp_port()
    node = bridge(ros, ns, backend="mavlink", flavour="px4", address=f"udpin:127.0.0.1:{port}", prime_s=0.2,
                  shutdown_hover_s=0.3, shutdown_timeout=10.0)
    vehicle = MavlinkVehicle(Kinematic((0.0, 0.0, 1.0), yaw=0.5), f"udpout:127.0.0.1:{port}", "px4", armed=True,
                             origin=(2.0, -1.0, 0.5))
    listener = ros.node("telemetry_listener", ns)
    heard: dict[str, list] = {"imu": [], "odom": [], "battery": []}
    sensors = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
    listener.create_subscription(Imu, "imu/data", heard["imu"].append, sensors)
    listener.create_subscription(Odometry, "odom", heard["odom"].append, sensors)
    listener.create_subscription(BatteryState, "battery", heard["battery"].append, QoSProfile(
        depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    stop = threading.Event()  # the vehicle's loop at 50 Hz, flying its body
    thread = threading.Thread(target=vehicle.run, args=(stop, 0.02, True), daemon=True)
    thread.start()
    try:
        cmd = ros.node("the_pilot", ns).create_publisher(TwistStamped, "cmd_vel", QoSProfile(depth=10))
        assert wait_for(lambda: statuses.state() == "flying"), statuses.seen[-1:]
        assert wait_for(lambda: pilot.calls == [True])
        # The flight controller's telemetry, in ROS's frames (REP-145, REP-105) and this computer's clock.
        assert wait_for(lambda: heard["imu"] and heard["odom"] and heard["battery"])
        imu, odom, battery = heard["imu"][-1], heard["odom"][-1], heard["battery"][-1]
        assert imu.header.frame_id == "base_link" and imu.linear_acceleration.z == pytest.approx(9.80665, abs=0.05)
        q = imu.orientation
        assert 2 * math.atan2(q.z, q.w) == pytest.approx(0.5, abs=1e-4)  # level, heading 0.5 rad (ENU)
        assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
        # ENU from the autopilot's local origin (2, -1, 0.5): the vehicle at (0, 0, 1) reads (-2, 1, 0.5).
        position = odom.pose.pose.position
        assert (position.x, position.y, position.z) == pytest.approx((-2.0, 1.0, 0.5), abs=1e-3)
        assert battery.voltage == pytest.approx(12.6) and battery.percentage == pytest.approx(0.8)
        assert battery.current == pytest.approx(-5.2)  # discharging: negative in ROS
        now = listener.get_clock().now().nanoseconds
        assert 0 <= now - (imu.header.stamp.sec * 10**9 + imu.header.stamp.nanosec) < 2e9
        forward = TwistStamped()
        forward.twist.linear.y, forward.twist.linear.z = 0.3, 0.1
        assert wait_for(lambda: (cmd.publish(forward), vehicle.setpoints[-1].velocity[1] < -0.29)[1])
        assert vehicle.setpoints[-1].velocity == pytest.approx((0.0, -0.3, -0.1), abs=1e-6)  # FRD
        # Ctrl-C: destroy_node runs the shutdown: hover, then AUTO.LAND, accepted by the vehicle.
        ros.remove(node)  # off the executor, then destroy_node
        assert node.supervisor.state == "landing" and node.supervisor.done
        land = [c for c in vehicle.commands if c[1] == MAV_CMD_DO_SET_MODE][-1]
        assert land[2][:3] == (1.0, 4.0, 6.0) and land[3] == 0
        hover = [sp for sp in vehicle.setpoints if sp.time > land[0] - 0.3e9 and sp.time < land[0]]
        assert hover and all(sp.holds for sp in hover)  # a position hold, not a drifting zero velocity
        assert wait_for(lambda: statuses.state() == "landing") and pilot.calls == [True, False]
    finally:
        stop.set()
        thread.join(2)
        vehicle.conn.close()


@pytest.mark.parametrize(("params", "message"), [
    ({"backend": "mavlink", "address": "bogus"}, "mavlink address 'bogus': expected udpin:HOST:PORT"),
    ({"backend": "crazyflie", "uri": "E7E7"}, "crazyflie uri 'E7E7': expected one of radio://"),
    ({"backend": "mavros", "auto_takeoff": True}, "auto_takeoff needs arming, which the mavros backend cannot do"),
    ({"backend": "mavros", "takeoff_height": 9.0}, "takeoff_height 9.0 m must be below fence_height"),
])
def test_configuration_mistakes_are_one_clear_error(ros: Ros, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        BridgeNode(namespace="mistakes", parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def test_the_executable_refuses_a_bad_address_in_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "liquid_pilot.ros.bridge_node", "--ros-args", "-p",
                             "address:=udpin:nowhere"], capture_output=True, text=True, timeout=60, env=isolate())
    assert result.returncode == 2, result.stderr
    assert "error: mavlink address 'udpin:nowhere': expected udpin:HOST:PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_supervisor_setting_is_a_parameter() -> None:
    names = {p.name for p in PARAMETERS}
    from dataclasses import fields

    from liquid_pilot.bridge.supervisor import SupervisorConfig
    assert {f.name for f in fields(SupervisorConfig)} <= names


def test_diagnostics_within_two_seconds_without_a_vehicle_then_the_vehicle_and_its_stream(ros: Ros) -> None:
    """/diagnostics: WARN while no vehicle is heard (within 2 s of start); then OK while flying, with the vehicle's
    mode, armed, the fence margin and the measured setpoint rate."""
    from diagnostic_msgs.msg import DiagnosticArray

    ns = "diagnostics_case"
    Pilot(ros, ns)
    heard: list[tuple[float, object]] = []
    ros.node("diagnostics", ns).create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: heard.extend((time.monotonic(), s) for s in m.status), 100)
    port = _free_udp_port()
    start = time.monotonic()
    node = bridge(ros, ns, backend="mavlink", flavour="px4", address=f"udpin:127.0.0.1:{port}", prime_s=0.2,
                  shutdown_hover_s=0.1, shutdown_timeout=5.0)
    name = f"/{ns}/bridge_node: bridge"

    def latest():
        found = [s for _, s in heard if s.name == name]
        return found[-1] if found else None

    assert wait_for(lambda: latest() is not None, timeout=5.0)
    assert next(t for t, s in heard if s.name == name) - start <= 2.0
    first = latest()
    values = {kv.key: kv.value for kv in first.values}
    assert first.level == b"\x01" and first.message.startswith("wait_link") and values["link"] == "false"
    assert first.hardware_id == f"mavlink (px4) udpin:127.0.0.1:{port}" and values["battery remaining"] == "none"
    vehicle = MavlinkVehicle(Kinematic((0.0, 0.0, 1.0)), f"udpout:127.0.0.1:{port}", "px4", armed=True)
    stop = threading.Event()
    thread = threading.Thread(target=vehicle.run, args=(stop, 0.02, True), daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: latest() is not None and latest().message.startswith("flying")
                        and {kv.key: kv.value for kv in latest().values}["setpoint rate (Hz)"] != "none",
                        timeout=15.0)
        assert wait_for(lambda: float({kv.key: kv.value for kv in latest().values}["setpoint rate (Hz)"]) > 10)
        status = latest()
        values = {kv.key: kv.value for kv in status.values}
        assert status.level == b"\x00", status.message
        assert values["link"] == "true" and values["armed"] == "true" and values["vehicle mode"] == "OFFBOARD"
        assert values["setpoint rate expected (Hz)"] == "20" and float(values["setpoint rate (Hz)"]) <= 25
        assert float(values["fence margin radius (m)"]) == pytest.approx(10.0, abs=0.05)
        assert float(values["fence margin height (m)"]) == pytest.approx(4.0, abs=0.1)
    finally:
        ros.remove(node)
        stop.set()
        thread.join(2)
        vehicle.conn.close()
