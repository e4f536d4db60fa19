"""The simulator as a MAVLink vehicle: an autopilot that obeys setpoints as PX4 and ArduPilot say.

``MavlinkVehicle`` plays the autopilot's side of everything the bridge uses, after the stacks' documentation: a
1 Hz ``HEARTBEAT`` (autopilot type, armed flag, custom mode), ``LOCAL_POSITION_NED``, ``ATTITUDE``,
``ATTITUDE_QUATERNION``, ``HIGHRES_IMU``, ``EXTENDED_SYS_STATE`` and (1 Hz) ``SYS_STATUS`` on every ``publish``;
``TIMESYNC`` requests answered with its boot clock; ``COMMAND_LONG`` answered with ``COMMAND_ACK`` (mode
changes, arming, force disarm, take-off, message intervals), each kind accepted, denied or ignored as its
``policy`` says; ``SET_POSITION_TARGET_LOCAL_NED`` obeyed only for this system, either in the flavour's body
frame (PX4 ``MAV_FRAME_BODY_NED``, ArduPilot ``MAV_FRAME_BODY_OFFSET_NED``: body FRD velocities and a yaw rate
about down) with velocities and yaw rate used by the type mask, or as a position and yaw in
``MAV_FRAME_LOCAL_NED`` (held by a proportional controller on the reported position); anything else is counted
and ignored.

It behaves as the real autopilots were seen to in SITL where that matters to the bridge: its local origin may be
anywhere (``origin``: ArduPilot's is the first GPS fix, kept across flights; PX4's sat 1-2 m above the ground),
a take-off reports ``EXTENDED_SYS_STATE.landed_state`` TAKEOFF until the climb ends (a setpoint during
ArduPilot's guided take-off cuts it short, as ArduPilot does), and a velocity setpoint is flown with the
estimator's velocity error added (``drift``, ENU m/s): a zero velocity drifts, a position hold does not. PX4
refuses offboard without a setpoint stream and leaves it for position hold (``COM_OBL_RC_ACT`` 0) after
``loss_timeout`` (``COM_OF_LOSS_T``, 1 s) without setpoints; ArduPilot stops after 3 s without one; in the land
mode the vehicle descends and disarms on the ground. Every setpoint it received is kept in ``setpoints`` for
tests to inspect.

The vehicle flies a ``body``: ``Kinematic`` (a point that flies its command exactly, for protocol tests) or
``SimBody`` (the PyBullet simulator, stepped by ``episode.fly``). ``MavlinkPilot`` is the end-to-end run: a
simulator policy whose commands go camera -> pilot -> supervisor -> MAVLink over loopback UDP -> this vehicle,
in lockstep with simulated time (every message is waited for, by packet counts, before the other side reads;
nothing sleeps).
"""
from __future__ import annotations

import math
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from liquid_pilot.bridge.conversions import (Command, enu_to_ned, flu_to_frd, frd_to_command, ned_to_enu,
                                             world_to_body, wrap, yaw_enu_to_ned, yaw_ned_to_enu)
from liquid_pilot.bridge.mavlink import (COPTER_GUIDED, COPTER_LAND, FLAVOURS, FORCE_DISARM, MAV_FRAME_LOCAL_NED,
                                         MAV_CMD_COMPONENT_ARM_DISARM, MAV_CMD_DO_SET_MODE, MAV_CMD_NAV_TAKEOFF,
                                         MAV_CMD_SET_MESSAGE_INTERVAL, MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,
                                         MAV_MODE_FLAG_SAFETY_ARMED, MAV_RESULT_ACCEPTED, MAV_STATE_ACTIVE,
                                         PX4_AUTO_LAND, PX4_AUTO_MODE, PX4_AUTO_TAKEOFF, PX4_OFFBOARD,
                                         MavlinkBackend, mavutil)
from liquid_pilot.bridge.supervisor import Supervisor, SupervisorConfig
from liquid_pilot.flight.types import ZERO, Log, ManualClock
from liquid_pilot.sim.world import Observation, Simulator

