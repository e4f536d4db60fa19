"""A trained pilot as a simulator policy, flown through the flight core.

The same runtime (onnxruntime by default), gate (timeouts, plausibility, hysteresis, resets,
clamps) and preprocessing as ``pilot_node``: evaluation measures the code that flies. The
simulator's time is the gate's clock; every frame is stamped with its time.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from liquid_pilot.flight.core import FlightCore
from liquid_pilot.flight.gate import GateConfig, ManualClock
from liquid_pilot.flight.image import fit
from liquid_pilot.flight.runtime import DEFAULT_RUNTIME, runtime_for
from liquid_pilot.nn.checkpoint import load_pilot
from liquid_pilot.nn.policy import Pilot
from liquid_pilot.sim.world import Observation, Simulator

EPOCH_NS = 1_000_000_000  # the stamp of every episode's first frame (a zero stamp means "unstamped")


class PilotPolicy:
    def __init__(self, pilot: Pilot, runtime: str = DEFAULT_RUNTIME):
        # One sample per step: more threads only add overhead, and parallel workers would fight over the cores.
        torch.set_num_threads(1)
        self.pilot = pilot.eval()
        self.clock = ManualClock(EPOCH_NS)
        self.core = FlightCore(runtime_for(self.pilot, runtime), GateConfig(), self.clock)

    @classmethod
    def from_file(cls, path: str | os.PathLike, runtime: str = DEFAULT_RUNTIME) -> PilotPolicy:
        return cls(load_pilot(path), runtime)

    def check(self, sim: Simulator) -> None:
        """Take the scenario's command limits as the gate's clamps (frames of any size are fitted)."""
        s = sim.scenario.sim
        self.core.gate.config.update(max_speed_xy=s.max_speed_xy, max_speed_z=s.max_speed_z,
                                     max_yaw_rate=s.max_yaw_rate)

    def reset(self) -> None:
        self.clock.now = EPOCH_NS
        self.core.start()

    def act(self, obs: Observation, sim: Simulator) -> np.ndarray:
        self.clock.now = EPOCH_NS + round(obs.time * 1e9)
        self.core.imu(obs.imu)
        return np.array(self.core.frame(obs.image, self.clock.now), dtype=np.float64)

    @property
    def state(self) -> torch.Tensor | None:
        state = self.core.runtime.state
        return None if state is None else torch.from_numpy(np.array(state, np.float32))

    def saliency(self, obs: Observation) -> np.ndarray:
        """Where the pilot looks for the step it is about to take on ``obs``, (H, W) in [0, 1]."""
        image = fit(obs.image, self.core.runtime.image_size)
        inputs = {"image": torch.from_numpy(image).unsqueeze(0), "imu": torch.from_numpy(obs.imu).unsqueeze(0)}
        return self.pilot.saliency(inputs, self.state, torch.tensor([[obs.dt]], dtype=torch.float32)).numpy()
