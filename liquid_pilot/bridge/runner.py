"""The keep-alive thread: ticks a supervisor at the stack's rate, whatever the pilot is doing.

Ticks are due on a fixed schedule (absolute deadlines, so the rate does not drift with the tick's own
duration); after a stall longer than a period the schedule restarts instead of bursting to catch up.
Between ticks the thread waits on the backend's link (``Backend.fileno``) and reads what arrives at once
(``Supervisor.pump``), so telemetry samples (the IMU at 100-200 Hz) go out as they come, not in bursts.
An exception in a tick is logged once per burst and the stream goes on. ``stop`` runs the supervisor's
shutdown (hover, then land or stop) and keeps ticking until it is done or the time is up.
"""
from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable

from liquid_pilot.bridge.supervisor import Supervisor
from liquid_pilot.flight.types import Log

PUMP_GAP_S = 0.002  # s: at most one read of the link per 2 ms between ticks


class Runner:
    """The keep-alive thread: ticks the supervisor at the stack's rate and reads the link between ticks."""

    def __init__(self, supervisor: Supervisor, rate: float, log: Log | None = None,
                 timer: Callable[[], float] = time.monotonic):
        if not 1.0 <= rate <= 1000.0:
            raise ValueError(f"bridge: keep-alive rate {rate!r} Hz must be in [1, 1000]")
        self.supervisor = supervisor
        self.period = 1.0 / rate
        self.log = log or supervisor.log
        self.timer = timer
        self.ticks = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bridge_keepalive", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Shut the supervisor down, keep ticking until it is done (at most ``timeout`` s); True when done."""
        self.supervisor.shutdown()
        deadline = self.timer() + timeout
        while self._thread.is_alive() and not self.supervisor.done and self.timer() < deadline:
            self._stop.wait(self.period)
        done = self.supervisor.done
        if not done:
            self.log("warn", f"shutdown not finished within {timeout} s (state {self.supervisor.state}): "
                             "the stack's own failsafe takes over when the stream stops")
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        return done

    def _loop(self) -> None:
        due = self.timer()
        while not self._stop.is_set():
            self._guarded(self.supervisor.tick)
            self.ticks += 1
            due += self.period
            delay = due - self.timer()
            if delay < -self.period:
                due = self.timer()  # far behind (the process stalled): do not burst to catch up
            elif delay > 0 and self._wait(due):
                break

    def _wait(self, due: float) -> bool:
        """Wait until ``due``, reading the link whenever it has data; True when asked to stop."""
        fd = self.supervisor.backend.fileno()
        while (delay := due - self.timer()) > 0:
            if fd is None:
                return self._stop.wait(delay)
            try:
                readable = select.select([fd], [], [], min(delay, self.period))[0]
            except (OSError, ValueError):  # the link was closed under us: wait out the period
                return self._stop.wait(delay)
            if self._stop.is_set():
                return True
            if readable:
                self._guarded(self.supervisor.pump)
                if self._stop.wait(PUMP_GAP_S):  # a link that stays readable (EOF, a flood) cannot spin the core
                    return True
        return self._stop.is_set()

    def _guarded(self, call: Callable[[], None]) -> None:
        try:
            call()
            if self.errors:
                self.log("info", f"keep-alive ticks work again after {self.errors} failed")
                self.errors = 0
        except Exception as exc:  # never let the stream die
            if self.errors == 0:
                self.log("error", f"unexpected {type(exc).__name__} in the keep-alive tick: {exc} "
                                  "(further failures are counted)")
            self.errors += 1
