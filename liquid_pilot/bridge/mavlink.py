"""The MAVLink backend: PX4 (offboard) and ArduPilot Copter (guided) through pymavlink, over UDP, TCP or serial.

Setpoints are ``SET_POSITION_TARGET_LOCAL_NED`` with body-frame velocities and a yaw rate
(``TYPE_MASK`` ignores position, acceleration and yaw): ``MAV_FRAME_BODY_NED`` for PX4,
``MAV_FRAME_BODY_OFFSET_NED`` for ArduPilot, both body FRD (``conversions.command_to_frd``: vy, vz and
the yaw rate change sign). Modes and arming go as ``COMMAND_LONG`` (``MAV_CMD_DO_SET_MODE``,
``MAV_CMD_COMPONENT_ARM_DISARM``, ``MAV_CMD_NAV_TAKEOFF``); each is resent until its ``COMMAND_ACK``
(``ACK_TRIES`` times ``ACK_TIMEOUT_S``) and its outcome becomes a supervisor ``Event``. The vehicle is
known by its ``HEARTBEAT`` (autopilot type, armed flag, custom mode); position and velocity come from
``LOCAL_POSITION_NED``, the attitude from ``ATTITUDE_QUATERNION`` (and ``ATTITUDE``), the landed state from
``EXTENDED_SYS_STATE``, all converted to ENU. The bridge sends its own heartbeat at 1 Hz as an onboard
controller. Hover is a position setpoint (``MAV_FRAME_LOCAL_NED``, type mask 0x09F8: position and yaw) at the
point the supervisor holds.

**Telemetry out** (``bridge.telemetry``; ``bridge_node`` publishes it): the streams are asked for with
``MAV_CMD_SET_MESSAGE_INTERVAL`` once the vehicle is heard, and asked again while they do not come.
``HIGHRES_IMU`` at ``imu_rate`` (both PX4 and ArduPilot send it: SI units, body FRD, the accelerometer with
gravity, so -9.8 m/s^2 on z at rest) becomes an ``ImuSample`` in FLU with the latest attitude;
``SCALED_IMU`` (milli-g, milli-rad/s) is asked for instead where ``HIGHRES_IMU`` does not come.
``LOCAL_POSITION_NED`` at ``odom_rate`` with the latest ``ATTITUDE_QUATERNION`` becomes an ``OdometrySample``
(twist rotated into the body); ``SYS_STATUS`` at 1 Hz a ``BatterySample``. Stamps: the autopilot's time of
measurement (``time_usec`` / ``time_boot_ms``) mapped onto the companion's clock by ``telemetry.TimeSync``
from a ``TIMESYNC`` exchange every second; the autopilot's own ``TIMESYNC`` requests are answered.

**Links.** ``tcp:`` connects when something listens: until then every poll after ``RECONNECT_S`` tries again
(one log line; SITL and MAVLink routers often start after the bridge), and a connection the peer closes is
reopened the same way; ``connect_timeout`` (s, 0: for ever) gives up. **MAVLink 2 signing**: with a
``signing_key`` (32 bytes) every message out is signed; ``require_signing`` refuses unsigned messages in
(logged once).

Only messages from ``target_system`` (0: the first autopilot of the right flavour heard) and its
``target_component`` count; other systems, garbage bytes and a heartbeat of the wrong autopilot are
logged once and ignored. Every call returns at once: the supervisor ticks, the backend polls.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import socket
from dataclasses import dataclass
from typing import Any

from liquid_pilot.bridge.conversions import (Command, Vector, attitude_ned_to_enu, command_to_frd, enu_to_ned,
                                             frd_to_flu, milli_g_to_accel, ned_to_enu, unrotate, yaw_enu_to_ned,
                                             yaw_from_quaternion, yaw_ned_to_enu)
from liquid_pilot.bridge.supervisor import Backend, Event, Telemetry
from liquid_pilot.bridge.telemetry import REQUEST_S, BatterySample, ImuSample, OdometrySample, TimeSync
from liquid_pilot.flight.types import Faults, Log

ACK_TIMEOUT_S = 0.5  # s before a COMMAND_LONG without an answer is sent again
ACK_TRIES = 3
HEARTBEAT_S = 1.0  # our heartbeat's period
TELEMETRY_HZ = 20.0  # asked of the vehicle for the heading and the landed state
ATTITUDE_HZ = 50.0  # ATTITUDE_QUATERNION: the IMU's and odometry's orientation
BATTERY_HZ = 1.0
STREAM_RETRY_S = 3.0  # s without an asked-for stream before asking again
STREAM_TRIES = 3
IMU_FRESH_S = 0.5  # s: SCALED_IMU is used only when no HIGHRES_IMU came for this long
RECONNECT_S = 1.0  # s between attempts to open a tcp: link
CONNECT_ATTEMPT_S = 2.0  # s one attempt may take (an unreachable host)
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
LANDED_STATES = {1: "on_ground", 2: "in_air", 3: "takeoff", 4: "landing"}
MSG_SYS_STATUS, MSG_SCALED_IMU, MSG_ATTITUDE, MSG_ATTITUDE_QUATERNION, MSG_LOCAL_POSITION_NED = 1, 26, 30, 31, 32
MSG_HIGHRES_IMU, MSG_EXTENDED_SYS_STATE = 105, 245
MAV_FRAME_LOCAL_NED = 1
# Velocities and yaw rate used; position (bits 0-2), acceleration (6-8) and yaw (10) ignored.
TYPE_MASK = 0b0000_0101_1100_0111  # 1479 = 0x05C7
# Position and yaw used; velocity (bits 3-5), acceleration (6-8) and yaw rate (11) ignored: the hover's hold.
HOLD_MASK = 0b0000_1001_1111_1000  # 2552 = 0x09F8
UNIX_TIME_US = 10**15  # a time_usec beyond this is Unix time, not time since boot: stamped on receipt

PX4_MAIN = {1: "MANUAL", 2: "ALTCTL", 3: "POSCTL", 4: "AUTO", 5: "ACRO", 6: "OFFBOARD", 7: "STABILIZED",
            8: "RATTITUDE"}
PX4_AUTO = {1: "READY", 2: "TAKEOFF", 3: "LOITER", 4: "MISSION", 5: "RTL", 6: "LAND", 8: "FOLLOW_TARGET",
            9: "PRECLAND"}
PX4_OFFBOARD, PX4_AUTO_MODE, PX4_AUTO_LAND, PX4_AUTO_TAKEOFF = 6, 4, 6, 2
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

    def taking_off(self, custom_mode: int | None) -> bool:
        """Whether the mode is a take-off (PX4's AUTO.TAKEOFF; ArduPilot says so by its landed state only)."""
        return custom_mode is not None and self.autopilot == MAV_AUTOPILOT_PX4 and \
            (custom_mode >> 16) & 0xFF == PX4_AUTO_MODE and (custom_mode >> 24) & 0xFF == PX4_AUTO_TAKEOFF

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


def signing_key(key_file: str = "", passphrase: str = "") -> bytes | None:
    """Return the 32-byte MAVLink 2 signing key from a file or a passphrase (at most one), or None for neither.

    The file holds the 32 bytes, or them written as 64 hexadecimal digits. A passphrase is hashed as MAVProxy's
    ``signing setup PASSPHRASE`` does (SHA-256 of its text), so the autopilot set up that way has the same key.
    """
    if key_file and passphrase:
        raise ValueError("mavlink signing: give signing_key_file or signing_passphrase, not both")
    if passphrase:
        return hashlib.sha256(passphrase.encode("utf-8")).digest()
    if not key_file:
        return None
    try:
        data = open(os.path.expanduser(key_file), "rb").read()
    except OSError as exc:
        raise ValueError(f"mavlink signing_key_file {key_file!r}: cannot read it ({exc.strerror})") from None
    text = data.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if len(data) != 32:
        raise ValueError(f"mavlink signing_key_file {key_file!r}: expected 32 bytes or 64 hexadecimal digits, got "
                         f"{len(data)} bytes")
    return data


class MavlinkBackend(Backend):
    """PX4 or ArduPilot over one MAVLink link (the module docstring has the messages, telemetry and links)."""

    can_switch = can_arm = can_kill = True
    lands_itself = True
    holds_position = True

    def __init__(self, address: str, flavour: str = "px4", target_system: int = 1, target_component: int = 1,
                 source_system: int = 255, source_component: int = 191, baud: int = 57600,
                 log: Log | None = None, imu_rate: float = 200.0, odom_rate: float = 30.0,
                 connect_timeout: float = 0.0, key: bytes | None = None, require_signing: bool = False):
        if flavour not in FLAVOURS:
            raise ValueError(f"mavlink flavour {flavour!r}: expected one of {', '.join(FLAVOURS)}")
        for name, value in (("target_system", target_system), ("target_component", target_component),
                            ("source_system", source_system), ("source_component", source_component)):
            if not 0 <= value <= 255 or (value == 0 and name != "target_system"):
                raise ValueError(f"mavlink {name} = {value} must be in [{0 if name == 'target_system' else 1}, 255]")
        for name, value, high in (("imu_rate", imu_rate, 1000.0), ("odom_rate", odom_rate, 200.0),
                                  ("connect_timeout", connect_timeout, 86400.0)):
            if not 0.0 <= value <= high:
                raise ValueError(f"mavlink {name} = {value} must be in [0, {high:g}]")
        if key is not None and len(key) != 32:
            raise ValueError(f"mavlink signing key: expected 32 bytes, got {len(key)}")
        if require_signing and key is None:
            raise ValueError("mavlink require_signing needs a key: set signing_key_file or signing_passphrase")
        self.flavour = FLAVOURS[flavour]
        self.name = f"mavlink ({flavour})"
        self.rate = self.flavour.rate
        self.takes_off_itself = self.flavour.takes_off_itself
        self.address = address
        self.target_system, self.target_component = target_system, target_component
        self.source_system, self.source_component = source_system, source_component
        self.log = log or (lambda level, message: None)
        self.imu_rate, self.odom_rate, self.connect_timeout = imu_rate, odom_rate, connect_timeout
        self.key, self.require_signing = key, require_signing
        self._mu = mavutil()
        self._device, self._options = parse_address(address, baud)
        self._tcp = address.startswith("tcp:")
        if "baud" in self._options:
            try:
                import serial  # noqa: F401  (pymavlink opens serial ports with pyserial)
            except ImportError:
                raise ValueError("a serial MAVLink link needs pyserial: pip install pyserial") from None
        self.conn: Any = None
        self._connect_since: int | None = None  # the first attempt to open a tcp: link (ns, poll time)
        self._connect_next = 0  # the next attempt
        self._connect_failed = False  # connect_timeout passed: no more attempts
        try:
            self._open()
        except OSError as exc:
            if not self._tcp:
                raise ValueError(f"mavlink address {address!r}: cannot open it: {exc}") from None
            self.log("info", f"nothing listens on {address} yet ({exc.strerror or exc}): trying again every "
                             f"{RECONNECT_S:g} s" + (f" for {connect_timeout:g} s" if connect_timeout else ""))
        except ValueError as exc:
            raise ValueError(f"mavlink address {address!r}: cannot open it: {exc}") from None
        self.t = Telemetry()
        self.timesync = TimeSync()
        self.received: dict[str, int] = {}  # messages of the vehicle by type
        self._attitude: tuple[float, float, float, float] | None = None  # body FLU -> ENU (x, y, z, w)
        self._body_rates: Vector = (0.0, 0.0, 0.0)  # rad/s, body FLU, with the attitude
        self._highres_at: int | None = None  # the latest HIGHRES_IMU's receipt
        self._streams: dict[int, dict[str, Any]] = {}  # message id -> rate, asked_at, tries, seen
        self._timesync_at: int | None = None
        self._unsigned = 0  # unsigned messages refused
        self._custom_mode: int | None = None
        self._verified = False  # a heartbeat of the right autopilot from the target came
        self._t0: int | None = None  # the first poll: time_boot_ms counts from it
        self._now = 0  # the latest poll's time
        self._last_heartbeat: int | None = None
        self._pending: dict[int, dict[str, Any]] = {}  # command id -> what, params, sent_at, tries
        self._events: list[Event] = []
        self._noted: set[str] = set()
        self._garbage = 0  # bytes in the current burst of data that is not MAVLink
        self._garbage_since = self._garbage_at = 0  # the burst's first and latest
        self._link_errors = Faults(self.log)  # errors sending on the link, logged once per burst
        self.setpoints_sent = 0

    # The link.
    def _open(self) -> None:
        """Open the connection (one attempt, at most CONNECT_ATTEMPT_S for tcp:); OSError when it fails."""
        options = dict(self._options)
        if self._tcp:
            options.update(retries=0, autoreconnect=False)
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(CONNECT_ATTEMPT_S)  # read when pymavlink makes its socket: bounds the connect
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pymavlink prints its retries
                conn = self._mu.mavlink_connection(self._device, source_system=self.source_system,
                                                   source_component=self.source_component, **options)
        finally:
            socket.setdefaulttimeout(previous)
        if self.key is not None:
            conn.setup_signing(self.key, sign_outgoing=True, allow_unsigned_callback=self._allow_unsigned)
        self.conn = conn

    def _allow_unsigned(self, mav: Any, message_id: int) -> bool:
        if not self.require_signing:
            return True
        if self._unsigned == 0:
            self.log("warn", f"refusing unsigned MAVLink messages on {self.address} (require_signing): give the "
                             "autopilot the same key (docs/autopilot.md, MAVLink 2 signing); further ones are counted")
        self._unsigned += 1
        return False

    def _reconnect(self, now: int) -> bool:
        """Keep trying to open a tcp: link; True when it is open."""
        if self.conn is not None:
            return True
        if self._connect_failed or now < self._connect_next:
            return False
        self._connect_since = self._connect_since if self._connect_since is not None else now
        if self.connect_timeout and now - self._connect_since > self.connect_timeout * 1e9:
            self._connect_failed = True
            self._events.append(Event("link", False, f"nothing listened on {self.address} for "
                                                     f"{self.connect_timeout:g} s (connect_timeout)"))
            return False
        self._connect_next = now + int(RECONNECT_S * 1e9)
        try:
            self._open()
        except (OSError, ValueError):
            return False
        self.log("info", f"connected to {self.address} after {(now - self._connect_since) / 1e9:.1f} s")
        self._connect_since = None
        return True

    def _closed_by_peer(self) -> None:
        """Open again a tcp: link the peer closed (a SITL or router restarting)."""
        self.log("warn", f"{self.address} closed by the other end: reconnecting every {RECONNECT_S:g} s")
        try:
            self.conn.close()
        except OSError:
            pass
        self.conn, self._verified, self._streams = None, False, {}
        self._connect_next = self._now

    def fileno(self) -> int | None:
        conn = self.conn
        port = getattr(conn, "port", None) if conn is not None else None
        try:
            return port.fileno() if port is not None else None
        except (OSError, ValueError):
            return None

    # Backend interface.
    def poll(self, now: int) -> Telemetry:
        self._now = now
        if self._t0 is None:
            self._t0 = now
        if not self._reconnect(now):
            return self.t
        for _ in range(MAX_MESSAGES_PER_POLL):
            try:
                if self._tcp:
                    with contextlib.redirect_stdout(io.StringIO()) as said:  # pymavlink prints a peer's close
                        msg = self.conn.recv_msg()
                    if "EOF" in said.getvalue() or "closed by peer" in said.getvalue():
                        self._closed_by_peer()
                        break
                else:
                    msg = self.conn.recv_msg()
            except Exception as exc:  # a socket or port error: the link is down, not the bridge
                self._link_error(exc)
                if self._tcp and isinstance(exc, OSError):
                    self._closed_by_peer()
                break
            if msg is None:
                break
            self._handle(msg, now)
        if self._garbage and now - self._garbage_at > GARBAGE_QUIET_S * 1e9:
            self.log("info", f"{self._garbage} bytes of garbage skipped over "
                             f"{(self._garbage_at - self._garbage_since) / 1e9:.2f} s; none since")
            self._garbage = 0
        if self.conn is None:
            return self.t
        if self._has_peer() and (self._last_heartbeat is None or now - self._last_heartbeat >= HEARTBEAT_S * 1e9):
            self._last_heartbeat = now
            self._guarded(self.conn.mav.heartbeat_send, MAV_TYPE_ONBOARD_CONTROLLER, MAV_AUTOPILOT_INVALID, 0, 0,
                          MAV_STATE_ACTIVE)
        if self._verified:
            if self._timesync_at is None or now - self._timesync_at >= REQUEST_S * 1e9:
                self._timesync_at = now
                self._guarded(self.conn.mav.timesync_send, 0, now)
            self._watch_streams(now)
        self._retry(now)
        return self.t

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def send(self, command: Command, now: int) -> None:
        if self.target_system == 0 or self.conn is None:
            return  # no vehicle yet
        vx, vy, vz, yaw_rate = command_to_frd(command)
        self._guarded(self.conn.mav.set_position_target_local_ned_send, self._boot_ms(now), self.target_system,
                      self.target_component, self.flavour.frame, TYPE_MASK, 0.0, 0.0, 0.0, vx, vy, vz, 0.0, 0.0, 0.0,
                      0.0, yaw_rate)
        self.setpoints_sent += 1

    def hold_position(self, position: Vector, yaw: float, now: int) -> None:
        if self.target_system == 0 or self.conn is None:
            return
        north, east, down = enu_to_ned(position)
        self._guarded(self.conn.mav.set_position_target_local_ned_send, self._boot_ms(now), self.target_system,
                      self.target_component, MAV_FRAME_LOCAL_NED, HOLD_MASK, north, east, down, 0.0, 0.0, 0.0, 0.0,
                      0.0, 0.0, yaw_enu_to_ned(yaw), 0.0)
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
        if self.conn is None:
            return
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
        if "link_error" in self._link_errors:
            self._link_errors.clear(now, "messages arrive again")
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
        self.received[kind] = self.received.get(kind, 0) + 1
        stream = self._streams.get(msg.get_msgId())
        if stream is not None:
            stream["seen"] = True
        if kind == "LOCAL_POSITION_NED":
            self.t.position = ned_to_enu((msg.x, msg.y, msg.z))
            self.t.velocity = ned_to_enu((msg.vx, msg.vy, msg.vz))
            self.t.pose_stamp = now
            if self._attitude is not None:
                self._emit(OdometrySample(self._stamp(msg.time_boot_ms * 1_000_000, now), self.t.position,
                                          self._attitude, unrotate(self._attitude, self.t.velocity), self._body_rates))
        elif kind == "ATTITUDE_QUATERNION":
            self._attitude = attitude_ned_to_enu(msg.q1, msg.q2, msg.q3, msg.q4)
            self._body_rates = frd_to_flu((msg.rollspeed, msg.pitchspeed, msg.yawspeed))
            self.t.yaw = yaw_from_quaternion(*self._attitude)
        elif kind == "ATTITUDE":
            self.t.yaw = yaw_ned_to_enu(msg.yaw)
        elif kind == "HIGHRES_IMU":
            self._highres_at = now
            self._emit(ImuSample(self._stamp(msg.time_usec * 1000, now), frd_to_flu((msg.xgyro, msg.ygyro, msg.zgyro)),
                                 frd_to_flu((msg.xacc, msg.yacc, msg.zacc)), self._attitude))
        elif kind == "SCALED_IMU":
            if self._highres_at is None or now - self._highres_at > IMU_FRESH_S * 1e9:
                gyro = frd_to_flu((msg.xgyro / 1000.0, msg.ygyro / 1000.0, msg.zgyro / 1000.0))
                accel = frd_to_flu(tuple(milli_g_to_accel(v) for v in (msg.xacc, msg.yacc, msg.zacc)))
                self._emit(ImuSample(self._stamp(msg.time_boot_ms * 1_000_000, now), gyro, accel, self._attitude))
        elif kind == "SYS_STATUS":
            self._emit(BatterySample(now, None if msg.voltage_battery in (0, 65535) else msg.voltage_battery / 1000.0,
                                     None if msg.current_battery < 0 else msg.current_battery / 100.0,
                                     None if msg.battery_remaining < 0 else msg.battery_remaining / 100.0))
        elif kind == "EXTENDED_SYS_STATE":
            self.t.landed = None if msg.landed_state == MAV_LANDED_STATE_UNDEFINED else \
                msg.landed_state == MAV_LANDED_STATE_ON_GROUND
            self.t.landed_state = LANDED_STATES.get(msg.landed_state)
            self._update_taking_off()
        elif kind == "TIMESYNC":
            if msg.tc1 == 0:  # the autopilot's request: answer with our time
                self._guarded(self.conn.mav.timesync_send, now, msg.ts1)
            else:
                self.timesync.answer(msg.tc1, msg.ts1, now)
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
        self._custom_mode = custom
        self._update_taking_off()
        if not self._verified:
            self._verified = True
            self.log("info", f"{self.flavour.name} heard on {self.address}: mode {mode}, "
                             f"{'armed' if self.t.armed else 'disarmed'}")
            rates = {MSG_LOCAL_POSITION_NED: max(self.odom_rate, TELEMETRY_HZ), MSG_ATTITUDE: TELEMETRY_HZ,
                     MSG_ATTITUDE_QUATERNION: ATTITUDE_HZ, MSG_EXTENDED_SYS_STATE: TELEMETRY_HZ,
                     MSG_SYS_STATUS: BATTERY_HZ}
            if self.imu_rate:
                rates[MSG_HIGHRES_IMU] = self.imu_rate
            for message, rate in rates.items():
                self._ask_stream(message, rate)

    def _update_taking_off(self) -> None:
        self.t.taking_off = self.t.landed_state == "takeoff" or \
            self.flavour.taking_off(self._custom_mode)

    # Streams.
    def _ask_stream(self, message: int, rate: float) -> None:
        stream = self._streams.setdefault(message, {"rate": rate, "tries": 0, "seen": False})
        stream["asked_at"], stream["tries"] = self._now, stream["tries"] + 1
        self._send_command(MAV_CMD_SET_MESSAGE_INTERVAL, 0, (float(message), 1e6 / rate))

    def _watch_streams(self, now: int) -> None:
        """Ask again for streams that do not come; SCALED_IMU where HIGHRES_IMU never does."""
        for message, stream in list(self._streams.items()):
            if stream["seen"] or now - stream["asked_at"] < STREAM_RETRY_S * 1e9:
                continue
            if stream["tries"] < STREAM_TRIES:
                self._ask_stream(message, stream["rate"])
                continue
            stream["seen"] = True  # given up: asked no more
            name = self._mu.mavlink.mavlink_map[message].msgname if message in self._mu.mavlink.mavlink_map \
                else str(message)
            if message == MSG_HIGHRES_IMU and MSG_SCALED_IMU not in self._streams:
                self.log("info", f"the autopilot does not send HIGHRES_IMU: asking for SCALED_IMU at "
                                 f"{stream['rate']:g} Hz instead")
                self._ask_stream(MSG_SCALED_IMU, stream["rate"])
            elif message != MSG_LOCAL_POSITION_NED:  # that one comes once the estimator has a position
                self.log("info", f"the autopilot has not sent {name} (asked {STREAM_TRIES} times): "
                                 "the telemetry it carries is not published until it does")

    def _stamp(self, remote_ns: int, received: int) -> int:
        """Return the companion's time of an autopilot time since boot (``TimeSync``); Unix times: the receipt."""
        if remote_ns >= UNIX_TIME_US * 1000:
            return received
        return self.timesync.to_local(remote_ns, received)

    def _emit(self, sample: Any) -> None:
        sink = self.on_sample
        if sink is None:
            return
        try:
            sink(sample)
        except Exception as exc:  # a failing publisher never stops the link
            self._note("sample_error", f"publishing telemetry failed: {type(exc).__name__}: {exc}")

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
        if self.target_system == 0 or self.conn is None:
            return
        values = list(params) + [0.0] * (7 - len(params))
        self._guarded(self.conn.mav.command_long_send, self.target_system, self.target_component, command,
                      confirmation, *values)

    # Helpers.
    def _has_peer(self) -> bool:
        """Whether anything sent now reaches someone: a listening UDP link first has to hear from the vehicle."""
        return self.conn is not None and (not getattr(self.conn, "udp_server", False) or bool(self.conn.clients))

    def _boot_ms(self, now: int) -> int:
        return ((now - (self._t0 or now)) // 1_000_000) & 0xFFFFFFFF

    def _guarded(self, send: Any, *args: Any) -> None:
        try:
            send(*args)
        except Exception as exc:  # a closed port or unreachable host: logged once per burst, never raised
            self._link_error(exc)

    def _link_error(self, exc: Exception) -> None:
        self._link_errors.raise_("link_error", f"link error on {self.address}: {type(exc).__name__}: {exc}", self._now)

    def _note(self, key: str, message: str) -> None:
        if key not in self._noted:
            self._noted.add(key)
            self.log("warn", message)
