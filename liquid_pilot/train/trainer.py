"""Imitation training of any pilot head from bags: BPTT over windows with the real elapsed time.

Seeded; a progress bar with loss and speed; validation every epoch on whole held-out flights;
the best checkpoint kept at ``out``; resumable from ``out.state.pt``; a CSV log and a loss plot.
The checkpoint records the training camera's field of view after preprocessing, from the bags'
CameraInfo, so flight can say when its camera differs.

Fine-tuning (``init``): training starts from a pilot's checkpoint instead of a fresh network. The
architecture and inputs must be the parent's (else one line names the difference); the parent's
image and IMU normalisation and field of view are kept, the CNN can be frozen (``freeze: [cnn]``),
and the new checkpoint's provenance names its parent by path and SHA-256.

On a CPU, a CUDA GPU or Apple's mps (``device``), with autocast on accelerators (``precision``),
and in several processes under ``torchrun`` (``train.distributed``) or as Ray Train workers
(``train.ray_launch``): the global batch, its
windows, their augmentation and the learning-rate schedule are the same for any number of
processes; only rank 0 writes checkpoints, logs and progress. Frames come memory-mapped from
the cache, read window by window (``data.shards``).
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
from collections import Counter
import io
import itertools
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from liquid_pilot import __version__
from liquid_pilot.data.dataset import AugmentConfig, SequenceDataset, apply_augmentation, default_cache_dir, \
    draw_augmentation, load_flights, normalisation, split_flights
from liquid_pilot.data.reader import BagError, Flight, TopicConfig
from liquid_pilot.data import shards
from liquid_pilot.data.shards import gigabytes
from liquid_pilot.flight.image import PREPROCESSING
from liquid_pilot.nn.checkpoint import load_pilot, read_checkpoint, save_pilot
from liquid_pilot.nn.policy import Pilot, PilotConfig
from liquid_pilot.settings import NON_NEGATIVE, POSITIVE, Range, SettingsError, build, check_fields, read_yaml, \
    setting
from liquid_pilot.train import distributed
from liquid_pilot.train.distributed import Runtime


@dataclass
class TrainConfig:
    """A training recipe: the pilot to train, the optimisation, augmentation, topics and hardware settings.

    Every setting is declared once with its documentation and range (``settings.setting``) and checked on
    construction, errors naming the setting and its value; the checks between settings follow.
    """

    pilot: PilotConfig = setting(help="the pilot to train (its architecture and inputs)", factory=PilotConfig)
    epochs: int = setting(40, "passes over the training windows", Range(1))
    batch_size: int = setting(16, "windows per optimisation step (over all processes)", Range(1))
    sequence_length: int = setting(64, "frames per training window", Range(1))
    shift: int = setting(16, "frames between the starts of consecutive windows", Range(1))
    frame_strides: list[int] = setting(help="training windows of every Nth frame too, for each N listed (2: a "
                                       "camera at half rate, its steps spanning twice the time); [1]: none",
                                       factory=lambda: [1])
    learning_rate: float = setting(2e-3, "AdamW's learning rate (1e-2 collapses the CNN's features early)", POSITIVE)
    lr_decay: float = setting(0.95, "learning-rate multiplier per epoch (exponential decay)", Range(0.0, 1.0,
                                                                                                    open_low=True))
    warmup_steps: int = setting(0, "optimisation steps over which the learning rate rises linearly to its value "
                                "(0: none); a warm-up keeps an LTC-NCP's CNN features from saturating in the first "
                                "epoch (docs/training.md)", Range(0))
    weight_decay: float = setting(0.0, "AdamW's decoupled weight decay", NON_NEGATIVE)
    grad_clip: float = setting(1.0, "gradient norm clip; 0: none", NON_NEGATIVE)
    val_fraction: float = setting(0.15, "share of the flights held out for validation", Range(0.0, 1.0,
                                                                                              open_high=True))
    seed: int = setting(0, "the seed of the split, the initialisation, the batch order and the augmentation",
                        Range(0))
    threads: int = setting(2, "CPU threads per process; under torchrun at most the machine's cores / its processes",
                           Range(1))
    augment: AugmentConfig = setting(help="per-sequence augmentation", factory=AugmentConfig)
    topics: TopicConfig = setting(help="how a flight is read from a bag: topics, time, conventions",
                                  factory=TopicConfig)
    device: str = setting("auto", "auto (cuda, else mps, else cpu), cpu, cuda or mps", distributed.DEVICES)
    precision: str = setting("auto", "auto (bf16 autocast on a GPU that has it, else fp16; float32 on CPUs), fp32, "
                             "bf16 or fp16", distributed.PRECISIONS)
    workers: int | str = setting("auto", "DataLoader worker processes; auto: none on a CPU, up to 4 beside an "
                                 "accelerator")
    pin_memory: bool | str = setting("auto", "page-locked batches; auto: on CUDA")
    windows_per_epoch: int = setting(0, "0: every training window each epoch; N: N drawn anew each epoch (huge data)",
                                     Range(0))
    init: str | None = setting(None, "fine-tuning: a pilot checkpoint to start from (its architecture, inputs, "
                               "normalisation and field of view are kept); null: a freshly initialised pilot")
    freeze: list[str] = setting(help="parts whose weights do not train: cnn (the image encoder)", factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.init, os.PathLike):
            self.init = os.fspath(self.init)
        if isinstance(self.device, str) and isinstance(self.precision, str):
            distributed.check_choices(self.device, self.precision)  # names the --device/--precision to fix
        check_fields(self)
        if self.workers != "auto" and (isinstance(self.workers, str) or self.workers < 0):
            raise ValueError(f"workers must be auto or a number of processes, 0 or more (got {self.workers!r})")
        if self.pin_memory not in ("auto", True, False):
            raise ValueError(f"pin_memory must be auto, true or false (got {self.pin_memory!r})")
        if self.init is not None and not self.init:
            raise ValueError(f"init must be a pilot checkpoint's path (got {self.init!r})")
        if not self.frame_strides or any(isinstance(n, bool) or not isinstance(n, int) or n < 1
                                         for n in self.frame_strides):
            raise ValueError(f"frame_strides must be a list of whole numbers of frames, 1 or more, such as [1, 2] "
                             f"(got {self.frame_strides!r})")
        if any(part not in FREEZABLE for part in self.freeze):
            raise ValueError(f"freeze must be a list of {', '.join(FREEZABLE)} (got {self.freeze!r})")
        self.freeze = sorted(set(self.freeze))
        if self.freeze and self.init is None:
            raise ValueError(f"freeze {self.freeze} keeps weights of a parent: it needs init (--init MODEL)")
        if set(self.freeze) == set(FREEZABLE):
            raise ValueError(f"freeze {self.freeze} leaves nothing to train")


FREEZABLE = ("cnn", "head")  # parts of a pilot whose weights fine-tuning can keep as they are
ARCHITECTURE_FREE = ("camera_fov_deg",)  # pilot settings a fine-tuned pilot may change


def parent_config(path: str | Path, given: dict[str, Any] | None = None) -> PilotConfig:
    """Return the pilot settings of a fine-tuning's parent checkpoint, checking those a config gives against them.

    ``given``: the ``pilot:`` settings a training config names; any that differs from the parent's
    (but the field of view) is a ValueError naming the setting, both values and the choices.
    """
    parent = read_checkpoint(path)["config"]
    fields = {f.name for f in dataclasses.fields(PilotConfig)}
    try:
        config = PilotConfig(**{k: v for k, v in parent.items() if k in fields})
        wanted = PilotConfig(**{**dataclasses.asdict(config), **(given or {})})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: cannot fine-tune from it: {exc}") from None
    check_parent(wanted, config, path, set(given or {}))
    return dataclasses.replace(config, camera_fov_deg=wanted.camera_fov_deg)


def check_parent(cfg: PilotConfig, parent: PilotConfig, path: str | Path, given: set[str] | None = None) -> None:
    """Raise ValueError naming the first setting in which ``cfg`` differs from the parent's architecture or inputs."""
    for f in dataclasses.fields(PilotConfig):
        if f.name in ARCHITECTURE_FREE or (given is not None and f.name not in given):
            continue
        mine, theirs = getattr(cfg, f.name), getattr(parent, f.name)
        if mine != theirs:
            fix = ("name its IMU topic (--imu-topic), or train from scratch for a camera-only pilot"
                   if f.name == "use_imu" else f"drop pilot.{f.name} from the training config, or train from "
                                               f"scratch (no --init) for another")
            raise ValueError(f"{path}: cannot fine-tune from it: its pilot.{f.name} is {theirs!r} and this "
                             f"training's is {mine!r}; a fine-tuned pilot keeps its parent's architecture and "
                             f"inputs: {fix}")


