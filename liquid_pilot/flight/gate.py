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
- **hysteresis**: after any fault the gate hovers until ``recover_frames`` consecutive good frames
  have been stepped; then flying resumes and the faults are cleared;
- **logging**: a burst of one fault kind is logged once when it starts, and once with its count
  when it clears;
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

Command = tuple[float, float, float, float]
ZERO: Command = (0.0, 0.0, 0.0, 0.0)
GYRO_RANGE = 34.91  # rad/s: a typical flight IMU's gyro range, +-2000 deg/s (34.907), rounded up
ACCEL_RANGE = 156.91  # m/s^2: and its accelerometer's, +-16 g (156.906), rounded up
Log = Callable[[str, str], None]  # (level "warn" or "info", message)
STALE = ("camera_stale", "imu_stale")  # faults of missing input: each burst also resets the network


@dataclass
class GateConfig:
    """The gate's settings; checked on construction (``check``), naming the bad value."""

    camera_timeout: float = 0.2  # s without a camera message before hovering (2-3 frame periods); also the
    #                              largest accepted image age and the longest gap flown through
    imu_timeout: float = 0.2  # s without a usable IMU sample before hovering (pilots that use the IMU)
    max_speed_xy: float = 1.0  # m/s: horizontal speed limit (the command's horizontal vector is scaled down)
    max_speed_z: float = 0.5  # m/s: vertical speed limit
    max_yaw_rate: float = 1.0  # rad/s: yaw rate limit
    recover_frames: int = 3  # consecutive good frames after a fault before flying resumes (1: the first)
    gyro_range: float = GYRO_RANGE  # rad/s: a gyro reading beyond this is a fault
    accel_range: float = ACCEL_RANGE  # m/s^2: an accelerometer reading beyond this is a fault

    def __post_init__(self) -> None:
        self.check()

    def check(self, source: str = "gate settings") -> None:
        limits = {"camera_timeout": (0.01, 10.0), "imu_timeout": (0.01, 10.0), "max_speed_xy": (0.0, 10.0),
                  "max_speed_z": (0.0, 5.0), "max_yaw_rate": (0.0, 6.3), "recover_frames": (1, 100),
                  "gyro_range": (0.1, 1000.0), "accel_range": (1.0, 10000.0)}
        for f in fields(self):
            value = getattr(self, f.name)
            low, high = limits[f.name]
            kind = int if f.name == "recover_frames" else (int, float)
            if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
                raise ValueError(f"{source}: {f.name} = {value!r} must be a number in [{low}, {high}]")

    def update(self, **values: Any) -> None:
        """Change settings while flying (all checked before any is applied)."""
        trial = GateConfig(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **values})
        for name in values:
            setattr(self, name, getattr(trial, name))


@dataclass(frozen=True)
class Admission:
    """A frame the gate lets through to the network: step with ``dt`` (after a reset if ``reset``)."""

    stamp: int  # ns: the frame's time (its stamp, or its arrival when unstamped)
    dt: float  # s since the previous flown frame; 0 at the start of a flight
    imu: np.ndarray | None  # the IMU sample to step with (None for pilots without IMU)
    reset: bool  # reset the network state before stepping
    epoch: int  # the gate's epoch: a result from an older epoch is discarded


class ManualClock:
    """A clock that moves only when told: for the simulator's time and for tests."""

    def __init__(self, now: int = 0):
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> int:
        self.now += round(seconds * 1e9)
        return self.now


@dataclass
class _Burst:
    message: str
    since: int
    count: int


