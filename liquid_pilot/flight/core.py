"""The flight loop: runtime + gate + preprocessing, and the one ordering of every frame.

``fly`` is the whole per-frame ordering for every caller:

1. under the core's lock: refusals that need the node's state (``check``), then the gate admits the frame
   by its stamp (or not: disabled, the same frame again, a bad stamp or IMU);
2. outside the lock: the pixels are decoded (``image`` may be a callable, so a slow decode never holds
   the gate) and the network steps;
3. under the lock again: the gate finishes the step (or rejects the frame), and the command to fly now is
   handed to ``publish``, so a command and the control thread's repeats never pass each other.

``pilot_node`` calls ``fly`` from its step thread and ``tick`` from its control thread; the simulator's
pilot policy and ``replay`` call ``frame``, which is ``fly`` on one thread. ``lock`` guards the gate; a caller
that publishes from another thread (the node's control thread) takes it too.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from liquid_pilot.flight.codec import BadInput
from liquid_pilot.flight.gate import Admission, Gate, GateConfig
from liquid_pilot.flight.types import Command, Log
from liquid_pilot.flight.image import fit
from liquid_pilot.flight.runtime import Runtime

Publish = Callable[[Command, int], None]  # a command and its stamp (a flown frame's, or now for zero)


@dataclass(frozen=True)
class Flown:
    """What ``fly`` did with a frame: the step's admission and pixels (for saliency), or a refusal."""

    admission: Admission | None  # None: refused (the gate hovers)
    rgb: np.ndarray | None  # the decoded frame, any size
    state: np.ndarray | None  # the network's state before this step (None after a reset)


class FlightCore:
    """A pilot in flight: its runtime and gate, stepped frame by frame in the one order (module docstring)."""

    def __init__(self, runtime: Runtime, config: GateConfig | None = None, clock: Callable[[], int] | None = None,
                 log: Log | None = None):
        self.runtime = runtime
        self.gate = Gate(config, runtime.uses_imu, clock, log)
        self.lock = threading.Lock()  # the gate; held briefly, never while decoding or stepping

    def start(self) -> None:
        """Start a flight: enabled, fresh network and timers."""
        with self.lock:
            self.gate.set_enabled(True)
        self.runtime.reset()

    def imu(self, values: np.ndarray) -> None:
        """Take an IMU sample (``codec.imu_to_array``)."""
        with self.lock:
            self.gate.imu(values)

    def step(self, admission: Admission, rgb: np.ndarray) -> np.ndarray:
        """Preprocess and step the network for an admitted frame (no gate state is touched)."""
        if admission.reset:
            self.runtime.reset()
        return self.runtime.step(fit(rgb, self.runtime.image_size), admission.imu, admission.dt)

    def fly(self, stamp: int, image: np.ndarray | BadInput | Callable[[], np.ndarray], publish: Publish,
            received: int | None = None, check: Callable[[], None] | None = None) -> Flown | None:
        """Fly one camera frame in the one order (module docstring); None when there was nothing to fly.

        ``image``: RGB of any size, why it could not be decoded, or a callable that decodes it (raising
        BadInput). ``check`` runs under the lock before the gate admits the frame and raises BadInput to refuse
        it. ``publish`` gets the command to fly now, under the lock. ``received``: the frame's arrival.
        """
        try:
            if isinstance(image, BadInput):
                raise image
            with self.lock:
                if check is not None:
                    check()
                admission = self.gate.admit(stamp, received)
            if admission is None:  # disabled, or the same frame delivered again
                return None
            rgb = image() if callable(image) else image
            state = self.runtime.state
            output = self.step(admission, rgb)
        except BadInput as bad:
            with self.lock:
                self.gate.reject(bad, received)
                publish(*self.gate.tick())
            return Flown(None, None, None)
        with self.lock:
            if self.gate.finish(admission, output) is None:
                return None  # reset or disabled while the network stepped: the output is stale
            publish(*self.gate.tick())
        return Flown(admission, rgb, None if admission.reset else state)

    def frame(self, rgb: np.ndarray | BadInput, stamp: int) -> Command:
        """Take a camera image (RGB of any size, or why it could not be decoded); return the command to fly now."""
        out: list[Command] = []
        if self.fly(stamp, rgb, lambda command, _: out.append(command)) is None:
            return self.tick()
        return out[0]

    def tick(self) -> Command:
        """Return the command for the control-rate stream now."""
        with self.lock:
            return self.gate.tick()[0]
