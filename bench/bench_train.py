"""Training at scale: frames per second in 1 and 2 processes, and resident memory on data larger than memory.

Prints one JSON object per line: metric, value, unit, and where compared in the same run,
baseline and ratio (here value / baseline: the speed-up, or how many times larger).

- Throughput: the default pilot (64x64 frames, windows of 64, global batch 16) on synthetic
  memory-mapped flights, in 1 process and in 2 processes (gloo), one thread each, fresh processes
  for every run, 1- and 2-process runs alternating so that the machine's load hits both alike.
  Frames per second count training only (the first epoch, warm-up, left out). The two runs'
  validation losses are compared too: the same seed and global batch give the same training.
- Ray Train (``--ray``): 2 processes as Ray Train workers on a local Ray instance (``train.ray_launch``,
  as ``liquid-pilot train --ray local --processes 2`` runs them) against 2 processes started by
  ``distributed.spawn`` (as torchrun starts them), the same training, alternating: frames per second
  as above, and start-up: seconds from the launch call to rank 0 starting its first epoch (the Ray
  instance already up, as on a cluster; its own start is reported beside). The machine's load
  average is reported with them.
- Memory: a synthetic dataset of ``--frames`` 64x64 frames (2,000,000 by default: 24.6 GB) written
  as shards to ``--dir``, trained in 2 processes on ``--windows`` windows per epoch drawn from all
  of it; each process's peak resident memory against ``--budget-gb``.

- The recipe (``--recipe BAGS...``): the whole default training as a user runs it, ``liquid-pilot train
  --config config/train.yaml`` (``--config`` to change) on real bags (those of ``config/collect.sh``), in a
  fresh process: wall seconds, the trainer's own seconds, CPU seconds, peak resident memory, and the
  machine's load average before and after (what else ran is part of the figure).
- Validation (``--validation BAGS...``): one epoch's validation pass as the trainer runs it (each held-out frame
  through the CNN once, the head on each window's slice) against the baseline of every window's frames through the
  whole pilot, on the held-out flights of real bags split as ``--config`` splits them, with ``--model``; one thread,
  the two alternating ``--repeats`` times: seconds of each (medians), the ratio, and both losses (they must agree).

Usage: python bench/bench_train.py [--quick] [--frames N] [--windows N] [--dir DIR] [--repeats N] [--skip WHAT] [--ray]
       python bench/bench_train.py --recipe BAGS... [--config FILE] [--threads N]
       python bench/bench_train.py --validation BAGS... [--config FILE] [--model FILE] [--repeats N]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from liquid_pilot.data import shards
from liquid_pilot.train import distributed
from liquid_pilot.train.trainer import load_train_config, train_flights

FRAME_BYTES = 64 * 64 * 3


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    print(json.dumps({"metric": metric, "value": float(f"{value:.6g}"), "unit": unit, **extra}), flush=True)


class _Clock(io.StringIO):
    """A training log that notes when the first epoch starts (rank 0's progress bar names it)."""

    first_epoch: float | None = None

    def write(self, text: str) -> int:
        if self.first_epoch is None and "epoch 1/" in text:
            self.first_epoch = time.time()
        return super().write(text)


def _train(folder: str, out: str, settings: dict, report: str) -> None:
    """One process of a run (started by distributed.spawn or as a Ray Train worker): train on the shards in
    ``folder``."""
    flights = [shards.read_entry(stem) for stem in sorted({p.with_suffix("") for p in Path(folder).glob("*.npz")})]
    config = load_train_config(None, settings)
    cpu = time.process_time()
    log = _Clock()
    summary = train_flights(config, flights, Path(out) / "p.pt", log=log)
    cpu = time.process_time() - cpu
    rank = distributed.launch()[0]
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    Path(f"{report}.{rank}").write_text(json.dumps({"history": summary["history"], "peak_mb": peak_kb / 1024,
                                                    "best": summary["best_val_loss"], "cpu_s": cpu,
                                                    "first_epoch": log.first_epoch}))


def run(folder: Path, work: Path, processes: int, settings: dict, ray: bool = False) -> list[dict]:
    """Train in ``processes`` fresh processes (Ray Train workers with ``ray``); returns each process's report,
    with ``launched``: the wall-clock time of the launch."""
    out = Path(tempfile.mkdtemp(dir=work))
    args = (str(folder), str(out), settings, str(out / "report"))
    launched = time.time()
    if ray:
        from liquid_pilot.train import ray_launch

        ray_launch.run(_train, args, processes, use_gpu=False)
    else:
        distributed.spawn(_train, processes, *args)
    reports = [{**json.loads((out / f"report.{rank}").read_text()), "launched": launched}
               for rank in range(processes)]
    shutil.rmtree(out)
    return reports


def throughput(work: Path, repeats: int, flights: int, frames: int, epochs: int) -> None:
    folder = work / "throughput"
    shards.write_synthetic(folder, flights, frames)
    settings = {"epochs": epochs, "threads": 1, "batch_size": 16, "sequence_length": 64, "shift": 16,
                "val_fraction": 0.25, "seed": 0}
    speeds: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[float]] = {1: [], 2: []}
    losses: dict[int, float] = {}
    for _ in range(repeats):
        for processes in (1, 2):
            reports = run(folder, work, processes, settings)
            history = reports[0]["history"][1:] or reports[0]["history"]
            speeds[processes].append(statistics.median(h["frames_per_s"] for h in history))
            cpu[processes].append(sum(r["cpu_s"] for r in reports))
            losses[processes] = reports[0]["best"]
    one, two = (statistics.median(speeds[p]) for p in (1, 2))
    spread = {f"runs_{p}": [round(v) for v in speeds[p]] for p in (1, 2)}
    emit("train_frames_per_s_1_process", one, "frames/s", threads=1, **spread)
    emit("train_frames_per_s_2_processes", two, "frames/s", baseline=round(one, 1), ratio=round(two / one, 2),
         target="ratio >= 1.6", threads=1, ratio_per_pair=[round(b / a, 2) for a, b in zip(speeds[1], speeds[2])])
    cpu_one, cpu_two = (statistics.median(cpu[p]) for p in (1, 2))
    emit("cpu_seconds_of_a_run_2_processes", cpu_two, "s", baseline=round(cpu_one, 1),
         ratio=round(cpu_two / cpu_one, 2), note="both processes' CPU time for the same training; a ratio near 1 "
         "means two free cores would run it near twice as fast", runs_1=[round(v) for v in cpu[1]],
         runs_2=[round(v) for v in cpu[2]])
    emit("val_loss_2_processes", losses[2], "MSE", baseline=float(f"{losses[1]:.6g}"), target="within 2%",
         relative_difference=f"{abs(losses[2] - losses[1]) / losses[1]:.2e}", epochs=epochs)
    shutil.rmtree(folder)


