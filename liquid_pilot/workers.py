"""Spread independent episodes over local processes or a Ray cluster.

Each job carries its own seed, so where it runs cannot change its result. Results come back
to the caller one by one (the caller writes them down at once, so nothing finished is lost);
a job whose worker crashes or is killed is retried a bounded number of times and otherwise
reported as failed. Progress reports the rate and the time left.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, TypeVar

J = TypeVar("J")


@dataclass
class Progress:
    """How far a spread of jobs has come: done, failed and the rate, for progress lines."""

    total: int
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.perf_counter)

    def line(self) -> str:
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done - self.failed) / rate if rate > 0 else float("nan")
        return f"{self.done}/{self.total} done, {rate:.2f}/s, {eta:.0f} s left" + (
            f", {self.failed} failed" if self.failed else "")


@dataclass
class Spread:
    """How the work was run: for reports."""

    backend: str  # "sequential", "processes" or "ray"
    workers: int
    retried: int = 0
    failed: list[Any] = field(default_factory=list)

    def describe(self) -> str:
        text = f"{self.backend} with {self.workers} worker{'s' if self.workers != 1 else ''}"
        if self.retried:
            text += f", {self.retried} job(s) retried after a worker died"
        if self.failed:
            text += f", {len(self.failed)} job(s) failed"
        return text


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run(jobs: Sequence[J], work: Callable[[J], Any], on_result: Callable[[J, Any, Progress], None],
        workers: int | None = None, ray: str | None = None, retries: int = 2) -> Spread:
    """Run ``work(job)`` for every job; ``on_result`` receives each result as soon as it is ready.

    ``work`` must be a module-level function (it is sent to other processes). ``ray`` is a Ray
    address, or "auto"/"local"; otherwise ``workers`` local processes (default: all cores).
    """
    progress = Progress(len(jobs))
    if ray is not None:
        return _run_ray(jobs, work, on_result, ray, retries, progress)
    workers = max(1, min(workers or default_workers(), len(jobs) or 1))
    if workers == 1:
        for job in jobs:
            result = work(job)
            progress.done += 1
            on_result(job, result, progress)
        return Spread("sequential", 1)
    return _run_processes(jobs, work, on_result, workers, retries, progress)


def _run_processes(jobs: Sequence[J], work: Callable[[J], Any], on_result: Callable[[J, Any, Progress], None],
                   workers: int, retries: int, progress: Progress) -> Spread:
    spread = Spread("processes", workers)
    attempts = {i: 0 for i in range(len(jobs))}
    pending = list(range(len(jobs)))
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no PyBullet or torch state inherited
    while pending:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_interrupt_only_jobs) as pool:
            futures: dict[Future, int] = {pool.submit(_run_job, work, jobs[i]): i for i in pending}
            pending = []
            broken = False
            try:
                broken = _collect(futures, jobs, on_result, attempts, retries, pending, spread, progress)
            except KeyboardInterrupt:
                # Interrupt the workers too, so each cleans up the episode it was in, and run nothing new.
                for process in list(getattr(pool, "_processes", {}).values()):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGINT)
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            if broken:  # a dead worker takes its pool down: start a fresh one for what is left
                continue
    return spread


_busy = False  # in a worker process: whether a job is running


def _interrupt_only_jobs() -> None:
    """Make SIGINT interrupt a worker's job, and leave an idle worker to the pool's shutdown.

    Otherwise Ctrl-C in an idle worker prints a KeyboardInterrupt traceback from the pool's loop.
    """
    def handler(signum: int, frame: Any) -> None:
        if _busy:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)


def _run_job(work: Callable[[J], Any], job: J) -> Any:
    global _busy
    _busy = True
    try:
        return work(job)
    finally:
        _busy = False


def _collect(futures: dict[Future, int], jobs: Sequence[J], on_result: Callable[[J, Any, Progress], None],
             attempts: dict[int, int], retries: int, pending: list[int], spread: Spread, progress: Progress) -> bool:
    """Hand results over as they finish; queue the jobs of a broken pool for a retry."""
    broken = False
    while futures:
        finished, _ = wait(futures, return_when=FIRST_COMPLETED)
        for future in finished:
            index = futures.pop(future)
            try:
                result = future.result()
            except BrokenProcessPool:
                broken = True
                attempts[index] += 1
                if attempts[index] > retries:
                    spread.failed.append(jobs[index])
                    progress.failed += 1
                else:
                    spread.retried += 1
                    pending.append(index)
                continue
            progress.done += 1
            on_result(jobs[index], result, progress)
    return broken


def _run_ray(jobs: Sequence[J], work: Callable[[J], Any], on_result: Callable[[J, Any, Progress], None],
             address: str, retries: int, progress: Progress) -> Spread:
    try:
        import ray as ray_module
    except ImportError:
        raise ValueError("--ray needs Ray: pip install 'liquid_pilot[ray]'") from None
    if not ray_module.is_initialized():
        ray_module.init(address=None if address == "local" else address, include_dashboard=False,
                        log_to_driver=False)
    remote = ray_module.remote(max_retries=retries)(work)
    refs = {remote.remote(job): i for i, job in enumerate(jobs)}
    spread = Spread("ray", int(ray_module.cluster_resources().get("CPU", 1)))
    while refs:
        ready, _ = ray_module.wait(list(refs), num_returns=1)
        index = refs.pop(ready[0])
        try:
            result = ray_module.get(ready[0])
        except ray_module.exceptions.RayError:
            spread.failed.append(jobs[index])
            progress.failed += 1
            continue
        progress.done += 1
        on_result(jobs[index], result, progress)
    return spread
