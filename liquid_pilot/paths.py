"""Where the package's data folders (config/, models/, sim/, launch/) are.

In a source checkout, an editable install or a colcon ``--symlink-install`` they sit beside the
package; a wheel puts them in ``<prefix>/share/liquid_pilot/`` of the prefix it is installed in, and
so does a colcon install (``install/liquid_pilot/share/liquid_pilot/``). The data of the prefix the
code runs from comes first, then ``sys.prefix`` and the ROS prefixes on ``AMENT_PREFIX_PATH``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "liquid_pilot"


def data_dir(name: str) -> Path:
    """Return the first existing ``name`` folder among the places the package's data can be."""
    here = Path(__file__).absolute().parent
    candidates = [here.resolve().parent / name]
    # <prefix>/lib/pythonX.Y/site-packages/liquid_pilot/ (or dist-packages) -> <prefix>/share/liquid_pilot/
    candidates += [prefix / "share" / PACKAGE / name for prefix in here.parents[3:4]]
    prefixes = [sys.prefix, *os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)]
    candidates += [Path(p) / "share" / PACKAGE / name for p in prefixes if p]
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(f"liquid_pilot data folder {name!r} not found; looked in: "
                            + ", ".join(str(c) for c in candidates))
