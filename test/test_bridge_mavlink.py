"""The MAVLink backend against an autopilot on loopback UDP (127.0.0.1 only), as PX4 and ArduPilot document it.

The autopilot is ``harness.mavlink_vehicle.MavlinkVehicle`` around a point vehicle (``Kinematic``): heartbeats,
acknowledgements, modes, refusals. The checks read the raw fields of every setpoint it received (frame,
type mask, target, signs, timing), independently of the bridge's conversions, and where the point vehicle
went. Simulated time (a fake clock) and lockstep delivery (packet counts) make the flows deterministic; the
keep-alive rate test alone runs in real time (about 3 s, both cores loaded).
"""
from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import socket
import threading
import time

import numpy as np
import pytest

from liquid_pilot.bridge import mavlink as ml
from liquid_pilot.bridge.runner import Runner
from liquid_pilot.bridge.supervisor import Supervisor, SupervisorConfig
from liquid_pilot.flight.types import ManualClock
from liquid_pilot.harness.mavlink_vehicle import Kinematic, MavlinkVehicle, sync

DT = 0.05
# The type mask bits (MAVLink POSITION_TARGET_TYPEMASK): 1-4 position, 8-32 velocity, 64-256 acceleration,
# 1024 yaw, 2048 yaw rate.
POSITION_BITS, VELOCITY_BITS, ACCELERATION_BITS, YAW_BIT, YAW_RATE_BIT = 0b111, 0b111000, 0b111000000, 1024, 2048


class Link:
    """Bridge (supervisor + MAVLink backend) and autopilot on one loopback link, stepped together."""

    def __init__(self, flavour: str = "px4", policy: dict | None = None, armed: bool = True, height: float = 1.0,
                 yaw: float = 0.7, vehicle_system: int = 1, target_system: int = 1,
                 origin: tuple = (0.0, 0.0, 0.0), drift: tuple = (0.0, 0.0, 0.0), **config):
        self.clock = ManualClock(10**9)
        self.logs: list[tuple[str, str]] = []
        self.pilot: list[bool] = []
        self.backend = ml.MavlinkBackend("udpin:127.0.0.1:0", flavour, target_system=target_system, log=self.log)
        self.port = self.backend.conn.port.getsockname()[1]
        self.body = Kinematic((0.0, 0.0, height), yaw)
        self.vehicle = MavlinkVehicle(self.body, f"udpout:127.0.0.1:{self.port}", flavour, system=vehicle_system,
                                      armed=armed, policy=policy, log=self.log, origin=origin, drift=drift)
        self.config = config
        self.sup = Supervisor(self.backend, SupervisorConfig(**config), self.clock, self.log, self.pilot.append)
        self.extra = 0  # packets other senders put on the bridge's port

    def new_flight(self, **config) -> None:
        """A new supervisor on the same link and vehicle (the bridge restarted, or the next flight)."""
        self.pilot.clear()
        self.sup = Supervisor(self.backend, SupervisorConfig(**{**self.config, **config}), self.clock, self.log,
                              self.pilot.append)

    def log(self, level: str, message: str) -> None:
        self.logs.append((level, message))

    def step(self, command: tuple | None = None, n: int = 1) -> None:
        for _ in range(n):
            now = self.clock.advance(DT)
            self.vehicle.publish(now)
            self._to_bridge(now)
            if command is not None:
                self.sup.command(command)
            self.sup.tick()
            sync(self.backend.conn, self.vehicle.conn, lambda: self.vehicle.receive(now))
            self.body.fly(self.vehicle.command(now), DT)

    def _to_bridge(self, now: int) -> None:
        class Sent:  # the vehicle's packets plus any other sender's
            mav = type("mav", (), {"total_packets_sent": self.vehicle.conn.mav.total_packets_sent + self.extra})
        sync(Sent, self.backend.conn, lambda: self.backend.poll(now))

    def until(self, state: str, command: tuple | None = None, limit: float = 10.0) -> None:
        for _ in range(round(limit / DT)):
            if self.sup.state == state:
                return
            self.step(command)
        raise AssertionError(f"not {state} after {limit} s: {self.sup.state} ({self.sup.reason})")

    def fly(self, command: tuple | None = None) -> None:
        self.until("flying", command)

    def close(self) -> None:
        self.backend.close()
        self.vehicle.conn.close()

    def warned(self, text: str) -> int:
        return sum(text in m for level, m in self.logs if level in ("warn", "error"))


