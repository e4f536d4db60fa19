"""The MAVLink backend: PX4 (offboard) and ArduPilot Copter (guided) through pymavlink, over UDP, TCP or serial.

Setpoints are ``SET_POSITION_TARGET_LOCAL_NED`` with body-frame velocities and a yaw rate
(``TYPE_MASK`` ignores position, acceleration and yaw): ``MAV_FRAME_BODY_NED`` for PX4,
``MAV_FRAME_BODY_OFFSET_NED`` for ArduPilot, both body FRD (``conversions.command_to_frd``: vy, vz and
the yaw rate change sign). Modes and arming go as ``COMMAND_LONG`` (``MAV_CMD_DO_SET_MODE``,
``MAV_CMD_COMPONENT_ARM_DISARM``, ``MAV_CMD_NAV_TAKEOFF``); each is resent until its ``COMMAND_ACK``
(``ACK_TRIES`` times ``ACK_TIMEOUT_S``) and its outcome becomes a supervisor ``Event``. The vehicle is
known by its ``HEARTBEAT`` (autopilot type, armed flag, custom mode); position and velocity come from
``LOCAL_POSITION_NED``, the heading from ``ATTITUDE``, the landed state from ``EXTENDED_SYS_STATE``
(asked for with ``MAV_CMD_SET_MESSAGE_INTERVAL``), all converted to ENU. The bridge sends its own
heartbeat at 1 Hz as an onboard controller.

Only messages from ``target_system`` (0: the first autopilot of the right flavour heard) and its
``target_component`` count; other systems, garbage bytes and a heartbeat of the wrong autopilot are
logged once and ignored. Every call returns at once: the supervisor ticks, the backend polls.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from liquid_pilot.bridge.conversions import Command, command_to_frd, ned_to_enu, yaw_ned_to_enu
from liquid_pilot.bridge.supervisor import Backend, Event, Telemetry
from liquid_pilot.flight.gate import Log

ACK_TIMEOUT_S = 0.5  # s before a COMMAND_LONG without an answer is sent again
ACK_TRIES = 3
HEARTBEAT_S = 1.0  # our heartbeat's period
TELEMETRY_HZ = 20.0  # asked of the vehicle for position, attitude and landed state
GARBAGE_QUIET_S = 2.0  # s without garbage that ends a burst of it (one warning per burst)
MAX_MESSAGES_PER_POLL = 2000  # a flood cannot keep a tick from returning
FORCE_DISARM = 21196.0  # MAV_CMD_COMPONENT_ARM_DISARM param2: disarm even in flight (emergency stop)

# pymavlink enumerations used here (values from MAVLink's common.xml; named for reading).
MAV_AUTOPILOT_ARDUPILOTMEGA, MAV_AUTOPILOT_INVALID, MAV_AUTOPILOT_PX4 = 3, 8, 12
MAV_TYPE_GCS, MAV_TYPE_ONBOARD_CONTROLLER = 6, 18
MAV_STATE_ACTIVE = 4
MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, MAV_MODE_FLAG_SAFETY_ARMED = 1, 128
MAV_FRAME_BODY_NED, MAV_FRAME_BODY_OFFSET_NED = 8, 9
MAV_CMD_NAV_TAKEOFF, MAV_CMD_DO_SET_MODE, MAV_CMD_COMPONENT_ARM_DISARM, MAV_CMD_SET_MESSAGE_INTERVAL = 22, 176, 400, 511
MAV_RESULT = {0: "ACCEPTED", 1: "TEMPORARILY_REJECTED", 2: "DENIED", 3: "UNSUPPORTED", 4: "FAILED", 5: "IN_PROGRESS",
              6: "CANCELLED"}
MAV_RESULT_ACCEPTED, MAV_RESULT_IN_PROGRESS = 0, 5
MAV_LANDED_STATE_UNDEFINED, MAV_LANDED_STATE_ON_GROUND = 0, 1
MSG_ATTITUDE, MSG_LOCAL_POSITION_NED, MSG_EXTENDED_SYS_STATE = 30, 32, 245
# Velocities and yaw rate used; position (bits 0-2), acceleration (6-8) and yaw (10) ignored.
TYPE_MASK = 0b0000_0101_1100_0111  # 1479 = 0x05C7

PX4_MAIN = {1: "MANUAL", 2: "ALTCTL", 3: "POSCTL", 4: "AUTO", 5: "ACRO", 6: "OFFBOARD", 7: "STABILIZED",
            8: "RATTITUDE"}
PX4_AUTO = {1: "READY", 2: "TAKEOFF", 3: "LOITER", 4: "MISSION", 5: "RTL", 6: "LAND", 8: "FOLLOW_TARGET",
            9: "PRECLAND"}
PX4_OFFBOARD, PX4_AUTO_MODE, PX4_AUTO_LAND = 6, 4, 6
COPTER = {0: "STABILIZE", 1: "ACRO", 2: "ALT_HOLD", 3: "AUTO", 4: "GUIDED", 5: "LOITER", 6: "RTL", 7: "CIRCLE",
          9: "LAND", 11: "DRIFT", 13: "SPORT", 14: "FLIP", 15: "AUTOTUNE", 16: "POSHOLD", 17: "BRAKE", 18: "THROW",
          19: "AVOID_ADSB", 20: "GUIDED_NOGPS", 21: "SMART_RTL", 22: "FLOWHOLD", 23: "FOLLOW", 24: "ZIGZAG",
          25: "SYSTEMID", 26: "AUTOROTATE", 27: "AUTO_RTL"}
COPTER_GUIDED, COPTER_LAND = 4, 9


@dataclass(frozen=True)
class Flavour:
    """What differs between PX4 and ArduPilot Copter on the same messages."""

    name: str
    autopilot: int  # HEARTBEAT.autopilot
    frame: int  # of the velocity setpoints
    rate: float  # Hz: default keep-alive (PX4 wants > 2 Hz; ArduPilot stops after 3 s without one)
    control: tuple[float, float, float]  # MAV_CMD_DO_SET_MODE params 1-3 into offboard/guided
    land: tuple[float, float, float]  # and into the landing mode
    takes_off_itself: bool  # ArduPilot climbs on MAV_CMD_NAV_TAKEOFF in guided; PX4 climbs on setpoints

    def mode_name(self, custom_mode: int | None) -> str:
        if custom_mode is None:
            return "no custom mode"
        if self.autopilot == MAV_AUTOPILOT_PX4:
            main, sub = (custom_mode >> 16) & 0xFF, (custom_mode >> 24) & 0xFF
            name = PX4_MAIN.get(main, f"PX4 mode {main}")
            return f"{name}.{PX4_AUTO.get(sub, sub)}" if main == PX4_AUTO_MODE else name
        return COPTER.get(custom_mode, f"Copter mode {custom_mode}")

    def in_control(self, custom_mode: int | None) -> bool:
        if custom_mode is None:
            return False
        if self.autopilot == MAV_AUTOPILOT_PX4:
            return (custom_mode >> 16) & 0xFF == PX4_OFFBOARD
        return custom_mode == COPTER_GUIDED


FLAVOURS = {
    "px4": Flavour("px4", MAV_AUTOPILOT_PX4, MAV_FRAME_BODY_NED, 20.0,
                   (MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, PX4_OFFBOARD, 0),
                   (MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, PX4_AUTO_MODE, PX4_AUTO_LAND), False),
    "ardupilot": Flavour("ardupilot", MAV_AUTOPILOT_ARDUPILOTMEGA, MAV_FRAME_BODY_OFFSET_NED, 10.0,
                         (MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, COPTER_GUIDED, 0),
                         (MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, COPTER_LAND, 0), True),
}
AUTOPILOTS = {MAV_AUTOPILOT_PX4: "PX4", MAV_AUTOPILOT_ARDUPILOTMEGA: "ArduPilot"}


def mavutil() -> Any:
    """Return pymavlink's mavutil on MAVLink 2 (which reads MAVLink 1 too); ValueError says how to install it."""
    os.environ["MAVLINK20"] = "1"
    try:
        from pymavlink import mavutil as module
    except ImportError:
        raise ValueError("the mavlink backend needs pymavlink: pip install 'liquid_pilot[mavlink]'") from None
    if module.mavlink.WIRE_PROTOCOL_VERSION != "2.0":
        module.set_dialect(module.current_dialect)
    return module


