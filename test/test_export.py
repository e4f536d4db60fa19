"""Exported single steps (onnxruntime, TorchScript) fly like the eager pilot."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from liquid_pilot.flight.runtime import OnnxPilot, OnnxRuntime
from liquid_pilot.nn.export import export_onnx, export_torchscript
from liquid_pilot.nn.policy import Pilot, PilotConfig

STEPS = 50


def _rollout(pilot: Pilot, step: callable) -> tuple[float, float]:
    """Max |difference| of commands and states between eager and ``step`` over 50 steps."""
    g = torch.Generator().manual_seed(0)
    state = other = pilot.initial_state(2)
    worst_command = worst_state = 0.0
    for _ in range(STEPS):
        image = torch.randint(0, 256, (2, 64, 64, 3), generator=g, dtype=torch.uint8)
        imu = torch.randn(2, 6, generator=g)
        dt = 0.03 + 0.07 * torch.rand(2, 1, generator=g)  # irregular control periods
        with torch.no_grad():
            command, state = pilot.step({"image": image, "imu": imu}, state, dt)
        out, other = step(image, imu, other, dt)
        worst_command = max(worst_command, float(np.abs(np.asarray(out) - command.numpy()).max()))
        if state.numel():
            worst_state = max(worst_state, float(np.abs(np.asarray(other) - state.numpy()).max()))
    return worst_command, worst_state


@pytest.mark.parametrize("head", ["cfc_ncp", "ltc_ncp", "cfc", "lstm", "gru", "ff"])
@pytest.mark.parametrize("batch", [None, 2])  # dynamic, and fixed as the flight runtime's (there 1)
def test_onnx_matches_eager_over_a_rollout(head: str, batch: int | None, tmp_path: Path) -> None:
    pilot = Pilot(PilotConfig(head=head), seed=1).eval()
    export_onnx(pilot, tmp_path / "p.onnx", batch=batch)
    runner = OnnxPilot(tmp_path / "p.onnx")
    assert runner.state_size == pilot.state_size

    def step(image, imu, state, dt):  # noqa: ANN001, ANN202
        return runner.step(image.numpy(), imu.numpy(), np.asarray(state, dtype=np.float32), dt.numpy())

    assert max(_rollout(pilot, step)) < 1e-5


@pytest.mark.parametrize("head", ["cfc_ncp", "ltc_ncp"])
def test_torchscript_matches_eager_over_a_rollout(head: str, tmp_path: Path) -> None:
    pilot = Pilot(PilotConfig(head=head), seed=1).eval()
    export_torchscript(pilot, tmp_path / "p.ts")
    module = torch.jit.load(str(tmp_path / "p.ts"))

    def step(image, imu, state, dt):  # noqa: ANN001, ANN202
        with torch.no_grad():
            return module(image, imu, state, dt)

    assert max(_rollout(pilot, step)) < 1e-5


def test_a_frame_normalised_pilot_exports_as_it_flies(tmp_path: Path) -> None:
    """frame_norm (each frame standardised by its own statistics) lives in the model: the ONNX step carries it."""
    pilot = Pilot(PilotConfig(use_imu=False, frame_norm=True), seed=1).eval()
    export_onnx(pilot, tmp_path / "p.onnx")
    runner = OnnxPilot(tmp_path / "p.onnx")

    def step(image, imu, state, dt):  # noqa: ANN001, ANN202
        return runner.step(image.numpy(), None, np.asarray(state, dtype=np.float32), dt.numpy())

    assert max(_rollout(pilot, step)) < 1e-5


def test_onnx_pilot_without_imu_has_no_imu_input(tmp_path: Path) -> None:
    pilot = Pilot(PilotConfig(use_imu=False)).eval()
    export_onnx(pilot, tmp_path / "p.onnx")
    runner = OnnxPilot(tmp_path / "p.onnx")
    assert runner.inputs == {"image", "state", "dt"}
    command, state = runner.step(np.zeros((1, 64, 64, 3), np.uint8), None, np.zeros((1, 19), np.float32),
                                 np.full((1, 1), 0.06, np.float32))
    with torch.no_grad():
        expected, _ = pilot.step({"image": torch.zeros(1, 64, 64, 3, dtype=torch.uint8)}, None, 0.06)
    np.testing.assert_allclose(command, expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("head", ["cfc_ncp", "ltc_ncp", "lstm", "ff"])
@pytest.mark.parametrize("use_imu", [False, True])
def test_the_flight_runtime_steps_through_bound_buffers_bit_for_bit(head: str, use_imu: bool, tmp_path: Path) -> None:
    """The runtime's step (onnxruntime I/O binding) is session.run's step exactly, and nothing it returns is reused."""
    pilot = Pilot(PilotConfig(head=head, use_imu=use_imu), seed=2).eval()
    export_onnx(pilot, tmp_path / "p.onnx", batch=1)
    runtime = OnnxRuntime(tmp_path / "p.onnx")
    assert runtime._bound is not None  # a flight graph (batch 1) takes the bound path
    rng = np.random.default_rng(0)
    state, kept = None, []
    for i in range(20):
        image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        imu = rng.normal(size=6).astype(np.float32) if use_imu else None
        dt = 0.0 if i == 0 else float(rng.uniform(0.03, 0.1))
        expected, state = runtime.evaluate(image, imu, state, dt)  # session.run, the state passed in
        command = runtime.step(image, imu, dt)
        assert np.array_equal(command, expected) and np.array_equal(runtime.state, state)
        kept.append((command, runtime.state, state.copy()))
    for command, got, want in kept:  # a later step overwrote none of what an earlier one returned
        assert np.array_equal(got, want)
    assert len({id(got) for _, got, _ in kept}) == len(kept)
    runtime.reset()
    first = runtime.step(image, imu, 0.0)
    assert np.array_equal(first, runtime.evaluate(image, imu, None, 0.0)[0])  # reset: from a zero state again
