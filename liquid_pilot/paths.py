"""Where the package's data folders (config/, models/, sim/, launch/) are.

In a source checkout or editable install they sit beside the package; a wheel puts them in
``<prefix>/share/liquid_pilot/``; a ROS 2 install in ``<ament prefix>/share/liquid_pilot/``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "liquid_pilot"


def data_dir(name: str) -> Path:
    """Return the first existing ``name`` folder among the places the package's data can be."""
    candidates = [Path(__file__).resolve().parent.parent / name, Path(sys.prefix) / "share" / PACKAGE / name]
    candidates += [Path(p) / "share" / PACKAGE / name for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
                   if p]
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(f"liquid_pilot data folder {name!r} not found; looked in: "
                            + ", ".join(str(c) for c in candidates))
