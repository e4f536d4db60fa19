"""One supervisor for every flight stack: a plain-Python state machine between the pilot and a backend.

The supervisor decides, the backend speaks the stack's protocol. ``tick`` runs once per keep-alive
period (``runner.Runner`` calls it at the stack's rate, whatever the pilot does); every other call
(the pilot's commands, hold/land/estop, shutdown) only records a request. The clock is injectable
(nanoseconds), so every rule is tested against a fake clock, without sleeps.

States, in flight order::

    wait_link -> [wait_airborne] -> prime -> switch -> [arm -> takeoff] -> flying <-> stale
                                                                            |
    hold (hover), landing -> landed, estop, taken_over, failed, shutdown (hover) -> landing | stopped

- ``wait_link``: no vehicle heard within ``link_timeout``, or no fresh position estimate;
- ``wait_airborne`` (``auto_takeoff`` false, the default): the operator arms and takes off; the bridge
  waits until the vehicle is armed, ``min_height`` above the ground it took off from, no longer taking off
  (the autopilot's landed state or take-off mode) and its climb has settled (over the last ``settle_s``,
  the height's rise and the mean vertical speed under ``settle_speed``), so the operator's take-off ends where
  the operator asked;
- ``prime``: hover setpoints for ``prime_s`` before any mode switch (PX4 refuses offboard without a
  running stream);
- ``switch``: the offboard/guided mode is requested and confirmed by the vehicle (refusal or
  ``mode_timeout``: ``failed``); a stack whose mode the bridge cannot set (MAVROS) leaves it to the operator;
- ``arm``, ``takeoff`` (``auto_takeoff``): arm, then climb to ``takeoff_height`` (by the autopilot's
  take-off command, or by climbing setpoints);
- ``flying``: the pilot is enabled (``on_pilot(True)``) and its commands are forwarded;
- ``stale``: no pilot command for ``command_timeout``: hover; fresh commands fly again; still stale after
  ``stale_land_s``: land;
- geofence (horizontal distance from where the bridge took control, height above the ground the vehicle took
  off from, speed): ``fence_action`` hover (``hold``) or land; a lost link or position estimate holds too;

**References, every flight.** The autopilot's local origin is where its estimator started (ArduPilot: the
first GPS fix, kept across flights; PX4: often a metre or two off the ground), not the take-off point. So the
bridge keeps its own: the *ground* is the vehicle's height while it last stood on the ground (disarmed or
landed), and the *take-over point* is where the bridge took control (recorded at every take-over). Heights
(``min_height``, ``takeoff_height``, ``fence_height``, landing) are above the ground; the fence's radius is
from the take-over point. A bridge started with the vehicle already in the air has seen no ground: heights
are then from the autopilot's origin, said once in the log.

**An estimator reset moves the references with it.** The local frame itself moves when the autopilot's estimator
resets its position: PX4 dead-reckons on its accelerometer until GPS is fused (SIH's estimate wandered 24 m in
the 35 s before arming was allowed), then puts the vehicle back at its origin in one sample; a GPS glitch or a
lane switch does the same in flight. A step in the position estimate more than ``RESET_JUMP_M`` away from
what the velocity explains (within ``telemetry_timeout`` of the sample before) is such a reset: the take-over
point, the ground and the hover's point move by the same step, so the fence stays where it was on the field
(logged, counted in ``status``). Without this a take-over recorded before PX4 fused GPS put the fence's centre
25 m away, and the fence held the vehicle as soon as it took off.

**Hover holds a position.** Every hover (prime, hold, stale, the fence, shutdown) is a position setpoint at the
point where it began, with the heading of that moment, on backends that can send one (MAVLink, MAVROS): a zero
velocity drifts with the estimator's velocity error. Other backends (the Crazyflie) hover on a zero velocity.
- ``taken_over``: the vehicle left our mode without being asked (the operator's RC or ground station):
  no more setpoints, pilot disabled;
- ``shutdown``: hover for ``shutdown_hover_s``, then land (``shutdown_action: land``) or stop the stream.

Every transition is logged once and reported through ``on_status`` (the ``status`` dict). The
pilot is disabled on every way out of ``flying``/``stale``.
"""
from __future__ import annotations

import math
import numbers
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from liquid_pilot.bridge.conversions import Command, Vector
from liquid_pilot.flight.types import ZERO, Faults, Log, ManualClock
from liquid_pilot.settings import Range, check_fields, setting

Clock = Callable[[], int]

