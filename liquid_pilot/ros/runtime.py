"""The pilot network behind the ROS node: one step per camera frame, state kept between steps.

``onnx`` (the default) exports the checkpoint at start-up and runs it in onnxruntime, about
four times faster per step on a CPU than ``torch``, which runs the checkpoint eagerly.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from liquid_pilot.nn.checkpoint import load_pilot
from liquid_pilot.nn.policy import Pilot
from liquid_pilot.paths import data_dir

RUNTIMES = ("onnx", "torch")
DEFAULT_RUNTIME = "onnx"
SHIPPED_MODEL = "cfc_ncp.pt"


def default_model() -> Path:
    """Return the shipped pilot, or raise FileNotFoundError saying where it was looked for."""
    try:
        path = data_dir("models") / SHIPPED_MODEL
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no shipped pilot: {exc}; set the 'model' parameter to a checkpoint") from None
    if not path.is_file():
        raise FileNotFoundError(f"the shipped pilot {path} does not exist (no trained pilot is shipped yet); "
                                f"set the 'model' parameter to a checkpoint")
    return path


class PilotRuntime:
    """Steps a pilot checkpoint; ``state`` holds the neurons between steps (None = reset)."""

    def __init__(self, pilot: Pilot, runtime: str = DEFAULT_RUNTIME):
        self.pilot = pilot.eval()
        cfg = pilot.config
        self.image_size = (cfg.image_height, cfg.image_width)
        self.uses_imu = cfg.use_imu
        self.state_size = pilot.state_size
        self.state: np.ndarray | None = None
        self._onnx = None
        if runtime == "onnx":
            from liquid_pilot.nn.export import OnnxPilot, export_onnx

            with tempfile.TemporaryDirectory() as tmp:
                export_onnx(pilot, Path(tmp) / "pilot.onnx", batch=1)
                self._onnx = OnnxPilot(Path(tmp) / "pilot.onnx")
        else:
            # One thread: a batch-1 step of this small network gains nothing from more, and
            # intra-op threads stall badly when other processes share the cores.
            torch.set_num_threads(1)

    @classmethod
    def from_file(cls, path: str | Path, runtime: str = DEFAULT_RUNTIME) -> PilotRuntime:
        return cls(load_pilot(path), runtime)

    def reset(self) -> None:
        self.state = None

    def step(self, image: np.ndarray, imu: np.ndarray | None, dt: float) -> np.ndarray:
        """Image (H, W, 3) uint8 RGB, IMU (6,) or None, elapsed seconds -> command (4,) float64."""
        imu = np.zeros(6, np.float32) if imu is None else imu
        state = np.zeros((1, self.state_size), np.float32) if self.state is None else self.state
        if self._onnx is not None:
            command, state = self._onnx.step(image[None], imu[None], state, np.array([[dt]], np.float32))
        else:
            with torch.inference_mode():
                out, next_state = self.pilot.step(
                    {"image": torch.from_numpy(image[None]), "imu": torch.from_numpy(imu[None])},
                    torch.from_numpy(state), torch.tensor([[dt]], dtype=torch.float32))
            command, state = out.numpy(), next_state.numpy()
        self.state = state
        return command[0].astype(np.float64)
