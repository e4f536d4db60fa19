"""Sensor messages as the pilot takes them: serialized ROS 2 messages -> arrays, trusting nothing.

One decoder for bags (rosbags messages) and live topics (raw subscriptions): both carry the same
fields. Every way an input can be unusable raises ``BadInput`` with a ``kind`` (so each kind of
fault is logged once per burst) and a reason. Compressed images are refused on their header's
pixel count, before any decoding, so a small file that inflates to gigabytes cannot stall flight.

Decoding is bounded in time (``Decoder``): a JPEG much larger than the model's input is decoded at
a half, a quarter or an eighth of its size (libjpeg scales while decoding, several times faster),
and frames of a format and size whose decoding costs more than the decode budget are refused
before decoding, with one line saying so, so the pilot keeps pace with its camera.
"""
from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from liquid_pilot.flight.image import crop_box

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMU_TYPE = "sensor_msgs/msg/Imu"
DEFAULT_MAX_PIXELS = 16_777_216  # 4096 x 4096: above any flight camera, far below a decompression bomb
DEFAULT_DECODE_BUDGET = 0.05  # s of CPU per frame's decoding: within a 16 Hz camera's period with room for the step
SLOW_DECODES = 2  # decodes over the budget in a row before frames of that format and size are refused unread
REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
FLOAT32_MAX = float(np.finfo(np.float32).max)

# Encoding -> (channels, conversion to RGB or None when already RGB).
ENCODINGS = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
}


# The few message types flight decodes (their standard ROS 2 definitions): a store of these alone is
# built in milliseconds, where every ROS 2 Kilted type (``TYPESTORE``, built on first use) takes a
# quarter of a second of the pilot's start-up.
FLIGHT_MESSAGES = {
    "builtin_interfaces/msg/Time": "int32 sec\nuint32 nanosec",
    "std_msgs/msg/Header": "builtin_interfaces/Time stamp\nstring frame_id",
    "geometry_msgs/msg/Vector3": "float64 x\nfloat64 y\nfloat64 z",
    "geometry_msgs/msg/Quaternion": "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1",
    IMAGE_TYPE: "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n"
                "uint32 step\nuint8[] data",
    COMPRESSED_TYPE: "std_msgs/Header header\nstring format\nuint8[] data",
    IMU_TYPE: "std_msgs/Header header\ngeometry_msgs/Quaternion orientation\nfloat64[9] orientation_covariance\n"
              "geometry_msgs/Vector3 angular_velocity\nfloat64[9] angular_velocity_covariance\n"
              "geometry_msgs/Vector3 linear_acceleration\nfloat64[9] linear_acceleration_covariance",
}
FLIGHT_TYPES = get_typestore(Stores.EMPTY)
for _name, _text in FLIGHT_MESSAGES.items():
    FLIGHT_TYPES.register(get_types_from_msg(_text, _name))
_full_store: list = []


