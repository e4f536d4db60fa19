"""One-file pilot checkpoints: weights, architecture, wiring, normalisation, provenance, inputs.

``inputs`` says what the pilot was trained to read, so that replay (and a user) reads a bag the
same way: the topics, the time source, the body frames the recordings used (converted to FLU)
and the image preprocessing. Checkpoints written before it have none.

The file is a ``torch.save`` archive read back with ``weights_only=True`` (no code runs
on load). A SHA-256 over the weights catches silent corruption; the stored wiring is
compared with the one the seed regenerates, so a changed wiring rule cannot load quietly.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liquid_pilot.nn.policy import Pilot, PilotConfig

FORMAT = "liquid_pilot.pilot"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str):
        super().__init__(f"{path}: {problem}")


def _digest(state: dict[str, torch.Tensor]) -> str:
    sha = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        sha.update(name.encode())
        sha.update(str(tuple(tensor.shape)).encode())
        sha.update(tensor.numpy().tobytes())
    return sha.hexdigest()


def _wiring_arrays(pilot: Pilot) -> dict[str, np.ndarray] | None:
    wiring = getattr(pilot.head, "wiring", None)
    if wiring is None:
        return None
    return {"sensory_adjacency": wiring.sensory_adjacency, "adjacency": wiring.adjacency}


def save_pilot(pilot: Pilot, path: str | os.PathLike, provenance: dict[str, Any] | None = None,
               inputs: dict[str, Any] | None = None) -> None:
    """Write atomically: an interrupted save never leaves a half-written file at ``path``.

    ``inputs``: how the training data were read (topics, time_source, command_frame, imu_frame,
    preprocessing); ``read_inputs`` gives it back.
    """
    state = {k: v.detach().cpu() for k, v in pilot.state_dict().items()}
    wiring = _wiring_arrays(pilot)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": dataclasses.asdict(pilot.config),
        "state_dict": state,
        "sha256": _digest(state),
        "wiring": None if wiring is None else {k: torch.from_numpy(v.copy()) for k, v in wiring.items()},
        "provenance": dict(provenance or {}),
        "inputs": dict(inputs or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; a checkpoint is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate the raw payload (config, state_dict, provenance, ...)."""
    if not Path(path).is_file():
        raise CheckpointError(path, "no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged archives
        raise CheckpointError(path, f"not a readable checkpoint (truncated or corrupted?): {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(path, f"not a liquid_pilot checkpoint (expected format {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise CheckpointError(path, f"format version {payload.get('version')!r} is not supported "
                                    f"(this liquid_pilot reads version {VERSION})")
    missing = [k for k in ("config", "state_dict", "sha256", "provenance") if k not in payload]
    if missing:
        raise CheckpointError(path, f"missing fields: {', '.join(missing)}")
    if _digest(payload["state_dict"]) != payload["sha256"]:
        raise CheckpointError(path, "weights do not match their checksum: the file is corrupted")
    return payload


def read_inputs(path: str | os.PathLike) -> dict[str, Any]:
    """How the pilot's training data were read ({} for a checkpoint written before this was recorded)."""
    inputs = read_checkpoint(path).get("inputs") or {}
    return inputs if isinstance(inputs, dict) else {}


def load_pilot(path: str | os.PathLike) -> Pilot:
    """Load a pilot in eval mode, or raise ``CheckpointError`` naming the file and the problem."""
    payload = read_checkpoint(path)
    fields = {f.name for f in dataclasses.fields(PilotConfig)}
    unknown = sorted(set(payload["config"]) - fields)
    if unknown:
        raise CheckpointError(path, f"unknown architecture fields {unknown} (written by a newer liquid_pilot?)")
    try:
        pilot = Pilot(PilotConfig(**payload["config"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f"invalid architecture: {exc}") from None
    stored, rebuilt = payload.get("wiring"), _wiring_arrays(pilot)
    if (stored is None) != (rebuilt is None) or (rebuilt is not None and any(
            not np.array_equal(stored[k].numpy(), v) for k, v in rebuilt.items())):
        raise CheckpointError(path, "stored wiring differs from the one its seed generates")
    try:
        pilot.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(path, f"weights do not match the architecture: {exc}") from None
    return pilot.eval()
