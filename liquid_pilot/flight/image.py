"""The one image preprocessing, for training and for flight, and the camera geometry it implies.

A frame of any size becomes the model's input by an aspect-preserving centre crop to the
model's aspect ratio, then an area resize. Training (``data.reader``) and flight (the gate's
users) call the same ``fit``; nothing is squashed. A checkpoint records the field of view of
its training camera as seen by the model (after the crop), so a flight camera that differs
can be named in one warning.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

PREPROCESSING = "centre_crop_resize"  # the name checkpoints record
FOV_TOLERANCE = 0.1  # relative difference of field of view (or aspect ratio) worth a warning


def pinhole(width: int, height: int, vfov: float) -> tuple[float, float, float]:
    """Return the focal length and principal point (f, cx, cy), in pixels, of an ideal camera.

    ``vfov`` is the vertical field of view (rad); pixel centres sit at whole coordinates, as in
    OpenCV and ROS.
    """
    return (height / 2) / math.tan(vfov / 2), (width - 1) / 2, (height - 1) / 2


def camera_matrices(width: int, height: int, vfov: float) -> dict[str, list[float]]:
    """Return the CameraInfo fields of an ideal pinhole camera (no distortion): ``d``, ``k``, ``r`` and ``p``.

    The one description of the camera whatever writes the message (rclpy's or rosbags' CameraInfo).
    """
    f, cx, cy = pinhole(width, height, vfov)
    return {"d": [0.0] * 5, "k": [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0],
            "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            "p": [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]}


def crop_box(height: int, width: int, target: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the largest centred crop with the target's aspect ratio."""
    th, tw = target
    if width * th > height * tw:  # wider than the target: crop the sides
        w = max(1, round(height * tw / th))
        return 0, (width - w) // 2, height, w
    h = max(1, round(width * th / tw))
    return (height - h) // 2, 0, h, width


def fit(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (size[0], size[1], 3): centre crop to the target aspect, then area resize.

    A frame already of the target size is returned as it is.
    """
    height, width = rgb.shape[:2]
    if (height, width) == tuple(size):
        return rgb
    top, left, h, w = crop_box(height, width, size)
    cropped = rgb[top:top + h, left:left + w]
    interpolation = cv2.INTER_AREA if h >= size[0] else cv2.INTER_LINEAR  # area when shrinking
    return cv2.resize(np.ascontiguousarray(cropped), (size[1], size[0]), interpolation=interpolation)


def fov_from_intrinsics(width: int, height: int, fx: float, fy: float) -> tuple[float, float]:
    """Horizontal and vertical field of view (degrees) of a pinhole camera."""
    return (math.degrees(2 * math.atan(width / (2 * fx))), math.degrees(2 * math.atan(height / (2 * fy))))


def fov_after_fit(width: int, height: int, fx: float, fy: float, size: tuple[int, int]) -> tuple[float, float]:
    """Field of view (degrees, horizontal and vertical) that the model sees of this camera after ``fit``."""
    _, _, h, w = crop_box(height, width, size)
    return fov_from_intrinsics(w, h, fx, fy)


def camera_mismatch(width: int, height: int, size: tuple[int, int], seen_fov: tuple[float, float] | None,
                    trained_fov: tuple[float, float] | None) -> str | None:
    """Return a one-line warning when a camera differs from training in aspect ratio or field of view, else None."""
    notes = []
    aspect, model_aspect = width / height, size[1] / size[0]
    if abs(aspect / model_aspect - 1) > FOV_TOLERANCE:
        notes.append(f"frames are {width}x{height} (aspect {aspect:.2f}) and are centre-cropped to the model's "
                     f"aspect {model_aspect:.2f}")
    if seen_fov is not None and trained_fov is not None and any(
            abs(s / t - 1) > FOV_TOLERANCE for s, t in zip(seen_fov, trained_fov)):
        notes.append(f"after the crop the camera sees {seen_fov[0]:.0f}x{seen_fov[1]:.0f} deg where the training "
                     f"camera saw {trained_fov[0]:.0f}x{trained_fov[1]:.0f} deg: the pilot may misjudge distances")
    return "; ".join(notes) or None
