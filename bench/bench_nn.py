"""Speed and size of the liquid network, against ncps 1.0.1 measured in the same run.

Prints one JSON object per line: metric, value, unit, and where compared, baseline
(ncps) and ratio (baseline / value: how many times faster). All timings use one thread.
Usage: python bench/bench_nn.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from ncps.torch import LTCCell, WiredCfCCell
from ncps.wirings import AutoNCP

from liquid_pilot.nn.cells import LTC, WiredCfC
from liquid_pilot.flight.runtime import OnnxPilot
from liquid_pilot.models import default_model
from liquid_pilot.nn.export import example_inputs, export_onnx, export_torchscript
from liquid_pilot.nn.checkpoint import load_pilot
from liquid_pilot.nn.wiring import auto_ncp

SENSORY = 32  # the shipped pilot's head input: 32 CNN features (camera only; a camera+IMU pilot's is 38)


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 50, batch: int = 20) -> float:
    """Median seconds per call over ``repeats`` calls, timed in groups of ``batch`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(max(repeats // batch, 5)):
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - start) / batch)
    return statistics.median(samples)


def compare(baseline: Callable[[], object], ours: Callable[[], object], repeats: int, warmup: int = 50,
            batch: int = 20) -> tuple[float, float]:
    """Median seconds per call of both, timed in alternating groups so drift hits both alike."""
    for _ in range(warmup):
        baseline()
        ours()
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(max(repeats // batch, 5)):
        for fn, out in ((baseline, samples[0]), (ours, samples[1])):
            start = time.perf_counter()
            for _ in range(batch):
                fn()
            out.append((time.perf_counter() - start) / batch)
    return statistics.median(samples[0]), statistics.median(samples[1])


def emit(metric: str, value: float, unit: str, baseline: float | None = None, **extra: object) -> None:
    row: dict[str, object] = {"metric": metric, "value": round(value, 3), "unit": unit}
    if baseline is not None:
        row.update(baseline=round(baseline, 3), ratio=round(baseline / value, 2))
    row.update(extra)
    print(json.dumps(row), flush=True)


def head_steps(repeats: int) -> None:
    x, h, dt = torch.randn(1, SENSORY), torch.zeros(1, 19), torch.ones(1, 1)
    ours_cfc, ours_ltc = WiredCfC(auto_ncp(SENSORY)), LTC(auto_ncp(SENSORY))
    wiring = AutoNCP(19, 4)
    wiring.build(SENSORY)
    ref_cfc = WiredCfCCell(None, wiring)
    wiring = AutoNCP(19, 4)
    wiring.build(SENSORY)
    ref_ltc = LTCCell(wiring, implicit_param_constraints=True)
    with torch.inference_mode():
        for name, ours, ref in (("cfc", ours_cfc, ref_cfc), ("ltc", ours_ltc, ref_ltc)):
            base, value = compare(lambda: ref(x, h, dt), lambda: ours.step(x, h, dt), repeats)
            emit(f"{name}_ncp_head_step_eager", value * 1e6, "us", base * 1e6, batch=1, baseline_impl="ncps 1.0.1")

    class HeadStep(torch.nn.Module):
        def __init__(self, head: torch.nn.Module):
            super().__init__()
            self.head = head

        def forward(self, x: torch.Tensor, h: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.head.step(x, h, dt)

    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        for name, head in (("cfc", ours_cfc), ("ltc", ours_ltc)):
            path = str(Path(tmp) / f"{name}.onnx")
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(HeadStep(head), (x, h, dt), path, input_names=["x", "h", "dt"], dynamo=False)
            session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            feeds = {"x": x.numpy(), "h": h.numpy(), "dt": dt.numpy()}
            value = median_time(lambda: session.run(None, feeds), repeats) * 1e6
            emit(f"{name}_ncp_head_step_onnx", value, "us", batch=1, runtime="onnxruntime")


def pilot_steps(repeats: int) -> None:
    """The shipped pilot's whole step (models/cfc_ncp.pt: camera only, each frame standardised)."""
    pilot = load_pilot(default_model()).eval()
    emit("pilot_parameters", pilot.parameter_counts()["total"], "params", target="<= 25000")
    image, imu, state, dt = example_inputs(pilot)
    image = torch.randint(0, 256, image.shape, dtype=torch.uint8)
    with torch.inference_mode():
        eager = median_time(lambda: pilot.step({"image": image, "imu": imu}, state, dt), repeats // 4)
    emit("pilot_step_eager", eager * 1e3, "ms", image="64x64")
    with tempfile.TemporaryDirectory() as tmp:
        export_torchscript(pilot, Path(tmp) / "p.ts")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.load(str(Path(tmp) / "p.ts"))
        with torch.inference_mode():
            value = median_time(lambda: scripted(image, imu, state, dt), repeats // 4)
        emit("pilot_step_torchscript", value * 1e3, "ms", image="64x64")
        export_onnx(pilot, Path(tmp) / "p.onnx")
        runner = OnnxPilot(Path(tmp) / "p.onnx")
        args = (image.numpy(), imu.numpy(), state.numpy(), dt.numpy())
        value = median_time(lambda: runner.step(*args), repeats // 4)
        emit("pilot_step_onnx", value * 1e3, "ms", image="64x64", runtime="onnxruntime", target="<= 1")


def training(iterations: int) -> None:
    batch, steps = 32, 64
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, steps, SENSORY, generator=g)
    dt = 0.5 + torch.rand(batch, steps, 1, generator=g)
    target = torch.randn(batch, steps, 4, generator=g)
    ours = WiredCfC(auto_ncp(SENSORY))
    wiring = AutoNCP(19, 4)
    wiring.build(SENSORY)
    ref = WiredCfCCell(None, wiring)

    def ours_iteration() -> None:
        y, _ = ours.sequence(x, dt, torch.zeros(batch, 19))
        torch.nn.functional.mse_loss(y, target).backward()

    def ref_iteration() -> None:
        h, ys = torch.zeros(batch, 19), []
        for t in range(steps):
            y, h = ref(x[:, t], h, dt[:, t])
            ys.append(y)
        torch.nn.functional.mse_loss(torch.stack(ys, 1), target).backward()

    base, value = compare(ref_iteration, ours_iteration, iterations, warmup=3, batch=1)
    emit("cfc_ncp_head_train_iteration", value * 1e3, "ms", base * 1e3, batch=batch, steps=steps,
         **{"pass": "forward+backward", "baseline_impl": "ncps 1.0.1"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run with fewer repeats")
    args = parser.parse_args()
    torch.set_num_threads(1)
    np.random.seed(0)
    torch.manual_seed(0)
    head_steps(400 if args.quick else 4000)
    pilot_steps(400 if args.quick else 2000)
    training(5 if args.quick else 40)


if __name__ == "__main__":
    main()
