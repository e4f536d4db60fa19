"""Results across training runs: the same recipe trained with several seeds, evaluated on the same episodes.

An episode-level interval (Wilson) says how sure one trained pilot's rate is; it says nothing of
how much another training run of the same recipe would differ. Here each run's rate is one
sample: per condition the mean and range over runs, and for the out-of-distribution mean also
the standard deviation and a 95% Student-t interval of the recipe's mean over runs.

Two recipes are compared on the difference of their out-of-distribution means over runs, with
Welch's 95% interval (unequal variances; its degrees of freedom rounded down, which widens the
interval): one recipe beats another beyond the uncertainty over training runs when the whole
interval is above zero.
"""
from __future__ import annotations

import math
from typing import Any

from liquid_pilot.eval.evaluate import ood_mean

# Two-sided 95% quantiles of Student's t for 1-10 degrees of freedom; beyond, the normal's with the
# Cornish-Fisher correction to second order (within 0.1% of the exact value for 11 or more).
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)
Z95 = 1.959964


def t95(df: int) -> float:
    """Two-sided 95% quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("a t interval needs at least two runs")
    if df <= len(T95):
        return T95[df - 1]
    z = Z95
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def parse_runs(specs: list[str], models: list[str]) -> dict[str, list[str]]:
    """``NAME=MODEL,MODEL,...`` (model names as in the report) -> {NAME: [models]}; refuse unknown names."""
    groups: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, members = spec.partition("=")
        runs = [m for m in members.split(",") if m]
        if not sep or not name or len(runs) < 2:
            raise ValueError(f"--runs {spec!r}: write NAME=MODEL,MODEL,... with two or more models")
        unknown = [m for m in runs if m not in models]
        if unknown:
            raise ValueError(f"--runs {spec!r}: {', '.join(unknown)} not among the evaluated models "
                             f"({', '.join(models)})")
        groups[name] = runs
    return groups


def across_runs(summary: dict[str, dict[str, dict[str, Any]]], groups: dict[str, list[str]],
                conditions: list[str]) -> dict[str, dict[str, Any]]:
    """Per group: each condition's mean and range over runs, and the out-of-distribution mean's statistics."""
    out: dict[str, dict[str, Any]] = {}
    for name, runs in groups.items():
        per_condition = {}
        for condition in conditions:
            rates = [summary[m][condition]["success_rate"] for m in runs if condition in summary[m]]
            if len(rates) == len(runs):
                per_condition[condition] = {"mean": sum(rates) / len(rates), "min": min(rates), "max": max(rates)}
        oods = [ood_mean(summary[m])["success_rate"] for m in runs]
        mean = sum(oods) / len(oods)
        sd = math.sqrt(sum((v - mean) ** 2 for v in oods) / (len(oods) - 1))
        half = t95(len(oods) - 1) * sd / math.sqrt(len(oods))
        out[name] = {"runs": runs, "conditions": per_condition,
                     "ood": {"per_run": oods, "mean": mean, "sd": sd,
                             "ci95": [max(0.0, mean - half), min(1.0, mean + half)]}}  # a rate's bounds
    return out


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Recipe ``a`` against ``b`` (each an ``across_runs`` entry) on their out-of-distribution means.

    Returns the difference of the means over runs, Welch's 95% interval of it and whether the
    interval excludes zero.
    """
    (ma, va, na), (mb, vb, nb) = ((o["mean"], o["sd"] ** 2, len(o["per_run"])) for o in (a["ood"], b["ood"]))
    diff, se2 = ma - mb, va / na + vb / nb
    if se2 == 0.0:  # every run of both recipes alike: no spread to widen the difference
        low = high = diff
    else:
        df = se2 ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
        half = t95(max(1, math.floor(df))) * math.sqrt(se2)
        low, high = diff - half, diff + half
    return {"difference": diff, "ci95": [low, high], "apart": low > 0 or high < 0}


def comparisons(stats: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Every recipe against every other: {a: {b: compare(a, b)}}."""
    return {a: {b: compare(stats[a], stats[b]) for b in stats if b != a} for a in stats}


def markdown_runs(stats: dict[str, dict[str, Any]], conditions: list[str]) -> str:
    names = list(stats)
    lines = ["", "## Across training runs", "",
             "Each recipe trained several times (the runs named below), every run flown on the same episodes. "
             "Cells: mean success rate over runs (lowest–highest run). The last rows: each run's "
             "out-of-distribution mean, and the recipe's mean over runs ± standard deviation with its 95% "
             "Student-t interval, which counts runs, not episodes.", "",
             "| condition | " + " | ".join(f"{n} ({len(stats[n]['runs'])} runs)" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for condition in conditions:
        cells = []
        for n in names:
            c = stats[n]["conditions"].get(condition)
            cells.append("–" if c is None else
                         f"{100 * c['mean']:.0f}% ({100 * c['min']:.0f}–{100 * c['max']:.0f})")
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    lines.append("| out of distribution, per run | " + " | ".join(
        ", ".join(f"{100 * v:.1f}%" for v in stats[n]["ood"]["per_run"]) for n in names) + " |")
    lines.append("| **out of distribution, over runs** | " + " | ".join(
        f"**{100 * o['mean']:.1f}% ± {100 * o['sd']:.1f}** [{100 * o['ci95'][0]:.0f}–{100 * o['ci95'][1]:.0f}]"
        for o in (stats[n]["ood"] for n in names)) + " |")
    lines.append("")
    lines.append("Runs: " + "; ".join(f"{n}: {', '.join(stats[n]['runs'])}" for n in names) + ".")
    if len(names) > 1:
        table = comparisons(stats)
        lines += ["", "### Recipes compared", "",
                  "Row minus column: the difference of the out-of-distribution means over runs, in points, with "
                  "Welch's 95% interval over runs. **Bold**: the interval excludes zero, so the row recipe beats "
                  "(or trails) the column recipe beyond the uncertainty over training runs.", "",
                  "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for a in names:
            cells = []
            for b in names:
                if a == b:
                    cells.append("–")
                    continue
                c = table[a][b]
                text = f"{100 * c['difference']:+.1f} [{100 * c['ci95'][0]:+.0f}, {100 * c['ci95'][1]:+.0f}]"
                cells.append(f"**{text}**" if c["apart"] else text)
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
