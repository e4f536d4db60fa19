"""Body-frame conventions: the pilot's FLU (REP-103) and the FRD of PX4, ArduPilot and MAVLink.

The pilot reads and commands in FLU: x forward, y left, z up, yaw rate counter-clockwise seen
from above. FRD (x forward, y right, z down; MAVLink's BODY_NED, PX4's body frame) differs by
a rotation of 180 degrees about x: y, z and the rates about them change sign. Commands are
[vx, vy, vz, yaw_rate]; IMU samples are [gyro x, y, z, accel x, y, z]. World frames (ENU, NED)
need the attitude and are not converted here.
"""
from __future__ import annotations

import numpy as np

FRAMES = ("flu", "frd")
FRD_VECTOR_SIGNS = (1.0, -1.0, -1.0)  # a vector's (x, y, z) in FRD, from FLU and back: the one definition
FRD_COMMAND_SIGNS = (*FRD_VECTOR_SIGNS, -1.0)  # (vx, vy, vz, yaw rate): the yaw rate is about z
_COMMAND_SIGNS = {"flu": np.ones(4, np.float32), "frd": np.array(FRD_COMMAND_SIGNS, np.float32)}
_IMU_SIGNS = {"flu": np.ones(6, np.float32), "frd": np.array(FRD_VECTOR_SIGNS * 2, np.float32)}  # gyro, accel


def check_frame(frame: str, what: str) -> str:
    """Return ``frame`` if it is a known body frame, else raise ValueError naming ``what`` and the choices."""
    if frame not in FRAMES:
        raise ValueError(f"{what} must be one of {', '.join(FRAMES)} (body frames: FLU is REP-103, FRD is PX4's "
                         f"and MAVLink's BODY_NED), got {frame!r}")
    return frame


def command_to_flu(commands: np.ndarray, frame: str) -> np.ndarray:
    """(N, 4) [vx, vy, vz, yaw_rate] in ``frame`` -> FLU (the conversion is its own inverse)."""
    return np.asarray(commands, np.float32) * _COMMAND_SIGNS[check_frame(frame, "command frame")]


def imu_to_flu(imu: np.ndarray, frame: str) -> np.ndarray:
    """(N, 6) [gyro xyz, accel xyz] in ``frame`` -> FLU (its own inverse too)."""
    return np.asarray(imu, np.float32) * _IMU_SIGNS[check_frame(frame, "IMU frame")]


# Topics and rates.
TRAINING_CAMERA_HZ = 16.0  # the simulator's camera (sim.camera_hz), on which the shipped pilots were trained


def camera_info_topic(image_topic: str) -> str:
    """Return the CameraInfo topic of an image topic: its sibling ``camera_info``, as image_transport pairs them.

    ``/cam/color/image_raw`` -> ``/cam/color/camera_info``; a compressed stream's ``/compressed`` suffix
    is its transport, not its name.
    """
    base = image_topic.removesuffix("/compressed")
    return base.rpartition("/")[0] + "/camera_info" if "/" in base else "camera_info"
