"""Files nobody here wrote: every MCAP the reference writer makes, WAL-mode sqlite3 bags, renamed bag folders.

The MCAP variants are written by the reference ``mcap`` package (Foxglove's, the library its tools
use) with each combination of its writer options, in the ros2 profile with CDR messages of our
types; each must read with the right topics, types and counts, and give the frames to training.
"""
from __future__ import annotations

import itertools
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin

from liquid_pilot.harness.bags import TYPESTORE
from liquid_pilot.data.reader import read_flight
from liquid_pilot.data.storage import BagError, find_bags, open_bag, reindex
from test_real_bags import EPOCH, PERIOD, bare, flight_messages, labels_follow_frames

mcap_writer = pytest.importorskip("mcap.writer")  # the `test` extra brings it
STRING = "std_msgs/msg/String"
STEPS = 25
LATE = 18  # /status starts at this step: its channel is first defined far into the data section


def _messages() -> list[tuple[str, str, int, object]]:
    """A flight (frames, commands, IMU) and a topic that starts late, as (topic, type, log ns, message)."""
    out = flight_messages(STEPS)
    out += [("/status", STRING, EPOCH + k * PERIOD + 1, TYPESTORE.types[STRING](data=f"step {k}"))
            for k in range(LATE, STEPS)]
    return sorted(out, key=lambda m: m[2])


EXPECTED = {"/camera/image_raw": ("sensor_msgs/msg/Image", STEPS), "/imu/data": ("sensor_msgs/msg/Imu", STEPS),
            "/cmd_vel": ("geometry_msgs/msg/TwistStamped", STEPS), "/status": (STRING, STEPS - LATE),
            "/diagnostics_json": ("", 2)}


def _write(path: Path, **options: object) -> Path:
    """An MCAP by the reference writer with these options: schemas and channels registered as each topic starts,
    a schemaless JSON channel, an attachment and a metadata record in the data section."""
    with open(path, "wb") as out:
        writer = mcap_writer.Writer(out, chunk_size=3000, **options)
        writer.start(profile="ros2", library="reference mcap writer")
        channels = {}
        for topic, msgtype, stamp, msg in _messages():
            if topic not in channels:
                schema = writer.register_schema(msgtype, "ros2msg",
                                                TYPESTORE.generate_msgdef(msgtype, ros_version=2)[0].encode())
                channels[topic] = writer.register_channel(topic, "cdr", schema)
            writer.add_message(channels[topic], stamp, TYPESTORE.serialize_cdr(msg, msgtype), stamp)
            if stamp == EPOCH + 5 * PERIOD and topic == "/camera/image_raw":
                json = writer.register_channel("/diagnostics_json", "json", 0)  # schemaless (schema id 0)
                for k in range(2):
                    writer.add_message(json, stamp + k, b'{"ok": true}', stamp + k)
                writer.add_attachment(stamp, stamp, "calibration.yaml", "application/yaml", b"fx: 1\n")
                writer.add_metadata("flight", {"pilot": "Alice"})
        writer.finish()
    return path


INDEXES = {"all": mcap_writer.IndexType.ALL, "none": mcap_writer.IndexType.NONE,
           "chunk+message": mcap_writer.IndexType.CHUNK | mcap_writer.IndexType.MESSAGE}
COMPRESSION = {"none": mcap_writer.CompressionType.NONE, "lz4": mcap_writer.CompressionType.LZ4,
               "zstd": mcap_writer.CompressionType.ZSTD}


def _variants() -> list[dict[str, object]]:
    """Every combination of the writer's options (compression only matters with chunks)."""
    out = []
    for chunking, statistics, offsets, channels, schemas, index in itertools.product(
            (True, False), (True, False), (True, False), (True, False), (True, False), INDEXES):
        for compression in (COMPRESSION if chunking else ["none"]):
            out.append({"use_chunking": chunking, "use_statistics": statistics, "use_summary_offsets": offsets,
                        "repeat_channels": channels, "repeat_schemas": schemas, "index_types": index,
                        "compression": compression})
    return out


