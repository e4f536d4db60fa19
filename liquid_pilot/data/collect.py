"""Record expert flights in the simulator as rosbag2 bags, one per episode.

Each frame writes the camera image and info, the IMU sample, the ground-truth odometry and the
expert's (clean) command as the label; the flown command may be perturbed (DART-style) to show
the expert recovering from mistakes. Episode i uses seed ``seed + i``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liquid_pilot.data.bags import EPOCH_S, BagWriter, camera_info_msg, image_msg, imu_msg, odometry_msg, \
    twist_stamped_msg
from liquid_pilot.sim.config import Scenario
from liquid_pilot.sim.episode import EpisodeResult, ExpertPolicy, fly
from liquid_pilot.sim.world import Observation, Simulator


class CollectInterrupted(KeyboardInterrupt):
    """Ctrl-C during a collection: says which episode was cut and what is complete."""

    def __init__(self, index: int, seed: int, written: list[Path]):
        super().__init__(f"episode {index} (seed {seed}) was cut")
        self.index, self.seed, self.written = index, seed, written


@dataclass
class CollectResult:
    written: list[Path]
    skipped: list[EpisodeResult]  # failed expert flights, not written


def bag_name(scenario: Scenario, seed: int) -> str:
    return f"{scenario.name}_{seed:06d}"


def record_episode(sim: Simulator, seed: int, path: Path, storage: str, perturbation: float,
                   keep_failures: bool) -> EpisodeResult:
    """Fly and record one episode; the bag is kept only when the expert succeeded (or if asked)."""
    policy = ExpertPolicy(perturbation, seed=seed)
    scenario = sim.scenario
    metadata = {"scenario": scenario.name, "task": scenario.task.kind, "seed": seed, "perturbation": perturbation,
                "source": "liquid_pilot simulator expert"}

    with BagWriter(path, storage, metadata) as bag:
        def on_step(sim: Simulator, obs: Observation, command: np.ndarray) -> None:
            stamp = int(round((EPOCH_S + obs.time) * 1e9))
            state = sim.state
            bag.write("image", image_msg(obs.image, stamp), stamp)
            bag.write("camera_info", camera_info_msg(obs.image.shape[1], obs.image.shape[0], sim.camera.vfov, stamp),
                      stamp)
            bag.write("imu", imu_msg(obs.imu, stamp), stamp)
            bag.write("command", twist_stamped_msg(policy.label, stamp), stamp)
            bag.write("odom", odometry_msg(state.position, state.rotation, state.velocity, state.rates, stamp), stamp)

        result = fly(sim, policy, seed, on_step=on_step)
        bag.metadata.update(outcome=result.reason, success=str(result.success), duration_s=f"{result.duration:.3f}")
        if not (result.success or keep_failures):
            raise _Discard(result)
    return result


class _Discard(Exception):
    """Leaves the bag block so the writer deletes the unwanted bag."""

    def __init__(self, result: EpisodeResult):
        super().__init__(result.reason)
        self.result = result


def collect(scenario: Scenario, episodes: int, out: Path, seed: int = 0, storage: str = "mcap",
            perturbation: float = 0.2, keep_failures: bool = False,
            progress: Callable[[int, EpisodeResult], None] | None = None) -> CollectResult:
    """Record ``episodes`` expert flights into ``out``.

    Existing bags are kept and skipped, so an interrupted collection continues where it stopped.
    """
    out.mkdir(parents=True, exist_ok=True)
    sim = Simulator(scenario)
    written, skipped = [], []
    try:
        for i in range(episodes):
            episode_seed = seed + i
            path = out / bag_name(scenario, episode_seed)
            if path.exists():
                written.append(path)
                continue
            try:
                result = record_episode(sim, episode_seed, path, storage, perturbation, keep_failures)
                written.append(path)
            except _Discard as discard:
                result = discard.result
                skipped.append(result)
            except KeyboardInterrupt:
                raise CollectInterrupted(i, episode_seed, written) from None
            if progress is not None:
                progress(i, result)
    finally:
        sim.close()
    return CollectResult(written, skipped)