def load_train_config(path: str | Path | None, overrides: dict[str, Any] | None = None,
                      topics: dict[str, Any] | None = None, defaults: str | Path | None = None) -> TrainConfig:
    """Read a YAML training config; unknown keys are errors that list the allowed ones.

    ``topics``: reading settings given on the command line (``--image-topic`` ...; None: not
    given). They win over the file's ``topics:``; topics that neither names are chosen by type
    (``auto``), as a user who names none expects. ``defaults``: without ``path``, a YAML config
    whose settings stand in for the dataclasses' defaults (the shipped pilot's recipe); errors
    are then the command line's, as without a file.
    """
    data: dict[str, Any] = {}
    source = path if path is not None else defaults
    if source is not None:
        data = read_yaml(source) or {}
        if not isinstance(data, dict):
            raise SettingsError(f"{source}: a training config is a mapping of settings, got {data!r}")
    data.update(overrides or {})
    if data.get("init"):  # fine-tuning: the parent's architecture, checked against the pilot settings given
        given = data.get("pilot") or {}
        if not isinstance(given, dict):
            raise ValueError(f"{path}: pilot must be a mapping of settings")
        bad = set(given) - {f.name for f in dataclasses.fields(PilotConfig)}
        if bad:
            raise ValueError(f"{path}: unknown pilot settings {sorted(bad)}")
        data["pilot"] = dataclasses.asdict(parent_config(data["init"], given))
    if topics is not None:
        given = dict(data.get("topics") or {})
        for role in ("image", "command", "imu"):
            given.setdefault(role, "auto")
        given.update({k: v for k, v in topics.items() if v is not None})
        data["topics"] = given
    where = f"{path}: " if path else ""  # settings from the command line alone: their names say where
    nested = {"pilot": PilotConfig, "augment": AugmentConfig, "topics": TopicConfig}
    sections = {}
    for key, cls in nested.items():
        if key in data:
            try:
                sections[key] = build(cls, data[key] or {}, key)
            except (TypeError, ValueError) as exc:
                named = str(exc).startswith((f"{key}.", "unknown "))  # the section is named in the message
                raise SettingsError(f"{where}{'' if named else key + ': '}{exc}") from None
    try:
        return build(TrainConfig, {**data, **sections}, "training")
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{where}{exc}") from None


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