MAV_TYPE_QUADROTOR = 2
MAV_RESULT_TEMPORARILY_REJECTED, MAV_RESULT_DENIED = 1, 2
MAV_LANDED_STATE_ON_GROUND, MAV_LANDED_STATE_IN_AIR, MAV_LANDED_STATE_TAKEOFF = 1, 2, 3
PX4_POSCTL = 3
PX4_AUTO_LOITER = 3
COPTER_LOITER = 5
POSITION_IGNORED = 0b111  # type mask bits of x, y, z
VELOCITY_IGNORED = 0b111000  # type mask bits of vx, vy, vz
YAW_IGNORED = 0b0100_0000_0000
YAW_RATE_IGNORED = 0b1000_0000_0000
HOLD_GAIN = 1.0  # 1/s: the position hold's proportional gain
HOLD_SPEED = 1.0  # m/s: its speed limit
GRAVITY = 9.80665
GROUND_HEIGHT = 0.05  # m: on the ground below this
HEARTBEAT_S = 1.0
ARDUPILOT_TIMEOUT_S = 3.0  # guided mode stops without a velocity update for this long


@dataclass
class Setpoint:
    """A SET_POSITION_TARGET_LOCAL_NED as received: the raw fields and when."""

    time: int  # ns, the vehicle's clock
    frame: int
    type_mask: int
    velocity: tuple[float, float, float]  # as sent (body FRD for the body frames)
    yaw_rate: float  # as sent
    target: tuple[int, int]
    time_boot_ms: int
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)  # as sent (local NED)
    yaw: float = 0.0  # as sent (NED heading)

    @property
    def holds(self) -> bool:
        """A position hold (local NED position and yaw used) rather than a body velocity."""
        return self.frame == MAV_FRAME_LOCAL_NED and not self.type_mask & (POSITION_IGNORED | YAW_IGNORED)


class Kinematic:
    """A point vehicle that flies its body FLU velocity command exactly (ENU, from the ground below its start)."""

    def __init__(self, position: tuple[float, float, float] = (0.0, 0.0, 0.0), yaw: float = 0.0):
        self.position = np.array(position, dtype=float)
        self.velocity = np.zeros(3)
        self.yaw = yaw
        self.yaw_rate = 0.0
        self.acceleration = np.zeros(3)  # ENU, of the last step

    def fly(self, command: Command, dt: float) -> None:
        vx, vy, vz, yaw_rate = command
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        velocity = np.array([c * vx - s * vy, s * vx + c * vy, vz])
        self.acceleration = (velocity - self.velocity) / dt if dt > 0 else np.zeros(3)
        self.velocity = velocity
        self.position = self.position + self.velocity * dt
        if self.position[2] < 0.0:
            self.position[2], self.velocity[2] = 0.0, 0.0
        self.yaw_rate = yaw_rate
        self.yaw = (self.yaw + yaw_rate * dt + math.pi) % (2 * math.pi) - math.pi

    def imu(self) -> tuple[np.ndarray, np.ndarray]:
        """Gyro and accelerometer (with gravity), body FLU: level flight, so only the heading rotates."""
        specific = self.acceleration + (0.0, 0.0, GRAVITY)
        return np.array([0.0, 0.0, self.yaw_rate]), np.array([*world_to_body(tuple(specific), self.yaw)])