WAIT_LINK, WAIT_AIRBORNE, PRIME, SWITCH = "wait_link", "wait_airborne", "prime", "switch"
ARM, TAKEOFF = "arm", "takeoff"
FLYING, STALE, HOLD, LANDING, LANDED = "flying", "stale", "hold", "landing", "landed"
ESTOP, TAKEN_OVER, FAILED, SHUTDOWN, STOPPED = "estop", "taken_over", "failed", "shutdown", "stopped"
TERMINAL = frozenset({LANDED, ESTOP, TAKEN_OVER, FAILED, STOPPED})
CONTROLLED = frozenset({PRIME, SWITCH, ARM, TAKEOFF, FLYING, STALE, HOLD, SHUTDOWN})  # we stream setpoints
STREAMING = CONTROLLED | {LANDING}  # leaving these for a final state releases the vehicle
AIRBORNE = frozenset({TAKEOFF, FLYING, STALE, HOLD, SHUTDOWN})  # ours to bring down on shutdown
PILOT = frozenset({FLYING, STALE})  # the pilot is enabled
HOVERS = frozenset({PRIME, SWITCH, STALE, HOLD, SHUTDOWN})  # hover at the point where they began
CREEP_WAIT_S = 15.0  # s after settle_s that a climb still above settle_speed is waited for (wait_airborne)
CREEP_FACTOR = 4.0  # ... and then taken over if under this many times settle_speed
RESET_JUMP_M = 2.0  # m: a position step this far from what the velocity explains is the estimator's reset (smaller
# ones move the fence by less than an estimator wanders between resets)


@dataclass
class Telemetry:
    """What a backend knows of the vehicle. None: unknown (the stack does not tell, or not yet)."""

    heard: int | None = None  # ns: last valid message from the vehicle
    armed: bool | None = None
    mode: str = ""  # the stack's name of its mode, for logs and status
    in_control: bool | None = None  # in the mode that obeys our setpoints (offboard, guided)
    position: Vector | None = None  # m, ENU world
    velocity: Vector | None = None  # m/s, ENU world
    yaw: float | None = None  # rad, ENU heading
    pose_stamp: int | None = None  # ns: when position last changed hands
    landed: bool | None = None  # on the ground
    landed_state: str | None = None  # on_ground, takeoff, in_air or landing, where the stack tells
    taking_off: bool | None = None  # the autopilot's take-off is still under way (landed state or mode)


@dataclass(frozen=True)
class Event:
    """A backend's answer to a request: ``what`` is arm, control, takeoff, land or kill."""

    what: str
    accepted: bool
    detail: str = ""


class Backend:
    """A flight stack as the supervisor sees it. Every call returns at once (no waiting on the vehicle)."""

    name = "backend"
    rate = 20.0  # Hz: the keep-alive rate the stack wants
    can_switch = True  # the bridge can put the vehicle into its offboard/guided mode
    can_arm = True
    can_kill = True  # estop: stop the motors
    takes_off_itself = False  # take-off by the autopilot's command; else by climbing setpoints
    lands_itself = False  # landing by the autopilot's mode; else by descending setpoints

    def poll(self, now: int) -> Telemetry:
        raise NotImplementedError

    def events(self) -> list[Event]:
        return []

    holds_position = False  # hover by a position setpoint (``hold_position``); else by a zero velocity
    on_sample: Callable[[Any], None] | None = None  # receives telemetry samples (``bridge.telemetry``) as they come

    def send(self, command: Command, now: int) -> None:
        """Send one body FLU setpoint (vx, vy, vz, yaw_rate)."""
        raise NotImplementedError

    def hold_position(self, position: Vector, yaw: float, now: int) -> None:
        """Send one setpoint holding ``position`` (ENU, the telemetry's local frame) and heading ``yaw`` (ENU)."""
        self.send((0.0, 0.0, 0.0, 0.0), now)

    def fileno(self) -> int | None:
        """Return a descriptor that becomes readable when telemetry arrives (the keep-alive thread waits on it)."""
        return None

    def request_control(self) -> None:
        raise NotImplementedError

    def arm(self) -> None:
        raise NotImplementedError

    def takeoff(self, height: float) -> None:
        raise NotImplementedError

    def land(self) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        """Hand the vehicle back to its own controller: the stream stops here (landed, taken over, stopped)."""

    def close(self) -> None:
        """Free the link."""