def _window_losses(pilot: Pilot, batch: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """Each window's MSE on commands divided by the model's command scale, so every axis counts alike: (B,)."""
    predicted, _ = pilot(images, batch["imu"] if pilot.config.use_imu else None, batch["dt"])
    return _command_losses(pilot, predicted, batch["commands"])


def _command_losses(pilot: Pilot, predicted: torch.Tensor, commands: torch.Tensor) -> torch.Tensor:
    return ((predicted.float() - commands) / pilot.command_scale).square().mean(dim=(1, 2))


def _autocast_encoder(pilot: Pilot, dtype: torch.dtype | None) -> None:
    """Run the pilot's CNN, nearly all of its arithmetic, under autocast to ``dtype``.

    The liquid head stays float32: its state runs through 64 steps, where bf16's 8-bit mantissa
    would compound.
    """
    if dtype is None:
        return
    forward, device = pilot.encoder.forward, pilot.command_scale.device.type

    def autocast(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device, dtype=dtype):
            return forward(x).float()

    pilot.encoder.forward = autocast  # on this instance only: its weights and checkpoint are unchanged


class _Batches(torch.utils.data.Sampler):
    """The batch sampler of this process's shares of an epoch's global batches, refilled every epoch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Any:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _loader(dataset: SequenceDataset, batches: Any, config: TrainConfig, runtime: Runtime) -> DataLoader:
    """Return this process's DataLoader: workers and pinned memory as configured (auto: as the device wants)."""
    workers = config.workers
    if workers == "auto":
        cores = (os.cpu_count() or 1) // runtime.local_world_size
        workers = 0 if runtime.device.type == "cpu" else min(4, max(0, cores - 1))
    pin = runtime.device.type == "cuda" if config.pin_memory == "auto" else config.pin_memory
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, pin_memory=pin,
                      persistent_workers=workers > 0, generator=torch.Generator().manual_seed(config.seed))