class SimBody:
    """The simulator's drone in the vehicle's local frame: ENU from the ground below its start point."""

    def __init__(self, sim: Simulator):
        self.sim = sim

    @property
    def position(self) -> np.ndarray:
        start = self.sim.layout.start
        return self.sim.state.position - np.array([start[0], start[1], 0.0])

    @property
    def velocity(self) -> np.ndarray:
        return self.sim.state.velocity

    @property
    def yaw(self) -> float:
        return self.sim.state.yaw

    def imu(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the simulator's IMU sample, body FLU."""
        return np.asarray(self.sim.gyro, float), np.asarray(self.sim.accel, float)


class MavlinkVehicle:
    """The autopilot side of MAVLink around a body (the module docstring says what it does as PX4 and ArduPilot)."""

    def __init__(self, body: Any, address: str, flavour: str = "px4", system: int = 1, component: int = 1,
                 armed: bool = False, policy: dict[str, str] | None = None, loss_timeout: float = 1.0,
                 land_speed: float = 0.5, takeoff_speed: float = 0.5, log: Log | None = None,
                 origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
                 drift: tuple[float, float, float] = (0.0, 0.0, 0.0), key: bytes | None = None):
        """``key``: a MAVLink 2 signing key: every message out is signed, unsigned or wrongly signed ones refused."""
        self.body = body
        self.origin = np.array(origin, dtype=float)  # ENU, in the body's frame: where the local frame starts
        self.drift = np.array(drift, dtype=float)  # ENU m/s added to every velocity setpoint flown
        self.flavour = FLAVOURS[flavour]
        self.px4 = flavour == "px4"
        self.system, self.component = system, component
        self.conn = mavutil().mavlink_connection(address, source_system=system, source_component=component)
        self.refused = 0  # messages refused for their signature
        if key is not None:
            self.conn.setup_signing(key, sign_outgoing=True, allow_unsigned_callback=lambda mav, msg_id: False)
        self.armed = armed
        self.custom_mode = (PX4_POSCTL << 16) if self.px4 else COPTER_LOITER
        self.policy = policy or {}  # what -> accept | deny | temporarily | ignore (default accept)
        self.loss_timeout = loss_timeout if self.px4 else ARDUPILOT_TIMEOUT_S
        self.land_speed, self.takeoff_speed = land_speed, takeoff_speed
        self.log = log or (lambda level, message: None)
        self.setpoints: list[Setpoint] = []
        self.commands: list[tuple[int, int, tuple[float, ...], int | None]] = []  # time, id, params, result
        self.ignored = {"frame": 0, "mask": 0, "target": 0}  # setpoints not obeyed, by why
        self.heartbeats_heard = 0  # from the bridge
        self.failsafes = 0
        self._takeoff_to: float | None = None  # m: ArduPilot's guided take-off climbs to this
        self._takeoff_after: Setpoint | None = None  # the last setpoint before the take-off command
        self._last_heartbeat: int | None = None
        self._last_status: int | None = None
        self._last_setpoint: Setpoint | None = None
        self.timesyncs = 0  # TIMESYNC requests answered

    # The autopilot's modes.
    @property
    def mode(self) -> str:
        return self.flavour.mode_name(self.custom_mode)

    @property
    def in_control(self) -> bool:
        return self.flavour.in_control(self.custom_mode)

    @property
    def taking_off(self) -> bool:
        return self._takeoff_to is not None or self.flavour.taking_off(self.custom_mode)

    @property
    def position(self) -> np.ndarray:
        """The reported position: ENU from the local origin."""
        return np.asarray(self.body.position, float) - self.origin

    def operator_takeoff(self, height: float) -> None:
        """Arm and take off to ``height`` m as an operator would: ArduPilot in GUIDED, PX4 in AUTO.TAKEOFF."""
        self.armed = True
        if self.px4:
            self.custom_mode = (PX4_AUTO_MODE << 16) | (PX4_AUTO_TAKEOFF << 24)
        else:
            self.custom_mode = COPTER_GUIDED
        self._takeoff_to, self._takeoff_after = float(height), self._last_setpoint

    @property
    def landing(self) -> bool:
        if self.px4:
            return (self.custom_mode >> 16) & 0xFF == PX4_AUTO_MODE and (self.custom_mode >> 24) & 0xFF == PX4_AUTO_LAND
        return self.custom_mode == COPTER_LAND

    def set_mode(self, custom_mode: int) -> None:
        """Change mode as the operator's RC would."""
        self.custom_mode = custom_mode

    def hold_mode(self) -> int:
        return (PX4_POSCTL << 16) if self.px4 else COPTER_LOITER

    # Messages.
    def publish(self, now: int) -> None:
        """Heartbeat (1 Hz) and telemetry from the body, in NED."""
        mav = self.conn.mav
        if self._last_heartbeat is None or now - self._last_heartbeat >= HEARTBEAT_S * 1e9:
            self._last_heartbeat = now
            base = MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | (MAV_MODE_FLAG_SAFETY_ARMED if self.armed else 0)
            mav.heartbeat_send(MAV_TYPE_QUADROTOR, self.flavour.autopilot, base, self.custom_mode, MAV_STATE_ACTIVE)
        boot_ms = (now // 1_000_000) & 0xFFFFFFFF
        x, y, z = enu_to_ned(tuple(float(v) for v in self.position))
        vx, vy, vz = enu_to_ned(tuple(float(v) for v in self.body.velocity))
        mav.local_position_ned_send(boot_ms, x, y, z, vx, vy, vz)
        yaw_ned = yaw_enu_to_ned(float(self.body.yaw))
        gyro, accel = self.body.imu()
        rates = flu_to_frd(tuple(float(v) for v in gyro))
        mav.attitude_send(boot_ms, 0.0, 0.0, yaw_ned, *rates)
        mav.attitude_quaternion_send(boot_ms, math.cos(yaw_ned / 2), 0.0, 0.0, math.sin(yaw_ned / 2), *rates)
        ax, ay, az = flu_to_frd(tuple(float(v) for v in accel))
        mav.highres_imu_send(now // 1000, ax, ay, az, *rates, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 20.0, 0x3F)
        landed = MAV_LANDED_STATE_ON_GROUND if self._on_ground() else \
            MAV_LANDED_STATE_TAKEOFF if self.taking_off else MAV_LANDED_STATE_IN_AIR
        mav.extended_sys_state_send(0, landed)
        if self._last_status is None or now - self._last_status >= HEARTBEAT_S * 1e9:
            self._last_status = now
            mav.sys_status_send(0, 0, 0, 0, 12600, 520, 80, 0, 0, 0, 0, 0, 0)

    def run(self, stop: threading.Event, period_s: float, fly: bool = False) -> None:
        """Run the autopilot's own loop in real time until ``stop`` is set.

        Every ``period_s``: telemetry out, messages in and, with ``fly``, the body flown on the setpoint.
        """
        while not stop.is_set():
            now = time.monotonic_ns()
            self.publish(now)
            self.receive(now)
            if fly:
                self.body.fly(self.command(now), period_s)
            stop.wait(period_s)

    def receive(self, now: int) -> None:
        while (msg := self.conn.recv_msg()) is not None:
            kind = msg.get_type()
            if kind == "BAD_DATA" and "ignature" in getattr(msg, "reason", ""):
                self.refused += 1
            elif kind == "HEARTBEAT":
                self.heartbeats_heard += 1
            elif kind == "SET_POSITION_TARGET_LOCAL_NED":
                self._setpoint(msg, now)
            elif kind == "COMMAND_LONG":
                self._command(msg, now)
            elif kind == "TIMESYNC" and msg.tc1 == 0:
                self.timesyncs += 1
                self.conn.mav.timesync_send(now, msg.ts1)

    def command(self, now: int) -> Command:
        """Return the body FLU velocity command the vehicle flies now (its failsafes and landing included)."""
        if not self.armed:
            return ZERO
        if self.landing:
            if self._on_ground():
                self.armed = False  # auto-disarm on touchdown
                self.log("info", "vehicle: landed, disarmed")
                return ZERO
            return (0.0, 0.0, -self.land_speed, 0.0)
        last = self._last_setpoint
        if self._takeoff_to is not None:
            # Climbing; in ArduPilot's guided take-off a setpoint cuts the climb short (the bridge must wait).
            if self.body.position[2] < self._takeoff_to and (self.px4 or last is self._takeoff_after):
                return (0.0, 0.0, self.takeoff_speed, 0.0)
            self._takeoff_to = None
            if self.px4 and self.flavour.taking_off(self.custom_mode):
                self.custom_mode = (PX4_AUTO_MODE << 16) | (PX4_AUTO_LOITER << 24)  # take-off done: AUTO.LOITER
        if not self.in_control:
            return ZERO  # position hold: the operator's sticks are centred
        fresh = last is not None and now - last.time <= self.loss_timeout * 1e9
        if not fresh:
            if self.px4:
                self.failsafes += 1
                self.custom_mode = PX4_POSCTL << 16  # offboard lost: COM_OBL_RC_ACT 0, position hold
                self.log("warn", "vehicle: offboard setpoints lost, position hold")
            return ZERO
        if last.holds:
            return self._hold(last)
        command = frd_to_command((*last.velocity, last.yaw_rate))
        if not self.drift.any():
            return command
        dx, dy, dz = world_to_body(tuple(self.drift), float(self.body.yaw))
        return (command[0] + dx, command[1] + dy, command[2] + dz, command[3])

    def _hold(self, setpoint: Setpoint) -> Command:
        """Fly toward a local NED position and heading: proportional, speed-limited, on the reported position."""
        error = np.array(ned_to_enu(setpoint.position)) - self.position
        speed = np.linalg.norm(error) * HOLD_GAIN
        velocity = error * HOLD_GAIN * (min(1.0, HOLD_SPEED / speed) if speed > 0 else 1.0)
        body = world_to_body(tuple(velocity), float(self.body.yaw))
        return (*body, 2.0 * wrap(yaw_ned_to_enu(setpoint.yaw) - float(self.body.yaw)))

    # Helpers.
    def _on_ground(self) -> bool:
        return float(self.body.position[2]) <= GROUND_HEIGHT

    def _setpoint(self, msg: Any, now: int) -> None:
        setpoint = Setpoint(now, msg.coordinate_frame, msg.type_mask, (msg.vx, msg.vy, msg.vz), msg.yaw_rate,
                            (msg.target_system, msg.target_component), msg.time_boot_ms, (msg.x, msg.y, msg.z),
                            msg.yaw)
        self.setpoints.append(setpoint)
        if setpoint.target != (self.system, self.component):
            self.ignored["target"] += 1
        elif setpoint.holds:
            self._last_setpoint = setpoint
        elif setpoint.frame != self.flavour.frame:
            self.ignored["frame"] += 1
        elif setpoint.type_mask & (VELOCITY_IGNORED | YAW_RATE_IGNORED):
            self.ignored["mask"] += 1
        else:
            self._last_setpoint = setpoint

    def _command(self, msg: Any, now: int) -> None:
        if (msg.target_system, msg.target_component) != (self.system, self.component):
            return
        params = (msg.param1, msg.param2, msg.param3, msg.param4, msg.param5, msg.param6, msg.param7)
        what, apply = self._understand(msg.command, params, now)
        answer = self.policy.get(what, "accept")
        result: int | None = None
        if what == "interval":
            result = MAV_RESULT_ACCEPTED
        elif answer == "ignore":
            result = None
        elif answer == "deny" or apply is None:
            result = MAV_RESULT_DENIED
        elif answer == "temporarily":
            result = MAV_RESULT_TEMPORARILY_REJECTED
        else:
            apply()
            result = MAV_RESULT_ACCEPTED
        self.commands.append((now, msg.command, params, result))
        if result is not None:
            self.conn.mav.command_ack_send(msg.command, result, 0, 0, msg.get_srcSystem(), msg.get_srcComponent())

    def _understand(self, command: int, p: tuple[float, ...], now: int) -> tuple[str, Callable[[], None] | None]:
        """Name a command and what accepting it does (None: the vehicle cannot do it now, as documented)."""
        if command == MAV_CMD_SET_MESSAGE_INTERVAL:
            return "interval", lambda: None
        if command == MAV_CMD_COMPONENT_ARM_DISARM:
            if p[0] == 1.0:
                return "arm", lambda: setattr(self, "armed", True)
            return ("kill" if p[1] == FORCE_DISARM else "disarm"), lambda: setattr(self, "armed", False)
        if command == MAV_CMD_DO_SET_MODE:
            if self.px4:
                mode = (int(p[1]) << 16) | (int(p[2]) << 24 if int(p[1]) == PX4_AUTO_MODE else 0)
                offboard, land = int(p[1]) == PX4_OFFBOARD, mode == (PX4_AUTO_MODE << 16 | PX4_AUTO_LAND << 24)
            else:
                mode = int(p[1])
                offboard, land = mode == COPTER_GUIDED, mode == COPTER_LAND
            what = "control" if offboard else "land" if land else "mode"
            last = self._last_setpoint
            if offboard and self.px4 and (last is None or now - last.time > self.loss_timeout * 1e9):
                return what, None  # PX4: no offboard without a running setpoint stream
            return what, lambda: self.set_mode(mode)
        if command == MAV_CMD_NAV_TAKEOFF and not self.px4:
            if not (self.armed and self.in_control):
                return "takeoff", None  # ArduPilot: guided and armed first

            def takeoff() -> None:
                self._takeoff_to, self._takeoff_after = p[6], self._last_setpoint
            return "takeoff", takeoff
        if command == MAV_CMD_NAV_TAKEOFF:
            if not self.armed:
                return "takeoff", None
            return "takeoff", lambda: self.operator_takeoff(p[6] if math.isfinite(p[6]) else 2.5)
        return f"command {command}", None


def sync(sender: Any, receiver: Any, read: Callable[[], None], timeout: float = 5.0) -> None:
    """Call ``read`` (which reads ``receiver``) until it has every message ``sender`` sent; loopback UDP loses none.

    Lockstep for simulated time: pymavlink counts the packets each end sent and parsed. Waits on the
    socket (``select``), never a fixed time; RuntimeError if ``timeout`` wall seconds pass.
    """
    deadline = time.monotonic() + timeout
    while True:
        read()
        if receiver.mav.total_packets_received >= sender.mav.total_packets_sent:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"MAVLink loopback: {sender.mav.total_packets_sent} sent, "
                               f"{receiver.mav.total_packets_received} received after {timeout} s")
        select.select([receiver.port], [], [], 0.01)


class MavlinkPilot:
    """A simulator policy flown through the bridge: camera -> pilot -> supervisor -> MAVLink -> ``MavlinkVehicle``.

    The vehicle starts armed and airborne in its hold mode, as an operator would hand it over; the
    supervisor (``auto_takeoff`` false) primes the stream, switches to offboard/guided, and enables the
    pilot, which then steps on every frame. Time is the simulator's: one supervisor tick per frame.
    """

    EPOCH_NS = 1_000_000_000

    def __init__(self, pilot: Any, flavour: str = "px4", config: SupervisorConfig | None = None,
                 log: Log | None = None):
        self.pilot = pilot
        self.flavour = flavour
        self.config = config or SupervisorConfig()
        self.log = log or (lambda level, message: None)
        self.clock = ManualClock(self.EPOCH_NS)
        self.backend: MavlinkBackend | None = None
        self.vehicle: MavlinkVehicle | None = None
        self.supervisor: Supervisor | None = None
        self.enabled = False
        self.enabled_at: float | None = None  # s of simulated time of the pilot's first step in the episode
        self.states: list[str] = []  # the supervisor's transitions in the current episode

    def check(self, sim: Simulator) -> None:
        if hasattr(self.pilot, "check"):
            self.pilot.check(sim)

    def reset(self) -> None:
        """Start a new episode: a fresh link, vehicle and supervisor (the simulator was reset already)."""
        self.close()
        self.enabled, self.enabled_at = False, None
        self.states = []
        self.clock.now = self.EPOCH_NS
        self.backend = MavlinkBackend("udpin:127.0.0.1:0", self.flavour, log=self.log)
        port = self.backend.conn.port.getsockname()[1]
        self.vehicle = None  # made at the first frame, around the simulator
        self._address = f"udpout:127.0.0.1:{port}"
        self.supervisor = Supervisor(self.backend, self.config, self.clock, self.log, self._on_pilot,
                                     lambda status: self.states.append(status["state"]))

    def act(self, obs: Observation, sim: Simulator) -> np.ndarray:
        if self.vehicle is None:
            self.vehicle = MavlinkVehicle(SimBody(sim), self._address, self.flavour, armed=True, log=self.log)
        vehicle, backend = self.vehicle, self.backend
        self.clock.now = now = self.EPOCH_NS + round(obs.time * 1e9)
        vehicle.publish(now)
        sync(vehicle.conn, backend.conn, lambda: backend.poll(now))
        if self.enabled:
            if self.enabled_at is None:
                self.enabled_at = obs.time
            self.supervisor.command(tuple(float(v) for v in self.pilot.act(obs, sim)))
        self.supervisor.tick()
        sync(backend.conn, vehicle.conn, lambda: vehicle.receive(now))
        return np.array(vehicle.command(now), dtype=np.float64)

    def close(self) -> None:
        for end in (self.backend, self.vehicle):
            if end is not None:
                end.conn.close()
        self.backend = self.vehicle = None

    def _on_pilot(self, enabled: bool) -> None:
        self.enabled = enabled
        if enabled:
            self.pilot.reset()