def ray_train(work: Path, repeats: int, flights: int, frames: int, epochs: int) -> None:
    """2 processes as Ray Train workers against 2 spawned processes: frames/s and start-up, alternating."""
    from liquid_pilot.train import ray_launch

    ray_launch.check(2)
    folder = work / "ray"
    shards.write_synthetic(folder, flights, frames)
    settings = {"epochs": epochs, "threads": 1, "batch_size": 16, "sequence_length": 64, "shift": 16,
                "val_fraction": 0.25, "seed": 0}
    load_before = os.getloadavg()
    start = time.perf_counter()
    ray_launch.connect("local", 2)
    ray_start = time.perf_counter() - start
    speeds: dict[str, list[float]] = {"spawn": [], "ray": []}
    startup: dict[str, list[float]] = {"spawn": [], "ray": []}
    cpu: dict[str, list[float]] = {"spawn": [], "ray": []}
    losses: dict[str, float] = {}
    try:
        for _ in range(repeats):
            for launcher in ("spawn", "ray"):
                reports = run(folder, work, 2, settings, ray=launcher == "ray")
                history = reports[0]["history"][1:] or reports[0]["history"]
                speeds[launcher].append(statistics.median(h["frames_per_s"] for h in history))
                startup[launcher].append(reports[0]["first_epoch"] - reports[0]["launched"])
                cpu[launcher].append(sum(r["cpu_s"] for r in reports))
                losses[launcher] = reports[0]["best"]
    finally:
        import ray

        ray.shutdown()
    load = {"load_avg_1m_before": round(load_before[0], 2), "load_avg_1m_after": round(os.getloadavg()[0], 2),
            "cores": os.cpu_count()}
    spawn_fps, ray_fps = (statistics.median(speeds[k]) for k in ("spawn", "ray"))
    emit("train_frames_per_s_2_processes_ray_train", ray_fps, "frames/s", baseline=round(spawn_fps, 1),
         ratio=round(ray_fps / spawn_fps, 2), baseline_is="2 processes by distributed.spawn (as torchrun)",
         threads=1, runs_ray=[round(v) for v in speeds["ray"]], runs_spawn=[round(v) for v in speeds["spawn"]],
         ratio_per_pair=[round(b / a, 2) for a, b in zip(speeds["spawn"], speeds["ray"])],
         same_val_loss=losses["ray"] == losses["spawn"], epochs=epochs,
         cpu_s_ray=round(statistics.median(cpu["ray"]), 1), cpu_s_spawn=round(statistics.median(cpu["spawn"]), 1),
         **load)
    spawn_s, ray_s = (statistics.median(startup[k]) for k in ("spawn", "ray"))
    emit("train_startup_s_2_processes_ray_train", ray_s, "s", baseline=round(spawn_s, 2),
         ratio=round(ray_s / spawn_s, 2), baseline_is="2 processes by distributed.spawn (as torchrun)",
         measured="launch to rank 0 starting epoch 1",
         ray_instance_start_s=round(ray_start, 2), runs_ray=[round(v, 2) for v in startup["ray"]],
         runs_spawn=[round(v, 2) for v in startup["spawn"]], **load)
    shutil.rmtree(folder)


