"""Writing the flight artefact (``liquid_pilot.flight.artefact`` reads it): a checkpoint as one ``.onnx`` file."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from liquid_pilot.flight.artefact import FORMAT, PREFIX, VERSION, selftest_inputs
from liquid_pilot.flight.image import PREPROCESSING
from liquid_pilot.flight.runtime import onnx_session
from liquid_pilot.nn.checkpoint import load_pilot, read_checkpoint
from liquid_pilot.nn.export import export_onnx


def write_artefact(checkpoint: str | os.PathLike, path: str | os.PathLike) -> dict[str, Any]:
    """Export a checkpoint as a self-contained flight artefact; return the metadata written."""
    import onnx

    payload = read_checkpoint(checkpoint)
    pilot = load_pilot(checkpoint)
    cfg = pilot.config
    with tempfile.TemporaryDirectory() as tmp:
        graph = Path(tmp) / "pilot.onnx"
        export_onnx(pilot, graph, batch=1)
        session = onnx_session(graph)
        feeds = selftest_inputs((cfg.image_height, cfg.image_width), pilot.state_size, cfg.use_imu)
        names = {i.name for i in session.get_inputs()}
        command, state = session.run(None, {k: v for k, v in feeds.items() if k in names})
        model = onnx.load(str(graph))
    extra = {k: v for k, v in payload.items() if k not in ("state_dict", "wiring", "sha256", "format", "version")}
    meta = {
        "format": FORMAT, "version": str(VERSION), "preprocessing": PREPROCESSING,
        "camera_fov_deg": json.dumps(cfg.camera_fov_deg),
        "checkpoint": json.dumps(extra, default=str),  # config, provenance, topics and conventions as saved
        "checkpoint_sha256": payload["sha256"],
        "selftest": json.dumps({"command": command.tolist(), "state": state.tolist()}),
    }
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = PREFIX + key, value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f".{path.name}.tmp")
    onnx.save(model, str(tmp_path))
    os.replace(tmp_path, path)  # atomic: an interrupted export never leaves half a file
    return meta
