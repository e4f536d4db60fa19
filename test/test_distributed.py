"""Training at scale: devices, precision, torchrun processes (the same pilot, resumable after a kill), Ray Train
workers (the same pilot again), memory-mapped frames."""
import errno
import importlib.util
import io
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from liquid_pilot import cli
from liquid_pilot.data import shards
from liquid_pilot.harness.collect import collect
from liquid_pilot.data.dataset import AugmentConfig, SequenceDataset, apply_augmentation, draw_augmentation, \
    load_flight
from liquid_pilot.data.reader import TopicConfig
from liquid_pilot.nn.policy import PilotConfig
from liquid_pilot.sim.config import load_scenario
from liquid_pilot.train import distributed
from liquid_pilot.train.distributed import Runtime, autocast_dtype, resolve_device
from liquid_pilot.train.trainer import load_train_config, train, train_flights

# 12 epochs of ~0.2 s: the killed run's kill lands after its first epoch is saved and ~2 s before its last (with 4,
# ~0.5 s: a test process held up that long under load found the run finished, a flaky failure)
FAST = {"sequence_length": 16, "shift": 8, "batch_size": 8, "val_fraction": 0.25, "threads": 1, "epochs": 12}
TINY = PilotConfig(units=8, features=8, image_height=32, image_width=32)
NO_GPU = not torch.cuda.is_available()
NO_RAY = importlib.util.find_spec("ray") is None


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Bags, a config file, a shared cache, and an uninterrupted 2-process torchrun run of FAST."""
    root = tmp_path_factory.mktemp("distributed")
    collect(load_scenario("forest_summer").with_overrides({"task.hold_s": 0.5}), 4, root / "bags", seed=30)
    (root / "fast.yaml").write_text("".join(f"{k}: {v}\n" for k, v in FAST.items()))
    paths = {"root": root, "bags": root / "bags", "config": root / "fast.yaml", "cache": root / "cache"}
    result = _torchrun(paths, root / "two" / "p.pt")
    assert result.wait(timeout=300) == 0, (root / "two" / "p.err").read_text()
    return paths


def _torchrun(paths: dict[str, Path], out: Path, *extra: str) -> subprocess.Popen:
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
         "liquid_pilot.cli", "train", "--config", str(paths["config"]), "--data", str(paths["bags"]), "--out",
         str(out), "--cache-dir", str(paths["cache"]), *extra],
        stdout=open(out.with_suffix(".out"), "w"), stderr=open(out.with_suffix(".err"), "w"))


def _ray(paths: dict[str, Path], cwd: Path, out: str, *extra: str) -> subprocess.Popen:
    """``liquid-pilot train --ray local --processes 2`` in ``cwd``, ``out`` relative to it (a worker runs elsewhere)."""
    (cwd / out).parent.mkdir(parents=True, exist_ok=True)
    log = (cwd / out).with_suffix("")
    return subprocess.Popen(
        [sys.executable, "-m", "liquid_pilot.cli", "train", "--config", str(paths["config"]), "--data",
         str(paths["bags"]), "--out", out, "--cache-dir", str(paths["cache"]), "--ray", "local", "--processes", "2",
         *extra], cwd=cwd, stdout=open(f"{log}.out", "w"), stderr=open(f"{log}.err", "w"))


def _state(out: Path) -> dict:
    return torch.load(out.with_suffix(".state.pt"), weights_only=False)


def test_two_processes_train_the_pilot_one_process_trains(run: dict[str, Path], tmp_path: Path) -> None:
    log = io.StringIO()
    one = train(load_train_config(run["config"]), [run["bags"]], tmp_path / "p.pt", cache_dir=run["cache"], log=log)
    two = _state(run["root"] / "two" / "p.pt")
    assert two["world_size"] == 2 and len(two["rng"]) == 2 and two["epoch"] == FAST["epochs"] - 1
    assert one["best_val_loss"] == pytest.approx(two["best"], rel=1e-5)  # the target is 2%: this is rounding
    for field in ("train_loss", "val_loss"):  # a wrong share or weight would show at once in the summed loss
        assert [h[field] for h in one["history"]] == pytest.approx([h[field] for h in two["history"]], rel=1e-5)
    for key, value in _state(tmp_path / "p.pt")["pilot"].items():  # Adam magnifies rounding where gradients are ~0
        torch.testing.assert_close(value, two["pilot"][key], rtol=0, atol=2e-4)
    printed = (run["root"] / "two" / "p.err").read_text()
    assert "2 processes (gloo; 2 on this machine); global batch 8 = 4 per process" in printed
    assert printed.count("validation: 1 of 4 flights") == 1  # only rank 0 speaks
    assert f"frame cache: {run['cache']}: " in log.getvalue() and "memory-mapped" in log.getvalue()


@pytest.mark.skipif(NO_RAY, reason="needs Ray Train (the ray extra)")
def test_ray_train_workers_train_the_pilot_one_process_trains(run: dict[str, Path], tmp_path: Path) -> None:
    process = _ray(run, tmp_path, "ray/p.pt")  # Ray starts in seconds: train the one process meanwhile
    one = train(load_train_config(run["config"]), [run["bags"]], tmp_path / "one" / "p.pt", cache_dir=run["cache"],
                log=io.StringIO())
    assert process.wait(timeout=300) == 0, (tmp_path / "ray" / "p.err").read_text()
    out = tmp_path / "ray" / "p.pt"
    ray, torchrun = _state(out), _state(run["root"] / "two" / "p.pt")
    assert ray["world_size"] == 2 and len(ray["rng"]) == 2 and ray["epoch"] == FAST["epochs"] - 1
    assert one["best_val_loss"] == pytest.approx(ray["best"], rel=1e-5)
    for field in ("train_loss", "val_loss"):
        assert [h[field] for h in one["history"]] == pytest.approx([h[field] for h in ray["history"]], rel=1e-5)
    for key, value in _state(tmp_path / "one" / "p.pt")["pilot"].items():
        torch.testing.assert_close(value, ray["pilot"][key], rtol=0, atol=2e-4)
        torch.testing.assert_close(ray["pilot"][key], torchrun["pilot"][key], rtol=0, atol=0)  # the same run
    printed = (tmp_path / "ray" / "p.err").read_text()
    assert "2 processes (gloo; 2 on this machine); global batch 8 = 4 per process" in printed
    assert printed.count("validation: 1 of 4 flights") == 1 and "Traceback" not in printed  # only rank 0 speaks
    assert (tmp_path / "ray" / "p.out").read_text().strip().endswith(f"; wrote {out}")


@pytest.mark.parametrize("options, problem", [
    (["--processes", "2"], "--processes starts Ray Train workers and needs --ray ADDRESS (auto, local or an address); "
                           "without Ray, start the processes with torchrun"),
    (["--ray", "local", "--processes", "0"], "--processes 0: a run needs 1 or more training processes"),
    (["--ray", "local", "--under-torchrun"], "--ray starts the training processes itself, but this is one of "
                                             "torchrun's (RANK is set): run `liquid-pilot train --ray ...` once"),
    (["--ray", "local", "--without-ray"], "--ray needs Ray Train, which this install leaves out (no module "
                                          "ray.train.torch): pip install 'liquid_pilot[ray]' (it brings ray[train])"),
    pytest.param(["--ray", "local", "--processes", "3"], "batch_size 8 does not split over 3 processes",
                 marks=pytest.mark.skipif(NO_RAY, reason="needs Ray Train (the ray extra)"))])
def test_a_ray_launch_that_cannot_start_is_one_line(options: list[str], problem: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    if "--under-torchrun" in options:
        options.remove("--under-torchrun")
        monkeypatch.setenv("RANK", "0")
        monkeypatch.setenv("WORLD_SIZE", "2")
    if "--without-ray" in options:
        options.remove("--without-ray")
        monkeypatch.setitem(sys.modules, "ray.train.torch", None)  # import ray.train.torch fails
    (tmp_path / "fast.yaml").write_text("".join(f"{k}: {v}\n" for k, v in FAST.items()))
    code = cli.main(["train", "--config", str(tmp_path / "fast.yaml"), "--data", str(tmp_path), "--out",
                     str(tmp_path / "p.pt"), *options])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {problem}") and err.count("\n") == 1
    assert not list(tmp_path.glob("p.*"))  # nothing started


def _worker(torchrun: int, rank: int) -> int:
    """The pid of torchrun's worker of this rank."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == torchrun and \
                    f"RANK={rank}".encode() in (stat.parent / "environ").read_bytes().split(b"\0"):
                return int(stat.parent.name)
        except (OSError, IndexError, ValueError):
            continue
    raise AssertionError(f"no worker of rank {rank}")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the workers through /proc")