def _on(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _to_cpu(obj: Any) -> Any:
    """Tensors (in dicts and lists) on the CPU: checkpoints and states load on any device."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _rng_state(runtime: Runtime) -> dict[str, Any]:
    cuda = torch.cuda.get_rng_state(runtime.device) if runtime.device.type == "cuda" else None
    return {"torch": torch.get_rng_state(), "cuda": cuda}


RESUME_ANYWHERE = ("epochs", "threads", "workers", "pin_memory")  # settings a resumed run may change


def _resume(state_path: Path, config_dict: dict[str, Any], runtime: Runtime) -> dict[str, Any] | None:
    """Return the saved state (rank 0 reads it, every process gets it) checked against this run, or None."""
    saved = None
    if runtime.main and state_path.is_file():
        saved = torch.load(state_path, map_location="cpu", weights_only=False)
    saved = distributed.from_main(saved, runtime)
    if saved is None:
        return None
    defaults = dataclasses.asdict(TrainConfig())
    asked = {k: v for k, v in config_dict.items() if k not in RESUME_ANYWHERE}
    then = {k: saved["config"].get(k, defaults[k]) for k in asked}
    if then != asked:
        changed = "; ".join(f"{k}: {then[k]!r} then, {asked[k]!r} now" for k in asked if then[k] != asked[k])
        raise ValueError(f"{state_path}: was written with another training config ({changed}); train with the "
                         "same settings to resume, or without --resume to start over")
    processes = saved.get("world_size", 1)
    if processes != runtime.world_size:
        how = "in one process, without torchrun (or --ray with --processes 1)" if processes == 1 else \
            f"with torchrun starting {processes} processes in all (e.g. --nproc_per_node {processes}), or --ray " \
            f"with --processes {processes}"
        raise ValueError(f"{state_path}: was written by a run of {processes} process{'es' * (processes > 1)} and "
                         f"this one has {runtime.world_size}; resume it {how}, or train without --resume to start "
                         "over")
    return saved


@contextlib.contextmanager
def _warmed_up(optimizer: torch.optim.Optimizer, step: int, warmup_steps: int) -> Iterator[None]:
    """Scale the learning rate by (step + 1) / warmup_steps for one optimisation step, during the warm-up.

    The schedule's own rate is put back after the step, so the per-epoch decay goes on from it unchanged, and the
    factor is a function of the step's place in the run alone: a resumed run warms up as an uninterrupted one.
    """
    factor = (step + 1) / warmup_steps if step < warmup_steps else 1.0
    rates = [group["lr"] for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"] *= factor
    try:
        yield
    finally:
        for group, rate in zip(optimizer.param_groups, rates):
            group["lr"] = rate


def check_batch(config: TrainConfig, runtime: Runtime) -> None:
    if config.batch_size % runtime.world_size:
        raise ValueError(f"batch_size {config.batch_size} does not split over {runtime.world_size} processes: set "
                         f"batch_size to a multiple of {runtime.world_size} (it is the global batch, the same for "
                         f"any number of processes)")


def train(config: TrainConfig, data: list[str | Path], out: str | Path, resume: bool = False,
          skip_bad: bool = False, cache_dir: Path | None = None, log: Any = sys.stderr,
          settings: str | None = None) -> dict[str, Any]:
    """Train from bags and keep the best checkpoint at ``out``; returns a summary of the run.

    Under torchrun, every process calls this: each machine's first process decodes the bags
    into the cache, the others open it after. ``settings``: where the config came from, said first.
    """
    runtime = distributed.start(config.device, config.precision)
    try:
        check_batch(config, runtime)
        log = log if runtime.main else io.StringIO()
        if settings:
            print(f"training config: {settings}", file=log)
        cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
        cfg = config.pilot
        topics = config.topics if cfg.use_imu else dataclasses.replace(config.topics, imu=None)
        flights = None
        for turn in range(2):  # each machine's first process decodes into the cache, then the others open it
            if (runtime.local_rank == 0) == (turn == 0):
                flights = load_flights(data, topics, (cfg.image_height, cfg.image_width), cache_dir, skip_bad,
                                       on_bad=lambda e: print(f"skipping bad bag: {e}", file=log),
                                       on_note=lambda line: print(f"note: {line}", file=log))
            distributed.barrier(runtime)
        if topics.imu is None and cfg.use_imu:
            cfg = dataclasses.replace(cfg, use_imu=False)
        _report_reading(flights, cfg, log)
        size = sum(f.images.nbytes for f in flights)
        print(f"frame cache: {cache_dir}: {gigabytes(size)} of decoded frames in {len(flights)} memory-mapped "
              f"entries, read window by window; {gigabytes(shutil.disk_usage(cache_dir).free)} free there",
              file=log)
        return train_flights(config, flights, out, resume=resume, log=log, runtime=runtime, pilot_config=cfg,
                             topics=topics, source=", ".join(map(str, data)))
    finally:
        distributed.stop(runtime)


def train_flights(config: TrainConfig, flights: list[Flight], out: str | Path, resume: bool = False,
                  log: Any = sys.stderr, runtime: Runtime | None = None, pilot_config: PilotConfig | None = None,
                  topics: TopicConfig | None = None, source: str = "the flights") -> dict[str, Any]:
    """Train on decoded flights (``train`` reads them from bags); the rest as ``train``.

    ``pilot_config``: the pilot to train when it differs from the config's (as read from the
    bags); ``runtime``: this process's (default: started here from the config, and stopped).
    """
    if runtime is None:
        runtime = distributed.start(config.device, config.precision)
        try:
            return train_flights(config, flights, out, resume, log if runtime.main else io.StringIO(),
                                 runtime, pilot_config, topics, source)
        finally:
            distributed.stop(runtime)
    check_batch(config, runtime)
    out = Path(out)
    if runtime.main:
        out.parent.mkdir(parents=True, exist_ok=True)
    state_path, csv_path = out.with_suffix(".state.pt"), out.with_suffix(".log.csv")
    threads = distributed.threads_per_process(config.threads, runtime)
    torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    device, length = runtime.device, config.sequence_length
    cfg = _with_camera_fov(pilot_config or config.pilot, flights, log, parent=config.init)
    train_set, val_set, split = _split(config, flights, source, log)
    reference = mean_command_loss(train_set.flights, val_set.flights if len(val_set) else train_set.flights,
                                  cfg.command_scale)
    print(f"always commanding the training flights' mean command would score {reference:.5f} on validation: a "
          f"run that learns scores well below it", file=log)
    print(runtime.describe(threads) + f"; global batch {config.batch_size}"
          + (f" = {config.batch_size // runtime.world_size} per process" if runtime.world_size > 1 else ""),
          file=log)
    inputs = _inputs(flights, topics or config.topics, cfg)

    parent = _parent(config, cfg, log)
    pilot = Pilot(cfg, seed=config.seed)
    if parent is not None:  # its weights and its normalisation: the CNN's features depend on it
        pilot.load_state_dict(parent["pilot"].state_dict())
    else:
        # reads frames (none for a frame-normalised pilot): once, then shared
        stats = normalisation(train_set.flights, images=not cfg.frame_norm) if runtime.main else None
        pilot.set_normalisation(*map(torch.as_tensor, distributed.from_main(stats, runtime)))
    frozen = {"cnn": pilot.encoder, "head": pilot.head}
    for part in config.freeze:
        frozen[part].requires_grad_(False)
    pilot.to(device)
    trained = [p for p in pilot.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, config.lr_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=runtime.dtype == torch.float16)
    config_dict = dataclasses.asdict(config)
    start_epoch, best, elapsed, history = 0, float("inf"), 0.0, []
    saved = _resume(state_path, config_dict, runtime) if resume else None
    if saved is not None:
        pilot.load_state_dict(saved["pilot"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        rng = saved["rng"][runtime.rank] if "rng" in saved else {"torch": saved["torch_rng"], "cuda": None}
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], device)
        start_epoch, best, elapsed, history = saved["epoch"] + 1, saved["best"], saved["elapsed"], saved["history"]
        print(f"resuming after epoch {saved['epoch'] + 1} (best validation loss {best:.5f})", file=log)

    generator = torch.Generator().manual_seed(config.seed)
    batches = _Batches()
    loader = _loader(train_set, batches, config, runtime)
    _autocast_encoder(pilot, runtime.dtype)
    for epoch in range(start_epoch, config.epochs):
        generator.manual_seed(config.seed * 1000 + epoch)  # each epoch's order and augmentation, resumable
        started = time.perf_counter()
        pilot.train()
        plan = distributed.epoch_batches(len(train_set), config.batch_size, generator, config.windows_per_epoch)
        spans = [distributed.share(len(b), runtime) for b in plan]
        # A process whose share of a short last batch is empty runs one window at weight 0: every process joins.
        batches.batches = [b[a:z].tolist() if z > a else b[:1].tolist() for b, (a, z) in zip(plan, spans)]
        losses = []
        bar = tqdm(zip(loader, plan, spans), total=len(plan), desc=f"epoch {epoch + 1}/{config.epochs}", file=log,
                   leave=False, unit="batch", disable=not runtime.main)
        for index, (batch, whole, (a, z)) in enumerate(bar):
            draw = draw_augmentation(len(whole), length, config.augment, generator)
            batch = _on(batch, device)
            images, batch["imu"] = apply_augmentation(batch["images"], batch["imu"],
                                                      draw.part(a, z) if z > a else draw.part(0, 1), config.augment)
            loss = _window_losses(pilot, batch, images).sum() * ((z > a) / len(whole))
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            losses.append(distributed.sum_gradients(trained, loss, runtime))
            scaler.unscale_(optimizer)
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(trained, config.grad_clip)
            with _warmed_up(optimizer, epoch * len(plan) + index, config.warmup_steps):
                scaler.step(optimizer)
            scaler.update()
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        train_seconds = time.perf_counter() - started
        train_loss = float(np.mean(losses))
        val_loss = evaluate(pilot, val_set, config.batch_size, runtime) if len(val_set) else train_loss
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        seconds = time.perf_counter() - started
        elapsed += seconds
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "lr": lr,
                        "seconds": round(seconds, 2),
                        "frames_per_s": round(sum(map(len, plan)) * length / train_seconds, 1)})
        improved = val_loss < best
        rng = distributed.gather(_rng_state(runtime), runtime)
        if improved:
            best = val_loss
            if runtime.main:
                save_pilot(pilot.eval(), out, provenance={
                    "trained_with": f"liquid_pilot {__version__}", "data": [f.bag for f in flights][:200],
                    "flights": len(flights), "frames": sum(len(f.images) for f in flights), "epoch": epoch + 1,
                    "camera_hz": camera_hz(flights),
                    "val_loss": round(val_loss, 6), "mean_command_val_loss": round(reference, 6),
                    "train_seconds": round(elapsed, 1), "config": config_dict,
                    "processes": runtime.world_size, "device": device.type,
                    "validation": split if len(val_set) else f"none: {split}",
                    **({"parent": parent["provenance"], "frozen": config.freeze} if parent else {})}, inputs=inputs)
        print(f"epoch {epoch + 1}/{config.epochs}: train {train_loss:.5f}  val {val_loss:.5f}  lr {lr:.2e}  "
              f"{len(plan) / seconds:.2f} batch/s, {history[-1]['frames_per_s']:.0f} frames/s"
              f"{'  * best, saved' if improved else ''}", file=log)
        if runtime.main:
            _write_log(csv_path, history)
            _atomic_save(_to_cpu({
                "config": config_dict, "pilot": pilot.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "rng": rng, "world_size": runtime.world_size, "device": device.type, "epoch": epoch,
                "best": best, "elapsed": elapsed, "history": history}), state_path)
    if runtime.main:
        _plot_losses(history, out.with_suffix(".loss.png"))
    learnt = best < LEARNT_BELOW * reference
    if not learnt:
        saturated, features = saturated_features(pilot, val_set.flights or train_set.flights)
        why = (f"; its CNN's features saturated ({saturated} of {features} pinned at +-1 on every frame): "
               f"train again with a learning-rate warm-up (warmup_steps: 150) or a lower learning_rate "
               f"(docs/training.md)"
               if saturated > features // 2 else
               "; train again with another --seed (an LTC-NCP run in five did this in docs/results/best_pilot/), "
               "or for more epochs")
        print(f"warning: this run did not learn: its best validation loss {best:.5f} is no better than always "
              f"commanding the training flights' mean command ({reference:.5f}), and its pilot will not fly{why}",
              file=log)
    return {"best_val_loss": best, "epochs": len(history), "seconds": elapsed, "checkpoint": str(out),
            "history": history, "mean_command_val_loss": reference, "learnt": learnt}


LEARNT_BELOW = 0.9  # a run learnt when its best validation loss is under this share of the mean command's
# (the 30 runs of every head on C7's data, docs/results/best_pilot/ round 5: 0.26-0.48 of it for the 29 that fly, 1.02
# for the LTC-NCP run that flies no episode)


SATURATED_ABOVE = 0.99  # a feature whose tanh is beyond +-this on every frame is pinned: no frame moves it


@torch.no_grad()
def saturated_features(pilot: Pilot, flights: list[Flight], frames: int = 256) -> tuple[int, int]:
    """Count the CNN's features pinned at the flat ends of their tanh on ``frames`` frames spread across ``flights``.

    Returns (pinned, total). A CNN pushed into its output tanh's flat ends early in training gives the head the
    same features whatever it sees, and no gradient to leave them: the run learns the mean command and stays there.
    """
    each = -(-frames // len(flights))  # evenly spaced frames of every flight, read from its (mapped) frames alone
    images = np.concatenate([f.images[np.linspace(0, len(f.images) - 1, min(each, len(f.images))).astype(int)]
                             for f in flights])[:frames]
    device = next(pilot.parameters()).device
    was_training = pilot.training
    pilot.eval()
    features = pilot.encoder(pilot._normalised(torch.as_tensor(images, device=device))).float()
    pilot.train(was_training)
    return int((features.abs() > SATURATED_ABOVE).all(0).sum()), features.shape[1]


def mean_command_loss(train: list[Flight], validation: list[Flight], command_scale: Any) -> float:
    """Return the validation loss of a pilot that always commands the training flights' mean command.

    The training loss's scaling: each axis divided by the command scale, the squares averaged. It is the loss of a
    run that learnt nothing.
    """
    scale = np.asarray(command_scale, np.float64)
    mean = np.concatenate([np.asarray(f.commands, np.float64) for f in train]).mean(0)
    commands = np.concatenate([np.asarray(f.commands, np.float64) for f in validation])
    return float((((commands - mean) / scale) ** 2).mean())


def camera_hz(flights: list[Flight]) -> float | None:
    """Return the training camera's frame rate: 1 / the median interval between kept frames (pilot_node checks it)."""
    intervals = np.concatenate([np.asarray(f.dt, np.float64) for f in flights]) if flights else np.zeros(0)
    intervals = intervals[intervals > 0]
    return round(float(1.0 / np.median(intervals)), 2) if len(intervals) else None


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (a parent checkpoint's identity in its children's provenance)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()


def _parent(config: TrainConfig, cfg: PilotConfig, log: Any) -> dict[str, Any] | None:
    """Return the fine-tuning's parent (its pilot and provenance entry), checked against the pilot to train, or None."""
    if config.init is None:
        return None
    pilot = load_pilot(config.init)
    check_parent(cfg, pilot.config, config.init)
    payload = read_checkpoint(config.init)
    provenance = {"path": str(config.init), "sha256": file_sha256(config.init),
                  "camera_fov_deg": pilot.config.camera_fov_deg}
    for key in ("flights", "epoch", "val_loss", "trained_with"):
        if key in payload["provenance"]:
            provenance[key] = payload["provenance"][key]
    frozen = f"; frozen: {', '.join(config.freeze)}" if config.freeze else ""
    print(f"fine-tuning {config.init} (sha256 {provenance['sha256'][:12]}...): its weights, normalisation and "
          f"field of view{frozen}", file=log)
    return {"pilot": pilot, "provenance": provenance}


def _split(config: TrainConfig, flights: list[Flight], source: str,
           log: Any) -> tuple[SequenceDataset, SequenceDataset, str]:
    """Training and validation windows, and the line saying how flights were split (both printed)."""
    train_flights, val_flights, split = split_flights(flights, config.val_fraction, config.seed,
                                                      config.sequence_length)
    train_set = SequenceDataset(train_flights, config.sequence_length, config.shift, tuple(config.frame_strides))
    val_set = SequenceDataset(val_flights, config.sequence_length, config.shift)
    frames = sum(len(f.images) for f in flights)
    if not len(val_set):
        if val_flights:
            split = (f"no validation: the held-out flights have no segment of {config.sequence_length} frames "
                     f"(the longest has {max(_segment_lengths(val_flights), default=0)}); the validation loss is "
                     f"the training loss")
        print(f"warning: {split}", file=log)
    else:
        print(f"validation: {split}", file=log)
    if len(train_set) == 0:
        longest = max(_segment_lengths(train_flights), default=0)
        raise BagError(source, f"no flight segment is {config.sequence_length} frames long: {len(flights)} flights, "
                               f"{frames} usable frames, the longest training segment {longest} frames; set "
                               f"sequence_length (in the training config) to at most {longest}, or record longer "
                               f"flights")
    print(f"{len(flights)} flights, {frames} frames: {len(train_set)} training and {len(val_set)} validation "
          f"windows of {config.sequence_length} (shift {config.shift}{_strides(config)}); "
          f"{train_set.unused_frames} frames in too-short segments unused", file=log)
    return train_set, val_set, split


