"""Closed-loop evaluation: same seeds for every model, resumable, honest intervals, reports; the demo."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from liquid_pilot.eval.evaluate import evaluate, ood_mean, resolve_conditions, summarise, wilson
from liquid_pilot.eval.report import write_report
from liquid_pilot.eval.runs import across_runs, compare, parse_runs, t95
from liquid_pilot.nn.checkpoint import save_pilot
from liquid_pilot.nn.policy import Pilot

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("wins,n,low,high", [(0, 10, 0.0, 0.278), (10, 10, 0.722, 1.0), (5, 10, 0.237, 0.763),
                                             (45, 50, 0.786, 0.957)])
def test_wilson_interval(wins: int, n: int, low: float, high: float) -> None:
    assert wilson(wins, n) == pytest.approx((low, high), abs=1e-3)


def test_conditions_expand_and_unknown_ones_are_refused() -> None:
    everything = resolve_conditions(["all"])
    assert everything[0] == "forest_summer" and len(everything) >= 20
    assert "forest_summer" not in resolve_conditions(["ood"])
    held_out = resolve_conditions(["validation"])
    assert len(held_out) >= 8 and not set(held_out) & set(everything)  # never part of the results table
    assert resolve_conditions(["spring", "wind"]) == ["spring", "wind"]
    hard = resolve_conditions(["hard"])
    assert len(hard) >= 9 and not set(hard) & (set(everything) | set(held_out))  # a tier of its own
    assert resolve_conditions(["hard_far", "wind"]) == ["hard_far", "wind"]
    second = resolve_conditions(["validation2"])  # a group of its own: `validation` flies what it always flew
    assert len(second) == 6 and not set(second) & (set(everything) | set(held_out) | set(hard))
    assert resolve_conditions(["validation", "validation2"]) == held_out + second
    assert resolve_conditions(["ash", "spring"]) == ["ash", "spring"]
    with pytest.raises(ValueError, match="unknown condition 'moon'"):
        resolve_conditions(["moon"])


def test_models_fly_the_same_seeds_and_an_interrupted_run_resumes(tmp_path: Path) -> None:
    save_pilot(Pilot(seed=1), tmp_path / "untrained.pt")
    models = ["expert", str(tmp_path / "untrained.pt")]
    out = tmp_path / "eval"
    flown = []
    records, _ = evaluate(models, ["forest_summer", "blur"], 2, out, seed=5,
                          progress=lambda record, state: flown.append(record))
    assert len(records) == len(flown) == 8
    by_model = {m: sorted((r["condition"], r["seed"]) for r in records if r["model"] == m) for m in
                ("expert", "untrained")}
    expected = sorted((c, s) for c in ("forest_summer", "blur") for s in (5, 6))
    assert by_model["expert"] == by_model["untrained"] == expected
    lines = (out / "episodes.jsonl").read_text().splitlines()
    (out / "episodes.jsonl").write_text("\n".join(lines[:5]) + "\n")  # as if killed after five episodes
    flown.clear()
    again, _ = evaluate(models, ["forest_summer", "blur"], 2, out, seed=5,
                        progress=lambda record, state: flown.append(record))
    assert len(flown) == 3 and len(again) == 8
    summary = summarise(again)
    assert summary["expert"]["forest_summer"]["success_rate"] == 1.0
    write_report(summary, ["forest_summer", "blur"], out)
    report = (out / "report.md").read_text()
    assert "| forest_summer | 100% [34–100] |" in report
    expert_ood = summary["expert"]["blur"]["successes"]
    assert ood_mean(summary["expert"]) == {"episodes": 2, "successes": expert_ood, "success_rate": expert_ood / 2,
                                           "ci95": list(wilson(expert_ood, 2))}
    assert f"| **mean out of distribution** | **{50 * expert_ood:.0f}% [" in report
    assert json.loads((out / "report.json").read_text())["summary"]["untrained"]["blur"]["episodes"] == 2
    assert (out / "heatmap.png").read_bytes()[:4] == b"\x89PNG"


def test_the_flight_artefact_flies_its_checkpoints_episodes_bit_for_bit(tmp_path: Path) -> None:
    # The .onnx artefact is what flies on the drone: eval flies it through the same door as the checkpoint.
    from liquid_pilot.nn.artefact import write_artefact

    root = Path(__file__).resolve().parents[1]
    checkpoint, artefact = root / "models" / "cfc_ncp.pt", tmp_path / "artefact" / "cfc_ncp_onnx.onnx"
    write_artefact(checkpoint, artefact)
    records, _ = evaluate([str(checkpoint), str(artefact)], ["forest_summer", "dark"], 2, tmp_path / "eval",
                          seed=100000)
    fields = ("condition", "seed", "reason", "time_to_target", "final_distance", "path_length", "jerk", "steps")
    flown = {m: sorted(tuple(r[f] for f in fields) for r in records if r["model"] == m)
             for m in ("cfc_ncp", "cfc_ncp_onnx")}
    assert flown["cfc_ncp"] == flown["cfc_ncp_onnx"] and len(flown["cfc_ncp"]) == 4


def test_an_episode_flies_the_same_after_another_as_alone() -> None:
    # Each episode's clock starts again; a gate that kept the last episode's receive times would see the camera
    # as stale for the new episode's first camera_timeout (hovering) - the mechanism of a regression once.
    from liquid_pilot.harness.pilots import PilotPolicy
    from liquid_pilot.sim.config import load_scenario
    from liquid_pilot.sim.episode import fly
    from liquid_pilot.sim.world import Simulator

    sim = Simulator(load_scenario("forest_summer"))
    try:
        def flown(seeds: list[int]) -> tuple:
            policy = PilotPolicy.from_file(ROOT / "models" / "cfc_ncp.pt")
            policy.check(sim)
            r = [fly(sim, policy, seed) for seed in seeds][-1]
            return r.reason, r.steps, r.final_distance, r.path_length

        assert flown([100000, 100001]) == flown([100001])
    finally:
        sim.close()


def test_a_retrained_model_is_not_credited_with_the_old_ones_episodes(tmp_path: Path) -> None:
    model, out = tmp_path / "pilot.pt", tmp_path / "eval"
    save_pilot(Pilot(seed=1), model)
    first, _ = evaluate([str(model)], ["blur"], 1, out)
    assert first[0]["model_sha256"] and len(first[0]["model_sha256"]) == 16
    assert len(evaluate([str(model)], ["blur"], 1, out)[0]) == 1  # the same file resumes
    save_pilot(Pilot(seed=2), model)  # retrained under the same name
    with pytest.raises(ValueError, match=r"eval/episodes.jsonl: its episodes of 'pilot' were flown by another file "
                                         r"\(sha256 [0-9a-f]{16}\) than .*pilot.pt \(sha256 [0-9a-f]{16}\); fly into a "
                                         r"new --out"):
        evaluate([str(model)], ["blur"], 1, out)
    (tmp_path / "other").mkdir()
    save_pilot(Pilot(seed=1), tmp_path / "other" / "pilot.pt")
    with pytest.raises(ValueError, match="two models are named 'pilot'"):
        evaluate([str(model), str(tmp_path / "other" / "pilot.pt")], ["blur"], 1, tmp_path / "fresh")


def test_out_of_distribution_mean_pools_every_condition_but_the_training_one() -> None:
    by_condition = {"forest_summer": {"episodes": 10, "successes": 10}, "blur": {"episodes": 10, "successes": 3},
                    "wind": {"episodes": 10, "successes": 9}}
    pooled = ood_mean(by_condition)
    assert pooled["success_rate"] == pytest.approx(0.6) and pooled["episodes"] == 20
    assert pooled["ci95"] == pytest.approx(list(wilson(12, 20))) and pooled["ci95"][0] < 0.6 < pooled["ci95"][1]
    assert ood_mean({"forest_summer": {"episodes": 10, "successes": 10}}) is None


def by_rate(rates: dict[str, float], episodes: int = 50) -> dict[str, dict[str, object]]:
    """A model's summary with these success rates per condition (the other figures immaterial)."""
    return {c: {"episodes": episodes, "successes": round(r * episodes), "success_rate": r,
                "ci95": list(wilson(round(r * episodes), episodes)), "time_to_target": None, "final_distance": 1.0,
                "jerk": 1.0, "failures": {}} for c, r in rates.items()}


