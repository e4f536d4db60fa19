"""Frames, signs and units between the pilot and each flight stack: the one place they are converted.

The pilot commands ``(vx, vy, vz, yaw_rate)`` in the body frame **FLU** (x forward, y left, z up;
yaw rate counter-clockwise seen from above, rad/s), as ROS does (REP-103). The stacks want:

- **PX4 / ArduPilot over MAVLink** (``MAV_FRAME_BODY_NED`` / ``MAV_FRAME_BODY_OFFSET_NED``): body **FRD**
  (x forward, y right, z down), yaw rate about the down axis (clockwise positive): vy, vz and the
  yaw rate change sign (``command_to_frd``).
- **MAVROS** ``setpoint_velocity/cmd_vel`` by default: the **ENU** world frame; the body velocity is
  rotated by the current ENU yaw (``command_to_enu``); the yaw rate about up keeps its sign.
- **PX4 over uXRCE-DDS** (``TrajectorySetpoint``): the **NED** world frame, rotated by the NED yaw
  (``command_to_ned``).
- **Crazyflie** ``send_hover_setpoint``: body FLU in m/s, yaw rate in **deg/s** counter-clockwise
  (``command_to_crazyflie``); the height is absolute (the caller integrates vz).

World frames: ENU (x east, y north, z up; yaw from east, counter-clockwise) and NED (x north,
y east, z down; yaw from north, clockwise): ``yaw_ned = pi/2 - yaw_enu``. Plain floats in and out;
every function is exact up to floating-point rounding (round trips within 1e-9).
"""
from __future__ import annotations

import math

from liquid_pilot.flight.conventions import FRD_COMMAND_SIGNS, FRD_VECTOR_SIGNS
from liquid_pilot.flight.types import Command

Vector = tuple[float, float, float]


