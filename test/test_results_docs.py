"""The results tables in the manual, the README and the model card are the shipped reports' figures, not stale copies.

docs/results.md holds the 50-episode table of the shipped pilots (as does the model card, without the expert) and
the table of every recipe over three training runs; the README's headline table repeats figures from both.
"""
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADER = "| condition | CfC-NCP (liquid, previous default, 18.5k) |"
RUNS_HEADER = "| recipe | runs | easy tier: each run (seeds 0, 1, 2) |"
HEADLINE_HEADER = "| pilot | shipped: in distribution | shipped: 19 out-of-distribution conditions |"
MODELS = ["cfc_ncp", "ltc_ncp", "cfc", "lstm", "gru", "ff", "expert"]
# The training-runs study's recipes, in the tables' order: the six heads, then the four on the camera alone.
RECIPES = ["cfc_ncp", "ltc_ncp", "cfc", "lstm", "gru", "ff", "paper_cfc", "paper_ltc", "cfc_ncp_image", "ff_image"]


def report(name: str) -> dict:
    return json.loads((ROOT / "docs/results" / name / "report.json").read_text())


def cell(stats: dict) -> str:
    low, high = stats["ci95"]
    return f"{100 * stats['success_rate']:.0f}% [{100 * low:.0f}–{100 * high:.0f}]"


def over_runs(ood: dict) -> str:
    """A recipe's mean ± SD over its runs with the t interval, clipped to 0–100% as `eval --runs` reports it."""
    low, high = ood["ci95"]
    return f"{100 * ood['mean']:.1f}% ± {100 * ood['sd']:.1f} [{100 * max(low, 0):.0f}–{100 * min(high, 1):.0f}]"


