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
from liquid_pilot.flight.runtime import load_runtime
from liquid_pilot.ros.convert import time_msg
from liquid_pilot.ros.pilot_node import PilotNode

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


@pytest.fixture(scope="module")
def drone(ros: Ros, model: Path) -> Harness:
    return Harness(ros, model, "p1")


@pytest.fixture()
def flying(drone: Harness) -> Harness:
    """The enabled pilot, with the longest timeouts: frames then fly even if this process stalls for
    most of a second between stamping and the pilot's callback, as it does at times on the loaded CI
    machine (0.6 s seen). The tests of the timeouts themselves set them back."""
    drone.enable(True)
    with timeouts(drone, LONG_TIMEOUT):
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
    # between the frames never exceeds camera_timeout (which would start a new flight by itself).
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


def test_nan_output_gives_zero(ros: Ros, tmp_path: Path) -> None:
    broken = Pilot()
    with torch.no_grad():
        for weights in broken.head.parameters():
            weights.fill_(math.nan)
    save_pilot(broken, tmp_path / "nan.pt")
    harness = Harness(ros, tmp_path / "nan.pt", "p2", start_enabled=True)
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


def test_frames_of_any_size_are_centre_cropped_and_resized(ros: Ros, model: Path) -> None:
    """A 640x480 camera flies by default: the frame is cropped to the model's square and resized, as in training."""
    harness = Harness(ros, model, "p5")
    harness.enable(True)
    with timeouts(harness, LONG_TIMEOUT):
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