def test_a_killed_distributed_run_resumes_exactly(run: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "p.pt"
    process = _torchrun(run, out)
    while not out.with_suffix(".state.pt").exists():  # the first epoch is saved: kill rank 1 mid-run
        assert process.poll() is None, out.with_suffix(".err").read_text()
        time.sleep(0.01)
    os.kill(_worker(process.pid, 1), signal.SIGKILL)
    assert process.wait(timeout=120) != 0
    cut = _state(out)["epoch"] + 1
    assert cut < FAST["epochs"], "the run ended before the kill: nothing to resume"
    assert _torchrun(run, out, "--resume").wait(timeout=300) == 0, out.with_suffix(".err").read_text()
    assert f"resuming after epoch {cut} " in out.with_suffix(".err").read_text()
    resumed, straight = _state(out), _state(run["root"] / "two" / "p.pt")
    for key, value in straight["pilot"].items():
        torch.testing.assert_close(resumed["pilot"][key], value, rtol=0, atol=0)
    assert [h["val_loss"] for h in resumed["history"]] == [h["val_loss"] for h in straight["history"]]


def test_resuming_with_another_number_of_processes_is_one_line(run: dict[str, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    shutil.copytree(run["root"] / "two", tmp_path / "two")
    code = cli.main(["train", "--config", str(run["config"]), "--data", str(run["bags"]), "--out",
                     str(tmp_path / "two" / "p.pt"), "--cache-dir", str(run["cache"]), "--resume"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and error == (f"error: {tmp_path / 'two' / 'p.state.pt'}: was written by a run of 2 processes "
                                   "and this one has 1; resume it with torchrun starting 2 processes in all (e.g. "
                                   "--nproc_per_node 2), or --ray with --processes 2, or train without --resume to "
                                   "start over")


@pytest.mark.parametrize("device, problem", [("tpu", "device 'tpu' is not one of auto, cpu, cuda, mps"),
                                             pytest.param("cuda", "device cuda: no CUDA GPU here", marks=pytest.mark.
                                                          skipif(not NO_GPU, reason="a GPU is here")),
                                             pytest.param("mps", "device mps: no Apple GPU here", marks=pytest.mark.
                                                          skipif(torch.backends.mps.is_available(), reason="mps"))])
def test_a_wrong_or_missing_device_is_one_line(device: str, problem: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    code = cli.main(["train", "--device", device, "--data", str(tmp_path), "--out", str(tmp_path / "p.pt")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {problem}") and err.count("\n") == 1 and "--device" in err


def test_device_and_precision_choices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if not NO_GPU else "mps" if torch.backends.mps.is_available()
                                           else "cpu")
    cuda, cpu, mps = torch.device("cuda", 0), torch.device("cpu"), torch.device("mps")
    assert autocast_dtype(cuda, "auto", bf16_supported=True) == torch.bfloat16
    assert autocast_dtype(cuda, "auto", bf16_supported=False) == torch.float16
    assert autocast_dtype(mps, "auto") == torch.float16 and autocast_dtype(cpu, "auto") is None
    assert autocast_dtype(cuda, "fp32") is None and autocast_dtype(cpu, "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="precision 'fp8' is not one of auto, fp32, bf16, fp16"):
        load_train_config(None, {"precision": "fp8"})
    with pytest.raises(ValueError, match="workers must be auto or a number"):
        load_train_config(None, {"workers": -1})


def test_a_batch_that_does_not_split_over_the_processes_is_refused(tmp_path: Path) -> None:
    config = load_train_config(None, {"batch_size": 8})
    with pytest.raises(ValueError, match=r"batch_size 8 does not split over 3 processes: set batch_size to a "
                                         r"multiple of 3 \(it is the global batch"):
        train_flights(config, [], tmp_path / "p.pt", runtime=Runtime(rank=0, world_size=3))


def test_shares_cover_each_batch_once_and_windows_augment_alike_in_any_share() -> None:
    generator = torch.Generator().manual_seed(3)
    plan = distributed.epoch_batches(21, 8, generator)
    assert [len(b) for b in plan] == [8, 8, 5] and sorted(torch.cat(plan).tolist()) == list(range(21))
    for world in (1, 2, 3, 4):
        for batch in plan:
            spans = [distributed.share(len(batch), Runtime(rank=r, world_size=world)) for r in range(world)]
            assert [i for a, z in spans for i in batch[a:z].tolist()] == batch.tolist()  # in order, each once
    assert [len(b) for b in distributed.epoch_batches(21, 8, generator, limit=10)] == [8, 2]
    config = AugmentConfig(colour=0.25, gyro_noise=0.01, accel_bias=0.1)
    draw = draw_augmentation(6, 5, config, torch.Generator().manual_seed(0))
    images = torch.randint(0, 256, (6, 5, 8, 8, 3), dtype=torch.uint8)
    imu = torch.randn(6, 5, 6)
    whole = apply_augmentation(images, imu, draw, config)
    for a, z in ((0, 2), (2, 3), (3, 6)):
        part = apply_augmentation(images[a:z], imu[a:z], draw.part(a, z), config)
        assert torch.equal(part[0], whole[0][a:z]) and torch.equal(part[1], whole[1][a:z])


def _synthetic(tmp_path: Path, flights: int = 3, frames: int = 40) -> list:
    return [shards.read_entry(stem) for stem in shards.write_synthetic(tmp_path / "shards", flights, frames,
                                                                       size=(32, 32))]


def _tiny(tmp_path: Path, name: str, **settings: object) -> dict:
    config = load_train_config(None, {**FAST, "epochs": 1, "batch_size": 4, "sequence_length": 8, "shift": 8,
                                      "pilot": dict(vars(TINY)), **settings})
    return train_flights(config, _synthetic(tmp_path), tmp_path / name / "p.pt", log=io.StringIO())


def test_precision_and_dataloader_workers_on_the_cpu(tmp_path: Path) -> None:
    plain = _tiny(tmp_path, "plain")
    workers = _tiny(tmp_path, "workers", workers=1)
    assert workers["best_val_loss"] == plain["best_val_loss"]  # workers change where windows are read, not what
    for precision in ("bf16", "fp16"):
        summary = _tiny(tmp_path, precision, precision=precision)
        assert np.isfinite(summary["best_val_loss"]) and summary["best_val_loss"] != plain["best_val_loss"]
        saved = _state(tmp_path / precision / "p.pt")
        assert (saved["scaler"] is not None) == (precision == "fp16")  # fp16 scales its gradients
        assert all(t.device.type == "cpu" for t in saved["pilot"].values())


def test_cached_frames_are_memory_mapped_and_read_without_staying_resident(run: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    bag = run["bags"] / "forest_summer_000030"
    first = load_flight(bag, TopicConfig(), (64, 64), tmp_path / "cache")
    again = load_flight(bag, TopicConfig(), (64, 64), tmp_path / "cache")
    assert isinstance(again.images, np.memmap) and np.array_equal(first.images, again.images)
    flights = _synthetic(tmp_path, flights=1, frames=2000)  # 6 MB of frames
    images = flights[0].images
    name = str(Path(images.filename).resolve())

    def resident_kb() -> int:
        lines = Path("/proc/self/smaps").read_text().splitlines()
        starts = [i for i, line in enumerate(lines) if line.endswith(name)]
        return sum(int(lines[j].split()[1]) for i in starts for j in range(i + 1, i + 20)
                   if lines[j].startswith("Rss:"))

    windows = np.concatenate([shards.read_frames(images, s, s + 100) for s in range(0, 2000, 100)])
    assert np.array_equal(windows, images)
    if Path("/proc/self/smaps").exists():
        before = resident_kb()
        for s in range(0, 2000, 100):
            shards.read_frames(images, s, s + 100)
        assert resident_kb() - before < 64  # through the mapping it would be all 6000 kB
    dataset = SequenceDataset(flights, length=16, shift=16)
    sent = pickle.dumps(dataset)
    assert len(sent) < 200_000 and torch.equal(pickle.loads(sent)[5]["images"], dataset[5]["images"])


def test_a_full_disk_is_one_line_naming_the_cache(run: dict[str, Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shards.np, "save", full)
    with pytest.raises(shards.CacheFullError) as info:
        load_flight(run["bags"] / "forest_summer_000031", TopicConfig(), (64, 64), cache)
    message = str(info.value)
    assert message.startswith(f"{cache}: no space left for the decoded-frame cache (") and "--cache-dir" in message
    assert "\n" not in message and list(cache.iterdir()) == []  # no half-written entry left
