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
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from liquid_pilot.bridge.conversions import Command, command_to_crazyflie
from liquid_pilot.bridge.supervisor import Backend, Event, Telemetry
from liquid_pilot.flight.gate import Log

URI_SCHEMES = ("radio://", "usb://", "udp://", "tcp://", "serial://", "prrt://")
LOG_PERIOD_MS = 50
MAX_DT_S = 0.5  # the height integrates at most this much of a gap (a stalled tick does not jump the height)


class CrazyflieBackend(Backend):
    name = "crazyflie"
    rate = 20.0
    can_switch = False
    can_arm = can_kill = True
    takes_off_itself = lands_itself = False

    def __init__(self, uri: str, cf: Any = None, clock: Callable[[], int] = time.monotonic_ns,
                 log: Log | None = None, max_height: float = 3.0):
        if not uri.startswith(URI_SCHEMES):
            raise ValueError(f"crazyflie uri {uri!r}: expected one of {', '.join(s + '...' for s in URI_SCHEMES)}, "
                             "e.g. radio://0/80/2M/E7E7E7E7E7")
        self.uri = uri
        self.clock = clock
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
        self._last_send: int | None = None
        self._events: list[Event] = []
        self._lock = threading.Lock()  # cflib calls back on its own threads
        self._logs: list[Any] = []
        cf.connected.add_callback(self._connected)
        cf.connection_failed.add_callback(lambda uri, message: self.log("warn", f"crazyflie {uri}: connection "
                                                                                f"failed: {message}"))
        cf.connection_lost.add_callback(lambda uri, message: self.log("warn", f"crazyflie {uri}: connection lost: "
                                                                              f"{message}"))
        if getattr(cf, "link", None) is None:
            self.log("info", f"crazyflie: connecting to {uri}")
            cf.open_link(uri)  # returns at once; ``connected`` follows on cflib's thread

    # cflib callbacks (its threads).
    def _connected(self, uri: str) -> None:
        from cflib.crazyflie.log import LogConfig
        pose = LogConfig(name="liquid_pilot_pose", period_in_ms=LOG_PERIOD_MS)
        velocity = LogConfig(name="liquid_pilot_velocity", period_in_ms=LOG_PERIOD_MS)
        for name in ("x", "y", "z", "yaw"):
            pose.add_variable(f"stateEstimate.{name}", "float")
        for name in ("vx", "vy", "vz"):
            velocity.add_variable(f"stateEstimate.{name}", "float")
        try:
            for conf in (pose, velocity):
                self.cf.log.add_config(conf)
                conf.data_received_cb.add_callback(self.on_log)
                conf.start()
                self._logs.append(conf)
        except (KeyError, AttributeError) as exc:
            self.log("warn", f"crazyflie {uri}: cannot log the state estimate ({exc}): no telemetry, the bridge "
                             "will wait")
            return
        self.log("info", f"crazyflie {uri}: connected, logging the state estimate at {1000 / LOG_PERIOD_MS:.0f} Hz")

    def on_log(self, timestamp: int, data: dict[str, float], conf: Any = None) -> None:
        """Take a log block of the state estimate, in the Crazyflie's frame (ENU-like, yaw in degrees)."""
        now = self.clock()
        with self._lock:
            if "stateEstimate.x" in data:
                self.t.position = (data["stateEstimate.x"], data["stateEstimate.y"], data["stateEstimate.z"])
                self.t.yaw = math.radians(data["stateEstimate.yaw"])
                self.t.pose_stamp = now
            if "stateEstimate.vx" in data:
                self.t.velocity = (data["stateEstimate.vx"], data["stateEstimate.vy"], data["stateEstimate.vz"])
            self.t.heard = now

    # Backend interface.
    def poll(self, now: int) -> Telemetry:
        with self._lock:
            return Telemetry(**vars(self.t))

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
