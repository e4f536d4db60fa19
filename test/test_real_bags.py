"""Bags as a drone owner hands them over: other tools' files, cut recordings, other topics, clocks and frames."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_support import cli
import yaml
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from liquid_pilot.harness.bags import TYPESTORE, image_msg, imu_msg, twist_stamped_msg
from liquid_pilot.data.dataset import load_flights, split_flights
from liquid_pilot.data.mcap import McapFile, McapWriter
from liquid_pilot.data.reader import BagError, Flight, TopicConfig, read_flight
from liquid_pilot.data.storage import find_bags, open_bag, reindex

T = TYPESTORE.types
IMAGE, IMU, STAMPED, TWIST = ("sensor_msgs/msg/Image", "sensor_msgs/msg/Imu", "geometry_msgs/msg/TwistStamped",
                              "geometry_msgs/msg/Twist")
EPOCH = 1_700_000_000 * 10**9  # receive times: the recording computer's clock
PERIOD = 50_000_000  # 20 Hz frames


def frame(k: int) -> np.ndarray:
    image = np.zeros((16, 16, 3), np.uint8)
    image[:, :, 0] = k % 256  # the frame's index, readable back
    return image


def command(k: int) -> np.ndarray:
    return np.array([k / 100, 0.5, -0.25, 0.75])


def flight_messages(n: int = 40, stamp=lambda k: EPOCH + k * PERIOD, receive=lambda k: EPOCH + k * PERIOD,
                    image_topic: str = "/camera/image_raw", command_topic: str = "/cmd_vel",
                    imu_topic: str | None = "/imu/data", twist: bool = False,
                    imu_stamp=None) -> list[tuple[str, str, int, object]]:
    """(topic, type, receive ns, message) in the order a recorder writes them: frame, command, IMU per step."""
    imu_stamp = imu_stamp or stamp
    out = []
    for k in range(n):
        out.append((image_topic, IMAGE, receive(k), image_msg(frame(k), stamp(k))))
        if twist:
            v = command(k)
            vector = T["geometry_msgs/msg/Vector3"]
            unstamped = T[TWIST](linear=vector(x=v[0], y=v[1], z=v[2]), angular=vector(x=0.0, y=0.0, z=v[3]))
            out.append((command_topic, TWIST, receive(k), unstamped))
        else:
            out.append((command_topic, STAMPED, receive(k), twist_stamped_msg(command(k), stamp(k))))
        if imu_topic:
            out.append((imu_topic, IMU, receive(k), imu_msg(np.array([0.1, 0.2, 0.3, 1.0, 2.0, 9.8]), imu_stamp(k))))
    return out


def write_bag(path: Path, messages: list, storage: StoragePlugin = StoragePlugin.MCAP) -> Path:
    """A rosbag2 folder written with rosbags (the file inside is FOLDER.mcap or FOLDER.db3)."""
    with Writer(path, version=9, storage_plugin=storage) as writer:
        connections = {}
        for topic, msgtype, receive, msg in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=TYPESTORE)
            writer.write(connections[topic], receive, TYPESTORE.serialize_cdr(msg, msgtype))
    return path


def bare(path: Path, messages: list, storage: StoragePlugin = StoragePlugin.MCAP) -> Path:
    """A bare storage file, as Foxglove, the mcap CLI or a recorder elsewhere hands it over."""
    folder = write_bag(path.parent / f"{path.stem}_folder", messages, storage)
    (folder / f"{folder.name}{path.suffix}").rename(path)
    shutil.rmtree(folder)
    return path


def labels_follow_frames(flight: Flight) -> None:
    """Each frame's command is the one recorded with it (the frame index is in its red channel)."""
    index = flight.images[:, 0, 0, 0].astype(int)
    np.testing.assert_allclose(flight.commands[:, 0], index / 100, atol=1e-6)


# 1. Readers


@pytest.mark.parametrize("suffix,storage", [(".mcap", StoragePlugin.MCAP), (".db3", StoragePlugin.SQLITE3)])
def test_bare_files_and_folders_of_them_read(suffix: str, storage: StoragePlugin, tmp_path: Path) -> None:
    folder = tmp_path / "flights"
    folder.mkdir()
    bare(folder / f"a{suffix}", flight_messages(), storage)
    bare(folder / f"b{suffix}", flight_messages(30), storage)
    (folder / "notes.txt").write_text("flown on Tuesday")
    flight = read_flight(folder / f"a{suffix}")
    assert len(flight.images) == 40
    labels_follow_frames(flight)
    bags, unread = find_bags([folder])
    assert bags == [folder / f"a{suffix}", folder / f"b{suffix}"]
    assert unread == [f"{folder / 'notes.txt'}: not read (not a bag file: .mcap, .db3 and .bag are read)"]
    notes = []
    flights = load_flights([folder], on_note=notes.append)
    assert [len(f.images) for f in flights] == [40, 30] and notes == unread  # reported, also when loading