def test_training_runs_of_a_recipe_are_summarised_over_runs_not_episodes(tmp_path: Path) -> None:
    summary = {"a": by_rate({"forest_summer": 1.0, "blur": 0.8, "wind": 0.4}),
               "a_seed1": by_rate({"forest_summer": 1.0, "blur": 1.0, "wind": 0.6}),
               "a_seed2": by_rate({"forest_summer": 0.9, "blur": 0.6, "wind": 0.2}),
               "b": by_rate({"forest_summer": 1.0, "blur": 1.0, "wind": 1.0})}
    groups = parse_runs(["a=a,a_seed1,a_seed2"], list(summary))
    stats = across_runs(summary, groups, ["forest_summer", "blur", "wind"])["a"]
    assert stats["conditions"]["blur"] == pytest.approx({"mean": 0.8, "min": 0.6, "max": 1.0})
    ood = stats["ood"]  # the runs' out-of-distribution means: 0.6, 0.8, 0.4
    assert ood["per_run"] == pytest.approx([0.6, 0.8, 0.4]) and ood["mean"] == pytest.approx(0.6)
    assert ood["sd"] == pytest.approx(0.2)
    half = 4.303 * 0.2 / 3 ** 0.5  # Student's t with 2 degrees of freedom
    assert ood["ci95"] == pytest.approx([0.6 - half, min(1.0, 0.6 + half)])
    assert t95(11) == pytest.approx(2.201, rel=1e-3) and t95(100) == pytest.approx(1.984, rel=1e-3)
    write_report(summary, ["forest_summer", "blur", "wind"], tmp_path, runs=groups)
    report = (tmp_path / "report.md").read_text()
    assert "| blur | 80% (60–100) |" in report and "**60.0% ± 20.0** [" in report
    assert json.loads((tmp_path / "report.json").read_text())["runs"]["a"]["runs"] == ["a", "a_seed1", "a_seed2"]
    assert "### Recipes compared" not in report  # one recipe: nothing to compare
    for bad, message in ((["a=a"], "two or more"), (["a,a_seed1"], "NAME=MODEL"),
                         (["a=a,c"], "c not among the evaluated models")):
        with pytest.raises(ValueError, match=message):
            parse_runs(bad, list(summary))