def _strides(config: TrainConfig) -> str:
    more = [n for n in config.frame_strides if n != 1]
    return f"; training windows also stepping {' and '.join(map(str, more))} frames" if more else ""


def _segment_lengths(flights: list[Flight]) -> list[int]:
    return [int(n) for f in flights for n in np.unique(f.segments, return_counts=True)[1]]


def _report_reading(flights: list[Flight], cfg: PilotConfig, log: Any) -> None:
    """Print how the bags were read: topics chosen, time source, conventions, and every bag's notes."""
    chosen = Counter("; ".join(f.report.get("chosen") or []) for f in flights)
    for line, count in chosen.items():
        if line:
            print(f"topics chosen by type: {line} ({_share(count, flights)})", file=log)
    sources = Counter(f.report.get("time_source", "header") for f in flights)
    print("time: " + ", ".join(f"{'header stamps' if k == 'header' else 'time recorded'} ({_share(n, flights)})"
                               for k, n in sources.items()), file=log)
    frames = {(f.report.get("command_frame", "flu"), f.report.get("imu_frame", "flu")) for f in flights}
    if frames != {("flu", "flu")}:
        print("converted to FLU: " + ", ".join(f"commands from {c.upper()}, IMU from {i.upper()}" for c, i in frames),
              file=log)
    motion = Counter((f.report["topics"]["command"], tuple(f.report["label"]["lead_s"]),
                      f.report["label"]["smoothing_s"])
                     for f in flights if (f.report.get("label") or {}).get("kind") == "motion")
    for (topic, lead, smoothing), count in motion.items():
        print(f"labels: the vehicle's motion on {topic} at the frame's time + {list(lead)} s, smoothed by a "
              f"zero-phase Gaussian of {smoothing} s ({_share(count, flights)})", file=log)
    if not cfg.use_imu:
        print("an image-only pilot: no IMU input (no IMU topic, or pilot.use_imu false)", file=log)
    for flight in flights:
        for note in flight.report.get("notes") or []:
            print(f"note: {flight.bag}: {note}", file=log)


