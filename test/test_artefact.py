"""The flight artefact: an exported .onnx that flies without PyTorch, equal to its checkpoint, refused when damaged."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_support import cli

from liquid_pilot.harness.collect import collect
from liquid_pilot.data.reader import read_flight
from liquid_pilot.models import load_runtime
from liquid_pilot.nn.checkpoint import save_pilot
from liquid_pilot.nn.policy import Pilot, PilotConfig
from liquid_pilot.sim.config import load_scenario
from liquid_pilot.train.replay import predict

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("artefact")
    checkpoint = out / "pilot.pt"
    save_pilot(Pilot(PilotConfig(camera_fov_deg=[80.0, 80.0]), seed=4), checkpoint, provenance={"data": "test"})
    result = cli("export", str(checkpoint), "--onnx", str(out / "pilot.onnx"))
    assert result.returncode == 0, result.stderr
    return checkpoint, out / "pilot.onnx"


def test_the_artefact_flies_a_recorded_flight_like_its_checkpoint(exported: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, artefact = exported
    collect(load_scenario("forest_summer").with_overrides({"task.hold_s": 0.5}), 1, tmp_path, seed=31)
    flight = read_flight(next(p for p in tmp_path.iterdir() if not p.name.startswith(".")), size=(64, 64))
    assert len(flight.images) > 30
    eager = predict(load_runtime(checkpoint, "torch"), flight)  # PyTorch, as trained
    flown = predict(load_runtime(artefact), flight)  # onnxruntime alone, through the same flight core
    assert np.abs(eager).max() > 1e-3
    np.testing.assert_allclose(flown, eager, rtol=0, atol=1e-5)


def test_the_artefact_carries_what_flight_needs(exported: tuple[Path, Path]) -> None:
    _, artefact = exported
    runtime = load_runtime(artefact)
    assert runtime.image_size == (64, 64) and runtime.uses_imu and runtime.state_size == 19
    assert runtime.trained_fov == (80.0, 80.0)
    assert runtime.metadata["preprocessing"] == "centre_crop_resize"
    assert '"data": "test"' in runtime.metadata["checkpoint"]  # the provenance travels with it


def test_loading_the_artefact_needs_neither_torch_nor_the_simulator(exported: tuple[Path, Path]) -> None:
    _, artefact = exported
    code = (f"import sys; from liquid_pilot.models import load_runtime; load_runtime({str(artefact)!r}); "
            "print(sorted(m for m in ('torch', 'pybullet', 'liquid_pilot.sim', 'onnx') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("damage", ["truncated", "flipped", "not_onnx", "other_metadata"])
def test_a_damaged_artefact_is_one_line_and_exit_code_2(exported: tuple[Path, Path], tmp_path: Path,
                                                        damage: str) -> None:
    _, artefact = exported
    data = bytearray(artefact.read_bytes())
    bad = tmp_path / "bad.onnx"
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped":  # weights changed in place: onnxruntime alone would run them silently
        import onnx

        # The sign and exponent byte of three weights of the largest tensor (little-endian float32): where a
        # fixed offset lands moves with the graph's layout, and a flip in a low mantissa byte may move the
        # outputs less than the self-test's tolerance, which flying would not notice either.
        weights = max(onnx.load(str(artefact)).graph.initializer, key=lambda t: len(t.raw_data)).raw_data
        start = bytes(data).find(weights)
        assert start >= 0 and len(weights) >= 4096
        for index in (100, 500, 900):
            data[start + 4 * index + 3] ^= 0x5A
    elif damage == "not_onnx":
        data = bytearray(b"hello, not a graph" * 10)
    else:  # another pilot's graph carrying this one's metadata
        other = tmp_path / "other.pt"
        save_pilot(Pilot(PilotConfig(), seed=9), other)
        assert cli("export", str(other), "--onnx", str(tmp_path / "other.onnx")).returncode == 0
        import onnx

        model = onnx.load(str(tmp_path / "other.onnx"))
        mine = {p.key: p.value for p in onnx.load(str(artefact)).metadata_props}
        for prop in model.metadata_props:
            prop.value = mine[prop.key]
        onnx.save(model, str(bad))
    if damage != "other_metadata":
        bad.write_bytes(bytes(data))
    env = {**os.environ, "ROS_DOMAIN_ID": str(1 + os.getpid() % 100), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    result = subprocess.run([sys.executable, "-m", "liquid_pilot.ros.pilot_node", "--ros-args", "-p",
                             f"model:={bad}"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(bad) in errors[0], result.stderr
    assert "Traceback" not in result.stderr
