"""The ``liquid-pilot`` command as a user runs it: a separate process, its output captured."""
from __future__ import annotations

import subprocess
import sys


def cli(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``liquid-pilot ARGS`` in a new Python process and return its exit code, stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "liquid_pilot.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