@pytest.fixture
def link_factory():
    links = []

    def make(*args, **kwargs) -> Link:
        links.append(Link(*args, **kwargs))
        return links[-1]
    yield make
    for link in links:
        link.close()


def mode_commands(vehicle: MavlinkVehicle) -> list[tuple]:
    return [c for c in vehicle.commands if c[1] == ml.MAV_CMD_DO_SET_MODE]


@pytest.mark.parametrize(("flavour", "frame"), [("px4", 8), ("ardupilot", 9)])
def test_every_setpoint_has_the_body_frame_mask_target_and_signs(link_factory, flavour: str, frame: int) -> None:
    link = link_factory(flavour)
    link.fly()
    command = (0.5, 0.2, 0.1, 0.3)  # forward, left, up, counter-clockwise
    link.step(command, n=10)
    assert link.vehicle.setpoints and link.vehicle.ignored == {"frame": 0, "mask": 0, "target": 0}
    hover = [sp for sp in link.vehicle.setpoints if sp.holds]
    flown = link.vehicle.setpoints[len(hover):]
    assert len(flown) == 10 and all(sp.target == (1, 1) for sp in link.vehicle.setpoints)
    for sp in flown:
        assert sp.frame == frame  # MAV_FRAME_BODY_NED (PX4) / MAV_FRAME_BODY_OFFSET_NED (ArduPilot)
        assert sp.type_mask & POSITION_BITS == POSITION_BITS and sp.type_mask & ACCELERATION_BITS == ACCELERATION_BITS
        assert sp.type_mask & YAW_BIT and not sp.type_mask & (VELOCITY_BITS | YAW_RATE_BIT)
    last = link.vehicle.setpoints[-1]
    # Body FRD: y right and z down, yaw rate clockwise seen from above: the pilot's left, up and CCW negated.
    assert last.velocity == pytest.approx((0.5, -0.2, -0.1), abs=1e-6)
    assert last.yaw_rate == pytest.approx(-0.3, abs=1e-6)
    # Before the pilot flies, the stream is hover: a position hold where the bridge took over, in local NED
    # (1 m up: z -1), with the heading of that moment (ENU 0.7 rad is NED pi/2 - 0.7) and only position and yaw used.
    assert hover and all(sp.frame == 1 and sp.type_mask == 0x09F8 for sp in hover)
    assert all(sp.position == pytest.approx((0.0, 0.0, -1.0)) for sp in hover)
    assert all(sp.yaw == pytest.approx(math.pi / 2 - 0.7, abs=1e-6) for sp in hover)
    # One setpoint per tick, time_boot_ms following the clock.
    boot = [sp.time_boot_ms for sp in link.vehicle.setpoints[-10:]]
    assert all(b - a == round(DT * 1000) for a, b in zip(boot, boot[1:]))


@pytest.mark.parametrize("flavour", ["px4", "ardupilot"])
def test_forward_left_up_and_yaw_commands_move_the_vehicle_where_the_pilot_means(link_factory, flavour: str) -> None:
    link = link_factory(flavour, yaw=2.0)
    link.fly()
    for command, check in [
        ((0.5, 0.0, 0.0, 0.0), lambda d, yaw: np.allclose(d[:2] / np.linalg.norm(d[:2]), [math.cos(yaw), math.sin(yaw)],
                                                          atol=1e-4)),
        ((0.0, 0.5, 0.0, 0.0), lambda d, yaw: np.allclose(d[:2] / np.linalg.norm(d[:2]),
                                                          [-math.sin(yaw), math.cos(yaw)], atol=1e-4)),
        ((0.0, 0.0, 0.3, 0.0), lambda d, yaw: d[2] > 0.25 and abs(d[0]) + abs(d[1]) < 1e-6),
    ]:
        start, yaw = link.body.position.copy(), link.body.yaw
        link.step(command, n=20)
        assert check(link.body.position - start, yaw), (command, link.body.position - start)
    yaw = link.body.yaw
    link.step((0.0, 0.0, 0.0, 0.4), n=20)
    assert 0.3 < (link.body.yaw - yaw) % (2 * math.pi) < 0.5  # counter-clockwise, ~0.4 rad


