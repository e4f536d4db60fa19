"""Bags: recording from the simulator, reading real-bag variants, clear errors, the dataset and cache."""
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from rosbags.rosbag2 import StoragePlugin, Writer

from liquid_pilot.harness import collect as collect_module
from liquid_pilot.harness.bags import TYPESTORE, camera_info_msg, image_msg, imu_msg, twist_stamped_msg
from liquid_pilot.harness.collect import CollectInterrupted, collect
from liquid_pilot.data.dataset import AugmentConfig, SequenceDataset, augment, augment_imu, load_flight, load_flights, \
    split_flights
from liquid_pilot.data.reader import BagError, TopicConfig, read_flight
from liquid_pilot.nn.checkpoint import CheckpointError
from liquid_pilot.sim.config import load_scenario
from liquid_pilot.sim.episode import ExpertPolicy, fly
from liquid_pilot.sim.world import Simulator

T = TYPESTORE.types
SHORT = {"task.hold_s": 0.5}


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bags")
    result = collect(load_scenario("forest_summer").with_overrides(SHORT), 3, out, seed=10)
    assert len(result.written) == 3
    return out


def test_collected_bag_holds_the_flight_exactly(bags: Path) -> None:
    flight = read_flight(bags / "forest_summer_000010")
    assert flight.metadata["scenario"] == "forest_summer" and flight.metadata["seed"] == "10"
    assert flight.metadata["outcome"] == "reached" and flight.metadata["task"] == "fly_to_target"
    sim = Simulator(load_scenario("forest_summer").with_overrides(SHORT))
    policy = ExpertPolicy(0.2, seed=10)
    images, labels, imu = [], [], []
    fly(sim, policy, 10, on_step=lambda s, o, c: (images.append(o.image), labels.append(policy.label.copy()),
                                                  imu.append(o.imu)))
    assert np.array_equal(flight.images, np.array(images))
    np.testing.assert_allclose(flight.commands, np.array(labels), atol=1e-6)
    np.testing.assert_allclose(flight.imu, np.array(imu), atol=1e-6)
    assert flight.dt[0] == 0 and np.allclose(flight.dt[1:], 1 / 16) and flight.report["gaps"] == 0


def test_sqlite3_storage_reads_the_same(bags: Path, tmp_path: Path) -> None:
    collect(load_scenario("forest_summer").with_overrides(SHORT), 1, tmp_path, seed=10, storage="sqlite3")
    a, b = read_flight(bags / "forest_summer_000010"), read_flight(tmp_path / "forest_summer_000010")
    assert (tmp_path / "forest_summer_000010" / "forest_summer_000010.db3").is_file()
    assert np.array_equal(a.images, b.images) and np.array_equal(a.commands, b.commands)


def _write_bag(path: Path, frames: list[tuple[int, object, str]], commands: list[tuple[int, object, str]],
               imu: list[tuple[int, object]] | None = None, storage: StoragePlugin = StoragePlugin.MCAP,
               extra: list[tuple[str, str, int, object]] | None = None) -> Path:
    """A bag as another recorder would write it: (stamp ns, message, type) per message.

    ``extra``: (topic, type, stamp ns, message) of other topics.
    """
    with Writer(path, version=9, storage_plugin=storage) as writer:
        conns = {}

        def put(topic: str, msgtype: str, stamp: int, msg: object) -> None:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=TYPESTORE)
            writer.write(conns[topic], stamp, TYPESTORE.serialize_cdr(msg, msgtype))

        for stamp, msg, msgtype in frames:
            put("/camera/image_raw", msgtype, stamp, msg)
        for stamp, msg, msgtype in commands:
            put("/cmd_vel", msgtype, stamp, msg)
        for stamp, msg in imu or []:
            put("/imu/data", "sensor_msgs/msg/Imu", stamp, msg)
        for topic, msgtype, stamp, msg in extra or []:
            put(topic, msgtype, stamp, msg)
    return path


def _scene(k: int) -> np.ndarray:
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :, 0] = 200  # red
    image[10:20, k % 50:k % 50 + 10, 1] = 255
    return image