def parse_address(address: str, baud: int) -> tuple[str, dict[str, Any]]:
    """Return an address as pymavlink opens it: udpin:HOST:PORT, udpout:HOST:PORT, tcp:HOST:PORT, serial:DEV[:BAUD]."""
    kind, _, rest = address.partition(":")
    if kind in ("udpin", "udpout", "udp", "tcp", "tcpin"):
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"mavlink address {address!r}: expected {kind}:HOST:PORT")
        return address, {}
    if kind == "serial" or address.startswith("/dev/") or address.upper().startswith("COM"):
        device = rest if kind == "serial" else address
        path, _, rate = device.rpartition(":") if device.rpartition(":")[2].isdigit() else (device, "", "")
        if not path:
            raise ValueError(f"mavlink address {address!r}: expected serial:DEVICE[:BAUD]")
        return path, {"baud": int(rate) if rate else baud}
    raise ValueError(f"mavlink address {address!r}: expected udpin:HOST:PORT (listen, e.g. PX4 SITL's "
                     "udpin:0.0.0.0:14540), udpout:HOST:PORT, tcp:HOST:PORT or serial:DEVICE[:BAUD]")


class MavlinkBackend(Backend):
    can_switch = can_arm = can_kill = True
    lands_itself = True

    def __init__(self, address: str, flavour: str = "px4", target_system: int = 1, target_component: int = 1,
                 source_system: int = 255, source_component: int = 191, baud: int = 57600,
                 log: Log | None = None):
        if flavour not in FLAVOURS:
            raise ValueError(f"mavlink flavour {flavour!r}: expected one of {', '.join(FLAVOURS)}")
        for name, value in (("target_system", target_system), ("target_component", target_component),
                            ("source_system", source_system), ("source_component", source_component)):
            if not 0 <= value <= 255 or (value == 0 and name != "target_system"):
                raise ValueError(f"mavlink {name} = {value} must be in [{0 if name == 'target_system' else 1}, 255]")
        self.flavour = FLAVOURS[flavour]
        self.name = f"mavlink ({flavour})"
        self.rate = self.flavour.rate
        self.takes_off_itself = self.flavour.takes_off_itself
        self.address = address
        self.target_system, self.target_component = target_system, target_component
        self.source_system = source_system
        self.log = log or (lambda level, message: None)
        mu = mavutil()
        device, options = parse_address(address, baud)
        if "baud" in options:
            try:
                import serial  # noqa: F401  (pymavlink opens serial ports with pyserial)
            except ImportError:
                raise ValueError("a serial MAVLink link needs pyserial: pip install pyserial") from None
        try:
            self.conn = mu.mavlink_connection(device, source_system=source_system,
                                              source_component=source_component, **options)
        except (OSError, ValueError) as exc:
            raise ValueError(f"mavlink address {address!r}: cannot open it: {exc}") from None
        self.t = Telemetry()
        self._verified = False  # a heartbeat of the right autopilot from the target came
        self._t0: int | None = None  # the first poll: time_boot_ms counts from it
        self._now = 0  # the latest poll's time
        self._last_heartbeat: int | None = None
        self._pending: dict[int, dict[str, Any]] = {}  # command id -> what, params, sent_at, tries
        self._events: list[Event] = []
        self._noted: set[str] = set()
        self._garbage = 0  # bytes in the current burst of data that is not MAVLink
        self._garbage_since = self._garbage_at = 0  # the burst's first and latest
        self._errors = 0  # link errors in the current burst
        self.setpoints_sent = 0

    # Backend interface.
    def poll(self, now: int) -> Telemetry:
        self._now = now
        if self._t0 is None:
            self._t0 = now
        for _ in range(MAX_MESSAGES_PER_POLL):
            try:
                msg = self.conn.recv_msg()
            except Exception as exc:  # a socket or port error: the link is down, not the bridge
                self._link_error(exc)
                break
            if msg is None:
                break
            self._handle(msg, now)
        if self._garbage and now - self._garbage_at > GARBAGE_QUIET_S * 1e9:
            self.log("info", f"{self._garbage} bytes of garbage skipped over "
                             f"{(self._garbage_at - self._garbage_since) / 1e9:.2f} s; none since")
            self._garbage = 0
        if self._has_peer() and (self._last_heartbeat is None or now - self._last_heartbeat >= HEARTBEAT_S * 1e9):
            self._last_heartbeat = now
            self._guarded(self.conn.mav.heartbeat_send, MAV_TYPE_ONBOARD_CONTROLLER, MAV_AUTOPILOT_INVALID, 0, 0,
                          MAV_STATE_ACTIVE)
        self._retry(now)
        return self.t

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def send(self, command: Command, now: int) -> None:
        if self.target_system == 0:
            return  # no vehicle yet
        vx, vy, vz, yaw_rate = command_to_frd(command)
        self._guarded(self.conn.mav.set_position_target_local_ned_send, self._boot_ms(now), self.target_system,
                      self.target_component, self.flavour.frame, TYPE_MASK, 0.0, 0.0, 0.0, vx, vy, vz, 0.0, 0.0, 0.0,
                      0.0, yaw_rate)
        self.setpoints_sent += 1

    def request_control(self) -> None:
        self._command("control", MAV_CMD_DO_SET_MODE, *self.flavour.control)

    def arm(self) -> None:
        self._command("arm", MAV_CMD_COMPONENT_ARM_DISARM, 1.0)

    def takeoff(self, height: float) -> None:
        self._command("takeoff", MAV_CMD_NAV_TAKEOFF, 0.0, 0.0, 0.0, math.nan, math.nan, math.nan, float(height))

    def land(self) -> None:
        self._command("land", MAV_CMD_DO_SET_MODE, *self.flavour.land)

    def kill(self) -> None:
        self._command("kill", MAV_CMD_COMPONENT_ARM_DISARM, 0.0, FORCE_DISARM)

    def close(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass

    # Incoming messages.
    def _handle(self, msg: Any, now: int) -> None:
        kind = msg.get_type()
        if kind == "BAD_DATA":
            if self._garbage == 0:
                self._garbage_since = now
                self.log("warn", f"data on {self.address} that is not MAVLink (or fails its checksum): skipping it "
                                 f"(counted until none comes for {GARBAGE_QUIET_S} s)")
            self._garbage += len(msg.get_msgbuf())
            self._garbage_at = now
            return
        self._errors = 0
        system, component = msg.get_srcSystem(), msg.get_srcComponent()
        if kind == "HEARTBEAT" and self.target_system == 0 and msg.autopilot == self.flavour.autopilot \
                and msg.type not in (MAV_TYPE_GCS, MAV_TYPE_ONBOARD_CONTROLLER):
            self.target_system, self.target_component = system, component
            self.log("info", f"vehicle: system {system}, component {component} (the first {self.flavour.name} "
                             "autopilot heard)")
        if system != self.target_system:
            self._note(f"system {system}", f"ignoring messages from system {system}: the vehicle is system "
                                           f"{self.target_system or '(first autopilot heard)'}")
            return
        if kind == "HEARTBEAT":
            if component != self.target_component or msg.autopilot == MAV_AUTOPILOT_INVALID:
                return  # another component of the vehicle (camera, gimbal, companion)
            if msg.autopilot != self.flavour.autopilot:
                found = AUTOPILOTS.get(msg.autopilot, f"autopilot type {msg.autopilot}")
                self._note("flavour", f"system {system} is {found}, but this bridge speaks {self.flavour.name}: "
                                      "ignoring it (set flavour)")
                return
            self._heartbeat(msg)
        if not self._verified or component != self.target_component:
            return
        self.t.heard = now
        if kind == "LOCAL_POSITION_NED":
            self.t.position = ned_to_enu((msg.x, msg.y, msg.z))
            self.t.velocity = ned_to_enu((msg.vx, msg.vy, msg.vz))
            self.t.pose_stamp = now
        elif kind == "ATTITUDE":
            self.t.yaw = yaw_ned_to_enu(msg.yaw)
        elif kind == "EXTENDED_SYS_STATE":
            self.t.landed = None if msg.landed_state == MAV_LANDED_STATE_UNDEFINED else \
                msg.landed_state == MAV_LANDED_STATE_ON_GROUND
        elif kind == "COMMAND_ACK":
            self._ack(msg)
        elif kind == "STATUSTEXT" and msg.severity <= 4:  # EMERGENCY .. WARNING: often why a command was refused
            self.log("warn", f"vehicle says: {msg.text}")

    def _heartbeat(self, msg: Any) -> None:
        custom = msg.custom_mode if msg.base_mode & MAV_MODE_FLAG_CUSTOM_MODE_ENABLED else None
        self.t.armed = bool(msg.base_mode & MAV_MODE_FLAG_SAFETY_ARMED)
        mode = self.flavour.mode_name(custom)
        if mode != self.t.mode and self._verified:
            self.log("info", f"vehicle mode {self.t.mode} -> {mode}")
        self.t.mode, self.t.in_control = mode, self.flavour.in_control(custom)
        if not self._verified:
            self._verified = True
            self.log("info", f"{self.flavour.name} heard on {self.address}: mode {mode}, "
                             f"{'armed' if self.t.armed else 'disarmed'}")
            interval_us = 1e6 / TELEMETRY_HZ
            for message in (MSG_LOCAL_POSITION_NED, MSG_ATTITUDE, MSG_EXTENDED_SYS_STATE):
                self._send_command(MAV_CMD_SET_MESSAGE_INTERVAL, 0, (float(message), interval_us))

    def _ack(self, msg: Any) -> None:
        addressed = getattr(msg, "target_system", 0)
        if addressed not in (0, self.source_system):
            return  # an answer to another ground station
        pending = self._pending.get(msg.command)
        if pending is None:
            return  # message intervals (not tracked), or a late duplicate
        if msg.result == MAV_RESULT_IN_PROGRESS:
            pending["in_progress"] = True  # the vehicle works on it: wait for the final answer, no resending
            return
        del self._pending[msg.command]
        result = MAV_RESULT.get(msg.result, f"result {msg.result}")
        self._events.append(Event(pending["what"], msg.result == MAV_RESULT_ACCEPTED,
                                  "" if msg.result == MAV_RESULT_ACCEPTED else result))

    # Outgoing commands.
    def _command(self, what: str, command: int, *params: float) -> None:
        """Send a command now; a newer one of the same id replaces an unanswered one."""
        self._pending[command] = {"what": what, "params": params, "sent_at": None, "tries": 0, "in_progress": False}
        self._retry(self._now)

    def _retry(self, now: int) -> None:
        """Send pending commands that are due (new ones at once); give up after ACK_TRIES."""
        for command, p in list(self._pending.items()):
            if p["in_progress"] or p["sent_at"] is not None and now - p["sent_at"] < ACK_TIMEOUT_S * 1e9:
                continue
            if p["tries"] >= ACK_TRIES:
                del self._pending[command]
                self._events.append(Event(p["what"], False, f"no COMMAND_ACK after {ACK_TRIES} tries"))
                continue
            self._send_command(command, p["tries"], p["params"])
            p["sent_at"], p["tries"] = now, p["tries"] + 1

    def _send_command(self, command: int, confirmation: int, params: tuple[float, ...]) -> None:
        if self.target_system == 0:
            return
        values = list(params) + [0.0] * (7 - len(params))
        self._guarded(self.conn.mav.command_long_send, self.target_system, self.target_component, command,
                      confirmation, *values)

    # Helpers.
    def _has_peer(self) -> bool:
        """Whether anything sent now reaches someone: a listening UDP link first has to hear from the vehicle."""
        return not getattr(self.conn, "udp_server", False) or bool(self.conn.clients)

    def _boot_ms(self, now: int) -> int:
        return ((now - (self._t0 or now)) // 1_000_000) & 0xFFFFFFFF

    def _guarded(self, send: Any, *args: Any) -> None:
        try:
            send(*args)
        except Exception as exc:  # a closed port or unreachable host: logged once per burst, never raised
            self._link_error(exc)

    def _link_error(self, exc: Exception) -> None:
        if self._errors == 0:
            self.log("warn", f"link error on {self.address}: {type(exc).__name__}: {exc}")
        self._errors += 1

    def _note(self, key: str, message: str) -> None:
        if key not in self._noted:
            self._noted.add(key)
            self.log("warn", message)
