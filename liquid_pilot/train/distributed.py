"""Where training runs: the device, its precision, and the processes of a ``torchrun`` launch.

One process needs nothing set up. Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` in
the environment) the processes join one group, gloo on CPUs and nccl on GPUs, each GPU process
on the GPU of its local rank. A launcher that sets up the group itself and sets the same
environment (Ray Train, ``train.ray_launch``) is taken as it is: the group is used, not joined
again, and left to the launcher at the end. Data parallel: every process holds the whole pilot;
each global batch is split into contiguous shares, one per process, and after the backward pass the
gradients (and the batch's loss) are summed over the processes in one flat all-reduce. Each
window's loss is divided by the global batch's size, so the sum is the gradient of the global
batch's mean loss: the same step as one process taking the whole batch, for any number of
processes, the short last batch included. (The pilot has 18k parameters: one message per step,
where ``DistributedDataParallel``'s bucketing would buy nothing.)
"""
from __future__ import annotations

import gc
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.distributed as dist

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@dataclass(frozen=True)
class Runtime:
    """This process's place in the run and what it computes on."""

    device: torch.device = torch.device("cpu")
    dtype: torch.dtype | None = None  # autocast to this (None: full float32)
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    owns_group: bool = False  # this process joined the group (torchrun), so ``stop`` leaves it

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str | None:
        return None if self.world_size == 1 else "nccl" if self.device.type == "cuda" else "gloo"

    def describe(self, threads: int) -> str:
        precision = {None: "float32", torch.bfloat16: "bfloat16 autocast",
                     torch.float16: "float16 autocast with gradient scaling"}[self.dtype]
        where = self.device.type + (f", {threads} thread{'s' * (threads > 1)}" if self.device.type == "cpu" else "")
        if self.world_size == 1:
            return f"device {where}, {precision}, one process"
        return (f"device {where} per process, {precision}, {self.world_size} processes ({self.backend}; "
                f"{self.local_world_size} on this machine)")


def launch() -> tuple[int, int, int, int]:
    """(rank, world size, local rank, local world size) from torchrun's environment; (0, 1, 0, 1) without."""
    values = []
    for name, default in zip(ENVIRONMENT, ("0", "1", "0", None)):
        text = os.environ.get(name, default if name != "LOCAL_WORLD_SIZE" else os.environ.get("WORLD_SIZE", "1"))
        try:
            values.append(int(text))
        except ValueError:
            raise ValueError(f"environment variable {name}={text!r} is not a number: start the run with torchrun, "
                             "which sets it") from None
    rank, world, local_rank, local_world = values
    if not (0 <= rank < world and 0 <= local_rank < local_world <= world):
        raise ValueError(f"RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local_rank}, LOCAL_WORLD_SIZE={local_world} "
                         "do not fit together: start the run with torchrun, which sets them")
    return rank, world, local_rank, local_world


def check_choices(device: str, precision: str) -> None:
    """Raise ValueError naming a device or precision that is not one of the choices, and where to choose."""
    if device not in DEVICES:
        raise ValueError(f"device {device!r} is not one of {', '.join(DEVICES)}: choose one with --device (or device: "
                         "in the training config); auto takes cuda, else mps, else cpu")
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}: choose one with "
                         "--precision (or precision: in the training config)")


def resolve_device(name: str, local_rank: int = 0, local_world_size: int = 1) -> torch.device:
    """Return the device ``name`` asks for (auto: cuda, else mps, else cpu), or raise ValueError saying why not."""
    check_choices(name, "auto")
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    if name == "cuda":
        if not cuda:
            why = (f"this torch {torch.__version__} is built without CUDA" if torch.version.cuda is None
                   else "the driver or CUDA_VISIBLE_DEVICES shows no GPU")
            raise ValueError(f"device cuda: no CUDA GPU here ({why}); use --device cpu, or --device auto to take "
                             "what there is")
        count = torch.cuda.device_count()
        if local_world_size > count:
            raise ValueError(f"device cuda: {local_world_size} processes on this machine but {count} GPU"
                             f"{'s' * (count > 1)}: start one process per GPU (torchrun --nproc_per_node {count})")
        return torch.device("cuda", local_rank)
    if name == "mps":
        if not mps:
            raise ValueError("device mps: no Apple GPU here (torch.backends.mps is not available); use --device cpu, "
                             "or --device auto to take what there is")
        if local_world_size > 1:
            raise ValueError("device mps: one Apple GPU takes one process; run without torchrun, or --device cpu")
    return torch.device(name)