def test_a_folder_without_metadata_reads_and_reindex_writes_it_back(tmp_path: Path) -> None:
    bag = tmp_path / "rec"
    bag.mkdir()
    messages = flight_messages(60)
    bare(bag / "rec_0.mcap", messages[:90])  # split as ros2 bag record splits: rec_0.mcap, rec_1.mcap
    bare(bag / "rec_1.mcap", messages[90:])
    flight = read_flight(bag)
    assert len(flight.images) == 60 and flight.report["gaps"] == 0  # one flight across both files
    assert any(f"liquid-pilot bag reindex {bag}" in note for note in flight.report["notes"])
    result = cli("bag", "reindex", str(bag))
    assert result.returncode == 0, result.stderr
    assert f"wrote {bag / 'metadata.yaml'}: 2 files, 180 messages, 3 topics" in result.stdout
    with AnyReader([bag]) as reader:  # another reader takes it as a complete rosbag2 bag now
        assert reader.message_count == 180 and {c.topic for c in reader.connections} == {
            "/camera/image_raw", "/cmd_vel", "/imu/data"}
    with open_bag(bag) as opened:
        assert opened.notes == [] and opened.kind == "rosbag2 (mcap)"


def test_reindex_keeps_the_custom_data_and_lists_new_files(tmp_path: Path) -> None:
    bag = tmp_path / "rec"
    messages = flight_messages(20)
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.set_custom_data("pilot", "Alice")
        connections = {}
        for topic, msgtype, receive, msg in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=TYPESTORE)
            writer.write(connections[topic], receive, TYPESTORE.serialize_cdr(msg, msgtype))
    bare(bag / "rec_1.mcap", flight_messages(10, stamp=lambda k: EPOCH + (40 + k) * PERIOD,
                                             receive=lambda k: EPOCH + (40 + k) * PERIOD))
    with open_bag(bag) as opened:  # a file the metadata does not list is read, and said
        assert opened.topics["/camera/image_raw"].count == 30
        assert any("rec_1.mcap not listed in metadata.yaml" in n for n in opened.notes)
    info = reindex(bag)["rosbag2_bagfile_information"]
    assert info["custom_data"] == {"pilot": "Alice"} and info["relative_file_paths"] == ["rec.mcap", "rec_1.mcap"]
    assert yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["message_count"] == 90