def memory(work: Path, frames: int, budget_gb: float, windows: int) -> None:
    folder = work / "memory"
    per_flight = 50_000
    flights = max(1, frames // per_flight)
    free = shutil.disk_usage(work).free
    needed = flights * min(frames, per_flight) * FRAME_BYTES
    if needed > free * 0.8:
        raise SystemExit(f"{work}: {needed / 1e9:.1f} GB of shards wanted, {free / 1e9:.1f} GB free: pass fewer "
                         "--frames or another --dir")
    start = time.perf_counter()
    shards.write_synthetic(folder, flights, min(frames, per_flight))
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in folder.iterdir())
    total = flights * min(frames, per_flight)
    emit("synthetic_shards_written", size / 1e9, "GB", frames=total, seconds=round(seconds, 1),
         rate_gb_per_s=round(size / 1e9 / seconds, 2))
    settings = {"epochs": 2, "threads": 1, "batch_size": 16, "sequence_length": 64, "shift": 64,
                "val_fraction": 0.0, "windows_per_epoch": windows, "seed": 0}
    start = time.perf_counter()
    reports = run(folder, work, 2, settings)
    peaks = [r["peak_mb"] for r in reports]
    emit("peak_resident_memory_per_process", max(peaks) / 1024, "GB", budget=budget_gb,
         target=f"< {budget_gb} GB per process", processes=2, per_process_mb=[round(p) for p in peaks],
         dataset_gb=round(size / 1e9, 2), dataset_over_budget=round(size / 1e9 / budget_gb, 1), frames=total,
         windows_per_epoch=windows, seconds=round(time.perf_counter() - start, 1))
    shutil.rmtree(folder)


