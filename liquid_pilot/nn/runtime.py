"""A checkpoint (an in-memory ``nn.Pilot``) as a flight runtime: exported to ONNX, or stepped eagerly by PyTorch."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liquid_pilot.flight.runtime import DEFAULT_RUNTIME, RUNTIMES, OnnxRuntime, Runtime
from liquid_pilot.nn.export import export_onnx


class TorchRuntime(Runtime):
    """Steps a pilot eagerly in PyTorch (``runtime: torch``): the reference the ONNX graph is checked against."""

    def __init__(self, pilot: Any):
        super().__init__()
        torch.set_num_threads(1)  # as for onnxruntime: one sample per step
        self.pilot = pilot.eval()
        cfg = pilot.config
        self.image_size = (cfg.image_height, cfg.image_width)
        self.uses_imu = cfg.use_imu
        self.state_size = pilot.state_size
        self.trained_fov = trained_fov_of(pilot)

    def step(self, image: np.ndarray, imu: np.ndarray | None, dt: float) -> np.ndarray:
        imu = np.zeros(6, np.float32) if imu is None else imu
        state = None if self.state is None else torch.from_numpy(self.state)
        with torch.inference_mode():
            out, next_state = self.pilot.step(
                {"image": torch.from_numpy(np.ascontiguousarray(image)[None]), "imu": torch.from_numpy(imu[None])},
                state, torch.tensor([[dt]], dtype=torch.float32))
        self.state = next_state.numpy()
        return out[0].numpy().astype(np.float64)


def trained_fov_of(pilot: Any) -> tuple[float, float] | None:
    """Return the field of view (degrees) of the camera a pilot was trained with, or None when unknown."""
    fov = getattr(pilot.config, "camera_fov_deg", None)
    return None if fov is None else (float(fov[0]), float(fov[1]))


def runtime_for(pilot: Any, kind: str = DEFAULT_RUNTIME) -> Runtime:
    """Make a runtime for an in-memory pilot (liquid_pilot.nn.Pilot): exported to ONNX for ``onnx``."""
    if kind not in RUNTIMES:
        raise ValueError(f"unknown runtime {kind!r}; choose one of {', '.join(RUNTIMES)}")
    if kind == "torch":
        return TorchRuntime(pilot)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pilot.onnx"
        export_onnx(pilot, path, batch=1)
        return OnnxRuntime(path, trained_fov_of(pilot))
