"""The command gate: between the network and the command stream, everything that keeps flight safe.

Plain Python with an injectable clock (nanoseconds), so every rule is tested against a fake
clock, not sleeps. The gate decides, it never waits:

- **timeouts**: no camera message for ``camera_timeout``, or no IMU sample for ``imu_timeout``
  (each its own fault), hovers and resets the network;
- **frame timing**: a stamp too far from the clock or going backwards is a fault; a repeated stamp
  (a frame delivered twice) is dropped silently; a gap longer than ``camera_timeout`` between
  flown frames starts a new flight (network reset, dt = 0, as at the start of training sequences);
- **plausibility**: IMU samples beyond the sensor's range (``gyro_range``, ``accel_range``) are a
  fault, and so is a network output that is not finite (which also resets the network);
- **the IMU watchdog**: a pilot that does not read the IMU (camera only) still has it watched
  (``imu_watchdog``): a silent or implausible IMU hovers, as for a pilot that reads it;
- **frames behind**: camera frames arrive but none reaches the network for ``camera_timeout``
  (decoding or stepping too slow) is a fault of its own, so the command never outlives its frame;
- **hysteresis and the fault window**: after any fault the gate hovers until ``recover_frames``
  consecutive good frames have been stepped *and* ``fault_window`` has passed since the last fault;
  then flying resumes and the faults are cleared. Sparse bad frames (one in four, one in ten) thus
  hold the drone at zero instead of switching it between zero and full speed;
- **logging**: a burst of faults is logged once per kind when it starts, and once with its count
  when it clears (recovered, or ended by disabling the pilot: said as such);
- **clamps**: horizontal speed (the vector is scaled), vertical speed and yaw rate.

Commands are ``(vx, vy, vz, yaw_rate)``: body FLU, m/s and rad/s. ``ZERO`` is hover.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from liquid_pilot.flight.codec import BadInput
from liquid_pilot.flight.types import ZERO, Command, Faults, Log, ManualClock  # noqa: F401 (ManualClock: re-exported)
from liquid_pilot.settings import Range, check_fields, setting

GYRO_RANGE = 34.91  # rad/s: a typical flight IMU's gyro range, +-2000 deg/s (34.907), rounded up
ACCEL_RANGE = 156.91  # m/s^2: and its accelerometer's, +-16 g (156.906), rounded up
STALE = ("camera_stale", "imu_stale", "behind")  # faults of missing input: each burst also resets the network


@dataclass
class GateConfig:
    """The gate's settings, each documented and bounded once (``pilot_node``'s parameters are made of them).

    Checked on construction (``settings.check_fields``), errors naming the setting and its bad value.
    """

    camera_timeout: float = setting(0.2, "s without a camera frame before hovering and resetting the network (2-3 "
                                    "frame periods); also the largest accepted image age and the longest gap flown "
                                    "through", Range(0.01, 1.0))
    imu_timeout: float = setting(0.2, "s without a usable IMU sample before hovering and resetting the network",
                                 Range(0.01, 1.0))
    max_speed_xy: float = setting(1.0, "m/s: horizontal speed limit (the command's horizontal vector is scaled down)",
                                  Range(0.0, 10.0))
    max_speed_z: float = setting(0.5, "m/s: vertical speed limit", Range(0.0, 5.0))
    max_yaw_rate: float = setting(1.0, "rad/s: yaw rate limit", Range(0.0, 6.3))
    recover_frames: int = setting(3, "after a fault, consecutive good frames before flying resumes (1: the first)",
                                  Range(1, 100))
    fault_window: float = setting(1.0, "s without any fault before flying resumes after one (with recover_frames), "
                                  "so sparse bad frames hold the drone at zero instead of switching it between zero "
                                  "and full speed; 0: recover_frames alone", Range(0.0, 60.0))
    gyro_range: float = setting(GYRO_RANGE, "rad/s: a gyro reading beyond this is implausible (a fault: hover); the "
                                "default is a typical flight IMU's +-2000 deg/s", Range(0.1, 1000.0))
    accel_range: float = setting(ACCEL_RANGE, "m/s^2: an accelerometer reading beyond this is implausible (a fault: "
                                 "hover); the default is +-16 g", Range(1.0, 10000.0))
    imu_watchdog: bool = setting(True, "a pilot that does not read the IMU (camera only) still hovers when imu/data "
                                 "is silent for imu_timeout or implausible; false: such a pilot ignores the IMU (a "
                                 "drone without one)")

    def __post_init__(self) -> None:
        check_fields(self)

    def update(self, **values: Any) -> None:
        """Change settings while flying (all checked before any is applied)."""
        trial = GateConfig(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **values})
        for name in values:
            setattr(self, name, getattr(trial, name))


def clamp(output: np.ndarray, c: GateConfig) -> Command:
    """Apply the clamps to a network output: the horizontal vector scaled to max_speed_xy, vz and yaw rate cut."""
    vx, vy, vz, yaw_rate = (float(v) for v in output)  # plain floats: numpy scalars are slower here
    speed, limit = math.hypot(vx, vy), c.max_speed_xy
    if speed > limit:
        vx, vy = vx * limit / speed, vy * limit / speed
    return (vx, vy, min(max(vz, -c.max_speed_z), c.max_speed_z),
            min(max(yaw_rate, -c.max_yaw_rate), c.max_yaw_rate))


@dataclass(frozen=True)
class Admission:
    """A frame the gate lets through to the network: step with ``dt`` (after a reset if ``reset``)."""

    stamp: int  # ns: the frame's time (its stamp, or its arrival when unstamped)
    dt: float  # s since the previous flown frame; 0 at the start of a flight
    imu: np.ndarray | None  # the IMU sample to step with (None for pilots without IMU)
    reset: bool  # reset the network state before stepping
    epoch: int  # the gate's epoch: a result from an older epoch is discarded


class Gate:
    """Decides what the command stream carries, from frames, IMU samples and the clock.

    Not thread-safe: callers on several threads hold one lock around every call. The network
    itself is stepped outside the gate (``admit`` -> step -> ``finish``), so a slow step never
    blocks ``tick``.
    """

    def __init__(self, config: GateConfig | None = None, uses_imu: bool = True, clock: Callable[[], int] | None = None,
                 log: Log | None = None):
        self.config = config or GateConfig()
        self.uses_imu = uses_imu
        self.clock = clock or ManualClock()
        self.faults = Faults(log if log is not None else (lambda level, message: None))
        self.log = self.faults.log
        self.enabled = False
        self.duplicates = 0  # frames dropped for repeating the previous stamp
        self.frames_received = 0  # camera messages that arrived (flown, refused or dropped)
        self.last_fault: int | None = None  # clock time of the latest fault
        self._notes: set[str] = set()
        self._epoch = 0
        self._imu: np.ndarray | None = None
        self._imu_fault = "imu_stale"  # why there is no usable IMU sample, when there is none
        self._frame_rx = self._imu_rx = self.clock()  # receive times of the last camera message and IMU sample
        self._waiting: int | None = None  # arrival of the oldest camera message the network has not taken yet
        self._restart(self.clock())

    # Controls.
    def set_enabled(self, enabled: bool) -> None:
        now = self.clock()
        if self.faults.active:
            never = "; no camera frame has arrived since start-up" if not self.frames_received else ""
            self.faults.clear(now, "the pilot was enabled afresh" if enabled else "the pilot was disabled",
                              recovered=False, notes={"camera_stale": never})
        self.enabled = enabled
        self._restart(now)

    def reset(self) -> None:
        """Restart the network at the next frame (dt = 0)."""
        self._needs_reset, self._prev = True, None
        self._epoch += 1

    def _restart(self, now: int) -> None:
        self.reset()
        # A grace period of one timeout before missing input counts as stale. The receive times stay
        # true: an IMU sample older than imu_timeout is never flown on, enabled afresh or not.
        self._grace = now
        self._command, self._command_stamp = ZERO, now
        self._recovering = False  # hovering after a fault until recover_frames good frames and fault_window
        self._clean = 0  # good frames stepped in a row since the last fault
        self.last_fault = None

    # Inputs.
    def imu(self, values: np.ndarray) -> None:
        """Store a finite IMU sample (``codec.imu_to_array``), or raise a fault if it is beyond the sensor's range."""
        now, c = self.clock(), self.config
        # Compared in float32, the samples' own precision: a reading exactly at full scale is plausible.
        magnitude = np.abs(np.asarray(values, np.float32))
        if magnitude[:3].max() > np.float32(c.gyro_range) or magnitude[3:].max() > np.float32(c.accel_range):
            self.imu_fault(BadInput("imu_range", f"implausible IMU sample {np.round(values, 3).tolist()}: beyond the "
                                                 f"sensor's range (gyro_range {c.gyro_range:.1f} rad/s, accel_range "
                                                 f"{c.accel_range:.1f} m/s^2): hovering"))
            return
        self._imu, self._imu_rx = values, now

    def imu_fault(self, bad: BadInput) -> None:
        """Take an unusable IMU sample: never fly on the last good one once the sensor reports garbage."""
        self._imu, self._imu_fault = None, bad.kind
        if self.watches_imu:
            self._fault(bad.kind, str(bad), self.clock())

    def frame_arrived(self, received: int | None = None) -> None:
        """Note a camera message's arrival (clock time; default now), before it waits for the network.

        The camera counts as alive from its messages' arrival; a frame that waits too long for the
        network is the ``behind`` fault, not a silent camera.
        """
        now = self.clock() if received is None else received
        self._frame_rx = max(self._frame_rx, now)
        self.frames_received += 1
        if self._waiting is None:
            self._waiting = now

    def admit(self, stamp: int, received: int | None = None) -> Admission | None:
        """Admit a camera frame (its pixels not decoded yet): return the step to take, or None (disabled, duplicate).

        Raises BadInput for a stamp or an IMU the pilot must not fly on; the caller then calls ``reject``.
        ``received``: when the frame arrived (clock time; default now), for a caller that queues frames.
        """
        now, c = self.clock(), self.config
        self._took_frame(now, received)
        if not self.enabled:
            return None
        timeout = round(c.camera_timeout * 1e9)
        if stamp == 0:
            self._note("unstamped", "camera frames carry no stamp: timing them by their arrival")
            stamp = now
        elif abs(now - stamp) > timeout:
            raise BadInput("stamp", f"image stamp {stamp / 1e9:.3f} s is {(now - stamp) / 1e9:+.3f} s away from the "
                                    f"pilot's clock (more than camera_timeout): stale or a clock mismatch")
        if self._prev is not None:
            if stamp == self._prev:
                self.duplicates += 1
                return None
            if stamp < self._prev:
                raise BadInput("stamp", f"image stamp {stamp / 1e9:.3f} s is before the previous frame's "
                                        f"{self._prev / 1e9:.3f} s")
        if self.watches_imu and self._imu is None and self._imu_fault == "imu_stale" and \
                0 <= now - self._grace <= round(c.imu_timeout * 1e9):
            return None  # just enabled, the first IMU sample not in yet: skip the frame, no fault (yet)
        imu = self._usable_imu(now)
        reset = self._needs_reset or self._prev is None or stamp - self._prev > timeout
        dt = 0.0 if reset else (stamp - self._prev) / 1e9
        return Admission(stamp, dt, imu, reset, self._epoch)

    def reject(self, bad: BadInput, received: int | None = None) -> Command:
        """Refuse a frame that cannot be flown (``admit`` or decoding failed): hover; return the command to publish."""
        now = self.clock()
        self._took_frame(now, received)
        if self.enabled:
            self._fault(bad.kind, str(bad), now)
        return ZERO

    def finish(self, admission: Admission, output: np.ndarray) -> Command | None:
        """Take the network's output for an admitted frame; return the command to publish now.

        None if the gate was reset or disabled while the network stepped (the output is stale; the
        next frame restarts).
        """
        if admission.epoch != self._epoch or not self.enabled:
            return None
        now = self.clock()
        self._prev = admission.stamp
        if admission.reset:
            self._needs_reset = False
        if not np.all(np.isfinite(output)):
            self._fault("output", f"the network produced {np.asarray(output).tolist()}: hovering, network reset", now)
            self.reset()
            return ZERO
        command = self._clamp(output)
        if self._recovering:
            self._clean += 1
            c = self.config
            if self._clean < c.recover_frames or now - self.last_fault < round(c.fault_window * 1e9):
                self._command, self._command_stamp = ZERO, now
                return ZERO
            self._recovering = False
            window = f" and {c.fault_window:g} s without a fault" if c.fault_window else ""
            self.faults.clear(now, f"after {self._clean} good frames in a row{window}: flying")
        self._command, self._command_stamp = command, admission.stamp
        return command

    def tick(self) -> tuple[Command, int]:
        """Return the command for the control-rate stream now, with its stamp (a flown frame's, or now for zero)."""
        now, c = self.clock(), self.config
        if not self.enabled:
            return ZERO, now
        if not 0 <= now - max(self._frame_rx, self._grace) <= round(c.camera_timeout * 1e9):
            self._stale("camera_stale", f"no camera frame for more than camera_timeout={c.camera_timeout} s: "
                                        "hovering, network reset", now)
        elif self._waiting is not None and now - max(self._waiting, self._grace) > round(c.camera_timeout * 1e9):
            self._stale("behind", f"camera frames arrive but none reached the network for more than camera_timeout="
                                  f"{c.camera_timeout} s (decoding or the network step is too slow for them): "
                                  "hovering, network reset", now)
        if self.watches_imu and not 0 <= now - max(self._imu_rx, self._grace) <= round(c.imu_timeout * 1e9):
            self._stale("imu_stale", f"no IMU sample for more than imu_timeout={c.imu_timeout} s: hovering, "
                                     "network reset", now)
        if self._command is ZERO:  # hovering: zero carries the current time, so its age is never mistaken
            return ZERO, now
        return self._command, self._command_stamp

    @property
    def watches_imu(self) -> bool:
        """Whether IMU faults hover: always for a pilot that reads the IMU, else with ``imu_watchdog``."""
        return self.uses_imu or self.config.imu_watchdog

    @property
    def flying(self) -> bool:
        """Whether the stream carries the network's commands (enabled, and no fault awaiting recovery)."""
        return self.enabled and not self._recovering

    def status(self) -> dict[str, Any]:
        """Return the gate as diagnostics show it: state, active faults, totals, ages of the inputs (s)."""
        now = self.clock()
        state = "disabled" if not self.enabled else "hovering" if self._recovering else "flying"
        return {
            "state": state, "faults": sorted(self.faults.active), "fault_totals": dict(self.faults.total),
            "clean_frames": self._clean if self._recovering else None,
            "last_fault_age": None if self.last_fault is None else (now - self.last_fault) / 1e9,
            "frames_received": self.frames_received, "duplicates": self.duplicates,
            "camera_age": (now - self._frame_rx) / 1e9 if self.frames_received else None,
            "imu_age": (now - self._imu_rx) / 1e9 if self._imu is not None else None,
        }

    # Helpers.
    def _took_frame(self, now: int, received: int | None) -> None:
        if received is None:  # a caller that does not report arrivals (FlightCore): the frame arrives now
            self.frame_arrived(now)
        self._waiting = None

    def _usable_imu(self, now: int) -> np.ndarray | None:
        """Return the sample to step with (None for a pilot without IMU); raise BadInput for an unusable watched IMU."""
        if not self.watches_imu:
            return None
        if self._imu is None:
            raise BadInput(self._imu_fault, "no usable IMU sample: hovering" if self._imu_fault != "imu_stale"
                           else "no IMU sample received yet: hovering")
        if not 0 <= now - self._imu_rx <= round(self.config.imu_timeout * 1e9):
            raise BadInput("imu_stale", f"no IMU sample for more than imu_timeout={self.config.imu_timeout} s: "
                                        "hovering, network reset")
        return self._imu if self.uses_imu else None

    def _fault(self, kind: str, message: str, now: int, count: bool = True) -> None:
        if kind in STALE and kind not in self.faults:
            self.reset()  # whether a frame or the control tick notices missing input first
        self.faults.raise_(kind, message, now, count)
        self._recovering, self._clean, self.last_fault = True, 0, now
        self._command, self._command_stamp = ZERO, now

    def _stale(self, kind: str, message: str, now: int) -> None:
        self._fault(kind, message, now, count=False)

    def _clamp(self, output: np.ndarray) -> Command:
        return clamp(output, self.config)

    def _note(self, kind: str, message: str) -> None:
        if kind not in self._notes:
            self._notes.add(kind)
            self.log("info", message)
