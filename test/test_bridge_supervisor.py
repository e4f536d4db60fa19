"""The supervisor against a fake clock and a fake backend: every rule, no sleeps."""
from __future__ import annotations

import math

import numpy as np
import pytest

from liquid_pilot.bridge.supervisor import Backend, Event, Supervisor, SupervisorConfig, Telemetry
from liquid_pilot.flight.types import ManualClock

RATE = 20.0
PERIOD = 1.0 / RATE
HOVER = (0.0, 0.0, 0.0, 0.0)


class FakeBackend(Backend):
    """A vehicle that does what it is told when the test says so."""

    name = "fake"

    def __init__(self, clock: ManualClock, **capabilities):
        for key, value in capabilities.items():
            setattr(self, key, value)
        self.clock = clock
        self.t = Telemetry(armed=False, mode="POSCTL", in_control=False, position=(1.0, 2.0, 0.0),
                           velocity=(0.0, 0.0, 0.0), yaw=0.0)
        self.alive = True  # the vehicle talks (heard and pose stamps follow the clock)
        self.pose = True
        self.sent: list[tuple[tuple, int]] = []
        self.calls: list[str] = []
        self.pending: list[Event] = []

    def poll(self, now: int) -> Telemetry:
        if self.alive:
            self.t.heard = now
            if self.pose:
                self.t.pose_stamp = now
        return self.t

    def events(self) -> list[Event]:
        out, self.pending = self.pending, []
        return out

    def send(self, command, now: int) -> None:
        self.sent.append((tuple(command), now))

    def request_control(self) -> None:
        self.calls.append("control")

    def arm(self) -> None:
        self.calls.append("arm")

    def takeoff(self, height: float) -> None:
        self.calls.append(f"takeoff {height}")

    def land(self) -> None:
        self.calls.append("land")

    def kill(self) -> None:
        self.calls.append("kill")

    def release(self) -> None:
        self.calls.append("release")

    def at_height(self, h: float) -> None:
        self.t.position = (self.t.position[0], self.t.position[1], h)


class Rig:
    def __init__(self, **config):
        self.clock = ManualClock(10**9)
        self.backend = FakeBackend(self.clock, **config.pop("backend", {}))
        self.logs: list[tuple[str, str]] = []
        self.pilot: list[bool] = []
        self.statuses: list[dict] = []
        self.sup = Supervisor(self.backend, SupervisorConfig(**config), self.clock,
                              lambda level, message: self.logs.append((level, message)), self.pilot.append,
                              self.statuses.append)

    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            self.clock.advance(PERIOD)
            self.sup.tick()

    def run_for(self, seconds: float) -> None:
        self.tick(round(seconds / PERIOD))

    @property
    def state(self) -> str:
        return self.sup.state

    def sent_since(self, count: int) -> list[tuple]:
        return [c for c, _ in self.backend.sent[count:]]

    def travel(self, to: tuple, speed: float = 2.0) -> int:
        """Fly the vehicle in a straight line to ``to`` at ``speed`` m/s, one step a period, its velocity estimate
        agreeing (a jump it did not fly is an estimator reset), until it is there or the bridge stops flying the
        pilot (the pilot's commands may go stale meanwhile). Return how many setpoints had been sent before the last
        tick."""
        n = len(self.backend.sent)
        while True:
            here = np.array(self.backend.t.position)
            gap = np.array(to, dtype=float) - here
            distance = float(np.linalg.norm(gap))
            if distance < 1e-9 or self.state not in ("flying", "stale"):
                self.backend.t.velocity = (0.0, 0.0, 0.0)
                return n
            step = gap if distance <= speed * PERIOD else gap / distance * speed * PERIOD
            self.backend.t.position = tuple(here + step)
            self.backend.t.velocity = tuple(gap / distance * speed)
            n = len(self.backend.sent)
            self.tick()

    def fly(self) -> None:
        """From the start to flying, the operator having armed and taken off (the default flow)."""
        self.tick()
        assert self.state == "wait_airborne"
        self.backend.t.armed = True
        self.backend.at_height(1.0)
        self.run_for(self.sup.config.settle_s + PERIOD)  # the climb has settled
        assert self.state == "prime"
        self.run_for(1.0)
        assert self.state == "switch"
        self.backend.t.in_control, self.backend.t.mode = True, "OFFBOARD"
        self.tick()
        assert self.state == "flying"