@dataclass
class SupervisorConfig:
    """The supervisor's settings, each with its documentation and range (``bridge_node``'s parameters too)."""

    link_timeout: float = setting(1.5, "s without a message from the vehicle: link lost", Range(0.1, 60.0))
    telemetry_timeout: float = setting(0.5, "s without a position estimate before holding (the geofence would be "
                                            "blind)", Range(0.05, 60.0))
    prime_s: float = setting(1.0, "s of setpoints before the mode switch (PX4: about 1 s)", Range(0.0, 10.0))
    mode_timeout: float = setting(3.0, "s to wait for the vehicle to confirm a mode switch, arming or landing",
                                  Range(0.1, 60.0))
    auto_takeoff: bool = setting(False, "arm and take off; false: the operator does, the bridge waits until "
                                        "airborne")
    takeoff_height: float = setting(1.0, "m above the ground to climb to (auto_takeoff)", Range(0.1, 100.0))
    takeoff_speed: float = setting(0.5, "m/s when climbing by setpoints", Range(0.05, 5.0))
    takeoff_timeout: float = setting(20.0, "s to reach the take-off height", Range(1.0, 600.0))
    min_height: float = setting(0.3, "m above the ground before the bridge takes control (auto_takeoff false)",
                                Range(0.0, 100.0))
    settle_s: float = setting(1.0, "s the operator's climb must have settled over (mean vertical speed under "
                                   "settle_speed, the autopilot's take-off finished) before the bridge takes control "
                                   "(auto_takeoff false)", Range(0.0, 60.0))
    settle_speed: float = setting(0.05, "m/s: mean vertical speed over settle_s under which the operator's climb "
                                        "counts as settled", Range(0.01, 10.0))
    command_timeout: float = setting(0.5, "s without a pilot command before hovering (stale)", Range(0.01, 10.0))
    stale_land_s: float = setting(5.0, "s of stale commands (hovering) before landing", Range(0.0, 600.0))
    fence_radius: float = setting(10.0, "m: horizontal distance from where the bridge took control: geofence",
                                  Range(0.5, 10000.0))
    fence_height: float = setting(5.0, "m above the ground the vehicle took off from that breaches the geofence",
                                  Range(0.2, 10000.0))
    fence_speed: float = setting(3.0, "m/s: a faster vehicle breaches the geofence", Range(0.1, 100.0))
    fence_action: str = setting("hover", "on a geofence breach: hover (hold, pilot disabled) or land",
                                ("hover", "land"))
    land_speed: float = setting(0.4, "m/s when landing by setpoints", Range(0.05, 5.0))
    landed_height: float = setting(0.1, "m above the ground: touched down (landing by setpoints)", Range(0.0, 10.0))
    touchdown_s: float = setting(1.0, "s of descent setpoints after touching down, before the stream stops",
                                 Range(0.0, 60.0))
    shutdown_action: str = setting("land", "land: hover shutdown_hover_s, then land; hover: hover, then stop the "
                                           "stream (the stack's own offboard-loss failsafe takes over)",
                                   ("land", "hover"))
    shutdown_hover_s: float = setting(1.0, "s of hover before the shutdown action", Range(0.0, 60.0))

    def __post_init__(self) -> None:
        check_fields(self, "supervisor: ")
        if self.takeoff_height >= self.fence_height:
            raise ValueError(f"supervisor: takeoff_height {self.takeoff_height} m must be below fence_height "
                             f"{self.fence_height} m")


