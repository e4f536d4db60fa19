"""Single-step export for flight runtimes: ONNX (onnxruntime) and TorchScript.

The exported graph is one control step with the recurrent state and the elapsed time as
explicit inputs and outputs, so the caller owns the loop and can reset the state.
Inputs: image (B, H, W, 3) uint8 RGB, [imu (B, 6) float], state (B, S), dt (B, 1) seconds.
Outputs: command (B, 4) [vx, vy, vz, yaw_rate], state (B, S).
"""
from __future__ import annotations

import os
import warnings

import torch
from torch import Tensor, nn

from liquid_pilot.nn.policy import IMU_FIELDS, Pilot

OPSET = 17


class PilotStep(nn.Module):
    """The pilot's ``step`` as a plain forward with tensor inputs."""

    def __init__(self, pilot: Pilot):
        super().__init__()
        self.pilot = pilot.eval()

    def forward(self, image: Tensor, imu: Tensor, state: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        return self.pilot.step({"image": image, "imu": imu}, state, dt)


def example_inputs(pilot: Pilot, batch: int = 1) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    cfg = pilot.config
    return (torch.zeros(batch, cfg.image_height, cfg.image_width, 3, dtype=torch.uint8),
            torch.zeros(batch, len(IMU_FIELDS)), pilot.initial_state(batch),
            torch.full((batch, 1), 1.0 / 16.0))


def input_names(pilot: Pilot) -> list[str]:
    return ["image", "imu", "state", "dt"] if pilot.config.use_imu else ["image", "state", "dt"]


def export_onnx(pilot: Pilot, path: str | os.PathLike, batch: int | None = None) -> None:
    """Write an ONNX graph; a pilot without IMU has no ``imu`` input.

    ``batch`` None gives a dynamic batch axis; a fixed batch (1 for a flight runtime) lets
    onnxruntime fold the shape arithmetic away, a quarter fewer nodes per step.
    """
    names = input_names(pilot)
    args = example_inputs(pilot, batch or 1)
    module: nn.Module = PilotStep(pilot)
    if not pilot.config.use_imu:
        module = _WithoutImu(module)
        args = (args[0], args[2], args[3])
    axes = {name: {0: "batch"} for name in [*names, "command", "next_state"]} if batch is None else None
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter is deprecated but needs no extra packages
        torch.onnx.export(module, args, str(path), input_names=names, output_names=["command", "next_state"],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)


class _WithoutImu(nn.Module):
    def __init__(self, step: nn.Module):
        super().__init__()
        self.step = step

    def forward(self, image: Tensor, state: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        return self.step(image, torch.zeros(image.shape[0], len(IMU_FIELDS)), state, dt)


def export_torchscript(pilot: Pilot, path: str | os.PathLike) -> None:
    """Write a traced TorchScript module taking (image, imu, state, dt)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(PilotStep(pilot), example_inputs(pilot), check_trace=False)
    traced.save(str(path))