def test_px4_offboard_is_requested_only_after_a_second_of_stream(link_factory) -> None:
    link = link_factory("px4")
    link.fly()
    first_setpoint = link.vehicle.setpoints[0].time
    (when, _, params, result), = mode_commands(link.vehicle)
    assert (when - first_setpoint) / 1e9 >= 1.0 - 1e-9
    assert params[:3] == (1.0, 6.0, 0.0) and result == 0  # custom mode, main mode OFFBOARD: accepted
    assert link.vehicle.mode == "OFFBOARD" and link.pilot == [True]


def test_px4_refuses_offboard_without_a_stream(link_factory) -> None:
    # The autopilot side is faithful: a switch without setpoints is refused (prime_s 0 is too early here).
    link = link_factory("px4", prime_s=0.0)
    link.until("failed")
    assert link.warned("vehicle refused control: DENIED") == 1 and link.pilot == []


def test_px4_auto_takeoff_climbs_on_setpoints(link_factory) -> None:
    link = link_factory("px4", armed=False, height=0.0, auto_takeoff=True, takeoff_height=1.0)
    link.fly()
    assert link.vehicle.armed and link.body.position[2] >= 0.95
    climbing = [sp for sp in link.vehicle.setpoints if sp.velocity[2] < 0]
    assert climbing and all(sp.velocity == pytest.approx((0.0, 0.0, -0.5)) for sp in climbing)  # up is -z in FRD
    arm = [c for c in link.vehicle.commands if c[1] == ml.MAV_CMD_COMPONENT_ARM_DISARM]
    assert arm[0][2][0] == 1.0 and mode_commands(link.vehicle)[0][0] < arm[0][0]  # offboard, then arm


def test_ardupilot_guided_takeoff_by_command(link_factory) -> None:
    link = link_factory("ardupilot", armed=False, height=0.0, auto_takeoff=True, takeoff_height=1.2)
    link.fly()
    kinds = [c[1] for c in link.vehicle.commands if c[1] != ml.MAV_CMD_SET_MESSAGE_INTERVAL]
    assert kinds == [ml.MAV_CMD_DO_SET_MODE, ml.MAV_CMD_COMPONENT_ARM_DISARM, ml.MAV_CMD_NAV_TAKEOFF]
    takeoff = link.vehicle.commands[-1]
    assert takeoff[2][6] == pytest.approx(1.2) and takeoff[3] == 0
    assert mode_commands(link.vehicle)[0][2][:2] == (1.0, 4.0)  # GUIDED
    assert link.body.position[2] >= 1.2 * 0.95


@pytest.mark.parametrize(("policy", "failure"), [
    ({"control": "deny"}, "refused control: DENIED"),
    ({"control": "temporarily"}, "refused control: TEMPORARILY_REJECTED"),
    ({"control": "ignore"}, "refused control: no COMMAND_ACK after 3 tries"),
    ({"arm": "deny"}, "refused arm: DENIED"),
])
def test_refused_or_unanswered_commands_fail_safe(link_factory, policy: dict, failure: str) -> None:
    link = link_factory("px4", policy=policy, armed=False, height=0.0, auto_takeoff=True)
    link.until("failed")
    assert link.warned(failure) == 1 and link.pilot == []
    n = len(link.vehicle.setpoints)
    link.step(n=20)
    assert len(link.vehicle.setpoints) == n  # failed: nothing more is sent
    if policy == {"control": "ignore"}:
        tries = mode_commands(link.vehicle)
        assert [int(c[2][0]) for c in tries] == [1, 1, 1] and len(tries) == 3  # resent, then given up


