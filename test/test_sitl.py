"""The bridge and the pilot against real autopilots: ArduCopter and PX4 (SIH) SITL, minutes each (marker ``sitl``).

One SITL run per autopilot serves every test here, in order, as one operator's session would (a fresh one after
a test that failed, so that one failure fails one test): the bridge waits for an autopilot that starts after it;
telemetry at rest; an operator's 2.5 m take-off, then a hold at the geofence; a second flight far from the first
one's start (with a first flight of its own where no earlier test flew one); the shipped pilot flying our scenes
through the autopilot, against the direct simulator on the same seeds; MAVLink 2 signing (ArduPilot). The
binaries come from ``ARDUPILOT_SITL`` and ``PX4_SITL`` (``.ci/run`` sets them to ``../shared/sitl``); without
them every test here skips, saying so.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sitl_support as ss

from liquid_pilot.bridge.mavlink import MavlinkBackend
from liquid_pilot.bridge.runner import Runner
from liquid_pilot.bridge.supervisor import Supervisor, SupervisorConfig
from liquid_pilot.bridge.telemetry import ImuSample, OdometrySample

ROOT = Path(__file__).resolve().parents[1]
EPISODES = int(os.environ.get("LIQUID_PILOT_SITL_EPISODES", "5"))  # per stack; 10 for the docs' tables


class Bridge:
    """The bridge as bridge_node runs it (backend, supervisor, keep-alive thread), without ROS."""

    def __init__(self, address: str, flavour: str, **config):
        self.logs: list[str] = []
        self.samples: list[tuple[int, object]] = []
        self.backend = MavlinkBackend(address, flavour, log=self.log, **config.pop("backend", {}))
        self.backend.on_sample = lambda s: self.samples.append((time.monotonic_ns(), s))
        self.supervisor = Supervisor(self.backend, SupervisorConfig(**config), time.monotonic_ns, self.log)
        self.runner = Runner(self.supervisor, self.backend.rate, self.log)
        self.runner.start()

    def log(self, level: str, message: str) -> None:
        self.logs.append(f"{time.monotonic():.1f} {level}: {message}")

    @property
    def state(self) -> str:
        return self.supervisor.state

    def status(self) -> dict:
        return self.supervisor.status()

    def until(self, condition, timeout: float, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"{what or condition} not within {timeout} s; bridge: " + \
                "\n".join(self.logs[-15:])
            time.sleep(0.05)

    def until_state(self, state: str, timeout: float) -> None:
        self.until(lambda: self.state == state, timeout, f"state {state} (now {self.state}: {self.supervisor.reason})")

    def recent(self, kind: type, seconds: float) -> list:
        since = time.monotonic_ns() - seconds * 1e9
        return [s for t, s in self.samples if t >= since and isinstance(s, kind)]

    def position(self) -> np.ndarray:
        return np.array(self.supervisor.telemetry.position)

    def speed(self) -> float:
        """The estimated speed (m/s); infinite while unknown."""
        v = self.supervisor.telemetry.velocity
        return float("inf") if v is None else float(np.linalg.norm(v))

    def drift(self, seconds: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
        """The mean positions over the next second and over the second that starts ``seconds`` later."""
        first = self.mean_position(1.0)
        time.sleep(seconds - 1.0)
        return first, self.mean_position(1.0)

    def mean_position(self, seconds: float) -> np.ndarray:
        """The mean of the position estimates over the next ``seconds`` (an estimator's jitter averaged out)."""
        points, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            points.append(self.position())
            time.sleep(0.05)
        return np.mean(points, 0)

    def close(self) -> None:
        """Land first if the vehicle is in the air (a failed test leaves the next one a vehicle on the ground)."""
        if self.supervisor.land()[0]:
            deadline = time.monotonic() + 60.0
            while self.state != "landed" and time.monotonic() < deadline:
                time.sleep(0.1)
        self.supervisor.config.shutdown_action = "hover"
        self.runner.stop(1.0)
        self.backend.close()


def fly(bridge: Bridge, command: tuple, seconds: float) -> None:
    """Send the pilot's ``command`` at 20 Hz for ``seconds``, or until the bridge stops flying the pilot."""
    deadline = time.monotonic() + seconds
    while bridge.state in ("flying", "stale") and time.monotonic() < deadline:
        bridge.supervisor.command(command)
        time.sleep(0.05)


class Autopilot:
    """One SITL run that the tests here share, in order, as one operator's session; started afresh after a failure.

    A test that fails can leave the autopilot unfit to fly the next one: once in CI, PX4 SIH's land detector fired
    in mid-air (its height estimate diverging) and the failed test's clean-up left PX4 refusing to arm for the
    next test. After a failed test the next one gets a fresh SITL (the failed one's folder, its log with it, stays
    in pytest's temporary folders), so that one failure fails one test.
    """

    def __init__(self, kind: str, folders: pytest.TempPathFactory):
        self.kind, self.folders = kind, folders
        self.stack = contextlib.ExitStack()
        self.early: Bridge | None = None  # a bridge started before the autopilot, for the first test
        self.failed = ""  # the test that failed on this SITL run: the next test starts a fresh one
        self.start(early=True)

    def start(self, early: bool = False) -> None:
        """Start the SITL and the operator's link. ArduPilot's firmware runs once something connects to SERIAL0:
        a bridge that waits there from before the start (kept for the first test with ``early``)."""
        folder = self.folders.mktemp(self.kind)
        waiting = Bridge("tcp:127.0.0.1:5760", "ardupilot") if self.kind == "ardupilot" else None  # it must wait
        try:
            self.sitl = self.stack.enter_context(ss.ardupilot(folder) if waiting else ss.px4(folder))
            self.operator = ss.Operator(self.sitl)
            self.stack.callback(self.operator.close)
            self.operator.prepare()
        except BaseException:
            self.early = waiting
            self.close()
            raise
        if early:
            self.early = waiting
        elif waiting is not None:
            waiting.close()

    def restart(self) -> None:
        print(f"\n{self.kind}: a fresh SITL after {self.failed} failed (its log: {self.sitl.folder / 'sitl.log'})")
        self.close()
        self.stack, self.failed = contextlib.ExitStack(), ""
        self.start()

    def close(self) -> None:
        """Stop the SITL, then the bridge that waited for it, if it is still open."""
        self.stack.close()
        if self.early is not None:
            self.early.close()
            self.early = None


@pytest.fixture(scope="module", params=[pytest.param("ardupilot", marks=pytest.mark.sitl),
                                        pytest.param("px4", marks=pytest.mark.sitl)])
def autopilot(request, tmp_path_factory):
    kind = request.param
    ss.ardupilot_binary() if kind == "ardupilot" else ss.px4_folder()  # skip, saying why, without it
    autopilot = Autopilot(kind, tmp_path_factory)
    try:
        yield autopilot
    finally:
        autopilot.close()


@pytest.fixture(autouse=True)
def _each_test_gets_an_autopilot_fit_to_fly(request) -> Iterator[None]:
    """A fresh SITL after a failed test; the bridge started before ArduPilot closed unless this is its test.

    That bridge holds SERIAL0 (tcp:5760), which ArduPilot's SITL gives to one client at a time: when its test is
    deselected (``-k``), every later bridge on that port would be refused.
    """
    if "autopilot" not in request.fixturenames:
        yield
        return
    autopilot = request.getfixturevalue("autopilot")
    if autopilot.failed:
        autopilot.restart()
    if autopilot.early is not None and request.function is not \
            test_the_bridge_waits_for_the_autopilot_then_publishes_its_telemetry:
        autopilot.early.close()
        autopilot.early = None
    yield
    if getattr(request.node, "call_failed", False):
        autopilot.failed = request.node.name


def test_the_bridge_waits_for_the_autopilot_then_publishes_its_telemetry(autopilot: Autopilot) -> None:
    bridge = autopilot.early or Bridge(autopilot.sitl.bridge_address, autopilot.sitl.flavour)
    autopilot.early = None
    try:
        bridge.until(lambda: bridge.status()["link"] and bridge.recent(OdometrySample, 1.0), 120.0,
                     "a position estimate")
        if autopilot.kind == "ardupilot":  # started before the autopilot: waited for it (tcp:)
            assert any("nothing listens on tcp:127.0.0.1:5760" in m for m in bridge.logs)
            assert any("connected to tcp:127.0.0.1:5760" in m for m in bridge.logs)
        time.sleep(5.0)  # five seconds of telemetry at rest
        imu, odom = bridge.recent(ImuSample, 5.0), bridge.recent(OdometrySample, 5.0)
        imu_rate, odom_rate = len(imu) / 5.0, len(odom) / 5.0
        accel = np.array([s.linear_acceleration for s in imu])
        print(f"\n{autopilot.kind} at rest: imu/data {imu_rate:.0f} Hz, odom {odom_rate:.0f} Hz, accel mean "
              f"{np.round(accel.mean(0), 2).tolist()} m/s^2")
        assert imu_rate >= 50.0 and odom_rate >= 10.0
        assert accel.mean(0)[2] == pytest.approx(9.8, abs=0.5)  # REP-145: gravity on +z, body FLU
        assert np.all(np.abs(accel.mean(0)[:2]) < 0.5)
        q = odom[-1].orientation
        assert math.sqrt(sum(v * v for v in q)) == pytest.approx(1.0, abs=1e-3)
        lag = [(t - s.stamp) / 1e6 for t, s in bridge.samples[-200:] if isinstance(s, ImuSample)]
        print(f"{autopilot.kind}: imu/data stamped {np.median(lag):.1f} ms (median) before its receipt")
        # Stamped at measurement (earlier than the receipt), in this computer's clock (not seconds off). The age
        # itself is the SITL's and the test process's: 1-26 ms on an idle machine, 75-86 ms for PX4 SIH under CI's full
        # load, 236-290 ms once (the bound catches a clock seconds off).
        assert 0 < np.median(lag) < 500.0
        if autopilot.kind == "px4":
            # Started with the SITL: PX4 dead-reckons until it fuses GPS (about 30-40 s in), then puts its estimate
            # back in one sample. The bridge must see that as a reset, or a take-over recorded before it leaves the
            # fence's centre metres away (24 m once: the pilot's flight was held by the fence at take-off). The
            # wait costs nothing: PX4 refuses to arm until then, and the next test would wait instead.
            bridge.until(lambda: bridge.supervisor.resets > 0, 120.0, "PX4's estimate reset as it fuses GPS")
            print(next(m for m in bridge.logs if "jumped" in m))
    finally:
        bridge.close()


def test_an_operators_takeoff_reaches_its_height_and_the_fence_holds_still(autopilot: Autopilot) -> None:
    bridge = Bridge(autopilot.sitl.bridge_address, autopilot.sitl.flavour, fence_radius=4.0)
    try:
        bridge.until_state("wait_airborne", 60.0)
        autopilot.operator.takeoff(2.5)
        bridge.until_state("prime", 90.0)
        taken_over_at = bridge.status()["height"]
        bridge.until_state("flying", 15.0)
        fly(bridge, (0.0, 0.0, 0.0, 0.0), 3.0)  # the pilot, hovering
        height = bridge.status()["height"]
        print(f"\n{autopilot.kind}: taken over at {taken_over_at:.2f} m, {height:.2f} m 3 s later (asked 2.5 m)")
        # The take-off was not cut short (it was, at 1.36 m). ArduPilot reaches 2.47-2.49 m. PX4's Hold creeps up the
        # last 0.4 m after its take-off; waiting for that creep to end (mean climb under 0.05 m/s) takes over 2.30-2.43
        # m up (2.18-2.45 m when every speed sample under 0.2 m/s counted as settled). The PX4 bound leaves room
        # for its estimate of the ground, which drifts.
        low = 2.2 if autopilot.kind == "ardupilot" else 2.0
        assert taken_over_at >= low and height >= low
        # Fly out until the geofence (4 m from the take-over point) holds the vehicle.
        fly(bridge, (1.5, 0.0, 0.0, 0.0), 30.0)
        assert bridge.state == "hold" and "geofence" in bridge.supervisor.reason, bridge.supervisor.reason
        point = np.array(bridge.supervisor.hold_point[0])
        # Braking from 1.5 m/s overshoots; the hold brings the vehicle back to the hold point (in 3 s on an idle
        # machine, later under load): from there, 5 s of hold must not move it.
        bridge.until(lambda: bridge.speed() < 0.3 and np.linalg.norm(bridge.position() - point) < 0.5, 30.0,
                     "back at the hold point after braking from 1.5 m/s")
        first, last = bridge.drift(5.0)
        moved = float(np.linalg.norm(last - first))
        off = float(np.linalg.norm(last - point))
        print(f"{autopilot.kind}: 5 s of hold at the fence moved {moved:.2f} m (means of 1 s); {off:.2f} m from the "
              "hold point")
        if autopilot.kind == "ardupilot":
            assert moved < 0.5 and off < 0.5
            assert bridge.supervisor.land()[0]
            bridge.until_state("landed", 60.0)
        else:
            # PX4 SIH's hold at the fence moved 0.26-1.04 m over these 5 s across runs here, staying within 0.11-0.66 m
            # of the hold point. PX4's own Hold mode (AUTO.LOITER) moves as much: the estimator wanders (SIH's ground
            # truth moved about 1.1 m in 10 s of either hold, docs/autopilot.md), so PX4's own hold is measured here
            # beside ours. The hover this guards against (a zero velocity) drifted away at 0.27-0.29 m/s, 1.6 m or
            # more from the hold point by now.
            assert off < 1.0
            operator = autopilot.operator
            operator.set_mode(ss.PX4_AUTO, ss.PX4_AUTO_LOITER)
            bridge.until_state("taken_over", 10.0)
            bridge.until(lambda: bridge.speed() < 0.3, 30.0, "settled in PX4's Hold")
            own = float(np.linalg.norm(np.subtract(*bridge.drift(5.0))))
            print(f"px4: 5 s of PX4's own Hold (AUTO.LOITER) moved {own:.2f} m (ours {moved:.2f} m)")
            operator.set_mode(ss.PX4_AUTO, ss.PX4_AUTO_LAND)
            operator.wait_disarmed()
    finally:
        bridge.close()


def a_first_flight_away(autopilot: Autopilot) -> None:
    """Fly 4 m or more from the autopilot's origin and land, unless an earlier test of this SITL run did.

    The test before flies out to its fence; run alone (``-k``), or on a fresh SITL after a failure, the second
    flight needs a first one of its own.
    """
    operator = autopilot.operator
    operator.until(lambda: "LOCAL_POSITION_NED" in operator.latest, 60.0)
    operator.wait_disarmed()
    if math.hypot(*operator.position()[:2]) > 3.0:
        return
    bridge = Bridge(autopilot.sitl.bridge_address, autopilot.sitl.flavour, fence_radius=10.0)
    try:
        bridge.until_state("wait_airborne", 60.0)
        operator.takeoff(1.5)
        bridge.until_state("flying", 90.0)
        fly(bridge, (1.5, 0.0, 0.0, 0.0), 4.0)
        print(f"\n{autopilot.kind}: a first flight of its own, to {np.round(bridge.position(), 1).tolist()}")
        assert bridge.supervisor.land()[0]
        bridge.until_state("landed", 60.0)
    finally:
        bridge.close()


def test_a_second_flight_in_the_same_run_has_its_full_fence(autopilot: Autopilot) -> None:
    a_first_flight_away(autopilot)
    bridge = Bridge(autopilot.sitl.bridge_address, autopilot.sitl.flavour, fence_radius=10.0)
    try:
        bridge.until_state("wait_airborne", 60.0)
        # The ground is known once the autopilot says the vehicle stands on it (landed state, or disarmed): until
        # then, in the bridge's first tenths of a second, heights count from the estimator's origin (0.38 m off
        # once, PX4 under CI's load).
        bridge.until(lambda: bridge.supervisor.ground is not None, 10.0, "the ground (landed state or disarmed)")
        on_ground = bridge.status()["height"]
        autopilot.operator.takeoff(1.5)
        bridge.until_state("flying", 90.0)
        status = bridge.status()
        start = np.array(status["takeover"])
        print(f"\n{autopilot.kind}: second flight from {np.round(start, 2).tolist()} (the autopilot's local frame): "
              f"height on the ground {on_ground:.2f} m, distance {status['distance']:.2f} m, fence margin "
              f"{status['fence_margin']:.2f} m, height {status['height']:.2f} m")
        assert math.hypot(*start[:2]) > 3.0  # the autopilot's origin is where the first flight began
        assert abs(on_ground) < 0.2  # on the ground is 0 m, wherever the estimator's origin sits
        assert status["distance"] < 0.5 and status["fence_margin"] > 9.5
        # Heights are measured from where the vehicle stood (0 on the ground, above). How high the autopilot climbs
        # is its own: PX4 aims at its home altitude + 1.5 m, and its estimate of the ground drifts between flights
        # (1.02-1.31 m reached here; its estimator's own climb disagreed with that by up to 0.8 m). Measured from
        # the estimator's origin instead, PX4's heights were 1.1-1.9 m off.
        assert 0.8 < status["height"] < 2.0
        assert bridge.supervisor.land()[0]
        bridge.until_state("landed", 60.0)
    finally:
        bridge.close()


def test_the_shipped_pilot_flies_our_scenes_through_the_autopilot(autopilot: Autopilot) -> None:
    from liquid_pilot.models import load_runtime
    from liquid_pilot.harness.autopilot import AutopilotLoop
    from liquid_pilot.sim.config import load_scenario
    from liquid_pilot.sim.episode import fly
    from liquid_pilot.harness.pilots import PilotPolicy
    from liquid_pilot.sim.world import Simulator

    model = ROOT / "models" / "cfc_ncp.pt"
    scenario = load_scenario("forest_summer")
    logs: list[str] = []
    # From a vehicle disarmed on the ground, as a user starts it: under CI's load the loop once took over a PX4
    # still landing from the test before (AUTO.LAND, armed) and flew 3 of 5.
    autopilot.operator.wait_disarmed()
    loop = AutopilotLoop(load_runtime(model), scenario, autopilot.sitl.bridge_address, autopilot.sitl.flavour,
                         log=lambda level, m: logs.append(m))
    seeds = range(100000, 100000 + EPISODES)
    try:
        loop.start()
        through = [loop.episode(seed) for seed in seeds]
    except RuntimeError:
        print("\n".join(logs[-40:]))  # the bridge's and the loop's last words, with the failure
        raise
    finally:
        loop.close()
    sim = Simulator(scenario)
    policy = PilotPolicy.from_file(model)
    policy.check(sim)
    direct = [fly(sim, policy, seed) for seed in seeds]
    sim.close()
    print(f"\n{autopilot.kind}: seed, through the autopilot (time to target; frames flown per second and the longest "
          "gap between two, which a starved test process would stretch), direct")
    for a, b in zip(through, direct):
        gap = max(np.diff([row[0] for row in a.trajectory]), default=0.0)
        print(f"  {a.seed}  {a.reason:>14} {a.time_to_target or 0:5.2f} s {a.steps / max(a.duration, 1e-9):4.1f} Hz "
              f"{gap * 1e3:4.0f} ms   {b.reason:>14} {b.time_to_target or 0:5.2f} s")
    rate = sum(r.success for r in through) / len(through)
    rate_direct = sum(r.success for r in direct) / len(direct)
    times = [r.time_to_target for r in through if r.success]
    print(f"  success {rate:.0%} through {autopilot.kind}, {rate_direct:.0%} direct; mean time to target "
          f"{np.mean(times) if times else float('nan'):.2f} s against "
          f"{np.mean([r.time_to_target for r in direct if r.success]):.2f} s")
    assert rate >= rate_direct - 1.0 / len(seeds), "\n".join(logs[-20:])  # at most one episode fewer


def test_mavlink2_signing_with_the_autopilots_key(autopilot: Autopilot) -> None:
    if autopilot.kind != "ardupilot":
        pytest.skip("PX4 v1.15 SITL: signing is checked against ArduPilot (docs/autopilot.md, MAVLink 2 signing)")
    key = os.urandom(32)
    operator = autopilot.operator

    operator.wait_disarmed()  # a vehicle still landing took GUIDED from a bridge without the key
    operator.conn.mav.setup_signing_send(operator.system, operator.component, key, 0)  # as MAVProxy's signing setup
    operator.conn.setup_signing(key, sign_outgoing=True)
    # Without the key the autopilot ignores the bridge's commands (no COMMAND_ACK); with it, it answers them. On a
    # telemetry port: ArduPilot takes unsigned messages on SERIAL0 whatever the key, as its USB port.
    for bridge_key, expect in ((None, "vehicle refused control: no COMMAND_ACK"), (key, "vehicle accepted control")):
        bridge = Bridge(autopilot.sitl.telemetry_address, "ardupilot", backend={"key": bridge_key})
        try:
            bridge.until(lambda: bridge.status()["link"], 30.0, "the link")
            bridge.backend.request_control()  # GUIDED, on the ground: harmless
            bridge.until(lambda: any(expect in m for m in bridge.logs), 10.0, expect)
        finally:
            bridge.close()


def test_liquid_pilot_sitl_names_a_bad_address_in_one_line() -> None:
    from cli_support import cli

    result = cli("sitl", "--stack", "px4", "--address", "bogus", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: mavlink address 'bogus': expected udpin:")