def climb(r: Rig, speed: float, seconds: float, jitter: float = 0.0) -> None:
    """Let the operator's vehicle rise at ``speed`` m/s for ``seconds``, its speed estimate jittering by ``jitter``."""
    for k in range(round(seconds / PERIOD)):
        r.backend.at_height(r.backend.t.position[2] + speed * PERIOD)
        r.backend.t.velocity = (0.0, 0.0, speed + (jitter if k % 2 else -jitter))
        r.tick()
        if r.state != "wait_airborne":
            return


def test_the_slow_end_of_an_autopilots_climb_is_waited_for_and_noise_does_not_hold_the_take_over_back() -> None:
    # PX4's Hold after its take-off creeps up the last 0.4 m at 0.1-0.03 m/s; its speed estimate jitters by 0.07.
    r = Rig()
    r.tick()
    r.backend.t.armed = True
    r.backend.at_height(2.06)
    climb(r, 0.10, 3.0, jitter=0.07)
    climb(r, 0.06, 2.0, jitter=0.07)
    assert r.state == "wait_airborne"  # still climbing: taking over now would stop it short
    climb(r, 0.0, 1.0 + 2 * PERIOD, jitter=0.07)
    assert r.state == "prime" and r.backend.t.position[2] == pytest.approx(2.48)


def test_a_climb_that_never_settles_is_taken_over_when_it_is_slow() -> None:
    # An estimate drifting up at 0.1 m/s never settles under 0.05 m/s: after CREEP_WAIT_S it is taken over anyway.
    from liquid_pilot.bridge.supervisor import CREEP_WAIT_S

    r = Rig()
    r.tick()
    r.backend.t.armed = True
    r.backend.at_height(1.0)
    climb(r, 0.1, r.sup.config.settle_s + CREEP_WAIT_S - 1.0)
    assert r.state == "wait_airborne"
    climb(r, 0.1, 2.0)
    assert r.state == "prime"
    r = Rig()  # a fast climb is never taken over
    r.tick()
    r.backend.t.armed = True
    r.backend.at_height(1.0)
    climb(r, 0.5, r.sup.config.settle_s + CREEP_WAIT_S + 2.0)
    assert r.state == "wait_airborne"


def test_the_default_flow_waits_for_the_operator_then_primes_before_switching() -> None:
    r = Rig()
    r.backend.alive = False
    r.run_for(3.0)
    assert r.state == "wait_link" and r.backend.sent == [] and r.backend.calls == []
    r.backend.alive = True
    r.tick()
    assert r.state == "wait_airborne"
    r.run_for(2.0)  # on the ground, disarmed: nothing is sent, nothing requested
    r.backend.t.armed = True
    r.backend.at_height(0.2)
    r.run_for(1.0)
    assert r.state == "wait_airborne" and r.backend.sent == []  # below min_height
    r.backend.at_height(1.0)
    r.backend.t.velocity = (0.0, 0.0, 0.6)  # still climbing
    r.run_for(2.0)
    assert r.state == "wait_airborne" and r.backend.sent == []
    r.backend.t.velocity = (0.0, 0.0, 0.02)  # settling: taken over once the last settle_s averages under 0.05 m/s
    settling = r.clock.now
    while r.state == "wait_airborne" and r.clock.now - settling < 2e9:
        r.tick()
    assert r.state == "prime" and 0.5e9 <= r.clock.now - settling <= 1e9 + PERIOD * 1e9
    start = r.clock.now
    while r.state == "prime":
        assert r.backend.calls == []  # no mode switch before the stream has run prime_s
        r.tick()
    assert r.backend.calls == ["control"]
    first_stream = r.backend.sent[0][1]
    assert first_stream == start + 0 or first_stream >= start
    switch_at = r.clock.now
    assert (switch_at - first_stream) / 1e9 >= 1.0 - 1e-9  # the stream ran ~1 s before the switch
    assert all(c == HOVER for c in r.sent_since(0))
    assert r.pilot == []
    r.tick(3)
    assert r.state == "switch" and r.backend.calls == ["control"]  # requested once
    r.backend.t.in_control = True
    r.tick()
    assert r.state == "flying" and r.pilot == [True]
    n = len(r.backend.sent)
    r.sup.command((0.5, 0.1, 0.0, 0.2))
    r.tick()
    assert r.sent_since(n) == [(0.5, 0.1, 0.0, 0.2)]
    # Every transition was logged and reported.
    states = [s["state"] for s in r.statuses]
    assert states == ["wait_airborne", "prime", "switch", "flying"]
    assert sum("->" in m for _, m in r.logs) == 4


