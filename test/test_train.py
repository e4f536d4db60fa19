"""Training from bags: it learns, keeps the best checkpoint, logs, resumes exactly; replay."""
import csv
import dataclasses
import io
import re
from pathlib import Path

import numpy as np
import pytest
from cli_support import cli
import torch

from liquid_pilot.harness.collect import collect
from liquid_pilot.data.dataset import SequenceDataset, load_flights
from liquid_pilot.data.reader import Flight
from liquid_pilot.nn.checkpoint import load_pilot, read_checkpoint
from liquid_pilot.nn.policy import Pilot, PilotConfig
from liquid_pilot.paths import data_dir
from liquid_pilot.sim.config import load_scenario
from liquid_pilot.train.replay import replay
from liquid_pilot.train.trainer import TrainConfig, _warmed_up, _window_losses, _with_camera_fov, evaluate, \
    load_train_config, saturated_features, train, training_fov

FAST = {"sequence_length": 16, "shift": 8, "batch_size": 8, "val_fraction": 0.25, "threads": 1}


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bags")
    collect(load_scenario("forest_summer").with_overrides({"task.hold_s": 0.5}), 4, out, seed=30)
    return out


def _train(bags: Path, out: Path, epochs: int, resume: bool = False, **settings: object) -> dict:
    config = load_train_config(None, {**FAST, "epochs": epochs, **settings})
    return train(config, [bags], out, resume=resume, cache_dir=out.parent / "cache", log=open("/dev/null", "w"))


