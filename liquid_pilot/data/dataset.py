"""Training sequences from decoded flights: windows with real elapsed time, a cache, augmentation.

Decoded frames are cached on disk per bag, as memory-mapped shards (``data.shards``): a flight's
frames are opened, not loaded, and training reads them window by window, so data far larger than
memory trains in a flat resident memory. The cache key covers the bag's files (names, sizes,
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

from liquid_pilot.data import shards
from liquid_pilot.data.reader import BagError, Flight, TopicConfig, read_flight
from liquid_pilot.data.storage import bag_files, find_bags
from liquid_pilot.flight.image import PREPROCESSING
from liquid_pilot.settings import NON_NEGATIVE, Range, check_fields, setting

# Bumped whenever a cache entry's contents change meaning: 2 = frames fitted by flight.image.fit
# (not squashed) and the camera's field of view stored with them; 3 = streams never sorted across
# a clock step, commands and IMU in FLU, the topics chosen and the time source in the report; 4 = frames
# in their own .npy, memory-mapped (entries of earlier versions are never read again, and may be deleted).
CACHE_VERSION = 4
NORMALISATION_FRAMES = 16_384  # the image statistics read every 4th frame, or fewer, up to this many


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "liquid_pilot" / "frames"


def _fingerprint(bag: Path, topics: TopicConfig, size: tuple[int, int] | None) -> str:
    files = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in bag_files(bag)]
    text = json.dumps([CACHE_VERSION, PREPROCESSING, str(bag.resolve()), files, dataclasses.asdict(topics), size])
    return hashlib.sha256(text.encode()).hexdigest()


def load_flight(bag: Path, topics: TopicConfig, size: tuple[int, int] | None, cache_dir: Path | None) -> Flight:
    """Decode a bag, or open its decoded frames in the cache (memory-mapped) when the bag has not changed."""
    if cache_dir is None:
        return read_flight(bag, topics, size)
    stem = cache_dir / _fingerprint(bag, topics, size)
    if Path(f"{stem}{shards.ARRAYS}").is_file():
        try:
            return shards.read_entry(stem, str(bag))
        except (OSError, ValueError, KeyError, TypeError):
            shards.remove_entry(stem)  # a damaged cache entry is rebuilt, never trusted
    shards.write_entry(stem, read_flight(bag, topics, size))
    return shards.read_entry(stem, str(bag))  # the decoded frames leave memory: training maps them


def load_flights(paths: list[str | Path], topics: TopicConfig | None = None, size: tuple[int, int] | None = None,
                 cache_dir: Path | None = None, skip_bad: bool = False,
                 on_bad: Callable[[BagError], None] | None = None,
                 on_note: Callable[[str], None] | None = None) -> list[Flight]:
    """Decode every bag; a bad bag raises unless ``skip_bad``, which reports it and goes on.

    What the named folders hold that is not a bag goes to ``on_note``, one line each.
    """
    topics = topics or TopicConfig()
    bags, unread = find_bags(paths)
    for line in unread:
        if on_note is not None:
            on_note(line)
    flights = []
    for bag in bags:
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


def split_flights(flights: list[Flight], val_fraction: float, seed: int,
                  length: int = 1) -> tuple[list[Flight], list[Flight], str]:
    """Training and validation flights, and one line saying how they were split.

    Several flights: split by whole flights, so validation never sees frames of a training flight.
    One flight: its last ``val_fraction`` of frames (at least ``length``) are held out, after a gap
    of ``length`` unused frames; when the flight is too short for that, nothing is held out and
    the line says so.
    """
    if val_fraction <= 0 or not flights:
        return list(flights), [], "no validation (val_fraction is 0): the validation loss is the training loss"
    if len(flights) > 1:
        order = np.random.default_rng(seed).permutation(len(flights))
        n_val = min(max(int(round(len(flights) * val_fraction)), 1), len(flights) - 1)
        return ([flights[i] for i in order[n_val:]], [flights[i] for i in order[:n_val]],
                f"{n_val} of {len(flights)} flights held out for validation")
    flight = flights[0]
    frames = len(flight.images)
    held = max(length, int(round(frames * val_fraction)))
    if frames - held - length < length:
        return [flight], [], (f"no validation: the only flight has {frames} frames, too few to train on {length} "
                              f"and hold out {held} after a gap of {length} (needs {2 * length + held}); the "
                              f"validation loss is the training loss: record another flight, or lower "
                              f"sequence_length")
    seconds = float(flight.dt[frames - held:].sum())
    return ([_stretch(flight, 0, frames - held - length)], [_stretch(flight, frames - held, frames)],
            f"one flight: its last {held} frames ({seconds:.1f} s) held out for validation, after a gap of "
            f"{length} frames that neither uses")


def _stretch(flight: Flight, start: int, end: int) -> Flight:
    """Frames start..end of a flight, as a flight of their own (time restarts at the first)."""
    dt = flight.dt[start:end].copy()
    dt[0] = 0.0
    return dataclasses.replace(flight, images=flight.images[start:end], commands=flight.commands[start:end],
                               imu=flight.imu[start:end], dt=dt, segments=flight.segments[start:end])


def normalisation(flights: list[Flight], images: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel image mean/std in [0, 1] units and per-field IMU mean/std of the flights.

    The image statistics come from every 4th frame, or, past ``NORMALISATION_FRAMES`` of those,
    from that many spread evenly; read without holding the frames. ``images=False`` (a pilot that
    standardises each frame by its own statistics) reads no frame and gives the identity, 0 and 1.
    """
    mean, std = _image_statistics(flights) if images else (np.zeros(3), np.ones(3))
    imu = np.concatenate([f.imu for f in flights]).astype(np.float64)
    return mean, std, imu.mean(0), imu.std(0)