def test_the_keep_alive_streams_every_period_independently_of_the_pilot() -> None:
    r = Rig()
    r.fly()
    n = len(r.backend.sent)
    for _ in range(10):
        r.sup.command((0.3, 0.0, 0.0, 0.0))
        r.tick()
    r.sup.command((0.4, 0.0, 0.0, 0.0))  # the pilot goes quiet: the stream goes on, repeating its command
    r.tick(5)
    assert len(r.backend.sent) - n == 15
    assert r.sent_since(n)[-5:] == [(0.4, 0.0, 0.0, 0.0)] * 5


def test_stale_commands_hover_within_one_period_then_land() -> None:
    r = Rig(command_timeout=0.5, stale_land_s=2.0, landed_height=0.1, touchdown_s=0.5, land_speed=0.5)
    r.fly()
    r.sup.command((1.0, 0.0, 0.0, 0.0))
    last = r.clock.now
    while r.state == "flying":
        r.tick()
    n_stale = len(r.backend.sent)
    # Hover from the first period past command_timeout.
    assert r.state == "stale" and r.backend.sent[-1][0] == HOVER
    assert (r.clock.now - last) / 1e9 <= 0.5 + PERIOD + 1e-9
    assert r.backend.sent[-2][0] == (1.0, 0.0, 0.0, 0.0)
    assert r.pilot == [True]  # the pilot stays enabled: it may come back
    r.run_for(1.0)
    r.sup.command((0.2, 0.0, 0.0, 0.0))  # it does
    r.tick()
    assert r.state == "flying" and r.backend.sent[-1][0] == (0.2, 0.0, 0.0, 0.0)
    assert any("pilot commands again" in m for _, m in r.logs)
    # Silent for good: hover, then land after stale_land_s.
    while r.state != "stale":
        r.tick()
    n_stale, stale_at = len(r.backend.sent), r.clock.now
    while r.state != "landing":
        r.tick()
        assert r.clock.now - last < 10e9
    assert 2.0 <= (r.clock.now - stale_at) / 1e9 <= 2.0 + PERIOD + 1e-9
    assert r.pilot == [True, False]
    stale_entered = next(s for s in reversed(r.statuses) if s["state"] == "stale")
    assert stale_entered["reason"].startswith("no pilot command")
    assert all(c == HOVER for c in r.sent_since(n_stale)[:-1])
    assert r.backend.sent[-1][0] == (0.0, 0.0, -0.5, 0.0)  # descending by setpoints (the backend does not land itself)
    r.backend.at_height(0.05)
    r.tick()
    assert r.state == "landing"  # touchdown_s of descent setpoints still
    r.run_for(0.5)
    assert r.state == "landed" and r.backend.calls[-1] == "release"
    n = len(r.backend.sent)
    r.run_for(1.0)
    assert len(r.backend.sent) == n  # nothing more
    assert r.sup.done


