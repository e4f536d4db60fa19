"""The flight's shared types: a command and hover, the log callback, a manual clock, once-per-kind logging.

The flight core, the bridge, the simulator harnesses and the nodes all speak these; they live here, below
everything, so that none of them imports another's module for a type.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Command = tuple[float, float, float, float]  # (vx, vy, vz, yaw_rate): body FLU, m/s and rad/s
ZERO: Command = (0.0, 0.0, 0.0, 0.0)  # hover
Log = Callable[[str, str], None]  # (level "warn" or "info", message)


class ManualClock:
    """A clock (ns) that moves only when told: for the simulator's time and for tests."""

    def __init__(self, now: int = 0):
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> int:
        """Move the clock on by ``seconds``; return the new time."""
        self.now += round(seconds * 1e9)
        return self.now


@dataclass
class _Burst:
    message: str
    since: int
    count: int


class Faults:
    """Once-per-kind logging: each burst of a kind is logged once when it starts and once, with a count, at its end.

    The gate's faults, the bridge's refused commands and its link errors all log this way.
    """

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

    def clear(self, now: int, why: str, recovered: bool = True, notes: dict[str, str] | None = None) -> None:
        """End every burst: logged as recovered, or (``recovered`` False) as ended without recovering, ``why``.

        ``notes``: a few words to add to a kind's line (e.g. that no camera frame ever arrived).
        """
        for kind, burst in self.active.items():
            times = f"{burst.count} times over {(now - burst.since) / 1e9:.2f} s" if burst.count > 1 else "once"
            note = (notes or {}).get(kind, "")
            if recovered:
                self.log("info", f"recovered from {kind} ({times}) {why}{note}")
            else:
                self.log("info", f"{kind} ({times}) ended without recovering: {why}{note}")
        self.active.clear()
