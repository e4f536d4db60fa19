"""Evaluation throughput on 1 and 2 local worker processes (the same episodes, the same results).

Prints one JSON object per line. Usage: python bench/bench_workers.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from liquid_pilot.eval.evaluate import evaluate


def episodes_per_second(workers: int, episodes: int, out: Path) -> float:
    start = time.perf_counter()
    records, _ = evaluate(["expert"], ["forest_summer"], episodes, out, seed=500, workers=workers)
    assert len(records) == episodes
    return episodes / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    episodes = 12 if args.quick else 200
    with tempfile.TemporaryDirectory() as tmp:
        one = episodes_per_second(1, episodes, Path(tmp) / "one")
        two = episodes_per_second(2, episodes, Path(tmp) / "two")
    print(json.dumps({"metric": "eval_throughput_2_workers", "value": round(two, 3), "unit": "episodes/s",
                      "baseline": round(one, 3), "ratio": round(two / one, 2), "target": "ratio >= 1.7",
                      "episodes": episodes, "baseline_is": "1 worker (in-process)",
                      "note": "includes starting the worker processes"}), flush=True)


if __name__ == "__main__":
    main()
