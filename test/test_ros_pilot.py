"""pilot_node over real DDS: commands per frame, the watchdog, bad input, hysteresis, services, limits, any camera."""
from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Twist, TwistStamped
from rcl_interfaces.msg import Log
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage, Image, Imu
from std_msgs.msg import Float32MultiArray
from std_srvs.srv import SetBool, Trigger
from test_ros_support import Ros, call, wait_for

from liquid_pilot.nn.checkpoint import save_pilot
from liquid_pilot.nn.policy import Pilot
from liquid_pilot.flight.codec import stamp_ns
from liquid_pilot.flight.image import fit
from liquid_pilot.models import load_runtime
from liquid_pilot.ros.convert import time_msg
from liquid_pilot.ros.pilot_node import PARAMETERS, PilotNode

CAMERA_TIMEOUT = 0.2
LONG_TIMEOUT = 1.0  # s: the largest the pilot allows
CONTROL_RATE = 50.0
IMU = np.array([0.01, -0.02, 0.03, 0.1, -0.1, 9.81], np.float32)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "pilot.pt"
    save_pilot(Pilot(seed=3), path)
    return path


class Harness:
    """The drone around a pilot_node: a camera, an IMU, a command listener and the services."""

    def __init__(self, ros: Ros, model: Path, namespace: str, **params: object):
        overrides = [Parameter("model", value=str(model)), Parameter("control_rate", value=CONTROL_RATE),
                     Parameter("camera_timeout", value=CAMERA_TIMEOUT)]
        self.ros = ros
        self.pilot = ros.add(PilotNode(namespace=namespace, parameter_overrides=overrides + [
            Parameter(k, value=v) for k, v in params.items()]))
        self.namespace = namespace
        self.node = ros.node("harness", namespace)
        self.images = self.node.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        self.imu = self.node.create_publisher(Imu, "imu/data", qos_profile_sensor_data)
        self.commands: list[tuple[float, TwistStamped]] = []
        self.by_stamp: dict[int, list[float]] = {}  # first command per stamp: polled often, so a cheap lookup
        self.neurons: list[Float32MultiArray] = []
        self.logs: list[Log] = []
        self.node.create_subscription(TwistStamped, "cmd_vel", self._on_command, QoSProfile(depth=100))
        self.node.create_subscription(Float32MultiArray, "pilot_node/neurons", self.neurons.append, 100)
        self.node.create_subscription(Log, "/rosout", self.logs.append,
                                      QoSProfile(depth=1000, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        assert wait_for(lambda: self.images.get_subscription_count() and self.imu.get_subscription_count()
                        and len(self.commands) > 0)

    def close(self) -> None:
        """Take the pilot and the harness off the module's executor: every pilot left there publishes at 50 Hz to a
        listener the one executor thread serves, which starves the next tests' pilots on a loaded machine."""
        for node in (self.node, self.pilot):
            if node in self.ros.nodes:
                self.ros.remove(node)

    def _on_command(self, msg: TwistStamped) -> None:
        self.commands.append((time.monotonic(), msg))
        self.by_stamp.setdefault(stamp_ns(msg.header.stamp), command(msg))

    def enable(self, on: bool = True) -> None:
        assert call(self.node, SetBool, "pilot_node/enable", SetBool.Request(data=on)).success

    def now(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def send_imu(self, values: np.ndarray = IMU) -> None:
        """Publish an IMU sample and wait until the pilot has taken it (the IMU and camera topics are separate
        DDS readers, so a sample sent before a frame may otherwise be handled after it)."""
        msg = Imu()
        w, a = msg.angular_velocity, msg.linear_acceleration
        w.x, w.y, w.z, a.x, a.y, a.z = (float(v) for v in values)
        for _ in range(3):  # best effort: on a busy machine a sample may be lost
            before = self.pilot.imu_samples
            msg.header.stamp = time_msg(self.now())
            self.imu.publish(msg)
            if wait_for(lambda: self.pilot.imu_samples > before, timeout=1.0):
                return
        raise AssertionError("the pilot took none of 3 IMU samples")

    def send_frame(self, image: np.ndarray, stamp: int | None = None, encoding: str = "rgb8",
                   data: bytes | None = None, imu: bool = True, flown: bool | None = True,
                   cdr: bytes | None = None) -> int:
        """Publish a frame (after an IMU sample), wait until the pilot has handled it; return the frame's stamp.

        ``flown``: the answer must carry the frame's stamp (the network's command); otherwise the command
        after the frame must be zero (refused, or still recovering); None: either. ``cdr``: bytes to publish
        in place of the frame.
        """
        channels = image.shape[2] if image.ndim == 3 else 1
        msg = Image(height=image.shape[0], width=image.shape[1], encoding=encoding, step=image.shape[1] * channels)
        msg.data = image.tobytes() if data is None else data
        fixed = stamp is not None
        for _ in range(3):  # the camera topic is best effort: on a busy machine a frame may be lost
            if imu:
                self.send_imu()
            stamp = stamp if fixed else self.now()
            msg.header.stamp = time_msg(stamp)
            handled = self.pilot.frames_handled
            self.images.publish(msg if cdr is None else cdr)
            if not wait_for(lambda: self.pilot.frames_handled > handled, timeout=2.0):
                continue
            after = self.now()  # zeros carry the pilot's clock when published; flown commands their frame's stamp
            if flown is None:
                return stamp
            if flown and wait_for(lambda: self.command_for(stamp) is not None, timeout=2.0):
                return stamp
            if not flown:
                # Commands published before the frame was handled may still be on their way: wait for a zero
                # published after it. Had the frame been flown, the stream would repeat its command instead.
                assert wait_for(lambda: any(stamp_ns(m.header.stamp) >= after and command(m) == [0.0] * 4
                                            for _, m in self.commands[-10:]), timeout=2.0), (
                    f"the frame stamped {stamp} was flown: {self.last()}")
                return stamp
        recent = sum(t > time.monotonic() - 1.0 for t, _ in self.commands[-100:])
        raise AssertionError(f"no answer to the frame stamped {stamp} ({(self.now() - stamp) / 1e9:+.3f} s ago); "
                             f"the pilot's faults: {sorted(self.pilot.gate.faults.active)}, commands heard in the last "
                             f"second: {recent}, its last logs: {[log.msg for log in self.logs[-5:]]}")

    def command_for(self, stamp: int) -> list[float] | None:
        return self.by_stamp.get(stamp)

    def last(self) -> list[float]:
        return command(self.commands[-1][1])

    def warnings(self, kind: str, since: int = 0) -> list[str]:
        """This pilot's warnings about ``kind`` among the logs from index ``since`` on."""
        return [log.msg for log in self.logs[since:] if log.name.endswith(f"{self.namespace}.pilot_node")
                and log.level == Log.WARN and log.msg.endswith(f"[{kind}]")]

    def logged(self, text: str, since: int = 0) -> bool:
        return any(text in log.msg for log in self.logs[since:] if log.name.endswith(f"{self.namespace}.pilot_node"))


def command(msg: TwistStamped) -> list[float]:
    t = msg.twist
    return [t.linear.x, t.linear.y, t.linear.z, t.angular.z]


def images(n: int, size: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def expected(model: Path, frames: list[np.ndarray], dts: list[float]) -> list[np.ndarray]:
    """What the network says for these frames from a fresh state, computed without ROS."""
    runtime = load_runtime(model)  # the node's default runtime
    return [runtime.step(f, IMU, dt) for f, dt in zip(frames, dts)]


@contextmanager
def timeouts(harness: Harness, seconds: float) -> Iterator[None]:
    """Camera and IMU timeouts of ``seconds`` (also the largest accepted image age) for a while."""
    names = ("camera_timeout", "imu_timeout")
    before = [harness.pilot.get_parameter(name) for name in names]
    harness.pilot.set_parameters([Parameter(name, value=seconds) for name in names])
    try:
        yield
    finally:
        harness.pilot.set_parameters(before)


@pytest.fixture(autouse=True)
def _no_node_outlives_its_test(ros: Ros, drone: Harness):
    """Take every node a test added off the module's executor when it ends (the shared drone stays).

    Each pilot left there runs a 50 Hz control thread, a step thread and its diagnostics in this process: a dozen
    of them, with the machine loaded, slowed discovery and delivery enough to fail later tests' set-up.
    """
    before = list(ros.nodes)
    yield
    for node in [n for n in ros.nodes if n not in before]:
        ros.remove(node)
    assert ros.background.thread.is_alive(), ros.background.errors


@pytest.fixture()
def harnesses(ros: Ros):
    """Make harnesses for one test; they are closed when it ends, passed or failed."""
    made: list[Harness] = []

    def make(*args: object, **params: object) -> Harness:
        made.append(Harness(ros, *args, **params))
        return made[-1]
    yield make
    for harness in made:
        harness.close()


@pytest.fixture(scope="module")
def drone(ros: Ros, model: Path) -> Harness:
    """The pilot of most tests; recovery counts good frames alone (fault_window 0), as those tests count them."""
    return Harness(ros, model, "p1", fault_window=0.0)


@pytest.fixture()
def flying(drone: Harness) -> Harness:
    """The enabled pilot, with the longest timeouts: frames then fly even if this process stalls for
    most of a second between stamping and the pilot's callback, as it does at times on the loaded CI
    machine (0.6 s seen). The tests of the timeouts themselves set them back."""
    with timeouts(drone, LONG_TIMEOUT):  # long timeouts first: a slow start is never stale
        drone.enable(True)
        yield drone
    drone.enable(False)


def test_starts_disabled_and_publishes_zero(drone: Harness) -> None:
    assert not drone.pilot.params["start_enabled"]
    drone.send_frame(images(1)[0], flown=False)
    assert wait_for(lambda: len(drone.commands) >= 5)
    assert all(command(m) == [0.0] * 4 for _, m in drone.commands)


def test_each_frame_gives_the_networks_command_with_the_frames_stamp(flying: Harness, model: Path) -> None:
    frames = images(3)
    # Exact stamps, starting half a timeout ahead: acceptable for 1.5 s, however slow this process is.
    t0 = flying.send_frame(frames[0], stamp=flying.now() + int(LONG_TIMEOUT / 2 * 1e9))
    t1 = flying.send_frame(frames[1][:, :, ::-1].copy(), stamp=t0 + 62_500_000, encoding="bgr8")  # same RGB
    t2 = flying.send_frame(frames[2], stamp=t1 + 50_000_000)
    want = expected(model, frames, [0.0, 0.0625, 0.05])
    for stamp, command_ in zip((t0, t1, t2), want):
        np.testing.assert_allclose(flying.command_for(stamp), command_, rtol=1e-6, atol=1e-7)
        assert np.abs(command_).max() > 1e-4  # an untrained pilot still commands something
    assert wait_for(lambda: len(flying.neurons) >= 3)
    assert len(flying.neurons[-1].data) == flying.pilot.core.runtime.state_size == 19
    assert all(math.isfinite(v) for v in flying.neurons[-1].data)


def test_commands_are_clamped_to_the_limits(flying: Harness) -> None:
    flying.pilot.set_parameters([Parameter("max_speed_xy", value=0.01), Parameter("max_speed_z", value=0.001),
                                 Parameter("max_yaw_rate", value=0.001)])
    try:
        stamp = flying.send_frame(images(1)[0])
        vx, vy, vz, yaw_rate = flying.command_for(stamp)
        assert math.hypot(vx, vy) <= 0.01 + 1e-9 and abs(vz) <= 0.001 and abs(yaw_rate) <= 0.001
    finally:
        flying.pilot.set_parameters([Parameter("max_speed_xy", value=1.0), Parameter("max_speed_z", value=0.5),
                                     Parameter("max_yaw_rate", value=1.0)])
    assert not flying.pilot.set_parameters([Parameter("max_speed_z", value=-1.0)])[0].successful


def test_a_silent_camera_gives_zero_within_its_timeout_and_resets_the_network(flying: Harness, model: Path) -> None:
    frames = images(6)
    with timeouts(flying, CAMERA_TIMEOUT):
        for image in frames[:5]:  # about 30 Hz
            stamp = flying.send_frame(image)
            time.sleep(1 / 30)
        assert flying.command_for(stamp) != [0.0] * 4  # the last frame was flown
        assert wait_for(lambda: flying.last() == [0.0] * 4, timeout=2.0)
    # Timed on the pilot's clock (zero commands carry its time), not by when this process hears them;
    # the slack is for timer callbacks running late on a busy shared CPU (0.39 s late seen once in CI),
    # and still fails a watchdog that waits for a longer timeout than camera_timeout's.
    zero = next(m for _, m in flying.commands if stamp_ns(m.header.stamp) > stamp and command(m) == [0.0] * 4)
    assert (stamp_ns(zero.header.stamp) - stamp) / 1e9 <= CAMERA_TIMEOUT + 2 / CONTROL_RATE + 0.5
    assert wait_for(lambda: flying.warnings("camera_stale"))
    # The next frame starts a new flight; the pilot flies again after recover_frames good frames in a row,
    # with the command of a fresh network stepped on exactly those frames.
    assert flying.pilot.params["recover_frames"] == 3
    stamps = [flying.send_frame(frames[5], flown=False), flying.send_frame(frames[5], flown=False),
              flying.send_frame(frames[5])]
    dts = [0.0, (stamps[1] - stamps[0]) / 1e9, (stamps[2] - stamps[1]) / 1e9]
    np.testing.assert_allclose(flying.command_for(stamps[2]), expected(model, [frames[5]] * 3, dts)[2], rtol=1e-5,
                               atol=1e-7)


def bad_frames(harness: Harness, kind: str, previous: int) -> None:
    """Send three frames with one kind of fault; ``previous`` is the stamp of the last good frame."""
    good = images(1)[0]
    now = harness.now()
    for i in range(3):
        if kind == "encoding":
            harness.send_frame(good, encoding="yuv422", flown=False)
        elif kind == "size":
            harness.send_frame(good, data=good.tobytes()[:-7], flown=False)
        elif kind == "empty":
            harness.send_frame(good, data=b"", flown=False)
        elif kind == "decode":  # not a sensor_msgs/Image at all: a truncated serialization
            truncated = serialize_message(Image(height=64, width=64, data=good.tobytes()))[:40]
            harness.send_frame(good, cdr=truncated, flown=False)
        elif kind == "image_too_large":  # a header claiming 100k x 100k pixels: refused before anything is read
            huge = Image(height=100_000, width=100_000, encoding="rgb8", step=300_000, data=good.tobytes())
            huge.header.stamp = time_msg(harness.now())
            harness.send_frame(good, cdr=serialize_message(huge), flown=False)
        elif kind == "stamp_future":
            harness.send_frame(good, stamp=now + 100 * 10**9 + i, flown=False)
        elif kind == "stamp_backwards":
            harness.send_frame(good, stamp=previous - 1 - i, flown=False)
        elif kind == "imu_invalid":
            harness.send_imu(np.array([math.nan, 0, 0, 0, 0, 9.81]))
            harness.send_frame(good, imu=False, flown=False)
        elif kind == "imu_range":  # finite but absurd: 100 rad/s, a million m/s^2
            harness.send_imu(np.array([100.0, 0, 0, 0, 0, 1e6]))
            harness.send_frame(good, imu=False, flown=False)


def recover(harness: Harness) -> int:
    """Send good frames until the pilot flies again; check it takes exactly ``recover_frames``. Return the stamp."""
    needed = harness.pilot.params["recover_frames"]
    for _ in range(needed - 1):
        harness.send_frame(images(1)[0], flown=False)  # good, but still hovering
    return harness.send_frame(images(1)[0])


@pytest.mark.parametrize("kind", ["encoding", "size", "empty", "decode", "image_too_large", "stamp_future",
                                  "stamp_backwards", "imu_invalid", "imu_range"])
def test_malformed_input_hovers_logs_once_and_recovers(flying: Harness, kind: str) -> None:
    first = flying.send_frame(images(1)[0])
    assert flying.command_for(first) != [0.0] * 4
    since = len(flying.logs)
    bad_frames(flying, kind, first)
    assert flying.last() == [0.0] * 4
    stamp = recover(flying)  # good frames fly again after the bad ones, once enough of them came in a row
    assert flying.command_for(stamp) != [0.0] * 4
    fault = "stamp" if kind.startswith("stamp") else kind
    # The count covers every occurrence of the burst (for the IMU, the bad samples and the frames they stopped).
    assert wait_for(lambda: flying.logged(f"recovered from {fault} (3 times", since) or flying.logged(
        f"recovered from {fault} (6 times", since))
    assert len(flying.warnings(fault, since)) == 1, flying.warnings(fault, since)


def test_alternating_good_and_bad_frames_never_fly_and_log_once(flying: Harness) -> None:
    """Chatter: a camera that delivers every other frame broken must not switch the drone between zero and
    full speed, nor log a line per frame."""
    first = flying.send_frame(images(1)[0])
    assert flying.command_for(first) != [0.0] * 4
    since, heard = len(flying.logs), len(flying.commands)
    good = images(1)[0]
    for _ in range(8):
        flying.send_frame(good, encoding="yuv422", flown=False)
        flying.send_frame(good, flown=False)  # good, but one good frame is not enough to fly again
    flying.send_frame(good, encoding="yuv422", flown=False)
    # Repeats of the flying command published before the first bad frame was handled may come first.
    after = [command(m) for _, m in flying.commands[heard:]]
    assert all(c == [0.0] * 4 for c in after[after.index([0.0] * 4):])
    assert len(flying.warnings("encoding", since)) == 1
    assert not flying.logged("recovered from encoding", since)
    recover(flying)
    assert wait_for(lambda: flying.logged("recovered from encoding (9 times", since))


def test_a_frame_delivered_twice_is_dropped_not_a_fault(flying: Harness) -> None:
    stamp = flying.send_frame(images(1)[0])
    flown = flying.command_for(stamp)
    since, heard = len(flying.logs), len(flying.commands)
    flying.pilot.gate.duplicates = 0
    flying.send_imu()
    msg = Image(height=64, width=64, encoding="rgb8", step=192, data=images(1)[0].tobytes())
    msg.header.stamp = time_msg(stamp)
    flying.images.publish(msg)
    assert wait_for(lambda: flying.pilot.gate.duplicates >= 1)
    assert all(command(m) == flown for _, m in flying.commands[heard:])  # the watchdog repeats it; no zero
    assert not any(log.level == Log.WARN for log in flying.logs[since:])


def test_an_imu_stall_is_reported_as_such_not_as_a_silent_camera(flying: Harness) -> None:
    # A short IMU timeout, the camera's long (the fixture's): frames stay acceptable however late this
    # loaded process publishes them, and only the IMU can go stale.
    before = flying.pilot.get_parameter("imu_timeout")
    flying.pilot.set_parameters([Parameter("imu_timeout", value=CAMERA_TIMEOUT)])
    try:
        since = len(flying.logs)
        flying.send_frame(images(1)[0])
        deadline = time.monotonic() + 4 * CAMERA_TIMEOUT
        while time.monotonic() < deadline:  # frames keep coming, the IMU has stopped
            flying.send_frame(images(1)[0], imu=False, flown=None)
        assert wait_for(lambda: flying.warnings("imu_stale", since))
        assert not flying.warnings("camera_stale", since)
    finally:
        flying.pilot.set_parameters([before])


def test_a_slow_network_step_never_starves_the_command_stream(flying: Harness) -> None:
    """The control thread publishes at control_rate while the network takes half a second per frame."""
    runtime = flying.pilot.core.runtime
    step = runtime.step

    def slow(*args: object) -> np.ndarray:
        time.sleep(0.5)
        return step(*args)

    runtime.step = slow
    try:
        flying.send_imu()
        msg = Image(height=64, width=64, encoding="rgb8", step=192, data=images(1)[0].tobytes())
        msg.header.stamp = time_msg(flying.now())
        flying.images.publish(msg)
        assert wait_for(lambda: flying.pilot._frame is None)  # the step thread has taken it
        start, heard = time.monotonic(), len(flying.commands)
        assert wait_for(lambda: time.monotonic() - start > 0.4, timeout=1.0)
        rate = (len(flying.commands) - heard) / (time.monotonic() - start)
        assert rate > 0.5 * CONTROL_RATE, rate  # half the rate at least, on a loaded CI machine
    finally:
        runtime.step = step


def test_reset_service_restarts_the_network(flying: Harness, model: Path) -> None:
    frames = images(2)
    fresh = expected(model, frames[1:], [0.0])[0]
    # Stamps 62.5 ms apart, half a timeout ahead: however slowly this loaded process sends them, the gap
    # between the frames never exceeds camera_timeout (which would start a new flight by itself). Enabled
    # afresh just before: computing ``fresh`` above (exporting the checkpoint) takes about a second on a loaded
    # machine, after the fixture enabled the pilot, which then went stale before the first fixed-stamp frame.
    flying.pilot.set_enabled(True)
    t0 = flying.send_frame(frames[0], stamp=flying.now() + int(LONG_TIMEOUT / 2 * 1e9))
    carried_on = flying.command_for(flying.send_frame(frames[1], stamp=t0 + 62_500_000))
    assert np.abs(np.array(carried_on) - fresh).max() > 1e-6  # the state carries over between frames
    assert call(flying.node, Trigger, "pilot_node/reset", Trigger.Request()).success
    again = flying.send_frame(frames[1], stamp=t0 + 125_000_000)
    np.testing.assert_allclose(flying.command_for(again), fresh, rtol=1e-6)


def test_disable_service_publishes_zero(flying: Harness) -> None:
    assert flying.command_for(flying.send_frame(images(1)[0])) != [0.0] * 4
    flying.enable(False)
    # Watchdog repeats of the last command, published just before the service answered, may still
    # be on their way: count from the first zero.
    assert wait_for(lambda: flying.last() == [0.0] * 4)
    since = len(flying.commands)
    flying.send_frame(images(1)[0], flown=False)
    assert wait_for(lambda: len(flying.commands) >= since + 3)
    assert all(command(m) == [0.0] * 4 for _, m in flying.commands[since:])


def test_nan_output_gives_zero(ros: Ros, tmp_path: Path, harnesses) -> None:
    broken = Pilot()
    with torch.no_grad():
        for weights in broken.head.parameters():
            weights.fill_(math.nan)
    save_pilot(broken, tmp_path / "nan.pt")
    harness = harnesses(tmp_path / "nan.pt", "p2", start_enabled=True)
    harness.send_frame(images(1)[0], flown=False)
    assert harness.last() == [0.0] * 4
    assert wait_for(lambda: harness.warnings("output"))


def test_missing_model_is_refused_at_start_with_a_clear_message(ros: Ros, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nope.pt: no such file"):
        PilotNode(namespace="p3", parameter_overrides=[Parameter("model", value=str(tmp_path / "nope.pt"))])
    if not (Path(__file__).parents[1] / "models" / "cfc_ncp.pt").exists():
        with pytest.raises(FileNotFoundError, match="no trained pilot is shipped yet"):
            PilotNode(namespace="p3")


def test_compressed_images_in_and_plain_twists_out(ros: Ros, model: Path) -> None:
    pilot = ros.add(PilotNode(namespace="p4", parameter_overrides=[
        Parameter("model", value=str(model)), Parameter("image_transport", value="compressed"),
        Parameter("command_type", value="twist"), Parameter("start_enabled", value=True)]))
    node = ros.node("harness", "p4")
    camera = node.create_publisher(CompressedImage, "camera/image_raw/compressed", qos_profile_sensor_data)
    imu = node.create_publisher(Imu, "imu/data", qos_profile_sensor_data)
    twists: list[Twist] = []
    node.create_subscription(Twist, "cmd_vel", twists.append, 100)
    assert wait_for(lambda: camera.get_subscription_count() and imu.get_subscription_count() and twists)
    frame = images(1)[0]
    png = CompressedImage(format="png", data=cv2.imencode(".png", frame[:, :, ::-1])[1].tobytes())
    want = expected(model, [frame], [0.0])[0]
    sample = Imu()
    sample.angular_velocity.x, sample.angular_velocity.y, sample.angular_velocity.z = (float(v) for v in IMU[:3])
    sample.linear_acceleration.x, sample.linear_acceleration.y, sample.linear_acceleration.z = (
        float(v) for v in IMU[3:])

    def flown() -> bool:
        return any(np.allclose([t.linear.x, t.linear.y, t.linear.z, t.angular.z], want, rtol=1e-6) for t in twists)

    for _ in range(3):  # best effort: retry a lost frame
        pilot.set_enabled(True)  # a fresh flight: no stale fault from the time discovery took
        samples = pilot.imu_samples
        imu.publish(sample)
        if not wait_for(lambda: pilot.imu_samples > samples, timeout=1.0):
            continue
        png.header.stamp = time_msg(node.get_clock().now().nanoseconds)
        camera.publish(png)
        if wait_for(flown, timeout=2.0):
            break
    assert flown()
    assert pilot.params["command_type"] == "twist"


def test_frames_of_any_size_are_centre_cropped_and_resized(ros: Ros, model: Path, harnesses) -> None:
    """A 640x480 camera flies by default: the frame is cropped to the model's square and resized, as in training."""
    harness = harnesses(model, "p5")
    with timeouts(harness, LONG_TIMEOUT):  # long timeouts first: a slow start is never stale
        harness.enable(True)
        frame = np.random.default_rng(5).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        stamp = harness.send_frame(frame, stamp=harness.now() + int(LONG_TIMEOUT / 2 * 1e9))
        want = expected(model, [fit(frame, (64, 64))], [0.0])[0]
        np.testing.assert_allclose(harness.command_for(stamp), want, rtol=1e-6, atol=1e-7)
        assert wait_for(lambda: harness.logged("fitting 640x480 frames") or harness.logged("centre-cropped"))


def test_the_pilot_node_loads_neither_the_simulator_nor_pybullet() -> None:
    """A real drone's pilot must not load the simulator: importing the node (and the flight core) keeps both out."""
    code = ("import sys, liquid_pilot.ros.pilot_node; "
            "print(sorted(m for m in sys.modules if m == 'pybullet' or m.startswith(('liquid_pilot.sim', "
            "'liquid_pilot.data', 'liquid_pilot.train', 'liquid_pilot.eval'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


# Issue 27: /diagnostics, the fuzzer's findings, saliency.
class Diagnostics:
    """A /diagnostics listener: every status with the time it was heard."""

    def __init__(self, node) -> None:
        self.heard: list[tuple[float, DiagnosticStatus]] = []
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on, QoSProfile(depth=100))

    def _on(self, msg: DiagnosticArray) -> None:
        self.heard += [(time.monotonic(), status) for status in msg.status]

    def of(self, name: str) -> list[tuple[float, DiagnosticStatus]]:
        return [(t, s) for t, s in self.heard if s.name == name]

    def latest(self, name: str) -> DiagnosticStatus | None:
        found = self.of(name)
        return found[-1][1] if found else None


def level(status: DiagnosticStatus) -> int:
    return status.level[0] if isinstance(status.level, bytes) else int(status.level)


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_diagnostics_within_two_seconds_without_a_camera_then_errors_on_a_stale_one(ros: Ros, model: Path) -> None:
    listener = Diagnostics(ros.node("diagnostics", "d1"))
    pilot = ros.add(PilotNode(namespace="d1", parameter_overrides=[Parameter("model", value=str(model))]))
    started = time.monotonic()
    name = "/d1/pilot_node: pilot"
    assert wait_for(lambda: listener.of(name), timeout=5.0)
    assert listener.of(name)[0][0] - started <= 2.0, listener.of(name)[0][0] - started
    first = listener.of(name)[0][1]
    assert level(first) == 1 and first.message == "disabled (zero commands); no camera frame yet; no IMU sample yet"
    assert first.hardware_id == f"checkpoint {model}"
    info = values(first)
    assert info["state"] == "disabled" and info["model kind"] == "checkpoint" and len(info["model sha256"]) == 64
    assert info["camera expected rate (Hz)"] == "16"
    # Enabled with no camera: the gate hovers on camera_stale, an ERROR, published at once (not a second later).
    pilot.set_enabled(True)
    enabled = time.monotonic()
    assert wait_for(lambda: level(listener.latest(name)) == 2, timeout=3.0)
    changed = next(t for t, s in listener.of(name) if level(s) == 2)
    assert changed - enabled <= camera_wait(pilot) + 0.5
    assert "hovering on camera_stale" in listener.latest(name).message
    # Once a second while nothing changes.
    count = len(listener.of(name))
    time.sleep(2.2)
    assert 2 <= len(listener.of(name)) - count <= 4


def camera_wait(pilot: PilotNode) -> float:
    return pilot.params["camera_timeout"] + 0.15


def publish_frame(harness: Harness, image: np.ndarray, encoding: str = "rgb8") -> None:
    """Publish an IMU sample and a frame at once (no waiting: the fuzzer's pace)."""
    sample = Imu()
    w, a = sample.angular_velocity, sample.linear_acceleration
    w.x, w.y, w.z, a.x, a.y, a.z = (float(v) for v in IMU)
    now = harness.now()
    sample.header.stamp = time_msg(now)
    harness.imu.publish(sample)
    msg = Image(height=image.shape[0], width=image.shape[1], encoding=encoding, step=image.shape[1] * 3,
                data=image.tobytes())
    msg.header.stamp = time_msg(now)
    harness.images.publish(msg)


@pytest.mark.parametrize("good", [3, 9])
def test_sparse_bad_frames_at_30_hz_never_switch_back_to_flying_and_log_at_most_two_lines(
        flying: Harness, good: int) -> None:
    """The fuzzer's patterns: 3 (or 9) good frames to 1 bad at 30 Hz for 3 s: after the first fault the stream stays
    at zero (0 switches), and the pilot logs at most 2 lines in those 3 s."""
    default = next(p.default for p in PARAMETERS if p.name == "fault_window")
    assert default == 1.0
    flying.pilot.set_parameters([Parameter("fault_window", value=default)])
    first = flying.send_frame(images(1)[0])
    assert flying.command_for(first) != [0.0] * 4
    since_logs, since_commands = len(flying.logs), len(flying.commands)
    frame = images(1)[0]
    start = time.monotonic()
    for i in range(90):
        publish_frame(flying, frame, "yuv422" if i % (good + 1) == good else "rgb8")
        time.sleep(max(0.0, start + (i + 1) / 30 - time.monotonic()))
    time.sleep(0.1)
    stream = [command(m) != [0.0] * 4 for _, m in flying.commands[since_commands:]]
    assert False in stream, "no bad frame was handled"
    after = stream[stream.index(False):]
    assert sum(a != b for a, b in zip(after, after[1:])) == 0, after
    lines = [log.msg for log in flying.logs[since_logs:] if log.name.endswith("p1.pilot_node")]
    # The gate's lines: one, for the burst. The only other line may be the camera-rate warning (a 30 Hz camera on a
    # model trained at 16 Hz; the harness's earlier tests sent slower), said once per excursion.
    rate = [line for line in lines if line.startswith(("the camera runs at ", "camera rate back"))]
    assert len(lines) <= 2 and len(rate) <= 1, lines
    assert [line for line in lines if line not in rate] == [next(line for line in lines if line.endswith("[encoding]"))]
    flying.pilot.set_parameters([Parameter("fault_window", value=0.0)])
    flying.pilot.set_enabled(True)  # a fresh flight for the next test


@pytest.fixture(scope="module")
def artefact(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from liquid_pilot.nn.artefact import write_artefact
    path = tmp_path_factory.mktemp("artefact") / "pilot.onnx"
    write_artefact(model, path)
    return path


def scene(size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    return np.stack([128 + 100 * np.sin(6 * x), 128 + 100 * np.cos(5 * y), 255 * (x > y)], -1).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_4000_pixel_compressed_frames_at_10_hz_fly_or_are_refused_in_one_line(
        ros: Ros, artefact: Path, fmt: str) -> None:
    """A 4000x4000 frame at 10 Hz: a JPEG flies (decoded at 1/8 of its size), a PNG is refused with one line naming
    the decode budget; the command stream keeps its rate either way."""
    ns = f"big_{fmt}"
    pilot = ros.add(PilotNode(namespace=ns, parameter_overrides=[
        Parameter("model", value=str(artefact)), Parameter("image_transport", value="compressed"),
        Parameter("sensor_reliability", value="reliable"), Parameter("camera_timeout", value=LONG_TIMEOUT),
        Parameter("imu_timeout", value=LONG_TIMEOUT), Parameter("start_enabled", value=True)]))
    node = ros.node("camera", ns)
    camera = node.create_publisher(CompressedImage, "camera/image_raw/compressed", QoSProfile(depth=1))
    imu = node.create_publisher(Imu, "imu/data", QoSProfile(depth=1))
    commands: list[tuple[float, TwistStamped]] = []
    logs: list[Log] = []
    node.create_subscription(TwistStamped, "cmd_vel", lambda m: commands.append((time.monotonic(), m)), 100)
    node.create_subscription(Log, "/rosout", logs.append, QoSProfile(depth=1000))
    assert wait_for(lambda: camera.get_subscription_count() and imu.get_subscription_count() and commands)
    ext = ".jpg" if fmt == "jpeg" else ".png"
    data = cv2.imencode(ext, scene(4000))[1].tobytes()
    sample = Imu()
    sample.linear_acceleration.z = 9.81
    published: list[float] = []  # the control stream at its source (what reaches this process's busy executor
    publish = pilot._publish  # lags behind it on a loaded machine, with every other test's pilot to serve)

    def counted(command: tuple, stamp: int) -> None:
        published.append(time.monotonic())
        publish(command, stamp)

    pilot._publish = counted
    pilot.set_enabled(True)
    since, heard, start = len(logs), len(commands), time.monotonic()
    stamps = []
    for i in range(30):
        now = node.get_clock().now().nanoseconds
        sample.header.stamp = time_msg(now)
        imu.publish(sample)
        msg = CompressedImage(format=fmt, data=data)
        msg.header.stamp = time_msg(now)
        camera.publish(msg)
        stamps.append(now)
        time.sleep(max(0.0, start + (i + 1) / 10 - time.monotonic()))
    elapsed = time.monotonic() - start
    rate = sum(start <= t <= start + elapsed for t in published) / elapsed
    assert rate > 0.5 * CONTROL_RATE, rate  # the control stream: half its rate at least on the loaded CI machine
    flown = {stamp_ns(m.header.stamp) for _, m in commands[heard:]} & set(stamps)
    mine = [log.msg for log in logs[since:] if log.name == f"{ns}.pilot_node"]
    if fmt == "jpeg":
        assert len(flown) >= 10, (len(flown), mine)
        assert any("fitting 4000x4000 frames (decoded at 1/8 of their size)" in line for line in mine), mine
        assert not any("decode_slow" in line for line in mine), mine
    else:
        assert not flown, mine
        refusals = [line for line in mine if line.endswith("[decode_slow]")]
        assert len(refusals) == 1 and "4000x4000 png frames would take about " in refusals[0]
        assert "decode_budget" in refusals[0]
        # The only other warning: 10 Hz is outside the band around the model's 16 Hz (said once).
        others = [line for line in mine if log_level(logs, line) >= Log.WARN and line not in refusals]
        assert len(others) <= 1 and all(line.startswith("the camera runs at ") for line in others), others
    ros.remove(pilot)


def log_level(logs: list[Log], text: str) -> int:
    return next(log.level for log in logs if log.msg == text)


def test_a_qos_mismatch_is_reported_on_the_topic_and_in_diagnostics(ros: Ros, model: Path) -> None:
    listener = Diagnostics(ros.node("diagnostics", "q1"))
    pilot = ros.add(PilotNode(namespace="q1", parameter_overrides=[
        Parameter("model", value=str(model)), Parameter("sensor_reliability", value="reliable")]))
    node = ros.node("imu", "q1")
    logs: list[Log] = []
    node.create_subscription(Log, "/rosout", logs.append, QoSProfile(depth=1000))
    node.create_publisher(Imu, "imu/data", qos_profile_sensor_data)  # best effort: cannot feed a reliable reader
    assert wait_for(lambda: any("/q1/imu/data: a publisher's QoS cannot match" in log.msg for log in logs))
    line = next(log for log in logs if "/q1/imu/data: a publisher's QoS" in log.msg)
    assert line.level == Log.ERROR and "reliability" in line.msg and "subscribe best_effort" in line.msg
    assert wait_for(lambda: "/q1/imu/data" in (listener.latest("/q1/pilot_node: pilot") or DiagnosticStatus()).message)
    assert level(listener.latest("/q1/pilot_node: pilot")) == 2
    ros.remove(pilot)


def test_sim_time_without_a_clock_is_said_once(ros: Ros, model: Path) -> None:
    node = ros.node("listener", "c1")
    logs: list[Log] = []
    node.create_subscription(Log, "/rosout", logs.append, QoSProfile(depth=1000))
    pilot = ros.add(PilotNode(namespace="c1", parameter_overrides=[
        Parameter("model", value=str(model)), Parameter("use_sim_time", value=True)]))
    assert wait_for(lambda: any("use_sim_time is on and no /clock has arrived" in log.msg for log in logs
                                if log.name == "c1.pilot_node"), timeout=6.0)
    time.sleep(0.5)
    assert len([log for log in logs if "no /clock" in log.msg and log.name == "c1.pilot_node"]) == 1
    ros.remove(pilot)


def test_a_camera_far_from_the_training_rate_is_reported_once_and_hover_is_a_choice(
        ros: Ros, model: Path, harnesses) -> None:
    harness = harnesses(model, "r1")
    harness.enable(True)
    since = len(harness.logs)
    with timeouts(harness, LONG_TIMEOUT):
        start = time.monotonic()
        for i in range(10):  # 5 Hz, the model was trained at 16
            publish_frame(harness, images(1)[0])
            time.sleep(max(0.0, start + (i + 1) / 5 - time.monotonic()))
        assert wait_for(lambda: harness.logged("the camera runs at ", since), timeout=2.0)
        mine = [log for log in harness.logs[since:] if log.name == "r1.pilot_node"]
        line = next(log.msg for log in mine if "the camera runs at " in log.msg)
        assert "and the model was trained at 16 Hz" in line and "flying on" in line
        rate = float(line.split("the camera runs at ")[1].split(" Hz")[0])
        assert 4.0 <= rate <= 6.0, line
        harness.pilot.set_parameters([Parameter("camera_rate_action", value="hover")])
        for _ in range(5):  # still 5 Hz: refused now
            publish_frame(harness, images(1)[0])
            time.sleep(0.2)
        assert wait_for(lambda: harness.warnings("camera_rate", since))
    assert len([log for log in harness.logs[since:] if "the camera runs at " in log.msg and log.name == "r1.pilot_node"
                and log.level == Log.WARN and not log.msg.endswith("]")]) == 1


def test_camera_info_follows_a_remapped_image_topic(ros: Ros, model: Path) -> None:
    pilot = ros.add(PilotNode(namespace="i1", cli_args=["--ros-args", "-r", "camera/image_raw:=/cam/color/image_raw"],
                              parameter_overrides=[Parameter("model", value=str(model))]))
    topics = {s.topic_name for s in pilot.subscriptions}
    assert {"/cam/color/image_raw", "/cam/color/camera_info", "/i1/imu/data"} <= topics, topics
    ros.remove(pilot)


def test_a_directory_as_model_is_named_as_such(ros: Ros, model: Path) -> None:
    with pytest.raises(ValueError, match=f"{model.parent}: a directory, not a model file \\(a checkpoint .pt or a "
                                         "flight artefact .onnx\\); it holds pilot.pt"):
        PilotNode(namespace="m1", parameter_overrides=[Parameter("model", value=str(model.parent))])


@pytest.mark.parametrize("kind", ["checkpoint", "artefact"])
def test_saliency_images_at_their_rate(ros: Ros, model: Path, artefact: Path, kind: str, harnesses) -> None:
    path = model if kind == "checkpoint" else artefact
    harness = harnesses(path, f"s_{kind}", saliency_rate=5.0)
    maps: list[Image] = []
    harness.node.create_subscription(Image, "pilot_node/saliency", maps.append, 10)
    with timeouts(harness, LONG_TIMEOUT):  # long timeouts first: a slow start is never stale
        harness.enable(True)
        assert wait_for(lambda: harness.pilot._saliency_pub.get_subscription_count())
        for image in images(4):
            harness.send_frame(image)
        assert wait_for(lambda: maps, timeout=3.0)
    saliency = maps[0]
    assert (saliency.width, saliency.height, saliency.encoding) == (256, 256, "rgb8")
    pixels = np.frombuffer(bytes(saliency.data), np.uint8).reshape(256, 256, 3)
    assert pixels.std() > 1.0  # a picture, not a blank
    harness.enable(False)


def test_a_failing_saliency_map_never_touches_the_commands(ros: Ros, artefact: Path, harnesses) -> None:
    harness = harnesses(artefact, "s_broken", saliency_rate=10.0)

    def broken(*args: object) -> np.ndarray:
        raise RuntimeError("no map today")

    harness.pilot._saliency_map = broken
    with timeouts(harness, LONG_TIMEOUT):  # long timeouts first: a slow start is never stale
        harness.enable(True)
        for image in images(3):
            assert harness.command_for(harness.send_frame(image)) != [0.0] * 4  # flown, every one
    assert wait_for(lambda: harness.logged("~/saliency failed (RuntimeError: no map today); the pilot flies on"))
    assert not harness.pilot.gate.faults.total
    harness.enable(False)


def test_every_gate_setting_is_a_parameter_with_the_gates_text_and_range() -> None:
    # One declaration: ros2 param describe shows what GateConfig checks (no second set of bounds in the node).
    import dataclasses

    from liquid_pilot.flight.gate import GateConfig
    from liquid_pilot.settings import Range

    by_name = {p.name: p for p in PARAMETERS}
    for f in dataclasses.fields(GateConfig):
        param, allowed = by_name[f.name], f.metadata["allowed"]
        assert param.default == f.default and param.description == f.metadata["help"] and not param.read_only
        if isinstance(allowed, Range):
            assert (param.low, param.high) == (allowed.low, allowed.high), f.name
