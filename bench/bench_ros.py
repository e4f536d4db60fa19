"""ROS 2 benchmark: camera frame in -> cmd_vel out through pilot_node, over DDS. JSON lines.

Two processes: pilot_node runs as its own process (``python -m liquid_pilot.ros.pilot_node``)
with a freshly initialised pilot (the same computation as a trained one); this process is
the drone, publishing rgb8 frames (each after an IMU sample) at 30 Hz and listening to
cmd_vel. Three frame sizes (64x64, the model's own; 640x480 and 1280x720, which the pilot
crops and resizes) are measured with each ``sensor_reliability`` setting, the drone's
publishers using the matching QoS (best effort: the sensor-data profile; reliable: reliable,
keep last ``RELIABLE_DEPTH``).

A frame is stamped just before it is published and the pilot stamps the command it computes
from that frame with the frame's stamp, so latency = the command's arrival at the drone's DDS
reader (the middleware's receive timestamp) - the frame's stamp: both DDS hops and everything
pilot_node does included, the benchmark's own Python work around them not. Frames are
serialized once up front and published as bytes with the stamp patched in, so that
converting a large Python message (about 10 ms for 1280x720 here) is not counted: a camera
driver does not pay it. The listener's executor after the arrival is reported separately as the
round trip to the listener's callback. A frame counts as answered when a command carrying its
stamp arrives; frames lost in transport, or replaced in the pilot's newest-wins slot by a later
one while the network was busy, are not. The control thread publishes the latest command (or a
zero stamped with the pilot's clock) at control_rate: such a tick that comes more than 1.5 control
periods after the previous one means missed control ticks.

The baseline is an echo node in place of pilot_node (same executor, topics, QoS and control
timer; it reads the stamp off the serialized frame without decoding it, and runs no network):
the floor that rclpy, DDS and this machine set.

    python bench/bench_ros.py [--quick] [--runtime onnx|torch]
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rclpy
from bench_support import Frames
from builtin_interfaces.msg import Time as TimeMsg
from geometry_msgs.msg import TwistStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, Imu
from std_srvs.srv import SetBool

from liquid_pilot.flight.codec import stamp_ns
from liquid_pilot.flight.runtime import DEFAULT_RUNTIME, RUNTIMES
from liquid_pilot.models import load_runtime
from liquid_pilot.nn.checkpoint import save_pilot
from liquid_pilot.nn.policy import Pilot
from liquid_pilot.ros.convert import time_msg
from liquid_pilot.ros.spin import Background, run as run_nodes

CAMERA_HZ = 30.0
CONTROL_RATE = 50.0
SIZES = ((64, 64), (640, 480), (1280, 720))  # (width, height) of the camera frames
RELIABILITIES = ("best_effort", "reliable")
RELIABLE_DEPTH = 1  # the reliable publishers keep only the newest frame: a late frame is worth nothing
ANSWERED_TARGET = 95.0  # %: of large raw frames answered, for a setting to carry them
PROCESSES = "two: the node under test in its own process; camera, IMU and cmd_vel listener in the benchmark's"


def emit(metric: str, value: object, unit: str, **extra: object) -> None:
    print(json.dumps({"metric": metric, "value": value, "unit": unit, **extra}), flush=True)


def wait_for(condition: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("error: the node under test did not come up (discovery or service) in time")
        time.sleep(0.01)


def sensor_qos(reliability: str, depth: int = RELIABLE_DEPTH) -> QoSProfile:
    """The drone's sensor publishers for a pilot whose ``sensor_reliability`` is ``reliability``."""
    if reliability == "reliable":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                          reliability=ReliabilityPolicy.RELIABLE)
    return qos_profile_sensor_data


def cdr_stamp(data: bytes) -> TimeMsg:
    """The header stamp of a serialized message that starts with a std_msgs/Header (little-endian CDR)."""
    sec, nanosec = struct.unpack_from("<iI", data, 4)
    return TimeMsg(sec=sec, nanosec=nanosec)


