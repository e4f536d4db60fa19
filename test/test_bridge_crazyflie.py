"""The Crazyflie backend through cflib's own Crazyflie and Commander over a fake link: the CRTP packets as sent.

cflib's debug driver is gone (0.1.3x), so the link is a fake ``CRTPDriver`` that keeps every packet. The
checks decode the packets as the firmware does (crtp_commander_generic: port 7, channel 0 setpoints, channel 1
meta commands; hover = type 10 ``<Bffff`` vx, vy, yaw rate deg/s counter-clockwise, height; before CRTP
protocol 9 the legacy type 5 carries the yaw rate negated), independently of the bridge's conversions.
"""
from __future__ import annotations

import math
import struct
import threading

import pytest
from cflib.crazyflie import Crazyflie
from cflib.crtp.crtpdriver import CRTPDriver

from liquid_pilot.bridge.crazyflie import CrazyflieBackend
from liquid_pilot.bridge.supervisor import Supervisor, SupervisorConfig
from liquid_pilot.flight.types import ManualClock

URI = "radio://0/80/2M/E7E7E7E7E7"
DT = 0.05
COMMANDER_GENERIC, SETPOINT, META = 7, 0, 1
TYPE_STOP, TYPE_HOVER_LEGACY, TYPE_HOVER = 0, 5, 10
# cflib warns that arming before CRTP protocol 12 takes its legacy channel; expected with these fake versions.
pytestmark = pytest.mark.filterwarnings("ignore:The supervisor subsystem requires CRTP protocol version 12")


class FakeLink(CRTPDriver):
    """A link that keeps what is sent and never receives."""

    def __init__(self):
        super().__init__()
        self.packets: list[tuple[int, int, bytes]] = []
        self.needs_resending = False
        self._closed = threading.Event()

    def send_packet(self, pk) -> None:
        self.packets.append((pk.port, pk.channel, bytes(pk.data)))

    def receive_packet(self, wait=0):
        self._closed.wait(wait if wait > 0 else 0)
        return None

    def close(self) -> None:
        self._closed.set()


def hovers(link: FakeLink, legacy: bool = False) -> list[tuple[float, float, float, float]]:
    """(vx, vy, yaw rate deg/s CCW, height) of every hover setpoint, read as the firmware reads it."""
    out = []
    for port, channel, data in link.packets:
        if port == COMMANDER_GENERIC and channel == SETPOINT and data[0] in (TYPE_HOVER, TYPE_HOVER_LEGACY):
            kind, vx, vy, yaw_rate, z = struct.unpack("<Bffff", data)
            assert kind == (TYPE_HOVER_LEGACY if legacy else TYPE_HOVER)
            out.append((vx, vy, -yaw_rate if legacy else yaw_rate, z))
    return out


class Rig:
    def __init__(self, protocol: int = 10, **config):
        self.link = FakeLink()
        self.cf = Crazyflie(link=self.link)
        self.cf.platform._protocolVersion = protocol  # as the connection set-up would learn it
        self.clock = ManualClock(10**9)
        self.logs: list[tuple[str, str]] = []
        self.backend = CrazyflieBackend(URI, cf=self.cf, clock=self.clock, log=self.log)
        self.sup = Supervisor(self.backend, SupervisorConfig(**config), self.clock, self.log)
        self.cf.connected.call(URI)  # the link is open: cflib would call this after its connection set-up

    def log(self, level: str, message: str) -> None:
        self.logs.append((level, message))

    def estimate(self, x: float = 0.0, y: float = 0.0, z: float = 0.0, yaw_deg: float = 0.0) -> None:
        self.backend.on_log(0, {"stateEstimate.x": x, "stateEstimate.y": y, "stateEstimate.z": z,
                                "stateEstimate.yaw": yaw_deg})
        self.backend.on_log(0, {"stateEstimate.vx": 0.0, "stateEstimate.vy": 0.0, "stateEstimate.vz": 0.0})

    def step(self, command=None, n: int = 1, follow: bool = True) -> None:
        """Tick; the Crazyflie follows its commanded height (as its height controller would)."""
        for _ in range(n):
            self.clock.advance(DT)
            z = self.backend.z_target if follow and self.backend.z_target is not None else \
                (self.backend.t.position or (0, 0, 0))[2]
            self.estimate(z=z)
            if command is not None:
                self.sup.command(command)
            self.sup.tick()

    def until(self, state: str, command=None, limit: float = 20.0) -> None:
        for _ in range(round(limit / DT)):
            if self.sup.state == state:
                return
            self.step(command)
        raise AssertionError(f"not {state}: {self.sup.state} ({self.sup.reason})")

    def close(self) -> None:
        self.cf.close_link()


