"""The one-command demo: the shipped liquid pilot in and out of distribution, with a video.

Flies a short seeded set of episodes per condition, prints a success table, and writes a video
(onboard view with the network's saliency beside a top-down map; the first episode of every
condition) and a trajectory plot per condition.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TextIO

import numpy as np

from liquid_pilot.eval.evaluate import wilson
from liquid_pilot.nn.checkpoint import load_pilot
from liquid_pilot.sim.config import load_scenario
from liquid_pilot.sim.episode import fly
from liquid_pilot.harness.pilots import PilotPolicy
from liquid_pilot.sim.video import FlightRecorder, plot_trajectory, write_video
from liquid_pilot.sim.world import Simulator

CONDITIONS = ["forest_summer", "forest_autumn", "forest_winter", "urban", "image_noise", "dark", "distractors",
              "camera_slow"]


def demo(model: Path, out: Path, episodes: int = 3, conditions: list[str] | None = None, seed: int = 9000,
         stream: TextIO | None = None) -> dict[str, list[bool]]:
    """Fly the demo; returns the successes per condition."""
    conditions = conditions or CONDITIONS
    out.mkdir(parents=True, exist_ok=True)
    pilot = load_pilot(model)
    policy = PilotPolicy.from_pilot(pilot)
    started = time.perf_counter()
    outcomes: dict[str, list[bool]] = {}
    frames: list[np.ndarray] = []
    print(f"liquid pilot {model.name}: {pilot.parameter_counts()['total']:,} parameters, "
          f"{episodes} episodes per condition", file=stream, flush=True)
    for condition in conditions:
        sim = Simulator(load_scenario(condition))
        policy.check(sim)
        outcomes[condition] = []
        for i in range(episodes):
            recorder = None
            if i == 0:
                recorder = FlightRecorder(saliency=policy.saliency, title=f"{condition} (seed {seed + i})")
            result = fly(sim, policy, seed + i, on_step=recorder)
            outcomes[condition].append(result.success)
            if recorder is not None:
                frames += recorder.frames + [recorder.frames[-1]] * 8  # hold the last frame briefly
                plot_trajectory(sim, result.trajectory, out / f"{condition}.png",
                                f"{condition}, {model.name}, seed {seed + i}: {result.reason}")
            print(f"  {condition:16s} seed {seed + i}: {result.reason:13s} {result.duration:5.1f} s", file=stream,
                  flush=True)
        sim.close()
    write_video(frames, out / "demo.mp4", 16)
    print(f"\n{'condition':18s} success", file=stream)
    for condition, wins in outcomes.items():
        low, high = wilson(sum(wins), len(wins))
        print(f"{condition:18s} {sum(wins)}/{len(wins)}  (95% CI {100 * low:.0f}-{100 * high:.0f}%)", file=stream)
    print(f"\nwrote {out / 'demo.mp4'} and a trajectory plot per condition in {out}/ "
          f"({time.perf_counter() - started:.0f} s)", file=stream)
    return outcomes