@pytest.mark.parametrize(("where", "value", "what"), [
    ("position", (11.5, 2.0, 1.0), "from where the bridge took control"),  # 10.5 m from (1, 2): the take-over
    ("position", (1.0, 2.0, 5.5), "above the ground"),
    ("velocity", (2.5, 2.5, 0.0), "m/s"),
])
@pytest.mark.parametrize("action", ["hover", "land"])
def test_a_geofence_breach_hovers_or_lands_within_one_period(where: str, value: tuple, what: str, action: str) -> None:
    r = Rig(fence_radius=10.0, fence_height=5.0, fence_speed=3.0, fence_action=action)
    r.fly()
    r.sup.command((1.0, 0.0, 0.0, 0.0))
    r.tick()
    if where == "position":  # flown there at 2 m/s: the tick that crosses the fence breaches it
        n = r.travel(value)
        p = r.backend.t.position
        crossed = math.hypot(p[0] - 1.0, p[1] - 2.0) - 10.0 if "control" in what else p[2] - 5.0
        assert 0.0 < crossed <= 2.0 * PERIOD + 1e-9
    else:
        setattr(r.backend.t, where, value)
        n = len(r.backend.sent)
        r.tick()
    assert r.pilot == [True, False]
    assert "geofence" in r.sup.reason and what in r.sup.reason
    assert any(level == "warn" and "geofence" in m for level, m in r.logs)
    if action == "hover":
        assert r.state == "hold" and r.sent_since(n) == [HOVER]
        r.sup.command((1.0, 0.0, 0.0, 0.0))
        r.tick(5)
        assert all(c == HOVER for c in r.sent_since(n))  # the pilot no longer flies
    else:
        assert r.state == "landing" and r.sent_since(n) == [(0.0, 0.0, -0.4, 0.0)]


def test_operator_takeover_stops_the_stream_and_disables_the_pilot() -> None:
    r = Rig()
    r.fly()
    r.sup.command((1.0, 0.0, 0.0, 0.0))
    r.tick(3)
    r.backend.t.in_control, r.backend.t.mode = False, "POSCTL"  # the RC's mode switch
    n = len(r.backend.sent)
    r.tick()
    assert r.state == "taken_over" and "POSCTL" in r.sup.reason
    assert r.pilot == [True, False] and r.backend.calls[-1] == "release"
    r.sup.command((1.0, 0.0, 0.0, 0.0))
    r.backend.t.in_control = True  # even back in offboard: the operator has it
    r.run_for(2.0)
    assert len(r.backend.sent) == n
    assert r.sup.land() == (False, "cannot land in state taken_over")


def test_hold_resume_land_and_estop_requests() -> None:
    r = Rig(backend={"lands_itself": True})
    assert r.sup.hold()[0] is False  # not flying yet
    r.fly()
    ok, _ = r.sup.hold()
    assert ok and r.state == "hold" and r.pilot == [True, False]
    r.sup.command((1.0, 0.0, 0.0, 0.0))
    r.tick(2)
    assert r.backend.sent[-1][0] == HOVER
    assert r.sup.resume()[0] and r.state == "flying" and r.pilot == [True, False, True]
    r.tick()
    assert r.backend.sent[-1][0] == HOVER  # the command from before the resume does not fly
    # Land: this backend's autopilot lands itself; hover until it takes the command.
    assert r.sup.land() == (True, "landing")
    r.tick()
    assert r.backend.calls[-1] == "land" and r.backend.sent[-1][0] == HOVER and not r.sup.done
    r.backend.pending.append(Event("land", True))
    n = len(r.backend.sent)
    r.tick()
    assert r.sup.done and r.state == "landing"
    r.tick(3)
    assert len(r.backend.sent) == n  # the autopilot lands: no more setpoints
    r.backend.t.armed = False
    r.tick()
    assert r.state == "landed"
    # Estop works from any state, final ones included.
    assert r.sup.estop() == (True, "motors stopped")
    assert r.state == "estop" and r.backend.calls.count("kill") == 1


def test_estop_where_the_stack_cannot_stop_the_motors_holds() -> None:
    r = Rig(backend={"can_kill": False})
    r.fly()
    ok, message = r.sup.estop()
    assert not ok and "RC kill switch" in message and r.state == "hold" and "kill" not in r.backend.calls