def _image_statistics(flights: list[Flight]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of the flights' frames in [0, 1] units (see ``normalisation``)."""
    total = sum(len(f.images) for f in flights)
    step = max(4, -(-total // NORMALISATION_FRAMES))
    sums, squares, count = np.zeros(3), np.zeros(3), 0
    for flight in flights:
        picked = np.arange(0, len(flight.images), step)
        for chunk in np.array_split(picked, max(1, len(picked) // 1024)):
            pixels = shards.gather_frames(flight.images, chunk).reshape(-1, 3).astype(np.float64) / 255.0
            sums += pixels.sum(0)
            squares += (pixels * pixels).sum(0)
            count += len(pixels)
    mean = sums / count
    return mean, np.sqrt(np.maximum(squares / count - mean * mean, 0.0))


class SequenceDataset(Dataset):
    """Windows of ``length`` frames every ``shift`` frames within each gap-free segment.

    A last window ends at each segment's last frame; segments shorter than ``length`` are not used.
    With ``strides`` beyond 1, windows are also taken of every ``stride``-th frame (a camera that many
    times slower: each step's elapsed time is the sum of the frames it spans, its label the command at
    the frame it keeps), over segments long enough for ``length`` such steps.
    """

    def __init__(self, flights: list[Flight], length: int = 64, shift: int = 16, strides: tuple[int, ...] = (1,)):
        if length < 1 or shift < 1 or not strides or min(strides) < 1:
            raise ValueError(f"sequence length, shift and strides must be positive, got {length}, {shift} and "
                             f"{list(strides)}")
        self.flights, self.length = flights, length
        self.windows: list[tuple[int, int, int]] = []  # (flight, first frame, stride)
        self.unused_frames = 0
        for index, flight in enumerate(flights):
            for segment in np.unique(flight.segments):
                frames = np.flatnonzero(flight.segments == segment)
                first, count = int(frames[0]), len(frames)
                if count < length:
                    self.unused_frames += count
                for stride in sorted(set(strides)):
                    span = (length - 1) * stride + 1
                    if count < span:
                        continue
                    starts = list(range(first, first + count - span + 1, shift * stride))
                    if starts[-1] != first + count - span:
                        starts.append(first + count - span)
                    self.windows += [(index, s, stride) for s in starts]

    def __len__(self) -> int:
        return len(self.windows)

    def frames(self, item: int) -> tuple[Flight, slice, np.ndarray]:
        """Return window ``item``'s flight, the slice of its frames the window keeps, and their elapsed times."""
        index, start, stride = self.windows[item]
        f, end = self.flights[index], start + (self.length - 1) * stride + 1
        dt = f.dt[start:end].copy()
        dt[0] = 0.0  # the window starts from a fresh state, as a flight does
        if stride > 1 and len(dt) > 1:  # each kept frame carries the time since the kept frame before it
            dt = np.concatenate([[0.0], np.add.reduceat(dt[1:], np.arange(0, len(dt) - 1, stride))]).astype(dt.dtype)
        return f, slice(start, end, stride), dt

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        f, keep, dt = self.frames(item)
        images = shards.read_frames(f.images, keep.start, keep.stop)
        if keep.step > 1:
            images = np.ascontiguousarray(images[::keep.step])
        return {"images": torch.from_numpy(images), "imu": torch.from_numpy(np.ascontiguousarray(f.imu[keep])),
                "dt": torch.from_numpy(dt).unsqueeze(-1),
                "commands": torch.from_numpy(np.ascontiguousarray(f.commands[keep]))}

    def __getstate__(self) -> dict:  # to DataLoader workers started by spawn: memory-mapped frames by reference
        return {**self.__dict__, "flights": [shards.by_reference(f) for f in self.flights]}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, flights=[shards.from_reference(f) for f in state["flights"]])


@dataclass
class AugmentConfig:
    """Per-sequence photometric augmentation (the paper's ranges) and IMU errors (off by default).

    Every setting is declared once with its documentation and range (``settings.setting``), checked on
    construction. The IMU errors are drawn per sequence and axis: white noise with a standard deviation drawn
    uniformly up to the ``*_noise`` value, plus a constant bias drawn uniformly within +- the ``*_bias`` value.
    """

    brightness: float = setting(0.4, "added to every pixel, in [0, 1] image units, uniform +-", Range(0.0, 1.0))
    contrast: float = setting(0.4, "contrast multiplier 1 +- this", Range(0.0, 1.0, open_high=True))
    saturation: float = setting(0.4, "saturation multiplier 1 +- this", Range(0.0, 1.0, open_high=True))
    noise: float = setting(0.05, "Gaussian pixel noise standard deviation, [0, 1] image units", Range(0.0, 1.0))
    colour: float = setting(0.0, "per-channel multiplier 1 +- this: a colour cast (light, white balance)",
                            Range(0.0, 1.0, open_high=True))
    gyro_noise: float = setting(0.0, "rad/s: the largest gyro noise standard deviation drawn", NON_NEGATIVE)
    gyro_bias: float = setting(0.0, "rad/s: the largest gyro bias drawn", NON_NEGATIVE)
    accel_noise: float = setting(0.0, "m/s^2: the largest accelerometer noise standard deviation drawn", NON_NEGATIVE)
    accel_bias: float = setting(0.0, "m/s^2: the largest accelerometer bias drawn", NON_NEGATIVE)

    def __post_init__(self) -> None:
        check_fields(self, "augment.")


@dataclass
class AugmentDraw:
    """The random choices for a batch of windows, drawn together; ``part`` gives a slice's share.

    Image noise comes from a seed per window (drawn in the batch's place in the stream), so a
    window is augmented alike whichever process of a distributed run holds it, and no process
    draws the pixel noise of windows it does not hold.
    """

    saturation: torch.Tensor | None = None  # (B,) uniform in [0, 1) each
    contrast: torch.Tensor | None = None
    brightness: torch.Tensor | None = None
    colour: torch.Tensor | None = None  # (B, 3)
    seeds: torch.Tensor | None = None  # (B,) int64: each window's pixel noise
    imu_std: torch.Tensor | None = None  # (B, 6)
    imu_offset: torch.Tensor | None = None  # (B, 6)
    imu_noise: torch.Tensor | None = None  # (B, T, 6) standard normal

    def part(self, start: int, stop: int) -> AugmentDraw:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return AugmentDraw(**{k: None if v is None else v[start:stop] for k, v in values.items()})


def _imu_errors(config: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor([config.gyro_noise] * 3 + [config.accel_noise] * 3),
            torch.tensor([config.gyro_bias] * 3 + [config.accel_bias] * 3))


def draw_augmentation(n: int, steps: int, config: AugmentConfig, generator: torch.Generator, images: bool = True,
                      imu: bool = True) -> AugmentDraw:
    """Draw the augmentation of ``n`` windows of ``steps`` frames.

    Only what ``config`` turns on is drawn, so a recipe without colour or IMU errors draws (and
    trains) as before they existed.
    """
    draw = AugmentDraw()
    if images:
        draw.saturation, draw.contrast, draw.brightness = (torch.rand(n, generator=generator) for _ in range(3))
        if config.colour > 0:
            draw.colour = torch.rand(n, 3, generator=generator)
        if config.noise > 0:
            draw.seeds = torch.randint(0, 2**62, (n,), generator=generator)
    noise, bias = _imu_errors(config)
    if imu and (noise.any() or bias.any()):
        draw.imu_std, draw.imu_offset = torch.rand(n, 6, generator=generator), torch.rand(n, 6, generator=generator)
        draw.imu_noise = torch.randn(n, steps, 6, generator=generator)
    return draw


def apply_augmentation(images: torch.Tensor, imu: torch.Tensor, draw: AugmentDraw,
                       config: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment uint8 sequences (B, T, H, W, 3) and (B, T, 6) IMU samples with a ``draw`` of B windows.

    Runs on the tensors' device; returns float images in 0..255 and the IMU samples.

    Saturation s, contrast c, brightness b and colour k, applied in that order to x in [0, 1],
    make one affine map per window and channel, k c s x + k c (1 - s) grey(x) + k (0.5 - 0.5 c + b),
    computed a window at a time (a few MB, in cache) in three passes instead of a dozen over the
    batch; then the window's noise, and the clamp.
    """
    device, batch = images.device, images.shape[0]
    out = images.float()
    if draw.saturation is not None:
        def spread(u: torch.Tensor | None, size: float) -> torch.Tensor:
            return torch.ones(batch, 1, device=device) if u is None else 1 + size * (2 * u.to(device) - 1)

        s, c = spread(draw.saturation, config.saturation).view(batch, 1), spread(draw.contrast, config.contrast)
        c = c.view(batch, 1)
        k = spread(draw.colour, config.colour).view(batch, -1).expand(batch, 3)
        b = (config.brightness * (2 * draw.brightness.to(device) - 1)).view(batch, 1)
        gain, grey_gain, offset = k * c * s, k * c * (1 - s), 255.0 * k * (0.5 - 0.5 * c + b)
        for i in range(batch):
            window = out[i]
            grey = window.mean(-1, keepdim=True)
            window.mul_(gain[i]).add_(offset[i]).addcmul_(grey, grey_gain[i])
            if draw.seeds is not None:
                noise = torch.Generator(device=device).manual_seed(int(draw.seeds[i]))
                window.add_(torch.randn(window.shape, generator=noise, device=device), alpha=255.0 * config.noise)
            window.clamp_(0.0, 255.0)
    if draw.imu_std is not None:
        noise, bias = (v.to(device) for v in _imu_errors(config))
        std, offset = noise * draw.imu_std.to(device), bias * (2 * draw.imu_offset.to(device) - 1)
        imu = imu + offset.unsqueeze(1) + std.unsqueeze(1) * draw.imu_noise.to(device)
    return out, imu


def augment(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Augment uint8 sequences (B, T, H, W, 3); returns float images in 0..255."""
    draw = draw_augmentation(len(images), images.shape[1], config, generator, imu=False)
    return apply_augmentation(images, torch.zeros(len(images), 1, 6), draw, config)[0]


def augment_imu(imu: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Add per-sequence sensor errors to (B, T, 6) [gyro, accel] samples in SI units.

    With every IMU error at zero it returns ``imu`` and draws nothing, so configurations
    without IMU augmentation train exactly as before it existed.
    """
    draw = draw_augmentation(len(imu), imu.shape[1], config, generator, images=False)
    if draw.imu_std is None:
        return imu
    return apply_augmentation(torch.zeros(len(imu), 1, 1, 1, 3, dtype=torch.uint8), imu, draw, config)[1]
