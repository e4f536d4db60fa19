"""A Crazyflie 2.x (CF2X) rigid body in PyBullet.

Four propellers with first-order motor lag, thrust and yaw torque per propeller, rotor
drag and ground effect.

Motors, seen from above with x forward and y left (FLU): 0 front-right, 1 rear-right,
2 rear-left, 3 front-left; 0 and 2 spin one way, 1 and 3 the other.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pybullet as pb

from liquid_pilot.paths import data_dir

GRAVITY = 9.81
LAYOUT = np.array([[1, -1], [-1, -1], [-1, 1], [1, 1]]) / math.sqrt(2)  # unit arm directions (x, y)
SPIN = np.array([1.0, -1.0, 1.0, -1.0])  # sign of each propeller's reaction torque about z


def urdf_path() -> Path:
    return data_dir("sim") / "assets" / "cf2x.urdf"


@dataclass(frozen=True)
class QuadParams:
    """The quadrotor's physical constants (Crazyflie 2.x, from its URDF) and its mixer."""

    mass: float
    inertia: np.ndarray  # (3,) diagonal, kg m^2
    arm: float
    kf: float  # N / rpm^2
    km: float  # N m / rpm^2
    thrust2weight: float
    prop_radius: float
    drag: np.ndarray  # (3,) rotor drag coefficients, body x, y, z
    ground_effect: float

    @property
    def max_rpm(self) -> float:
        return math.sqrt(self.thrust2weight * self.mass * GRAVITY / (4 * self.kf))

    @property
    def hover_rpm(self) -> float:
        return math.sqrt(self.mass * GRAVITY / (4 * self.kf))

    def mixer(self) -> np.ndarray:
        """(4, 4) map from squared motor speeds to [thrust, roll, pitch, yaw] torques."""
        x, y = LAYOUT[:, 0] * self.arm, LAYOUT[:, 1] * self.arm
        return np.stack([np.full(4, self.kf), self.kf * y, -self.kf * x, self.km * SPIN])


def load_params(path: Path | None = None) -> QuadParams:
    """Read the body and propeller constants from the URDF."""
    root = ET.parse(path or urdf_path()).getroot()
    props = root.find("properties").attrib
    inertial = root.find("link/inertial")
    inertia = inertial.find("inertia").attrib
    return QuadParams(
        mass=float(inertial.find("mass").attrib["value"]),
        inertia=np.array([float(inertia[k]) for k in ("ixx", "iyy", "izz")]),
        arm=float(props["arm"]), kf=float(props["kf"]), km=float(props["km"]),
        thrust2weight=float(props["thrust2weight"]), prop_radius=float(props["prop_radius"]),
        drag=np.array([float(props["drag_coeff_xy"])] * 2 + [float(props["drag_coeff_z"])]),
        ground_effect=float(props["gnd_eff_coeff"]),
    )


def quaternion(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a 3x3 rotation matrix (Shepperd's method, stable for every rotation)."""
    m = rotation
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s)
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = (0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s)
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = ((m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s)
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = ((m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s)
    return tuple(float(v) for v in q)


@dataclass
class BodyState:
    """The body's pose and motion in the world frame (ENU), its rates in the body frame."""

    position: np.ndarray  # world, m
    rotation: np.ndarray  # (3, 3) body -> world
    velocity: np.ndarray  # world, m/s
    rates: np.ndarray  # body angular velocity, rad/s

    @property
    def yaw(self) -> float:
        return math.atan2(self.rotation[1, 0], self.rotation[0, 0])

    @property
    def tilt(self) -> float:
        """Angle between body z and world z, rad."""
        return math.acos(max(-1.0, min(1.0, self.rotation[2, 2])))


class Quadrotor:
    """The drone in PyBullet: per-propeller thrust and torque, motor lag, drag and ground effect."""

    def __init__(self, client: int, params: QuadParams, physics_dt: float, motor_time_constant: float):
        self.client, self.params, self.dt = client, params, physics_dt
        self.body = pb.loadURDF(str(urdf_path()), physicsClientId=client,
                                flags=pb.URDF_USE_INERTIA_FROM_FILE)
        pb.changeDynamics(self.body, -1, linearDamping=0.0, angularDamping=0.0, physicsClientId=client)
        self.alpha = 1.0 - math.exp(-physics_dt / motor_time_constant)  # exact discrete first-order lag
        self.mixer = params.mixer()
        self.rpm = np.zeros(4)
        self.rpm_command = np.zeros(4)
        self.extra_force = np.zeros(3)  # body frame: drag and wind, refreshed at control rate
        self.thrust_gain = 1.0  # ground effect, refreshed at control rate

    def reset(self, position: np.ndarray, yaw: float) -> None:
        pb.resetBasePositionAndOrientation(self.body, position.tolist(), pb.getQuaternionFromEuler([0, 0, yaw]),
                                           physicsClientId=self.client)
        pb.resetBaseVelocity(self.body, [0, 0, 0], [0, 0, 0], physicsClientId=self.client)
        self.rpm[:] = self.rpm_command[:] = self.params.hover_rpm  # start hovering
        self.extra_force[:] = 0.0
        self.thrust_gain = 1.0

    def state(self) -> BodyState:
        position, quaternion = pb.getBasePositionAndOrientation(self.body, physicsClientId=self.client)
        velocity, omega = pb.getBaseVelocity(self.body, physicsClientId=self.client)
        rotation = np.array(pb.getMatrixFromQuaternion(quaternion)).reshape(3, 3)
        return BodyState(np.array(position), rotation, np.array(velocity), rotation.T @ np.array(omega))

    def update_slow_forces(self, state: BodyState, wind_world: np.ndarray) -> None:
        """Rotor drag, wind and ground effect, which change slowly: once per control period."""
        speed_sum = float(np.sum(self.rpm)) * 2 * math.pi / 60
        body_velocity = state.rotation.T @ state.velocity
        self.extra_force = -self.params.drag * body_velocity * speed_sum + state.rotation.T @ wind_world
        height = max(state.position[2], self.params.prop_radius)
        self.thrust_gain = 1.0 + self.params.ground_effect * (self.params.prop_radius / (4 * height)) ** 2

    def physics_tick(self) -> None:
        """Advance the motors one physics step and apply their forces (PyBullet clears them each step)."""
        self.rpm += (self.rpm_command - self.rpm) * self.alpha
        wrench = self.mixer @ np.square(self.rpm)
        force = self.extra_force + (0.0, 0.0, wrench[0] * self.thrust_gain)
        pb.applyExternalForce(self.body, -1, force.tolist(), (0, 0, 0), pb.LINK_FRAME, physicsClientId=self.client)
        pb.applyExternalTorque(self.body, -1, wrench[1:].tolist(), pb.LINK_FRAME, physicsClientId=self.client)