@pytest.mark.parametrize("what", ["control", "arm"])
def test_a_refused_mode_switch_or_arm_fails_safe(what: str) -> None:
    r = Rig(auto_takeoff=True)
    r.tick()
    assert r.state == "prime"
    r.run_for(1.0)
    assert r.state == "switch" and r.backend.calls == ["control"]
    if what == "control":
        r.backend.pending.append(Event("control", False, "denied"))
    else:
        r.backend.t.in_control = True
        r.tick()
        assert r.state == "arm" and r.backend.calls == ["control", "arm"]
        r.backend.pending.append(Event("arm", False, "temporarily rejected"))
    n = len(r.backend.sent)
    r.tick()
    assert r.state == "failed" and "refused" in r.sup.reason and r.pilot == []
    r.run_for(1.0)
    assert len(r.backend.sent) == n and r.backend.calls[-1] == "release"
    assert any(level == "warn" and "failed" in m for level, m in r.logs)


def test_a_mode_switch_that_never_comes_times_out() -> None:
    r = Rig(auto_takeoff=True, mode_timeout=2.0)
    r.tick()
    r.run_for(1.0)
    assert r.state == "switch"
    r.run_for(1.9)
    assert r.state == "switch"
    r.run_for(0.2)
    assert r.state == "failed" and "within 2.0 s" in r.sup.reason


def test_auto_takeoff_by_climbing_setpoints() -> None:
    r = Rig(auto_takeoff=True, takeoff_height=1.5, takeoff_speed=0.5)
    r.tick()
    r.run_for(1.0)
    r.backend.t.in_control = True
    r.tick()
    assert r.state == "arm" and r.backend.calls == ["control", "arm"]
    r.backend.t.armed = True
    r.tick()
    assert r.state == "takeoff" and r.backend.sent[-1][0] == HOVER
    r.tick()
    assert r.backend.sent[-1][0] == (0.0, 0.0, 0.5, 0.0)
    r.backend.at_height(1.0)
    r.tick()
    assert r.state == "takeoff"
    r.backend.at_height(1.45)
    r.tick()
    assert r.state == "flying" and r.pilot == [True]


def test_auto_takeoff_by_the_autopilot_sends_no_setpoints_while_it_climbs() -> None:
    r = Rig(auto_takeoff=True, takeoff_height=1.5, backend={"takes_off_itself": True})
    r.tick()
    r.run_for(1.0)
    r.backend.t.in_control = True
    r.tick()
    r.backend.t.armed = True
    r.tick()
    n = len(r.backend.sent)
    r.tick()
    assert r.state == "takeoff" and r.backend.calls[-1] == "takeoff 1.5"
    r.backend.pending.append(Event("takeoff", True))
    r.run_for(1.0)
    assert len(r.backend.sent) == n
    r.backend.at_height(1.5)
    r.tick()
    assert r.state == "flying"


def test_a_refused_land_command_descends_by_setpoints() -> None:
    r = Rig(backend={"lands_itself": True})
    r.fly()
    r.sup.land()
    r.tick()
    r.backend.pending.append(Event("land", False, "denied"))
    r.tick()
    assert r.state == "landing" and r.backend.sent[-1][0] == (0.0, 0.0, -0.4, 0.0) and not r.sup.done
    assert any("refused land" in m for _, m in r.logs)


def test_an_unanswered_land_command_descends_by_setpoints_after_the_timeout() -> None:
    r = Rig(mode_timeout=1.0, backend={"lands_itself": True})
    r.fly()
    r.sup.land()
    r.run_for(1.0)
    assert r.backend.sent[-1][0] == HOVER
    r.tick(2)
    assert r.backend.sent[-1][0] == (0.0, 0.0, -0.4, 0.0)


@pytest.mark.parametrize("loss", ["link", "pose"])
def test_a_lost_link_or_position_estimate_holds(loss: str) -> None:
    r = Rig(link_timeout=1.0, telemetry_timeout=0.5)
    r.fly()
    r.sup.command((1.0, 0.0, 0.0, 0.0))
    if loss == "link":
        r.backend.alive = False
    else:
        r.backend.pose = False
    for _ in range(40):
        r.sup.command((1.0, 0.0, 0.0, 0.0))
        r.tick()
        if r.state != "flying":
            break
    assert r.state == "hold" and r.pilot == [True, False]
    assert r.backend.sent[-1][0] == HOVER
    assert r.sup.resume()[0] is False
    if loss == "link":
        r.backend.alive = True
    else:
        r.backend.pose = True
    r.tick()
    assert r.sup.resume()[0] is True