def test_every_variant_of_the_reference_writer_reads_with_the_right_counts_and_types(tmp_path: Path) -> None:
    variants = _variants()
    assert len(variants) == 192
    wrong = []
    for i, options in enumerate(variants):
        chosen = {**options, "index_types": INDEXES[options["index_types"]],
                  "compression": COMPRESSION[options["compression"]]}
        path = _write(tmp_path / f"v{i}.mcap", **chosen)
        try:
            with open_bag(path) as bag:
                topics = {name: (t.msgtype, t.count) for name, t in bag.topics.items()}
                notes = bag.notes
            flight = read_flight(path)
            labels_follow_frames(flight)
            problems = []
            if topics != EXPECTED:
                problems.append(f"topics {topics}")
            if len(flight.images) != STEPS:
                problems.append(f"{len(flight.images)} frames")
            if any("cut" in note for note in notes):  # every variant is complete: closed by its writer
                problems.append(f"notes {notes}")
        except Exception as exc:  # noqa: BLE001 (any failure of any variant is listed, not just the first)
            problems = [f"{type(exc).__name__}: {exc}"]
        if problems:
            wrong.append(f"{options}: {'; '.join(problems)}")
    assert not wrong, f"{len(wrong)} of {len(variants)} variants read wrong:\n" + "\n".join(wrong[:10])


def test_a_summary_without_channels_reads_fully_and_says_nothing_is_wrong(tmp_path: Path) -> None:
    """The summary's statistics count the messages; the channels are only in the data section, in chunks."""
    path = _write(tmp_path / "no_summary_channels.mcap", repeat_channels=False)
    with open_bag(path) as bag:
        assert bag.notes == [] and not bag.recovered
        assert bag.sources[0].file.indexed  # the counts came from the statistics, not a scan
        assert bag.topics["/status"].count == STEPS - LATE  # defined in a later chunk: still found


def test_a_complete_mcap_without_an_index_gets_a_neutral_note(tmp_path: Path) -> None:
    path = _write(tmp_path / "plain.mcap", use_chunking=False, use_statistics=False, repeat_channels=False,
                  repeat_schemas=False, use_summary_offsets=False, index_types=mcap_writer.IndexType.NONE)
    with open_bag(path) as bag:
        total = sum(t.count for t in bag.topics.values())
        assert bag.notes == [f"plain.mcap is complete but has no index (its writer left the summary out): read by "
                             f"scanning, {total} messages"]
    data = path.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[:len(data) - 40])  # the footer gone: now it is a cut file
    with open_bag(cut) as bag:
        assert "the recording was cut or not closed" in bag.notes[0]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "liquid_pilot.cli", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("option", ["repeat_channels", "repeat_schemas"])