def test_recipes_are_compared_on_the_difference_of_their_means_over_runs(tmp_path: Path) -> None:
    conditions = ["forest_summer", "wind"]
    rates = {"a": (0.5, 0.6, 0.7), "b": (0.14, 0.2, 0.26), "c": (0.56, 0.76, 0.66)}
    summary = {f"{r}{i}": by_rate({"forest_summer": 1.0, "wind": v}) for r, vs in rates.items()
               for i, v in enumerate(vs)}
    groups = parse_runs([f"{r}={r}0,{r}1,{r}2" for r in rates], list(summary))
    stats = across_runs(summary, groups, conditions)
    a_b = compare(stats["a"], stats["b"])
    # Welch: a's SD 0.1, b's 0.06, 3 runs each: SE^2 = (0.01 + 0.0036) / 3, df = 3.27 -> 3 (rounded down)
    se = ((0.01 + 0.0036) / 3) ** 0.5
    assert a_b["difference"] == pytest.approx(0.4)
    assert a_b["ci95"] == pytest.approx([0.4 - 3.182 * se, 0.4 + 3.182 * se]) and a_b["apart"]
    a_c = compare(stats["a"], stats["c"])  # -0.06, SD 0.1 each: well inside the spread over runs
    assert a_c["difference"] == pytest.approx(-0.06) and not a_c["apart"]
    assert compare(stats["b"], stats["a"])["ci95"] == pytest.approx([-v for v in reversed(a_b["ci95"])])
    write_report(summary, conditions, tmp_path, runs=groups)
    report = (tmp_path / "report.md").read_text()
    assert "### Recipes compared" in report and "| a | – | **+40.0 [" in report
    saved = json.loads((tmp_path / "report.json").read_text())["recipes_compared"]
    assert saved["a"]["c"]["apart"] is False and saved["b"]["a"]["apart"] is True


def test_a_report_says_whether_its_episodes_were_flown_or_read_back(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "liquid_pilot.cli", "eval", "--models", "expert", "--conditions", "blur",
               "--episodes", "1", "--workers", "1", "--out", str(tmp_path)]
    first = subprocess.run(command, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "New episodes this run: 1, sequential with 1 worker." in (tmp_path / "report.md").read_text()
    save_pilot(Pilot(seed=1), tmp_path / "untrained.pt")
    command[command.index("--models") + 1:command.index("--models") + 2] = [str(tmp_path / "untrained.pt"), "expert"]
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    report = (tmp_path / "report.md").read_text()
    assert "New episodes this run: 1," in report
    assert "| condition | untrained | expert |" in report  # the order named, though the expert flew first
    third = subprocess.run(command, capture_output=True, text=True)
    assert third.returncode == 0, third.stderr
    assert "No new episodes this run" in (tmp_path / "report.md").read_text()


def test_eval_command_rejects_a_missing_model(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "liquid_pilot.cli", "eval", "--models", str(tmp_path / "x.pt"),
                             "--out", str(tmp_path / "o"), "--episodes", "1"], capture_output=True, text=True)
    assert result.returncode == 2 and "x.pt: no such model file" in result.stderr
    result = subprocess.run([sys.executable, "-m", "liquid_pilot.cli", "eval", "--models", "expert",
                             "--runs", "e=expert,other", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert result.returncode == 2 and "other not among the evaluated models" in result.stderr


def test_shipped_pilot_and_the_demo_command(tmp_path: Path) -> None:
    from liquid_pilot.nn.checkpoint import load_pilot

    pilot = load_pilot(ROOT / "models" / "cfc_ncp.pt")
    assert pilot.config.head == "cfc_ncp" and pilot.parameter_counts()["total"] <= 25_000
    result = subprocess.run([sys.executable, "-m", "liquid_pilot.cli", "demo", "--episodes", "1", "--out",
                             str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "forest_summer" in result.stdout and "success" in result.stdout
    assert (tmp_path / "demo.mp4").stat().st_size > 100_000 and (tmp_path / "forest_summer.png").is_file()