def autocast_dtype(device: torch.device, precision: str, bf16_supported: bool | None = None) -> torch.dtype | None:
    """Return the autocast type for ``precision`` on ``device`` (None: float32).

    auto is bf16 on a CUDA GPU that has it, else fp16 (with gradient scaling), fp16 on mps, and
    None on the CPU.
    """
    check_choices("auto", precision)
    if precision != "auto":
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported() if bf16_supported is None else bf16_supported
        return torch.bfloat16 if supported else torch.float16
    return torch.float16 if device.type == "mps" else None


def start(device: str, precision: str) -> Runtime:
    """Return this process's runtime; under torchrun, join the process group (``stop`` leaves it).

    A group that is there already (set up by Ray Train) is used as it is, and must agree with the
    environment's rank and world size.
    """
    rank, world, local_rank, local_world = launch()
    where = resolve_device(device, local_rank, local_world)
    runtime = Runtime(where, autocast_dtype(where, precision), rank, world, local_rank, local_world)
    if world == 1:
        return runtime
    if not dist.is_available():
        raise ValueError(f"this torch {torch.__version__} has no torch.distributed: run one process")
    if where.type == "cuda":
        torch.cuda.set_device(where)
    if dist.is_initialized():
        if (dist.get_rank(), dist.get_world_size()) != (rank, world):
            raise ValueError(f"the process group set up before training has rank {dist.get_rank()} of "
                             f"{dist.get_world_size()}, the environment says RANK={rank}, WORLD_SIZE={world}")
        return runtime
    dist.init_process_group(runtime.backend)
    return replace(runtime, owns_group=True)


def stop(runtime: Runtime) -> None:
    """Leave the process group if ``start`` joined it (a launcher's own group is the launcher's to end).

    Whatever still holds the group's work (the last collectives' tensors, in reference cycles) is
    collected here, while the interpreter is alive: Gloo work torn down during the interpreter's
    finalisation can abort a process that trained to the end ("terminate called without an active
    exception", SIGABRT; pytorch/pytorch#179291 describes it for groups never destroyed), which torchrun
    reports as a failed run. Seen once, under CI's load, on rank 1 of a resumed run; not reproduced since.
    """
    if runtime.owns_group and dist.is_initialized():
        dist.destroy_process_group()
        gc.collect()


def threads_per_process(threads: int, runtime: Runtime) -> int:
    """``threads``, or fewer where the processes on this machine would ask for more than its cores."""
    return max(1, min(threads, (os.cpu_count() or 1) // runtime.local_world_size))


def share(count: int, runtime: Runtime) -> tuple[int, int]:
    """Return this process's contiguous share [start, stop) of ``count`` items (sizes differ by one at most)."""
    return count * runtime.rank // runtime.world_size, count * (runtime.rank + 1) // runtime.world_size


def epoch_batches(windows: int, batch_size: int, generator: torch.Generator, limit: int = 0) -> list[torch.Tensor]:
    """Return one epoch's global batches of window indices, shuffled by ``generator``.

    Every process draws the same; ``limit`` > 0 takes only that many windows.
    """
    order = torch.randperm(windows, generator=generator)
    return list((order[:limit] if limit else order).split(batch_size))


def sum_gradients(parameters: list[torch.nn.Parameter], loss: torch.Tensor, runtime: Runtime) -> float:
    """Sum the parameters' gradients and ``loss`` over the processes; returns the summed loss."""
    if runtime.world_size == 1:
        return float(loss.detach())
    grads = [p.grad for p in parameters if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads] + [loss.detach().reshape(1).to(grads[0].dtype)])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
    return float(flat[-1])


def sum_(values: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """``values`` summed over the processes (in place)."""
    if runtime.world_size > 1:
        dist.all_reduce(values)
    return values


def from_main(obj: Any, runtime: Runtime) -> Any:
    """Rank 0's ``obj``, in every process."""
    if runtime.world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any, runtime: Runtime) -> list[Any]:
    """Every process's ``obj``, by rank, in every process."""
    if runtime.world_size == 1:
        return [obj]
    out: list[Any] = [None] * runtime.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(runtime: Runtime) -> None:
    if runtime.world_size > 1:
        dist.barrier()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(local_rank: int, fn: Callable[..., Any], world: int, port: int, args: tuple) -> None:
    os.environ.update(RANK=str(local_rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local_rank),
                      LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    fn(*args)


def spawn(fn: Callable[..., Any], world_size: int, *args: Any) -> None:
    """Run ``fn(*args)`` in ``world_size`` local processes with torchrun's environment (tests, benchmarks).

    ``fn`` must be importable by name.
    """
    torch.multiprocessing.spawn(_spawned, (fn, world_size, free_port(), args), nprocs=world_size)
