"""ROS 2 benchmark: camera frame in -> cmd_vel out through pilot_node, over DDS. JSON lines.

Two processes: pilot_node runs as its own process (``python -m liquid_pilot.ros.pilot_node``)
with a freshly initialised pilot (the same computation as a trained one); this process is
the drone, publishing 64x64 rgb8 frames (each after an IMU sample) at 30 Hz and listening to
cmd_vel. A frame is stamped just before it is published and the pilot stamps the command it
computes from that frame with the frame's stamp, so latency = the command's arrival at the
drone's DDS reader (the middleware's receive timestamp) - the frame's stamp: both DDS hops and
everything pilot_node does included, the benchmark's own Python work around them not. That
work (building the IMU and image messages before the stamp, the listener's executor after
the arrival) is reported separately as the round trip to the listener's callback. The watchdog
repeats the latest command at control_rate: a repeat that comes more than 1.5 control periods
after the previous one means missed control ticks.

The baseline is an echo node in place of pilot_node (same executor, topics and watchdog
timer, no image decoding and no network): the floor that rclpy, DDS and this machine set.

    python bench/bench_ros.py [--quick] [--runtime onnx|torch]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rclpy
from geometry_msgs.msg import TwistStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, Imu
from std_srvs.srv import SetBool

from liquid_pilot.nn.checkpoint import save_pilot
from liquid_pilot.nn.policy import Pilot
from liquid_pilot.ros.convert import stamp_ns, time_msg
from liquid_pilot.ros.runtime import DEFAULT_RUNTIME, RUNTIMES, PilotRuntime
from liquid_pilot.ros.spin import run as run_nodes

CAMERA_HZ = 30.0
CONTROL_RATE = 50.0
WARMUP_S = 2.0
PROCESSES = "two: the node under test in its own process; camera, IMU and cmd_vel listener in the benchmark's"


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    print(json.dumps({"metric": metric, "value": value, "unit": unit, **extra}), flush=True)


def wait_for(condition: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("error: the node under test did not come up (discovery or service) in time")
        time.sleep(0.01)


class EchoNode(Node):
    """The baseline: answers each frame at once with a zero twist carrying the frame's stamp."""

    def __init__(self) -> None:
        super().__init__("pilot_node")
        self.stamp = None
        self.pub = self.create_publisher(TwistStamped, "cmd_vel", QoSProfile(depth=10))
        self.create_subscription(Image, "camera/image_raw", self.on_image, qos_profile_sensor_data)
        self.create_subscription(Imu, "imu/data", lambda msg: None, qos_profile_sensor_data)
        self.create_timer(1.0 / CONTROL_RATE, self.publish)
        self.create_service(SetBool, "~/enable", lambda request, response: response)

    def on_image(self, msg: Image) -> None:
        self.stamp = msg.header.stamp
        self.publish()

    def publish(self) -> None:
        msg = TwistStamped()
        msg.header.stamp = self.stamp if self.stamp is not None else self.get_clock().now().to_msg()
        self.pub.publish(msg)


def compute_time(model: Path, runtime: str, frames: list[np.ndarray]) -> float:
    """Median seconds of one network step on its own, for comparison with the end-to-end latency."""
    pilot = PilotRuntime.from_file(model, runtime)
    imu = np.zeros(6, np.float32)
    times = []
    for image in frames * 3:
        start = time.perf_counter()
        pilot.step(image, imu, 1 / CAMERA_HZ)
        times.append(time.perf_counter() - start)
    return float(np.median(times[len(frames):]))


def percentiles(ms: np.ndarray) -> tuple[float, float]:
    return round(float(np.percentile(ms, 50)), 3), round(float(np.percentile(ms, 99)), 3)