def table(text: str, header: str = HEADER) -> list[list[str]]:
    """The rows of the one table that starts with ``header``, as lists of cells (the header and rule dropped)."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert len(starts) == 1, f"{len(starts)} tables start with {header!r}"
    rows = []
    for line in lines[starts[0] + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip().strip("*") for c in line.strip("|").split("|")])
    return rows


@pytest.mark.parametrize("document", ["docs/results.md", "models/README.md"])
def test_the_fifty_episode_table_is_the_shipped_report(document: str) -> None:
    shipped = report("")
    expected = [[c] + [cell(shipped["summary"][m][c]) for m in MODELS] for c in shipped["conditions"]]
    expected.append(["mean of the 19 out-of-distribution conditions"] + [cell(shipped["ood_mean"][m]) for m in MODELS])
    rows = table((ROOT / document).read_text())
    width = len(rows[0])  # the model card has no expert column
    assert rows == [row[:width] for row in expected]


def test_the_training_runs_table_is_the_runs_reports() -> None:
    easy, hard = report("runs_easy")["runs"], report("runs_hard")["runs"]
    rows = table((ROOT / "docs/results.md").read_text(), RUNS_HEADER)
    assert len(rows) == len(RECIPES)
    for row, recipe in zip(rows, RECIPES):
        expected = [str(len(easy[recipe]["runs"]))]
        for tier in (easy, hard):
            expected += [", ".join(f"{100 * x:.1f}" for x in tier[recipe]["ood"]["per_run"]),
                         over_runs(tier[recipe]["ood"])]
        assert row[1:] == expected, row[0]


def test_the_readme_headline_table_is_the_reports() -> None:
    shipped, easy, hard = report(""), report("runs_easy")["runs"], report("runs_hard")["runs"]
    rows = table((ROOT / "README.md").read_text(), HEADLINE_HEADER)
    models = RECIPES + ["expert"]
    assert len(rows) == len(models)
    names = [row[0] for row in table((ROOT / "docs/results.md").read_text(), RUNS_HEADER)]
    assert [row[0] for row in rows[:len(RECIPES)]] == names  # each row names the recipe the results page does
    for row, model in zip(rows, models):
        expected = ([cell(shipped["summary"][model]["forest_summer"]), cell(shipped["ood_mean"][model])]
                    if model in shipped["summary"] else ["—", "—"])
        expected += [over_runs(easy[model]["ood"]), over_runs(hard[model]["ood"])] if model in easy else ["—", "—"]
        assert row[1:] == expected, row[0]


ROUND2_HEADER = "| recipe (round 2's data) | runs | easy tier: each run | easy tier: over runs |"
ROUND2 = ["c3", "c4", "ltc_ncp", "lstm", "ff", "cfc", "gru"]  # the second round, in its table's order
ROUND3_HEADER = "| recipe (round 3) | runs | easy tier: each run | easy tier: over runs |"
# The third round: C5 and C3 (five runs each), the LSTM and the feed-forward pilot on C5 (several runs), then the
# other heads' one run on C5 (seed 2, the shipped file)
ROUND3 = ["c5", "c3", "lstm_fn", "ff_fn", "ltc_ncp_fn", "cfc_fn", "gru_fn"]


ROUND4_HEADER = "| recipe (round 4) | runs | easy tier: each run | easy tier: over runs |"
# The fourth round: C6 (the default), C5, then other heads on C6's data; five runs each
ROUND4 = ["c6", "c5", "lstm_c6", "ff_c6", "gru_c6", "cfc_c6", "ltc_ncp_c6"]


ROUND5_HEADER = "| recipe (round 5) | runs | easy tier: each run | easy tier: over runs |"
# The fifth round: C7 (the default), then C6 trained again on the same collection; five runs each
ROUND5 = ["c7", "c6r"]


TIERS = ("easy", "hard", "search")  # the study's tiers: a report folder each (the easy tier, the hard, its searches)


def check_round_table(tiers: str, header: str, order: list[str], elsewhere: dict[str, str] | None = None) -> None:
    """Each row: a recipe's runs (each run's mean, then over runs), or its one run (the seed-2 model) alone.

    The reports are ``best_pilot/<tiers>/{easy,hard,search}``, or for a recipe in ``elsewhere`` the folder it names.
    """
    rows = table((ROOT / "docs/results/best_pilot/README.md").read_text(), header)
    assert len(rows) == len(order)
    for row, recipe in zip(rows, order):
        folder = (elsewhere or {}).get(recipe, tiers)
        reports = {t: report(f"best_pilot/{folder}/{t}") for t in TIERS}
        if recipe in reports["easy"].get("runs", {}):  # several runs: each run's mean, then over runs
            expected = [str(len(reports["easy"]["runs"][recipe]["runs"]))]
            for tier in ("easy", "hard"):
                ood = reports[tier]["runs"][recipe]["ood"]
                expected += [", ".join(f"{100 * x:.1f}" for x in ood["per_run"]), over_runs(ood)]
            expected.append(over_runs(reports["search"]["runs"][recipe]["ood"]))
        else:  # one run (a model of the reports): its mean, nothing over runs
            model = recipe if recipe in reports["easy"]["ood_mean"] else f"{recipe}_seed2"
            rate = {t: 100 * reports[t]["ood_mean"][model]["success_rate"] for t in reports}
            expected = ["1", f"{rate['easy']:.1f}", "—", f"{rate['hard']:.1f}", "—", f"{rate['search']:.1f}% (one run)"]
        assert row[1:] == expected, row[0]


def test_the_best_pilot_round_two_table_is_its_reports() -> None:
    check_round_table("round2/tiers", ROUND2_HEADER, ROUND2)


def test_the_best_pilot_round_three_table_is_its_reports() -> None:
    check_round_table("round3/tiers", ROUND3_HEADER, ROUND3)


def test_the_best_pilot_round_four_table_is_its_reports() -> None:
    check_round_table("round4/tiers", ROUND4_HEADER, ROUND4)


def test_the_best_pilot_round_five_table_is_its_reports() -> None:
    check_round_table("round5/tiers", ROUND5_HEADER, ROUND5)
    check_round_table("round5/ff", "| recipe (round 5, the feed-forward pilot) | runs |", ["ff_c7"])


def minus(base: str, base_recipe: str, where: str, recipe: str) -> list[tuple[str, bool]]:
    """Recipe ``base_recipe`` of reports ``best_pilot/<base>/<tier>`` minus ``recipe`` of ``best_pilot/<where>/<tier>``
    on each tier: eval's own Welch interval over their runs, as the page writes it (points, signed, the minus sign
    typeset), and whether it excludes zero."""
    from liquid_pilot.eval.runs import compare

    return [welch_cell(compare(report(f"best_pilot/{base}/{tier}")["runs"][base_recipe],
                               report(f"best_pilot/{where}/{tier}")["runs"][recipe])) for tier in TIERS]


def check_welch_table(header: str, base: str, base_recipe: str, rows: dict[str, tuple[str, str]]) -> None:
    """The study's table under ``header``: a row per label of ``rows`` (in order), each cell the base recipe minus the
    row's (report folder, recipe) on a tier, with ", apart" where the interval excludes zero."""
    found = table((ROOT / "docs/results/best_pilot/README.md").read_text(), header)
    assert [row[0] for row in found] == list(rows)
    for row in found:
        cells = minus(base, base_recipe, *rows[row[0]])
        assert row[1:] == [text + (", apart" if apart else "") for text, apart in cells], row[0]


