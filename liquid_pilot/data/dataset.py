"""Training sequences from decoded flights: windows with real elapsed time, a cache, augmentation.

Decoded frames are cached on disk per bag; the cache key covers the bag's files (names, sizes,
modification times), the decoding settings, the image preprocessing and the cache's format, so
a changed bag, or frames prepared another way, are decoded again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from liquid_pilot.data.reader import BagError, Flight, TopicConfig, read_flight
from liquid_pilot.flight.image import PREPROCESSING

# Bumped whenever a cache entry's contents change meaning: 2 = frames fitted by flight.image.fit
# (not squashed) and the camera's field of view stored with them.
CACHE_VERSION = 2


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "liquid_pilot" / "frames"


def find_bags(paths: list[str | Path]) -> list[Path]:
    """Bags named directly, or the bags inside the folders named (sorted, one level down)."""
    bags: list[Path] = []
    for path in map(Path, paths):
        if (path / "metadata.yaml").is_file():
            bags.append(path)
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if (p / "metadata.yaml").is_file() and not p.name.startswith("."))
            if not found:
                raise BagError(path, "no rosbag2 bags in this folder")
            bags += found
        else:
            raise BagError(path, "no such bag or folder")
    return bags


def _fingerprint(bag: Path, topics: TopicConfig, size: tuple[int, int] | None) -> str:
    files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in bag.iterdir() if f.is_file())
    text = json.dumps([CACHE_VERSION, PREPROCESSING, str(bag.resolve()), files, dataclasses.asdict(topics), size])
    return hashlib.sha256(text.encode()).hexdigest()


def load_flight(bag: Path, topics: TopicConfig, size: tuple[int, int] | None, cache_dir: Path | None) -> Flight:
    """Decode a bag, or read its decoded frames from the cache when the bag has not changed."""
    if cache_dir is None:
        return read_flight(bag, topics, size)
    key = _fingerprint(bag, topics, size)
    cached = cache_dir / f"{key}.npz"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                fov = meta["camera_fov_deg"]  # absent from older entries: they are rebuilt
                return Flight(bag=str(bag), images=z["images"], commands=z["commands"], imu=z["imu"], dt=z["dt"],
                              segments=z["segments"], camera_fov_deg=None if fov is None else tuple(fov),
                              metadata=meta["metadata"], report=meta["report"])
        except (OSError, ValueError, KeyError, TypeError):
            cached.unlink(missing_ok=True)  # a damaged cache entry is rebuilt, never trusted
    flight = read_flight(bag, topics, size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp.npz")  # per process: trainings may share the cache
    meta = {"metadata": flight.metadata, "report": flight.report, "camera_fov_deg": flight.camera_fov_deg}
    np.savez(tmp, images=flight.images, commands=flight.commands, imu=flight.imu, dt=flight.dt,
             segments=flight.segments, meta=json.dumps(meta))
    tmp.replace(cached)
    return flight


def load_flights(paths: list[str | Path], topics: TopicConfig | None = None, size: tuple[int, int] | None = None,
                 cache_dir: Path | None = None, skip_bad: bool = False,
                 on_bad: Callable[[BagError], None] | None = None) -> list[Flight]:
    """Decode every bag; a bad bag raises unless ``skip_bad``, which reports it and goes on."""
    topics = topics or TopicConfig()
    flights = []
    for bag in find_bags(paths):
        try:
            flights.append(load_flight(bag, topics, size, cache_dir))
        except BagError as error:
            if not skip_bad:
                raise
            if on_bad is not None:
                on_bad(error)
    if not flights:
        raise BagError(", ".join(map(str, paths)), "no usable bags")
    return flights


def split_flights(flights: list[Flight], val_fraction: float, seed: int) -> tuple[list[Flight], list[Flight]]:
    """Split by whole flights, so validation never sees frames of a training flight."""
    order = np.random.default_rng(seed).permutation(len(flights))
    n_val = int(round(len(flights) * val_fraction)) if len(flights) > 1 else 0
    n_val = min(max(n_val, 1 if val_fraction > 0 and len(flights) > 1 else 0), len(flights) - 1)
    return [flights[i] for i in order[n_val:]], [flights[i] for i in order[:n_val]]


def normalisation(flights: list[Flight]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel image mean/std in [0, 1] units and per-field IMU mean/std of the flights."""
    pixels = np.concatenate([f.images[::4].reshape(-1, 3) for f in flights]).astype(np.float64) / 255.0
    imu = np.concatenate([f.imu for f in flights]).astype(np.float64)
    return pixels.mean(0), pixels.std(0), imu.mean(0), imu.std(0)


