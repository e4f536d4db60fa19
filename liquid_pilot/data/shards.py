"""Decoded flights on disk as memory-mapped shards, read window by window: data larger than memory.

One entry per flight: ``STEM.images.npy`` (the uint8 frames, opened with ``mmap_mode='r'``: nothing
is read until used) and ``STEM.npz`` (commands, IMU, elapsed time, segments and the report: small,
held in memory). The ``.npz`` is written last, so an entry without it is never read.

Training reads each window with ``read_frames``: a ``pread`` into a fresh array, so the pages it
touches stay in the kernel's page cache, which the kernel reclaims as it needs, rather than in the
process's resident memory, as reading through the mapping would leave them.

A full disk while writing an entry is ``CacheFullError``: one line naming the folder and the fix.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liquid_pilot.data.reader import Flight

IMAGES, ARRAYS = ".images.npy", ".npz"


class CacheFullError(OSError):
    """No room on the disk for the decoded frames; the message names the folder and the fix."""


def gigabytes(size: float) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"


def _full(folder: Path, needed: int) -> CacheFullError:
    free = shutil.disk_usage(folder).free if folder.exists() else 0
    return CacheFullError(f"{folder}: no space left for the decoded-frame cache ({gigabytes(needed)} to write, "
                          f"{gigabytes(free)} free): free some space there, or put the cache on a larger disk "
                          f"with --cache-dir DIR (or XDG_CACHE_HOME)")


def write_entry(stem: Path, flight: Flight) -> None:
    """Write a flight as ``stem.images.npy`` and ``stem.npz``, each atomically (per-process temporary files)."""
    folder = stem.parent
    folder.mkdir(parents=True, exist_ok=True)
    needed = flight.images.nbytes + flight.commands.nbytes + flight.imu.nbytes + flight.dt.nbytes
    if shutil.disk_usage(folder).free < needed:
        raise _full(folder, needed)
    meta = {"bag": flight.bag, "metadata": flight.metadata, "report": flight.report,
            "camera_fov_deg": flight.camera_fov_deg}
    images, arrays = Path(f"{stem}{IMAGES}"), Path(f"{stem}{ARRAYS}")
    tmp_images = images.with_name(f".{images.name}.{os.getpid()}.tmp.npy")
    tmp_arrays = arrays.with_name(f".{arrays.name}.{os.getpid()}.tmp.npz")
    try:
        np.save(tmp_images, flight.images, allow_pickle=False)
        tmp_images.replace(images)
        np.savez(tmp_arrays, commands=flight.commands, imu=flight.imu, dt=flight.dt, segments=flight.segments,
                 meta=json.dumps(meta))
        tmp_arrays.replace(arrays)
    except OSError as exc:
        tmp_images.unlink(missing_ok=True)
        tmp_arrays.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _full(folder, needed) from None
        raise


def read_entry(stem: Path, bag: str | None = None) -> Flight:
    """Open an entry: frames memory-mapped, the rest in memory.

    Raises OSError, ValueError or KeyError for a missing or damaged entry (callers rebuild it).
    """
    with np.load(Path(f"{stem}{ARRAYS}"), allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        fov = meta["camera_fov_deg"]  # absent from older entries: they are rebuilt
        arrays = {k: z[k] for k in ("commands", "imu", "dt", "segments")}
    images = np.load(Path(f"{stem}{IMAGES}"), mmap_mode="r", allow_pickle=False)
    if images.ndim != 4 or images.dtype != np.uint8 or any(len(a) != len(images) for a in arrays.values()):
        raise ValueError(f"{stem}: frames and labels disagree")
    return Flight(bag=bag if bag is not None else meta.get("bag", str(stem)), images=images, **arrays,
                  camera_fov_deg=None if fov is None else tuple(fov), metadata=meta["metadata"],
                  report=meta["report"])


def remove_entry(stem: Path) -> None:
    for suffix in (IMAGES, ARRAYS):
        Path(f"{stem}{suffix}").unlink(missing_ok=True)


def entry_bytes(stem: Path) -> int:
    return sum(Path(f"{stem}{s}").stat().st_size for s in (IMAGES, ARRAYS) if Path(f"{stem}{s}").is_file())


def _file_offset(images: np.ndarray) -> tuple[str, int] | None:
    """(file, byte offset of ``images[0]``) when ``images`` is a C-ordered view of a file's memmap, else None."""
    root = images
    while isinstance(root.base, np.ndarray):
        root = root.base
    if not isinstance(root, np.memmap) or root.filename is None or not images.flags.c_contiguous:
        return None
    return root.filename, int(root.offset) + int(images.ctypes.data - root.ctypes.data)