class EchoNode(Node):
    """The baseline: answers each frame at once with a zero twist carrying the frame's stamp."""

    def __init__(self, reliability: str) -> None:
        super().__init__("pilot_node")
        self.stamp = None
        self.pub = self.create_publisher(TwistStamped, "cmd_vel", QoSProfile(depth=10))
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=(
            ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT))
        self.create_subscription(Image, "camera/image_raw", self.on_image, qos, raw=True)
        self.create_subscription(Imu, "imu/data", lambda data: None, qos, raw=True)
        self.create_timer(1.0 / CONTROL_RATE, self.publish)
        self.create_service(SetBool, "~/enable", lambda request, response: response)

    def on_image(self, data: bytes) -> None:
        self.stamp = cdr_stamp(data)
        self.publish()

    def publish(self) -> None:
        msg = TwistStamped()
        msg.header.stamp = self.stamp if self.stamp is not None else self.get_clock().now().to_msg()
        self.pub.publish(msg)


def camera_frames(width: int, height: int, count: int, rng: np.random.Generator) -> Frames:
    """``count`` random rgb8 frames of one size, named WIDTHxHEIGHT."""
    def messages() -> Iterator[Image]:
        for _ in range(count):
            msg = Image(height=height, width=width, encoding="rgb8", step=width * 3)
            msg.data = rng.integers(0, 256, (height, width, 3), dtype=np.uint8).tobytes()
            msg.header.frame_id = "camera_optical_frame"
            yield msg
    return Frames(messages(), f"{width}x{height}")


@dataclass
class Case:
    frames: Frames
    warmup: float  # s of frames not measured (the pilot's first frames of this size, DDS settling)
    duration: float  # s measured


def compute_time(model: Path, runtime: str, frames: list[np.ndarray], gap: float = 0.0) -> float:
    """Median seconds of one network step on its own, for comparison with the end-to-end latency.

    ``gap``: seconds between steps (0: back to back). Stepped at the camera's period, the step costs two to
    five times as much on this machine as back to back (a bare onnxruntime session too; no session option
    changed it): between frames its caches go cold. That is the floor of the pilot's share of the latency.
    """
    pilot = load_runtime(model, runtime)
    imu = np.zeros(6, np.float32)
    times = []
    for image in frames * 3:
        if gap:
            time.sleep(gap)
        start = time.perf_counter()
        pilot.step(image, imu, 1 / CAMERA_HZ)
        times.append(time.perf_counter() - start)
    return float(np.median(times[len(frames):]))


def percentiles(ms: np.ndarray) -> tuple[float | None, float | None]:
    if len(ms) == 0:
        return None, None
    return round(float(np.percentile(ms, 50)), 3), round(float(np.percentile(ms, 99)), 3)


