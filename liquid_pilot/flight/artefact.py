"""The flight artefact: one ``.onnx`` file that carries everything a drone needs to fly a pilot.

``liquid-pilot export MODEL --onnx pilot.onnx`` writes it on the workstation (``nn.artefact``: PyTorch and
``onnx`` needed there); ``pilot_node`` flies it with onnxruntime alone (no PyTorch, no simulator); this module
reads and checks it. Besides
the single-step graph (input normalisation and command scaling are inside it), the file's
metadata holds the architecture, the image preprocessing, the training camera's field of view,
the checkpoint's topics, conventions and provenance, and a self-test: the outputs recorded at
export for fixed inputs. Loading runs the self-test, so damaged weights, which onnxruntime
would otherwise run silently, are refused with one line.
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from liquid_pilot.flight.image import PREPROCESSING

FORMAT = "liquid_pilot.flight"
VERSION = 1
PREFIX = "liquid_pilot."
SELFTEST_TOLERANCE = 1e-4  # absolute, on commands and states of order one


class ArtefactError(ValueError):
    """An artefact that cannot be flown; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str):
        super().__init__(f"{path}: {problem}")


def selftest_inputs(image_size: tuple[int, int], state_size: int, uses_imu: bool) -> dict[str, np.ndarray]:
    """Return fixed, varied inputs for the self-test (no random generator: the same on every machine)."""
    h, w = image_size
    image = ((np.arange(h * w * 3, dtype=np.int64).reshape(1, h, w, 3) * 37) % 256).astype(np.uint8)
    feeds = {"image": image, "state": np.linspace(-0.5, 0.5, state_size, dtype=np.float32).reshape(1, -1),
             "dt": np.full((1, 1), 0.0625, np.float32)}
    if uses_imu:
        feeds["imu"] = np.array([[0.1, -0.2, 0.3, 0.5, -0.4, 9.81]], np.float32)
    return feeds


def read_metadata(session: Any) -> dict[str, str]:
    """Return the artefact's metadata (keys without the prefix); empty for a plain exported graph."""
    props = session.get_modelmeta().custom_metadata_map
    return {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}


def check_artefact(session: Any, meta: dict[str, str], path: str | os.PathLike, image_size: tuple[int, int],
                   state_size: int, uses_imu: bool) -> tuple[float, float] | None:
    """Check an artefact's format, version and self-test; return its training camera's field of view."""
    if meta.get("format") != FORMAT:
        raise ArtefactError(path, f"not a liquid_pilot flight artefact (format {meta.get('format')!r})")
    if meta.get("version") != str(VERSION):
        raise ArtefactError(path, f"artefact version {meta.get('version')!r} is not supported (this liquid_pilot "
                                  f"reads version {VERSION}); export it again with this version")
    if meta.get("preprocessing") != PREPROCESSING:
        raise ArtefactError(path, f"preprocessing {meta.get('preprocessing')!r} is not this liquid_pilot's "
                                  f"{PREPROCESSING!r}; export it again")
    try:
        expected = json.loads(meta["selftest"])
        fov = json.loads(meta.get("camera_fov_deg", "null"))
    except (KeyError, ValueError) as exc:
        raise ArtefactError(path, f"damaged metadata ({exc}); export it again") from None
    feeds = selftest_inputs(image_size, state_size, uses_imu)
    names = {i.name for i in session.get_inputs()}
    command, state = session.run(None, {k: v for k, v in feeds.items() if k in names})
    for name, got in (("command", command), ("state", state)):
        want = np.asarray(expected.get(name), dtype=np.float32)
        if want.shape != got.shape or not np.allclose(got, want, rtol=0, atol=SELFTEST_TOLERANCE):
            raise ArtefactError(path, f"the graph's {name} does not match its self-test recorded at export: the "
                                      "weights are damaged or do not belong to this metadata; export it again")
    return None if fov is None else (float(fov[0]), float(fov[1]))
