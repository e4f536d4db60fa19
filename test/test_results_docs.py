"""The results tables in the README and the model card are the shipped report's figures, not a stale copy."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADER = "| condition | CfC-NCP (liquid, default, 18.5k) |"
MODELS = ["cfc_ncp", "ltc_ncp", "cfc", "lstm", "gru", "ff", "expert"]


def cell(stats: dict) -> str:
    low, high = stats["ci95"]
    return f"{100 * stats['success_rate']:.0f}% [{100 * low:.0f}–{100 * high:.0f}]"


def table(text: str) -> list[list[str]]:
    """The rows of the one table that starts with HEADER, as lists of cells (the header and rule dropped)."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(HEADER)]
    assert len(starts) == 1, f"{len(starts)} tables start with {HEADER!r}"
    rows = []
    for line in lines[starts[0] + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip().strip("*") for c in line.strip("|").split("|")])
    return rows


@pytest.mark.parametrize("document", ["README.md", "models/README.md"])
def test_the_fifty_episode_table_is_the_shipped_report(document: str) -> None:
    report = json.loads((ROOT / "docs/results/report.json").read_text())
    expected = [[c] + [cell(report["summary"][m][c]) for m in MODELS] for c in report["conditions"]]
    expected.append(["mean of the 19 out-of-distribution conditions"] + [cell(report["ood_mean"][m]) for m in MODELS])
    rows = table((ROOT / document).read_text())
    width = len(rows[0])  # the model card has no expert column
    assert rows == [row[:width] for row in expected]
