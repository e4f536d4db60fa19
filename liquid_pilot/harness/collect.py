"""Record expert flights in the simulator as rosbag2 bags, one per episode.

The only module of ``liquid_pilot.data`` that imports the simulator: reading bags and training
never load it (the command line imports this module only for ``collect``).

Each frame writes the camera image and info, the IMU sample, the ground-truth odometry and the
expert's (clean) command as the label; the flown command may be perturbed (DART-style) to show
the expert recovering from mistakes. Episode i uses seed ``seed + i``.

With a ``driver`` (a trained pilot's checkpoint) the pilot flies, through the flight core as in
evaluation, and the expert only labels the frames the pilot saw: closed-loop data aggregation
(DAgger). ``search`` gives the expert its observable search rule for flights that start with the
chair out of view (``liquid_pilot.sim.expert``).
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from liquid_pilot.harness.bags import EPOCH_S, BagWriter, camera_info_msg, image_msg, imu_msg, odometry_msg, \
    twist_stamped_msg
from liquid_pilot.workers import Progress, Spread, run
from liquid_pilot.sim.config import Scenario
from liquid_pilot.sim.episode import EpisodeResult, ExpertPolicy, Policy, fly
from liquid_pilot.sim.expert import SEARCH_TURNS, check_lost
from liquid_pilot.sim.quadrotor import quaternion
from liquid_pilot.sim.world import Observation, Simulator


class CollectInterrupted(KeyboardInterrupt):
    """Ctrl-C during a collection: says which episodes are not recorded and what is complete."""

    def __init__(self, missing: list[int], written: list[Path]):
        first = f"the episode with seed {missing[0]} was cut" if missing else "no episode was cut"
        super().__init__(f"{first}; not recorded: seeds {_ranges(missing)}" if len(missing) > 1 else first)
        self.missing, self.written = missing, written


def _ranges(seeds: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    parts, start = [], None
    for i, seed in enumerate(seeds):
        start = seed if start is None else start
        if i + 1 == len(seeds) or seeds[i + 1] != seed + 1:
            parts.append(str(seed) if seed == start else f"{start}-{seed}")
            start = None
    return ", ".join(parts)


@dataclass
class CollectResult:
    """What a collection wrote: the bags, the failed flights left out, how the work was spread."""

    written: list[Path]
    skipped: list[EpisodeResult]  # failed flights, not written
    spread: Spread
    results: list[EpisodeResult] = field(default_factory=list)  # every flight flown by this call


@dataclass(frozen=True)
class CollectJob:
    """One flight to collect: the scenario and seed, where its bag goes and how it is flown and kept."""

    scenario: Scenario
    seed: int
    path: Path
    storage: str
    perturbation: float
    keep_failures: bool
    search: str | None = None  # the expert's search turn while the chair has not been seen
    driver: str | None = None  # a pilot checkpoint that flies while the expert labels (DAgger)
    lost_s: float | None = None  # the search turn also resumes once the chair has been out of view this long


def bag_name(scenario: Scenario, seed: int) -> str:
    return f"{scenario.name}_{seed:06d}"


def record_episode(sim: Simulator, seed: int, path: Path, storage: str, perturbation: float,
                   keep_failures: bool, search: str | None = None, driver: Policy | None = None,
                   driver_name: str = "", driver_sha256: str = "", lost_s: float | None = None) -> EpisodeResult:
    """Fly and record one episode; the bag is kept only when the flight succeeded (or if asked).

    ``driver``: the policy that flies (a trained pilot: its file and weights' SHA-256 go into the bag's
    metadata); the label is always the expert's. ``search`` and ``lost_s``: the expert's search rule.
    """
    policy = ExpertPolicy(perturbation, seed=seed, search=search, driver=driver, lost_s=lost_s)
    scenario = sim.scenario
    metadata = {"scenario": scenario.name, "task": scenario.task.kind, "seed": seed, "perturbation": perturbation,
                "source": "liquid_pilot simulator expert"}
    if search is not None:
        metadata["search"] = search
    if lost_s is not None:
        metadata["search_after_lost_s"] = f"{lost_s:g}"
    if driver is not None:
        metadata.update(source="liquid_pilot simulator: a pilot flew, the expert labelled", driver=driver_name,
                        driver_sha256=driver_sha256)

    with BagWriter(path, storage, metadata) as bag:
        def on_step(sim: Simulator, obs: Observation, command: np.ndarray) -> None:
            stamp = int(round((EPOCH_S + obs.time) * 1e9))
            state = sim.state
            bag.write("image", image_msg(obs.image, stamp), stamp)
            bag.write("camera_info", camera_info_msg(obs.image.shape[1], obs.image.shape[0], sim.camera.vfov, stamp),
                      stamp)
            bag.write("imu", imu_msg(obs.imu, stamp), stamp)
            bag.write("command", twist_stamped_msg(policy.label, stamp), stamp)
            body_velocity = state.rotation.T @ state.velocity
            bag.write("odom", odometry_msg(state.position, quaternion(state.rotation), body_velocity, state.rates,
                                           stamp), stamp)

        result = fly(sim, policy, seed, on_step=on_step)
        bag.metadata.update(outcome=result.reason, success=str(result.success), duration_s=f"{result.duration:.3f}")
        if not (result.success or keep_failures):
            raise _Discard(result)
    return result


class _Discard(Exception):
    """Leaves the bag block so the writer deletes the unwanted bag."""

    def __init__(self, result: EpisodeResult):
        super().__init__(result.reason)
        self.result = result


_SIMS: dict[str, Simulator] = {}  # per process, one simulator per scenario
_DRIVERS: dict[str, tuple[Policy, str]] = {}  # per process, one loaded pilot (and its weights' SHA-256) per file


def collect_job(job: CollectJob) -> tuple[EpisodeResult, bool]:
    """Record one episode in whichever process runs it; returns its result and whether it was kept."""
    key = repr(job.scenario)
    if key not in _SIMS:
        _SIMS[key] = Simulator(job.scenario)
    sim, driver, sha = _SIMS[key], None, ""
    if job.driver is not None:
        from liquid_pilot.nn.checkpoint import read_checkpoint
        from liquid_pilot.harness.pilots import PilotPolicy  # loads PyTorch and onnxruntime: only when a pilot flies

        if job.driver not in _DRIVERS:
            _DRIVERS[job.driver] = PilotPolicy.from_file(job.driver), read_checkpoint(job.driver)["sha256"]
        driver, sha = _DRIVERS[job.driver]
        driver.check(sim)
    try:
        return record_episode(sim, job.seed, job.path, job.storage, job.perturbation, job.keep_failures, job.search,
                              driver, job.driver or "", sha, job.lost_s), True
    except _Discard as discard:
        return discard.result, False


def collect(scenario: Scenario, episodes: int, out: Path, seed: int = 0, storage: str = "mcap",
            perturbation: float = 0.2, keep_failures: bool = False,
            progress: Callable[[EpisodeResult, bool, Progress], None] | None = None, workers: int | None = 1,
            ray: str | None = None, search: str | None = None, driver: str | Path | None = None,
            lost_s: float | None = None) -> CollectResult:
    """Record ``episodes`` expert-labelled flights into ``out`` (episode i has seed ``seed + i``).

    The expert flies, or the pilot checkpoint ``driver`` does (DAgger); ``search`` is the expert's search
    turn ("left" or "right") while the chair has not been seen, and with ``lost_s`` also once it has been
    out of view that many seconds (``liquid_pilot.sim.expert``). Existing bags are kept and skipped, so an
    interrupted collection continues where it stopped; the bags do not depend on how the episodes were
    spread over workers.
    """
    if search is not None and search not in SEARCH_TURNS:
        raise ValueError(f"search must be one of {', '.join(SEARCH_TURNS)}, got {search!r}")
    check_lost(lost_s, search)
    if driver is not None:
        from liquid_pilot.nn.checkpoint import load_pilot

        load_pilot(driver)  # a missing or unreadable checkpoint is one line here, not an error in every worker
        driver = str(driver)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [CollectJob(scenario, seed + i, out / bag_name(scenario, seed + i), storage, perturbation, keep_failures,
                       search, driver, lost_s) for i in range(episodes)]
    skipped: list[EpisodeResult] = []
    results: list[EpisodeResult] = []

    def keep(job: CollectJob, outcome: tuple[EpisodeResult, bool], state: Progress) -> None:
        results.append(outcome[0])
        if not outcome[1]:
            skipped.append(outcome[0])
        if progress is not None:
            progress(outcome[0], outcome[1], state)

    todo = [job for job in jobs if not job.path.exists()]
    try:
        spread = run(todo, collect_job, keep, workers, ray)
    except KeyboardInterrupt:
        # Every worker has stopped by now: whatever is left in .partial/ is unfinished.
        shutil.rmtree(out / ".partial", ignore_errors=True)
        finished = {r.seed for r in skipped}
        missing = [job.seed for job in todo if not job.path.exists() and job.seed not in finished]
        raise CollectInterrupted(missing, [j.path for j in jobs if j.path.exists()]) from None
    finally:
        for sim in _SIMS.values():
            sim.close()
        _SIMS.clear()
        _DRIVERS.clear()
    return CollectResult([j.path for j in jobs if j.path.exists()], skipped, spread, results)