def read_frames(images: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Frames ``start:stop`` as a fresh array; from a memmap by ``pread``, leaving the resident memory as it was."""
    where = _file_offset(images)
    if where is None:
        return np.array(images[start:stop])
    name, offset = where
    out = np.empty((stop - start, *images.shape[1:]), images.dtype)
    frame = out[0].nbytes if len(out) else 0
    fd = os.open(name, os.O_RDONLY)
    try:
        view, position = memoryview(out).cast("B"), offset + start * frame
        done = 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], position + done)
            if got <= 0:
                raise OSError(errno.EIO, f"{name}: shorter than its header says (a damaged cache entry?)")
            done += got
    finally:
        os.close(fd)
    return out


def gather_frames(images: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Frames at ``indices`` (sorted), read as ``read_frames`` does."""
    if _file_offset(images) is None:
        return np.asarray(images[indices])
    return np.concatenate([read_frames(images, int(i), int(i) + 1) for i in indices]) if len(indices) else \
        np.empty((0, *images.shape[1:]), images.dtype)


@dataclass(frozen=True)
class MappedFrames:
    """A memmap's frames by reference (file, offset, shape), for sending a dataset to worker processes."""

    filename: str
    offset: int
    shape: tuple[int, ...]
    dtype: str

    def open(self) -> np.ndarray:
        return np.memmap(self.filename, np.dtype(self.dtype), mode="r", offset=self.offset, shape=self.shape)


def by_reference(flight: Flight) -> Flight:
    """Return the flight with memory-mapped frames replaced by a reference: it pickles in bytes, not gigabytes."""
    where = _file_offset(flight.images)
    if where is None:
        return flight
    return dataclasses.replace(flight, images=MappedFrames(where[0], where[1], tuple(flight.images.shape),
                                                           flight.images.dtype.str))


def from_reference(flight: Flight) -> Flight:
    return dataclasses.replace(flight, images=flight.images.open()) if isinstance(flight.images, MappedFrames) \
        else flight


def write_synthetic(folder: Path, flights: int, frames: int, size: tuple[int, int] = (64, 64), seed: int = 0,
                    chunk: int = 20_000) -> list[Path]:
    """Write ``flights`` synthetic flights of ``frames`` frames each as entries in ``folder``; returns their stems.

    For benchmarks and tests of data larger than memory: frames drawn from a bank of 256 random
    pictures, each command a fixed function of its picture's mean colour (so there is something to
    learn), IMU a function of it too, 30 Hz, one segment. Written in chunks of ``chunk`` frames.
    """
    rng = np.random.default_rng(seed)
    height, width = size
    coarse = rng.integers(0, 256, (256, 8, 8, 3), dtype=np.uint8)
    bank = np.repeat(np.repeat(coarse, -(-height // 8), 1), -(-width // 8), 2)[:, :height, :width]
    colour = bank.reshape(256, -1, 3).mean(1) / 255.0 - 0.5
    bank_commands = np.stack([2 * colour[:, 0], 2 * colour[:, 1], colour[:, 2], colour[:, 0] - colour[:, 2]],
                             1).astype(np.float32)
    bank_imu = np.concatenate([bank_commands[:, :3] * 0.1, bank_commands[:, :3] + [0, 0, 9.81]], 1).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    stems = []
    for k in range(flights):
        stem = folder / f"synthetic_{k:05d}"
        order = (np.arange(frames) * 7 + k * 13 + rng.integers(0, 3, frames)) % 256
        header = {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": (frames, height, width, 3)}
        try:
            with open(f"{stem}{IMAGES}", "wb") as f:
                np.lib.format.write_array_header_1_0(f, header)
                for start in range(0, frames, chunk):
                    f.write(bank[order[start:start + chunk]].tobytes())
        except OSError as exc:
            remove_entry(stem)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _full(folder, frames * height * width * 3) from None
            raise
        dt = np.full(frames, 1 / 30, np.float32)
        dt[0] = 0.0
        meta = {"bag": str(stem), "metadata": {"synthetic": "1"}, "report": {}, "camera_fov_deg": None}
        np.savez(Path(f"{stem}{ARRAYS}"), commands=bank_commands[order], imu=bank_imu[order], dt=dt,
                 segments=np.zeros(frames, np.int64), meta=json.dumps(meta))
        stems.append(stem)
    return stems