def test_a_cut_mcap_gives_back_every_complete_message(tmp_path: Path) -> None:
    path = tmp_path / "whole.mcap"
    writer = McapWriter(path, chunk_size=4000, sync=False)
    schema = writer.add_schema(IMU, "ros2msg", TYPESTORE.generate_msgdef(IMU, ros_version=2)[0])
    channel = writer.add_channel("/imu/data", schema)
    sent = []
    for k in range(300):
        data = TYPESTORE.serialize_cdr(imu_msg(np.full(6, float(k)), k * 5_000_000), IMU)
        writer.write(channel, k * 5_000_000, data)
        sent.append(data)
    writer.close()
    whole = path.read_bytes()
    with McapFile(path) as f:
        assert f.indexed and [bytes(d) for _, _, d in f.messages()] == sent
    previous = 0
    for cut in list(range(100, len(whole), 997)) + [len(whole) - 20]:
        (tmp_path / "cut.mcap").write_bytes(whole[:cut])
        with McapFile(tmp_path / "cut.mcap") as f:
            got = [bytes(d) for _, _, d in f.messages()]
            assert not f.indexed and f.recovered == len(got)
        assert got == sent[:len(got)]  # in order, byte for byte
        # Every message whose record ends before the cut comes back (records are 9 + 22 + data bytes long).
        assert len(got) >= previous and (cut < len(whole) - 200 or len(got) == len(sent))
        complete = 0
        while complete < len(sent) and whole.find(sent[complete]) + len(sent[complete]) <= cut:
            complete += 1
        assert len(got) == complete, cut
        previous = len(got)
    flight_bag = bare(tmp_path / "flight.mcap", flight_messages(40))
    data = flight_bag.read_bytes()
    flight_bag.write_bytes(data[:len(data) * 2 // 3])
    flight = read_flight(flight_bag)
    assert 20 <= len(flight.images) < 40
    labels_follow_frames(flight)
    (note,) = flight.report["notes"]
    assert note.startswith("flight.mcap has no index (the recording was cut or not closed): ")
    assert " complete messages recovered; its last " in note and "bytes are a record cut short, left out" in note
    recovered = int(note.split(": ")[1].split(" ")[0])  # frame, command, IMU per step: all frames with both kept
    assert 3 * len(flight.images) <= recovered <= 3 * len(flight.images) + 2


def test_ros1_bags_read(tmp_path: Path) -> None:
    from rosbags.rosbag1 import Writer as Ros1Writer
    from rosbags.typesys import Stores, get_typestore

    ros1 = get_typestore(Stores.ROS1_NOETIC)
    R = ros1.types
    path = tmp_path / "px4.bag"
    with Ros1Writer(path) as writer:
        image = writer.add_connection("/camera/image_raw", IMAGE, typestore=ros1)
        cmd = writer.add_connection("/cmd_vel", STAMPED, typestore=ros1)
        for k in range(30):
            stamp = R["builtin_interfaces/msg/Time"](sec=1000 + k // 20, nanosec=(k % 20) * PERIOD)
            header = R["std_msgs/msg/Header"](seq=k, stamp=stamp, frame_id="cam")
            pixels = frame(k)
            writer.write(image, EPOCH + k * PERIOD, ros1.serialize_ros1(R[IMAGE](
                header=header, height=16, width=16, encoding="rgb8", is_bigendian=0, step=48,
                data=pixels.reshape(-1)), IMAGE))
            v = command(k)
            vec = R["geometry_msgs/msg/Vector3"]
            twist = R["geometry_msgs/msg/Twist"](linear=vec(x=v[0], y=v[1], z=v[2]), angular=vec(x=0, y=0, z=v[3]))
            writer.write(cmd, EPOCH + k * PERIOD, ros1.serialize_ros1(R[STAMPED](header=header, twist=twist), STAMPED))
    flight = read_flight(path, TopicConfig(imu=None))
    assert len(flight.images) == 30
    labels_follow_frames(flight)
    assert flight.report["time_source"] == "header"  # both on the same (boot) clock: their stamps align them


def test_a_folder_reports_everything_it_does_not_read(tmp_path: Path) -> None:
    folder = tmp_path / "drone"
    folder.mkdir()
    bare(folder / "a.mcap", flight_messages(10))
    write_bag(folder / "b", flight_messages(10))
    (folder / "c.bag.active").write_bytes(b"#ROSBAG V2.0\n")
    (folder / ".partial").mkdir()
    (folder / "photos").mkdir()
    bags, unread = find_bags([folder])
    assert bags == [folder / "a.mcap", folder / "b"]
    assert [line.split(": ", 1)[1] for line in unread] == [
        "not read (hidden)",
        "not read (an unfinished ROS 1 bag: run `rosbag reindex` on it, then rename it to .bag)",
        "not read (a folder without a bag: bags are read one level down)"]
    with pytest.raises(BagError, match="no bags in this folder"):
        find_bags([folder / "photos"])
    result = cli("bag", "info", str(folder))
    assert result.returncode == 0, result.stderr
    assert f"{folder / 'c.bag.active'}: not read" in result.stdout and "pybullet" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_another_writers_mcap_with_compressed_chunks(tmp_path: Path) -> None:
    mcap = pytest.importorskip("mcap.writer")  # the MCAP library Foxglove's tools use (the `test` extra)
    for compression in (mcap.CompressionType.ZSTD, mcap.CompressionType.LZ4):
        path = tmp_path / f"foxglove_{compression.name}.mcap"
        with open(path, "wb") as out:
            writer = mcap.Writer(out, compression=compression, chunk_size=2000)
            writer.start(profile="ros2", library="foxglove")
            channels = {}
            for topic, msgtype, receive, msg in flight_messages(25):
                if topic not in channels:
                    schema = writer.register_schema(msgtype, "ros2msg",
                                                    TYPESTORE.generate_msgdef(msgtype, ros_version=2)[0].encode())
                    channels[topic] = writer.register_channel(topic, "cdr", schema)
                writer.add_message(channels[topic], receive, TYPESTORE.serialize_cdr(msg, msgtype), receive)
            writer.finish()
        flight = read_flight(path)
        assert len(flight.images) == 25, compression
        labels_follow_frames(flight)


# 2. Topics


def test_topics_are_chosen_by_type_and_the_choice_is_said(tmp_path: Path) -> None:
    bag = bare(tmp_path / "px4.mcap", flight_messages(20, image_topic="/drone/front/image", command_topic="/teleop",
                                                      imu_topic="/fmu/imu"))
    auto = TopicConfig(image="auto", command="auto", imu="auto")
    flight = read_flight(bag, auto)
    assert flight.report["topics"] == {"image": "/drone/front/image", "command": "/teleop", "imu": "/fmu/imu",
                                       "camera_info": None}
    assert flight.report["chosen"][0] == "image /drone/front/image (the only Image or CompressedImage)"
    with pytest.raises(BagError) as error:  # the defaults are not there: the bag's topics and the option
        read_flight(bag)
    assert "no image topic '/camera/image_raw'; the bag has: /drone/front/image (sensor_msgs/msg/Image), " \
           "/fmu/imu (sensor_msgs/msg/Imu), /teleop (geometry_msgs/msg/TwistStamped); choose with --image-topic" \
           in str(error.value)
    two = bare(tmp_path / "two.mcap",
               flight_messages(5, image_topic="/left") + flight_messages(5, image_topic="/right"))
    with pytest.raises(BagError, match=r"2 image topics \(/left, /right\): choose one with --image-topic"):
        read_flight(two, auto)
    none = bare(tmp_path / "none.mcap", flight_messages(5, imu_topic=None))
    with pytest.raises(BagError, match="no imu topic .*--imu-topic none for an image-only pilot"):
        read_flight(none, auto)
    assert np.all(read_flight(none, TopicConfig(image="auto", command="auto", imu="none")).imu == 0)


def test_two_commands_from_a_bare_mcap_to_a_replayed_pilot(tmp_path: Path) -> None:
    bag = bare(tmp_path / "flight.mcap", flight_messages(80, image_topic="/front/image", command_topic="/rc/cmd",
                                                         imu_topic="/imu"))
    result = cli("bag", "info", str(bag))
    assert result.returncode == 0, result.stderr
    assert "topics: image /front/image (by type), command /rc/cmd (by type), imu /imu (by type)" in result.stdout
    assert "training would use 80 of 80 frames" in result.stdout and "pybullet" not in result.stdout + result.stderr
    config = tmp_path / "small.yaml"
    config.write_text("pilot: {image_height: 16, image_width: 16, features: 8}\nepochs: 1\nsequence_length: 16\n"
                      "shift: 8\nbatch_size: 4\nthreads: 1\n")
    result = cli("train", "--config", str(config), "--data", str(bag), "--out", str(tmp_path / "p.pt"),
                 "--imu-topic", "none", "--command-frame", "frd")
    assert result.returncode == 0, result.stderr
    assert "an image-only pilot: no IMU input" in result.stderr
    assert "validation: one flight: its last 16 frames" in result.stderr
    from liquid_pilot.nn.checkpoint import load_pilot, read_inputs

    assert load_pilot(tmp_path / "p.pt").config.use_imu is False  # the model truly has no IMU input
    inputs = read_inputs(tmp_path / "p.pt")
    assert inputs["topics"] == {"image": "/front/image", "command": "/rc/cmd", "imu": None, "camera_info": None}
    assert inputs["command_frame"] == "frd" and inputs["preprocessing"] == "centre_crop_resize"
    result = cli("replay", str(tmp_path / "p.pt"), str(bag))  # reads as trained: topics, frames
    assert result.returncode == 0, result.stderr
    assert "topics: image /front/image, command /rc/cmd, no IMU" in result.stdout
    assert "converted: commands from FRD to FLU" in result.stdout and "vx        MAE" in result.stdout


# 3. Time


def test_a_clock_offset_is_detected_and_explained(tmp_path: Path) -> None:
    # Camera and IMU stamped on a sensor's boot clock (from 5 s), the command an unstamped Twist.
    boot = lambda k: 5 * 10**9 + k * PERIOD  # noqa: E731
    bag = bare(tmp_path / "boot.mcap", flight_messages(30, stamp=boot, twist=True))
    with pytest.raises(BagError) as error:
        read_flight(bag, TopicConfig(time_source="header"))
    message = str(error.value)
    assert "the streams are stamped on different clocks: /cmd_vel (no header: receive time) runs 1699999995.000 s " \
           "ahead of /camera/image_raw (header stamps) (a sensor's boot clock, or an unsynchronised computer)" \
           in message
    assert message.endswith("use --time-source receive (or auto) to align them by the time each message was "
                            "recorded") and "\n" not in message
    flight = read_flight(bag)  # auto: the receive times, and why
    assert flight.report["time_source"] == "receive" and len(flight.images) == 30
    labels_follow_frames(flight)
    assert flight.report["notes"][0].startswith("time: the time each message was recorded, not the header stamps")


def test_a_clock_stepping_back_splits_and_is_never_sorted_across(tmp_path: Path) -> None:
    # The clock steps back 1 s after frame 40: frames 40..79 repeat the stamps of frames 20..59.
    def clock(k: int) -> int:
        return EPOCH + (k if k < 40 else k - 20) * PERIOD

    flight = read_flight(bare(tmp_path / "reset.mcap", flight_messages(80, stamp=clock, receive=clock)))
    assert len(flight.images) == 80 and flight.report["image_clock_steps"] == 1
    assert list(np.flatnonzero(flight.dt == 0)) == [0, 40]  # two segments; no dt = 0 inside either
    np.testing.assert_allclose(flight.dt[flight.dt > 0], PERIOD / 1e9)
    assert list(flight.images[:, 0, 0, 0]) == list(range(80))  # never interleaved
    labels_follow_frames(flight)  # each frame labelled from its own stretch


def test_zero_stamps_take_the_receive_time_and_are_counted(tmp_path: Path) -> None:
    stamp = lambda k: 0 if k % 10 == 3 else EPOCH + k * PERIOD + 2_000_000  # noqa: E731 (2 ms before received)
    received = lambda k: EPOCH + k * PERIOD + 4_000_000  # noqa: E731
    flight = read_flight(bare(tmp_path / "zeros.mcap", flight_messages(40, stamp=stamp, receive=received)))
    assert flight.report["image_zero_stamps"] == 4 and flight.report["command_zero_stamps"] == 4
    assert len(flight.images) == 40 and flight.report["gaps"] == 0
    labels_follow_frames(flight)
    assert any(note.startswith("4 image messages on /camera/image_raw have a zero stamp: they took the time they "
                               "were recorded") for note in flight.report["notes"])


# 4. Conventions


def test_samples_that_are_not_finite_are_left_out_and_counted(tmp_path: Path) -> None:
    messages = flight_messages(20)
    messages[3 * 5 + 2][3].angular_velocity.x = float("nan")  # step 5's IMU sample
    flight = read_flight(bare(tmp_path / "nan.mcap", messages))
    assert np.isfinite(flight.imu).all() and len(flight.images) == 20  # frame 5 takes step 4's sample
    assert "1 imu samples on /imu/data are not finite (NaN or infinity): left out" in flight.report["notes"]


def test_frd_commands_and_imu_are_converted_to_flu(tmp_path: Path) -> None:
    bag = bare(tmp_path / "px4.mcap", flight_messages(10))
    flu = read_flight(bag)
    frd = read_flight(bag, TopicConfig(command_frame="frd", imu_frame="frd"))
    np.testing.assert_allclose(frd.commands, flu.commands * [1, -1, -1, -1])
    np.testing.assert_allclose(frd.imu[0], [0.1, -0.2, -0.3, 1.0, -2.0, -9.8], rtol=1e-6)
    with pytest.raises(ValueError, match="command_frame must be one of flu, frd"):
        TopicConfig(command_frame="ned")
    with pytest.raises(ValueError, match="time_source must be one of header, receive, auto"):
        TopicConfig(time_source="gps")


# 5. Honest training


def _flight(frames: int) -> Flight:
    return Flight(bag="one", images=np.zeros((frames, 2, 2, 3), np.uint8), commands=np.zeros((frames, 4), np.float32),
                  imu=np.zeros((frames, 6), np.float32), dt=np.full(frames, 0.05, np.float32),
                  segments=np.zeros(frames, int))


def test_one_flight_holds_out_a_stretch_after_a_gap_or_says_it_cannot() -> None:
    train, val, how = split_flights([_flight(400)], 0.15, seed=0, length=32)
    assert len(train[0].images) == 400 - 60 - 32 and len(val[0].images) == 60
    assert train[0].dt[0] == 0 and val[0].dt[0] == 0
    assert how == "one flight: its last 60 frames (3.0 s) held out for validation, after a gap of 32 frames that " \
                  "neither uses"
    train, val, how = split_flights([_flight(80)], 0.15, seed=0, length=32)
    assert val == [] and len(train[0].images) == 80
    assert how.startswith("no validation: the only flight has 80 frames, too few to train on 32 and hold out 32 "
                          "after a gap of 32 (needs 96); the validation loss is the training loss")


def test_a_short_bag_error_gives_the_counts_and_the_setting(tmp_path: Path) -> None:
    bag = bare(tmp_path / "short.mcap", flight_messages(20))
    result = cli("train", "--data", str(bag), "--out", str(tmp_path / "p.pt"), "--epochs", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no flight segment is 64 frames long: 1 flights, 20 usable frames, the longest training segment 20 " \
           "frames; set sequence_length (in the training config) to at most 20" in result.stderr
    assert "warning: no validation: the only flight has 20 frames" in result.stderr
