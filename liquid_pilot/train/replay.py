"""Offline replay: fly a pilot open loop over a recorded flight, through the flight core, and compare.

Frames reach the pilot exactly as on the drone: the same runtime (onnxruntime by default),
preprocessing and gate (resets after gaps, plausibility, hysteresis, clamps), on the recording's
own clock. What replay shows is what ``pilot_node`` would have commanded.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from liquid_pilot.data.reader import AUTO, Flight, TopicConfig, read_flight
from liquid_pilot.flight.core import FlightCore
from liquid_pilot.flight.gate import GateConfig
from liquid_pilot.flight.types import ManualClock
from liquid_pilot.flight.runtime import DEFAULT_RUNTIME, Runtime
from liquid_pilot.models import load_runtime
from liquid_pilot.nn.policy import COMMAND_AXES

EPOCH_NS = 1_000_000_000  # the first frame's stamp (zero would mean "unstamped")
SEGMENT_GAP_S = 10.0  # replayed between the recording's segments: longer than any timeout, so each starts afresh


def predict(runtime: Runtime, flight: Flight, config: GateConfig | None = None) -> np.ndarray:
    """Return the command the flight core gives for every frame, the network's state carried within segments."""
    clock = ManualClock(EPOCH_NS)
    if not runtime.uses_imu:  # a camera-only pilot's bag may hold no IMU: nothing for the watchdog to watch
        config = dataclasses.replace(config or GateConfig(), imu_watchdog=False)
    core = FlightCore(runtime, config, clock)
    core.start()
    out = []
    for i in range(len(flight.images)):
        new_segment = i > 0 and flight.segments[i] != flight.segments[i - 1]
        clock.advance(SEGMENT_GAP_S if new_segment else float(flight.dt[i]))
        if runtime.uses_imu:
            core.imu(flight.imu[i])
        out.append(core.frame(flight.images[i], clock.now))
    return np.array(out, dtype=np.float64).reshape(-1, 4)


def reading_for(model: str | os.PathLike, uses_imu: bool, given: dict[str, Any] | None = None) -> TopicConfig:
    """How to read a bag for this pilot: as its training data were (the checkpoint's inputs), then ``given``.

    The label is read as trained (commands, or the motion with its lead and smoothing) unless
    ``given`` names another command topic.

    ``given``: settings from the command line (None: not given). A checkpoint without recorded
    inputs (older, or an .onnx graph) reads with topics chosen by type.
    """
    inputs: dict[str, Any] = {}
    if Path(model).suffix != ".onnx":
        from liquid_pilot.nn.checkpoint import read_inputs

        inputs = read_inputs(model)
    saved = inputs.get("topics") or {}
    settings: dict[str, Any] = {"image": saved.get("image") or AUTO, "command": saved.get("command") or AUTO,
                                "imu": saved.get("imu") or AUTO}
    settings.update({k: inputs[k] for k in ("time_source", "command_frame", "imu_frame") if inputs.get(k)})
    given = {k: v for k, v in (given or {}).items() if v is not None}
    if given.get("command", settings["command"]) == settings["command"]:  # the label as trained: motion, lead
        settings.update({k: inputs[k] for k in ("command_kind", "command_lead_s", "motion_smoothing_s")
                         if inputs.get(k) is not None})
    settings.update(given)
    topics = TopicConfig(**settings)
    if not uses_imu:
        return dataclasses.replace(topics, imu=None)
    if topics.imu is None:
        raise ValueError(f"{model}: this pilot was trained with IMU input; name its IMU topic (--imu-topic), "
                         f"'none' is for image-only pilots")
    return topics


def replay(model: str | os.PathLike, bag: str | os.PathLike, plot: str | os.PathLike | None = None,
           topics: TopicConfig | None = None, runtime: str = DEFAULT_RUNTIME,
           given: dict[str, Any] | None = None) -> tuple[dict[str, dict[str, float]], Flight]:
    """Per-axis mean absolute and RMS error of the pilot against the recorded commands, and the flight read.

    ``topics`` None: read as the checkpoint's training data were, with ``given`` settings on top.
    """
    pilot = load_runtime(model, runtime)
    topics = topics or reading_for(model, pilot.uses_imu, given)
    flight = read_flight(bag, topics, pilot.image_size)
    predicted = predict(pilot, flight)
    error = predicted - flight.commands
    errors = {axis: {"mae": float(np.abs(error[:, i]).mean()), "rmse": float(np.sqrt((error[:, i] ** 2).mean()))}
              for i, axis in enumerate(COMMAND_AXES)}
    if plot is not None:
        _plot(flight, predicted, errors, Path(plot), Path(model).name)
    return errors, flight


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
