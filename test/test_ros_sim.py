"""sim_node over real DDS: closed loop with pilot_node, the expert, its messages, commands and reset."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import TwistStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import Log
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, Imu
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger
from test_ros_support import Ros, call, isolate, wait_for

from liquid_pilot.nn.checkpoint import save_pilot
from liquid_pilot.nn.policy import Pilot
from liquid_pilot.ros.convert import stamp_ns
from liquid_pilot.ros.pilot_node import PilotNode
from liquid_pilot.ros.sim_node import EPISODE_GAP_S, SimNode
from liquid_pilot.sim.tasks import SUCCESS

LATCHED = QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture()
def ros():
    with Ros() as r:  # one per test: /clock is global, and each test has its own simulator
        yield r


def sim_node(namespace: str, **params: object) -> SimNode:
    return SimNode(namespace=namespace, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


class Listener:
    """Collects what a sim_node publishes."""

    def __init__(self, ros: Ros, namespace: str, *topics: tuple[type, str]):
        self.node = ros.node("listener", namespace)
        self.got: dict[str, list] = {}
        for msg_type, topic in topics:
            self.got[topic] = []
            self.node.create_subscription(msg_type, topic, self.got[topic].append,
                                          LATCHED if topic.endswith("status") else QoSProfile(depth=1000))

    def statuses(self) -> list[dict]:
        return [json.loads(m.data) for m in self.got["sim_node/status"]]

    def ended(self) -> list[dict]:
        return [s for s in self.statuses() if s["reason"] is not None]


def test_closed_loop_with_the_pilot_reports_the_episode_end(ros: Ros, tmp_path: Path) -> None:
    save_pilot(Pilot(seed=1), tmp_path / "pilot.pt")
    ns = "loop"
    listener = Listener(ros, ns, (String, "sim_node/status"), (TwistStamped, "cmd_vel"))
    pilot = ros.add(PilotNode(namespace=ns, parameter_overrides=[
        Parameter("model", value=str(tmp_path / "pilot.pt")), Parameter("use_sim_time", value=True),
        Parameter("start_enabled", value=True)]))
    ros.add(sim_node(ns, seed=5, real_time_factor=4.0, auto_reset=False, overrides=["task.timeout_s=4"]))
    assert wait_for(lambda: listener.ended(), timeout=30)
    start, end = listener.statuses()[0], listener.ended()[0]
    assert start == {"scenario": "forest_summer", "seed": 5, "episode": 0, "time": 0.0, "reason": None,
                     "success": False}
    assert end["seed"] == 5 and 0 < end["time"] <= 4.0
    assert end["success"] == (end["reason"] in SUCCESS)  # an untrained pilot fails, but it flew:
    flown = [m for m in listener.got["cmd_vel"] if any((m.twist.linear.x, m.twist.linear.y, m.twist.angular.z))]
    assert len(flown) >= 5
    stamps = [stamp_ns(m.header.stamp) / 1e9 for m in flown]  # simulated time, from the pilot's sim clock
    assert EPISODE_GAP_S <= min(stamps) and max(stamps) <= EPISODE_GAP_S + end["time"]
    assert pilot.get_clock().ros_time_is_active


def test_the_expert_reaches_the_target_and_the_sensor_messages_follow_the_conventions(ros: Ros) -> None:
    ns = "expert"
    listener = Listener(ros, ns, (String, "sim_node/status"), (Image, "camera/image_raw"),
                        (CameraInfo, "camera/camera_info"), (Imu, "imu/data"), (Odometry, "odom"),
                        (TwistStamped, "cmd_vel"), (Clock, "/clock"))
    sim = ros.add(sim_node(ns, seed=0, real_time_factor=0.0, auto_reset=False, autopilot="expert"))
    assert wait_for(lambda: listener.ended(), timeout=30)
    end = listener.ended()[0]
    assert end["reason"] == "reached" and end["success"] and end["seed"] == 0
    got = listener.got
    assert wait_for(lambda: len(got["camera/image_raw"]) > 10)
    # Each frame's camera info carries its header. Paired by stamp: unthrottled, either may be dropped.
    infos = {stamp_ns(m.header.stamp): m for m in got["camera/camera_info"]}
    image = next(m for m in reversed(got["camera/image_raw"]) if stamp_ns(m.header.stamp) in infos)
    info = infos[stamp_ns(image.header.stamp)]
    assert (image.width, image.height, image.encoding, image.step) == (64, 64, "rgb8", 192)
    assert len(image.data) == 64 * 64 * 3
    assert image.header == info.header and image.header.frame_id == "camera_optical_frame"
    focal = 32 / np.tan(np.radians(sim.sim.scenario.sim.fov_deg) / 2)
    np.testing.assert_allclose(info.k, [focal, 0, 31.5, 0, focal, 31.5, 0, 0, 1])
    frames = [stamp_ns(m.header.stamp) for m in got["camera/image_raw"]]
    commanded = {stamp_ns(m.header.stamp) for m in got["cmd_vel"]}  # the expert's command per frame, by stamp
    # Unthrottled (real_time_factor 0) on a loaded machine, KEEP_LAST queues may drop a sample or two.
    assert sum(f in commanded for f in frames[5:]) >= 0.95 * len(frames[5:])
    imu = got["imu/data"][-1]
    assert imu.orientation_covariance[0] == -1 and imu.header.frame_id == "base_link"
    assert 7 < imu.linear_acceleration.z < 12  # the accelerometer feels gravity (specific force)
    odom = got["odom"][-1]
    assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
    q = odom.pose.pose.orientation
    assert abs(q.x ** 2 + q.y ** 2 + q.z ** 2 + q.w ** 2 - 1) < 1e-9
    # Simulated time runs on, then jumps by the gap between episodes, without sensor data.
    assert wait_for(lambda: abs(stamp_ns(got["/clock"][-1].clock) - (2 * EPISODE_GAP_S + end["time"]) * 1e9) < 1e6)
    clock = [stamp_ns(m.clock) for m in got["/clock"]]
    assert clock == sorted(clock)


def test_commands_are_held_zero_at_start_and_reset_starts_the_next_seed(ros: Ros) -> None:
    ns = "held"
    listener = Listener(ros, ns, (String, "sim_node/status"), (Odometry, "odom"))
    commands = listener.node.create_publisher(TwistStamped, "cmd_vel", 10)
    ros.add(sim_node(ns, seed=3, real_time_factor=4.0, auto_reset=False, command_timeout=5.0))
    odom = listener.got["odom"]
    assert wait_for(lambda: len(odom) >= 16 and commands.get_subscription_count())  # 1 s: no command yet
    assert max(abs(m.twist.twist.linear.x) for m in odom) < 0.1  # hovering on a zero command
    forward = TwistStamped()
    forward.twist.linear.x = 0.5
    commands.publish(forward)  # once: the simulator holds it (for command_timeout)
    since = len(odom)
    assert wait_for(lambda: len(odom) > since + 40)  # 2.5 s simulated
    assert all(abs(m.twist.twist.linear.x - 0.5) < 0.1 for m in odom[-8:])
    response = call(listener.node, Trigger, "sim_node/reset", Trigger.Request())
    assert response.success and "seed 4" in response.message
    assert wait_for(lambda: [s["reason"] for s in listener.statuses()] == [None, "aborted", None])
    assert listener.statuses()[-1]["seed"] == 4 and listener.statuses()[-1]["episode"] == 1


def test_the_drone_flies_a_steady_command_stream_and_hovers_when_it_stops(ros: Ros) -> None:
    ns = "timeout"
    timeout = 1.0  # s of simulated time (0.25 s of wall time here): margin for a loaded machine
    listener = Listener(ros, ns, (Odometry, "odom"))
    commands = listener.node.create_publisher(TwistStamped, "cmd_vel", 10)
    forward = TwistStamped()
    forward.twist.linear.x = 0.5
    lock, streaming, answered = threading.Lock(), [False], []  # answered: stamps of the frames answered

    def pilot(msg: Odometry) -> None:  # like a pilot: one command per frame, while streaming
        with lock:
            if streaming[0]:
                commands.publish(forward)
                answered.append(stamp_ns(msg.header.stamp))

    listener.node.create_subscription(Odometry, "odom", pilot, QoSProfile(depth=10))
    sim = ros.add(sim_node(ns, seed=3, real_time_factor=4.0, auto_reset=False, command_timeout=timeout))
    flown: list[tuple[float, float]] = []  # (simulated time at the step's start, forward command) per frame
    step = sim.sim.step

    def spy(command: np.ndarray) -> object:  # runs in the simulation thread
        flown.append((sim._now_ns() / 1e9, float(command[0])))
        return step(command)

    sim.sim.step = spy
    odom = listener.got["odom"]
    assert wait_for(lambda: odom and commands.get_subscription_count())

    def flown_until(t: float) -> bool:
        return bool(flown) and flown[-1][0] >= t

    with lock:
        streaming[0] = True
    assert wait_for(lambda: answered) and wait_for(lambda: flown_until(answered[0] / 1e9 + 2.5 * timeout))
    start = answered[0] / 1e9
    steady = [c for t, c in flown if t > start + 0.5 * timeout]  # long after the first command arrived
    assert len(steady) > 20 and all(c == 0.5 for c in steady)  # the stream keeps it flying past the timeout
    assert all(abs(m.twist.twist.linear.x - 0.5) < 0.1 for m in odom[-8:])

    with lock:  # the pilot stops answering: its last command answered the frame stamped `stop`
        streaming[0] = False
        stop = answered[-1] / 1e9
    assert wait_for(lambda: flown_until(stop + timeout + 3.0))
    after = [(t, c) for t, c in flown if t > stop]
    assert all(c == 0.5 for t, c in after if t <= stop + timeout)  # held until the timeout
    hover = [c for t, c in after if t > stop + timeout + 0.5]  # its arrival may lag the frame it answered
    assert len(hover) > 30 and not any(hover)
    assert all(abs(m.twist.twist.linear.x) < 0.1 for m in odom[-8:])  # the drone slowed down to a hover

    resumed = flown[-1][0]
    with lock:
        streaming[0] = True
    assert wait_for(lambda: any(c == 0.5 for t, c in flown if t > resumed))  # flying again


def test_a_bad_scenario_is_refused_with_a_clear_message(ros: Ros) -> None:
    with pytest.raises(ValueError, match="unknown scenario 'mars'"):
        sim_node("bad", scenario="mars")
    with pytest.raises(ValueError, match="sim_node parameter 'overrides' expects section.field=value, got 'inject"):
        sim_node("bad", overrides=["inject.image_noise"])
    with pytest.raises(ValueError, match="sim_node parameter 'overrides': unknown setting 'inject.fog'"):
        sim_node("bad", overrides=["inject.fog=1"])
    with pytest.raises(ValueError, match="sim_node parameter 'overrides': inject.blur must be a number, got 'x'"):
        sim_node("bad", overrides=["inject.blur=x"])
    with pytest.raises(ValueError, match="'wait_for_subscribers': 'cmd_vel' is not a topic this node publishes"):
        sim_node("bad", wait_for_subscribers=["cmd_vel"])


def late_outcomes(ros: Ros, topic: str) -> dict:
    """What a subscriber joining now, keeping only the newest message, gets from an outcomes topic."""
    late = ros.node("late")
    got: list[String] = []
    late.create_subscription(String, topic, got.append,
                             QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    assert wait_for(lambda: got), f"nothing latched on {topic}"
    ros.remove(late)
    return json.loads(got[-1].data)


def test_every_episode_outcome_reaches_a_late_subscriber_that_keeps_one_message(ros: Ros) -> None:
    ns = "outcomes"
    listener = Listener(ros, ns, (String, "sim_node/status"))
    ros.add(sim_node(ns, seed=7, real_time_factor=0.0, autopilot="expert", overrides=["task.hold_s=0.2"]))
    assert wait_for(lambda: len(listener.ended()) >= 3, timeout=60)
    seen = listener.ended()[:3]
    got = late_outcomes(ros, f"/{ns}/sim_node/outcomes")
    outcomes = got["outcomes"]
    # Episodes end 10 ms before the next starts, so ~/status (depth 1) loses ends; the list holds every one.
    assert [o["episode"] for o in outcomes] == list(range(len(outcomes))) and len(outcomes) >= 3
    assert outcomes[:3] == seen
    assert got["episodes"] == len(outcomes) and got["successes"] == sum(o["success"] for o in outcomes)
    assert all(o["seed"] == 7 + o["episode"] and o["reason"] for o in outcomes)


def test_the_pilot_is_disabled_over_the_gap_between_episodes_and_waited_for(ros: Ros) -> None:
    ns = "enable"
    listener = Listener(ros, ns, (String, "sim_node/status"), (Image, "camera/image_raw"))
    sim = ros.add(sim_node(ns, seed=3, real_time_factor=0.0, pilot_enable_service="pilot_node/enable",
                           wait_for_subscribers=["camera/image_raw"], overrides=["task.timeout_s=0.5"]))
    published: list[int] = []  # stamps of the camera frames, in the simulation thread
    image_publish = sim._image_pub.publish
    sim._image_pub.publish = lambda msg: (published.append(stamp_ns(msg.header.stamp)), image_publish(msg))[1]
    # The camera has its subscriber: only the missing enable service holds the first episode back.
    assert wait_for(lambda: sim._image_pub.get_subscription_count())
    assert sim._episode == -1 and not published
    calls: list[tuple[bool, int, int, bool]] = []  # (enabled, last /clock published, episode, frame published)

    def enable(request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        start = sim._offset_ns
        calls.append((request.data, sim._clock_ns, sim._episode, start in published))
        response.success = True
        return response

    pilot = ros.node("pilot_node", ns)
    pilot.create_service(SetBool, "~/enable", enable)
    # An episode's end reaches the listener (a topic) and the pilot's disable (a service call) in either order.
    assert wait_for(lambda: len(listener.ended()) >= 3 and len(calls) >= 6, timeout=30)
    assert [c[0] for c in calls[:6]] == [True, False] * 3  # enabled at each start, disabled at each end
    gap, ended = round(EPISODE_GAP_S * 1e9), listener.ended()
    assert calls[0][1] == gap  # the first episode starts at the gap
    for k in range(3):
        (_, clock_on, episode, frame_before_on), (_, clock_off, _, _) = calls[2 * k], calls[2 * k + 1]
        # Enabled at the episode's start, after its clock and IMU and before its first camera frame ...
        assert episode == k and not frame_before_on
        # ... and disabled at its end, before the clock jumps over the gap to the next episode.
        assert abs(clock_off - clock_on - ended[k]["time"] * 1e9) < 1e6
        if k < 2:
            assert calls[2 * k + 2][1] == clock_off + gap


def test_a_60_s_simulator_launch_logs_no_warning(ros: Ros) -> None:
    # `liquid-pilot ros sim` as shipped (config/pilot.yaml, config/sim.yaml), 60 s of simulated time, fast:
    # every episode boundary is a quiet, logged event, so a real warning would stand out.
    listener = ros.node("quiet")
    logs: list[Log] = []
    clock = [0]
    listener.create_subscription(Log, "/rosout", logs.append, QoSProfile(depth=1000))
    listener.create_subscription(Clock, "/clock", lambda m: clock.__setitem__(0, stamp_ns(m.clock)),
                                 QoSProfile(depth=10))
    factor = 2.0  # four times as fast nearly fills a core here: a starved pilot rightly warns
    process = subprocess.Popen([sys.executable, "-m", "liquid_pilot.cli", "ros", "sim", "--set",
                                f"real_time_factor={factor}"], env=isolate(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        end = round((EPISODE_GAP_S + 60.0) * 1e9)
        assert wait_for(lambda: clock[0] >= end or process.poll() is not None, timeout=30 + 60 / factor * 3)
        assert process.poll() is None, process.communicate()[0]
        got = late_outcomes(ros, "/sim_node/outcomes")
        process.send_signal(signal.SIGINT)  # Ctrl-C
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, output
    assert "Traceback" not in output
    warnings = [line for line in output.splitlines() if line.startswith(("[WARN]", "[ERROR]"))]
    warnings += [f"/rosout: [{log.name}] {log.msg}" for log in logs if log.level >= Log.WARN]
    assert not warnings, "\n".join(warnings)
    ended = [line for line in output.splitlines() if "[sim_node]: episode" in line and " ended: " in line]
    outcomes = got["outcomes"]
    assert len(outcomes) >= 5 and [o["episode"] for o in outcomes] == list(range(len(outcomes)))
    assert len(ended) >= len(outcomes)  # every outcome the log reported, and none invented
    for outcome, line in zip(outcomes, ended):
        assert f"episode {outcome['episode']} ended: {outcome['reason']} " in line


def test_markers_show_the_chair_the_obstacles_and_the_flown_path_and_diagnostics_report(ros: Ros,
                                                                                        tmp_path: Path) -> None:
    """~/markers (latched): the target chair's six boxes where the simulator has it, the obstacles, and a path
    that ends where odom says the drone is; sim_node on /diagnostics; the array draws (matplotlib)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from visualization_msgs.msg import Marker, MarkerArray

    from liquid_pilot.ros.markers import draw

    ns = "markers"
    listener = Listener(ros, ns, (String, "sim_node/status"), (Odometry, "odom"))
    diagnostics: list = []
    listener.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnostics.extend(m.status), 100)
    sim = ros.add(sim_node(ns, seed=0, real_time_factor=0.0, auto_reset=False, autopilot="expert"))
    assert wait_for(lambda: listener.ended(), timeout=30)
    late = ros.node("viewer", ns)  # RViz opened after the flight: the latched array is there
    arrays: list[MarkerArray] = []
    late.create_subscription(MarkerArray, "sim_node/markers", arrays.append,
                             QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    assert wait_for(lambda: arrays)
    markers = arrays[-1].markers
    assert markers[0].action == Marker.DELETEALL
    by_ns: dict[str, list] = {}
    for m in markers[1:]:
        by_ns.setdefault(m.ns, []).append(m)
        assert m.header.frame_id == "odom"
    chair = by_ns["chairs"]
    assert len(chair) == 6 and all(m.type == Marker.CUBE for m in chair)
    target = sim.sim.monitor.target_xy
    assert np.mean([m.pose.position.x for m in chair]) == pytest.approx(target[0], abs=0.3)
    assert np.mean([m.pose.position.y for m in chair]) == pytest.approx(target[1], abs=0.3)
    assert len(by_ns["obstacles"]) > 0 and all(m.type == Marker.CYLINDER for m in by_ns["obstacles"])
    path = by_ns["path"][0]
    assert path.type == Marker.LINE_STRIP and len(path.points) > 10
    end = listener.got["odom"][-1].pose.pose.position
    assert wait_for(lambda: listener.got["odom"])
    assert abs(path.points[-1].x - end.x) < 0.05 and abs(path.points[-1].y - end.y) < 0.05  # to the end
    assert wait_for(lambda: any(s.name == f"/{ns}/sim_node: simulator" for s in diagnostics))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, ax = plt.subplots()
    draw(arrays[-1], ax)
    figure.savefig(tmp_path / "markers.png")
    assert len(ax.patches) >= 6 + len(by_ns["obstacles"]) and len(ax.lines) == 1
