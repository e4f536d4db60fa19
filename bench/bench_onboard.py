"""Onboard benchmark: pilot_node on the flight artefact (.onnx) against on the checkpoint (.pt). JSON lines.

For each model file, pilot_node runs as its own process (``python -m liquid_pilot.ros.pilot_node``,
enabled from start-up); this process is the drone. Measured side by side:

- start-up: from launching the process to the first command it publishes, and to the first command
  flown on a camera frame (frames and IMU samples are sent from the start, at 30 Hz);
- resident memory: the node's peak resident set (VmHWM) after flying;
- frame -> command latency, p50 and p99: the command carrying a frame's stamp arrives at this
  process's callback, minus the stamp taken just before the frame was published (64x64 rgb8).

    python bench/bench_onboard.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy
from geometry_msgs.msg import TwistStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, Imu

from liquid_pilot.nn.artefact import write_artefact
from liquid_pilot.flight.codec import stamp_ns
from liquid_pilot.nn.checkpoint import save_pilot
from liquid_pilot.nn.policy import Pilot
from liquid_pilot.ros.convert import time_msg
from liquid_pilot.ros.spin import Background

CAMERA_HZ = 30.0


def emit(metric: str, value: object, unit: str, **extra: object) -> None:
    print(json.dumps({"metric": metric, "value": value, "unit": unit, **extra}), flush=True)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fly(model: Path, seconds: float) -> dict[str, float]:
    """Start pilot_node on ``model``, fly it on frames for ``seconds``; return its figures."""
    node = rclpy.create_node("onboard_bench")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    arrivals: dict[int, float] = {}
    first: list[float] = []

    def on_command(msg: TwistStamped) -> None:
        now = time.monotonic()
        if not first:
            first.append(now)
        arrivals.setdefault(stamp_ns(msg.header.stamp), now)

    node.create_subscription(TwistStamped, "cmd_vel", on_command, QoSProfile(depth=100))
    camera = node.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
    imu = node.create_publisher(Imu, "imu/data", qos_profile_sensor_data)
    background = Background(executor)
    rng = np.random.default_rng(0)
    image = Image(height=64, width=64, encoding="rgb8", step=192, data=rng.integers(0, 256, 64 * 64 * 3,
                                                                                    dtype=np.uint8).tobytes())
    sample = Imu()
    sample.linear_acceleration.z = 9.81
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "liquid_pilot.ros.pilot_node", "--ros-args", "-p",
                                f"model:={model}", "-p", "start_enabled:=true", "-p", "camera_timeout:=1.0",
                                "-p", "imu_timeout:=1.0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sent: dict[int, float] = {}
    first_flown = None
    try:
        deadline = started + 60.0
        while time.monotonic() < deadline:
            now_ns = node.get_clock().now().nanoseconds
            sample.header.stamp = time_msg(now_ns)
            imu.publish(sample)
            image.header.stamp = time_msg(now_ns)
            sent[now_ns] = time.monotonic()
            camera.publish(image)
            flown = [sent[s] for s in arrivals if s in sent]
            if flown and first_flown is None:
                first_flown = min(arrivals[s] for s in arrivals if s in sent)
                deadline = min(deadline, time.monotonic() + seconds)
            time.sleep(1 / CAMERA_HZ)
        rss = peak_rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(10)
        background.stop()
        node.destroy_node()
    latencies = np.array([(arrivals[s] - sent[s]) * 1e3 for s in arrivals if s in sent and first_flown
                          and sent[s] > first_flown])
    if first_flown is None or not len(latencies):
        raise SystemExit(f"error: pilot_node on {model} flew no frame within 60 s")
    return {"first_command_s": (first[0] if first else float("nan")) - started,
            "first_flown_s": first_flown - started, "rss_mb": rss,
            "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fly 3 s per model instead of 20")
    args = parser.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rclpy.init()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, artefact = Path(tmp) / "pilot.pt", Path(tmp) / "pilot.onnx"
        save_pilot(Pilot(seed=0), checkpoint)
        write_artefact(checkpoint, artefact)
        results = {kind: fly(path, 3.0 if args.quick else 20.0)
                   for kind, path in (("artefact", artefact), ("checkpoint", checkpoint))}
    rclpy.shutdown()
    a, c = results["artefact"], results["checkpoint"]
    emit("pilot_node resident memory, artefact", round(a["rss_mb"], 1), "MB", baseline=round(c["rss_mb"], 1),
         ratio=round(c["rss_mb"] / a["rss_mb"], 2), target="<= 150 MB")
    emit("pilot_node start-up to first command, artefact", round(a["first_command_s"], 2), "s",
         baseline=round(c["first_command_s"], 2), ratio=round(c["first_command_s"] / a["first_command_s"], 2),
         target="<= 2 s")
    emit("pilot_node start-up to first flown command, artefact", round(a["first_flown_s"], 2), "s",
         baseline=round(c["first_flown_s"], 2), ratio=round(c["first_flown_s"] / a["first_flown_s"], 2))
    for q in ("p50", "p99"):
        emit(f"frame -> command latency {q}, artefact", round(a[f"{q}_ms"], 2), "ms",
             baseline=round(c[f"{q}_ms"], 2), ratio=round(c[f"{q}_ms"] / a[f"{q}_ms"], 2))


if __name__ == "__main__":
    main()
