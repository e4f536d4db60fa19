"""Conversions between rclpy messages and the arrays the pilot and the simulator use.

Decoding serialized sensor messages is the flight core's (``liquid_pilot.flight.codec``); its
functions are re-exported here for the ROS modules.
"""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from sensor_msgs.msg import CameraInfo, Image

from liquid_pilot.flight.codec import BadInput, from_cdr, imu_to_array, stamp_ns  # noqa: F401 (re-exported)
from liquid_pilot.flight.image import pinhole


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
