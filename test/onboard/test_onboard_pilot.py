"""pilot_node on a flight artefact, as on a drone: onnxruntime alone, no PyTorch, no simulator.

``make test`` runs these in the main environment and again in two minimal ones, the ``onboard``
install with the ROS 2 Kilted wheels and the same with the Jazzy wheels, on the artefact exported from
the shipped pilot (``LIQUID_PILOT_ARTEFACT``). Nothing here imports PyTorch.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import TwistStamped
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, Imu

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_ros_support import Ros, isolate, wait_for  # noqa: E402

from liquid_pilot.flight.codec import stamp_ns  # noqa: E402
from liquid_pilot.flight.core import FlightCore  # noqa: E402
from liquid_pilot.flight.gate import GateConfig  # noqa: E402
from liquid_pilot.flight.types import ManualClock  # noqa: E402
from liquid_pilot.models import load_runtime  # noqa: E402
from liquid_pilot.ros.convert import time_msg  # noqa: E402
from liquid_pilot.ros.pilot_node import PilotNode  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
IMU = np.array([0.01, -0.02, 0.03, 0.1, -0.1, 9.81], np.float32)


@pytest.fixture(scope="module")
def artefact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The artefact named by LIQUID_PILOT_ARTEFACT, or (with PyTorch here) one exported from the shipped pilot."""
    given = os.environ.get("LIQUID_PILOT_ARTEFACT")
    if given:
        return Path(given)
    try:
        from liquid_pilot.nn.artefact import write_artefact
    except ImportError:
        pytest.fail("set LIQUID_PILOT_ARTEFACT to an exported .onnx: this environment cannot export one")
    path = tmp_path_factory.mktemp("onboard") / "pilot.onnx"
    write_artefact(ROOT / "models" / "cfc_ncp.pt", path)
    return path


def test_the_node_on_an_artefact_loads_no_torch_and_starts_lean(artefact: Path) -> None:
    code = ("import sys, time, rclpy; t = time.monotonic(); from liquid_pilot.ros.pilot_node import PilotNode; "
            "from rclpy.parameter import Parameter; rclpy.init(); "
            f"node = PilotNode(parameter_overrides=[Parameter('model', value={str(artefact)!r})]); "
            "up = time.monotonic() - t; "
            "rss = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) / 1024; "
            "print(sorted(m for m in sys.modules if m in ('torch', 'pybullet', 'onnx') or "
            "m.startswith(('liquid_pilot.sim', 'liquid_pilot.data', 'liquid_pilot.nn')))); print(up, rss); "
            "node.destroy_node(); rclpy.shutdown()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=isolate())
    assert result.returncode == 0, result.stderr
    modules, figures = result.stdout.strip().splitlines()[-2:]
    assert modules == "[]", modules
    seconds, megabytes = map(float, figures.split())
    assert megabytes < 200, megabytes  # 121-124 MB measured (bench_onboard.py); the target there is 150 MB


def test_the_node_flies_the_artefact_frame_by_frame(artefact: Path) -> None:
    frames = [np.random.default_rng(i).integers(0, 256, (480, 640, 3), dtype=np.uint8) for i in range(3)]
    with Ros() as ros:
        pilot = ros.add(PilotNode(namespace="onboard", parameter_overrides=[
            Parameter("model", value=str(artefact)), Parameter("camera_timeout", value=1.0),
            Parameter("imu_timeout", value=1.0), Parameter("start_enabled", value=True)]))
        node = ros.node("drone", "onboard")
        camera = node.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        imu = node.create_publisher(Imu, "imu/data", qos_profile_sensor_data)
        heard: dict[int, list[float]] = {}
        node.create_subscription(TwistStamped, "cmd_vel", lambda m: heard.setdefault(stamp_ns(m.header.stamp), [
            m.twist.linear.x, m.twist.linear.y, m.twist.linear.z, m.twist.angular.z]), QoSProfile(depth=100))
        assert wait_for(lambda: camera.get_subscription_count() and imu.get_subscription_count() and heard)
        sample = Imu()
        w, a = sample.angular_velocity, sample.linear_acceleration
        w.x, w.y, w.z, a.x, a.y, a.z = (float(v) for v in IMU)
        stamps: list[int] = []
        for frame in frames:
            for _ in range(3):  # best effort: a frame may be lost on a loaded machine
                if not stamps:
                    pilot.set_enabled(True)  # a fresh flight (no stale fault from discovery) before the first frame
                samples = pilot.imu_samples
                imu.publish(sample)
                assert wait_for(lambda: pilot.imu_samples > samples)
                stamp = node.get_clock().now().nanoseconds
                msg = Image(height=480, width=640, encoding="rgb8", step=640 * 3, data=frame.tobytes())
                msg.header.stamp = time_msg(stamp)
                camera.publish(msg)
                if wait_for(lambda: stamp in heard, timeout=2.0):
                    stamps.append(stamp)
                    break
            else:
                pytest.fail(f"no command for frame {len(stamps)}")
        # What the flight core says for the same frames at the same times, without ROS.
        clock = ManualClock(stamps[0])
        core = FlightCore(load_runtime(artefact), GateConfig(camera_timeout=1.0, imu_timeout=1.0), clock)
        core.start()
        want = []
        for frame, stamp in zip(frames, stamps):
            clock.now = stamp
            core.imu(IMU)
            want.append(core.frame(frame, stamp))
        assert np.abs(want).max() > 1e-3
        np.testing.assert_allclose([heard[s] for s in stamps], want, rtol=1e-5, atol=1e-6)


def test_sigterm_ends_with_a_zero_command(artefact: Path) -> None:
    env = isolate()
    with Ros() as ros:
        node = ros.node("listener", "exit")
        heard: list[list[float]] = []
        node.create_subscription(TwistStamped, "cmd_vel", lambda m: heard.append(
            [m.twist.linear.x, m.twist.linear.y, m.twist.linear.z, m.twist.angular.z]), QoSProfile(depth=100))
        camera = node.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        imu = node.create_publisher(Imu, "imu/data", qos_profile_sensor_data)
        process = subprocess.Popen([sys.executable, "-m", "liquid_pilot.ros.pilot_node", "--ros-args", "-r",
                                    "__ns:=/exit", "-p", f"model:={artefact}", "-p", "start_enabled:=true"],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            image = Image(height=64, width=64, encoding="rgb8", step=192,
                          data=np.random.default_rng(1).integers(0, 256, 64 * 64 * 3, dtype=np.uint8).tobytes())
            sample = Imu()
            sample.linear_acceleration.z = 9.81
            deadline = time.monotonic() + 60
            while not (heard and any(c != [0.0] * 4 for c in heard[-5:])):  # flying
                assert time.monotonic() < deadline, "the pilot never flew"
                sample.header.stamp = image.header.stamp = time_msg(node.get_clock().now().nanoseconds)
                imu.publish(sample)
                camera.publish(image)
                time.sleep(1 / 30)
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0, process.stderr.read()  # it waited for the zero to be acknowledged
            assert heard[-1] == [0.0] * 4
        finally:
            if process.poll() is None:
                process.kill()
