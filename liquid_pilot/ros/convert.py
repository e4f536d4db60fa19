"""Conversions between rclpy messages and the arrays the pilot and the simulator use.

Decoding serialized sensor messages is the flight core's (``liquid_pilot.flight.codec``); its
functions are re-exported here for the ROS modules.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from nav_msgs.msg import Odometry
from sensor_msgs.msg import BatteryState, CameraInfo, Image, Imu

from liquid_pilot.flight.codec import BadInput, from_cdr, imu_to_array, stamp_ns  # noqa: F401 (re-exported)
from liquid_pilot.flight.image import camera_matrices


def time_msg(ns: int) -> TimeMsg:
    return TimeMsg(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def rgb_to_image(rgb: np.ndarray, stamp: TimeMsg, frame_id: str) -> Image:
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0, step=rgb.shape[1] * 3)
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.data = rgb.tobytes()
    return msg


def camera_info(width: int, height: int, vfov: float, stamp: TimeMsg, frame_id: str) -> CameraInfo:
    """Describe a pinhole camera with square pixels and no distortion from its vertical field of view (rad)."""
    msg = CameraInfo(width=width, height=height, distortion_model="plumb_bob", **camera_matrices(width, height, vfov))
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    return msg


def imu_message(gyro: Sequence[float], accel: Sequence[float], stamp: TimeMsg, frame_id: str,
                orientation: Sequence[float] | None = None, gyro_variance: float = 0.0,
                accel_variance: float = 0.0) -> Imu:
    """REP-145 ``sensor_msgs/Imu``: body rates (rad/s) and specific force with gravity (m/s^2), body frame.

    ``orientation`` (x, y, z, w), or None: not provided (covariance[0] = -1). Variances of 0 mean unknown, as
    the message defines; the orientation's covariance is unknown (0) when it is given.
    """
    msg = Imu()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    if orientation is None:
        msg.orientation_covariance[0] = -1.0
    else:
        o = msg.orientation
        o.x, o.y, o.z, o.w = (float(v) for v in orientation)
    msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = (float(v) for v in gyro)
    msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = (float(v) for v in accel)
    for i in (0, 4, 8):
        msg.angular_velocity_covariance[i] = gyro_variance
        msg.linear_acceleration_covariance[i] = accel_variance
    return msg


def odometry_message(position: Sequence[float], orientation: Sequence[float], body_velocity: Sequence[float],
                     body_rates: Sequence[float], stamp: TimeMsg, frame_id: str = "odom",
                     child_frame_id: str = "base_link") -> Odometry:
    """REP-105 ``nav_msgs/Odometry``: pose in ``frame_id`` (ENU), twist in the child (body, FLU) frame.

    Covariances are 0: unknown.
    """
    msg = Odometry()
    msg.header.stamp, msg.header.frame_id, msg.child_frame_id = stamp, frame_id, child_frame_id
    pose = msg.pose.pose
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in position)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in orientation)
    twist = msg.twist.twist
    twist.linear.x, twist.linear.y, twist.linear.z = (float(v) for v in body_velocity)
    twist.angular.x, twist.angular.y, twist.angular.z = (float(v) for v in body_rates)
    return msg


def battery_message(voltage: float | None, current: float | None, remaining: float | None, stamp: TimeMsg,
                    frame_id: str = "base_link") -> BatteryState:
    """``sensor_msgs/BatteryState`` from an autopilot's report; NaN where it does not measure a quantity.

    ``current`` is MAVLink's (positive while discharging); the message's is negative while discharging.
    """
    msg = BatteryState()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.voltage = math.nan if voltage is None else float(voltage)
    msg.current = math.nan if current is None else -float(current)
    msg.percentage = math.nan if remaining is None else float(remaining)
    for name in ("temperature", "charge", "capacity", "design_capacity"):
        setattr(msg, name, math.nan)
    msg.power_supply_status = BatteryState.POWER_SUPPLY_STATUS_DISCHARGING if current and current > 0 else \
        BatteryState.POWER_SUPPLY_STATUS_UNKNOWN
    msg.present = True
    return msg
