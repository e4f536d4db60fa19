"""The liquid-pilot command as a user runs it."""
import subprocess
import sys
from pathlib import Path

import pytest

from liquid_pilot.nn.checkpoint import save_pilot
from liquid_pilot.nn.policy import Pilot, PilotConfig


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "liquid_pilot.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_info_on_a_fresh_default_pilot() -> None:
    result = run("info")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "freshly initialised default" in out
    assert "sensory 38, inter 9, command 6, motor 4 (19 in total" in out
    total = sum(p.numel() for p in Pilot().parameters() if p.requires_grad)
    assert f"trainable parameters: {total:,}" in out
    assert "sensory->inter 304" in out and "sparsity 0.1" in out


def test_info_on_a_checkpoint_shows_its_provenance(tmp_path: Path) -> None:
    bags = [f"bags/flight_{k}" for k in range(100)]
    save_pilot(Pilot(PilotConfig(head="ltc_ncp")), tmp_path / "p.pt", {"trained_on": "summer forest", "data": bags})
    result = run("info", str(tmp_path / "p.pt"))
    assert result.returncode == 0, result.stderr
    assert "head: ltc_ncp" in result.stdout and "provenance.trained_on: summer forest" in result.stdout
    assert "provenance.data: 100 items: bags/flight_0, bags/flight_1, ..., bags/flight_99\n" in result.stdout


def test_bad_model_file_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    result = run("info", str(tmp_path / "junk.pt"))
    assert result.returncode == 2
    assert "junk.pt: not a readable checkpoint" in result.stderr and "Traceback" not in result.stderr


def test_collect_with_a_missing_driver_is_one_line(tmp_path: Path) -> None:
    result = run("collect", "--scenario", "search_left", "--search", "left", "--episodes", "1", "--out",
                 str(tmp_path / "bags"), "--driver", str(tmp_path / "nope.pt"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("pybullet build time")]
    assert errors == [f"error: {tmp_path / 'nope.pt'}: no such file"]


@pytest.mark.parametrize("extra,message", [
    ((), "--search-after-lost 1 resumes the expert's search turn: give --search left or right"),
    (("--search", "left", "--search-after-lost", "-2"),
     "--search-after-lost must be a positive number of seconds, got -2"),
])
def test_collect_search_after_lost_needs_a_search_and_a_positive_time(tmp_path: Path, extra: tuple,
                                                                      message: str) -> None:
    result = run("collect", "--episodes", "1", "--out", str(tmp_path / "bags"), "--search-after-lost", "1", *extra)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if not line.startswith("pybullet")] == [f"error: {message}"]
    assert not (tmp_path / "bags").exists()  # nothing flown


def test_wiring_draws_a_png(tmp_path: Path) -> None:
    out = tmp_path / "wiring.png"
    result = run("wiring", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_wiring_of_an_unwired_head_is_refused(tmp_path: Path) -> None:
    save_pilot(Pilot(PilotConfig(head="lstm")), tmp_path / "lstm.pt")
    result = run("wiring", str(tmp_path / "lstm.pt"), "--out", str(tmp_path / "w.png"))
    assert result.returncode != 0 and "'lstm' head has no wiring to draw" in result.stderr
    assert not (tmp_path / "w.png").exists()


def test_export_writes_both_formats(tmp_path: Path) -> None:
    save_pilot(Pilot(), tmp_path / "p.pt")
    result = run("export", str(tmp_path / "p.pt"), "--onnx", str(tmp_path / "p.onnx"),
                 "--torchscript", str(tmp_path / "p.ts"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "p.onnx").stat().st_size > 10_000 and (tmp_path / "p.ts").stat().st_size > 10_000


@pytest.mark.parametrize("args", [["info", "--bogus"], ["fly"]])
def test_usage_errors(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 2 and "usage: liquid-pilot" in result.stderr
