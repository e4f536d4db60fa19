"""A trained pilot (liquid_pilot.nn) as a simulator policy: camera, IMU and real dt in, command out."""
from __future__ import annotations

import os

import numpy as np
import torch

from liquid_pilot.nn.checkpoint import load_pilot
from liquid_pilot.nn.policy import Pilot
from liquid_pilot.sim.world import Observation, Simulator


class PilotPolicy:
    def __init__(self, pilot: Pilot):
        # One sample per step: more threads only add overhead, and parallel workers would fight over the cores.
        torch.set_num_threads(1)
        self.pilot = pilot.eval()
        self.state: torch.Tensor | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> PilotPolicy:
        return cls(load_pilot(path))

    def check(self, sim: Simulator) -> None:
        """Refuse a scenario whose camera does not give the images this pilot was built for."""
        cfg, sim_cfg = self.pilot.config, sim.scenario.sim
        if (cfg.image_height, cfg.image_width) != (sim_cfg.image_height, sim_cfg.image_width):
            raise ValueError(f"the pilot expects {cfg.image_width}x{cfg.image_height} images but scenario "
                             f"{sim.scenario.name!r} renders {sim_cfg.image_width}x{sim_cfg.image_height}")

    def reset(self) -> None:
        self.state = None

    def _inputs(self, obs: Observation) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return ({"image": torch.from_numpy(obs.image).unsqueeze(0), "imu": torch.from_numpy(obs.imu).unsqueeze(0)},
                torch.tensor([[obs.dt]], dtype=torch.float32))

    def act(self, obs: Observation, sim: Simulator) -> np.ndarray:
        inputs, dt = self._inputs(obs)
        with torch.no_grad():  # not inference_mode: the saliency takes gradients through this state
            command, self.state = self.pilot.step(inputs, self.state, dt)
        return command[0].numpy().astype(np.float64)

    def saliency(self, obs: Observation) -> np.ndarray:
        """Where the pilot looks for the step it is about to take on ``obs``, (H, W) in [0, 1]."""
        inputs, dt = self._inputs(obs)
        return self.pilot.saliency(inputs, self.state, dt).numpy()