def recipe(bags: list[str], config: str, threads: int | None) -> None:
    """Time the whole default training on real bags, as ``liquid-pilot train`` runs it, in a fresh process."""
    with tempfile.TemporaryDirectory(prefix="bench_recipe.") as tmp:
        out = Path(tmp) / "pilot.pt"
        command = [sys.executable, "-m", "liquid_pilot.cli", "train", "--config", config, "--data", *bags,
                   "--out", str(out)] + (["--threads", str(threads)] if threads else [])
        load_before, start = os.getloadavg(), time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if result.returncode:
            raise SystemExit(f"the training failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        from liquid_pilot.nn.checkpoint import read_checkpoint

        provenance = read_checkpoint(out)["provenance"]
        lines = out.with_suffix(".log.csv").read_text().splitlines()
        history = [dict(zip(lines[0].split(","), row.split(","))) for row in lines[1:]]
    emit("recipe_training_seconds", wall, "s", config=config, epochs=len(history),
         trainer_seconds=round(sum(float(h["seconds"]) for h in history), 1), cpu_seconds=round(
             usage.ru_utime + usage.ru_stime, 1), peak_gb=round(usage.ru_maxrss / 1024 ** 2, 2),
         threads=threads or load_train_config(config).threads, frames=provenance["frames"],
         flights=provenance["flights"], best_val_loss=provenance["val_loss"],
         load_avg_1m_before=round(load_before[0], 2), load_avg_1m_after=round(os.getloadavg()[0], 2))


def validation(bags: list[str], config_path: str, model: str, repeats: int) -> None:
    """Time one validation pass, the trainer's against every window through the whole pilot, alternating."""
    import dataclasses

    import torch

    from liquid_pilot.data.dataset import default_cache_dir, load_flights
    from liquid_pilot.nn.checkpoint import load_pilot
    from liquid_pilot.train.trainer import _split, _window_losses, evaluate

    torch.set_num_threads(1)
    config, pilot = load_train_config(config_path), load_pilot(model)
    topics = config.topics if pilot.config.use_imu else dataclasses.replace(config.topics, imu=None)
    size = (pilot.config.image_height, pilot.config.image_width)
    flights = load_flights(bags, topics, size, default_cache_dir())
    _, val_set, _ = _split(config, flights, ", ".join(bags), io.StringIO())

    @torch.no_grad()
    def every_window() -> float:
        losses = [_window_losses(pilot.eval(), b, b["images"])
                  for b in torch.utils.data.DataLoader(val_set, batch_size=config.batch_size)]
        return float(torch.cat(losses).double().mean())

    def trainer() -> float:
        return evaluate(pilot, val_set, config.batch_size)

    seconds: dict[str, list[float]] = {"trainer": [], "every_window": []}
    losses = {}
    for _ in range(repeats):
        for name, run in (("every_window", every_window), ("trainer", trainer)):
            start = time.perf_counter()
            losses[name] = run()
            seconds[name].append(time.perf_counter() - start)
    new, old = statistics.median(seconds["trainer"]), statistics.median(seconds["every_window"])
    emit("validation_pass_seconds", new, "s", baseline=round(old, 3), ratio=round(new / old, 3),
         windows=len(val_set), flights=len(val_set.flights), loss=losses["trainer"],
         baseline_loss=losses["every_window"], load_avg_1m=round(os.getloadavg()[0], 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run: small data, one repeat")
    parser.add_argument("--frames", type=int, help="frames of the memory run (default 2,000,000; quick 200,000)")
    parser.add_argument("--budget-gb", type=float, default=2.0, help="resident memory target per process (GB)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the shards (default: a temporary "
                        "folder in $TMPDIR)")
    parser.add_argument("--repeats", type=int, help="alternating 1- and 2-process runs (default 3; quick 1)")
    parser.add_argument("--windows", type=int, help="windows per epoch (2 epochs) of the memory run (default 256; "
                        "quick 64)")
    parser.add_argument("--skip", choices=["throughput", "memory"], action="append", default=[])
    parser.add_argument("--ray", action="store_true", help="also compare 2 Ray Train workers with 2 spawned "
                        "processes (needs the ray extra; --repeats alternating pairs)")
    parser.add_argument("--recipe", nargs="+", metavar="BAGS", help="only time the whole default training on "
                        "these bags (or folders of bags), as liquid-pilot train runs it")
    parser.add_argument("--config", default="config/train.yaml", help="with --recipe or --validation: the training "
                        "config")
    parser.add_argument("--threads", type=int, help="with --recipe: CPU threads (default: the config's)")
    parser.add_argument("--validation", nargs="+", metavar="BAGS", help="only time one validation pass on these "
                        "bags' held-out flights, the trainer's against every window through the whole pilot")
    parser.add_argument("--model", default="models/cfc_ncp.pt", help="with --validation: the pilot")
    args = parser.parse_args()
    if args.recipe:
        recipe(args.recipe, args.config, args.threads)
        return
    if args.validation:
        validation(args.validation, args.config, args.model, args.repeats or 3)
        return
    frames = args.frames or (200_000 if args.quick else 2_000_000)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench_train.") as tmp:
        if "throughput" not in args.skip:
            throughput(Path(tmp), args.repeats or (1 if args.quick else 3), 4 if args.quick else 8,
                       300 if args.quick else 600, 2 if args.quick else 3)
        if args.ray:
            ray_train(Path(tmp), args.repeats or (1 if args.quick else 3), 4 if args.quick else 8,
                      300 if args.quick else 600, 2 if args.quick else 3)
        if "memory" not in args.skip:
            memory(Path(tmp), frames, args.budget_gb, args.windows or (64 if args.quick else 256))


if __name__ == "__main__":
    sys.exit(main())