def __getattr__(name: str) -> Any:
    """``TYPESTORE``: every ROS 2 Kilted message type (for bags), built on first use."""
    if name == "TYPESTORE":
        if not _full_store:
            _full_store.append(get_typestore(Stores.ROS2_KILTED))
        return _full_store[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def warm_up() -> None:
    """Build the decoders of the flight types now.

    rosbags compiles each on first use (20 ms or more under load): warmed up, the first IMU sample and
    frame after start-up are decoded as fast as the rest.
    """
    t = FLIGHT_TYPES.types
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id="")
    vector, nothing = t["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0), np.zeros(0, np.uint8)
    messages = {
        IMAGE_TYPE: t[IMAGE_TYPE](header=header, height=0, width=0, encoding="", is_bigendian=0, step=0,
                                  data=nothing),
        COMPRESSED_TYPE: t[COMPRESSED_TYPE](header=header, format="", data=nothing),
        IMU_TYPE: t[IMU_TYPE](header=header, orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
                              orientation_covariance=np.zeros(9), angular_velocity=vector,
                              angular_velocity_covariance=np.zeros(9), linear_acceleration=vector,
                              linear_acceleration_covariance=np.zeros(9)),
    }
    for msgtype, msg in messages.items():
        from_cdr(bytes(FLIGHT_TYPES.serialize_cdr(msg, msgtype)), msgtype, "decode")


class BadInput(ValueError):
    """An input the pilot must not fly on; ``kind`` names the fault, the message says why."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def from_cdr(data: bytes, msgtype: str, kind: str) -> Any:
    """Decode a serialized message (from a raw subscription or a bag), or raise BadInput of ``kind``.

    rosbags' decoder builds a plain message three to four times faster than rclpy's conversion;
    its messages have the same fields.
    """
    store = FLIGHT_TYPES if msgtype in FLIGHT_MESSAGES else __getattr__("TYPESTORE")
    try:
        return store.deserialize_cdr(data, msgtype)
    except (SerdeError, ValueError, IndexError, struct.error) as exc:
        raise BadInput(kind, f"undecodable {msgtype} message ({len(data)} bytes): {exc}") from None


def stamp_ns(stamp: Any) -> int:
    """Nanoseconds of a builtin_interfaces/Time (rclpy's or rosbags')."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    if width * height > max_pixels:
        raise BadInput("image_too_large", f"{what} is {width}x{height} = {width * height:,} pixels, over the limit "
                                          f"of {max_pixels:,} (max_image_pixels): refused before decoding")


def raw_to_rgb(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Return an (H, W, 3) uint8 RGB copy of a sensor_msgs/Image, or raise BadInput."""
    encoding = msg.encoding.lower()
    if encoding not in ENCODINGS:
        raise BadInput("encoding", f"image encoding {msg.encoding!r} is not supported; "
                                   f"use one of {', '.join(ENCODINGS)}")
    if len(msg.data) == 0 or msg.width == 0 or msg.height == 0:
        raise BadInput("empty", f"empty image ({msg.width}x{msg.height}, {len(msg.data)} bytes)")
    _check_pixels(msg.width, msg.height, max_pixels, "image")
    channels, conversion = ENCODINGS[encoding]
    row = msg.width * channels
    if msg.step < row or len(msg.data) != msg.step * msg.height:
        raise BadInput("size", f"{len(msg.data)} bytes with step {msg.step} do not make a {msg.width}x{msg.height} "
                               f"{encoding} image (expected step >= {row} and step x height bytes)")
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
    pixels = rows[:, :row].reshape(msg.height, msg.width, channels)
    if conversion is None:
        return pixels.copy()
    return cv2.cvtColor(np.ascontiguousarray(pixels), conversion)


def compressed_size(data: bytes | np.ndarray) -> tuple[str, int, int]:
    """Format, width and height of a PNG or JPEG from its header alone, or raise BadInput."""
    head = bytes(data[:32])
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24 and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return "png", width, height
    if head.startswith(b"\xff\xd8"):
        buf = memoryview(bytes(data)) if not isinstance(data, bytes) else memoryview(data)
        i, n = 2, len(buf)
        while i + 4 <= n:
            if buf[i] != 0xFF:
                break
            marker = buf[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
                i += 2
                continue
            length = (buf[i + 2] << 8) | buf[i + 3]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                if i + 9 > n:
                    break
                height = (buf[i + 5] << 8) | buf[i + 6]
                width = (buf[i + 7] << 8) | buf[i + 8]
                return "jpeg", width, height
            if marker == 0xDA or length < 2:  # scan data before any frame header: malformed
                break
            i += 2 + length
        raise BadInput("decode", f"JPEG of {len(data)} bytes has no readable frame header")
    raise BadInput("decode", f"compressed image of {len(data)} bytes is neither PNG nor JPEG; jpeg and png are read")


def reduction(fmt: str, width: int, height: int, target: tuple[int, int] | None) -> int:
    """Choose how much to shrink a JPEG while decoding it, 1, 2, 4 or 8, for a model input (height, width).

    The largest whose decoded frame, centre-cropped to the model's aspect ratio, still has twice the
    model's rows and columns, so the area resize that follows (``flight.image.fit``) still averages
    and the model sees what a full decode would give it. Other formats, or no target: 1.
    """
    if fmt != "jpeg" or target is None:
        return 1
    _, _, h, w = crop_box(height, width, target)
    for factor in (8, 4, 2):
        if h // factor >= 2 * target[0] and w // factor >= 2 * target[1]:
            return factor
    return 1


def compressed_to_rgb(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS, factor: int = 1) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG, PNG) to (H, W, 3) uint8 RGB, or raise BadInput.

    ``factor`` (2, 4, 8): decode a JPEG at that fraction of its size (``reduction``).
    """
    if len(msg.data) == 0:
        raise BadInput("empty", "empty compressed image")
    fmt, width, height = compressed_size(msg.data)
    if width == 0 or height == 0:
        raise BadInput("empty", f"{fmt} header says {width}x{height}")
    _check_pixels(width, height, max_pixels, f"{fmt} image")
    bgr = cv2.imdecode(np.frombuffer(msg.data, np.uint8), REDUCED.get(factor, cv2.IMREAD_COLOR))
    if bgr is None:
        raise BadInput("decode", f"compressed image ({msg.format!r}, {len(msg.data)} bytes) could not be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class Decoder:
    """Image messages to RGB for a model's input, in bounded time; one per camera stream.

    ``target``: the model's input (height, width), for reduced JPEG decoding (None: full size).
    ``budget``: s of CPU time one frame's decoding may take (``timer``: the decoding thread's CPU
    clock, so a busy machine does not count against a frame). A format and size decoded over the
    budget ``SLOW_DECODES`` times in a row is refused before decoding from then on, and so is every
    frame that was decoded over it: the pilot never flies a frame that kept it from the next.
    """

    def __init__(self, target: tuple[int, int] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 budget: float = DEFAULT_DECODE_BUDGET, timer: Callable[[], int] = time.thread_time_ns):
        self.target = target
        self.max_pixels = max_pixels
        self.budget = budget
        self.timer = timer
        self.costs: dict[tuple[str, int, int, int], float] = {}  # (format, width, height, factor) -> last cost, s
        self._slow: dict[tuple[str, int, int, int], int] = {}  # decodes over the budget in a row
        self.last_factor = 1  # the reduction of the last decoded frame
        self.last_size = (0, 0)  # its width and height before any reduction
        self.png_ns_per_pixel: float | None = None  # this machine's PNG decoding speed (``calibrate``)

    def __call__(self, msg: Any, msgtype: str) -> np.ndarray:
        """RGB of an Image or CompressedImage message (by its type name), or raise BadInput."""
        if not (msgtype == COMPRESSED_TYPE or msgtype.endswith("CompressedImage")):
            rgb = raw_to_rgb(msg, self.max_pixels)
            self.last_factor, self.last_size = 1, (rgb.shape[1], rgb.shape[0])
            return rgb
        if len(msg.data) == 0:
            raise BadInput("empty", "empty compressed image")
        fmt, width, height = compressed_size(msg.data)
        factor = reduction(fmt, width, height, self.target)
        key = (fmt, width, height, factor)
        if self._slow.get(key, 0) >= SLOW_DECODES and self.costs[key] > self.budget:
            raise self._too_slow(key, "refused before decoding")
        if fmt == "png" and self.png_ns_per_pixel is not None and key not in self.costs:
            estimate = width * height * self.png_ns_per_pixel / 1e9
            if estimate > 2 * self.budget:
                raise BadInput("decode_slow", f"{width}x{height} png frames would take about {estimate * 1e3:.0f} ms "
                                              f"of CPU to decode here, over decode_budget ({self.budget * 1e3:.0f} "
                                              "ms), and PNG cannot be decoded at a reduced size: refused before "
                                              "decoding, so the pilot keeps pace with the camera; publish JPEG "
                                              "(decoded here at reduced size) or smaller frames")
        start = self.timer()
        rgb = compressed_to_rgb(msg, self.max_pixels, factor)
        cost = (self.timer() - start) / 1e9
        self.costs[key] = cost
        self.last_factor, self.last_size = factor, (width, height)
        if cost > self.budget:
            self._slow[key] = self._slow.get(key, 0) + 1
            raise self._too_slow(key, "refused")
        self._slow.pop(key, None)
        return rgb

    def calibrate(self, size: int = 256) -> float:
        """Measure this machine's PNG decoding speed (ns of CPU per pixel) on a camera-like picture; a few ms."""
        y, x = np.mgrid[0:size, 0:size] / size
        picture = np.stack([128 + 100 * np.sin(6 * x), 128 + 100 * np.cos(5 * y), 255 * (x > y)], -1)
        data = np.frombuffer(cv2.imencode(".png", picture.astype(np.uint8))[1].tobytes(), np.uint8)
        best = None
        for _ in range(3):
            start = self.timer()
            cv2.imdecode(data, cv2.IMREAD_COLOR)
            cost = self.timer() - start
            best = cost if best is None else min(best, cost)
        self.png_ns_per_pixel = best / (size * size)
        return self.png_ns_per_pixel

    def _too_slow(self, key: tuple[str, int, int, int], what: str) -> BadInput:
        fmt, width, height, factor = key
        scale = f" at 1/{factor} size" if factor > 1 else ""
        hint = ("publish JPEG (decoded here at reduced size) or smaller frames" if fmt == "png" else
                "publish smaller frames")
        cost, budget = self.costs[key] * 1e3, self.budget * 1e3
        return BadInput("decode_slow", f"{width}x{height} {fmt} frames take {cost:.0f} ms of CPU to decode{scale}, "
                                       f"over decode_budget ({budget:.0f} ms): {what}, so the pilot keeps pace with "
                                       f"the camera; {hint}")


def image_to_rgb(msg: Any, msgtype: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """RGB of a decoded Image or CompressedImage message, by its type name."""
    if msgtype == COMPRESSED_TYPE or msgtype.endswith("CompressedImage"):
        return compressed_to_rgb(msg, max_pixels)
    return raw_to_rgb(msg, max_pixels)


def imu_to_array(msg: Any) -> np.ndarray:
    """[gyro xyz rad/s, accel xyz m/s^2] of a sensor_msgs/Imu as float32, or raise BadInput on NaN or infinity.

    Finite but implausible samples are the gate's to judge (``flight.gate``), against the IMU's range.
    """
    w, a = msg.angular_velocity, msg.linear_acceleration
    values = (w.x, w.y, w.z, a.x, a.y, a.z)
    # On plain floats, a third of the cost of numpy's checks; NaN fails the comparison, and values
    # beyond float32's range, infinite once converted, are refused too.
    if not all(abs(v) <= FLOAT32_MAX for v in values):
        raise BadInput("imu_invalid", f"IMU sample is not finite: {list(values)}")
    return np.array(values, dtype=np.float32)
