"""Shared by the ROS benchmarks (no benchmark here): camera frames serialized once, sent with a fresh stamp."""
from __future__ import annotations

import struct
from collections.abc import Iterable

from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage, Image


class Frames:
    """Serialized camera messages (Image or CompressedImage), published with a fresh stamp patched in.

    Converting a large Python message costs more than a camera driver pays (about 10 ms for 1280x720),
    so each message is serialized once up front; ``stamped`` writes the stamp into the bytes: the
    header's first field, after the 4-byte CDR encapsulation header.
    """

    def __init__(self, messages: Iterable[Image | CompressedImage], name: str = ""):
        self.name = name
        self.data = []
        for msg in messages:
            data = serialize_message(msg)
            assert data[:4] == b"\x00\x01\x00\x00", "expected little-endian CDR"
            self.data.append((data[:4], data[12:]))

    def stamped(self, k: int, stamp: int) -> bytes:
        """Return frame ``k`` (modulo their number) stamped ``stamp`` (ns), ready for ``publish``."""
        head, tail = self.data[k % len(self.data)]
        return b"".join((head, struct.pack("<iI", stamp // 1_000_000_000, stamp % 1_000_000_000), tail))
