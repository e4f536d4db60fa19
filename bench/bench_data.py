"""Bag reading and decoding speed, cold and from the frame cache; optionally the whole recipe.

Prints one JSON object per line (metric, value, unit, target where the project sets one).
Also the rate for 640x480 JPEG frames (CompressedImage) fitted to 64x64, as a real camera records.
Usage: python bench/bench_data.py [--quick] [--pipeline]
  --pipeline also times the full recipe from a clean state: collect 100 expert episodes and
  train the default pilot with config/train.yaml (target: under 30 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from rosbags.rosbag2 import StoragePlugin, Writer

from liquid_pilot.harness.bags import TYPESTORE, imu_msg, twist_stamped_msg
from liquid_pilot.harness.collect import collect
from liquid_pilot.data.dataset import SequenceDataset, find_bags, load_flight, load_flights
from liquid_pilot.data.reader import TopicConfig, read_flight
from liquid_pilot.sim.config import load_scenario
from liquid_pilot.train.trainer import load_train_config, train

CONFIG = Path(__file__).resolve().parents[1] / "config" / "train.yaml"


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    print(json.dumps({"metric": metric, "value": round(value, 3), "unit": unit, **extra}), flush=True)


def decoding(tmp: Path, episodes: int) -> None:
    bags = tmp / "bags"
    start = time.perf_counter()
    collect(load_scenario("forest_summer").with_overrides({"task.hold_s": 2.5}), episodes, bags, seed=0)
    emit("collect_episodes_per_minute", episodes / (time.perf_counter() - start) * 60, "episodes/min",
         scenario="forest_summer")
    paths, _ = find_bags([bags])
    start = time.perf_counter()
    frames = sum(len(read_flight(p).images) for p in paths)
    emit("bag_read_decode_rate", frames / (time.perf_counter() - start), "frames/s", target=">= 5000",
         image="64x64 rgb8", storage="mcap", frames=frames)
    cache = tmp / "cache"
    for p in paths:
        load_flight(p, TopicConfig(), (64, 64), cache)
    start = time.perf_counter()
    flights = load_flights([bags], size=(64, 64), cache_dir=cache)
    emit("cached_load_rate", sum(len(f.images) for f in flights) / (time.perf_counter() - start), "frames/s")
    dataset = SequenceDataset(flights)
    start = time.perf_counter()
    for batch in torch.utils.data.DataLoader(dataset, batch_size=16, shuffle=True):
        pass
    emit("window_batching_rate", len(dataset) * 64 / (time.perf_counter() - start), "frames/s")


def jpeg(tmp: Path, frames: int) -> None:
    """A 30 Hz camera's 640x480 JPEG frames (quality 90) with 200 Hz IMU and commands, read and fitted to 64x64."""
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 256, (60, 80, 3), np.uint8), (640, 480), interpolation=cv2.INTER_CUBIC)
    T = TYPESTORE.types
    with Writer(tmp / "jpeg", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        image = writer.add_connection("/camera/image_raw/compressed", "sensor_msgs/msg/CompressedImage",
                                      typestore=TYPESTORE)
        imu = writer.add_connection("/imu/data", "sensor_msgs/msg/Imu", typestore=TYPESTORE)
        cmd = writer.add_connection("/cmd_vel", "geometry_msgs/msg/TwistStamped", typestore=TYPESTORE)
        for k in range(frames):
            stamp = 10**18 + k * 33_333_333
            ok, data = cv2.imencode(".jpg", np.roll(base, 4 * k, axis=1), [cv2.IMWRITE_JPEG_QUALITY, 90])
            header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
                sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="camera")
            msg = T["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg", data=data.reshape(-1))
            writer.write(image, stamp, TYPESTORE.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage"))
            writer.write(cmd, stamp, TYPESTORE.serialize_cdr(twist_stamped_msg(np.zeros(4), stamp),
                                                             "geometry_msgs/msg/TwistStamped"))
            for i in range(7):
                writer.write(imu, stamp + i * 5_000_000, TYPESTORE.serialize_cdr(
                    imu_msg(np.zeros(6), stamp + i * 5_000_000), "sensor_msgs/msg/Imu"))
    start = time.perf_counter()
    flight = read_flight(tmp / "jpeg", TopicConfig(image="auto"), size=(64, 64))
    emit("bag_read_decode_rate_jpeg", len(flight.images) / (time.perf_counter() - start), "frames/s",
         image="640x480 jpeg q90 -> 64x64", storage="mcap", frames=len(flight.images),
         jpeg_kib=round(len(data) / 1024, 1))


def pipeline(tmp: Path) -> None:
    start = time.perf_counter()
    collect(load_scenario("forest_summer").with_overrides({"task.hold_s": 2.5}), 100, tmp / "recipe", seed=0)
    collected = time.perf_counter() - start
    with open(tmp / "train.log", "w") as log:
        train(load_train_config(CONFIG), [tmp / "recipe"], tmp / "pilot.pt", cache_dir=tmp / "cache2", log=log)
    total = time.perf_counter() - start
    emit("recipe_collect_100_and_train_default", total / 60, "min", target="< 30", collect_min=round(collected / 60, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--pipeline", action="store_true", help="also time collect 100 + train (about 20 minutes)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        decoding(Path(tmp), 4 if args.quick else 20)
        jpeg(Path(tmp), 100 if args.quick else 600)
        if args.pipeline:
            torch.set_num_threads(2)
            pipeline(Path(tmp))


if __name__ == "__main__":
    main()
