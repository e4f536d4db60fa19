"""A trained pilot as a simulator policy, flown through the flight core.

The same runtime (onnxruntime by default, from any model file through ``liquid_pilot.models``: a checkpoint
or its ``.onnx`` flight artefact), gate (timeouts, plausibility, hysteresis, resets, clamps) and preprocessing
as ``pilot_node``: evaluation measures the code that flies. The simulator's time is the gate's clock; every
frame is stamped with its time.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from liquid_pilot.flight.core import FlightCore
from liquid_pilot.flight.gate import GateConfig
from liquid_pilot.flight.types import ManualClock
from liquid_pilot.flight.image import fit
from liquid_pilot.flight.runtime import DEFAULT_RUNTIME, Runtime
from liquid_pilot.models import load_runtime
from liquid_pilot.sim.world import Observation, Simulator

if TYPE_CHECKING:
    import torch

    from liquid_pilot.nn.export_c import StepInputs
    from liquid_pilot.nn.policy import Pilot

EPOCH_NS = 1_000_000_000  # the stamp of every episode's first frame (a zero stamp means "unstamped")


class PilotPolicy:
    """A runtime flown through the flight core on the simulator's clock (``pilot``: the network, for saliency)."""

    def __init__(self, runtime: Runtime, pilot: Pilot | None = None):
        self.pilot = None if pilot is None else pilot.eval()
        self.clock = ManualClock(EPOCH_NS)
        self.core = FlightCore(runtime, GateConfig(), self.clock)

    @classmethod
    def from_file(cls, path: str | os.PathLike, runtime: str = DEFAULT_RUNTIME) -> PilotPolicy:
        """Fly a checkpoint (.pt) or a flight artefact (.onnx)."""
        return cls(load_runtime(path, runtime))

    @classmethod
    def from_pilot(cls, pilot: Pilot, runtime: str = DEFAULT_RUNTIME) -> PilotPolicy:
        """Fly an in-memory network (its saliency available too)."""
        from liquid_pilot.nn.runtime import runtime_for

        return cls(runtime_for(pilot, runtime), pilot)

    def check(self, sim: Simulator) -> None:
        """Take the scenario's command limits as the gate's clamps (frames of any size are fitted)."""
        s = sim.scenario.sim
        self.core.gate.config.update(max_speed_xy=s.max_speed_xy, max_speed_z=s.max_speed_z,
                                     max_yaw_rate=s.max_yaw_rate)

    def reset(self) -> None:
        """Start an episode on a fresh flight core: the simulator's clock starts again (a node's never goes back)."""
        self.clock.now = EPOCH_NS
        self.core = FlightCore(self.core.runtime, self.core.gate.config, self.clock)
        self.core.start()

    def act(self, obs: Observation, sim: Simulator) -> np.ndarray:
        self.clock.now = EPOCH_NS + round(obs.time * 1e9)
        self.core.imu(obs.imu)
        return np.array(self.core.frame(obs.image, self.clock.now), dtype=np.float64)

    @property
    def state(self) -> torch.Tensor | None:
        import torch

        state = self.core.runtime.state
        return None if state is None else torch.from_numpy(np.array(state, np.float32))

    def saliency(self, obs: Observation) -> np.ndarray:
        """Where the pilot looks for the step it is about to take on ``obs``, (H, W) in [0, 1]."""
        import torch

        if self.pilot is None:
            raise ValueError("saliency needs the network: fly a checkpoint (.pt) with PilotPolicy.from_pilot")
        image = fit(obs.image, self.core.runtime.image_size)
        inputs = {"image": torch.from_numpy(image).unsqueeze(0), "imu": torch.from_numpy(obs.imu).unsqueeze(0)}
        return self.pilot.saliency(inputs, self.state, torch.tensor([[obs.dt]], dtype=torch.float32)).numpy()


def record_steps(model: str | os.PathLike, scenario: str = "forest_summer", seed: int = 0,
                 steps: int = 64) -> StepInputs:
    """Fly ``model`` in the simulator through the flight core; return what its network was given at each step.

    The frames are the ones the runtime received (fitted to the model's size), with the IMU sample
    and elapsed time the gate admitted them with. Episodes follow one another (seed, seed + 1, ...)
    until ``steps`` steps are recorded; each starts from a reset state.
    """
    from liquid_pilot.nn.export_c import StepInputs
    from liquid_pilot.sim.config import load_scenario

    if not 1 <= steps <= 10_000:
        raise ValueError(f"steps = {steps} must be in [1, 10000]")
    policy = PilotPolicy.from_file(model)
    runtime = policy.core.runtime
    images: list[np.ndarray] = []
    imu: list[np.ndarray] = []
    dts: list[float] = []
    resets: list[bool] = []
    step = runtime.step

    def recording(image: np.ndarray, sample: np.ndarray | None, dt: float) -> np.ndarray:
        resets.append(runtime.state is None)
        images.append(np.array(image, np.uint8))
        imu.append(np.zeros(6, np.float32) if sample is None else np.array(sample, np.float32))
        dts.append(dt)
        return step(image, sample, dt)

    runtime.step = recording
    sim = Simulator(load_scenario(scenario))
    try:
        policy.check(sim)
        episode = seed
        while len(images) < steps:
            before = len(images)
            obs = sim.reset(episode)
            policy.reset()
            while not sim.done and len(images) < steps:
                obs = sim.step(policy.act(obs, sim))
            if len(images) == before:
                raise ValueError(f"{model}: the flight core stepped the network on no frame of episode {episode}")
            episode += 1
    finally:
        sim.close()
    return StepInputs(np.stack(images), np.stack(imu), np.array(dts, np.float32), np.array(resets),
                      f"a simulated flight of {Path(model).name} in {scenario}, seed {seed}")