def welch_cell(diff: dict, gap: str = " ") -> tuple[str, bool]:
    """``compare``'s difference and interval as the pages write them (points, signed, the minus sign typeset), and
    whether the interval excludes zero."""
    low, high = diff["ci95"]
    return (f"{100 * diff['difference']:+.1f}{gap}[{100 * low:+.1f}, {100 * high:+.1f}]".replace("-", "−"),
            diff["apart"])


def test_the_round_five_feed_forward_intervals_are_the_reports() -> None:
    """The page's C7-minus-feed-forward intervals are eval's own Welch intervals over the two reports' runs."""
    page = (ROOT / "docs/results/best_pilot/README.md").read_text()
    cells = [text for text, _ in minus("round5/tiers", "c7", "round5/ff", "ff_c7")]
    assert (f"easy tier **{cells[0]} (apart: the\nfeed-forward pilot ahead)**, hard tier {cells[1]}, searches "
            f"{cells[2]}.") in page


ROUND5_HEADS_HEADER = "| recipe (round 5, every head on C7's data) | runs |"
# Every head trained on C7's data after the choice, five runs each: the LSTM, GRU and dense CfC (round5/heads), the
# LTC-NCP (round5/ltc_ncp; its seed 2 also flew in round5/heads)
ROUND5_HEADS = ["lstm_c7", "gru_c7", "cfc_c7", "ltc_ncp_c7"]
ROUND5_ELSEWHERE = {"ltc_ncp_c7": "round5/ltc_ncp"}
WELCH_HEADER = "| C7's CfC-NCP minus (points, Welch's 95% interval over runs) | easy tier | hard tier | hard searches |"


def test_the_round_five_heads_table_is_its_reports() -> None:
    check_round_table("round5/heads", ROUND5_HEADS_HEADER, ROUND5_HEADS, ROUND5_ELSEWHERE)


def test_the_round_five_claim_intervals_are_the_reports() -> None:
    """The claim's table: C7's CfC-NCP minus each head, eval's own Welch interval over the reports' runs."""
    check_welch_table(WELCH_HEADER, "round5/tiers", "c7", {
        "LSTM": ("round5/heads", "lstm_c7"), "GRU": ("round5/heads", "gru_c7"), "dense CfC": ("round5/heads", "cfc_c7"),
        "LTC-NCP": ("round5/ltc_ncp", "ltc_ncp_c7"), "feed-forward": ("round5/ff", "ff_c7")})


def successes(validation: dict, run: str) -> int:
    """A run's successes over every condition of a validation report."""
    return sum(validation["summary"][run][c]["successes"] for c in validation["conditions"])


def check_validation_table(round_: int, runs: list[str]) -> tuple[dict, str]:
    """The round's validation table lists ``runs`` in order, each row its report's figures; (report, section)."""
    validation = report(f"best_pilot/round{round_}/validation")
    conditions = validation["conditions"]
    page = (ROOT / "docs/results/best_pilot/README.md").read_text()
    section = page[page.index(f"## Round {round_}: validation"):page.index(f"## Round {round_}: flown afterwards")]
    rows = table(section, "| run | " + " | ".join(conditions) + " |")
    assert [row[0].split(" ")[0].strip("*") for row in rows] == runs
    for run, row in zip(runs, rows):
        stats, won = validation["summary"][run], successes(validation, run)
        expected = [f"{100 * stats[c]['success_rate']:.0f}" for c in conditions]
        expected.append(f"{100 * won / (20 * len(conditions)):.1f}% ({won}/{20 * len(conditions)})")
        assert row[1:] == expected, run
    return validation, section