def test_bag_info_on_channels_or_schemas_only_in_the_data_section(option: str, tmp_path: Path) -> None:
    path = _write(tmp_path / f"{option}.mcap", **{option: False})
    result = cli("bag", "info", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert ["/camera/image_raw", "sensor_msgs/msg/Image", str(STEPS), "msgs"] == lines[1][:4]
    assert ["/status", STRING, str(STEPS - LATE), "msgs"] in [line[:4] for line in lines]
    assert "(no type)" not in result.stdout and "note:" not in result.stdout
    assert f"training would use {STEPS} of {STEPS} frames" in result.stdout


# sqlite3: nothing is ever written into a bag folder

MESSAGES_TABLE = """
CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL);
CREATE TABLE metadata(id INTEGER PRIMARY KEY, metadata_version INTEGER NOT NULL, metadata TEXT NOT NULL);
CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,
                    serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL,
                    type_description_hash TEXT NOT NULL);
CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, timestamp INTEGER NOT NULL,
                      data BLOB NOT NULL);
CREATE INDEX timestamp_idx ON messages (timestamp ASC);
"""


def _sqlite_bag(path: Path, steps: int) -> sqlite3.Connection:
    """A WAL-mode bag in rosbag2's sqlite3 schema (as rosbag2 writes since Iron), left open: the caller closes it."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")  # everything stays in the -wal file until the database is closed
    db.executescript(MESSAGES_TABLE)
    db.execute("INSERT INTO schema VALUES (4, 'jazzy')")
    ids = {}
    for topic, msgtype, stamp, msg in flight_messages(steps):
        if topic not in ids:
            ids[topic] = len(ids) + 1
            db.execute("INSERT INTO topics VALUES (?, ?, ?, 'cdr', '', '')", (ids[topic], topic, msgtype))
        db.execute("INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)",
                   (ids[topic], stamp, bytes(TYPESTORE.serialize_cdr(msg, msgtype))))
    db.commit()
    return db


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_a_wal_mode_bag_reads_without_writing_into_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "talker"
    folder.mkdir()
    _sqlite_bag(folder / "talker_0.db3", 30).close()  # closed: checkpointed, the -wal and -shm removed
    assert (folder / "talker_0.db3").read_bytes()[18:20] == b"\x02\x02"  # still a WAL-mode database
    before = _listing(folder)
    flight = read_flight(folder)
    assert len(flight.images) == 30
    labels_follow_frames(flight)
    for _ in range(2):
        result = cli("bag", "info", str(folder))
        assert result.returncode == 0, result.stderr
        assert "not read" not in result.stdout and "training would use 30 of 30 frames" in result.stdout
    assert _listing(folder) == before  # no -shm, no -wal, nothing changed


def test_writes_still_in_the_wal_file_are_read_and_the_files_left_alone(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    writer = _sqlite_bag(live / "rec.db3", 40)  # a recorder killed now: every row is in rec.db3-wal only
    folder = tmp_path / "rec"
    folder.mkdir()
    for name in ("rec.db3", "rec.db3-wal"):  # what a pulled battery leaves: no -shm
        shutil.copyfile(live / name, folder / name)
    writer.close()
    assert (folder / "rec.db3-wal").stat().st_size > 0
    before = _listing(folder)
    with open_bag(folder / "rec.db3") as bag:
        assert bag.topics["/camera/image_raw"].count == 40
        assert any("rec.db3-wal holds writes not yet in rec.db3" in note for note in bag.notes)
    flight = read_flight(folder)
    assert len(flight.images) == 40
    assert _listing(folder) == before


# One rule for a folder of numbered files without metadata.yaml


def test_a_renamed_split_bag_is_one_bag_in_info_train_and_reindex(tmp_path: Path) -> None:
    folder = tmp_path / "renamed_by_hand"
    folder.mkdir()
    messages = flight_messages(50)
    for part in range(5):  # rosbag2 split it into talker_0.mcap .. talker_4.mcap; then the folder was renamed
        bare(folder / f"talker_{part}.mcap", messages[part * 30:(part + 1) * 30])
    bags, unread = find_bags([folder])
    assert bags == [folder] and unread == []
    flight = read_flight(folder)
    assert len(flight.images) == 50 and flight.report["gaps"] == 0
    result = cli("bag", "info", str(folder))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("training would use") == 1 and "training would use 50 of 50 frames" in result.stdout
    info = reindex(folder)["rosbag2_bagfile_information"]
    assert info["relative_file_paths"] == [f"talker_{n}.mcap" for n in range(5)] and info["message_count"] == 150


def test_files_of_different_names_are_bags_of_their_own_and_reindex_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "flights"
    folder.mkdir()
    bare(folder / "morning.mcap", flight_messages(20))
    bare(folder / "evening_0.db3", flight_messages(30), StoragePlugin.SQLITE3)
    bags, _ = find_bags([folder])
    assert bags == [folder / "evening_0.db3", folder / "morning.mcap"]
    numbered = tmp_path / "numbered"  # flights named by hand from 1: not the parts of one split bag
    numbered.mkdir()
    for k in (1, 2):
        bare(numbered / f"flight_{k}.mcap", flight_messages(10))
    assert find_bags([numbered])[0] == [numbered / "flight_1.mcap", numbered / "flight_2.mcap"]
    with pytest.raises(BagError) as error:
        reindex(folder)
    assert "are not the numbered parts of one bag" in str(error.value) and "\n" not in str(error.value)
    result = cli("bag", "reindex", str(folder))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not (folder / "metadata.yaml").exists()
    assert np.array_equal(read_flight(folder / "morning.mcap").images[:, 0, 0, 0], np.arange(20))