def test_stale_pilot_hovers_within_one_period_then_lands_and_stops_sending(link_factory) -> None:
    link = link_factory("px4", command_timeout=0.3, stale_land_s=1.0)
    link.fly()
    link.step((0.5, 0.0, 0.0, 0.0), n=5)
    last_command_at = link.clock.now
    link.until("stale")
    assert (link.clock.now - last_command_at) / 1e9 <= 0.3 + DT + 1e-9
    assert link.vehicle.setpoints[-1].holds
    link.until("landing")
    land = mode_commands(link.vehicle)[-1]
    assert land[2][:3] == (1.0, 4.0, 6.0) and land[3] == 0  # AUTO.LAND, accepted
    link.step(n=2)
    assert link.sup.done and link.vehicle.mode == "AUTO.LAND"
    n = len(link.vehicle.setpoints)
    link.until("landed")
    assert len(link.vehicle.setpoints) == n and not link.vehicle.armed and link.body.position[2] <= 0.05


@pytest.mark.parametrize("flavour", ["px4", "ardupilot"])
def test_geofence_breach_hovers_within_one_period(link_factory, flavour: str) -> None:
    link = link_factory(flavour, yaw=0.0, fence_radius=2.0)
    link.fly()
    for _ in range(200):
        link.step((1.0, 0.0, 0.0, 0.0))
        if link.sup.state != "flying":
            break
    assert link.sup.state == "hold" and "geofence" in link.sup.reason and link.pilot == [True, False]
    # The breach was seen on the telemetry of this period; this period's setpoint is already hover: a position
    # hold where the breach was seen.
    assert link.vehicle.setpoints[-1].holds
    assert 2.0 < math.hypot(*link.body.position[:2]) <= 2.0 + 1.0 * DT + 1e-6


def test_operator_takeover_stops_every_setpoint(link_factory) -> None:
    link = link_factory("px4")
    link.fly()
    link.step((0.5, 0.0, 0.0, 0.0), n=5)
    link.vehicle.set_mode(link.vehicle.hold_mode())  # the RC's mode switch
    link.until("taken_over", (0.5, 0.0, 0.0, 0.0))
    n = len(link.vehicle.setpoints)
    link.step((0.5, 0.0, 0.0, 0.0), n=40)
    assert len(link.vehicle.setpoints) == n and link.pilot == [True, False]
    assert link.vehicle.mode == "POSCTL"  # the bridge never switched it back


def test_estop_force_disarms(link_factory) -> None:
    link = link_factory("ardupilot")
    link.fly()
    assert link.sup.estop()[0]
    link.step()
    kill = [c for c in link.vehicle.commands if c[1] == ml.MAV_CMD_COMPONENT_ARM_DISARM][-1]
    assert kill[2][:2] == (0.0, 21196.0) and not link.vehicle.armed


def test_a_dead_link_holds_and_the_bridge_survives(link_factory) -> None:
    link = link_factory("px4", link_timeout=0.5)
    link.fly()
    link.step((0.5, 0.0, 0.0, 0.0), n=3)
    for _ in range(20):  # the vehicle goes silent; the bridge keeps streaming hover
        link.clock.advance(DT)
        link.sup.tick()
    assert link.sup.state == "hold" and link.warned("link to the vehicle lost") == 1
    assert link.backend.setpoints_sent > 0


