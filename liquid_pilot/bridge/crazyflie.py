"""The Crazyflie backend (cflib): hover setpoints, with the pilot's vertical velocity integrated into a height.

``send_hover_setpoint(vx, vy, yawrate, zdistance)`` takes body-frame velocities in m/s, the yaw rate in
deg/s counter-clockwise and an absolute height (``conversions.command_to_crazyflie``); the pilot's vz
moves the commanded height (``z_target``), which starts at the estimated height. The firmware levels
out after 500 ms without a setpoint and stops the motors after 2 s, so the keep-alive runs at 20 Hz.
Take-off and landing are climbing and descending setpoints; on touchdown (or takeover, stop) the
stream ends with ``send_notify_setpoint_stop``, which hands the setpoint priority back (as cflib asks
before high-level commands such as land); the emergency stop is ``send_stop_setpoint`` (motors off).
There are no flight modes to switch. Arming is ``supervisor.send_arming_request`` where cflib has it
(firmware that needs arming); the Crazyflie does not confirm it, so it is taken as done.

Telemetry is the state estimate (``stateEstimate.x/y/z/yaw`` and ``vx/vy/vz``, two log blocks at 20 Hz:
a block carries at most 26 bytes), in the Crazyflie's right-handed frame (x forward at start-up, z up):
ENU for the supervisor, yaw from degrees. A positioning deck or system is needed for a position estimate;
without one the supervisor waits, saying so. The connection opens on cflib's threads; ``cf`` may be any
object with the ``Crazyflie`` interface used here (tests pass a fake link's Crazyflie).

**Telemetry out** (``bridge.telemetry``): the IMU (``gyro.x/y/z`` in deg/s and ``acc.x/y/z`` in g, with
gravity: one block at ``IMU_PERIOD_MS``) becomes an ``ImuSample`` in FLU SI units (the Crazyflie's body frame
is FLU already) with the estimator's attitude (``stateEstimate.qx/qy/qz/qw``, a third block); the pose and
velocity blocks an ``OdometrySample`` (world velocity rotated into the body); ``pm.vbat`` a ``BatterySample``.
The Crazyflie has no time synchronisation over CRTP: samples are stamped when cflib delivers them.

**The link**: a failed or lost connection is one log line (cflib's message can be a whole traceback: its last
line is what it says) and is opened again after 1, 2, 4 ... ``MAX_BACKOFF_S`` s; ``connect_timeout`` (s, 0:
for ever) gives up, and the supervisor fails safe (nothing was ever flown without a link).
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from liquid_pilot.bridge.conversions import STANDARD_GRAVITY, Command, command_to_crazyflie, deg_to_rad, unrotate
from liquid_pilot.bridge.supervisor import Backend, Event, Telemetry
from liquid_pilot.bridge.telemetry import BatterySample, ImuSample, OdometrySample
from liquid_pilot.flight.types import Log

URI_SCHEMES = ("radio://", "usb://", "udp://", "tcp://", "serial://", "prrt://")
LOG_PERIOD_MS = 50
IMU_PERIOD_MS = 10  # 100 Hz
BATTERY_PERIOD_MS = 1000
MAX_BACKOFF_S = 10.0
MAX_DT_S = 0.5  # the height integrates at most this much of a gap (a stalled tick does not jump the height)


class CrazyflieBackend(Backend):
    """The Crazyflie through cflib (the module docstring has the protocol and telemetry)."""

    name = "crazyflie"
    rate = 20.0
    can_switch = False
    can_arm = can_kill = True
    takes_off_itself = lands_itself = False

    def __init__(self, uri: str, cf: Any = None, clock: Callable[[], int] = time.monotonic_ns,
                 log: Log | None = None, max_height: float = 3.0, connect_timeout: float = 0.0):
        if not uri.startswith(URI_SCHEMES):
            raise ValueError(f"crazyflie uri {uri!r}: expected one of {', '.join(s + '...' for s in URI_SCHEMES)}, "
                             "e.g. radio://0/80/2M/E7E7E7E7E7")
        self.uri = uri
        self.clock = clock
        self.connect_timeout = connect_timeout
        self.log = log or (lambda level, message: None)
        self.max_height = max_height
        if cf is None:
            try:
                import cflib.crtp
                from cflib.crazyflie import Crazyflie
            except ImportError:
                raise ValueError("the crazyflie backend needs cflib: pip install 'liquid_pilot[crazyflie]'") from None
            cflib.crtp.init_drivers()
            cf = Crazyflie(rw_cache=None)
        self.cf = cf
        self.t = Telemetry(armed=False)
        self.z_target: float | None = None  # m: the commanded height
        self._rates: tuple[float, float, float] = (0.0, 0.0, 0.0)  # rad/s, body FLU: the latest gyro
        self._last_send: int | None = None
        self._events: list[Event] = []
        self._lock = threading.Lock()  # cflib calls back on its own threads
        self._logs: list[Any] = []
        self._attitude: tuple[float, float, float, float] | None = None  # body FLU -> ENU (x, y, z, w)
        self._retry_at: int | None = None  # when to open the link again after a failure (ns)
        self._backoff = 1.0
        self._down_since: int | None = None  # the link has been down since (ns), for connect_timeout
        self._gave_up = False
        self._failures = 0  # failed attempts in the current outage (logged: the first)
        cf.connected.add_callback(self._connected)
        cf.connection_failed.add_callback(lambda uri, message: self._down("connection failed", message))
        cf.connection_lost.add_callback(lambda uri, message: self._down("connection lost", message))
        if getattr(cf, "link", None) is None:
            self.log("info", f"crazyflie: connecting to {uri}")
            self._open()

    # The link.
    def _open(self) -> None:
        try:
            self.cf.open_link(self.uri)  # returns at once; ``connected`` or ``connection_failed`` follows
        except Exception as exc:  # no radio, a driver error: cflib raises for some
            self._down("connection failed", str(exc))

    def _down(self, what: str, message: str) -> None:
        """Note a failed or lost link (cflib's thread): one line per outage, and a retry after the backoff."""
        now = self.clock()
        lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
        said = lines[-1] if lines else "no reason given"
        with self._lock:
            self._down_since = self._down_since if self._down_since is not None else now
            self._retry_at = now + int(self._backoff * 1e9)
            first = self._failures == 0
            self._failures += 1
            backoff, self._backoff = self._backoff, min(self._backoff * 2.0, MAX_BACKOFF_S)
        if first:
            limit = f", for {self.connect_timeout:g} s" if self.connect_timeout else ""
            self.log("warn", f"crazyflie {self.uri}: {what}: {said}; trying again after {backoff:g} s (then every "
                             f"up to {MAX_BACKOFF_S:g} s{limit})")

    # cflib callbacks (its threads).
    def _connected(self, uri: str) -> None:
        from cflib.crazyflie.log import LogConfig
        with self._lock:
            outage = self._failures
            self._retry_at, self._down_since, self._backoff, self._failures = None, None, 1.0, 0
        if outage:
            self.log("info", f"crazyflie {uri}: connected after {outage} failed attempt{'s' * (outage > 1)}")
        blocks = {"pose": (LOG_PERIOD_MS, ("stateEstimate.x", "stateEstimate.y", "stateEstimate.z",
                                           "stateEstimate.yaw")),
                  "velocity": (LOG_PERIOD_MS, ("stateEstimate.vx", "stateEstimate.vy", "stateEstimate.vz")),
                  "attitude": (LOG_PERIOD_MS, ("stateEstimate.qx", "stateEstimate.qy", "stateEstimate.qz",
                                               "stateEstimate.qw")),
                  "imu": (IMU_PERIOD_MS, ("gyro.x", "gyro.y", "gyro.z", "acc.x", "acc.y", "acc.z")),
                  "battery": (BATTERY_PERIOD_MS, ("pm.vbat",))}
        for name, (period, variables) in blocks.items():
            conf = LogConfig(name=f"liquid_pilot_{name}", period_in_ms=period)
            for variable in variables:
                conf.add_variable(variable, "float")
            try:
                self.cf.log.add_config(conf)
                conf.data_received_cb.add_callback(self.on_log)
                conf.start()
                self._logs.append(conf)
            except (KeyError, AttributeError) as exc:
                if name in ("pose", "velocity"):
                    self.log("warn", f"crazyflie {uri}: cannot log the state estimate ({exc}): no telemetry, the "
                                     "bridge will wait")
                    return
                self.log("warn", f"crazyflie {uri}: cannot log its {name} ({exc}): not published")
        self.log("info", f"crazyflie {uri}: connected, logging the state estimate at {1000 / LOG_PERIOD_MS:.0f} Hz "
                         f"and the IMU at {1000 / IMU_PERIOD_MS:.0f} Hz")

    def on_log(self, timestamp: int, data: dict[str, float], conf: Any = None) -> None:
        """Take a log block of the state estimate, in the Crazyflie's frame (ENU-like, yaw in degrees)."""
        now = self.clock()
        samples: list[Any] = []
        with self._lock:
            if "stateEstimate.x" in data:
                self.t.position = (data["stateEstimate.x"], data["stateEstimate.y"], data["stateEstimate.z"])
                self.t.yaw = math.radians(data["stateEstimate.yaw"])
                self.t.pose_stamp = now
                if self._attitude is not None and self.t.velocity is not None:
                    samples.append(OdometrySample(now, self.t.position, self._attitude,
                                                  unrotate(self._attitude, self.t.velocity), self._rates))
            if "stateEstimate.vx" in data:
                self.t.velocity = (data["stateEstimate.vx"], data["stateEstimate.vy"], data["stateEstimate.vz"])
            if "stateEstimate.qw" in data:
                self._attitude = (data["stateEstimate.qx"], data["stateEstimate.qy"], data["stateEstimate.qz"],
                                  data["stateEstimate.qw"])
            if "gyro.x" in data:
                self._rates = tuple(deg_to_rad(data[f"gyro.{axis}"]) for axis in "xyz")
                accel = tuple(data[f"acc.{axis}"] * STANDARD_GRAVITY for axis in "xyz")
                samples.append(ImuSample(now, self._rates, accel, self._attitude))
            if "pm.vbat" in data:
                samples.append(BatterySample(now, data["pm.vbat"], None, None))
            self.t.heard = now
        sink = self.on_sample
        for sample in samples if sink is not None else ():
            sink(sample)

    # Backend interface.
    def poll(self, now: int) -> Telemetry:
        with self._lock:
            retry = self._retry_at is not None and now >= self._retry_at and not self._gave_up
            timed_out = self.connect_timeout and self._down_since is not None and \
                now - self._down_since > self.connect_timeout * 1e9 and not self._gave_up
            if retry:
                self._retry_at = None
            if timed_out:
                self._gave_up, self._retry_at = True, None
            telemetry = Telemetry(**vars(self.t))
        if timed_out:
            self._events.append(Event("link", False, f"crazyflie {self.uri} unreachable for "
                                                     f"{self.connect_timeout:g} s (connect_timeout)"))
        elif retry:
            self._open()
        return telemetry

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def send(self, command: Command, now: int) -> None:
        if self.z_target is None:
            position = self.t.position
            self.z_target = max(0.0, position[2]) if position is not None else 0.0
        dt = 0.0 if self._last_send is None else min(max((now - self._last_send) / 1e9, 0.0), MAX_DT_S)
        self._last_send = now
        self.z_target = min(max(self.z_target + command[2] * dt, 0.0), self.max_height)
        vx, vy, yaw_rate_deg = command_to_crazyflie(command)
        self.cf.commander.send_hover_setpoint(vx, vy, yaw_rate_deg, self.z_target)

    def request_control(self) -> None:
        """No flight modes: the stream is the control."""

    def arm(self) -> None:
        supervisor = getattr(self.cf, "supervisor", None)
        if supervisor is not None and hasattr(supervisor, "send_arming_request"):
            supervisor.send_arming_request(True)
        with self._lock:
            self.t.armed = True
        self._events.append(Event("arm", True, "sent (the Crazyflie does not confirm arming)"))

    def takeoff(self, height: float) -> None:
        raise NotImplementedError("the Crazyflie takes off on climbing setpoints")

    def land(self) -> None:
        raise NotImplementedError("the Crazyflie lands on descending setpoints")

    def kill(self) -> None:
        self.cf.commander.send_stop_setpoint()
        with self._lock:
            self.t.armed = False

    def release(self) -> None:
        self.cf.commander.send_notify_setpoint_stop()
        self.z_target, self._last_send = None, None

    def close(self) -> None:
        try:
            self.cf.close_link()
        except Exception as exc:  # closing a link that never opened
            self.log("warn", f"crazyflie: closing the link: {exc}")
