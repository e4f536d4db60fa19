"""The expert's yaw labels in round 4's far DAgger flights, with the chair in view and out of it.

Replays the first N flights of ``bags/far_dagger`` as ``config/collect.sh`` flies them (``far_long``, seeds from
40000, the driver's checkpoint, ``--search left``, perturbation 0.2, the 2.5 s hold) and tabulates the expert's
label on each frame, split by whether the chair is inside the camera's field of view (occlusion ignored):

    .venv/bin/python docs/results/best_pilot/far_labels.py runs/c5_seed0.pt 15
"""
from __future__ import annotations

import argparse
import collections

import numpy as np

from liquid_pilot.harness.pilots import PilotPolicy
from liquid_pilot.sim.config import load_scenario
from liquid_pilot.sim.episode import ExpertPolicy
from liquid_pilot.sim.world import Simulator


def labels(driver_path: str, flights: int) -> dict[str, np.ndarray]:
    """Return the expert's labels (frames x [vx, vy, vz, yaw rate]) keyed "in view" and "out of view"."""
    sim = Simulator(load_scenario("far_long").with_overrides({"task.hold_s": 2.5}))
    driver = PilotPolicy.from_file(driver_path)
    driver.check(sim)
    split = collections.defaultdict(list)
    for seed in range(40000, 40000 + flights):
        policy = ExpertPolicy(0.2, seed=seed, search="left", driver=driver)
        obs = sim.reset(seed)
        policy.reset()
        while not sim.done:
            command = policy.act(obs, sim)
            seen = sim.camera.in_view(sim.state, sim.monitor.target, margin=1.0)
            split["in view" if seen else "out of view"].append(policy.label.copy())
            obs = sim.step(command)
    sim.close()
    return {key: np.array(rows) for key, rows in split.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("driver", help="the far round's driver checkpoint (the study's: runs/c5_seed0.pt)")
    parser.add_argument("flights", type=int, nargs="?", default=15, help="flights to replay (default 15)")
    args = parser.parse_args()
    split = labels(args.driver, args.flights)
    total = sum(len(rows) for rows in split.values())
    for key, rows in sorted(split.items()):
        yaw = rows[:, 3]
        print(f"{key}: {len(rows)} frames ({len(rows) / total:.0%}); yaw label +1 (> 0.5) {np.mean(yaw > 0.5):.0%}, "
              f"-1 (< -0.5) {np.mean(yaw < -0.5):.0%}, between {np.mean(abs(yaw) <= 0.5):.0%}; mean yaw "
              f"{yaw.mean():+.2f} rad/s, mean forward {rows[:, 0].mean():.2f} m/s")


if __name__ == "__main__":
    main()
