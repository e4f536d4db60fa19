"""The network, one step per camera frame, its state kept between steps.

``onnx`` (the default) runs the single-step graph in onnxruntime on one thread, about four times
faster per step on a CPU than ``torch``, which steps the checkpoint eagerly. A checkpoint (``.pt``)
is exported to ONNX at load time (that needs PyTorch); an ``.onnx`` file exported by
``liquid-pilot export`` is read as it is.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

RUNTIMES = ("onnx", "torch")
DEFAULT_RUNTIME = "onnx"
SHIPPED_MODEL = "cfc_ncp.pt"


def default_model() -> Path:
    """Return the shipped pilot, or raise FileNotFoundError saying where it was looked for."""
    from liquid_pilot.paths import data_dir

    try:
        path = data_dir("models") / SHIPPED_MODEL
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no shipped pilot: {exc}; set the 'model' parameter to a checkpoint") from None
    if not path.is_file():
        raise FileNotFoundError(f"the shipped pilot {path} does not exist (no trained pilot is shipped yet); "
                                f"set the 'model' parameter to a checkpoint")
    return path


class Runtime:
    """Steps a pilot; ``state`` holds the neurons between steps (None = reset).

    ``image_size`` (height, width), ``uses_imu`` and ``state_size`` describe the inputs;
    ``trained_fov`` is the training camera's field of view after preprocessing (degrees,
    horizontal and vertical), or None where the checkpoint does not say.
    """

    image_size: tuple[int, int]
    uses_imu: bool
    state_size: int
    trained_fov: tuple[float, float] | None = None

    def __init__(self) -> None:
        self.state: np.ndarray | None = None

    def reset(self) -> None:
        self.state = None

    def step(self, image: np.ndarray, imu: np.ndarray | None, dt: float) -> np.ndarray:
        """Image (H, W, 3) uint8 RGB at ``image_size``, IMU (6,) or None, elapsed seconds -> command (4,) float64."""
        raise NotImplementedError


def onnx_session(path: str | os.PathLike) -> Any:
    """Open an onnxruntime session on one CPU thread.

    A batch-1 step gains nothing from more threads, and stalls when cores are shared.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxPilot:
    """An exported step graph in onnxruntime, batched, state handled by the caller (tests and benchmarks).

    Inputs a head never reads (dt for the discrete baselines) are pruned from the graph by the exporter,
    so only the inputs the session declares are fed.
    """

    def __init__(self, path: str | os.PathLike):
        self.session = onnx_session(path)
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self.inputs = set(shapes)
        self.state_size = int(shapes["state"][1]) if "state" in shapes else 0

    def step(self, image: np.ndarray, imu: np.ndarray | None, state: np.ndarray,
             dt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feeds = {"image": image, "imu": imu, "state": state, "dt": dt}
        command, state = self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})
        return command, state


class OnnxRuntime(Runtime):
    """Steps an exported single-step graph; a flight artefact (``flight.artefact``) is checked on loading."""

    def __init__(self, path: str | os.PathLike, trained_fov: tuple[float, float] | None = None):
        super().__init__()
        from liquid_pilot.flight.artefact import check_artefact, read_metadata

        self.session = onnx_session(path)
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self.inputs = set(shapes)
        image = shapes.get("image")
        if image is None or len(image) != 4 or not all(isinstance(d, int) for d in image[1:3]):
            raise ValueError(f"{path}: not a pilot step graph (no image input of fixed height and width)")
        self.image_size = (int(image[1]), int(image[2]))
        self.uses_imu = "imu" in shapes
        self.state_size = int(shapes["state"][1]) if "state" in shapes else 0
        self.metadata = read_metadata(self.session)
        if self.metadata:
            trained_fov = check_artefact(self.session, self.metadata, path, self.image_size, self.state_size,
                                         self.uses_imu)
        self.trained_fov = trained_fov
        self._dt = np.zeros((1, 1), np.float32)
        self._zero_imu = np.zeros((1, 6), np.float32)

    def step(self, image: np.ndarray, imu: np.ndarray | None, dt: float) -> np.ndarray:
        state = np.zeros((1, self.state_size), np.float32) if self.state is None else self.state
        self._dt[0, 0] = dt
        feeds = {"image": image[None], "imu": self._zero_imu if imu is None else imu[None], "state": state,
                 "dt": self._dt}
        command, state = self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})
        self.state = state
        return command[0].astype(np.float64)


class TorchRuntime(Runtime):
    def __init__(self, pilot: Any):
        super().__init__()
        import torch

        torch.set_num_threads(1)  # as for onnxruntime: one sample per step
        self.pilot = pilot.eval()
        cfg = pilot.config
        self.image_size = (cfg.image_height, cfg.image_width)
        self.uses_imu = cfg.use_imu
        self.state_size = pilot.state_size
        self.trained_fov = trained_fov_of(pilot)

    def step(self, image: np.ndarray, imu: np.ndarray | None, dt: float) -> np.ndarray:
        import torch

        imu = np.zeros(6, np.float32) if imu is None else imu
        state = None if self.state is None else torch.from_numpy(self.state)
        with torch.inference_mode():
            out, next_state = self.pilot.step(
                {"image": torch.from_numpy(np.ascontiguousarray(image)[None]), "imu": torch.from_numpy(imu[None])},
                state, torch.tensor([[dt]], dtype=torch.float32))
        self.state = next_state.numpy()
        return out[0].numpy().astype(np.float64)


def trained_fov_of(pilot: Any) -> tuple[float, float] | None:
    fov = getattr(pilot.config, "camera_fov_deg", None)
    return None if fov is None else (float(fov[0]), float(fov[1]))


def runtime_for(pilot: Any, kind: str = DEFAULT_RUNTIME) -> Runtime:
    """Make a runtime for an in-memory pilot (liquid_pilot.nn.Pilot): exported to ONNX for ``onnx``."""
    if kind not in RUNTIMES:
        raise ValueError(f"unknown runtime {kind!r}; choose one of {', '.join(RUNTIMES)}")
    if kind == "torch":
        return TorchRuntime(pilot)
    from liquid_pilot.nn.export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pilot.onnx"
        export_onnx(pilot, path, batch=1)
        return OnnxRuntime(path, trained_fov_of(pilot))


def load_runtime(path: str | os.PathLike, kind: str = DEFAULT_RUNTIME) -> Runtime:
    """Make a runtime for a checkpoint (.pt; raises CheckpointError naming the file) or an exported .onnx graph."""
    if kind not in RUNTIMES:
        raise ValueError(f"unknown runtime {kind!r}; choose one of {', '.join(RUNTIMES)}")
    if Path(path).suffix == ".onnx":
        if kind != "onnx":
            raise ValueError(f"{path}: an ONNX graph runs only in the onnx runtime")
        if not Path(path).is_file():
            raise ValueError(f"{path}: no such file")
        try:
            return OnnxRuntime(path)
        except ValueError:
            raise
        except Exception as exc:  # onnxruntime raises its own types for damaged graphs
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{path}: not a readable ONNX pilot (truncated or corrupted?): {first}") from None
    from liquid_pilot.nn.checkpoint import load_pilot

    return runtime_for(load_pilot(path), kind)