def measure(command: list[str], frames: list[np.ndarray], duration: float) -> dict[str, float]:
    """Start the node under test, drive it for ``duration`` seconds after a warm-up, and measure."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        sent, received = drive(frames, duration)
    except SystemExit:
        process.terminate()
        print(process.communicate(timeout=10)[1], file=sys.stderr)
        raise
    process.terminate()
    process.wait(10)
    first: dict[int, tuple[int, int]] = {}
    repeats = []
    for arrival, callback, stamp in received:
        if stamp in first:
            repeats.append(arrival)
        else:
            first[stamp] = arrival, callback
    answered = [s for s in sent if s in first]
    p50, p99 = percentiles(np.array([first[s][0] - s for s in answered]) / 1e6)
    round_trip, _ = percentiles(np.array([first[s][1] - s for s in answered]) / 1e6)
    window = [t for t in repeats if sent[0] <= t <= sent[-1]]
    gaps = np.diff(window) / 1e9 * CONTROL_RATE  # in control periods
    return {"p50": p50, "p99": p99, "round_trip": round_trip, "unanswered": len(sent) - len(answered),
            "missed": int(sum(round(g) - 1 for g in gaps if g > 1.5)), "ticks": len(window), "frames": len(sent)}


def drive(frames: list[np.ndarray], duration: float) -> tuple[list[int], list[tuple[int, int, int]]]:
    """Publish frames at CAMERA_HZ; return the measured frames' stamps and every command's
    (DDS arrival, callback time, stamp)."""
    rclpy.init()
    node = rclpy.create_node("bench_ros")
    images = node.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
    imu = node.create_publisher(Imu, "imu/data", qos_profile_sensor_data)
    received: list[tuple[int, int, int]] = []
    node.create_subscription(
        TwistStamped, "cmd_vel",
        lambda m, info: received.append((info["received_timestamp"], time.time_ns(), stamp_ns(m.header.stamp))),
        QoSProfile(depth=100))
    # Not the events executor: it fails on callbacks taking MessageInfo (rclpy 9, Kilted).
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()

    def spin() -> None:  # stopped by a flag, so shutting the executor down never races a callback in progress
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        wait_for(lambda: images.get_subscription_count() and imu.get_subscription_count() and received, 60)
        enable = node.create_client(SetBool, "pilot_node/enable")
        wait_for(enable.service_is_ready, 30)
        future = enable.call_async(SetBool.Request(data=True))
        wait_for(future.done, 10)
        sent: list[int] = []
        period = 1.0 / CAMERA_HZ
        start = time.perf_counter()
        for k in range(int((WARMUP_S + duration) * CAMERA_HZ)):
            time.sleep(max(0.0, start + k * period - time.perf_counter()))
            sample = Imu()
            sample.header.stamp = time_msg(time.time_ns())
            sample.linear_acceleration.z = 9.81
            imu.publish(sample)
            msg = Image(height=64, width=64, encoding="rgb8", step=192, data=frames[k % len(frames)].tobytes())
            msg.header.frame_id = "camera_optical_frame"
            stamp = time.time_ns()
            msg.header.stamp = time_msg(stamp)
            images.publish(msg)
            if k >= WARMUP_S * CAMERA_HZ:
                sent.append(stamp)
        time.sleep(0.5)  # the last commands' flight time
    finally:
        stop.set()
        spinner.join()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown()
    return sent, received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s per measurement instead of 60 s")
    parser.add_argument("--runtime", choices=RUNTIMES, default=DEFAULT_RUNTIME, help="pilot_node's runtime")
    parser.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)  # the baseline's process
    args = parser.parse_args()
    if args.echo:
        raise SystemExit(run_nodes([EchoNode], []))
    duration = 10.0 if args.quick else 60.0
    os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)  # isolated from other runs
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(30)]
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "pilot.pt"
        save_pilot(Pilot(seed=0), model)
        step_ms = compute_time(model, args.runtime, frames) * 1e3
        base = measure([sys.executable, __file__, "--echo"], frames, duration)
        ours = measure([sys.executable, "-m", "liquid_pilot.ros.pilot_node", "--ros-args", "-p", f"model:={model}",
                        "-p", f"runtime:={args.runtime}", "-p", f"control_rate:={CONTROL_RATE}"], frames, duration)
    common = {"processes": PROCESSES, "runtime": args.runtime, "camera_hz": CAMERA_HZ, "seconds": duration,
              "frames": ours["frames"]}
    emit("pilot_step_alone", round(step_ms, 3), "ms", runtime=args.runtime, note="network step without ROS")
    emit("ros_latency_p50", ours["p50"], "ms", target=2.0, baseline=base["p50"], **common)
    emit("ros_latency_p99", ours["p99"], "ms", target=10.0, baseline=base["p99"], **common)
    emit("ros_round_trip_p50", ours["round_trip"], "ms", baseline=base["round_trip"],
         note="to the listener's Python callback, the benchmark's own executor included", **common)
    emit("ros_frames_without_command", ours["unanswered"], "frames", baseline=base["unanswered"], **common)
    emit("ros_missed_control_ticks", ours["missed"], "ticks", baseline=base["missed"], control_rate=CONTROL_RATE,
         ticks=ours["ticks"], expected_ticks=int(duration * CONTROL_RATE), **common)


if __name__ == "__main__":
    main()
