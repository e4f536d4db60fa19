"""Spreading episodes over workers: identical results however spread; crashed workers are retried."""
import os
from pathlib import Path

import numpy as np

from liquid_pilot.harness.collect import collect
from liquid_pilot.data.reader import read_flight
from liquid_pilot.eval.evaluate import evaluate
from liquid_pilot.sim.config import load_scenario
from liquid_pilot.workers import run


def square(x: int) -> int:
    return x * x


def die_once(job: tuple[int, str]) -> int:
    """Kill this worker process the first time job 3 runs (a marker file remembers)."""
    value, marker = job
    if value == 3 and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return value * 10


def _results(workers: int, jobs: list) -> dict:
    out = {}
    spread = run(jobs, square, lambda job, result, progress: out.__setitem__(job, result), workers=workers)
    return out, spread


def test_processes_give_the_same_results_as_one_process() -> None:
    one, spread_one = _results(1, list(range(12)))
    many, spread_many = _results(2, list(range(12)))
    assert one == many == {i: i * i for i in range(12)}
    assert spread_one.describe() == "sequential with 1 worker" and spread_many.describe() == "processes with 2 workers"


def test_a_killed_worker_has_its_job_retried(tmp_path: Path) -> None:
    marker = str(tmp_path / "died")
    results, lines = {}, []

    def keep(job, result, progress):  # noqa: ANN001, ANN202
        results[job[0]] = result
        lines.append(progress.line())

    spread = run([(i, marker) for i in range(8)], die_once, keep, workers=2)
    assert results == {i: i * 10 for i in range(8)} and os.path.exists(marker)
    assert spread.retried >= 1 and not spread.failed and "retried" in spread.describe()
    assert lines[-1].startswith("8/8 done")


def test_evaluation_is_identical_sequential_or_parallel(tmp_path: Path) -> None:
    args = (["expert"], ["forest_summer", "urban"], 2)
    serial, _ = evaluate(*args, tmp_path / "one", seed=3, workers=1)
    parallel, spread = evaluate(*args, tmp_path / "two", seed=3, workers=2)

    def key(r: dict) -> tuple:
        return r["condition"], r["seed"]

    strip = [{k: v for k, v in r.items() if k != "wall_time"} for r in sorted(serial, key=key)]
    assert strip == [{k: v for k, v in r.items() if k != "wall_time"} for r in sorted(parallel, key=key)]
    assert spread.backend == "processes"


def test_collected_bags_are_identical_sequential_or_parallel(tmp_path: Path) -> None:
    scenario = load_scenario("forest_summer").with_overrides({"task.hold_s": 0.5})
    one = collect(scenario, 3, tmp_path / "one", seed=40, workers=1)
    two = collect(scenario, 3, tmp_path / "two", seed=40, workers=2)
    assert [p.name for p in one.written] == [p.name for p in two.written]
    for a, b in zip(one.written, two.written):
        fa, fb = read_flight(a), read_flight(b)
        assert np.array_equal(fa.images, fb.images) and np.array_equal(fa.commands, fb.commands)
        assert np.array_equal(fa.imu, fb.imu)


def test_local_ray_gives_the_same_results(tmp_path: Path) -> None:
    args = (["expert"], ["forest_summer"], 2)
    serial, _ = evaluate(*args, tmp_path / "one", seed=8, workers=1)
    distributed, spread = evaluate(*args, tmp_path / "ray", seed=8, ray="local")
    assert spread.backend == "ray" and not spread.failed
    assert [{k: v for k, v in r.items() if k != "wall_time"} for r in serial] == \
        [{k: v for k, v in r.items() if k != "wall_time"} for r in sorted(distributed, key=lambda r: r["seed"])]
