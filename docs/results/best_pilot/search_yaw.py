"""What pilots command in the hard searches before they first see the chair: do they still turn to look for it?

Flies each model on ``hard_behind_left`` and ``hard_behind_right`` (the chair behind the drone), ``episodes`` seeds
each from 300000 (the study's tier seeds), and keeps the yaw-rate command on every frame before the chair first
comes inside the camera's field of view (the expert's own test, ``margin`` 0.9, occlusion ignored):

    .venv/bin/python docs/results/best_pilot/search_yaw.py 3 runs/c5_seed?.pt runs/c6_seed?.pt runs/ff_c6_seed?.pt
"""
from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np

from liquid_pilot.harness.pilots import PilotPolicy
from liquid_pilot.sim.config import load_scenario
from liquid_pilot.sim.world import Simulator

SEARCHES = ("hard_behind_left", "hard_behind_right")


def search_yaw(model: str, episodes: int) -> tuple[np.ndarray, dict[str, int]]:
    """Return the yaw commands (rad/s) before the first sighting, over every episode, and the outcomes' counts."""
    yaws: list[float] = []
    outcomes: collections.Counter = collections.Counter()
    for condition in SEARCHES:
        sim = Simulator(load_scenario(condition))
        policy = PilotPolicy.from_file(model)
        policy.check(sim)
        for seed in range(300000, 300000 + episodes):
            obs = sim.reset(seed)
            policy.reset()
            seen = False
            while not sim.done:
                command = policy.act(obs, sim)
                seen = seen or sim.camera.in_view(sim.state, sim.monitor.target)
                if not seen:
                    yaws.append(float(command[3]))
                obs = sim.step(command)
            outcomes[sim.monitor.reason] += 1
        sim.close()
    return np.array(yaws), dict(outcomes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("episodes", type=int, help="seeds per search condition (the study's: 3)")
    parser.add_argument("models", nargs="+", help="checkpoints to fly")
    args = parser.parse_args()
    for model in args.models:
        yaw, outcomes = search_yaw(model, args.episodes)
        print(f"{Path(model).stem}: {len(yaw)} frames before the first sighting; mean yaw {yaw.mean():+.2f} rad/s, "
              f"mean |yaw| {np.abs(yaw).mean():.2f}, under 0.2 rad/s on {np.mean(np.abs(yaw) < 0.2):.0%}; "
              + ", ".join(f"{reason} {n}" for reason, n in sorted(outcomes.items())))


if __name__ == "__main__":
    main()
