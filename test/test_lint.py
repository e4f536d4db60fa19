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


def test_the_layers_import_only_downward() -> None:
    """flight/: no PyTorch or above it; bridge/: no ROS, no simulator; sim/: no bridge; data/: no simulator."""
    import ast

    forbidden = {"flight": ("nn", "sim", "ros", "bridge", "data", "train", "eval", "harness", "models"),
                 "nn": ("sim", "ros", "bridge", "data", "train", "eval", "harness"),
                 "bridge": ("nn", "sim", "ros", "data", "train", "eval", "harness"),
                 "sim": ("bridge", "ros", "data", "train", "eval", "harness", "models"),
                 "data": ("sim", "ros", "bridge", "train", "eval", "harness")}
    found = []
    for package, below in forbidden.items():
        for path in sorted((ROOT / "liquid_pilot" / package).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                for name in names:
                    parts = name.split(".")
                    if parts[0] == "liquid_pilot" and len(parts) > 1 and parts[1] in below:
                        found.append(f"{path.relative_to(ROOT)}: imports {name}")
    assert found == []
