"""Model files: the shipped default pilot and the one door from any model file to a flying runtime.

``load_runtime`` serves every flight: ``pilot_node``, the simulator's pilot policy (eval, the demo, ``sim``),
replay and the autopilot harness. An ``.onnx`` flight artefact needs onnxruntime alone (``flight.runtime``); a
checkpoint (``.pt``) needs PyTorch (``nn.runtime``), imported only then, so the onboard install (no PyTorch)
flies artefacts through the same door.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from liquid_pilot.flight.runtime import DEFAULT_RUNTIME, RUNTIMES, OnnxRuntime, Runtime

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


def load_runtime(path: str | os.PathLike, kind: str = DEFAULT_RUNTIME) -> Runtime:
    """Make a runtime for a checkpoint (.pt; raises CheckpointError naming the file) or an exported .onnx graph."""
    if kind not in RUNTIMES:
        raise ValueError(f"unknown runtime {kind!r}; choose one of {', '.join(RUNTIMES)}")
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix in (".pt", ".onnx"))
        holds = f"; it holds {', '.join(inside[:5])}{', ...' if len(inside) > 5 else ''}" if inside else ""
        raise ValueError(f"{path}: a directory, not a model file (a checkpoint .pt or a flight artefact .onnx)"
                         f"{holds}")
    if path.suffix == ".onnx":
        if kind != "onnx":
            raise ValueError(f"{path}: an ONNX graph runs only in the onnx runtime")
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        try:
            return OnnxRuntime(path)
        except ValueError:
            raise
        except Exception as exc:  # onnxruntime raises its own types for damaged graphs
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{path}: not a readable ONNX pilot (truncated or corrupted?): {first}") from None
    from liquid_pilot.nn.checkpoint import load_pilot
    from liquid_pilot.nn.runtime import runtime_for

    return runtime_for(load_pilot(path), kind)


def describe_model(path: str | os.PathLike, runtime: Runtime) -> dict[str, Any]:
    """Describe the model as diagnostics name it: file, kind, fingerprint, inputs and provenance.

    An artefact's provenance comes from its metadata (no PyTorch); a checkpoint's from the file (PyTorch
    is loaded for it anyway). Keys with nothing recorded are left out.
    """
    path = Path(path)
    info: dict[str, Any] = {"file": str(path), "inputs": f"{runtime.image_size[1]}x{runtime.image_size[0]} RGB"
                            f"{' + IMU' if runtime.uses_imu else ''}", "neurons": runtime.state_size}
    provenance: dict[str, Any] = {}
    metadata = getattr(runtime, "metadata", None)
    if path.suffix == ".onnx":
        info["kind"] = "flight artefact" if metadata else "ONNX graph"
        if metadata:
            info["sha256"] = metadata.get("checkpoint_sha256")
            try:
                provenance = json.loads(metadata.get("checkpoint", "{}")).get("provenance") or {}
            except ValueError:
                provenance = {}
    else:
        from liquid_pilot.nn.checkpoint import read_checkpoint

        payload = read_checkpoint(path)
        info["kind"] = "checkpoint"
        info["sha256"] = payload.get("sha256")
        provenance = payload.get("provenance") or {}
    for key in ("trained_with", "epoch", "val_loss", "flights", "frames", "camera_hz"):
        if provenance.get(key) is not None:
            info[key] = provenance[key]
    return {k: v for k, v in info.items() if v is not None}
