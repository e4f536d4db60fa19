"""The inner loop: a cascaded controller from a body-frame velocity command to motor speeds.

velocity (PI) -> desired thrust vector -> attitude (geometric, on SO(3)) -> body rates,
rate loop on the gyro -> torques -> mixer -> motor speeds. Yaw is commanded as a rate.
Velocity and attitude come from the vehicle's state estimate (here the true state);
the rate loop reads the gyro, noise included, as a flight controller does.
"""
from __future__ import annotations

import math

import numpy as np

from liquid_pilot.sim.quadrotor import GRAVITY, BodyState, QuadParams

# Gains: 1/s for the loops; tuned for the CF2X with motor lag in the tens of milliseconds.
VELOCITY_P = np.array([2.2, 2.2, 3.0])
VELOCITY_I = np.array([0.4, 0.4, 1.0])
ATTITUDE_P = 6.0  # rad/s of rate per rad of attitude error
RATE_P = np.array([14.0, 14.0, 8.0])  # angular acceleration per rad/s of rate error
MAX_CONTROL_TILT = math.radians(30)
INTEGRAL_LIMIT = 0.5  # m/s^2


def _cross(a: np.ndarray, b: tuple | np.ndarray) -> np.ndarray:
    """Cross product of 3-vectors (numpy's general version costs ten times more here)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


class VelocityController:
    """The inner cascaded controller: body velocity command to motor speeds (velocity, attitude, rate loops)."""

    def __init__(self, params: QuadParams, dt: float):
        self.params, self.dt = params, dt
        self.mixer_inverse = np.linalg.inv(params.mixer())
        self.integral = np.zeros(3)

    def reset(self) -> None:
        self.integral[:] = 0.0

    def __call__(self, command: np.ndarray, state: BodyState, gyro: np.ndarray) -> np.ndarray:
        """Return motor speeds (rpm) for command [vx, vy, vz, yaw_rate] in the body frame (FLU)."""
        yaw = state.yaw
        c, s = math.cos(yaw), math.sin(yaw)
        # The horizontal command is in the heading frame: forward stays level when the body tilts.
        target = np.array([c * command[0] - s * command[1], s * command[0] + c * command[1], command[2]])
        error = target - state.velocity
        self.integral = np.clip(self.integral + VELOCITY_I * error * self.dt, -INTEGRAL_LIMIT, INTEGRAL_LIMIT)
        accel = VELOCITY_P * error + self.integral + (0.0, 0.0, GRAVITY)
        accel[2] = max(accel[2], 0.2 * GRAVITY)
        horizontal = math.hypot(accel[0], accel[1])
        limit = accel[2] * math.tan(MAX_CONTROL_TILT)
        if horizontal > limit:
            accel[:2] *= limit / horizontal
        thrust_axis = accel / math.sqrt(accel @ accel)
        # Desired attitude: body z along the thrust, body x keeping the current heading.
        y_axis = _cross(thrust_axis, (c, s, 0.0))
        y_axis /= math.sqrt(y_axis @ y_axis)
        desired = np.stack([_cross(y_axis, thrust_axis), y_axis, thrust_axis], 1)
        rot = state.rotation
        error_matrix = desired.T @ rot - rot.T @ desired
        attitude_error = 0.5 * np.array([error_matrix[2, 1], error_matrix[0, 2], error_matrix[1, 0]])
        rates = -ATTITUDE_P * attitude_error
        rates[2] = command[3]
        inertia = self.params.inertia
        torque = inertia * RATE_P * (rates - gyro) + _cross(gyro, inertia * gyro)
        thrust = self.params.mass * float(accel @ rot[:, 2])
        squared = self.mixer_inverse @ np.array([thrust, *torque])
        return np.sqrt(np.clip(squared, 0.0, self.params.max_rpm ** 2))