class Supervisor:
    """The state machine; thread-safe (one lock around every public call)."""

    def __init__(self, backend: Backend, config: SupervisorConfig | None = None, clock: Clock | None = None,
                 log: Log | None = None, on_pilot: Callable[[bool], None] | None = None,
                 on_status: Callable[[dict], None] | None = None):
        self.backend = backend
        self.config = c = config or SupervisorConfig()
        if c.auto_takeoff and not backend.can_arm:
            raise ValueError(f"supervisor: auto_takeoff needs arming, which the {backend.name} backend cannot do; "
                             "arm and take off on the RC or ground station (auto_takeoff: false)")
        self.clock = clock or ManualClock()
        self.log = log or (lambda level, message: None)
        self.on_pilot = on_pilot or (lambda enabled: None)
        self.on_status = on_status or (lambda status: None)
        self._lock = threading.RLock()
        self.telemetry = Telemetry()
        self.state, self.reason = WAIT_LINK, "starting"
        self.since = self.clock()
        self.transitions = 0
        self.setpoints = 0  # setpoints sent
        self.last_setpoint: Command | None = None
        # References of the current flight (module docstring): the ground's height in the local frame, seen
        # while the vehicle stood on it, and where the bridge took control; the hover's point and heading.
        self.ground: float | None = None
        self.takeover: Vector | None = None
        self.hold_point: tuple[Vector, float] | None = None
        self._climb: deque[tuple[int, float, float]] = deque()  # (ns, height, vertical speed) over settle_s
        self._airborne_since: int | None = None  # since when the operator's take-off is over (wait_airborne)
        self.pilot_enabled = False
        self._command: Command = ZERO
        self._command_at = self.since
        self._refused = Faults(self.log)  # non-finite pilot commands, logged once per burst
        self._link = False
        self._link_lost_at: int | None = None
        self._landing_by_setpoints = False
        self._landing_accepted = False
        self._touchdown_at: int | None = None
        self._shutting_down = False
        self._notes: set[str] = set()
        self._pose: tuple[int, Vector, Vector] | None = None  # (stamp, position, velocity) of the last estimate
        self.resets = 0  # estimator resets seen (module docstring)
        self.log("info", f"{backend.name}: waiting for the vehicle")

    # Requests (services, the pilot, shutdown).
    def command(self, command: Command) -> None:
        """Store the pilot's latest command, body FLU; a non-finite one is refused (logged once per burst)."""
        try:
            values = tuple(float(v) for v in command if isinstance(v, numbers.Real))
        except TypeError:  # not a sequence
            values = ()
        with self._lock:
            now = self.clock()
            if len(values) != 4 or len(command) != 4 or not all(math.isfinite(v) for v in values):
                self._refused.raise_("bad_command", f"refusing a pilot command that is not 4 finite numbers: "
                                                    f"{command!r} (more are counted, not logged); the stream hovers "
                                                    "when commands go stale", now)
                return
            if "bad_command" in self._refused:
                self._refused.clear(now, "pilot commands are finite again")
            self._command, self._command_at = values, now

    def hold(self) -> tuple[bool, str]:
        """Hover in place with the pilot disabled (until ``resume`` or ``land``)."""
        with self._lock:
            if self.state in (FLYING, STALE, TAKEOFF):
                self._enter(HOLD, "hold requested")
                return True, "holding (hover, pilot disabled)"
            return False, f"cannot hold in state {self.state}"

    def resume(self) -> tuple[bool, str]:
        """Fly the pilot again after a hold."""
        with self._lock:
            if self.state == HOLD and self._link and self._pose_fresh():
                self._enter(FLYING, "resume requested")
                return True, "flying on the pilot"
            why = " (no link or no position estimate)" if self.state == HOLD else ""
            return False, f"cannot resume in state {self.state}{why}"

    def land(self) -> tuple[bool, str]:
        with self._lock:
            if self.state in AIRBORNE or self.state in (PRIME, SWITCH, ARM):
                self._enter(LANDING, "land requested")
                return True, "landing"
            return False, f"cannot land in state {self.state}"

    def estop(self) -> tuple[bool, str]:
        """Stop the motors now (the drone falls), where the stack allows it; else hold."""
        with self._lock:
            if not self.backend.can_kill:
                message = (f"emergency stop is not possible through {self.backend.name}: holding (hover) instead; "
                           "use the RC kill switch")
                self.log("warn", message)
                if self.state in (FLYING, STALE, TAKEOFF):
                    self._enter(HOLD, "estop requested (not possible: holding)")
                return False, message
            self.backend.kill()
            self._enter(ESTOP, "estop requested")
            return True, "motors stopped"

    def shutdown(self) -> None:
        """Bring the vehicle down as the bridge goes away: hover, then land or stop (``shutdown_action``)."""
        with self._lock:
            if self._shutting_down:
                return
            self._shutting_down = True
            if self.state in AIRBORNE:
                self._enter(SHUTDOWN, "shutting down")
            elif self.state not in TERMINAL and self.state != LANDING:
                self._enter(STOPPED, "shutting down")

    @property
    def done(self) -> bool:
        """Nothing more to do: a final state, or the autopilot is landing on its own."""
        with self._lock:
            return self.state in TERMINAL or (self.state == LANDING and self._landing_accepted)

    def status(self) -> dict[str, Any]:
        with self._lock:
            t, now = self.telemetry, self.clock()
            height, distance, speed = self._height(), self._distance(), self._speed()
            margin = None if distance is None else self.config.fence_radius - distance
            return {
                "backend": self.backend.name, "state": self.state, "reason": self.reason,
                "since": round((now - self.since) / 1e9, 3), "pilot_enabled": self.pilot_enabled,
                "link": self._link, "armed": t.armed, "mode": t.mode, "in_control": t.in_control,
                "height": None if height is None else round(height, 3),
                "distance": None if distance is None else round(distance, 3),
                "speed": None if speed is None else round(speed, 3),
                "fence_margin": None if margin is None else round(margin, 3),
                "ground": None if self.ground is None else round(self.ground, 3),
                "takeover": None if self.takeover is None else [round(v, 3) for v in self.takeover],
                "setpoints": self.setpoints, "transitions": self.transitions, "resets": self.resets,
            }

    # The keep-alive tick.
    def tick(self) -> None:
        with self._lock:
            now = self.clock()
            self._take(self.backend.poll(now))
            self._watch_link(now)
            self._watch_ground()
            for event in self.backend.events():
                self._event(event)
            handler = getattr(self, f"_{self.state}")
            handler(now)

    def pump(self) -> None:
        """Read what the vehicle sent since the last call, between ticks (telemetry goes out as it arrives)."""
        with self._lock:
            self._take(self.backend.poll(self.clock()))

    def _take(self, telemetry: Telemetry) -> None:
        """Keep the backend's latest telemetry, moving the flight's references on an estimator reset."""
        self.telemetry = t = telemetry
        if t.position is None or t.velocity is None or t.pose_stamp is None:
            return
        last, self._pose = self._pose, (t.pose_stamp, tuple(t.position), tuple(t.velocity))
        if last is None or not 0 < t.pose_stamp - last[0] <= self.config.telemetry_timeout * 1e9:
            return  # the same estimate, or after a gap whose motion is unknown
        dt = (t.pose_stamp - last[0]) / 1e9
        step = tuple(p - q - v * dt for p, q, v in zip(t.position, last[1], last[2]))
        size = math.sqrt(sum(x * x for x in step))
        if size <= RESET_JUMP_M:
            return
        self.resets += 1
        if self.takeover is not None:
            self.takeover = tuple(a + b for a, b in zip(self.takeover, step))
        if self.ground is not None:
            self.ground += step[2]
        if self.hold_point is not None:
            self.hold_point = (tuple(a + b for a, b in zip(self.hold_point[0], step)), self.hold_point[1])
        self._climb.clear()
        self.log("warn", f"the position estimate jumped {size:.2f} m in {dt * 1e3:.0f} ms (" +
                 ", ".join(f"{x:+.2f}" for x in step) + " m, ENU): the estimator reset its position (reset "
                 f"{self.resets}); the take-over point, the ground and the hover point move with it")

    # State handlers: each decides its transitions and what is sent this period.
    def _wait_link(self, now: int) -> None:
        if not self._link:
            return
        if not self._pose_fresh():
            self._note("no_pose", "link up; waiting for a position estimate (geofence and heights need it)")
            return
        if self.config.auto_takeoff:
            self._enter(PRIME, "link up, taking off on our own (auto_takeoff)")
            self._prime(now)
        else:
            self._enter(WAIT_AIRBORNE, "link up; waiting for the operator to arm and take off to "
                                       f"{self.config.min_height} m")

    def _wait_airborne(self, now: int) -> None:
        c, t = self.config, self.telemetry
        height = self._height()
        if not self._link or not self._pose_fresh():
            self._enter(WAIT_LINK, "link or position estimate lost")
            return
        if t.armed is False or height is None or height < c.min_height:
            self._climb.clear()
            self._airborne_since = None
            return
        if t.taking_off:
            self._climb.clear()
            self._airborne_since = None
            self._note("taking_off", f"{height:.2f} m up, the autopilot's take-off still under way: waiting for it "
                                     "to finish before taking control")
            return
        # The climb has settled when, over the last settle_s, the height rose less than settle_speed per second and
        # the vertical speed averaged under it: means, so an estimator's noise (PX4 SIH's speed jitters by 0.07 m/s)
        # cannot hold the take-over back, and the slow end of an autopilot's climb (PX4's Hold creeps up its last
        # 0.4 m at 0.1-0.03 m/s) is waited for. A climb that never settles (a drifting estimate) is taken over
        # CREEP_WAIT_S later if it is under CREEP_FACTOR times settle_speed.
        self._climb.append((now, height, 0.0 if t.velocity is None else t.velocity[2]))
        self._airborne_since = now if self._airborne_since is None else self._airborne_since
        while now - self._climb[0][0] > c.settle_s * 1e9:
            self._climb.popleft()
        if now - self._airborne_since < c.settle_s * 1e9:
            return
        start, start_height, _ = self._climb[0]
        span = (now - start) / 1e9
        rise = abs(height - start_height) / span if span > 0 else 0.0
        speed = abs(sum(v for _, _, v in self._climb) / len(self._climb))
        climb = max(rise, speed)
        waited = (now - self._airborne_since) / 1e9 - c.settle_s
        if climb > c.settle_speed and not (waited >= CREEP_WAIT_S and climb <= CREEP_FACTOR * c.settle_speed):
            return
        self._enter(PRIME, f"airborne at {height:.2f} m, climb settled ({climb:.2f} m/s over {c.settle_s:g} s)")
        self._prime(now)

    def _prime(self, now: int) -> None:
        if not self._link:
            self._enter(WAIT_LINK, "link lost before taking control")
            return
        if now - self.since < self.config.prime_s * 1e9:
            self._hover(now)
        elif self.backend.can_switch:
            self._enter(SWITCH, f"setpoint stream running for {self.config.prime_s} s")
            self._switch(now)
        else:
            self._hover(now)
            self._note("operator_mode", f"{self.backend.name}: the bridge cannot set the flight mode; the operator "
                                        "switches to offboard/guided on the RC or ground station (the stream runs)")
            self._after_switch(now)

    def _switch(self, now: int) -> None:
        if self._controlled_check(now, mode=False):
            return
        self._hover(now)
        if self.telemetry.in_control:
            self._after_switch(now)
        elif now - self.since > self.config.mode_timeout * 1e9:
            self._enter(FAILED, f"the vehicle did not switch to our mode within {self.config.mode_timeout} s "
                                f"(mode {self.telemetry.mode or 'unknown'})")

    def _after_switch(self, now: int) -> None:
        if self.config.auto_takeoff:
            self._enter(ARM if self.telemetry.armed is not True else TAKEOFF, "in our mode")
        else:
            self._enter(FLYING, "in our mode: pilot enabled")

    def _arm(self, now: int) -> None:
        if self._controlled_check(now):
            return
        self._send(ZERO, now)
        if self.telemetry.armed:
            self._enter(TAKEOFF, "armed")
        elif now - self.since > self.config.mode_timeout * 1e9:
            self._enter(FAILED, f"not armed within {self.config.mode_timeout} s")

    def _takeoff(self, now: int) -> None:
        c = self.config
        if self._controlled_check(now):
            return
        if not self.backend.takes_off_itself:
            self._send((0.0, 0.0, c.takeoff_speed, 0.0), now)
        height = self._height()
        if height is not None and height >= 0.95 * c.takeoff_height:
            self._enter(FLYING, f"took off to {height:.2f} m: pilot enabled")
        elif now - self.since > c.takeoff_timeout * 1e9:
            self._enter(HOLD, f"take-off did not reach {c.takeoff_height} m within {c.takeoff_timeout} s")

    def _flying(self, now: int) -> None:
        if self._controlled_check(now) or self._fence_check():
            return
        if now - self._command_at > self.config.command_timeout * 1e9:
            self._enter(STALE, f"no pilot command for {self.config.command_timeout} s: hovering")
            self._hover(now)
            return
        self._send(self._command, now)

    def _stale(self, now: int) -> None:
        if self._controlled_check(now) or self._fence_check():
            return
        if now - self._command_at <= self.config.command_timeout * 1e9:
            self._enter(FLYING, f"pilot commands again after {(now - self.since) / 1e9:.2f} s")
            self._send(self._command, now)
        elif now - self.since > self.config.stale_land_s * 1e9:
            self._enter(LANDING, f"pilot commands stale for {self.config.stale_land_s} s")
            self._landing(now)
        else:
            self._hover(now)

    def _hold(self, now: int) -> None:
        if self._controlled_check(now, hold=False):
            return
        self._hover(now)

    def _shutdown(self, now: int) -> None:
        if self._controlled_check(now, hold=False):
            return
        self._hover(now)
        if now - self.since >= self.config.shutdown_hover_s * 1e9:
            if self.config.shutdown_action == "land":
                self._enter(LANDING, "shutting down: landing")
                self._landing(now)
            else:
                self._enter(STOPPED, "shutting down: stream stopped, the stack's offboard-loss failsafe takes over")

    def _landing(self, now: int) -> None:
        c = self.config
        if not self._landing_by_setpoints and not self._landing_accepted and now - self.since > c.mode_timeout * 1e9:
            self.log("warn", f"no answer to the land command within {c.mode_timeout} s: descending by setpoints")
            self._landing_by_setpoints = True
        if self._landing_by_setpoints:
            if self._controlled_check(now, hold=False):
                return
            self._send((0.0, 0.0, -c.land_speed, 0.0), now)
            height = self._height()
            if self.telemetry.landed or height is not None and height <= c.landed_height:
                self._touchdown_at = self._touchdown_at or now
                if now - self._touchdown_at >= c.touchdown_s * 1e9:
                    self._enter(LANDED, "touched down")
        elif self._landing_accepted:
            if self.telemetry.armed is False or self.telemetry.landed:
                self._enter(LANDED, "the autopilot landed")
        else:
            self._send(ZERO, now)  # keep our mode alive until the vehicle takes the land command

    def _terminal(self, now: int) -> None:
        """Nothing is sent."""

    _landed = _estop = _taken_over = _failed = _stopped = _terminal

    # Checks shared by the controlled states.
    def _controlled_check(self, now: int, mode: bool = True, hold: bool = True) -> bool:
        """Takeover, link, position: return True when the state changed (nothing more to do this period)."""
        t = self.telemetry
        if mode and self.backend.can_switch and t.in_control is False:
            self._enter(TAKEN_OVER, f"the vehicle left our mode for {t.mode or 'another mode'} (operator "
                                    "takeover): no more setpoints")
            return True
        if t.armed is False and self.state in AIRBORNE:
            self._enter(LANDED, "the vehicle disarmed (landed, or stopped by the operator or the autopilot): "
                                "no more setpoints")
            return True
        if hold and not self._link:
            self._enter(HOLD, "link lost: hovering, pilot disabled")
            self._send(ZERO, now)
            return True
        if hold and not self._pose_fresh():
            self._enter(HOLD, f"no position estimate for {self.config.telemetry_timeout} s: hovering, pilot disabled")
            self._send(ZERO, now)  # nowhere to hold: a zero velocity
            return True
        return False

    def _fence_check(self) -> bool:
        c = self.config
        distance, height, speed = self._distance(), self._height(), self._speed()
        breach = None
        if distance is not None and distance > c.fence_radius:
            breach = f"{distance:.2f} m from where the bridge took control (fence_radius {c.fence_radius} m)"
        elif height is not None and height > c.fence_height:
            breach = f"{height:.2f} m above the ground (fence_height {c.fence_height} m)"
        elif speed is not None and speed > c.fence_speed:
            breach = f"flying at {speed:.2f} m/s (fence_speed {c.fence_speed} m/s)"
        if breach is None:
            return False
        now = self.clock()
        if c.fence_action == "land":
            self._enter(LANDING, f"geofence: {breach}: landing")
            self._landing(now)
        else:
            self._enter(HOLD, f"geofence: {breach}: hovering, pilot disabled")
            self._hover(now)
        return True

    # Helpers.
    def _enter(self, state: str, reason: str) -> None:
        previous = self.state
        if previous == state:
            return
        if previous in TERMINAL and state != ESTOP:
            return  # final: nothing leaves it but an emergency stop
        now = self.clock()
        self.state, self.reason, self.since = state, reason, now
        self.transitions += 1
        if state in PILOT and previous not in PILOT:
            self._command, self._command_at = ZERO, now  # commands from before the enable never fly
        if state == PRIME:
            self.takeover = self.telemetry.position  # the fence's centre for this flight
            if self.takeover is not None:
                self.log("info", "take-over point (the fence's centre): " +
                         ", ".join(f"{v:.2f}" for v in self.takeover) + " m in the autopilot's local frame (ENU)")
        if state in HOVERS and not (state == SWITCH and previous == PRIME):
            p, yaw = self.telemetry.position, self.telemetry.yaw
            self.hold_point = None if p is None or yaw is None else (p, yaw)
        self._entry_action(state)
        level = "warn" if state in (HOLD, STALE, FAILED, TAKEN_OVER, ESTOP) or "geofence" in reason else "info"
        self.log(level, f"{previous} -> {state}: {reason}")
        if previous in STREAMING and state in TERMINAL | {WAIT_LINK, WAIT_AIRBORNE}:
            self.backend.release()
        enabled = state in PILOT
        if enabled != self.pilot_enabled:
            self.pilot_enabled = enabled
            self.on_pilot(enabled)
        self.on_status(self.status())

    def _entry_action(self, state: str) -> None:
        """Make the request a state makes of the vehicle, once, as it is entered."""
        if state == SWITCH:
            self.backend.request_control()
        elif state == ARM:
            self.backend.arm()
        elif state == TAKEOFF and self.backend.takes_off_itself:
            self.backend.takeoff(self.config.takeoff_height)
        elif state == LANDING:
            self._landing_by_setpoints, self._landing_accepted, self._touchdown_at = \
                not self.backend.lands_itself, False, None
            if self.backend.lands_itself:
                self.backend.land()

    def _event(self, event: Event) -> None:
        if event.accepted:
            self.log("info", f"vehicle accepted {event.what}{': ' + event.detail if event.detail else ''}")
            if event.what == "land" and self.state == LANDING:
                self._landing_accepted = True
                self.on_status(self.status())
            return
        if event.what == "link":  # the backend gave up opening its link
            self._enter(FAILED, f"no link: {event.detail}")
            return
        refused = f"vehicle refused {event.what}: {event.detail or 'no reason given'}"
        if event.what == "control" and self.state == SWITCH:
            self._enter(FAILED, refused)
        elif event.what == "arm" and self.state == ARM:
            self._enter(FAILED, refused)
        elif event.what == "takeoff" and self.state == TAKEOFF:
            self._enter(HOLD if self.telemetry.in_control else FAILED, refused)
        elif event.what == "land" and self.state == LANDING and not self._landing_by_setpoints:
            self.log("warn", f"{refused}: descending by setpoints")
            self._landing_by_setpoints = True
        elif event.what == "kill":
            self.log("error", f"{refused}: use the RC kill switch")
        else:
            self.log("warn", refused)

    def _watch_link(self, now: int) -> None:
        heard = self.telemetry.heard
        link = heard is not None and 0 <= now - heard <= self.config.link_timeout * 1e9
        if link != self._link:
            if link:
                down = "" if self._link_lost_at is None else f" after {(now - self._link_lost_at) / 1e9:.2f} s"
                self.log("info", f"link to the vehicle up{down}")
            else:
                self._link_lost_at = now
                self.log("warn", f"link to the vehicle lost: nothing heard for {self.config.link_timeout} s")
            self._link = link

    def _watch_ground(self) -> None:
        """Keep the ground's height up to date while the vehicle stands on it.

        The landed state says so where the stack sends it (at 10-20 Hz); else being disarmed, which the 1 Hz
        heartbeat reports up to a second late (a vehicle climbing at once would move the ground up).
        """
        t = self.telemetry
        on_ground = t.landed if t.landed is not None else t.armed is False
        if t.position is not None and on_ground and self._pose_fresh():
            self.ground = t.position[2]

    def _hover(self, now: int) -> None:
        """Hold the hover's point where the backend can; else a zero velocity."""
        if self.backend.holds_position and self.hold_point is not None:
            self.backend.hold_position(*self.hold_point, now)
            self.setpoints += 1
            self.last_setpoint = ZERO
        else:
            self._send(ZERO, now)

    def _pose_fresh(self) -> bool:
        stamp = self.telemetry.pose_stamp
        return stamp is not None and 0 <= self.clock() - stamp <= self.config.telemetry_timeout * 1e9

    def _height(self) -> float | None:
        """Height above the ground of this flight (module docstring), or above the autopilot's origin without one."""
        p = self.telemetry.position
        if p is None:
            return None
        if self.ground is None:
            self._note("no_ground", "the vehicle has not been seen on the ground (the bridge started with it in the "
                                    "air): heights are measured from the autopilot's local origin")
            return p[2]
        return p[2] - self.ground

    def _distance(self) -> float | None:
        """Horizontal distance from the take-over point (the autopilot's origin before the first take-over)."""
        p = self.telemetry.position
        if p is None:
            return None
        centre = self.takeover or (0.0, 0.0, 0.0)
        return math.hypot(p[0] - centre[0], p[1] - centre[1])

    def _speed(self) -> float | None:
        v = self.telemetry.velocity
        return None if v is None else math.sqrt(sum(x * x for x in v))

    def _send(self, command: Command, now: int) -> None:
        self.backend.send(command, now)
        self.setpoints += 1
        self.last_setpoint = command

    def _note(self, kind: str, message: str) -> None:
        if kind not in self._notes:
            self._notes.add(kind)
            self.log("info", message)