class Faults:
    """Active faults by kind: each burst is logged once when it starts and once, with a count, when it ends."""

    def __init__(self, log: Log):
        self.log = log
        self.active: dict[str, _Burst] = {}
        self.total: dict[str, int] = {}

    def __contains__(self, kind: str) -> bool:
        return kind in self.active

    def __iter__(self):
        return iter(self.active)

    def raise_(self, kind: str, message: str, now: int, count: bool = True) -> bool:
        """Record one occurrence; True when it starts a burst (and was logged)."""
        self.total[kind] = self.total.get(kind, 0) + 1
        burst = self.active.get(kind)
        if burst is None:
            self.active[kind] = _Burst(message, now, 1)
            self.log("warn", f"{message} [{kind}]")
            return True
        if count:
            burst.count += 1
        return False

    def clear(self, now: int, why: str) -> None:
        for kind, burst in self.active.items():
            times = f"{burst.count} times over {(now - burst.since) / 1e9:.2f} s" if burst.count > 1 else "once"
            self.log("info", f"recovered from {kind} ({times}) {why}")
        self.active.clear()


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
        self._notes: set[str] = set()
        self._epoch = 0
        self._imu: np.ndarray | None = None
        self._imu_fault = "imu_stale"  # why there is no usable IMU sample, when there is none
        self._frame_rx = self._imu_rx = self.clock()  # receive times of the last camera message and IMU sample
        self._restart(self.clock())

    # Controls.
    def set_enabled(self, enabled: bool) -> None:
        now = self.clock()
        if self.faults.active:
            self.faults.clear(now, "(enabled afresh)" if enabled else "(disabled)")
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
        self._needed = 0  # good frames still needed before flying

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
        if self.uses_imu:
            self._fault(bad.kind, str(bad), self.clock())

    def admit(self, stamp: int, received: int | None = None) -> Admission | None:
        """Admit a camera frame (its pixels not decoded yet): return the step to take, or None (disabled, duplicate).

        Raises BadInput for a stamp or an IMU the pilot must not fly on; the caller then calls ``reject``.
        ``received``: when the frame arrived (clock time; default now), for a caller that queues frames.
        """
        now, c = self.clock(), self.config
        self._frame_rx = max(self._frame_rx, now if received is None else received)
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
        if self.uses_imu and self._imu is None and self._imu_fault == "imu_stale" and \
                0 <= now - self._grace <= round(c.imu_timeout * 1e9):
            return None  # just enabled, the first IMU sample not in yet: skip the frame, no fault (yet)
        imu = self._usable_imu(now)
        reset = self._needs_reset or self._prev is None or stamp - self._prev > timeout
        dt = 0.0 if reset else (stamp - self._prev) / 1e9
        return Admission(stamp, dt, imu, reset, self._epoch)

    def reject(self, bad: BadInput, received: int | None = None) -> Command:
        """Refuse a frame that cannot be flown (``admit`` or decoding failed): hover; return the command to publish."""
        now = self.clock()
        self._frame_rx = max(self._frame_rx, now if received is None else received)
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
        if self._needed > 0:
            self._needed -= 1
            if self._needed > 0:
                self._command, self._command_stamp = ZERO, now
                return ZERO
            self.faults.clear(now, f"after {self.config.recover_frames} good frames in a row: flying")
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
        if self.uses_imu and not 0 <= now - max(self._imu_rx, self._grace) <= round(c.imu_timeout * 1e9):
            self._stale("imu_stale", f"no IMU sample for more than imu_timeout={c.imu_timeout} s: hovering, "
                                     "network reset", now)
        if self._command is ZERO:  # hovering: zero carries the current time, so its age is never mistaken
            return ZERO, now
        return self._command, self._command_stamp

    @property
    def flying(self) -> bool:
        """Whether the stream carries the network's commands (enabled, and no fault awaiting recovery)."""
        return self.enabled and self._needed == 0

    # Helpers.
    def _usable_imu(self, now: int) -> np.ndarray | None:
        if not self.uses_imu:
            return None
        if self._imu is None:
            raise BadInput(self._imu_fault, "no usable IMU sample: hovering" if self._imu_fault != "imu_stale"
                           else "no IMU sample received yet: hovering")
        if not 0 <= now - self._imu_rx <= round(self.config.imu_timeout * 1e9):
            raise BadInput("imu_stale", f"no IMU sample for more than imu_timeout={self.config.imu_timeout} s: "
                                        "hovering, network reset")
        return self._imu

    def _fault(self, kind: str, message: str, now: int, count: bool = True) -> None:
        if kind in STALE and kind not in self.faults:
            self.reset()  # whether a frame or the control tick notices missing input first
        self.faults.raise_(kind, message, now, count)
        self._needed = self.config.recover_frames
        self._command, self._command_stamp = ZERO, now

    def _stale(self, kind: str, message: str, now: int) -> None:
        self._fault(kind, message, now, count=False)

    def _clamp(self, output: np.ndarray) -> Command:
        c = self.config
        vx, vy, vz, yaw_rate = (float(v) for v in output)  # plain floats: numpy scalars are slower here
        speed, limit = math.hypot(vx, vy), c.max_speed_xy
        if speed > limit:
            vx, vy = vx * limit / speed, vy * limit / speed
        return (vx, vy, min(max(vz, -c.max_speed_z), c.max_speed_z),
                min(max(yaw_rate, -c.max_yaw_rate), c.max_yaw_rate))

    def _note(self, kind: str, message: str) -> None:
        if kind not in self._notes:
            self._notes.add(kind)
            self.log("info", message)
