"""The recorder node: chosen topics into one rosbag2 bag of MCAP files, without ``ros2 bag``, crash-safe.

Each topic's type is found in the ROS graph once it has a publisher; the node subscribes
with a QoS that matches all its publishers and writes the serialized bytes as they arrive,
stamped with the node's clock (simulated time under use_sim_time).

The folder it names is one rosbag2 bag, as ``ros2 bag record`` writes it: ``NAME/NAME_0.mcap``,
``NAME_1.mcap`` (one file per ``split_duration`` of recorded time or ``split_size`` bytes) and
``NAME/metadata.yaml``, rewritten whenever a file or topic is added and every few seconds.
Messages are written in small MCAP chunks, each on disk (flushed and synced) at most
``flush_period`` after its first message, so a recorder killed at any moment (SIGKILL, a
battery pulled) loses at most that much: the open file lacks only its index, and
``liquid-pilot`` reads it as it is (``bag reindex`` rewrites the metadata). Ctrl-C and SIGTERM
close the bag completely. ``/diagnostics`` reports messages, bytes, what was not recorded and the disk's
free space (``liquid_pilot.ros.diagnostics.recorder_report``). Under use_sim_time, messages that arrive
before the first /clock (it is best effort, and it races the first messages) are held in memory and
filed under the first simulated time the node hears; a warning says so if none comes, and what never got a time
(no /clock at all, or more than ``HOLD_BYTES`` waiting) is counted as not recorded.
"""
from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

import yaml
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rosbags.interfaces import Qos
from rosbags.rosbag2.metadata import dump_qos_v9

from liquid_pilot.data.mcap import McapWriter
from liquid_pilot.data.storage import Topic, metadata_for, write_metadata
from liquid_pilot.flight.codec import TYPESTORE
from liquid_pilot.ros.bag import matching_qos, message_class, to_bag_qos
from liquid_pilot.ros.diagnostics import QosProblems, Report, Reporter, recorder_report
from liquid_pilot.ros.params import declare_parameters, params_from
from liquid_pilot.ros.spin import run
from liquid_pilot.settings import Range, check_fields, setting

TOPICS = ["camera/image_raw", "camera/camera_info", "imu/data", "odom", "cmd_vel", "sim_node/status"]


@dataclass(frozen=True)
class RecorderSettings:
    """recorder_node's settings, each documented and bounded once: its ROS parameters are made of them."""

    topics: list[str] = setting(help="topics to record (relative names resolve in the node's namespace)",
                                factory=lambda: list(TOPICS))
    output: str = setting("", "folder of the recording; empty: rosbag2_YYYY_MM_DD-HH_MM_SS in the working directory")
    split_duration: float = setting(60.0, "s of recorded time per file; 0: no split by time", Range(0.0, 86400.0))
    split_size: int = setting(0, "bytes of message data per file; 0: no split by size", Range(0, 2**62))
    flush_period: float = setting(0.5, "s: the longest a received message waits in memory before it is on disk",
                                  Range(0.05, 60.0))

    def __post_init__(self) -> None:
        check_fields(self, "recorder_node parameter ")


PARAMETERS = params_from(RecorderSettings)
DEPTH = 100  # deep queues: a recorder should lose nothing to a burst
CHUNK_SIZE = 256 * 1024  # bytes: a chunk this full is written at once
METADATA_PERIOD_S = 2.0  # metadata.yaml is rewritten at least this often while messages arrive
NO_CLOCK_WARNING_S = 2.0  # under use_sim_time, warn when messages have waited this long for a /clock
HOLD_BYTES = 256 * 1024 * 1024  # at most this much message data waits for the first /clock; later arrivals are lost