def wrap(angle: float) -> float:
    """Return ``angle`` in [-pi, pi)."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


# Axis conventions. Each is its own inverse: the two names say which way a call site converts.
def flu_to_frd(v: Vector) -> Vector:
    """Body FLU (ROS) -> body FRD (PX4, ArduPilot): y and z change sign (``flight.conventions``)."""
    return (v[0] * FRD_VECTOR_SIGNS[0], v[1] * FRD_VECTOR_SIGNS[1], v[2] * FRD_VECTOR_SIGNS[2])


frd_to_flu = flu_to_frd


def enu_to_ned(v: Vector) -> Vector:
    """World ENU (ROS) -> world NED (PX4, ArduPilot): swap x and y, negate z."""
    return (v[1], v[0], -v[2])


ned_to_enu = enu_to_ned


def yaw_enu_to_ned(yaw: float) -> float:
    """Heading counter-clockwise from east -> clockwise from north."""
    return wrap(math.pi / 2.0 - yaw)


yaw_ned_to_enu = yaw_enu_to_ned


def body_to_world(v: Vector, yaw: float) -> Vector:
    """Rotate a body vector by the heading ``yaw`` about the vertical axis (FLU->ENU, or FRD->NED with NED yaw).

    Only the heading counts: multicopter velocity setpoints are levelled (roll and pitch ignored).
    """
    c, s = math.cos(yaw), math.sin(yaw)
    return (c * v[0] - s * v[1], s * v[0] + c * v[1], v[2])


def world_to_body(v: Vector, yaw: float) -> Vector:
    """Rotate a world vector into the body frame: the inverse of ``body_to_world``."""
    c, s = math.cos(yaw), math.sin(yaw)
    return (c * v[0] + s * v[1], -s * v[0] + c * v[1], v[2])


def rad_to_deg(value: float) -> float:
    return math.degrees(value)


def deg_to_rad(value: float) -> float:
    return math.radians(value)


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    """Heading (rotation about the world's vertical axis) of an orientation quaternion, in its own world frame."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


# Attitudes. Quaternions are (x, y, z, w), as ROS writes them; MAVLink's ATTITUDE_QUATERNION is (w, x, y, z).
Quaternion = tuple[float, float, float, float]
_NED_TO_ENU: Quaternion = (math.sqrt(0.5), math.sqrt(0.5), 0.0, 0.0)  # rotates NED axes onto ENU ones
_FLU_TO_FRD: Quaternion = (1.0, 0.0, 0.0, 0.0)  # 180 degrees about x


def quaternion_multiply(a: Quaternion, b: Quaternion) -> Quaternion:
    """Hamilton product ``a * b`` of (x, y, z, w) quaternions: rotate by ``b``, then by ``a``."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz)


def attitude_ned_to_enu(w: float, x: float, y: float, z: float) -> Quaternion:
    """Convert MAVLink's attitude (body FRD -> world NED, (w, x, y, z)) to ROS's (body FLU -> ENU, (x, y, z, w)).

    REP-103: ``q_enu_flu = q_enu_ned * q_ned_frd * q_frd_flu``; the result is normalised and has w >= 0.
    """
    q = quaternion_multiply(quaternion_multiply(_NED_TO_ENU, (x, y, z, w)), _FLU_TO_FRD)
    norm = math.sqrt(sum(v * v for v in q)) or 1.0
    sign = -1.0 if q[3] < 0 else 1.0
    return tuple(sign * v / norm for v in q)


def rotate(q: Quaternion, v: Vector) -> Vector:
    """Rotate vector ``v`` by the (x, y, z, w) quaternion ``q`` (a body vector into the world frame)."""
    x, y, z, w = q
    vx, vy, vz = v
    # v + 2 w (u x v) + 2 u x (u x v), u = (x, y, z)
    cx, cy, cz = y * vz - z * vy, z * vx - x * vz, x * vy - y * vx
    return (vx + 2.0 * (w * cx + y * cz - z * cy), vy + 2.0 * (w * cy + z * cx - x * cz),
            vz + 2.0 * (w * cz + x * cy - y * cx))


def unrotate(q: Quaternion, v: Vector) -> Vector:
    """Rotate a world vector into the body frame of attitude ``q``: the inverse of ``rotate``."""
    return rotate((-q[0], -q[1], -q[2], q[3]), v)


# Units of MAVLink's scaled sensor messages.
STANDARD_GRAVITY = 9.80665  # m/s^2 per g


def milli_g_to_accel(value: float) -> float:
    """SCALED_IMU's acceleration (mG) -> m/s^2."""
    return value * STANDARD_GRAVITY / 1000.0


# Commands: body FLU (the pilot's) -> what each stack takes, and back (the simulated vehicle's side).
def command_to_frd(command: Command) -> Command:
    """FLU command -> body FRD ``(vx, vy, vz, yaw_rate)`` for MAVLink's BODY_NED / BODY_OFFSET_NED frames."""
    return tuple(value * sign for value, sign in zip(command, FRD_COMMAND_SIGNS))


frd_to_command = command_to_frd  # FRD -> FLU is the same sign flip


def command_to_enu(command: Command, yaw_enu: float) -> Command:
    """FLU command -> ENU world velocity and yaw rate (about up) for MAVROS, given the vehicle's ENU heading."""
    vx, vy, vz, yaw_rate = command
    return (*body_to_world((vx, vy, vz), yaw_enu), yaw_rate)


def enu_to_command(setpoint: Command, yaw_enu: float) -> Command:
    """Turn an ENU world setpoint back into a FLU command: the inverse of ``command_to_enu``."""
    ve, vn, vu, yaw_rate = setpoint
    return (*world_to_body((ve, vn, vu), yaw_enu), yaw_rate)


def command_to_ned(command: Command, yaw_ned: float) -> Command:
    """FLU command -> NED world velocity and yaw rate (about down) for PX4's TrajectorySetpoint, given NED heading."""
    vx, vy, vz, yaw_rate = command_to_frd(command)
    return (*body_to_world((vx, vy, vz), yaw_ned), yaw_rate)


def ned_to_command(setpoint: Command, yaw_ned: float) -> Command:
    """Turn a NED world setpoint back into a FLU command: the inverse of ``command_to_ned``."""
    vn, ve, vd, yaw_rate = setpoint
    return command_to_frd((*world_to_body((vn, ve, vd), yaw_ned), yaw_rate))


def command_to_crazyflie(command: Command) -> tuple[float, float, float]:
    """FLU command -> ``(vx, vy, yaw rate in deg/s)`` for cflib's ``send_hover_setpoint`` (vz is integrated apart).

    cflib from 2025 on (CRTP protocol 9 and later, and its legacy packets for older firmware) takes the yaw
    rate counter-clockwise positive, as the Crazyflie's documented right-handed frame says.
    """
    vx, vy, _, yaw_rate = command
    return (vx, vy, rad_to_deg(yaw_rate))