def measure(command: list[str], reliability: str, cases: list[Case], depth: int) -> list[dict[str, float]]:
    """Start the node under test, drive it through the cases one after the other, and measure each."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        try:
            runs, received = drive(reliability, cases, depth)
        except SystemExit:
            process.terminate()
            print(process.communicate(timeout=10)[1], file=sys.stderr)
            raise
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    frames = {stamp for sent, _ in runs for stamp in sent}
    first: dict[int, tuple[int, int]] = {}
    ticks = []  # the control thread's commands: all but the first answer to each frame (zero ones carry the clock)
    for arrival, callback, stamp in received:
        if stamp in first or stamp not in frames:
            ticks.append(arrival)
        if stamp not in first:
            first[stamp] = arrival, callback
    results = []
    for sent, seconds in runs:
        answered = [s for s in sent if s in first]
        p50, p99 = percentiles(np.array([first[s][0] - s for s in answered]) / 1e6)
        round_trip, _ = percentiles(np.array([first[s][1] - s for s in answered]) / 1e6)
        window = [t for t in ticks if sent[0] <= t <= sent[-1]]
        gaps = np.diff(window) / 1e9 * CONTROL_RATE  # in control periods
        results.append({"p50": p50, "p99": p99, "round_trip": round_trip,
                        "answered": round(100.0 * len(answered) / len(sent), 1),
                        "unanswered": len(sent) - len(answered),
                        "missed": int(sum(round(g) - 1 for g in gaps if g > 1.5)), "ticks": len(window),
                        "frames": len(sent), "camera_hz": round((len(sent) - 1) / ((sent[-1] - sent[0]) / 1e9), 2),
                        "seconds": seconds})
    return results


Runs = list[tuple[list[int], float]]  # per case: the measured frames' stamps, and its seconds


def drive(reliability: str, cases: list[Case], depth: int) -> tuple[Runs, list[tuple[int, int, int]]]:
    """Publish each case's frames at CAMERA_HZ; return each case's measured stamps (and seconds) and
    every command's (DDS arrival, callback time, stamp)."""
    rclpy.init()
    node = rclpy.create_node("bench_ros")
    images = node.create_publisher(Image, "camera/image_raw", sensor_qos(reliability, depth))
    imu = node.create_publisher(Imu, "imu/data", sensor_qos(reliability, depth))
    received: list[tuple[int, int, int]] = []
    node.create_subscription(
        TwistStamped, "cmd_vel",
        lambda m, info: received.append((info["received_timestamp"], time.time_ns(), stamp_ns(m.header.stamp))),
        QoSProfile(depth=100))
    # Not the events executor: it fails on callbacks taking MessageInfo (rclpy 9, Kilted).
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    background = Background(executor)
    runs = []
    try:
        wait_for(lambda: images.get_subscription_count() and imu.get_subscription_count() and received, 60)
        enable = node.create_client(SetBool, "pilot_node/enable")
        wait_for(enable.service_is_ready, 30)
        future = enable.call_async(SetBool.Request(data=True))
        wait_for(future.done, 10)
        sample = Imu()
        sample.linear_acceleration.z = 9.81
        period = 1.0 / CAMERA_HZ
        for case in cases:
            sent: list[int] = []
            warmup = int(case.warmup * CAMERA_HZ)
            start = time.perf_counter()
            for k in range(warmup + int(case.duration * CAMERA_HZ)):
                time.sleep(max(0.0, start + k * period - time.perf_counter()))
                sample.header.stamp = time_msg(time.time_ns())
                imu.publish(sample)
                stamp = time.time_ns()
                images.publish(case.frames.stamped(k, stamp))
                if k >= warmup:
                    sent.append(stamp)
            time.sleep(0.5)  # the last commands' flight time
            runs.append((sent, case.duration))
    finally:
        background.stop()
        node.destroy_node()
        rclpy.shutdown()
    return runs, received