def _plain_bag(path: Path, encoding: str = "rgb8", period_ms: int = 50, count: int = 20, **kwargs: object) -> Path:
    frames = []
    for k in range(count):
        stamp = (1_000 + k * period_ms) * 1_000_000
        rgb = _scene(k)
        msg = image_msg(rgb, stamp)
        if encoding == "bgr8":
            msg.data, msg.encoding = np.ascontiguousarray(rgb[:, :, ::-1]).reshape(-1), "bgr8"
        elif encoding == "mono8":
            msg.data, msg.encoding, msg.step = np.ascontiguousarray(rgb[:, :, 0]).reshape(-1), "mono8", 64
        elif encoding in ("jpeg", "png"):
            ok, data = cv2.imencode("." + ("jpg" if encoding == "jpeg" else "png"), rgb[:, :, ::-1])
            msg = T["sensor_msgs/msg/CompressedImage"](header=msg.header, format=encoding, data=data.reshape(-1))
            frames.append((stamp, msg, "sensor_msgs/msg/CompressedImage"))
            continue
        elif encoding != "rgb8":
            msg.encoding = encoding
        frames.append((stamp, msg, "sensor_msgs/msg/Image"))
    commands = [((1_000 + k * period_ms) * 1_000_000, twist_stamped_msg(np.array([k / 10, 0, 0, -k / 20]),
                 (1_000 + k * period_ms) * 1_000_000), "geometry_msgs/msg/TwistStamped") for k in range(count)]
    imu = [((1_000 + k * period_ms) * 1_000_000, imu_msg(np.array([0, 0, 0.1 * k, 0, 0, 9.8]),
           (1_000 + k * period_ms) * 1_000_000)) for k in range(count)]
    return _write_bag(path, frames, commands, imu, **kwargs)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "jpeg", "png"])
def test_colour_encodings_decode_to_rgb(encoding: str, tmp_path: Path) -> None:
    flight = read_flight(_plain_bag(tmp_path / "b", encoding))
    assert flight.images.shape == (20, 48, 64, 3)
    error = np.abs(flight.images[3].astype(int) - _scene(3))
    assert (error.mean() < 6) if encoding == "jpeg" else (error.max() == 0)  # jpeg is lossy
    assert flight.images[:, :, :, 0].mean() > 150 and flight.images[:, :, :, 2].mean() < 30  # red stays red


def test_mono_images_and_resizing(tmp_path: Path) -> None:
    flight = read_flight(_plain_bag(tmp_path / "b", "mono8"), size=(32, 32))
    assert flight.images.shape == (20, 32, 32, 3)
    assert np.array_equal(flight.images[..., 0], flight.images[..., 2])


