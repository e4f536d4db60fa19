"""Conversions between ROS messages and the arrays the pilot and the simulator use.

Decoding never trusts a message: every way an image or an IMU sample can be unusable
raises ``BadInput`` with a ``kind`` (for logging each kind of fault once) and a reason.
"""
from __future__ import annotations


import cv2
import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu

from liquid_pilot.sim.camera import pinhole

# Encoding -> (channels, conversion to RGB or None when already RGB).
ENCODINGS = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
}


class BadInput(ValueError):
    """An input the pilot must not fly on; ``kind`` names the fault, the message says why."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def image_to_rgb(msg: Image) -> np.ndarray:
    """Return an (H, W, 3) uint8 RGB copy of a raw image, or raise BadInput."""
    encoding = msg.encoding.lower()
    if encoding not in ENCODINGS:
        raise BadInput("encoding", f"image encoding {msg.encoding!r} is not supported; "
                                   f"use one of {', '.join(ENCODINGS)}")
    if len(msg.data) == 0 or msg.width == 0 or msg.height == 0:
        raise BadInput("empty", f"empty image ({msg.width}x{msg.height}, {len(msg.data)} bytes)")
    channels, conversion = ENCODINGS[encoding]
    row = msg.width * channels
    if msg.step < row or len(msg.data) != msg.step * msg.height:
        raise BadInput("size", f"{len(msg.data)} bytes with step {msg.step} do not make a {msg.width}x{msg.height} "
                               f"{encoding} image (expected step >= {row} and step x height bytes)")
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
    pixels = np.ascontiguousarray(rows[:, :row].reshape(msg.height, msg.width, channels))
    return pixels.copy() if conversion is None else cv2.cvtColor(pixels, conversion)


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """Decode a JPEG/PNG image to (H, W, 3) uint8 RGB, or raise BadInput."""
    if len(msg.data) == 0:
        raise BadInput("empty", "empty compressed image")
    bgr = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise BadInput("decode", f"compressed image ({msg.format!r}, {len(msg.data)} bytes) could not be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def imu_to_array(msg: Imu) -> np.ndarray:
    """[gyro xyz rad/s, accel xyz m/s^2] as float32, or raise BadInput on NaN or infinity."""
    w, a = msg.angular_velocity, msg.linear_acceleration
    values = np.array([w.x, w.y, w.z, a.x, a.y, a.z], dtype=np.float32)
    if not np.all(np.isfinite(values)):
        raise BadInput("imu_invalid", f"IMU sample is not finite: {values.tolist()}")
    return values


def stamp_ns(stamp: TimeMsg) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def time_msg(ns: int) -> TimeMsg:
    return TimeMsg(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def rgb_to_image(rgb: np.ndarray, stamp: TimeMsg, frame_id: str) -> Image:
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0, step=rgb.shape[1] * 3)
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.data = rgb.tobytes()
    return msg


def camera_info(width: int, height: int, vfov: float, stamp: TimeMsg, frame_id: str) -> CameraInfo:
    """Describe a pinhole camera with square pixels and no distortion from its vertical field of view (rad)."""
    f, cx, cy = pinhole(width, height, vfov)
    msg = CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=[0.0] * 5)
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.k = [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg
