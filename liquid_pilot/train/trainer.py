"""Imitation training of any pilot head from bags: BPTT over windows with the real elapsed time.

Seeded; a progress bar with loss and speed; validation every epoch on whole held-out flights;
the best checkpoint kept at ``out``; resumable from ``out.state.pt``; a CSV log and a loss plot.
The checkpoint records the training camera's field of view after preprocessing, from the bags'
CameraInfo, so flight can say when its camera differs.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

from liquid_pilot import __version__
from liquid_pilot.data.dataset import AugmentConfig, SequenceDataset, augment, augment_imu, default_cache_dir, \
    load_flights, normalisation, split_flights
from liquid_pilot.data.reader import BagError, Flight, TopicConfig
from liquid_pilot.nn.checkpoint import save_pilot
from liquid_pilot.nn.policy import Pilot, PilotConfig


@dataclass
class TrainConfig:
    pilot: PilotConfig = field(default_factory=PilotConfig)
    epochs: int = 40
    batch_size: int = 16
    sequence_length: int = 64
    shift: int = 16
    learning_rate: float = 2e-3  # 1e-2 collapses the CNN's features early
    lr_decay: float = 0.95  # per epoch, exponential
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    val_fraction: float = 0.15
    seed: int = 0
    threads: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    topics: TopicConfig = field(default_factory=TopicConfig)


def load_train_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML training config; unknown keys are errors that list the allowed ones."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: cannot read the training config: {exc}") from None
    data.update(overrides or {})
    nested = {"pilot": PilotConfig, "augment": AugmentConfig, "topics": TopicConfig}
    allowed = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"{path}: unknown training settings {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}")
    kwargs = {}
    for key, value in data.items():
        if key in nested:
            fields = {f.name for f in dataclasses.fields(nested[key])}
            bad = set(value or {}) - fields
            if bad:
                raise ValueError(f"{path}: unknown {key} settings {sorted(bad)}; allowed: {', '.join(sorted(fields))}")
            value = nested[key](**(value or {}))
        kwargs[key] = value
    config = TrainConfig(**kwargs)
    if min(config.epochs, config.batch_size, config.sequence_length, config.shift, config.threads) < 1 \
            or config.learning_rate <= 0:
        raise ValueError("epochs, batch_size, sequence_length, shift, threads and learning_rate must be positive")
    if config.seed < 0:
        raise ValueError(f"seed must be 0 or more (got {config.seed})")
    return config


def _atomic_save(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        torch.save(obj, f)
    os.replace(tmp, path)


FOV_AGREEMENT_DEG = 1.0  # bags whose cameras differ by more than this cannot train one pilot


def training_fov(flights: list[Flight]) -> list[float] | None:
    """Return the [horizontal, vertical] field of view (degrees) of the flights' frames, or None if unknown.

    Flights without CameraInfo are left out; the others must agree within ``FOV_AGREEMENT_DEG``
    (their mean is returned), else ValueError names two bags that differ.
    """
    known = [f for f in flights if f.camera_fov_deg is not None]
    if not known:
        return None
    for axis, name in enumerate(("horizontal", "vertical")):
        low = min(known, key=lambda f: f.camera_fov_deg[axis])
        high = max(known, key=lambda f: f.camera_fov_deg[axis])
        if high.camera_fov_deg[axis] - low.camera_fov_deg[axis] > FOV_AGREEMENT_DEG:
            raise ValueError(
                f"the bags' cameras differ in {name} field of view after preprocessing: {low.bag} sees "
                f"{low.camera_fov_deg[0]:.1f}x{low.camera_fov_deg[1]:.1f} deg, {high.bag} "
                f"{high.camera_fov_deg[0]:.1f}x{high.camera_fov_deg[1]:.1f} deg; train one pilot per camera")
    return [round(float(np.mean([f.camera_fov_deg[axis] for f in known])), 3) for axis in range(2)]


def _loss(pilot: Pilot, batch: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """MSE on commands divided by the model's command scale, so every axis counts alike."""
    predicted, _ = pilot(images, batch["imu"] if pilot.config.use_imu else None, batch["dt"])
    scale = pilot.command_scale
    return torch.nn.functional.mse_loss(predicted / scale, batch["commands"] / scale)


def train(config: TrainConfig, data: list[str | Path], out: str | Path, resume: bool = False,
          skip_bad: bool = False, cache_dir: Path | None = None, log: Any = sys.stderr) -> dict[str, Any]:
    """Train and keep the best checkpoint at ``out``; returns a summary of the run."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state_path, csv_path = out.with_suffix(".state.pt"), out.with_suffix(".log.csv")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    cfg = config.pilot
    flights = load_flights(data, config.topics, (cfg.image_height, cfg.image_width),
                           cache_dir if cache_dir is not None else default_cache_dir(), skip_bad,
                           on_bad=lambda e: print(f"skipping bad bag: {e}", file=log))
    cfg = _with_camera_fov(cfg, flights, log)
    train_flights, val_flights = split_flights(flights, config.val_fraction, config.seed)
    train_set = SequenceDataset(train_flights, config.sequence_length, config.shift)
    val_set = SequenceDataset(val_flights, config.sequence_length, config.shift)
    if len(train_set) == 0:
        raise BagError(", ".join(map(str, data)), f"no flight segment is {config.sequence_length} frames long")
    frames = sum(len(f.images) for f in flights)
    print(f"{len(flights)} flights, {frames} frames: {len(train_set)} training and {len(val_set)} validation "
          f"windows of {config.sequence_length} (shift {config.shift}); {train_set.unused_frames} frames in "
          f"too-short segments unused", file=log)

    pilot = Pilot(cfg, seed=config.seed)
    pilot.set_normalisation(*map(torch.as_tensor, normalisation(train_flights)))
    optimizer = torch.optim.AdamW(pilot.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, config.lr_decay)
    config_dict = dataclasses.asdict(config)
    start_epoch, best, elapsed, history = 0, float("inf"), 0.0, []
    if resume and state_path.is_file():
        saved = torch.load(state_path, weights_only=False)
        if {**saved["config"], "epochs": 0} != {**config_dict, "epochs": 0}:  # more epochs may be asked for
            raise ValueError(f"{state_path}: was written with another training config; train without --resume "
                             "to start over")
        pilot.load_state_dict(saved["pilot"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        start_epoch, best, elapsed, history = saved["epoch"] + 1, saved["best"], saved["elapsed"], saved["history"]
        print(f"resuming after epoch {saved['epoch'] + 1} (best validation loss {best:.5f})", file=log)

    generator = torch.Generator().manual_seed(config.seed)
    for epoch in range(start_epoch, config.epochs):
        generator.manual_seed(config.seed * 1000 + epoch)  # each epoch's order and augmentation, resumable
        started = time.perf_counter()
        pilot.train()
        loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, generator=generator)
        losses = []
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", file=log, leave=False, unit="batch")
        for batch in bar:
            images = augment(batch["images"], config.augment, generator)
            batch["imu"] = augment_imu(batch["imu"], config.augment, generator)
            loss = _loss(pilot, batch, images)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(pilot.parameters(), config.grad_clip)
            optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        train_loss = float(np.mean(losses))
        val_loss = evaluate(pilot, val_set, config.batch_size) if len(val_set) else train_loss
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        seconds = time.perf_counter() - started
        elapsed += seconds
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "lr": lr,
                        "seconds": round(seconds, 2)})
        improved = val_loss < best
        if improved:
            best = val_loss
            save_pilot(pilot.eval(), out, provenance={
                "trained_with": f"liquid_pilot {__version__}", "data": [f.bag for f in flights][:200],
                "flights": len(flights), "frames": frames, "epoch": epoch + 1, "val_loss": round(val_loss, 6),
                "train_seconds": round(elapsed, 1), "config": config_dict})
        print(f"epoch {epoch + 1}/{config.epochs}: train {train_loss:.5f}  val {val_loss:.5f}  lr {lr:.2e}  "
              f"{len(loader) / seconds:.2f} batch/s{'  * best, saved' if improved else ''}", file=log)
        _write_log(csv_path, history)
        _atomic_save({"config": config_dict, "pilot": pilot.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(), "epoch": epoch,
                      "best": best, "elapsed": elapsed, "history": history}, state_path)
    _plot_losses(history, out.with_suffix(".loss.png"))
    return {"best_val_loss": best, "epochs": len(history), "seconds": elapsed, "checkpoint": str(out)}


def _with_camera_fov(cfg: PilotConfig, flights: list[Flight], log: Any) -> PilotConfig:
    """Return the pilot's config with the training camera's field of view; one set in the config wins."""
    fov = training_fov(flights)
    if cfg.camera_fov_deg is not None:
        if fov is not None and max(abs(a - b) for a, b in zip(fov, cfg.camera_fov_deg)) > FOV_AGREEMENT_DEG:
            print(f"note: pilot.camera_fov_deg {cfg.camera_fov_deg} is recorded, though the bags' camera_info says "
                  f"{fov}", file=log)
        return cfg
    if fov is None:
        print("note: no bag has a camera_info topic; the checkpoint does not record the training camera's field "
              "of view, so flight cannot warn about a different camera", file=log)
        return cfg
    missing = sum(f.camera_fov_deg is None for f in flights)
    if missing:
        print(f"note: {missing} of {len(flights)} bags have no camera_info; the field of view "
              f"{fov[0]:.1f}x{fov[1]:.1f} deg comes from the others", file=log)
    return dataclasses.replace(cfg, camera_fov_deg=fov)


@torch.no_grad()
def evaluate(pilot: Pilot, dataset: SequenceDataset, batch_size: int) -> float:
    """Mean validation loss over all windows, without augmentation."""
    pilot.eval()
    total, count = 0.0, 0
    for batch in DataLoader(dataset, batch_size=batch_size):
        total += _loss(pilot, batch, batch["images"]).item() * len(batch["images"])
        count += len(batch["images"])
    return total / count


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def _plot_losses(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], label="training (augmented)")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE of scaled commands")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
