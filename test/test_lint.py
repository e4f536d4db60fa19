"""Style checks of a ROS 2 package (what ament_flake8 and ament_pep257 check), run with pip tools."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [str(ROOT / d) for d in ("liquid_pilot", "test", "bench", "setup.py") if (ROOT / d).exists()]


def test_flake8() -> None:
    result = subprocess.run([sys.executable, "-m", "flake8", *SOURCES], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pep257() -> None:
    # ament_pep257's default selection: docstrings may be absent, but present ones are well formed.
    ignore = "D100,D101,D102,D103,D104,D105,D106,D107"
    result = subprocess.run([sys.executable, "-m", "pydocstyle", "--convention=pep257", f"--add-ignore={ignore}",
                             str(ROOT / "liquid_pilot")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
