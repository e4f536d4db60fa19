"""One flight loop on one thread: runtime + gate + preprocessing, one call per sensor message.

The simulator's pilot policy and ``replay`` fly through this; ``pilot_node`` uses the same
pieces across its threads (``admit`` under its lock, ``step`` outside it, ``finish`` under it).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from liquid_pilot.flight.codec import BadInput
from liquid_pilot.flight.gate import Admission, Command, Gate, GateConfig, Log
from liquid_pilot.flight.image import fit
from liquid_pilot.flight.runtime import Runtime


class FlightCore:
    def __init__(self, runtime: Runtime, config: GateConfig | None = None, clock: Callable[[], int] | None = None,
                 log: Log | None = None):
        self.runtime = runtime
        self.gate = Gate(config, runtime.uses_imu, clock, log)

    def start(self) -> None:
        """Start a flight: enabled, fresh network and timers."""
        self.gate.set_enabled(True)
        self.runtime.reset()

    def imu(self, values: np.ndarray) -> None:
        self.gate.imu(values)

    def step(self, admission: Admission, rgb: np.ndarray) -> np.ndarray:
        """Preprocess and step the network for an admitted frame (no gate state is touched)."""
        if admission.reset:
            self.runtime.reset()
        return self.runtime.step(fit(rgb, self.runtime.image_size), admission.imu, admission.dt)

    def frame(self, rgb: np.ndarray | BadInput, stamp: int) -> Command:
        """Take a camera image (RGB of any size, or why it could not be decoded); return the command to fly now."""
        if isinstance(rgb, BadInput):
            return self.gate.reject(rgb)
        try:
            admission = self.gate.admit(stamp)
        except BadInput as bad:
            return self.gate.reject(bad)
        if admission is None:  # disabled, or the same frame again
            return self.gate.tick()[0]
        command = self.gate.finish(admission, self.step(admission, rgb))
        return self.gate.tick()[0] if command is None else command

    def tick(self) -> Command:
        return self.gate.tick()[0]
