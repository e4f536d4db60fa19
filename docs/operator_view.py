"""Draw docs/operator_view.png: what an operator sees of a flight in RViz or Foxglove, from the nodes' own code.

One episode of the simulator flown by the shipped pilot through the flight core (as ``sim_node`` and
``pilot_node`` fly it). Left: ``sim_node``'s ``~/markers`` (``liquid_pilot.ros.markers.scene_markers``,
drawn from above by ``markers.draw``): the chair, the obstacles and the path. Middle: ``pilot_node``'s
``~/saliency`` for one frame, both kinds (a checkpoint: the demo's gradient map; an ``.onnx`` artefact:
occlusion sensitivity). Right: the pilot's ``/diagnostics`` status as rqt_robot_monitor lists it
(``diagnostics.pilot_report`` on the flight core's gate).

    .venv/bin/python docs/operator_view.py [--seed 3] [--out docs/operator_view.png]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402

from liquid_pilot.flight.image import fit  # noqa: E402
from liquid_pilot.flight.saliency import occlusion, overlay  # noqa: E402
from liquid_pilot.models import describe_model  # noqa: E402
from liquid_pilot.ros.diagnostics import LEVELS, pilot_report, text  # noqa: E402
from liquid_pilot.ros.markers import draw, scene_markers  # noqa: E402
from liquid_pilot.sim.config import load_scenario  # noqa: E402
from liquid_pilot.sim.episode import fly  # noqa: E402
from liquid_pilot.harness.pilots import PilotPolicy  # noqa: E402
from liquid_pilot.sim.world import Simulator  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--scenario", default="forest_summer")
    parser.add_argument("--model", default=str(ROOT / "models" / "cfc_ncp.pt"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "operator_view.png"))
    args = parser.parse_args()

    sim = Simulator(load_scenario(args.scenario))
    from liquid_pilot.nn.checkpoint import load_pilot

    policy = PilotPolicy.from_pilot(load_pilot(args.model))  # the network too: the demo's gradient map
    policy.check(sim)
    path, frames, steps = [], [], []

    def on_step(sim: Simulator, obs, command) -> None:
        path.append(sim.state.position.copy())
        if len(frames) < 40:  # a frame from early in the flight, the chair ahead
            frames.append((obs, policy.state, policy.core.runtime.state))

    def act(obs, sim):
        start = time.perf_counter()
        command = PilotPolicy.act(policy, obs, sim)
        steps.append(time.perf_counter() - start)
        return command

    policy.act = act
    result = fly(sim, policy, args.seed, on_step)
    markers = scene_markers(sim, path, Time())

    figure = plt.figure(figsize=(12, 4.2), dpi=80)
    ax = figure.add_axes([0.02, 0.08, 0.3, 0.84])
    draw(markers, ax)
    xs, ys = zip(*[(p[0], p[1]) for p in path])
    margin = 5.0
    ax.set_xlim(min(min(xs), sim.monitor.target_xy[0]) - margin, max(max(xs), sim.monitor.target_xy[0]) + margin)
    ax.set_ylim(min(min(ys), sim.monitor.target_xy[1]) - margin, max(max(ys), sim.monitor.target_xy[1]) + margin)
    ax.set_title(f"~/markers (odom frame, from above): {result.reason}", fontsize=9)
    ax.tick_params(labelsize=7)

    obs, _, state = frames[20]
    image = fit(obs.image, policy.core.runtime.image_size)
    gradient = policy.saliency(obs)
    occluded = occlusion(policy.core.runtime.evaluate, image, obs.imu, state, obs.dt)
    for i, (heat, title) in enumerate(((gradient, "~/saliency, checkpoint (.pt):\nthe demo's gradient map"),
                                       (occluded, "~/saliency, artefact (.onnx):\nocclusion sensitivity"))):
        panel = figure.add_axes([0.34 + 0.17 * i, 0.2, 0.16, 0.6])
        panel.imshow(overlay(image, heat, 256))
        panel.set_title(title, fontsize=8)
        panel.axis("off")

    gate = policy.core.gate.status()
    report = pilot_report(gate, {"rate": 16.0, "expected": 16.0, "age": 0.02, "in_band": True, "replaced": 0},
                          {"rate": 16.0, "age": 0.02}, {"count": len(steps), "mean_ms": 1e3 * np.mean(steps),
                                                        "max_ms": 1e3 * np.max(steps)},
                          describe_model(args.model, policy.core.runtime))
    shown = ["state", "active faults", "camera rate (Hz)", "camera expected rate (Hz)", "camera age (s)",
             "imu rate (Hz)", "step time mean (ms)", "step time max (ms)", "model kind", "model trained_with",
             "model epoch", "model val_loss"]
    lines = [f"/pilot_node: pilot   [{LEVELS[report.level]}]", report.message, ""] + [
        f"{key}: {text(report.values[key])}" for key in shown if key in report.values]
    board = figure.add_axes([0.69, 0.08, 0.3, 0.84])
    board.axis("off")
    board.set_title("/diagnostics (rqt_robot_monitor, Foxglove)", fontsize=9)
    board.text(0.0, 0.97, "\n".join(lines), va="top", family="monospace", fontsize=7.5)
    figure.savefig(args.out)
    print(f"wrote {args.out}: seed {args.seed}, {result.reason}, {len(path)} frames")


if __name__ == "__main__":
    main()