def test_the_round_four_choice_is_its_validation_report() -> None:
    """Every run's row is its report (C6's runs, then C5's); the rule's sums (1314 against 1294) are the reports'."""
    validation, section = check_validation_table(4, [f"c6_seed{s}" for s in range(5)] +
                                                 [f"c5_seed{s}" for s in range(5)])
    conditions = validation["conditions"]
    assert "far_spring" in conditions and len(conditions) == 14  # round 4 widened the validation set by one
    wins = {recipe: sum(successes(validation, f"{recipe}_seed{seed}") for seed in range(5)) for recipe in ("c5", "c6")}
    assert (wins["c6"], wins["c5"]) == (1314, 1294)
    # The shipped run is the best on validation, ties to the lower seed.
    best = max(range(5), key=lambda s: (successes(validation, f"c6_seed{s}"), -s))
    assert best == 1 and "**c6_seed1** (shipped)" in section


def test_the_round_five_choice_is_its_validation_report() -> None:
    """C7's runs, then C6's on the same collection; the amended rule's sums (1332 against 1264) are the reports'."""
    validation, section = check_validation_table(5, [f"c7_seed{s}" for s in range(5)] +
                                                 [f"c6r_seed{s}" for s in range(5)])
    assert len(validation["conditions"]) == 14  # round 4's fourteen
    wins = {recipe: sum(successes(validation, f"{recipe}_seed{seed}") for seed in range(5)) for recipe in ("c6r", "c7")}
    assert (wins["c7"], wins["c6r"]) == (1332, 1264)
    assert "C7 scored 1332 of 1400 (95.1%) against 1264 (90.3%)" in section
    best = max(range(5), key=lambda s: (successes(validation, f"c7_seed{s}"), -s))
    assert best == 1 and "**c7_seed1** (shipped)" in section


def test_the_round_six_table_is_its_reports() -> None:
    """C8's five runs on the tiers (round6/tiers), beside C7's (round 5's reports), and the pair's Welch intervals."""
    check_round_table("round6/tiers", "| recipe (round 6) | runs |", ["c8", "c7"], {"c7": "round5/tiers"})
    cells = minus("round6/tiers", "c8", "round5/tiers", "c7")
    page = (ROOT / "docs/results/best_pilot/README.md").read_text()
    assert [apart for _, apart in cells] == [False, False, True]
    assert (f"C8 minus C7 over runs (points): easy tier {cells[0][0]}, hard tier {cells[1][0]},\n"
            f"hard searches **{cells[2][0]} (apart)**") in page


def test_the_round_six_baselines_table_is_its_reports() -> None:
    """The baselines in models/, each head's seed-2 run continued to 50 epochs, one run each (round6/baselines)."""
    check_round_table("round6/baselines", "| recipe (round 6, the seed-2 runs at 50 epochs) | runs |",
                      ["ltc_ncp_c8", "cfc_c8", "lstm_c8", "gru_c8", "ff_c8"])


def test_the_shipped_runs_fresh_seeds_are_the_targets_table() -> None:
    """The targets table: the shipped run's fresh-seed reports of the latest round (round 8: C9's seed 3), then the
    recipe's five runs on the tiers (round 7's C9 reports)."""
    page = (ROOT / "docs/results/best_pilot/README.md").read_text()
    rows = table(page, "| target | measured | met |")
    ood = report("best_pilot/round8/fresh/ood")["summary"]["c9_seed3"]
    hard = report("best_pilot/round8/fresh/hard")["summary"]["c9_seed3"]
    searches = ("hard_behind_left", "hard_behind_right")
    counts = [(sum(v["successes"] for v in ood.values()), sum(v["episodes"] for v in ood.values())),
              (sum(v["successes"] for c, v in hard.items() if c not in searches), 35),
              (sum(hard[c]["successes"] for c in searches), 10)]
    assert len(ood) == 19 and len(hard) == 9
    for row, (won, n) in zip(rows[:3], counts):
        assert row[1].startswith(f"{won}/{n} ({100 * won / n:.1f}%)"), row[1]
    for row, tier in zip(rows[3:], ("easy", "hard")):
        assert row[1].startswith(over_runs(report(f"best_pilot/round7/tiers/{tier}")["runs"]["c9"]["ood"])), row[1]
    assert [row[2] for row in rows] == ["yes"] * 5  # each target against its threshold: 95, 85, 50, 95, 85%
    assert counts[0][0] / 95 >= 0.95 and counts[1][0] / 35 >= 0.85 and counts[2][0] / 10 >= 0.5