def test_shutdown_hovers_then_lands() -> None:
    r = Rig(shutdown_hover_s=1.0)
    r.fly()
    r.sup.command((1.0, 0.0, 0.0, 0.0))
    r.tick()
    r.sup.shutdown()
    assert r.state == "shutdown" and r.pilot == [True, False]
    n = len(r.backend.sent)
    r.run_for(0.95)
    assert r.sent_since(n) and all(c == HOVER for c in r.sent_since(n))
    r.run_for(0.1)
    assert r.state == "landing" and r.backend.sent[-1][0] == (0.0, 0.0, -0.4, 0.0)


def test_shutdown_hover_action_stops_the_stream() -> None:
    r = Rig(shutdown_hover_s=0.5, shutdown_action="hover")
    r.fly()
    r.sup.shutdown()
    r.run_for(0.6)
    assert r.state == "stopped" and r.sup.done and "failsafe" in r.sup.reason


def test_shutdown_before_flying_just_stops() -> None:
    r = Rig()
    r.tick()
    r.sup.shutdown()
    assert r.state == "stopped" and r.sup.done and r.backend.sent == []


def test_a_vehicle_that_disarms_in_flight_ends_the_stream() -> None:
    r = Rig()
    r.fly()
    r.backend.t.armed = False
    r.tick()
    assert r.state == "landed" and r.pilot == [True, False] and "disarmed" in r.sup.reason


def test_bad_pilot_commands_are_refused_and_logged_once() -> None:
    r = Rig()
    r.fly()
    r.sup.command((0.5, 0.0, 0.0, 0.0))
    r.tick()
    for bad in [(math.nan, 0.0, 0.0, 0.0), (1.0, 2.0), (math.inf, 0, 0, 0), ("a", 0, 0, 0), None]:
        r.sup.command(bad)
        r.tick()
        assert r.backend.sent[-1][0] == (0.5, 0.0, 0.0, 0.0)
    assert sum("refusing a pilot command" in m for _, m in r.logs) == 1
    r.sup.command((0.1, 0.0, 0.0, 0.0))
    assert any("recovered from bad_command (5 times" in m and "finite again" in m for _, m in r.logs)
    r.sup.command(np.array([0.25, 0.0, 0.0, 0.0], np.float32))  # any real numbers
    r.tick()
    assert r.backend.sent[-1][0] == (0.25, 0.0, 0.0, 0.0)


def test_stacks_whose_mode_the_bridge_cannot_set() -> None:
    # MAVROS without mavros_msgs: no switch request, no takeover detection (the mode is unknown).
    r = Rig(backend={"can_switch": False, "can_arm": False, "can_kill": False})
    r.backend.t.in_control, r.backend.t.armed = None, None
    r.tick()
    r.backend.at_height(1.0)
    r.tick()
    r.run_for(2.0)  # the climb settles (1 s), the stream primes (1 s)
    assert r.state == "flying" and r.backend.calls == []
    assert any("operator switches" in m for _, m in r.logs)
    with pytest.raises(ValueError, match="auto_takeoff needs arming"):
        Rig(auto_takeoff=True, backend={"can_arm": False})