@pytest.fixture
def rig_factory():
    rigs = []

    def make(**kwargs) -> Rig:
        rigs.append(Rig(**kwargs))
        return rigs[-1]
    yield make
    for rig in rigs:
        rig.close()


def test_a_whole_flight_take_off_fly_land(rig_factory) -> None:
    rig = rig_factory(auto_takeoff=True, takeoff_height=0.8, takeoff_speed=0.5, landed_height=0.05, touchdown_s=0.2)
    rig.until("flying")
    assert any("cannot log the state estimate" in m for _, m in rig.logs)  # the fake link has no log TOC
    assert rig.backend.t.armed
    sent = hovers(rig.link)
    assert sent[0] == (0.0, 0.0, 0.0, 0.0)  # primed on the ground, no mode to switch
    climb = [h[3] for h in sent]
    assert climb == sorted(climb) and climb[-1] >= 0.76  # the height rises at takeoff_speed to 95% of 0.8 m
    assert all(b - a <= 0.5 * DT + 1e-6 for a, b in zip(climb, climb[1:]))
    # Fly: forward 0.3, left 0.1, up 0.2 m/s, counter-clockwise 0.5 rad/s.
    height = rig.backend.z_target
    rig.step((0.3, 0.1, 0.2, 0.5), n=20)
    vx, vy, yaw_rate, z = hovers(rig.link)[-1]
    assert (vx, vy) == pytest.approx((0.3, 0.1)) and yaw_rate == pytest.approx(math.degrees(0.5), rel=1e-6)
    assert z == pytest.approx(height + 0.2 * 20 * DT, abs=1e-5)  # vz integrated into the height
    # Land: descend, touch down, hand the setpoint priority back, then silence.
    assert rig.sup.land()[0]
    rig.until("landed")
    assert hovers(rig.link)[-1][3] <= 0.05
    port, channel, data = rig.link.packets[-1]
    assert (port, channel) == (COMMANDER_GENERIC, META) and struct.unpack("<BI", data)[0] == 0  # notify stop
    n = len(rig.link.packets)
    rig.step(n=10)
    assert len(rig.link.packets) == n


@pytest.mark.filterwarnings("ignore:Using legacy TYPE_HOVER_LEGACY")
def test_legacy_firmware_gets_the_legacy_packet_with_the_same_meaning(rig_factory) -> None:
    rig = rig_factory(protocol=8)
    rig.backend.send((0.2, -0.1, 0.0, -0.25), rig.clock.now)
    assert hovers(rig.link, legacy=True) == [pytest.approx((0.2, -0.1, math.degrees(-0.25), 0.0), rel=1e-6)]


def test_estop_stops_the_motors(rig_factory) -> None:
    rig = rig_factory(auto_takeoff=True)
    rig.until("flying")
    assert rig.sup.estop()[0]
    stops = [p for p in rig.link.packets if p[:2] == (COMMANDER_GENERIC, SETPOINT) and p[2][:1] == bytes([TYPE_STOP])]
    assert len(stops) == 1 and len(stops[0][2]) == 1
    assert rig.sup.state == "estop"


def test_a_stale_pilot_hovers_at_the_same_height(rig_factory) -> None:
    rig = rig_factory(auto_takeoff=True, command_timeout=0.2)
    rig.until("flying")
    rig.step((0.5, 0.0, 0.0, 0.0), n=3)
    rig.until("stale")
    vx, vy, yaw_rate, z = hovers(rig.link)[-1]
    assert (vx, vy, yaw_rate) == (0.0, 0.0, 0.0) and z == pytest.approx(rig.backend.z_target)


def test_no_telemetry_no_flight(rig_factory) -> None:
    rig = rig_factory(auto_takeoff=True)
    for _ in range(40):
        rig.clock.advance(DT)
        rig.sup.tick()
    assert rig.sup.state == "wait_link" and hovers(rig.link) == []