def _four_by_three(k: int) -> np.ndarray:
    """A 64x48 frame: its centred 48x48 square green with a white 12x12 top-left block (and a
    frame-dependent dot), the 8 columns either side red (left) and blue (right)."""
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :8], image[:, 8:56], image[:, 56:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    image[:12, 8:20] = 255
    image[30:32, 30 + 2 * (k % 8):32 + 2 * (k % 8)] = (0, 0, 0)
    return image


def _four_by_three_bag(path: Path, info: object | None = None, info_topic: str = "/camera/camera_info") -> Path:
    stamps = [(1_000 + k * 50) * 1_000_000 for k in range(12)]
    frames = [(s, image_msg(_four_by_three(k), s), "sensor_msgs/msg/Image") for k, s in enumerate(stamps)]
    commands = [(s, twist_stamped_msg(np.array([0.5, 0, 0, 0.0]), s), "geometry_msgs/msg/TwistStamped")
                for s in stamps]
    extra = [] if info is None else [(info_topic, "sensor_msgs/msg/CameraInfo", s, info) for s in stamps]
    return _write_bag(path, frames, commands, extra=extra)


def test_other_aspect_frames_are_centre_cropped_and_the_fov_comes_from_camera_info(tmp_path: Path) -> None:
    info = camera_info_msg(64, 48, math.radians(60), 1)  # 60 deg high; 75.2 deg across the whole frame
    flight = read_flight(_four_by_three_bag(tmp_path / "b", info), TopicConfig(imu=None), size=(24, 24))
    assert flight.images.shape == (12, 24, 24, 3)
    for k, image in enumerate(flight.images):
        expected = np.zeros((24, 24, 3), np.uint8)
        expected[:] = (0, 255, 0)  # the centred 48x48, halved: no red or blue column survives
        expected[:6, :6] = 255
        expected[15, 11 + k % 8] = (0, 0, 0)
        assert np.array_equal(image, expected), k
    # The model sees the centred square: 60 x 60 deg (not 75 x 60, the whole frame).
    assert flight.camera_fov_deg == pytest.approx((60.0, 60.0))
    assert flight.report["camera_info"] == "/camera/camera_info"
    whole = read_flight(tmp_path / "b", TopicConfig(imu=None))  # not resized: all of the frame
    assert whole.images.shape == (12, 48, 64, 3)
    assert whole.camera_fov_deg == pytest.approx((2 * math.degrees(math.atan(32 / 24 * math.tan(math.radians(30)))),
                                                  60.0))


def test_camera_info_of_another_resolution_is_scaled_and_absent_means_unknown(tmp_path: Path) -> None:
    info = camera_info_msg(128, 96, math.radians(60), 1)  # calibrated at twice the streamed size
    flight = read_flight(_four_by_three_bag(tmp_path / "scaled", info), TopicConfig(imu=None), size=(24, 24))
    assert flight.camera_fov_deg == pytest.approx((60.0, 60.0))
    assert read_flight(tmp_path / "scaled", TopicConfig(imu=None, camera_info=""), (24, 24)).camera_fov_deg is None
    bare = read_flight(_four_by_three_bag(tmp_path / "bare"), TopicConfig(imu=None), size=(24, 24))
    assert bare.camera_fov_deg is None and bare.report["camera_info"] is None
    elsewhere = _four_by_three_bag(tmp_path / "elsewhere", info, "/front/info")
    assert read_flight(elsewhere, TopicConfig(imu=None), (24, 24)).camera_fov_deg is None
    named = read_flight(elsewhere, TopicConfig(imu=None, camera_info="/front/info"), (24, 24))
    assert named.camera_fov_deg == pytest.approx((60.0, 60.0))
    assert TopicConfig(image="/cam/image_raw/compressed").camera_info_topic() == "/cam/camera_info"
    assert TopicConfig(image="image_raw").camera_info_topic() == "camera_info"


def test_simulator_bags_record_the_camera_fov(bags: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bag = bags / "forest_summer_000010"
    assert read_flight(bag, size=(64, 64)).camera_fov_deg == pytest.approx((80.0, 80.0))
    cache = tmp_path / "cache"
    first = load_flight(bag, TopicConfig(), (64, 64), cache)
    from liquid_pilot.data import dataset

    monkeypatch.setattr(dataset, "read_flight", lambda *a: pytest.fail("read instead of the cache"))
    cached = load_flight(bag, TopicConfig(), (64, 64), cache)
    assert cached.camera_fov_deg == first.camera_fov_deg and np.array_equal(cached.images, first.images)
    # An entry without the field of view (an older cache's) is decoded again, never read as "unknown".
    (entry,) = cache.glob("*.npz")
    with np.load(entry) as z:
        arrays = dict(z)
    meta = json.loads(str(arrays["meta"]))
    del meta["camera_fov_deg"]
    np.savez(entry, **{**arrays, "meta": json.dumps(meta)})
    monkeypatch.setattr(dataset, "read_flight", lambda *a: first)
    assert load_flight(bag, TopicConfig(), (64, 64), cache).camera_fov_deg == pytest.approx((80.0, 80.0))


def test_plain_twist_commands_and_sqlite3(tmp_path: Path) -> None:
    frames = [(k * 50_000_000, image_msg(_scene(k), k * 50_000_000), "sensor_msgs/msg/Image") for k in range(1, 10)]
    twist = T["geometry_msgs/msg/Twist"]
    vector = T["geometry_msgs/msg/Vector3"]
    commands = [(k * 50_000_000, twist(linear=vector(x=0.5, y=0.0, z=0.1), angular=vector(x=0.0, y=0.0, z=0.3)),
                 "geometry_msgs/msg/Twist") for k in range(1, 10)]
    bag = _write_bag(tmp_path / "b", frames, commands, storage=StoragePlugin.SQLITE3)
    flight = read_flight(bag, TopicConfig(imu=None))
    np.testing.assert_allclose(flight.commands[0], [0.5, 0.0, 0.1, 0.3])
    assert np.all(flight.imu == 0)


def test_gaps_split_segments_and_out_of_order_stamps_are_sorted(tmp_path: Path) -> None:
    frames, commands = [], []
    stamps = [1, 2, 3, 5, 4, 6, 7, 20, 21, 22]  # one swap, one long gap (x50 ms)
    for k, s in enumerate(stamps):  # received in list order, header stamps as listed
        stamp, received = s * 50_000_000, (k + 1) * 50_000_000
        frames.append((received, image_msg(_scene(s), stamp), "sensor_msgs/msg/Image"))
        commands.append((received, twist_stamped_msg(np.array([s, 0, 0, 0.0]), stamp),
                         "geometry_msgs/msg/TwistStamped"))
    flight = read_flight(_write_bag(tmp_path / "b", frames, commands), TopicConfig(imu=None))
    assert flight.report["frame_out_of_order"] == 1 and flight.report["gaps"] == 1
    np.testing.assert_allclose(flight.commands[:, 0], sorted(stamps))
    assert list(flight.segments) == [0] * 7 + [1] * 3
    assert flight.dt[7] == 0 and flight.dt[8] == pytest.approx(0.05)


def test_frames_without_a_recent_command_are_reported_not_used(tmp_path: Path) -> None:
    frames = [(k * 100_000_000, image_msg(_scene(k), k * 100_000_000), "sensor_msgs/msg/Image") for k in range(1, 21)]
    commands = [(k * 100_000_000, twist_stamped_msg(np.zeros(4), k * 100_000_000), "geometry_msgs/msg/TwistStamped")
                for k in range(1, 8)]  # commands stop after 0.7 s
    flight = read_flight(_write_bag(tmp_path / "b", frames, commands), TopicConfig(imu=None))
    assert flight.report["frames_without_command"] == 20 - 7 - 5 and len(flight.images) == 12


@pytest.mark.parametrize("problem,message", [
    ("missing_topic", "no command topic '/cmd_vel'; the bag has: /camera/image_raw"),
    ("wrong_type", "image topic '/camera/image_raw' has type geometry_msgs/msg/TwistStamped"),
    ("encoding", "image encoding '16UC1' is not supported; use one of rgb8, bgr8, mono8"),
    ("size", "do not make a 64x48 rgb8 image"),
    ("truncated", "the MCAP header record is missing"),
    ("empty", "the file is empty (0 bytes): nothing was recorded"),
    ("no_usable", "no usable frames"),
])
def test_bad_bags_name_the_bag_and_the_problem(problem: str, message: str, tmp_path: Path) -> None:
    bag = tmp_path / "flight_7"
    if problem == "missing_topic":
        _write_bag(bag, [(1, image_msg(_scene(0), 1), "sensor_msgs/msg/Image")], [])
    elif problem == "wrong_type":
        _write_bag(bag, [(1, twist_stamped_msg(np.zeros(4), 1), "geometry_msgs/msg/TwistStamped")],
                   [(1, twist_stamped_msg(np.zeros(4), 1), "geometry_msgs/msg/TwistStamped")])
    elif problem == "encoding":
        _plain_bag(bag, "16UC1")
    elif problem == "size":
        msg = image_msg(_scene(0), 1)
        msg.data = msg.data[:-10]
        _write_bag(bag, [(1, msg, "sensor_msgs/msg/Image")],
                   [(1, twist_stamped_msg(np.zeros(4), 1), "geometry_msgs/msg/TwistStamped")])
    elif problem == "truncated":  # cut before its first record ends: nothing to recover
        _plain_bag(bag)
        data = (bag / "flight_7.mcap").read_bytes()
        (bag / "flight_7.mcap").write_bytes(data[:12])
    elif problem == "empty":
        _plain_bag(bag)
        (bag / "flight_7.mcap").write_bytes(b"")
    else:
        _write_bag(bag, [(10**9, image_msg(_scene(0), 10**9), "sensor_msgs/msg/Image")],
                   [(10, twist_stamped_msg(np.zeros(4), 10), "geometry_msgs/msg/TwistStamped")])
    with pytest.raises(BagError, match="flight_7") as info:
        read_flight(bag, TopicConfig(imu=None))
    assert message in str(info.value)


def test_one_bad_bag_stops_loading_unless_skipped(bags: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(bags, folder)
    (folder / "forest_summer_000011" / "forest_summer_000011.mcap").write_bytes(b"garbage")
    with pytest.raises(BagError, match="forest_summer_000011"):
        load_flights([folder])
    reported = []
    flights = load_flights([folder], skip_bad=True, on_bad=reported.append)
    assert len(flights) == 2 and len(reported) == 1 and "forest_summer_000011" in str(reported[0])


def test_cache_skips_decoding_until_the_bag_changes(bags: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    bag = tmp_path / "bag"
    shutil.copytree(bags / "forest_summer_000012", bag)
    cache = tmp_path / "cache"
    first = load_flight(bag, TopicConfig(), None, cache)
    calls = []
    from liquid_pilot.data import dataset

    monkeypatch.setattr(dataset, "read_flight", lambda *a: calls.append(a) or first)
    again = load_flight(bag, TopicConfig(), None, cache)
    assert calls == [] and np.array_equal(again.images, first.images) and again.metadata == first.metadata
    meta = bag / "metadata.yaml"
    meta.write_text(meta.read_text())  # the bag changed (new modification time)
    os.utime(meta, ns=(time.time_ns(), time.time_ns() + 10**9))
    load_flight(bag, TopicConfig(), None, cache)
    assert len(calls) == 1


def test_windows_follow_length_shift_and_segments(bags: Path) -> None:
    flights = load_flights([bags])
    dataset = SequenceDataset(flights, length=32, shift=16)
    assert {stride for _, _, stride in dataset.windows} == {1}
    for index, start, _ in dataset.windows:
        segment = flights[index].segments[start]
        assert np.all(flights[index].segments[start:start + 32] == segment)
    n = len(flights[0].images)
    expected = len(range(0, n - 32 + 1, 16)) + ((n - 32) % 16 != 0)
    assert sum(1 for i, _, _ in dataset.windows if i == 0) == expected
    item = dataset[3]
    assert item["images"].shape == (32, 64, 64, 3) and item["dt"].shape == (32, 1) and item["dt"][0] == 0
    train, val, how = split_flights(flights, 0.34, seed=0)
    assert len(train) == 2 and len(val) == 1 and {f.bag for f in train}.isdisjoint({f.bag for f in val})
    assert how == "1 of 3 flights held out for validation"


def test_strided_windows_are_a_slower_camera_over_the_same_flight(bags: Path) -> None:
    flights = load_flights([bags])
    plain = SequenceDataset(flights, length=16, shift=8)
    both = SequenceDataset(flights, length=16, shift=8, strides=(1, 2))
    strided = [(n, w) for n, w in enumerate(both.windows) if w[2] == 2]
    assert [w for w in both.windows if w[2] == 1] == plain.windows  # the every-frame windows as before
    assert strided and len(strided) < len(plain)  # a window of every 2nd frame spans 31 frames: fewer fit
    n, (index, start, _) = strided[1]
    flight, item = flights[index], both[n]
    frames = np.arange(start, start + 31, 2)
    assert np.all(flight.segments[start:start + 31] == flight.segments[start])  # within one gap-free segment
    assert np.array_equal(item["images"].numpy(), flight.images[frames])
    assert np.array_equal(item["commands"].numpy(), flight.commands[frames])
    assert np.array_equal(item["imu"].numpy(), flight.imu[frames])
    dt = item["dt"][:, 0].numpy()
    assert dt[0] == 0 and np.allclose(dt[1:], flight.dt[frames[1:]] + flight.dt[frames[1:] - 1])  # two frames' time
    with pytest.raises(ValueError, match="strides must be positive"):
        SequenceDataset(flights, length=16, shift=8, strides=(0,))


def test_augmentation_is_per_sequence_and_seeded() -> None:
    images = torch.full((4, 5, 8, 8, 3), 128, dtype=torch.uint8)
    out = augment(images, AugmentConfig(noise=0.0), torch.Generator().manual_seed(0))
    again = augment(images, AugmentConfig(noise=0.0), torch.Generator().manual_seed(0))
    assert torch.equal(out, again) and out.min() >= 0 and out.max() <= 255
    per_sequence = out.mean(dim=(2, 3, 4))
    assert torch.allclose(per_sequence, per_sequence[:, :1].expand_as(per_sequence))  # same within a sequence
    assert per_sequence[:, 0].std() > 5  # different between sequences


def test_colour_cast_scales_each_channel_per_sequence_and_is_off_by_default() -> None:
    images = torch.full((64, 3, 4, 4, 3), 100, dtype=torch.uint8)
    plain = AugmentConfig(brightness=0.0, contrast=0.0, saturation=0.0, noise=0.0)
    generator = torch.Generator().manual_seed(0)
    assert torch.allclose(augment(images, plain, generator), images.float())  # off: untouched ...
    before = torch.Generator().manual_seed(0)
    for _ in range(3):  # saturation, contrast, brightness
        torch.rand(64, generator=before)
    assert torch.equal(generator.get_state(), before.get_state())  # ... and no extra draws, so old recipes replay
    cast = augment(images, dataclasses.replace(plain, colour=0.25), generator) / 100.0
    assert torch.allclose(cast, cast[:, :1, :1, :1].expand_as(cast))  # one factor per sequence and channel
    gains = cast[:, 0, 0, 0]  # (64, 3)
    assert gains.min() >= 0.75 - 1e-6 and gains.max() <= 1.25 + 1e-6 and gains.max() > 1.2 and gains.min() < 0.8
    assert (gains[:, 0] - gains[:, 1]).abs().max() > 0.2  # channels drawn independently: a cast, not brightness


def test_imu_augmentation_draws_per_sequence_errors_within_its_ranges() -> None:
    imu = torch.randn(64, 50, 6, generator=torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(0)
    assert augment_imu(imu, AugmentConfig(), generator) is imu  # off by default ...
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(0).get_state())  # ... drawing nothing

    biased = augment_imu(imu, AugmentConfig(gyro_bias=0.02, accel_bias=0.2), generator) - imu
    assert torch.allclose(biased, biased[:, :1].expand_as(biased), atol=1e-6)  # constant within a sequence
    offsets = biased[:, 0]
    assert offsets[:, :3].abs().max() <= 0.02 and offsets[:, 3:].abs().max() <= 0.2
    assert offsets[:, 3:].abs().max() > 0.15 and offsets[:, :3].abs().max() > 0.015  # the range is used

    noisy = augment_imu(imu, AugmentConfig(accel_noise=0.5), torch.Generator().manual_seed(0)) - imu
    assert torch.equal(noisy[..., :3], torch.zeros_like(noisy[..., :3]))  # gyro untouched
    spread = noisy[..., 3:].std(dim=1)  # per sequence and axis: uniform in [0, 0.5]
    assert spread.max() < 0.6 and spread.min() < 0.1 and spread.max() > 0.4
    assert torch.equal(noisy, augment_imu(imu, AugmentConfig(accel_noise=0.5), torch.Generator().manual_seed(0))
                       - imu)  # seeded


def test_collect_with_a_driver_records_the_pilots_flight_with_the_experts_labels(tmp_path: Path) -> None:
    # DAgger: an untrained pilot flies (and fails); the bag keeps its flight, labelled by the expert.
    from liquid_pilot.nn.checkpoint import read_checkpoint, save_pilot
    from liquid_pilot.nn.policy import Pilot, PilotConfig
    from liquid_pilot.harness.pilots import PilotPolicy

    model = tmp_path / "pilot.pt"
    save_pilot(Pilot(PilotConfig(use_imu=False), seed=1), model)
    scenario = load_scenario("search_right").with_overrides({"task.timeout_s": 2.0})
    result = collect(scenario, 1, tmp_path / "bags", seed=7, perturbation=0.0, keep_failures=True, search="left",
                     driver=model, lost_s=1.0)
    assert len(result.written) == 1 and not result.skipped
    flight = read_flight(result.written[0], TopicConfig(imu=None))
    meta = flight.metadata
    assert meta["outcome"] == "timeout" and meta["driver"] == str(model) and meta["search"] == "left"
    assert meta["search_after_lost_s"] == "1"
    assert meta["driver_sha256"] == read_checkpoint(model)["sha256"]
    # The same flight again: the pilot's commands flown, the expert's labels recorded.
    sim, driver = Simulator(scenario), PilotPolicy.from_file(model)
    driver.check(sim)
    policy = ExpertPolicy(seed=7, search="left", driver=driver, lost_s=1.0)
    labels, flown = [], []
    fly(sim, policy, 7, on_step=lambda s, o, c: (labels.append(policy.label.copy()), flown.append(c.copy())))
    np.testing.assert_allclose(flight.commands, np.array(labels), atol=1e-6)
    assert np.allclose(np.array(labels)[:, 3], 1.0)  # the chair never came into view: the search turn, left
    assert not np.allclose(np.array(flown), np.array(labels))  # what flew was the pilot's
    with pytest.raises(CheckpointError, match="missing.pt"):
        collect(scenario, 1, tmp_path / "more", driver=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="search must be one of left, right, got 'up'"):
        collect(scenario, 1, tmp_path / "more", search="up")
    with pytest.raises(ValueError, match=r"lost_s \(1.0\) resumes the search rule, so it needs a search direction"):
        collect(scenario, 1, tmp_path / "more", lost_s=1.0)


def test_collect_interrupted_keeps_finished_bags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fly = collect_module.fly
    flown = []

    def fly_then_interrupt(sim, policy, seed, on_step=None):  # noqa: ANN001, ANN202
        flown.append(seed)
        if len(flown) == 3:
            def cut(s, o, c):  # noqa: ANN001, ANN202
                on_step(s, o, c)
                if o.time > 1.0:
                    raise KeyboardInterrupt
            return real_fly(sim, policy, seed, on_step=cut)
        return real_fly(sim, policy, seed, on_step=on_step)

    monkeypatch.setattr(collect_module, "fly", fly_then_interrupt)
    with pytest.raises(CollectInterrupted) as info:
        collect(load_scenario("forest_summer").with_overrides(SHORT), 5, tmp_path, seed=0)
    assert info.value.missing == [2, 3, 4] and len(info.value.written) == 2
    assert str(info.value) == "the episode with seed 2 was cut; not recorded: seeds 2-4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forest_summer_000000", "forest_summer_000001"]
    for bag in info.value.written:
        assert len(read_flight(bag).images) > 10


def test_ctrl_c_on_the_command_says_which_episode_was_cut(tmp_path: Path) -> None:
    out = tmp_path / "bags"
    # A shell that started the tests in the background ignores SIGINT for its children: restore it.
    process = subprocess.Popen([sys.executable, "-m", "liquid_pilot.cli", "collect", "--episodes", "40", "--out",
                                str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len([p for p in out.glob("forest_summer_*")]) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "was cut" in stderr and "finished bags" in stderr and "Traceback" not in stderr
    finished = sorted(out.glob("forest_summer_*"))
    assert len(finished) >= 2 and not (out / ".partial").exists()
    for bag in finished:
        read_flight(bag)