def test_the_round_six_choice_is_its_validation_report() -> None:
    """C8's runs flew C7's fourteen conditions and episodes; the rule's sums (1351 against 1332), the shipped run
    (the best on validation) and the Welch interval over runs are the reports'."""
    from liquid_pilot.eval.runs import compare

    validation, section = check_validation_table(6, [f"c8_seed{s}" for s in range(5)])
    c7 = report("best_pilot/round5/validation")
    assert validation["conditions"] == c7["conditions"]
    wins = (sum(successes(validation, f"c8_seed{s}") for s in range(5)),
            sum(successes(c7, f"c7_seed{s}") for s in range(5)))
    assert wins == (1351, 1332) and "**C8 scored 1351 of 1400 (96.5%) against C7's 1332 (95.1%)" in section
    best = max(range(5), key=lambda s: (successes(validation, f"c8_seed{s}"), -s))
    assert best == 2 and "**c8_seed2** (shipped)" in section  # shipped until round 8 (git history)
    diff = compare(validation["runs"]["c8"], c7["runs"]["c7"])
    cell, apart = welch_cell(diff, "\npoints ")
    assert not apart and f"C8 minus C7, is **{cell}, not apart**" in section


def test_the_dense_cfc_on_validation_is_its_report() -> None:
    """Round 5's dense CfC flew the same fourteen conditions and seeds as C7; the page's sums are the reports'."""
    validation = report("best_pilot/round5/cfc_validation")
    assert validation["conditions"] == report("best_pilot/round5/validation")["conditions"]
    runs = [f"cfc_c7_seed{s}" for s in range(5)]
    total = sum(successes(validation, run) for run in runs)
    scores = ", ".join(str(successes(validation, run)) for run in runs)
    page = (ROOT / "docs/results/best_pilot/README.md").read_text()
    assert f"**The dense CfC on validation: {total} of 1400** (its runs {scores} of 280;" in page


def test_the_round_three_choice_is_its_validation_report() -> None:
    """Each C5 run's row is its validation report, and the rule's sums (C5 1292 against C3's 1285) are the reports'."""
    validation, _ = check_validation_table(3, [f"c5_seed{s}" for s in range(5)])
    wins = {recipe: sum(successes(validation, f"{recipe}_seed{seed}") for seed in range(5)) for recipe in ("c3", "c5")}
    assert (wins["c5"], wins["c3"]) == (1292, 1285)


