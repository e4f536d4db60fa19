"""What the flight controller measures, in ROS's frames and the companion's clock: IMU, odometry, battery.

A backend turns its stack's telemetry into these samples (frames and units through ``conversions``) and hands
each to ``Backend.on_sample`` as it arrives; ``liquid_pilot.ros.bridge_node`` publishes them as ``imu/data``
(REP-145), ``odom`` (REP-105) and ``battery``. Every sample is stamped in the companion's monotonic clock
(nanoseconds): the autopilot's own time of measurement mapped across by ``TimeSync``, or the time of receipt
until the clocks are matched.

``TimeSync`` matches the autopilot's boot clock to ours with MAVLink's ``TIMESYNC`` exchange, as MAVROS does:
we send ``tc1 = 0, ts1 = our time``; the autopilot answers ``tc1 = its time, ts1 = ours``. Each answer gives a
round trip and an offset ``tc1 - (sent + received) / 2``, exact when the link is symmetric and off by at most
half the round trip otherwise. An answer is taken when its round trip is within twice the quickest of the last
``WINDOW`` answers (plus 2 ms): a burst of link delay does not move the estimate, while the latest good answer
follows an autopilot clock that runs at another rate (a SITL slower than real time drifts by tens of
milliseconds a second). Answers with a round trip over ``MAX_RTT_S`` are ignored, and an autopilot clock that
steps back (a reboot) starts afresh. ArduPilot and PX4 both answer ``TIMESYNC`` in nanoseconds of their boot
clock.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from liquid_pilot.bridge.conversions import Quaternion, Vector

WINDOW = 16  # answers the offset is chosen from
MAX_RTT_S = 0.5  # s: slower answers say little about the offset
REQUEST_S = 1.0  # s between our TIMESYNC requests
GOOD_RTT_MARGIN_NS = 2_000_000  # an answer within twice the quickest round trip plus this is taken


@dataclass(frozen=True)
class ImuSample:
    """One IMU sample: body FLU (REP-103), SI units, the accelerometer including gravity (+9.8 m/s^2 on z at rest)."""

    stamp: int  # ns, the companion's monotonic clock
    angular_velocity: Vector  # rad/s
    linear_acceleration: Vector  # m/s^2
    orientation: Quaternion | None  # body FLU -> world ENU (x, y, z, w); None: no attitude yet


@dataclass(frozen=True)
class OdometrySample:
    """The vehicle's state (REP-105): pose in the autopilot's local frame (ENU), twist in the body frame (FLU)."""

    stamp: int  # ns, the companion's monotonic clock
    position: Vector  # m, ENU, from the autopilot's local origin (its estimator's, not the take-off point)
    orientation: Quaternion  # body FLU -> world ENU (x, y, z, w)
    linear_velocity: Vector  # m/s, body FLU
    angular_velocity: Vector  # rad/s, body FLU


@dataclass(frozen=True)
class BatterySample:
    """The flight battery as the autopilot reports it; None where it does not measure a quantity."""

    stamp: int  # ns, the companion's monotonic clock
    voltage: float | None  # V
    current: float | None  # A, positive while discharging (MAVLink's sign)
    remaining: float | None  # fraction of the capacity, 0..1


Sample = ImuSample | OdometrySample | BatterySample


class TimeSync:
    """Map the autopilot's clock (ns since its boot) to the companion's (monotonic ns) from TIMESYNC answers."""

    def __init__(self) -> None:
        self.offset: int | None = None  # ns: autopilot time minus companion time
        self.rtt: int | None = None  # ns: the round trip the offset came from
        self.answers = 0
        self._samples: deque[tuple[int, int]] = deque(maxlen=WINDOW)  # (rtt, offset)
        self._last_remote: int | None = None

    def answer(self, tc1: int, ts1: int, now: int) -> bool:
        """Take an answer to our request (``ts1``: our send time, ``tc1``: the autopilot's); True when used."""
        rtt = now - ts1
        if tc1 <= 0 or not 0 <= rtt <= MAX_RTT_S * 1e9:
            return False
        if self._last_remote is not None and tc1 < self._last_remote - 1_000_000_000:
            self.reset()  # the autopilot's clock went back by more than a second: it rebooted
        self._last_remote = tc1
        self._samples.append((rtt, tc1 - (ts1 + now) // 2))
        self.answers += 1
        quickest = min(r for r, _ in self._samples)
        if rtt > 2 * quickest + GOOD_RTT_MARGIN_NS:
            return False
        self.rtt, self.offset = rtt, self._samples[-1][1]
        return True

    def reset(self) -> None:
        self._samples.clear()
        self.offset = self.rtt = self._last_remote = None

    def to_local(self, remote_ns: int, received: int) -> int:
        """Return the companion time of an autopilot time; the time of receipt until the clocks are matched.

        A mapped time later than the receipt (an estimate off by more than the link's delay) is the receipt.
        """
        if self.offset is None:
            return received
        return min(remote_ns - self.offset, received)
