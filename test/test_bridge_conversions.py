"""Frames and signs between the pilot (body FLU) and each flight stack: round trips, and where commands take the drone.

Each stack's own reading of its setpoint is written out here from its documentation, independently of
``conversions``: PX4/ArduPilot rotate a body FRD velocity by their NED heading (clockwise from north),
MAVROS takes an ENU world velocity, PX4's TrajectorySetpoint a NED world velocity, the Crazyflie a body
FLU velocity with a counter-clockwise yaw rate in deg/s. The checks are on the drone's motion in one
common frame (ENU): a forward command moves it along its nose, a left one to its left, an up one up,
a positive yaw rate turns the nose counter-clockwise seen from above.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from liquid_pilot.bridge import conversions as cv

RNG = np.random.default_rng(7)
SAMPLES = 500


def vectors(n: int = SAMPLES) -> list[tuple[float, ...]]:
    return [tuple(float(x) for x in row) for row in RNG.uniform(-5, 5, (n, 4))]


def headings(n: int = SAMPLES) -> list[float]:
    return [float(x) for x in RNG.uniform(-4 * math.pi, 4 * math.pi, n)]


def close(a, b, tol: float = 1e-9) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# Round trips, exact to 1e-9.
def test_axis_flips_are_their_own_inverse() -> None:
    for v in vectors():
        assert close(cv.frd_to_flu(cv.flu_to_frd(v[:3])), v[:3])
        assert close(cv.ned_to_enu(cv.enu_to_ned(v[:3])), v[:3])
        assert close(cv.frd_to_command(cv.command_to_frd(v)), v)
    assert cv.flu_to_frd((1.0, 2.0, 3.0)) == (1.0, -2.0, -3.0)
    assert cv.enu_to_ned((1.0, 2.0, 3.0)) == (2.0, 1.0, -3.0)


def test_rotations_and_units_round_trip() -> None:
    for v, yaw in zip(vectors(), headings(), strict=True):
        assert close(cv.world_to_body(cv.body_to_world(v[:3], yaw), yaw), v[:3])
        assert close(cv.enu_to_command(cv.command_to_enu(v, yaw), yaw), v)
        assert close(cv.ned_to_command(cv.command_to_ned(v, yaw), yaw), v)
        assert abs(cv.deg_to_rad(cv.rad_to_deg(v[3])) - v[3]) <= 1e-9
        assert abs(cv.wrap(cv.yaw_ned_to_enu(cv.yaw_enu_to_ned(yaw))) - cv.wrap(yaw)) <= 1e-9
        assert -math.pi <= cv.wrap(yaw) < math.pi
        assert abs(math.sin(cv.wrap(yaw)) - math.sin(yaw)) <= 1e-9
        assert abs(math.cos(cv.wrap(yaw)) - math.cos(yaw)) <= 1e-9
    assert cv.rad_to_deg(math.pi) == pytest.approx(180.0, abs=1e-12)


def test_rotation_keeps_length_and_vertical() -> None:
    for v, yaw in zip(vectors(), headings(), strict=True):
        w = cv.body_to_world(v[:3], yaw)
        assert abs(math.hypot(w[0], w[1]) - math.hypot(v[0], v[1])) <= 1e-9 and w[2] == v[2]


def test_yaw_from_quaternion() -> None:
    for yaw in headings(50):
        q = (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))
        assert abs(cv.wrap(cv.yaw_from_quaternion(*q) - yaw)) <= 1e-9
    # A tilted orientation keeps its heading: 30 deg of roll after a 1 rad turn.
    yaw, roll = 1.0, math.radians(30)
    qz = np.array([0, 0, math.sin(yaw / 2), math.cos(yaw / 2)])
    qx = np.array([math.sin(roll / 2), 0, 0, math.cos(roll / 2)])
    x1, y1, z1, w1 = qz
    x2, y2, z2, w2 = qx
    q = (w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2, w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
         w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2, w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2)
    assert cv.yaw_from_quaternion(*q) == pytest.approx(yaw, abs=1e-9)


# Each stack's reading of a setpoint: the ENU world velocity it flies and its heading rate (CCW positive),
# given the drone's ENU heading. Written from the stacks' documentation, not from conversions.
def px4_mavlink_body_ned(command, heading_enu):
    vx, vy, vz, yaw_rate = cv.command_to_frd(command)  # forward, right, down; clockwise yaw rate
    psi = math.pi / 2 - heading_enu  # NED heading: clockwise from north
    north = math.cos(psi) * vx - math.sin(psi) * vy
    east = math.sin(psi) * vx + math.cos(psi) * vy
    return np.array([east, north, -vz]), -yaw_rate


def mavros_enu_world(command, heading_enu):
    ve, vn, vu, yaw_rate = cv.command_to_enu(command, heading_enu)
    return np.array([ve, vn, vu]), yaw_rate


def px4_dds_ned_world(command, heading_enu):
    vn, ve, vd, yaw_rate = cv.command_to_ned(command, cv.yaw_enu_to_ned(heading_enu))
    return np.array([ve, vn, -vd]), -yaw_rate


def crazyflie_hover(command, heading_enu):
    vx, vy, yaw_rate_deg = cv.command_to_crazyflie(command)  # body x forward, y left; deg/s CCW
    c, s = math.cos(heading_enu), math.sin(heading_enu)
    return np.array([c * vx - s * vy, s * vx + c * vy, command[2]]), math.radians(yaw_rate_deg)


STACKS = {"px4/ardupilot mavlink (body FRD)": px4_mavlink_body_ned, "mavros (ENU world)": mavros_enu_world,
          "px4 uxrce-dds (NED world)": px4_dds_ned_world, "crazyflie (body FLU, deg/s)": crazyflie_hover}


@pytest.mark.parametrize("stack", STACKS)
def test_a_forward_command_moves_the_drone_along_its_nose(stack: str) -> None:
    fly = STACKS[stack]
    for heading in headings(100):
        nose = np.array([math.cos(heading), math.sin(heading), 0.0])
        left = np.array([-math.sin(heading), math.cos(heading), 0.0])
        up = np.array([0.0, 0.0, 1.0])
        velocity, rate = fly((1.5, 0.0, 0.0, 0.0), heading)
        assert np.allclose(velocity, 1.5 * nose, atol=1e-9) and rate == 0.0, (stack, heading)
        velocity, _ = fly((0.0, 0.7, 0.0, 0.0), heading)
        assert np.allclose(velocity, 0.7 * left, atol=1e-9), (stack, heading)
        if stack != "crazyflie (body FLU, deg/s)":  # the Crazyflie takes a height, integrated apart
            velocity, _ = fly((0.0, 0.0, 0.4, 0.0), heading)
            assert np.allclose(velocity, 0.4 * up, atol=1e-9), (stack, heading)
        _, rate = fly((0.0, 0.0, 0.0, 0.3), heading)
        assert rate == pytest.approx(0.3, abs=1e-9), stack  # counter-clockwise seen from above
        # Combined, and after turning: the nose the drone flies along is its new heading.
        dt = 0.5
        velocity, rate = fly((1.0, 0.0, 0.0, 0.3), heading)
        new_heading = heading + rate * dt
        velocity, _ = fly((1.0, 0.0, 0.0, 0.0), new_heading)
        assert np.allclose(velocity, [math.cos(heading + 0.15), math.sin(heading + 0.15), 0.0], atol=1e-9)


def test_the_crazyflie_yaw_rate_is_in_degrees() -> None:
    assert cv.command_to_crazyflie((0.1, -0.2, 0.3, math.pi / 2)) == pytest.approx((0.1, -0.2, 90.0), abs=1e-12)


def test_mavlink_body_signs_are_those_of_the_issue() -> None:
    # FLU -> FRD: vy, vz and the yaw rate negated; vx kept.
    assert cv.command_to_frd((1.0, 2.0, 3.0, 0.5)) == (1.0, -2.0, -3.0, -0.5)