def test_garbage_and_other_systems_are_logged_once_and_ignored(link_factory) -> None:
    link = link_factory("px4")
    link.step(n=3)
    # Another system (a second vehicle behind a router), and system 1 claiming to be ArduPilot.
    other = ml.mavutil().mavlink_connection(f"udpout:127.0.0.1:{link.port}", source_system=42, source_component=1)
    other.mav.heartbeat_send(2, ml.MAV_AUTOPILOT_PX4, 129, 6 << 16, 4)
    other.mav.local_position_ned_send(0, 50.0, 0.0, -1.0, 0.0, 0.0, 0.0)
    impostor = ml.mavutil().mavlink_connection(f"udpout:127.0.0.1:{link.port}", source_system=1, source_component=1)
    impostor.mav.heartbeat_send(2, ml.MAV_AUTOPILOT_ARDUPILOTMEGA, 129, 4, 4)
    link.extra = 3
    link.step()
    # Garbage: random bytes without MAVLink's start markers (0xFD, 0xFE), so no valid message after it is
    # swallowed by a bogus frame and the lockstep's packet counts stay exact.
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rng = np.random.default_rng(0)
    for _ in range(20):
        raw.sendto(rng.integers(0, 0xFD, 200, dtype=np.uint8).tobytes(), ("127.0.0.1", link.port))
    link.fly()
    link.step((0.5, 0.0, 0.0, 0.0), n=10)
    assert link.warned("not MAVLink") == 1
    assert link.warned("ignoring messages from system 42") == 1
    assert link.warned("system 1 is ArduPilot, but this bridge speaks px4") == 1
    assert link.sup.state == "flying" and abs(link.sup.telemetry.position[0]) < 5.0  # system 42's never counted
    assert link.vehicle.setpoints[-1].velocity == pytest.approx((0.5, 0.0, 0.0))
    link.step((0.5, 0.0, 0.0, 0.0), n=round(2.5 / DT))
    assert sum("bytes of garbage skipped" in m for _, m in link.logs) == 1 and link.sup.state == "flying"
    for conn in (other, impostor):
        conn.close()
    raw.close()


def test_a_vehicle_with_another_system_id_is_never_flown(link_factory) -> None:
    link = link_factory("px4", vehicle_system=7)
    link.step(n=40)
    assert link.sup.state == "wait_link" and link.vehicle.setpoints == []
    assert link.warned("ignoring messages from system 7: the vehicle is system 1") == 1


def test_target_system_zero_takes_the_first_autopilot(link_factory) -> None:
    link = link_factory("ardupilot", vehicle_system=7, target_system=0)
    link.fly()
    link.step((0.3, 0.0, 0.0, 0.0), n=3)
    assert link.vehicle.setpoints[-1].target == (7, 1)