def ratio(ours: float | None, base: float | None) -> float | None:
    return None if ours is None or not base else round(ours / base, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="4 s per case (after a 1 s warm-up) instead of 60 s for 64x64 and 20 s for the others")
    parser.add_argument("--runtime", choices=RUNTIMES, default=DEFAULT_RUNTIME, help="pilot_node's runtime")
    parser.add_argument("--reliable-depth", type=int, choices=range(1, 6), default=RELIABLE_DEPTH, metavar="1..5",
                        help=f"history depth of the reliable publishers (default {RELIABLE_DEPTH})")
    parser.add_argument("--only", choices=RELIABILITIES, help="measure one sensor_reliability setting")
    parser.add_argument("--echo", choices=RELIABILITIES, help=argparse.SUPPRESS)  # the baseline's process
    args = parser.parse_args()
    if args.echo:
        raise SystemExit(run_nodes([lambda: EchoNode(args.echo)], []))
    os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)  # isolated from other runs
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    rng = np.random.default_rng(0)
    cases = []
    for width, height in SIZES:
        small = (width, height) == SIZES[0]
        frames = camera_frames(width, height, 30 if small else 5, rng)
        if args.quick:
            cases.append(Case(frames, 1.0, 4.0))
        else:
            cases.append(Case(frames, 2.0, 60.0 if small else 20.0))
    step_frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(30)]
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "pilot.pt"
        save_pilot(Pilot(seed=0), model)
        step_ms = compute_time(model, args.runtime, step_frames) * 1e3
        emit("pilot_step_alone", round(step_ms, 3), "ms", runtime=args.runtime, note="network step without ROS")
        paced_ms = compute_time(model, args.runtime, step_frames[:10], 1 / CAMERA_HZ) * 1e3
        emit("pilot_step_at_camera_rate", round(paced_ms, 3), "ms", runtime=args.runtime,
             note=f"network step without ROS, steps {1e3 / CAMERA_HZ:.0f} ms apart as the camera paces them")
        for reliability in RELIABILITIES if args.only is None else (args.only,):
            depth = args.reliable_depth
            base = measure([sys.executable, __file__, "--echo", reliability], reliability, cases, depth)
            ours = measure([sys.executable, "-m", "liquid_pilot.ros.pilot_node", "--ros-args", "-p", f"model:={model}",
                            "-p", f"runtime:={args.runtime}", "-p", f"control_rate:={CONTROL_RATE}",
                            "-p", f"sensor_reliability:={reliability}"], reliability, cases, depth)
            for case, o, b in zip(cases, ours, base):
                results.setdefault(case.frames.name, {})[reliability] = o
                small = case.frames is cases[0].frames
                common = {"image": case.frames.name, "encoding": "rgb8", "sensor_reliability": reliability,
                          "publisher_qos": (f"reliable, keep last {depth}" if reliability == "reliable"
                                            else "sensor data (best effort, keep last 5)"),
                          "processes": PROCESSES, "runtime": args.runtime, "camera_hz": CAMERA_HZ,
                          "camera_hz_sent": o["camera_hz"], "seconds": o["seconds"], "frames": o["frames"]}
                emit("ros_latency_p50", o["p50"], "ms", **({"target": 2.0} if small else {}), baseline=b["p50"],
                     ratio=ratio(o["p50"], b["p50"]), **common)
                if small and o["p50"] is not None and b["p50"] is not None:
                    emit("ros_pilot_share_p50", round(o["p50"] - b["p50"], 3), "ms", target=0.4,
                         floor=round(paced_ms, 3), note="the pilot's p50 less the echo's; floor: the network step "
                         "alone at the camera's rate", **common)
                emit("ros_latency_p99", o["p99"], "ms", **({"target": 10.0} if small else {}), baseline=b["p99"],
                     ratio=ratio(o["p99"], b["p99"]), **common)
                emit("ros_round_trip_p50", o["round_trip"], "ms", baseline=b["round_trip"],
                     note="to the listener's Python callback, the benchmark's own executor included", **common)
                emit("ros_frames_answered", o["answered"], "%", baseline=b["answered"],
                     unanswered=o["unanswered"], baseline_unanswered=b["unanswered"], **common)
                emit("ros_missed_control_ticks", o["missed"], "ticks", baseline=b["missed"],
                     control_rate=CONTROL_RATE, ticks=o["ticks"], expected_ticks=int(o["seconds"] * CONTROL_RATE),
                     **common)
    large = [case.frames.name for case in cases[1:]]
    carrying = []
    for reliability in results[large[0]]:
        worst = min(results[name][reliability]["answered"] for name in large)
        if worst >= ANSWERED_TARGET:
            carrying.append(reliability)
        emit("ros_large_raw_frames_answered_min", worst, "%", sensor_reliability=reliability, images=large,
             target=ANSWERED_TARGET, passes=worst >= ANSWERED_TARGET)
    emit("ros_large_raw_frames_setting", ", ".join(carrying) or "none", "sensor_reliability",
         note=f"the settings that answer >= {ANSWERED_TARGET:g}% of {' and '.join(large)} rgb8 frames at "
              f"{CAMERA_HZ:g} Hz")


if __name__ == "__main__":
    main()
