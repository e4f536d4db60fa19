"""Simulator speed, expert reliability and repeatability.

Prints one JSON object per line (metric, value, unit, and target where the project sets one).
Usage: python bench/bench_sim.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from liquid_pilot.nn.policy import Pilot
from liquid_pilot.sim.config import load_scenario
from liquid_pilot.sim.episode import ExpertPolicy, fly
from liquid_pilot.harness.pilots import PilotPolicy
from liquid_pilot.sim.world import Observation, Simulator


def emit(metric: str, value: float | bool, unit: str, **extra: object) -> None:
    row = {"metric": metric, "value": round(value, 3) if isinstance(value, float) else value, "unit": unit}
    row.update(extra)
    print(json.dumps(row), flush=True)


class Cruise:
    """No policy: a fixed forward-and-turn command, so only the simulator is timed."""

    def reset(self) -> None:
        pass

    def act(self, obs: Observation, sim: Simulator) -> np.ndarray:
        return np.array([0.3, 0.0, 0.0, 0.3])


def real_time_factor(policy: object, seconds: float) -> tuple[float, float]:
    """Simulated over wall-clock seconds while stepping (resets excluded), and seconds per frame."""
    sim = Simulator(load_scenario("forest_summer").with_overrides({"task.timeout_s": seconds}))
    obs = sim.reset(0)
    policy.reset()
    frames = 0
    start = time.perf_counter()
    while not sim.done:
        obs = sim.step(policy.act(obs, sim))
        frames += 1
    wall = time.perf_counter() - start
    sim.close()
    return sim.time / wall, wall / frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seconds = 10.0 if args.quick else 60.0
    factor, per_frame = real_time_factor(Cruise(), seconds)
    emit("closed_loop_real_time_factor", factor, "x", target=">= 25", policy="none", camera="64x64 @ 16 Hz",
         physics_hz=240)
    emit("closed_loop_frame_time", per_frame * 1e3, "ms", policy="none")
    factor, per_frame = real_time_factor(PilotPolicy.from_pilot(Pilot()), seconds)
    emit("closed_loop_real_time_factor_with_pilot", factor, "x", policy="default CfC-NCP pilot, eager, 1 thread")

    episodes = 20 if args.quick else 200
    sim = Simulator(load_scenario("forest_summer"))
    start = time.perf_counter()
    results = [fly(sim, ExpertPolicy(), seed) for seed in range(episodes)]
    wall = time.perf_counter() - start
    successes = sum(r.success for r in results)
    emit("expert_success_rate", successes / episodes, "fraction", target=">= 0.98", episodes=episodes,
         scenario="forest_summer", failures=sorted({r.reason for r in results if not r.success}))
    emit("episode_throughput_with_resets", sum(r.duration for r in results) / wall, "x real time",
         episodes=episodes)

    first = fly(sim, ExpertPolicy(), 12345).trajectory
    again = fly(Simulator(load_scenario("forest_summer")), ExpertPolicy(), 12345).trajectory
    emit("same_seed_identical_trajectory", first == again, "bool", steps=len(first))


if __name__ == "__main__":
    main()