class RecorderNode(Node):
    """Records chosen topics into one rosbag2 bag (MCAP, split, its metadata kept current; crash-safe)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("recorder_node", **kwargs)
        self.params = p = declare_parameters(self, PARAMETERS)
        self.output = Path(p["output"] or datetime.now().strftime("rosbag2_%Y_%m_%d-%H_%M_%S"))
        if self.output.exists() and (not self.output.is_dir() or any(self.output.iterdir())):
            raise ValueError(f"recorder_node: {self.output} exists and is not an empty folder; not overwriting")
        self.output.mkdir(parents=True, exist_ok=True)
        self._wanted = {self.resolve_topic_name(t) for t in p["topics"]}
        self._topics: dict[str, tuple[str, list[Qos]]] = {}  # topic -> type, offered QoS
        self._lock = threading.Lock()  # callbacks run on several threads; close may come from another
        self._writer: McapWriter | None = None
        self._channels: dict[str, int] = {}  # topic -> channel of the open file
        self._files: list[tuple[str, int, int, int]] = []  # closed files: name, first ns, last ns, count
        self._file_start = 0
        self._file_bytes = 0
        self._metadata_written = 0.0
        self._closed = False
        self._skipped: set[str] = set()
        self.counts: dict[str, int] = {}
        self.bytes = 0  # message bytes written
        self.qos = QosProblems(self)
        self.unclocked = 0  # messages lost under use_sim_time for want of a /clock (beyond HOLD_BYTES, or none came)
        self._held: list[tuple[str, bytes]] = []  # (topic, data) that arrived before the first /clock, in order
        self._held_bytes = 0
        self._unclocked_since: float | None = None
        self._warned_at = 0.0
        self.warnings: list[str] = []  # what the node warned about, as logged
        # Discovery and flushing on the steady clock: under use_sim_time a ROS-time timer would wait for /clock.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(0.1, self._discover, clock=steady)
        self.create_timer(min(0.1, p["flush_period"] / 2), self._tick, clock=steady)
        self._write_metadata()  # the folder is a (still empty) bag from the start
        self.get_logger().info(f"recording {', '.join(sorted(self._wanted))} into {self.output}")
        self.diagnostics = Reporter(self, "recorder", str(self.output.resolve()), self._diagnostics)
        self._discover()

    @property
    def files(self) -> list[Path]:
        """The bag's storage files so far."""
        names = [name for name, *_ in self._files] + ([self._writer.path.name] if self._writer else [])
        return [self.output / name for name in names]

    @property
    def waiting_for_clock(self) -> int:
        """How many messages are held, under use_sim_time, until the first /clock gives them a time."""
        return len(self._held)

    def close(self) -> None:
        """Close the open file (its index) and write the final metadata; later messages are dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.unclocked += len(self._held)  # no /clock ever came: there is no time to file them under
            self._held, self._held_bytes = [], 0
            self._close_file()
            self._write_metadata()
        lost = (f"; {self.unclocked} messages not recorded: under use_sim_time they arrived with no /clock to file "
                f"them under" if self.unclocked else "")
        log = self.get_logger().warning if self.unclocked else self.get_logger().info
        log(f"closed {self.output}: {sum(self.counts.values())} messages in {len(self._files)} file(s){lost}")

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()

    def _discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic not in self._wanted or topic in self._topics:
                continue
            publishers = self.get_publishers_info_by_topic(topic)
            if not publishers:
                continue  # only subscribers so far: no type or QoS to match yet
            msgtype = types[0]
            try:
                cls = message_class(msgtype)
                if msgtype not in TYPESTORE.fielddefs:
                    raise ValueError(msgtype)
            except ValueError:
                if topic not in self._skipped:
                    self._skipped.add(topic)
                    self.get_logger().error(f"cannot record {topic}: type {msgtype} is not known here")
                continue
            offered = [to_bag_qos(info.qos_profile) for info in publishers]
            with self._lock:
                self._topics[topic] = (msgtype, offered)
                self.counts[topic] = 0
                if self._writer is not None:
                    self._add_channel(topic)
                self._write_metadata()
            qos = matching_qos(offered, DEPTH)
            self.create_subscription(cls, topic, partial(self._on_message, topic), qos, raw=True,
                                     event_callbacks=self.qos.callbacks(topic, qos))
            self.get_logger().info(f"recording {topic} ({msgtype})")

    def _on_message(self, topic: str, data: bytes) -> None:
        stamp = self.get_clock().now().nanoseconds
        with self._lock:
            if self._closed:
                return
            if stamp == 0:  # use_sim_time and no /clock yet: held until there is a time to file it under
                if self._held_bytes + len(data) <= HOLD_BYTES:
                    self._held.append((topic, data))
                    self._held_bytes += len(data)
                else:
                    self.unclocked += 1
                self._unclocked_since = self._unclocked_since or time.monotonic()
                return
            self._file_held(stamp)
            self._write(topic, stamp, data)

    def _write(self, topic: str, stamp: int, data: bytes) -> None:
        if self._writer is None or self._split_due(stamp):
            self._open_file(stamp)
        self._writer.write(self._channels[topic], stamp, data)
        self._file_bytes += len(data)
        self.bytes += len(data)
        self.counts[topic] += 1

    def _file_held(self, stamp: int) -> None:
        """File what arrived before the first /clock under ``stamp``, the first simulated time heard (locked)."""
        held, self._held, self._held_bytes = self._held, [], 0
        for topic, data in held:
            self._write(topic, stamp, data)

    def _tick(self) -> None:
        """Put what waits in memory on disk once it is ``flush_period`` old; keep the metadata current; warn."""
        now_ns = self.get_clock().now().nanoseconds
        with self._lock:
            if self._closed:
                return
            if now_ns and self._held:  # the first /clock came, and no message since to file them with
                self._file_held(now_ns)
            if self._writer is not None and self._writer.tick() \
                    and time.monotonic() - self._metadata_written >= METADATA_PERIOD_S:
                self._write_metadata()
        if now_ns:
            self._unclocked_since = None  # the clock runs (now)
        since = self._unclocked_since
        now = time.monotonic()
        if since is not None and now - since >= NO_CLOCK_WARNING_S and now - self._warned_at >= 10.0:
            self._warned_at = now
            self.warnings.append(
                f"use_sim_time is on and no /clock has arrived: {len(self._held)} messages wait for one (and "
                f"{self.unclocked} could not: not recorded); start the simulator or a /clock publisher, or set "
                f"use_sim_time false")
            self.get_logger().warning(self.warnings[-1])

    def _diagnostics(self) -> Report:
        """Return the recorder's /diagnostics report."""
        try:
            free = shutil.disk_usage(self.output).free
        except OSError:
            free = None
        with self._lock:
            counts, held = dict(self.counts), len(self._held)
        return recorder_report(sum(counts.values()), self.bytes, self.unclocked, free, counts, held, self.qos.lines())

    def _split_due(self, stamp: int) -> bool:
        p = self.params
        return bool((p["split_duration"] and stamp - self._file_start >= p["split_duration"] * 1e9)
                    or (p["split_size"] and self._file_bytes >= p["split_size"]))

    def _open_file(self, stamp: int) -> None:
        self._close_file()
        path = self.output / f"{self.output.name}_{len(self._files)}.mcap"
        self._writer = McapWriter(path, chunk_size=CHUNK_SIZE, flush_period_s=self.params["flush_period"])
        self._channels = {}
        for topic in self._topics:
            self._add_channel(topic)
        self._file_start, self._file_bytes = stamp, 0
        self._write_metadata()

    def _close_file(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        count = sum(writer.counts.values())
        entry = (writer.path.name, writer.start_ns if count else 0, writer.end_ns if count else 0, count)
        self._files.append(entry)
        info = self._metadata()["rosbag2_bagfile_information"]
        writer.close(rosbag2_metadata=yaml.safe_dump(info, sort_keys=False))

    def _add_channel(self, topic: str) -> None:
        msgtype, offered = self._topics[topic]
        schema = self._writer.add_schema(msgtype, "ros2msg", TYPESTORE.generate_msgdef(msgtype, ros_version=2)[0])
        qos = yaml.safe_dump(dump_qos_v9(offered), sort_keys=False).strip()
        self._channels[topic] = self._writer.add_channel(topic, schema, "cdr", {"offered_qos_profiles": qos})

    def _metadata(self) -> dict:
        files = list(self._files)
        writer = self._writer
        if writer is not None:
            count = sum(writer.counts.values())
            files.append((writer.path.name, writer.start_ns if count else 0, writer.end_ns if count else 0, count))
        topics = [Topic(name, msgtype, self.counts[name], "cdr", offered)
                  for name, (msgtype, offered) in self._topics.items()]
        return metadata_for(files, topics, "mcap")

    def _write_metadata(self) -> None:
        write_metadata(self.output, self._metadata())
        self._metadata_written = time.monotonic()


def main(args: list[str] | None = None) -> int:
    return run([RecorderNode], args)


if __name__ == "__main__":
    raise SystemExit(main())