def test_training_learns_and_keeps_the_best_checkpoint(bags: Path, tmp_path: Path) -> None:
    summary = _train(bags, tmp_path / "p.pt", epochs=4)
    rows = list(csv.DictReader(open(tmp_path / "p.log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    val = [float(r["val_loss"]) for r in rows]
    assert min(val) == pytest.approx(summary["best_val_loss"]) and val[-1] < val[0]
    assert (tmp_path / "p.loss.png").stat().st_size > 5000
    provenance = read_checkpoint(tmp_path / "p.pt")["provenance"]
    assert provenance["epoch"] == val.index(min(val)) + 1 and provenance["flights"] == 4
    assert provenance["camera_hz"] == pytest.approx(16.0, abs=0.5)  # the simulator's camera: pilot_node checks it
    pilot = load_pilot(tmp_path / "p.pt")
    assert not torch.allclose(pilot.image_std, torch.full((3,), 0.25))  # normalisation came from the data
    # The simulator's bags carry their CameraInfo: a 64x64 camera, 80 deg high, as the model sees it.
    assert pilot.config.camera_fov_deg == pytest.approx([80.0, 80.0])
    assert provenance["config"]["pilot"]["camera_fov_deg"] is None  # what was asked, not what was found


def test_a_run_that_did_not_learn_says_so(bags: Path, tmp_path: Path) -> None:
    """A run no better than always commanding the mean command (an LTC-NCP run in five did this in the
    study) is named, in the log, the summary and the checkpoint's provenance, not left to fly no episode."""
    log = io.StringIO()
    config = load_train_config(None, {**FAST, "epochs": 1, "learning_rate": 1e-9})  # it cannot learn
    summary = train(config, [bags], tmp_path / "p.pt", cache_dir=tmp_path / "cache", log=log)
    assert summary["learnt"] is False
    assert summary["best_val_loss"] >= 0.9 * summary["mean_command_val_loss"]
    assert "warning: this run did not learn: its best validation loss" in log.getvalue()
    assert "train again with another --seed" in log.getvalue()  # its CNN moved too little to saturate
    provenance = read_checkpoint(tmp_path / "p.pt")["provenance"]
    assert provenance["mean_command_val_loss"] == pytest.approx(summary["mean_command_val_loss"], abs=1e-6)


def test_a_run_whose_cnn_saturated_is_told_to_warm_up(bags: Path, tmp_path: Path) -> None:
    """The LTC-NCP's seed 1 in the study: the CNN's tanh features pinned at +-1 in the first epoch, the head fed
    the same features whatever the frame. A learning rate far too high does the same to any head."""
    log = io.StringIO()
    config = load_train_config(None, {**FAST, "epochs": 2, "learning_rate": 0.3})
    summary = train(config, [bags], tmp_path / "p.pt", cache_dir=tmp_path / "cache", log=log)
    assert summary["learnt"] is False
    assert re.search(r"its CNN's features saturated \((2[5-9]|3[0-2]) of 32 pinned at \+-1 on every frame\): "
                     r"train again with a learning-rate warm-up \(warmup_steps: 150\)", log.getvalue())


def test_saturated_features_counts_the_features_pinned_on_every_frame(bags: Path) -> None:
    flights = load_flights([bags], size=(64, 64))
    pilot = Pilot(PilotConfig(use_imu=False))
    assert saturated_features(pilot, flights) == (0, 32)  # a fresh CNN: every feature follows the frames
    with torch.no_grad():
        pilot.encoder.fc.bias[:20] = 100.0  # twenty features pinned at +1 by tanh
    assert saturated_features(pilot, flights) == (20, 32)


@pytest.mark.parametrize("use_imu, strides", [(False, (1,)), (True, (1, 3))])
def test_validation_scores_every_window_as_the_whole_pilot_does_encoding_each_frame_once(
        bags: Path, use_imu: bool, strides: tuple[int, ...]) -> None:
    """The validation loss is the mean over windows of each window's loss from the whole pilot (its frames through the
    CNN, the head from a fresh state), as training computes it; the CNN sees each held-out frame once, not once per
    overlapping window."""
    flights = load_flights([bags], size=(64, 64))
    pilot = Pilot(PilotConfig(use_imu=use_imu), seed=1)
    dataset = SequenceDataset(flights, 16, 4, strides)
    with torch.no_grad():
        expected = torch.cat([_window_losses(pilot, batch, batch["images"])
                              for batch in torch.utils.data.DataLoader(dataset, batch_size=5)]).double().mean()
    encoded: list[int] = []
    pilot.encoder.register_forward_hook(lambda module, inputs, output: encoded.append(len(output)))
    assert evaluate(pilot, dataset, 5) == pytest.approx(float(expected), rel=1e-6)
    frames = sum(len(f.commands) for f in flights)
    assert sum(encoded) <= frames < len(dataset) * 16 / 2  # windows overlap four times over; each frame once


def test_the_mean_command_loss_is_the_loss_of_always_commanding_the_training_mean() -> None:
    from liquid_pilot.train.trainer import mean_command_loss

    def flight(commands: list[list[float]]) -> Flight:
        n = len(commands)
        return Flight("b", np.zeros((n, 2, 2, 3), np.uint8), np.asarray(commands, np.float32),
                      np.zeros((n, 6), np.float32), np.zeros(n, np.float32), np.zeros(n, int))

    train_flights = [flight([[1, 0, 0, 0], [3, 0, 0, 0]]), flight([[2, 0, 0, 2]] * 2)]  # mean [2, 0, 0, 1]
    validation = [flight([[2, 0, 0, 1]] * 3)]
    assert mean_command_loss(train_flights, validation, [2, 2, 1, 2]) == 0.0
    validation = [flight([[4, 0, 1, 1], [2, 0, -1, 1]])]  # (2/2)^2 + 1^2 on the first, 1^2 on the second
    assert mean_command_loss(train_flights, validation, [2, 2, 1, 2]) == pytest.approx((1 + 1 + 1) / 8)


def test_a_frame_normalised_training_reads_no_frame_for_image_statistics(
        bags: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """frame_norm standardises each frame by its own statistics: the data set's are not read, the IMU's are."""
    def unwanted(flights: list) -> None:
        raise AssertionError("the image statistics were read for a frame-normalised pilot")
    monkeypatch.setattr("liquid_pilot.data.dataset._image_statistics", unwanted)
    _train(bags, tmp_path / "p.pt", epochs=1, pilot={"frame_norm": True})
    pilot = load_pilot(tmp_path / "p.pt")
    assert torch.equal(pilot.image_mean, torch.zeros(3)) and torch.equal(pilot.image_std, torch.ones(3))
    assert not torch.allclose(pilot.imu_std, torch.ones(6))  # the IMU's statistics came from the data
    with pytest.raises(AssertionError, match="image statistics"):  # and a pilot without it still reads them
        _train(bags, tmp_path / "q.pt", epochs=1)


@pytest.mark.parametrize("warmup", [0, 1000])  # 1000 steps: the cut falls inside the warm-up
def test_resuming_gives_the_same_pilot_as_an_uninterrupted_run(bags: Path, tmp_path: Path, warmup: int) -> None:
    _train(bags, tmp_path / "straight" / "p.pt", epochs=3, warmup_steps=warmup)
    _train(bags, tmp_path / "resumed" / "p.pt", epochs=2, warmup_steps=warmup)  # as if cut after two epochs
    summary = _train(bags, tmp_path / "resumed" / "p.pt", epochs=3, resume=True,
                     warmup_steps=warmup)  # only epoch 3 runs
    assert summary["epochs"] == 3
    a = torch.load(tmp_path / "straight" / "p.state.pt", weights_only=False)["pilot"]
    b = torch.load(tmp_path / "resumed" / "p.state.pt", weights_only=False)["pilot"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_the_warm_up_raises_the_rate_step_by_step_and_leaves_the_decay_as_it_was() -> None:
    """Each of the first N steps moves a weight by (k + 1) / N of the schedule's rate; then the schedule's own."""
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.5)
    moves = []
    for epoch in range(3):
        for index in range(2):  # two steps an epoch; a gradient of 1 moves the weight by the rate
            before = float(weight)
            weight.grad = torch.ones(1)
            with _warmed_up(optimizer, epoch * 2 + index, warmup_steps=4):
                optimizer.step()
            moves.append(round(before - float(weight), 6))
        scheduler.step()
    assert moves == [0.025, 0.05, 0.0375, 0.05, 0.025, 0.025]  # 0.1 x 1/4, 2/4; 0.05 x 3/4, 4/4; 0.025 after
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0125)


def test_a_run_resumes_on_other_threads_but_not_with_another_recipe(bags: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.pt"
    _train(bags, out, epochs=1, threads=2)
    with pytest.raises(ValueError, match=r"another training config \(seed: 0 then, 3 now\); train with the same "):
        _train(bags, out, epochs=2, resume=True, threads=1, seed=3)
    assert _train(bags, out, epochs=2, resume=True, threads=1)["epochs"] == 2  # threads: where it runs, not what


def test_replay_compares_with_the_recorded_commands(bags: Path, tmp_path: Path) -> None:
    _train(bags, tmp_path / "p.pt", epochs=1)
    errors, flight = replay(tmp_path / "p.pt", bags / "forest_summer_000031", tmp_path / "replay.png")
    assert flight.report["topics"]["image"] == "/camera/image_raw"  # as the checkpoint was trained
    assert set(errors) == {"vx", "vy", "vz", "yaw_rate"} and all(e["rmse"] >= e["mae"] >= 0 for e in errors.values())
    assert (tmp_path / "replay.png").stat().st_size > 10_000


def _flight(bag: str, fov: tuple[float, float] | None) -> Flight:
    return Flight(bag=bag, images=np.zeros((1, 2, 2, 3), np.uint8), commands=np.zeros((1, 4), np.float32),
                  imu=np.zeros((1, 6), np.float32), dt=np.zeros(1, np.float32), segments=np.zeros(1, int),
                  camera_fov_deg=fov)


def test_the_training_camera_fov_is_the_flights_mean_and_must_agree() -> None:
    assert training_fov([_flight("a", (80.0, 60.0)), _flight("b", None), _flight("c", (80.6, 60.4))]) \
        == pytest.approx([80.3, 60.2])
    assert training_fov([_flight("a", None)]) is None
    with pytest.raises(ValueError, match=r"horizontal .*: bags/narrow sees 70.0x60.0 deg, bags/wide 90.0x60.0") \
            as info:
        training_fov([_flight("bags/wide", (90.0, 60.0)), _flight("bags/mid", (80.0, 60.0)),
                      _flight("bags/narrow", (70.0, 60.0))])
    assert "\n" not in str(info.value) and "bags/narrow" in str(info.value) and "bags/wide" in str(info.value)
    with pytest.raises(ValueError, match="vertical"):
        training_fov([_flight("a", (80.0, 60.0)), _flight("b", (80.0, 61.5))])
    log = io.StringIO()
    assert _with_camera_fov(PilotConfig(), [_flight("a", None)], log).camera_fov_deg is None
    assert log.getvalue().count("\n") == 1 and "camera_info" in log.getvalue()
    assert _with_camera_fov(PilotConfig(), [_flight("a", (70.0, 50.0))], io.StringIO()).camera_fov_deg == [70, 50]


@pytest.mark.parametrize("fov", [[80.0], [0.0, 60.0], [80.0, 180.0], 80.0, [float("nan"), 60.0]])
def test_pilot_config_refuses_impossible_fields_of_view(fov: object) -> None:
    with pytest.raises(ValueError, match="camera_fov_deg (needs two angles|must be a list of numbers or null)"):
        PilotConfig(camera_fov_deg=fov)


def test_train_command_bad_input(bags: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\nlearning_rte: 0.1\n")
    result = cli("train", "--config", str(bad), "--data", str(bags), "--out", str(tmp_path / "p.pt"))
    assert result.returncode == 2 and "unknown training settings ['learning_rte']" in result.stderr
    result = cli("train", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "p.pt"))
    assert result.returncode == 2 and "nothing: no such bag, file or folder" in result.stderr
    assert "Traceback" not in result.stderr
    result = cli("train", "--threads", "0", "--data", str(bags), "--out", str(tmp_path / "p.pt"))
    assert result.returncode == 2 and "threads must be >= 1, got 0" in result.stderr


def test_train_without_a_config_trains_the_shipped_pilots_recipe(tmp_path: Path) -> None:
    """`liquid-pilot train --data ... --out ...` gives the recipe of models/cfc_ncp.pt, not the settings' defaults."""
    bags = tmp_path / "bags"  # flights long enough for the recipe's 64-frame windows
    collect(load_scenario("forest_summer").with_overrides({"task.hold_s": 5.0}), 3, bags, seed=31)
    result = cli("train", "--epochs", "1", "--threads", "1", "--data", str(bags), "--out", str(tmp_path / "p.pt"))
    assert result.returncode == 0, result.stderr
    shipped = data_dir("config") / "train.yaml"
    assert f"training config: {shipped} (the shipped pilot's recipe" in result.stderr
    recipe = load_train_config(shipped)
    trained = read_checkpoint(tmp_path / "p.pt")["provenance"]["config"]
    assert trained["pilot"] == {**dataclasses.asdict(recipe.pilot), "camera_fov_deg": None}
    assert recipe.pilot != PilotConfig() and not trained["pilot"]["use_imu"] and trained["pilot"]["frame_norm"]
    assert trained["seed"] == recipe.seed and trained["augment"] == dataclasses.asdict(recipe.augment)


def test_train_command_overrides_the_seed(bags: Path, tmp_path: Path) -> None:
    config = tmp_path / "fast.yaml"
    config.write_text("".join(f"{key}: {value}\n" for key, value in FAST.items()))
    result = cli("train", "--config", str(config), "--seed", "5", "--epochs", "1", "--data", str(bags),
                 "--out", str(tmp_path / "p.pt"))
    assert result.returncode == 0, result.stderr
    used = read_checkpoint(tmp_path / "p.pt")["provenance"]["config"]
    assert used["seed"] == 5 and used["epochs"] == 1 and used["sequence_length"] == FAST["sequence_length"]


def test_shipped_training_config_loads() -> None:
    config = load_train_config(Path(__file__).resolve().parents[1] / "config" / "train.yaml")
    assert config.pilot.head == "cfc_ncp" and config.sequence_length == 64 and config.shift == 16


@pytest.mark.parametrize("strides", [[], [0], [1, 2.5], [True], "2"])
def test_frame_strides_must_be_whole_frames(strides: object) -> None:
    with pytest.raises(ValueError, match=r"frame_strides must be a list of whole numbers"):
        TrainConfig(frame_strides=strides)


# Fine-tuning: --init MODEL, --freeze-cnn


@pytest.fixture(scope="module")
def parent(bags: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small pilot trained on the module's bags: the parent of the fine-tunings below."""
    out = tmp_path_factory.mktemp("parent") / "parent.pt"
    _train(bags, out, epochs=1)
    return out


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_fine_tuning_starts_from_the_parent_and_names_it(bags: Path, parent: Path, tmp_path: Path) -> None:
    from liquid_pilot.train.trainer import file_sha256

    config = load_train_config(None, {**FAST, "epochs": 1, "learning_rate": 1e-3, "init": str(parent),
                                      "freeze": ["cnn"]})
    log = io.StringIO()
    train(config, [bags / "forest_summer_000031"], tmp_path / "tuned.pt", cache_dir=tmp_path / "cache", log=log)
    assert f"fine-tuning {parent} (sha256 {file_sha256(parent)[:12]}...)" in log.getvalue()
    before, after = load_pilot(parent), load_pilot(tmp_path / "tuned.pt")
    for name, value in _tensors(before.encoder).items():  # the frozen CNN is the parent's, to the bit
        torch.testing.assert_close(after.encoder.state_dict()[name], value, rtol=0, atol=0)
    for name in ("image_mean", "image_std", "imu_mean", "imu_std"):  # the parent's normalisation, kept
        torch.testing.assert_close(getattr(after, name), getattr(before, name), rtol=0, atol=0)
    changed = [n for n, v in _tensors(before.head).items() if not torch.equal(after.head.state_dict()[n], v)]
    assert changed  # the head trained
    assert after.config == before.config  # architecture, inputs and field of view
    provenance = read_checkpoint(tmp_path / "tuned.pt")["provenance"]
    assert provenance["parent"]["path"] == str(parent) and provenance["parent"]["sha256"] == file_sha256(parent)
    assert provenance["parent"]["flights"] == 4 and provenance["frozen"] == ["cnn"] and provenance["flights"] == 1


def test_fine_tuning_without_freezing_moves_every_part(bags: Path, parent: Path, tmp_path: Path) -> None:
    config = load_train_config(None, {**FAST, "epochs": 1, "init": str(parent)})
    train(config, [bags / "forest_summer_000031"], tmp_path / "tuned.pt", cache_dir=tmp_path / "cache",
          log=io.StringIO())
    before, after = load_pilot(parent), load_pilot(tmp_path / "tuned.pt")
    assert not torch.equal(before.encoder.fc.weight, after.encoder.fc.weight)
    assert torch.equal(before.image_std, after.image_std)  # the normalisation is the parent's all the same


def test_fine_tuning_refuses_another_architecture_or_inputs_in_one_line(bags: Path, parent: Path,
                                                                        tmp_path: Path) -> None:
    other = tmp_path / "ltc.yaml"
    other.write_text("pilot: {head: ltc_ncp}\n" + "".join(f"{key}: {value}\n" for key, value in FAST.items()))
    result = cli("train", "--config", str(other), "--init", str(parent), "--data", str(bags),
                 "--out", str(tmp_path / "p.pt"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"error: {parent}: cannot fine-tune from it: its pilot.head is 'cfc_ncp' and this training's is 'ltc_ncp'; "
        f"a fine-tuned pilot keeps its parent's architecture and inputs: drop pilot.head from the training config, "
        f"or train from scratch (no --init) for another")
    result = cli("train", "--init", str(parent), "--imu-topic", "none", "--epochs", "1", "--data", str(bags),
                 "--out", str(tmp_path / "p.pt"))
    assert result.returncode == 2 and "its pilot.use_imu is True and this training's is False" in result.stderr
    assert "name its IMU topic (--imu-topic)" in result.stderr
    result = cli("train", "--freeze-cnn", "--data", str(bags), "--out", str(tmp_path / "p.pt"))
    assert result.returncode == 2 and "freeze ['cnn'] keeps weights of a parent: it needs init" in result.stderr
    result = cli("train", "--init", str(tmp_path / "missing.pt"), "--data", str(bags), "--out", str(tmp_path / "p.pt"))
    assert result.returncode == 2 and "missing.pt: no such file" in result.stderr
    same = tmp_path / "same.yaml"  # pilot settings that agree with the parent are fine
    same.write_text("pilot: {head: cfc_ncp, units: 19}\n" + "".join(f"{k}: {v}\n" for k, v in FAST.items()))
    assert load_train_config(same, {"init": str(parent)}).pilot == load_pilot(parent).config


def test_shipped_fine_tuning_config_loads() -> None:
    root = Path(__file__).resolve().parents[1]
    config = load_train_config(root / "config" / "finetune.yaml", {"init": str(root / "models" / "cfc_ncp.pt")})
    assert config.pilot == load_pilot(root / "models" / "cfc_ncp.pt").config and config.learning_rate == 5e-4