def _share(count: int, flights: list[Flight]) -> str:
    return f"all {count} bags" if count == len(flights) else f"{count} of {len(flights)} bags"


def _inputs(flights: list[Flight], topics: TopicConfig, cfg: PilotConfig) -> dict[str, Any]:
    """Return what the pilot was trained to read, for the checkpoint: topics (the most common), time, frames."""
    names = Counter(tuple(sorted((f.report.get("topics") or {}).items())) for f in flights).most_common(1)[0][0]
    label = flights[0].report.get("label") or {}
    motion = {"command_lead_s": topics.command_lead_s, "motion_smoothing_s": topics.motion_smoothing_s} \
        if label.get("kind") == "motion" else {}
    return {"topics": dict(names) if names else None, "time_source": topics.time_source,
            "command_frame": topics.command_frame, "imu_frame": topics.imu_frame, "preprocessing": PREPROCESSING,
            "image_size": [cfg.image_height, cfg.image_width], "use_imu": cfg.use_imu,
            "command_kind": label.get("kind", "command"), **motion}


def _with_camera_fov(cfg: PilotConfig, flights: list[Flight], log: Any, parent: str | None = None) -> PilotConfig:
    """Return the pilot's config with the training camera's field of view.

    One set in the config (or the fine-tuning's ``parent``'s) wins.
    """
    fov = training_fov(flights)
    if cfg.camera_fov_deg is not None:
        if fov is not None and max(abs(a - b) for a, b in zip(fov, cfg.camera_fov_deg)) > FOV_AGREEMENT_DEG:
            whose = f"the parent's field of view {cfg.camera_fov_deg} (set pilot.camera_fov_deg to record the " \
                    f"bags')" if parent else f"pilot.camera_fov_deg {cfg.camera_fov_deg}"
            print(f"note: {whose} is recorded, though the bags' camera_info says {fov}", file=log)
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
def evaluate(pilot: Pilot, dataset: SequenceDataset, batch_size: int, runtime: Runtime | None = None) -> float:
    """Mean validation loss over all windows, without augmentation.

    Windows overlap (their shift is shorter than their length), so each held-out frame goes through the CNN once:
    a flight's frames are encoded together and each window runs the head on its slice of their features. The loss is
    the one running every window's frames through the whole pilot gives, for a quarter of the CNN's work at the
    recipe's shift of 16 frames in 64. Each process takes its share of the windows and the sums are added, so every
    process gets the same loss.
    """
    runtime = runtime or Runtime(device=next(pilot.parameters()).device)
    pilot.eval()
    a, z = distributed.share(len(dataset), runtime)
    totals = torch.zeros(2, dtype=torch.float64, device=runtime.device)
    pending: list[tuple[torch.Tensor, np.ndarray, np.ndarray]] = []

    def run() -> None:  # one batch of windows through the head, as training batches them
        features = torch.stack([w[0] for w in pending])
        dt = torch.from_numpy(np.stack([w[1] for w in pending])).unsqueeze(-1).to(runtime.device)
        commands = torch.from_numpy(np.stack([w[2] for w in pending])).to(runtime.device)
        predicted, _ = pilot.sequence(features, dt)
        losses = _command_losses(pilot, predicted, commands)
        totals[0] += losses.double().sum()
        totals[1] += len(losses)
        pending.clear()

    chunk = max(1, batch_size) * dataset.length  # frames through the CNN at once: a training batch's
    for flight, items in itertools.groupby(range(a, z), key=lambda i: dataset.windows[i][0]):
        windows = [dataset.frames(i)[1:] for i in items]
        f, first, last = dataset.flights[flight], min(w[0].start for w in windows), max(w[0].stop for w in windows)
        features = torch.cat([_encoded(pilot, f, s, min(s + chunk, last), runtime.device)
                              for s in range(first, last, chunk)])
        for keep, dt in windows:
            pending.append((features[keep.start - first:keep.stop - first:keep.step], dt,
                            np.ascontiguousarray(f.commands[keep])))
            if len(pending) == batch_size:
                run()
    if pending:
        run()
    totals = distributed.sum_(totals, runtime)
    return float(totals[0] / totals[1])


def _encoded(pilot: Pilot, flight: Flight, start: int, stop: int, device: torch.device) -> torch.Tensor:
    """Return the sensory features of frames ``start:stop`` of ``flight``: (stop - start, F)."""
    images = torch.from_numpy(shards.read_frames(flight.images, start, stop)).to(device)
    return pilot.sensory(images, torch.from_numpy(np.ascontiguousarray(flight.imu[start:stop])).to(device))


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in history for k in row)))
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
