"""The network, one step per camera frame, its state kept between steps: the runtimes a drone needs.

``OnnxRuntime`` runs an exported single-step graph (a flight artefact, ``flight.artefact``, is checked on
loading) in onnxruntime on one thread. Nothing here needs PyTorch: a checkpoint (``.pt``) becomes a runtime in
``liquid_pilot.nn.runtime`` (exported to ONNX, or stepped eagerly by ``torch``), and ``liquid_pilot.models``
is the one door from any model file to a runtime.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

RUNTIMES = ("onnx", "torch")  # torch: a checkpoint stepped eagerly (nn.runtime); onnx: about four times faster
DEFAULT_RUNTIME = "onnx"


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
        self._zero_imu = np.zeros((1, 6), np.float32)
        self._bound = _Bound.of(self.session)

    def step(self, image: np.ndarray, imu: np.ndarray | None, dt: float) -> np.ndarray:
        if self._bound is None:
            command, self.state = self.evaluate(image, imu, self.state, dt)
            return command
        command, self.state = self._bound.run(image, self._zero_imu[0] if imu is None else imu, self.state, dt)
        return command

    def evaluate(self, image: np.ndarray, imu: np.ndarray | None, state: np.ndarray | None,
                 dt: float) -> tuple[np.ndarray, np.ndarray]:
        """One step from ``state`` (None: fresh), keeping nothing: (command (4,) float64, next state).

        onnxruntime sessions may run on several threads at once, so another thread may evaluate while
        the pilot steps (the saliency map).
        """
        state = np.zeros((1, self.state_size), np.float32) if state is None else state
        feeds = {"image": image[None], "imu": self._zero_imu if imu is None else imu[None], "state": state,
                 "dt": np.full((1, 1), dt, np.float32)}
        command, state = self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})
        return command[0].astype(np.float64), state


class _Bound:
    """The step through onnxruntime's I/O binding: inputs and outputs in buffers bound once.

    The same graph and arithmetic as ``session.run`` (the same outputs, bit for bit), without converting the
    inputs and allocating the outputs at every call: at the camera's pace, with the caches cold between frames,
    that saves about 80 of 560 microseconds a step on our 2-core machine (docs/benchmarks.md). One caller at a
    time (the step thread): the buffers are shared, so ``OnnxRuntime.evaluate`` keeps ``session.run``, which
    other threads may call at once. The state and the command leave as copies: nothing the caller keeps is
    overwritten by the next step.
    """

    def __init__(self, session: Any, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]):
        import onnxruntime

        self.session, self.inputs, self.outputs = session, inputs, outputs
        self.binding = session.io_binding()
        for name, array in inputs.items():
            self.binding.bind_ortvalue_input(name, onnxruntime.OrtValue.ortvalue_from_numpy(array))
        for name, array in outputs.items():
            self.binding.bind_ortvalue_output(name, onnxruntime.OrtValue.ortvalue_from_numpy(array))

    @classmethod
    def of(cls, session: Any) -> _Bound | None:
        """Bind a step graph whose every input and output has a fixed size at batch 1; None otherwise."""
        def buffer(arg: Any) -> np.ndarray | None:
            shape = [1, *arg.shape[1:]]
            dtype = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8}.get(arg.type)
            if dtype is None or not all(isinstance(d, int) for d in shape):
                return None
            return np.zeros(shape, dtype)

        inputs = {arg.name: buffer(arg) for arg in session.get_inputs()}
        outputs = {arg.name: buffer(arg) for arg in session.get_outputs()}
        if set(outputs) != {"command", "next_state"} or not set(inputs) <= {"image", "imu", "state", "dt"} or \
                any(b is None for b in (*inputs.values(), *outputs.values())):
            return None
        return cls(session, inputs, outputs)

    def run(self, image: np.ndarray, imu: np.ndarray, state: np.ndarray | None,
            dt: float) -> tuple[np.ndarray, np.ndarray]:
        """One step from ``state`` (None: fresh): (command (4,) float64, next state (1, S))."""
        inputs = self.inputs
        inputs["image"][0] = image
        if "imu" in inputs:
            inputs["imu"][0] = imu
        if "state" in inputs:
            inputs["state"][:] = 0.0 if state is None else state
        if "dt" in inputs:
            inputs["dt"][0, 0] = dt
        self.session.run_with_iobinding(self.binding)
        return self.outputs["command"][0].astype(np.float64), self.outputs["next_state"].copy()