@pytest.mark.parametrize("uri", ["E7E7E7E7E7", "http://x", ""])
def test_a_bad_uri_is_one_clear_error(uri: str) -> None:
    with pytest.raises(ValueError, match="expected one of radio://"):
        CrazyflieBackend(uri, cf=object())


class CountingCrazyflie(Crazyflie):
    """cflib's Crazyflie on the fake link, counting the link openings asked of it."""

    def __init__(self, link: FakeLink):
        super().__init__(link=link)
        self.opened = 0

    def open_link(self, uri: str) -> None:
        self.opened += 1


def test_a_failed_connection_is_one_line_and_is_retried_with_backoff() -> None:
    cf = CountingCrazyflie(FakeLink())
    cf.link = None  # not connected yet: the backend opens the link
    clock, logs = ManualClock(10**9), []
    backend = CrazyflieBackend(URI, cf=cf, clock=clock, log=lambda level, m: logs.append((level, m)),
                               connect_timeout=20.0)
    sup = Supervisor(backend, SupervisorConfig(), clock)
    assert cf.opened == 1
    failures = []
    for second in range(1, 25):
        if cf.opened > len(failures):  # each attempt fails, as cflib reports it: a traceback in the message
            failures.append(clock.now)
            cf.connection_failed.call(URI, "Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                                           "Exception: Cannot find a Crazyradio Dongle")
        clock.advance(1.0)
        sup.tick()
    warnings = [m for level, m in logs if level == "warn"]
    assert warnings == [f"crazyflie {URI}: connection failed: Exception: Cannot find a Crazyradio Dongle; trying "
                        "again after 1 s (then every up to 10 s, for 20 s)"]
    gaps = [round((b - a) / 1e9) for a, b in zip(failures, failures[1:])]
    assert gaps == [1, 2, 4, 8, 10][:len(gaps)] and len(gaps) >= 4  # backing off, then every 10 s
    assert sup.state == "failed" and "unreachable for 20 s" in sup.reason
    n = cf.opened
    for _ in range(30):
        clock.advance(1.0)
        sup.tick()
    assert cf.opened == n  # given up


def test_a_lost_link_comes_back_and_says_so(rig_factory) -> None:
    rig = rig_factory()
    rig.cf.connection_lost.call(URI, "Too many packets lost")
    assert any("connection lost: Too many packets lost" in m for _, m in rig.logs)
    rig.cf.connected.call(URI)
    assert any("connected after 1 failed attempt" in m for _, m in rig.logs)


def test_the_crazyflies_imu_and_state_estimate_come_out_in_ros_units(rig_factory) -> None:
    from liquid_pilot.bridge.telemetry import BatterySample, ImuSample, OdometrySample
    rig = rig_factory()
    samples: list = []
    rig.backend.on_sample = samples.append
    half = math.sqrt(0.5)
    rig.backend.on_log(0, {"stateEstimate.qx": 0.0, "stateEstimate.qy": 0.0, "stateEstimate.qz": half,
                           "stateEstimate.qw": half})  # heading 90 degrees: the nose points +y (north)
    rig.backend.on_log(0, {"gyro.x": 0.0, "gyro.y": 0.0, "gyro.z": 90.0, "acc.x": 0.0, "acc.y": 0.0, "acc.z": 1.0})
    rig.backend.on_log(0, {"stateEstimate.vx": 0.0, "stateEstimate.vy": 1.0, "stateEstimate.vz": 0.0})
    rig.backend.on_log(0, {"stateEstimate.x": 1.0, "stateEstimate.y": 2.0, "stateEstimate.z": 0.5,
                           "stateEstimate.yaw": 90.0})
    rig.backend.on_log(0, {"pm.vbat": 3.9})
    imu = next(s for s in samples if isinstance(s, ImuSample))
    odom = next(s for s in samples if isinstance(s, OdometrySample))
    battery = next(s for s in samples if isinstance(s, BatterySample))
    assert imu.angular_velocity == pytest.approx((0.0, 0.0, math.pi / 2))  # deg/s -> rad/s, counter-clockwise
    assert imu.linear_acceleration == pytest.approx((0.0, 0.0, 9.80665))  # g -> m/s^2, gravity on +z
    assert odom.position == (1.0, 2.0, 0.5) and odom.linear_velocity == pytest.approx((1.0, 0.0, 0.0), abs=1e-9)
    assert battery.voltage == 3.9