def study_script(name: str):
    """Import one of the study's scripts (docs/results/best_pilot/NAME.py), which are not a package."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "docs/results/best_pilot" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_far_label_tabulation_replays_a_far_flight() -> None:
    """docs/results/best_pilot/far_labels.py (round 4's label statistics) runs, and splits every frame it flies."""
    module = study_script("far_labels")
    split = module.labels(str(ROOT / "models" / "cfc_ncp.pt"), 1)
    assert set(split) <= {"in view", "out of view"} and sum(len(rows) for rows in split.values()) > 16
    assert all(rows.shape[1] == 4 and np.all(np.abs(rows[:, 3]) <= 1.0 + 1e-9) for rows in split.values())
    # The expert flies at the chair it sees: forward on average when it is in view.
    assert split["in view"][:, 0].mean() > 0.3


def test_the_search_yaw_tabulation_keeps_the_frames_before_the_first_sighting() -> None:
    """docs/results/best_pilot/search_yaw.py (round 4's search behaviour): the shipped feed-forward pilot turns."""
    module = study_script("search_yaw")
    yaw, outcomes = module.search_yaw(str(ROOT / "models" / "ff.pt"), 1)
    # One episode per search: the chair starts behind, so the first frames are all before its sighting; C7's
    # feed-forward pilot (models/ff.pt, seed 2) turns left at about 0.8 rad/s there and finds it both times.
    assert len(yaw) > 30 and sum(outcomes.values()) == 2
    assert yaw.mean() > 0.5 and np.mean(np.abs(yaw) < 0.2) < 0.1


CARD_HEADER = "| file | head | trainable parameters | epochs (best) | validation loss | training time |"


def test_the_model_cards_table_is_the_shipped_files() -> None:
    """Each row of the model card's file table: the file's parameter count, epochs, loss and time, from the file."""
    from liquid_pilot.nn.checkpoint import load_pilot, read_checkpoint

    rows = table((ROOT / "models/README.md").read_text(), CARD_HEADER)
    assert [row[0].strip("`") for row in rows] == [f"{m}.pt" for m in MODELS if m != "expert"]
    for row in rows:
        path = ROOT / "models" / row[0].strip("`")
        made = read_checkpoint(path)["provenance"]
        epochs = made["config"]["epochs"]
        assert row[2] == f"{load_pilot(path).parameter_counts()['total']:,}", row[0]
        assert row[3] == f"{epochs} ({made['epoch']})", row[0]
        assert row[4] == f"{made['val_loss']:.5f}", row[0]
        assert row[5].startswith(f"{made['train_seconds'] / 60:.1f} min"), row[0]


def test_the_warmed_up_ltc_run_is_its_report() -> None:
    """Round 7: the LTC-NCP's seed 1 trained with a warm-up; the study page, README and results quote its report."""
    ood = report("best_pilot/round7/ltc_warmup/easy")["ood_mean"]["ltc_ncp_warmup_seed1"]
    flown = f"{100 * ood['success_rate']:.0f}%"
    page = (ROOT / "docs/results/best_pilot/README.md").read_text()
    assert f"**{flown} out of distribution** (the same seed without it 0%" in page
    without = report("best_pilot/round5/ltc_ncp/easy")["ood_mean"]["ltc_ncp_c7_seed1"]["success_rate"]
    assert without == 0.0 and ood["episodes"] == 190
    readme = " ".join((ROOT / "README.md").read_text().split())
    results = " ".join((ROOT / "docs/results.md").read_text().split())
    assert f"the same run learns and flies {flown} of the easy tier" in readme
    assert f"makes the same run learn: {flown} of the easy tier" in results


def test_the_round_seven_choice_is_its_validation_report() -> None:
    """C9's runs flew C8's fourteen conditions and episodes; 1344 against 1351 keeps C8, whose file stays shipped."""
    from liquid_pilot.eval.runs import compare

    validation, section = check_validation_table(7, [f"c9_seed{s}" for s in range(5)])
    c8 = report("best_pilot/round6/validation")
    assert validation["conditions"] == c8["conditions"]
    wins = (sum(successes(validation, f"c9_seed{s}") for s in range(5)),
            sum(successes(c8, f"c8_seed{s}") for s in range(5)))
    assert wins == (1344, 1351) and "**C9 scored 1344 of 1400 (96.0%) against C8's 1351 (96.5%): by the rule, C8" \
        in section
    cell, apart = welch_cell(compare(validation["runs"]["c9"], c8["runs"]["c8"]), "\npoints ")
    assert not apart and f"C9 minus C8, is **{cell}, not apart**" in section


def test_the_round_eight_choice_is_its_validation_report() -> None:
    """C8's and C9's runs on both validation sets: the first set repeats rounds 6 and 7 to the episode, the totals
    (1935 against 1902) choose C9, its best run (seed 3) is the shipped file, and the Welch intervals are eval's."""
    from liquid_pilot.eval.runs import across_runs, compare
    from liquid_pilot.nn.checkpoint import read_checkpoint
    from liquid_pilot.sim.config import list_validation, list_validation2

    validation = report("best_pilot/round8/validation")
    first, second = list_validation(), list_validation2()
    assert validation["conditions"] == first + second
    earlier = {"c8": report("best_pilot/round6/validation"), "c9": report("best_pilot/round7/validation")}
    runs = [f"{r}_seed{s}" for r in ("c8", "c9") for s in range(5)]
    for run in runs:  # deterministic: the same episodes give the same flights (float sums aside, in another order)
        for c in first:
            now, then = validation["summary"][run][c], earlier[run[:2]]["summary"][run][c]
            assert (now["successes"], now["failures"]) == (then["successes"], then["failures"]), (run, c)
            assert now["final_distance"] == pytest.approx(then["final_distance"], rel=1e-9), (run, c)
    page = (ROOT / "docs/results/best_pilot/README.md").read_text()
    section = page[page.index("## Round 8: validation"):page.index("## Round 8: flown afterwards")]
    rows = table(section, "| run | " + " | ".join(second) + " | second set | first set | both sets |")
    assert [row[0].split(" ")[0].strip("*") for row in rows] == runs
    won = {}
    for run, row in zip(runs, rows):
        stats = validation["summary"][run]
        a, b = (sum(stats[c]["successes"] for c in group) for group in (second, first))
        won[run] = a + b
        assert row[1:] == [f"{100 * stats[c]['success_rate']:.0f}" for c in second] + [
            f"{a}/120", f"{b}/280", f"{100 * (a + b) / 400:.1f}% ({a + b}/400)"], run
    totals = [sum(won[f"{r}_seed{s}"] for s in range(5)) for r in ("c9", "c8")]
    assert totals == [1935, 1902] and "**C9 scored 1935 of 2000 (96.8%) against C8's 1902 (95.1%): by the rule, C9" \
        in section
    best = max(range(5), key=lambda s: (won[f"c9_seed{s}"], -s))
    assert best == 3 and "| **c9_seed3** (shipped) |" in section
    shipped = read_checkpoint(ROOT / "models" / "cfc_ncp.pt")["provenance"]
    assert (shipped["config"]["seed"], shipped["config"]["epochs"], shipped["flights"]) == (3, 50, 550)  # 6 folders
    groups = {r: [f"{r}_seed{s}" for s in range(5)] for r in ("c8", "c9")}
    cells = []
    for conditions in (first + second, second):
        summary = {m: {c: validation["summary"][m][c] for c in conditions} for m in runs}
        stats = across_runs(summary, groups, conditions)
        cells.append(welch_cell(compare(stats["c9"], stats["c8"])))
    assert not cells[0][1] and not cells[1][1]
    assert f"both sets **{cells[0][0].replace(' [', ' points [')},\nnot apart**; the second set alone {cells[1][0]}" \
        in section


def test_the_round_eight_baselines_table_is_its_reports() -> None:
    """The baselines in models/ after round 8: each head's seed-2 run on C9's six folders, one run each, beside C9's
    five runs (round 7's reports); and they are the files shipped."""
    from liquid_pilot.nn.checkpoint import read_checkpoint

    check_round_table("round8/baselines", "| recipe (round 8, the seed-2 runs on C9's data) | runs |",
                      ["c9", "ltc_ncp_c9", "cfc_c9", "lstm_c9", "gru_c9", "ff_c9"], {"c9": "round7/tiers"})
    for head in ("ltc_ncp", "cfc", "lstm", "gru", "ff"):
        made = read_checkpoint(ROOT / "models" / f"{head}.pt")["provenance"]
        assert (made["config"]["seed"], made["config"]["epochs"], made["flights"]) == (2, 50, 550), head
    frost = {m: v["frost"]["successes"] for m, v in report("best_pilot/round8/heads_validation2")["summary"].items()}
    assert min(frost[f"{h}_c9_seed2"] for h in ("ltc_ncp", "cfc", "lstm", "gru", "ff")) == 19  # 95-100%
    assert [frost[f"{h}_c8_seed2"] for h in ("ltc_ncp", "gru", "lstm", "cfc", "ff")] == [0, 0, 5, 15, 20]
    page = (ROOT / "docs/results/best_pilot/README.md").read_text()
    assert ("95-100% of the episodes by every head's run on C9's data, against 0% (LTC-NCP, GRU), 25% (LSTM), 75% "
            "(dense CfC)\nand 100% (feed-forward)") in page


def test_the_round_seven_table_and_fresh_seeds_are_their_reports() -> None:
    """C9's five runs on the tiers beside C8's, their Welch intervals, the winter forest, and C9's would-be shipped
    run (seed 2) on the fresh seeds."""
    check_round_table("round7/tiers", "| recipe (round 7) | runs |", ["c8", "c9"], {"c8": "round6/tiers"})
    cells = minus("round7/tiers", "c9", "round6/tiers", "c8")
    page = (ROOT / "docs/results/best_pilot/README.md").read_text()
    assert not any(apart for _, apart in cells)
    assert (f"C9 minus C8 over runs (points): easy tier {cells[0][0]}, hard tier {cells[1][0]},\n"
            f"hard searches {cells[2][0]}: none apart") in page
    easy = report("best_pilot/round7/tiers/easy")["summary"]
    winter = [easy[f"c9_seed{s}"]["forest_winter"]["successes"] for s in range(5)]
    assert winter == [10] * 5 and "winter forest 50 of 50 episodes" in page
    ood = report("best_pilot/round7/fresh/ood")["summary"]["c9_seed2"]
    hard = report("best_pilot/round7/fresh/hard")["summary"]["c9_seed2"]
    searches = ("hard_behind_left", "hard_behind_right")
    flown = (sum(v["successes"] for v in ood.values()),
             sum(v["successes"] for c, v in hard.items() if c not in searches),
             sum(hard[c]["successes"] for c in searches))
    assert (f"**{flown[0]}/95 out of\ndistribution**" in page and f"**{flown[1]}/35 on the hard\ntier**" in page
            and f"**{flown[2]}/10 on the two searches**" in page)


def test_the_feed_forward_at_fifty_epochs_is_its_reports() -> None:
    """Round 7: the feed-forward's five runs continued to 50 epochs, beside C8, and their Welch intervals."""
    check_round_table("round7/ff_50_epochs", "| recipe (round 7, 50 epochs) | runs |", ["c8", "ff_c8"],
                      {"c8": "round6/tiers"})
    cells = minus("round6/tiers", "c8", "round7/ff_50_epochs", "ff_c8")
    assert [apart for _, apart in cells] == [True, False, False]
    page = (ROOT / "docs/results/best_pilot/README.md").read_text()
    assert (f"CfC-NCP minus feed-forward over runs (points): easy tier **{cells[0][0]} (apart)**, hard\n"
            f"tier {cells[1][0]}, hard searches {cells[2][0]}.") in page


ROUND9_HEADER = "| recipe (round 9, every head on C9's data, 50 epochs) | runs |"
# Round 9: each head's five runs on C9's six folders (seed 2's trained in round 8), in round9/<head>; C9's in round 7
ROUND9 = {"ff_c9": "feed-forward", "lstm_c9": "LSTM", "cfc_c9": "dense CfC", "gru_c9": "GRU",
          "ltc_ncp_c9": "LTC-NCP"}
ROUND9_WELCH_HEADER = "| C9's CfC-NCP minus (points, Welch's 95% interval over runs, round 9) | easy tier | hard tier |"


def test_the_round_nine_heads_and_the_claim_are_their_reports() -> None:
    """Every head trained five times on the default's data: the table per run and over runs, and the claim's Welch
    intervals (C9's CfC-NCP minus each head), eval's own over the reports' runs."""
    check_round_table("round9", ROUND9_HEADER, ["c9", *ROUND9],
                      {"c9": "round7/tiers", **{recipe: f"round9/{recipe[:-3]}" for recipe in ROUND9}})
    check_welch_table(ROUND9_WELCH_HEADER, "round7/tiers", "c9",
                      {label: (f"round9/{recipe[:-3]}", recipe) for recipe, label in ROUND9.items()})
    page = " ".join((ROOT / "docs/results/best_pilot/README.md").read_text().split())
    for run in ("lstm_warmup_c9_seed0", "ltc_ncp_warmup_c9_seed1"):  # the runs that did not learn, with the warm-up
        warm = [100 * report(f"best_pilot/round9/{run[:-9]}/{t}")["ood_mean"][run]["success_rate"]
                for t in TIERS]
        assert f"flies {warm[0]:.1f}%, {warm[1]:.1f}% and {warm[2]:.1f}% of the searches".replace(".0%", "%") in page