@pytest.mark.parametrize(("address", "message"), [
    ("udp:14540", "expected udp:HOST:PORT"),
    ("udpin:0.0.0.0:99999", "expected udpin:HOST:PORT"),
    ("bluetooth:x", "expected udpin:HOST:PORT (listen"),
    ("serial:", "expected serial:DEVICE[:BAUD]"),
])
def test_bad_addresses_are_one_clear_error(address: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        ml.MavlinkBackend(address)


def test_serial_addresses_parse() -> None:
    assert ml.parse_address("serial:/dev/ttyACM0:921600", 57600) == ("/dev/ttyACM0", {"baud": 921600})
    assert ml.parse_address("/dev/ttyUSB0", 57600) == ("/dev/ttyUSB0", {"baud": 57600})
    assert ml.parse_address("udpin:0.0.0.0:14540", 57600) == ("udpin:0.0.0.0:14540", {})
    with pytest.raises(ValueError, match="flavour 'inav'"):
        ml.MavlinkBackend("udpin:127.0.0.1:0", "inav")


def _spin(stop) -> None:
    while not stop.is_set():
        pass


def test_keep_alive_rate_within_10_percent_with_both_cores_busy() -> None:
    """Real time, about 3 s: the runner thread streams at its rate while two processes spin on the two cores."""
    rate = 50.0
    clock = time.monotonic_ns
    backend = ml.MavlinkBackend("udpin:127.0.0.1:0", "px4")
    port = backend.conn.port.getsockname()[1]
    vehicle = MavlinkVehicle(Kinematic((0.0, 0.0, 1.0)), f"udpout:127.0.0.1:{port}", "px4", armed=True)
    sup = Supervisor(backend, SupervisorConfig(prime_s=0.2, command_timeout=5.0), clock)
    runner = Runner(sup, rate)
    stop_vehicle = threading.Event()  # the vehicle's own loop: 50 Hz telemetry, answers at once
    thread = threading.Thread(target=vehicle.run, args=(stop_vehicle, 0.02), daemon=True)
    stop_load = multiprocessing.Event()
    load = [multiprocessing.Process(target=_spin, args=(stop_load,), daemon=True)
            for _ in range(max(2, os.cpu_count() or 2))]
    try:
        thread.start()
        runner.start()
        deadline = time.monotonic() + 10
        while sup.state != "flying" and time.monotonic() < deadline:
            stop_vehicle.wait(0.05)
        assert sup.state == "flying", sup.reason
        for process in load:
            process.start()
        n0, t0 = len(vehicle.setpoints), time.monotonic()
        while time.monotonic() - t0 < 2.0:
            sup.command((0.1, 0.0, 0.0, 0.0))
            stop_vehicle.wait(0.1)
        n1, t1 = len(vehicle.setpoints), time.monotonic()
    finally:
        stop_load.set()
        for process in load:
            process.join(5)
        runner.stop(1.0)
        stop_vehicle.set()
        thread.join(2)
        backend.close()
        vehicle.conn.close()
    measured = (n1 - n0) / (t1 - t0)
    assert abs(measured - rate) <= 0.1 * rate, measured
    times = [sp.time for sp in vehicle.setpoints[n0:n1]]
    assert max(np.diff(times)) / 1e9 < 5 / rate  # no long silence (the vehicle's own loop adds 20 ms)


# What the real autopilots showed in SITL (issue 23), against the project's vehicle made to behave as they did.
@pytest.mark.parametrize("flavour", ["px4", "ardupilot"])
def test_the_bridge_takes_over_only_once_the_operators_takeoff_has_finished(link_factory, flavour: str) -> None:
    link = link_factory(flavour, armed=False, height=0.0)
    link.until("wait_airborne")
    link.vehicle.operator_takeoff(2.5)  # ArduPilot: GUIDED take-off; PX4: AUTO.TAKEOFF
    link.until("prime", limit=20.0)
    # ArduPilot's own take-off would have been cut short by the first hover setpoint (it was, at 1.36 m).
    assert link.body.position[2] >= 2.5 - 1e-6
    assert any("take-off still under way" in m for _, m in link.logs)
    link.fly()
    link.step(n=round(2.0 / DT))
    assert link.body.position[2] == pytest.approx(2.5, abs=0.05)  # the hover holds the operator's height


def test_heights_are_above_the_ground_and_the_fence_is_around_each_take_over(link_factory) -> None:
    # PX4's estimator origin sat 1.3 m above the ground; ArduPilot's stays where the first flight began.
    link = link_factory("px4", armed=False, height=0.0, yaw=0.0, origin=(0.0, 0.0, 1.3), fence_radius=10.0)
    link.until("wait_airborne")
    assert link.sup.status()["height"] == pytest.approx(0.0, abs=1e-3)  # on the ground (it reads z = -1.3)
    link.vehicle.operator_takeoff(1.0)
    link.fly()
    assert link.body.position[2] == pytest.approx(1.0, abs=0.05)  # min_height 0.3 m meant 0.3 m, not 1.6 m
    link.step((1.0, 0.0, 0.0, 0.0), n=round(7.0 / DT))  # 7 m out, then down
    assert link.sup.land()[0]
    link.until("landed", limit=20.0)
    # The second flight, 7 m from where the first began: the fence is around where the bridge takes over.
    link.new_flight()
    link.step(n=3)
    link.vehicle.operator_takeoff(1.0)
    link.fly()
    status = link.sup.status()
    assert link.body.position[0] == pytest.approx(7.0, abs=0.1)
    assert status["distance"] < 0.05 and status["fence_margin"] > 9.95
    assert status["height"] == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("flavour", ["px4", "ardupilot"])
def test_hover_at_the_fence_holds_its_position_where_a_zero_velocity_drifts(link_factory, flavour: str) -> None:
    drift = (0.28, 0.0, 0.0)  # the PX4 SITL drifted at 0.27-0.29 m/s on a zero velocity
    link = link_factory(flavour, yaw=0.0, fence_radius=3.0, drift=drift)
    link.fly()
    start = link.body.position.copy()
    link.step((0.0, 0.0, 0.0, 0.0), n=round(2.0 / DT))  # the pilot's own zero: flown, so it drifts
    assert link.body.position[0] - start[0] == pytest.approx(0.56, abs=0.05)
    for _ in range(round(10.0 / DT)):
        link.step((0.0, 1.0, 0.0, 0.0))
        if link.sup.state != "flying":
            break
    assert link.sup.state == "hold" and "geofence" in link.sup.reason
    breach = link.body.position.copy()
    link.step(n=round(5.0 / DT))
    assert np.linalg.norm(link.body.position - breach) < 0.5  # it was 12.5 m out after 5 s in PX4 SITL


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_tcp_autopilot_that_starts_later_is_waited_for() -> None:
    clock, logs = ManualClock(10**9), []
    port = _free_tcp_port()
    backend = ml.MavlinkBackend(f"tcp:127.0.0.1:{port}", "ardupilot", log=lambda level, m: logs.append(m))
    sup = Supervisor(backend, SupervisorConfig(), clock)
    for _ in range(3):  # nothing listens: the bridge keeps trying, quietly
        clock.advance(1.0)
        sup.tick()
    assert sup.state == "wait_link" and sum("nothing listens" in m for m in logs) == 1
    vehicle = MavlinkVehicle(Kinematic((0.0, 0.0, 1.0)), f"tcpin:127.0.0.1:{port}", "ardupilot", armed=True)
    try:
        for _ in range(40):
            now = clock.advance(DT)
            vehicle.receive(now)  # accepts the connection once it comes
            vehicle.publish(now)
            sup.tick()
            if sup.state == "wait_airborne":
                break
        assert sup.state == "wait_airborne" and any("connected to tcp:" in m for m in logs)
    finally:
        backend.close()
        vehicle.conn.close()


def test_a_tcp_address_gives_up_after_connect_timeout() -> None:
    clock = ManualClock(10**9)
    backend = ml.MavlinkBackend(f"tcp:127.0.0.1:{_free_tcp_port()}", "ardupilot", connect_timeout=2.0)
    sup = Supervisor(backend, SupervisorConfig(), clock)
    for _ in range(4):
        clock.advance(1.0)
        sup.tick()
    assert sup.state == "failed" and "nothing listened on tcp:127.0.0.1" in sup.reason
    assert "connect_timeout" in sup.reason


@pytest.mark.parametrize("flavour", ["px4", "ardupilot"])
def test_the_autopilots_imu_attitude_and_odometry_come_out_in_ros_frames(link_factory, flavour: str) -> None:
    from liquid_pilot.bridge.telemetry import BatterySample, ImuSample, OdometrySample
    link = link_factory(flavour, yaw=0.5, origin=(2.0, -1.0, 0.0))
    samples: list = []
    link.backend.on_sample = samples.append
    link.fly()
    link.step((1.0, 0.0, 0.5, 0.0), n=10)
    imu = [s for s in samples if isinstance(s, ImuSample)][-1]
    odom = [s for s in samples if isinstance(s, OdometrySample)][-1]
    battery = [s for s in samples if isinstance(s, BatterySample)][-1]
    # REP-145: gravity on +z at rest (level flight here), body FLU; the attitude as orientation.
    assert imu.linear_acceleration[2] == pytest.approx(9.80665, abs=1e-3)
    assert 2 * math.atan2(imu.orientation[2], imu.orientation[3]) == pytest.approx(0.5, abs=1e-5)
    # REP-105: ENU from the autopilot's local origin; twist in the body: 1 m/s forward, 0.5 m/s up.
    assert odom.position == pytest.approx(tuple(link.body.position - (2.0, -1.0, 0.0)), abs=0.06)
    assert odom.linear_velocity == pytest.approx((1.0, 0.0, 0.5), abs=1e-4)
    assert (battery.voltage, battery.current, battery.remaining) == pytest.approx((12.6, 5.2, 0.8))
    # TIMESYNC: the vehicle's boot clock is this clock. In lockstep its answer arrives one period (50 ms) after
    # it was sent, so the offset is off by half that round trip, and a mapped time later than the receipt is
    # the receipt: the publish time of the last step.
    assert link.vehicle.timesyncs > 0 and link.backend.timesync.offset == -round(DT / 2 * 1e9)
    assert imu.stamp == odom.stamp == link.clock.now


@contextlib.contextmanager
def _real_time_link(backend: ml.MavlinkBackend, vehicle: MavlinkVehicle, config: SupervisorConfig):
    """The supervisor's keep-alive thread and the vehicle's loop in real time; everything closed on leaving."""
    sup = Supervisor(backend, config, time.monotonic_ns)
    runner = Runner(sup, 20.0)
    stop = threading.Event()
    thread = threading.Thread(target=vehicle.run, args=(stop, 0.02, True), daemon=True)
    thread.start()
    runner.start()
    try:
        yield sup
    finally:
        runner.stop(0.5)
        stop.set()
        thread.join(2)
        backend.close()
        vehicle.conn.close()


def _wait(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


@pytest.mark.parametrize(("bridge_key", "require", "expect"), [
    (b"k" * 32, False, "flying"),  # the same key: flies
    (None, False, "failed"),  # an unsigned bridge: the vehicle ignores its commands
    (b"x" * 32, False, "failed"),  # another key: the same
])
def test_mavlink2_signing_against_a_vehicle_that_requires_it(bridge_key, require: bool, expect: str) -> None:
    logs: list[str] = []
    backend = ml.MavlinkBackend("udpin:127.0.0.1:0", "px4", key=bridge_key, require_signing=require,
                                log=lambda level, m: logs.append(m))
    port = backend.conn.port.getsockname()[1]
    vehicle = MavlinkVehicle(Kinematic((0.0, 0.0, 1.0)), f"udpout:127.0.0.1:{port}", "px4", armed=True,
                             key=b"k" * 32)
    with _real_time_link(backend, vehicle, SupervisorConfig(prime_s=0.2, settle_s=0.2)) as sup:
        assert _wait(lambda: sup.state in ("flying", "failed")), sup.state
        assert sup.state == expect, sup.reason
        if expect == "failed":
            assert vehicle.mode != "OFFBOARD" and vehicle.refused > 0  # nothing unsigned was obeyed


def test_require_signing_refuses_an_unsigned_vehicle_and_says_so_once() -> None:
    logs: list[str] = []
    backend = ml.MavlinkBackend("udpin:127.0.0.1:0", "px4", key=b"k" * 32, require_signing=True,
                                log=lambda level, m: logs.append(m))
    port = backend.conn.port.getsockname()[1]
    vehicle = MavlinkVehicle(Kinematic((0.0, 0.0, 1.0)), f"udpout:127.0.0.1:{port}", "px4", armed=True)
    with _real_time_link(backend, vehicle, SupervisorConfig()) as sup:
        assert _wait(lambda: sum("refusing unsigned" in m for m in logs) == 1)
        time.sleep(0.5)
        assert sup.state == "wait_link" and sum("refusing unsigned" in m for m in logs) == 1


def test_signing_keys_from_a_file_or_a_passphrase(tmp_path) -> None:
    import hashlib
    raw = tmp_path / "key.bin"
    raw.write_bytes(bytes(range(32)))
    text = tmp_path / "key.hex"
    text.write_text(bytes(range(32)).hex() + "\n")
    assert ml.signing_key(str(raw)) == ml.signing_key(str(text)) == bytes(range(32))
    assert ml.signing_key(passphrase="liquid") == hashlib.sha256(b"liquid").digest()  # MAVProxy's signing setup
    assert ml.signing_key() is None
    short = tmp_path / "short"
    short.write_bytes(b"abc")
    with pytest.raises(ValueError, match="expected 32 bytes or 64 hexadecimal digits, got 3 bytes"):
        ml.signing_key(str(short))
    with pytest.raises(ValueError, match="not both"):
        ml.signing_key(str(raw), "liquid")
    with pytest.raises(ValueError, match="require_signing needs a key"):
        ml.MavlinkBackend("udpin:127.0.0.1:0", require_signing=True)
