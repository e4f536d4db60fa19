"""Camera images as the pilot takes them: sensor_msgs Image / CompressedImage fields -> RGB arrays.

One decoder for bags (rosbags messages) and live topics (rclpy messages): both carry the same
fields. Nothing is trusted; every way an image can be unusable raises ``BadInput``.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

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


def raw_to_rgb(msg: Any) -> np.ndarray:
    """Return an (H, W, 3) uint8 RGB copy of a sensor_msgs/Image, or raise BadInput."""
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


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG, PNG) to (H, W, 3) uint8 RGB, or raise BadInput."""
    if len(msg.data) == 0:
        raise BadInput("empty", "empty compressed image")
    bgr = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise BadInput("decode", f"compressed image ({msg.format!r}, {len(msg.data)} bytes) could not be decoded; "
                                 "jpeg and png are read")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
