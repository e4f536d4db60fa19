"""Closed-loop evaluation: every model in every condition on the same seeds, and its report.

A condition is a scenario (``sim/scenarios``). Episodes run on local processes or Ray; each
finished one is appended to ``OUT/episodes.jsonl`` at once, so an interrupted evaluation
resumes where it stopped. Each record names the checkpoint's SHA-256, so a model file that
changed since (a retrained pilot under the same name) is refused rather than silently credited
with the old one's episodes.
The report gives the success rate with a 95% Wilson interval, time to target (successes),
final distance and command jerk, as Markdown, JSON and a heat map.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from liquid_pilot.workers import Progress, Spread, run
from liquid_pilot.sim.config import list_hard, list_scenarios, list_validation, list_validation2, load_scenario
from liquid_pilot.sim.episode import ExpertPolicy, fly
from liquid_pilot.sim.world import Simulator

IN_DISTRIBUTION = "forest_summer"
EXPERT = "expert"


def resolve_conditions(names: list[str]) -> list[str]:
    """Expand the groups of conditions and check the rest.

    ``all`` is every test scenario, ``ood`` all but the training one, ``validation`` the held-out
    conditions for choosing recipes, ``validation2`` the second, harder held-out set (new looks, dusk, a farther
    chair), ``hard`` the hard tier (longer, harder and combined shifts).
    """
    available = list_scenarios()
    groups = {"validation": list_validation(), "validation2": list_validation2(), "hard": list_hard()}
    out: list[str] = []
    for name in names:
        if name == "all":
            out += [IN_DISTRIBUTION] + [s for s in available if s != IN_DISTRIBUTION]
        elif name == "ood":
            out += [s for s in available if s != IN_DISTRIBUTION]
        elif name in groups:
            out += groups[name]
        elif name in available or any(name in group for group in groups.values()):
            out.append(name)
        else:
            held_out, held_out2, hard = groups.values()
            raise ValueError(f"unknown condition {name!r}; conditions are scenarios ({', '.join(available)}), "
                             f"validation conditions ({', '.join(held_out)}), second validation set "
                             f"({', '.join(held_out2)}), hard conditions ({', '.join(hard)}), "
                             f"'all', 'ood', 'validation', 'validation2' or 'hard'")
    return list(dict.fromkeys(out))


def model_name(model: str) -> str:
    return EXPERT if model == EXPERT else Path(model).stem


def fingerprint(model: str) -> str | None:
    """Return the first 16 hex digits of a checkpoint's SHA-256 (None for the expert): which file flew."""
    if model == EXPERT:
        return None
    digest = hashlib.sha256()
    with open(model, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def check_same_models(records: list[dict[str, Any]], models: list[str], log: Path) -> None:
    """Check that no two models share a name and that the log's episodes of each were flown by its file."""
    files: dict[str, tuple[str, str | None]] = {}  # name -> (path, fingerprint)
    for model in models:
        name = model_name(model)
        if name in files:
            raise ValueError(f"two models are named {name!r} (episodes are kept by file name); rename one of them")
        files[name] = model, fingerprint(model)
    for r in records:
        path, new = files.get(r["model"], (None, None))
        old = r.get("model_sha256")
        if old is not None and new is not None and old != new:  # older logs have no fingerprint: trusted
            raise ValueError(f"{log}: its episodes of {r['model']!r} were flown by another file (sha256 {old}) than "
                             f"{path} (sha256 {new}); fly into a new --out, or delete that model's lines from "
                             f"{log.name} to fly it again")


def make_policy(model: str) -> Any:
    """Make the expert, or a trained pilot checkpoint, into a policy."""
    if model == EXPERT:
        return ExpertPolicy()
    from liquid_pilot.harness.pilots import PilotPolicy

    return PilotPolicy.from_file(model)


@dataclass(frozen=True)
class Job:
    """One episode to fly: a model in a condition on a seed."""

    model: str
    condition: str
    seed: int

    @property
    def key(self) -> str:
        return f"{model_name(self.model)}|{self.condition}|{self.seed}"


def episode_seed(base: int, index: int) -> int:
    """Seed of the index-th episode of every condition: the same for every model."""
    return base + index


# Per process: (policy, fingerprint) per model and a simulator per condition.
_POLICIES: dict[str, tuple[Any, str | None]] = {}
_SIMS: dict[str, Simulator] = {}


def fly_job(job: Job) -> dict[str, Any]:
    """Fly one episode (in whichever process runs it) and return its record."""
    if job.model not in _POLICIES:
        _POLICIES[job.model] = make_policy(job.model), fingerprint(job.model)
    policy, sha256 = _POLICIES[job.model]
    if job.condition not in _SIMS:
        _SIMS[job.condition] = Simulator(load_scenario(job.condition))
    sim = _SIMS[job.condition]
    if hasattr(policy, "check"):
        policy.check(sim)
    return {"model": model_name(job.model), "model_sha256": sha256, "condition": job.condition,
            **fly(sim, policy, job.seed).summary()}


def evaluate(models: list[str], conditions: list[str], episodes: int, out: Path, seed: int = 0,
             progress: Callable[[dict[str, Any], Progress], None] | None = None, workers: int | None = 1,
             ray: str | None = None) -> tuple[list[dict[str, Any]], Spread]:
    """Fly every (model, condition, episode).

    Returns all episode records, old and new, and how the new ones were spread over workers.
    """
    for model in models:
        if model != EXPERT and not Path(model).is_file():
            raise ValueError(f"{model}: no such model file")
    out.mkdir(parents=True, exist_ok=True)
    log = out / "episodes.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    check_same_models(records, models, log)
    done = {f"{r['model']}|{r['condition']}|{r['seed']}" for r in records}
    jobs = [Job(m, c, episode_seed(seed, i)) for m in models for c in conditions for i in range(episodes)]
    with open(log, "a") as f:
        def keep(job: Job, record: dict[str, Any], state: Progress) -> None:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())  # on disk before anything else can go wrong
            records.append(record)
            if progress is not None:
                progress(record, state)

        try:
            spread = run([j for j in jobs if j.key not in done], fly_job, keep, workers, ray)
        finally:
            for sim in _SIMS.values():
                sim.close()
            _SIMS.clear()
            _POLICIES.clear()  # a later call may fly a rewritten file of the same path
    wanted = {j.key for j in jobs}
    return [r for r in records if f"{r['model']}|{r['condition']}|{r['seed']}" in wanted], spread


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarise(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per model, per condition: n, success rate and interval, time to target, distance, jerk."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        table.setdefault(r["model"], {}).setdefault(r["condition"], []).append(r)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for model, by_condition in table.items():
        for condition, rows in by_condition.items():
            wins = [r for r in rows if r["success"]]
            low, high = wilson(len(wins), len(rows))
            reasons: dict[str, int] = {}
            for r in rows:
                if not r["success"]:
                    reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
            summary.setdefault(model, {})[condition] = {
                "episodes": len(rows), "successes": len(wins), "success_rate": len(wins) / len(rows),
                "ci95": [low, high],
                "time_to_target": float(np.mean([r["time_to_target"] for r in wins])) if wins else None,
                "final_distance": float(np.mean([r["final_distance"] for r in rows])),
                "jerk": float(np.mean([r["jerk"] for r in rows])), "failures": reasons}
    return summary


def ood_mean(by_condition: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Success over all out-of-distribution episodes, with its Wilson interval.

    Every condition flies the same number of episodes, so this is also the mean of the
    conditions' rates.
    """
    rows = [v for c, v in by_condition.items() if c != IN_DISTRIBUTION]
    if not rows:
        return None
    wins, n = sum(v["successes"] for v in rows), sum(v["episodes"] for v in rows)
    return {"episodes": n, "successes": wins, "success_rate": wins / n, "ci95": list(wilson(wins, n))}