@pytest.mark.parametrize(("field", "value", "message"), [
    ("command_timeout", 0.0, "supervisor: command_timeout must be in [0.01, 10], got 0.0"),
    ("fence_action", "rtl", "supervisor: fence_action must be one of hover, land, got 'rtl'"),
    ("auto_takeoff", "yes", "supervisor: auto_takeoff must be true or false, got 'yes'"),
    ("takeoff_height", 6.0, "must be below fence_height"),
    ("fence_radius", True, "supervisor: fence_radius must be a number, got True"),
])
def test_config_mistakes_name_the_value(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        SupervisorConfig(**{field: value})


def test_status_reports_the_vehicle() -> None:
    r = Rig()
    r.fly()
    r.travel((3.0, 4.0, 2.0))
    r.backend.t.velocity = (0.3, 0.4, 0.0)
    r.sup.command(HOVER)  # the pilot's commands went stale on the way
    r.tick()
    s = r.sup.status()
    assert s["state"] == "flying" and s["pilot_enabled"] and s["link"] and s["mode"] == "OFFBOARD"
    # Distance from the take-over point (1, 2), height above the ground the vehicle stood on (0).
    assert s["distance"] == 2.828 and s["height"] == 2.0 and s["speed"] == 0.5 and s["setpoints"] > 20
    assert s["fence_margin"] == 7.172 and s["ground"] == 0.0 and s["takeover"] == [1.0, 2.0, 1.0]


def test_an_estimator_reset_moves_the_fence_with_the_frame_so_it_stays_on_the_field() -> None:
    # PX4 before it fuses GPS: its estimate wanders 24 m while the vehicle stands still, then snaps back to its
    # origin in one sample (docs/autopilot.md). The take-over point recorded in the wandered frame moves with it.
    r = Rig(fence_radius=10.0, auto_takeoff=True, takeoff_height=1.0)
    r.backend.t.position, r.backend.t.velocity = (24.6, -2.4, 0.0), (0.3, 0.0, 0.0)
    r.tick()
    assert r.state == "prime" and r.sup.takeover == (24.6, -2.4, 0.0)
    r.backend.t.position = (0.1, 0.0, 0.0)
    r.tick()
    assert r.sup.resets == 1 and r.sup.status()["resets"] == 1
    # The step less what 0.3 m/s explains over the period: the take-over point is where the vehicle stands.
    assert np.allclose(r.sup.takeover, (0.1 - 0.3 * PERIOD, 0.0, 0.0))
    assert r.sup.status()["distance"] == pytest.approx(0.3 * PERIOD, abs=1e-3)
    assert [m for level, m in r.logs if "jumped" in m] == [
        "the position estimate jumped 24.63 m in 50 ms (-24.52, +2.40, +0.00 m, ENU): the estimator reset its "
        "position (reset 1); the take-over point, the ground and the hover point move with it"]
    # In the air, the hover's point and the ground move too: the vehicle holds where it was, 1 m up.
    r.run_for(1.0)
    r.backend.t.in_control, r.backend.t.mode = True, "OFFBOARD"
    r.tick()
    r.backend.t.armed, r.backend.t.velocity = True, (0.0, 0.0, 0.0)
    r.backend.pending.append(Event("arm", True))
    r.backend.at_height(1.0)
    r.run_for(0.5)
    assert r.state == "flying"
    assert r.sup.hold()[0]
    (x, y, z), _ = r.sup.hold_point
    r.backend.t.position = (x + 5.0, y, z - 3.0)
    r.tick()
    (x2, y2, z2), _ = r.sup.hold_point
    assert (x2 - x, z2 - z) == pytest.approx((5.0, -3.0)) and r.sup.status()["height"] == pytest.approx(1.0)
    assert r.state == "hold" and "geofence" not in r.sup.reason


@pytest.mark.parametrize("move", ["flown", "gap"])
def test_a_vehicle_that_moves_is_no_estimator_reset(move: str) -> None:
    # Flown at 8 m/s (0.4 m a sample, as the velocity says), or seen again after a telemetry gap longer than
    # telemetry_timeout (where it went is unknown): the fence stays put and breaches.
    r = Rig(fence_radius=10.0, fence_speed=20.0)
    r.fly()
    r.sup.command((1.0, 0.0, 0.0, 0.0))
    if move == "flown":
        r.travel((13.0, 2.0, 1.0), speed=8.0)
    else:
        r.backend.pose = False
        r.run_for(r.sup.config.telemetry_timeout + 0.1)
        assert r.state == "hold"
        r.backend.pose = True
        r.backend.t.position = (13.0, 2.0, 1.0)
        r.tick()
    assert r.sup.resets == 0 and r.sup.takeover == (1.0, 2.0, 1.0)
    distance = math.hypot(r.backend.t.position[0] - 1.0, r.backend.t.position[1] - 2.0)
    if move == "flown":  # held by the fence on the sample that crossed it
        assert r.state == "hold" and "geofence" in r.sup.reason and 10.0 < distance <= 10.4 + 1e-9
    else:
        assert distance == 12.0 and r.sup.status()["distance"] == 12.0
