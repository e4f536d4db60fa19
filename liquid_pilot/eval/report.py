"""Evaluation reports: a Markdown table, JSON, and a success-rate heat map."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from liquid_pilot.eval.evaluate import IN_DISTRIBUTION, ood_mean
from liquid_pilot.eval.runs import across_runs, comparisons, markdown_runs


def _cell(stats: dict[str, Any] | None) -> str:
    if stats is None:
        return "–"
    low, high = stats["ci95"]
    return f"{100 * stats['success_rate']:.0f}% [{100 * low:.0f}–{100 * high:.0f}]"


def markdown(summary: dict[str, dict[str, dict[str, Any]]], conditions: list[str], title: str = "",
             note: str = "", runs: dict[str, list[str]] | None = None) -> str:
    """Write the report; ``runs`` ({name: models}) adds the statistics across training runs of each recipe."""
    models = list(summary)
    n = max(s["episodes"] for by in summary.values() for s in by.values())
    lines = [f"# {title or 'Closed-loop evaluation'}", "",
             f"Success rate with its 95% Wilson interval; {n} seeded episodes per model and condition "
             f"(the same seeds for every model). `{IN_DISTRIBUTION}` is the training distribution. {note}", "",
             "| condition | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for condition in conditions:
        lines.append(f"| {condition} | " + " | ".join(_cell(summary[m].get(condition)) for m in models) + " |")
    means = [ood_mean(summary[m]) for m in models]
    lines.append("| **mean out of distribution** | " + " | ".join(f"**{_cell(v)}**" for v in means) + " |")
    lines += ["", "Mean time to target (successful episodes, s) / final distance (m) / command jerk:", "",
              "| condition | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for condition in conditions:
        cells = []
        for m in models:
            s = summary[m].get(condition)
            if s is None:
                cells.append("–")
                continue
            ttt = "–" if s["time_to_target"] is None else f"{s['time_to_target']:.1f}"
            cells.append(f"{ttt} / {s['final_distance']:.2f} / {s['jerk']:.1f}")
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    lines += ["", "Failure reasons:", ""]
    for m in models:
        parts = [f"{c}: " + ", ".join(f"{k} {v}" for k, v in s["failures"].items())
                 for c, s in summary[m].items() if s["failures"]]
        lines.append(f"- **{m}**: " + ("; ".join(parts) if parts else "none"))
    text = "\n".join(lines) + "\n"
    return text + markdown_runs(across_runs(summary, runs, conditions), conditions) if runs else text


def heat_map(summary: dict[str, dict[str, dict[str, Any]]], conditions: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(summary)
    rates = np.array([[summary[m].get(c, {}).get("success_rate", np.nan) for m in models] for c in conditions])
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(models), 0.9 + 0.38 * len(conditions)))
    image = ax.imshow(rates, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for (i, j), value in np.ndenumerate(rates):
        if not np.isnan(value):
            ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
    ax.set_yticks(range(len(conditions)), conditions)
    fig.colorbar(image, ax=ax, label="success rate")
    ax.set_title("closed-loop success (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(summary: dict[str, dict[str, dict[str, Any]]], conditions: list[str], out: Path,
                 title: str = "", note: str = "", runs: dict[str, list[str]] | None = None) -> None:
    (out / "report.md").write_text(markdown(summary, conditions, title, note, runs))
    ood = {model: ood_mean(by_condition) for model, by_condition in summary.items()}
    report = {"conditions": conditions, "summary": summary, "ood_mean": ood}
    if runs:
        report["runs"] = across_runs(summary, runs, conditions)
        report["recipes_compared"] = comparisons(report["runs"])
    (out / "report.json").write_text(json.dumps(report, indent=1))
    heat_map(summary, conditions, out / "heatmap.png")