class SequenceDataset(Dataset):
    """Windows of ``length`` frames every ``shift`` frames within each gap-free segment.

    A last window ends at each segment's last frame; segments shorter than ``length`` are not used.
    """

    def __init__(self, flights: list[Flight], length: int = 64, shift: int = 16):
        if length < 1 or shift < 1:
            raise ValueError(f"sequence length and shift must be positive, got {length} and {shift}")
        self.flights, self.length = flights, length
        self.windows: list[tuple[int, int]] = []
        self.unused_frames = 0
        for index, flight in enumerate(flights):
            for segment in np.unique(flight.segments):
                frames = np.flatnonzero(flight.segments == segment)
                first, count = int(frames[0]), len(frames)
                if count < length:
                    self.unused_frames += count
                    continue
                starts = list(range(first, first + count - length + 1, shift))
                if starts[-1] != first + count - length:
                    starts.append(first + count - length)
                self.windows += [(index, s) for s in starts]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        index, start = self.windows[item]
        f, end = self.flights[index], start + self.length
        dt = f.dt[start:end].copy()
        dt[0] = 0.0  # the window starts from a fresh state, as a flight does
        return {"images": torch.from_numpy(f.images[start:end]), "imu": torch.from_numpy(f.imu[start:end]),
                "dt": torch.from_numpy(dt).unsqueeze(-1), "commands": torch.from_numpy(f.commands[start:end])}


@dataclass
class AugmentConfig:
    """Per-sequence photometric augmentation (the paper's ranges) and IMU errors (off by default)."""

    brightness: float = 0.4  # added, in [0, 1] image units, uniform +-
    contrast: float = 0.4  # multiplier 1 +- this
    saturation: float = 0.4  # multiplier 1 +- this
    noise: float = 0.05  # Gaussian pixel noise std, [0, 1] units
    colour: float = 0.0  # per-channel multiplier 1 +- this: a colour cast (light, white balance)
    # IMU errors per sequence and axis: white noise with a std drawn uniformly up to the *_noise
    # value, plus a constant bias drawn uniformly within +- the *_bias value.
    gyro_noise: float = 0.0  # rad/s
    gyro_bias: float = 0.0  # rad/s
    accel_noise: float = 0.0  # m/s^2
    accel_bias: float = 0.0  # m/s^2


def augment(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Augment uint8 sequences (B, T, H, W, 3); returns float images in 0..255."""
    x = images.float() / 255.0
    batch = x.shape[0]

    def factor(spread: float) -> torch.Tensor:
        return (1 + spread * (2 * torch.rand(batch, generator=generator) - 1)).view(batch, 1, 1, 1, 1)

    grey = x.mean(-1, keepdim=True)
    x = grey + (x - grey) * factor(config.saturation)
    x = (x - 0.5) * factor(config.contrast) + 0.5
    x = x + config.brightness * (2 * torch.rand(batch, generator=generator) - 1).view(batch, 1, 1, 1, 1)
    if config.colour > 0:  # drawn only when asked, so configs without it train exactly as before
        x = x * (1 + config.colour * (2 * torch.rand(batch, 1, 1, 1, 3, generator=generator) - 1))
    if config.noise > 0:
        x = x + config.noise * torch.randn(x.shape, generator=generator)
    return x.clamp(0.0, 1.0) * 255.0


def augment_imu(imu: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Add per-sequence sensor errors to (B, T, 6) [gyro, accel] samples in SI units.

    With every IMU error at zero it returns ``imu`` and draws nothing, so configurations
    without IMU augmentation train exactly as before it existed.
    """
    noise = torch.tensor([config.gyro_noise] * 3 + [config.accel_noise] * 3)
    bias = torch.tensor([config.gyro_bias] * 3 + [config.accel_bias] * 3)
    if not (noise.any() or bias.any()):
        return imu
    batch = imu.shape[0]
    std = noise * torch.rand(batch, 1, 6, generator=generator)
    offset = bias * (2 * torch.rand(batch, 1, 6, generator=generator) - 1)
    return imu + offset + std * torch.randn(imu.shape, generator=generator)
