"""Cold caches: what the pilot's per-frame work costs at the camera's pace against back to back. JSON lines.

``pilot_node`` sleeps between camera frames; on a machine whose caches are emptied while a thread sleeps (a
virtual machine on shared hardware, like the one the project is developed on), everything it runs after a
frame arrives costs several times its warm cost. This benchmark says how much, on this machine, for work that
has nothing of ours in it (a one-node ONNX graph, a numpy addition) and for the node's own calls without ROS
(decoding a serialized 64x64 frame, the gate's admission, the pixels, the fit and the network step, the gate's
finish and tick), and for waking the step thread (``queue.SimpleQueue``, as the node does, and
``threading.Condition``). Each figure is the median over steps ``1/CAMERA_HZ`` apart (``paced``) or with no
gap (``back_to_back``); docs/benchmarks.md reads them.

    python bench/bench_cold.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from liquid_pilot.flight.codec import FLIGHT_TYPES, IMAGE_TYPE, Decoder, from_cdr, stamp_ns
from liquid_pilot.flight.core import FlightCore
from liquid_pilot.flight.gate import GateConfig
from liquid_pilot.flight.runtime import onnx_session
from liquid_pilot.models import load_runtime
from liquid_pilot.nn.checkpoint import save_pilot
from liquid_pilot.nn.policy import Pilot

CAMERA_HZ = 30.0


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    print(json.dumps({"metric": metric, "value": round(value, 1), "unit": unit, **extra}), flush=True)


def median_us(work: Callable[[], object], steps: int, gap: float, before: Callable[[], object] = lambda: None) -> float:
    """Median microseconds of ``work`` over ``steps`` calls ``gap`` seconds apart (the first tenth not counted)."""
    times = []
    for _ in range(steps):
        if gap:
            time.sleep(gap)
        before()
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return float(np.median(times[steps // 10:])) * 1e6


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def one_node_graph() -> Callable[[], object]:
    """A session on a graph of one Tanh over 19 floats: onnxruntime's own cost of a run."""
    node = helper.make_node("Tanh", ["x"], ["y"])
    graph = helper.make_graph([node], "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 19])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 19])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "one.onnx"
        onnx.save(model, str(path))
        session = onnx_session(path)
    x = np.zeros((1, 19), np.float32)
    return lambda: session.run(None, {"x": x})


def frame_path(runtime, steps: int, gap: float) -> dict[str, float]:  # noqa: ANN001
    """Median microseconds of each part of pilot_node's per-frame work, ``gap`` seconds apart."""
    clock = time.monotonic_ns
    core = FlightCore(runtime, GateConfig(), clock, lambda level, message: None)
    core.start()
    decoder = Decoder(runtime.image_size)
    image_type = FLIGHT_TYPES.types[IMAGE_TYPE]
    header_type = FLIGHT_TYPES.types["std_msgs/msg/Header"]
    time_type = FLIGHT_TYPES.types["builtin_interfaces/msg/Time"]
    rng = np.random.default_rng(0)
    parts: dict[str, list[float]] = {name: [] for name in
                                     ("message", "admit", "pixels", "fit_and_step", "finish_and_tick")}
    for _ in range(steps):
        now = clock()
        msg = image_type(header_type(time_type(now // 1_000_000_000, now % 1_000_000_000), "camera"), 64, 64, "rgb8", 0,
                         192, rng.integers(0, 256, 64 * 64 * 3, dtype=np.uint8))
        data = bytes(FLIGHT_TYPES.serialize_cdr(msg, IMAGE_TYPE))
        core.imu(np.array([0.0, 0.0, 0.0, 0.0, 0.0, 9.81]))
        if gap:
            time.sleep(gap)
        t0 = time.perf_counter()
        decoded = from_cdr(data, IMAGE_TYPE, "decode")
        t1 = time.perf_counter()
        with core.lock:
            admission = core.gate.admit(stamp_ns(decoded.header.stamp))
        t2 = time.perf_counter()
        rgb = decoder(decoded, IMAGE_TYPE)
        t3 = time.perf_counter()
        output = core.step(admission, rgb)
        t4 = time.perf_counter()
        with core.lock:
            core.gate.finish(admission, output)
            core.gate.tick()
        t5 = time.perf_counter()
        for name, a, b in zip(parts, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5)):
            parts[name].append(b - a)
    return {name: float(np.median(times[steps // 10:])) * 1e6 for name, times in parts.items()}


def wake_us(kind: str, steps: int, gap: float) -> float:
    """Median microseconds from handing a frame over to the waiting thread running, ``gap`` seconds apart."""
    latencies: list[float] = []
    if kind == "simple_queue":
        tokens: queue.SimpleQueue[float] = queue.SimpleQueue()

        def worker() -> None:
            for _ in range(steps):
                sent = tokens.get()
                latencies.append(time.perf_counter() - sent)

        def hand_over() -> None:
            tokens.put(time.perf_counter())
    else:
        ready, slot = threading.Condition(), [None]

        def worker() -> None:
            for _ in range(steps):
                with ready:
                    while slot[0] is None:
                        ready.wait()
                    sent, slot[0] = slot[0], None
                latencies.append(time.perf_counter() - sent)

        def hand_over() -> None:
            with ready:
                slot[0] = time.perf_counter()
                ready.notify()
    thread = threading.Thread(target=worker)
    thread.start()
    for _ in range(steps):
        time.sleep(gap)
        hand_over()
    thread.join()
    return float(np.median(latencies[steps // 10:])) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 steps per figure instead of 300")
    args = parser.parse_args()
    steps, gap = (60 if args.quick else 300), 1.0 / CAMERA_HZ
    pace = {"back_to_back": 0.0, "paced": gap}
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "pilot.pt"
        save_pilot(Pilot(seed=0), model)  # a fresh pilot: the same computation as a trained one
        runtime = load_runtime(model, "onnx")
    frame = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    run = one_node_graph()
    floats = np.zeros(1000, np.float32)
    for name, gap_s in pace.items():
        note = f"steps {1e3 * gap_s:.0f} ms apart" if gap_s else "no gap"
        emit(f"cold_one_node_graph_{name}", median_us(run, steps, gap_s), "us", note=note)
        emit(f"cold_numpy_add_{name}", median_us(lambda: floats + 1.0, steps, gap_s), "us", note=note)
        emit(f"cold_pilot_step_{name}", median_us(lambda: runtime.step(frame, None, gap), steps, gap_s), "us",
             note=note)
        for part, us in frame_path(runtime, steps, gap_s).items():
            emit(f"cold_frame_{part}_{name}", us, "us", note=f"pilot_node's per-frame work without ROS, {note}")
    after_spin = median_us(lambda: runtime.step(frame, None, gap), steps, gap, lambda: spin(0.002))
    emit("cold_pilot_step_after_spin", after_spin, "us", note="paced, the CPU kept busy for 2 ms just before")
    emit("cold_pilot_step_after_throwaway", median_us(lambda: runtime.step(frame, None, gap), steps, gap,
                                                      lambda: runtime.evaluate(frame, None, runtime.state, gap)),
         "us", note="paced, one throwaway step just before")
    for kind in ("simple_queue", "condition"):
        emit(f"cold_wake_{kind}", wake_us(kind, steps, gap), "us", note=f"handing a frame to a thread asleep "
             f"{1e3 * gap:.0f} ms ({'pilot_node' if kind == 'simple_queue' else 'before 2026-12-05'})")


if __name__ == "__main__":
    main()
