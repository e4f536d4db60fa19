"""Offline replay: run a pilot open loop over a recorded flight and compare with its commands."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from liquid_pilot.data.reader import Flight, TopicConfig, read_flight
from liquid_pilot.nn.checkpoint import load_pilot
from liquid_pilot.nn.policy import COMMAND_AXES, Pilot


def predict(pilot: Pilot, flight: Flight) -> np.ndarray:
    """Return the pilot's command for every frame, its state carried within each segment."""
    state, out = None, []
    with torch.inference_mode():
        for i in range(len(flight.images)):
            if i == 0 or flight.segments[i] != flight.segments[i - 1]:
                state = None
            command, state = pilot.step({"image": torch.from_numpy(flight.images[i:i + 1]),
                                         "imu": torch.from_numpy(flight.imu[i:i + 1])},
                                        state, torch.tensor([[float(flight.dt[i])]]))
            out.append(command[0].numpy())
    return np.array(out)


def replay(model: str | os.PathLike, bag: str | os.PathLike, plot: str | os.PathLike | None = None,
           topics: TopicConfig | None = None) -> dict[str, dict[str, float]]:
    """Per-axis mean absolute and RMS error of the pilot against the recorded commands."""
    pilot = load_pilot(model)
    cfg = pilot.config
    topics = topics or (TopicConfig() if cfg.use_imu else TopicConfig(imu=None))
    flight = read_flight(bag, topics, (cfg.image_height, cfg.image_width))
    predicted = predict(pilot, flight)
    error = predicted - flight.commands
    errors = {axis: {"mae": float(np.abs(error[:, i]).mean()), "rmse": float(np.sqrt((error[:, i] ** 2).mean()))}
              for i, axis in enumerate(COMMAND_AXES)}
    if plot is not None:
        _plot(flight, predicted, errors, Path(plot), Path(model).name)
    return errors


def _plot(flight: Flight, predicted: np.ndarray, errors: dict, path: Path, model: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    time = np.cumsum(flight.dt)
    fig, axes = plt.subplots(4, 1, figsize=(9, 8), sharex=True)
    units = ("m/s", "m/s", "m/s", "rad/s")
    for i, (ax, axis) in enumerate(zip(axes, COMMAND_AXES)):
        ax.plot(time, flight.commands[:, i], color="0.2", lw=1.5, label="recorded")
        ax.plot(time, predicted[:, i], color="#d62728", lw=1.2, label="pilot")
        ax.set_ylabel(f"{axis} ({units[i]})")
        ax.set_title(f"{axis}: MAE {errors[axis]['mae']:.3f}, RMSE {errors[axis]['rmse']:.3f}", fontsize=9)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(f"{model} on {Path(flight.bag).name} (open loop)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
