"""The recorder node: chosen topics into rosbag2 MCAP bags, without ``ros2 bag``.

Each topic's type is found in the ROS graph once it has a publisher; the node subscribes
with a QoS that matches all its publishers and writes the serialized bytes as they arrive,
stamped with the node's clock (simulated time under use_sim_time). With ``split_duration``
or ``split_size`` the recording is a folder of complete bags (``NAME_0``, ``NAME_1``, ...);
every bag but the open one is final, and the open one is closed on shutdown (Ctrl-C, SIGTERM).
"""
from __future__ import annotations

import threading
from datetime import datetime
from functools import partial
from pathlib import Path

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rosbags.interfaces import Connection, Qos
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from liquid_pilot.ros.bag import matching_qos, message_class, to_bag_qos
from liquid_pilot.ros.params import Param, declare_parameters
from liquid_pilot.ros.spin import run

TOPICS = ["camera/image_raw", "camera/camera_info", "imu/data", "odom", "cmd_vel", "sim_node/status"]
PARAMETERS = (
    Param("topics", TOPICS, "topics to record (relative names resolve in the node's namespace)"),
    Param("output", "", "folder of the recording; empty: rosbag2_YYYY_MM_DD-HH_MM_SS in the working directory"),
    Param("split_duration", 0.0, "s of recorded time per bag; 0: no split by time", low=0.0, high=86400.0),
    Param("split_size", 0, "bytes of message data per bag; 0: no split by size", low=0, high=2**62),
)
DEPTH = 100  # deep queues: a recorder should lose nothing to a burst


class RecorderNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("recorder_node", **kwargs)
        self.params = p = declare_parameters(self, PARAMETERS)
        self.output = Path(p["output"] or datetime.now().strftime("rosbag2_%Y_%m_%d-%H_%M_%S"))
        if self.output.exists() and (not self.output.is_dir() or any(self.output.iterdir())):
            raise ValueError(f"recorder_node: {self.output} exists and is not an empty folder; not overwriting")
        self._wanted = {self.resolve_topic_name(t) for t in p["topics"]}
        self._typestore = get_typestore(Stores.ROS2_KILTED)
        self._topics: dict[str, tuple[str, list[Qos]]] = {}  # topic -> type, offered QoS
        self._lock = threading.Lock()  # callbacks run on several threads; close may come from another
        self._writer: Writer | None = None
        self._connections: dict[str, Connection] = {}
        self._bag_count = 0
        self._bag_start = 0
        self._bag_bytes = 0
        self._closed = False
        self._skipped: set[str] = set()
        self.counts: dict[str, int] = {}
        # Discovery on the steady clock: under use_sim_time a ROS-time timer would wait for /clock.
        self.create_timer(0.1, self._discover, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f"recording {', '.join(sorted(self._wanted))} into {self.output}")
        self._discover()

    def close(self) -> None:
        """Close the open bag (writes its metadata); later messages are dropped."""
        with self._lock:
            self._closed = True
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self.get_logger().info(f"closed {self.output}: {sum(self.counts.values())} messages in "
                               f"{self._bag_count} bag(s)")

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
                if msgtype not in self._typestore.fielddefs:
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
                    self._add_connection(topic)
            self.create_subscription(cls, topic, partial(self._on_message, topic), matching_qos(offered, DEPTH),
                                     raw=True)
            self.get_logger().info(f"recording {topic} ({msgtype})")

    def _on_message(self, topic: str, data: bytes) -> None:
        stamp = self.get_clock().now().nanoseconds
        if stamp == 0:
            return  # use_sim_time and no /clock yet: there is no time to file it under
        with self._lock:
            if self._closed:
                return
            if self._writer is None or self._split_due(stamp):
                self._open_bag(stamp)
            self._writer.write(self._connections[topic], stamp, data)
            self._bag_bytes += len(data)
            self.counts[topic] += 1

    def _split_due(self, stamp: int) -> bool:
        p = self.params
        return bool((p["split_duration"] and stamp - self._bag_start >= p["split_duration"] * 1e9)
                    or (p["split_size"] and self._bag_bytes >= p["split_size"]))

    def _open_bag(self, stamp: int) -> None:
        if self._writer is not None:
            self._writer.close()
        split = bool(self.params["split_duration"] or self.params["split_size"])
        path = self.output / f"{self.output.name}_{self._bag_count}" if split else self.output
        if path == self.output and self.output.exists():
            self.output.rmdir()  # checked empty at start; the writer creates the folder itself
        self._writer = Writer(path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._bag_count += 1
        self._connections = {}
        for topic in self._topics:
            self._add_connection(topic)
        self._bag_start, self._bag_bytes = stamp, 0

    def _add_connection(self, topic: str) -> None:
        msgtype, offered = self._topics[topic]
        self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self._typestore,
                                                               offered_qos_profiles=offered)


def main(args: list[str] | None = None) -> int:
    return run([RecorderNode], args)


if __name__ == "__main__":
    raise SystemExit(main())
