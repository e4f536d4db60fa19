"""Training processes as Ray Train workers: ``liquid-pilot train --ray ADDRESS --processes N``.

Ray Train (``ray.train.torch.TorchTrainer``) starts N workers on the cluster, one GPU each when
the pilot trains on CUDA, joins them in one torch process group (gloo on CPUs, nccl on GPUs) and
sets torchrun's environment in each (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE). Each worker
then runs the very function a torchrun process runs; ``distributed.start`` finds the group set
up and uses it. The global batch, the learning-rate schedule, rank 0 alone writing and
``--resume`` are that function's, so they are as under torchrun.

Ray is imported here only, and this module only when ``--ray`` is given. Its own imports are
light (torch on use): every Ray process of the run imports it for ``quiet``.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from liquid_pilot.train.trainer import TrainConfig

INSTALL = "pip install 'liquid_pilot[ray]' (it brings ray[train])"
PRINT_PATCH = "RAY_TRAIN_ENABLE_PRINT_PATCH"


def check(processes: int) -> None:
    """Raise ValueError (one line) where a Ray launch of ``processes`` workers cannot start from here."""
    from liquid_pilot.train.distributed import ENVIRONMENT

    if processes < 1:
        raise ValueError(f"--processes {processes}: a run needs 1 or more training processes")
    given = [name for name in ENVIRONMENT + ("TORCHELASTIC_RUN_ID",) if name in os.environ]
    if given:
        raise ValueError(f"--ray starts the training processes itself, but this is one of torchrun's ({given[0]} is "
                         "set): run `liquid-pilot train --ray ...` once, without torchrun")
    try:
        import ray.train.torch  # noqa: F401
        from ray.train.v2._internal.constants import is_v2_enabled
    except ImportError as exc:
        missing = exc.name or getattr(exc.__cause__, "name", None) or "ray.train"
        raise ValueError(f"--ray needs Ray Train, which this install leaves out (no module {missing}): "
                         f"{INSTALL}") from None
    if not is_v2_enabled():
        raise ValueError("--ray runs on Ray Train V2: unset RAY_TRAIN_V2_ENABLED (it is 0 here)")


def connect(address: str, processes: int = 1) -> bool:
    """Join the Ray cluster at ``address`` ('auto', 'local' or an address) unless Ray is up already.

    'local' starts a Ray instance on this machine, without the dashboard, with a CPU for each of
    the ``processes`` (its workers need nothing else; as many as asked, whatever the cores, as
    torchrun starts them). Returns whether it connected.
    """
    import ray

    if ray.is_initialized():
        return False
    local = {"num_cpus": processes, "include_dashboard": False} if address == "local" else {}
    ray.init(address=address, runtime_env={"worker_process_setup_hook": f"{__name__}.quiet"}, **local)
    return True


def quiet() -> None:
    """Keep Ray Train's placement-group cleaner to its errors (run in each Ray process of the run).

    Without Ray's dashboard (not in ray[train]) the cleaner cannot ask after the run's controller,
    and would warn every few seconds of the run that it cannot.
    """
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)


def cluster_gpus() -> int:
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


def _worker(config: dict[str, Any]) -> Any:
    """One Ray Train worker: the process group and torchrun's environment are set up; run the function."""
    return config["fn"](*config["args"])


def run(fn: Callable[..., Any], args: tuple, processes: int, use_gpu: bool) -> Any:
    """Run ``fn(*args)`` in ``processes`` Ray Train workers (Ray connected); returns rank 0's return value.

    ``fn`` must be importable by name. A ValueError or OSError of a worker (the lowest rank's) is
    raised here as it was raised there; Ctrl-C raises KeyboardInterrupt here (the workers end when
    Ray disconnects).
    """
    from ray.train import RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchTrainer

    storage = tempfile.mkdtemp(prefix="liquid_pilot_ray.")  # Ray Train's run folder: nothing of ours is kept there
    trainer = TorchTrainer(_worker, train_loop_config={"fn": fn, "args": args},
                           scaling_config=ScalingConfig(num_workers=processes, use_gpu=use_gpu),
                           run_config=RunConfig(name="liquid_pilot_train", storage_path=storage))
    # Ray Train passes this on to the workers: a print goes to stderr alone, not to Ray's logger as well.
    patch, os.environ[PRINT_PATCH] = os.environ.get(PRINT_PATCH), "0"
    # fit() runs in a thread of its own, where it leaves SIGINT alone: Ctrl-C interrupts this thread, as
    # it interrupts a torchrun run, and the workers end with the Ray job (or with the local Ray instance).
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=_fit, args=(trainer, outcome), name="ray-train-fit", daemon=True)
    try:
        thread.start()
        thread.join()
    finally:
        if patch is None:
            del os.environ[PRINT_PATCH]
        else:
            os.environ[PRINT_PATCH] = patch
        shutil.rmtree(storage, ignore_errors=True)
    if "error" in outcome:
        error = outcome["error"]
        raise (_cause(error) if isinstance(error, TrainingFailedError) else error) from None
    return getattr(outcome["result"], "return_value", None)


def _fit(trainer: Any, outcome: dict[str, Any]) -> None:
    try:
        outcome["result"] = trainer.fit()
    except BaseException as error:  # noqa: B036 (handed to the caller's thread)
        outcome["error"] = error


def _cause(failed: Exception) -> Exception:
    """Return the worker's own ValueError or OSError (lowest rank first) behind Ray Train's error, else Ray's."""
    failures = getattr(failed, "worker_failures", None) or {}
    for rank in sorted(failures):
        error = getattr(failures[rank], "_base_exc", failures[rank])  # the worker's exception, as it raised it
        if isinstance(error, (ValueError, OSError)):
            return error
    cause = getattr(failed, "controller_failure", None)
    if cause is not None and type(cause).__name__ == "InsufficientClusterResourcesError":
        return ValueError(" ".join(str(cause).split("\n")[:2]))
    return failed


def train(fn: Callable[[argparse.Namespace], Any], args: argparse.Namespace, config: TrainConfig) -> Any:
    """``liquid-pilot train --ray``: run ``fn(args)`` in ``args.processes`` Ray Train workers.

    ``config`` is the run's training config: a global batch that does not split over the processes
    is refused here, before Ray starts; device cuda (or auto on a cluster with GPUs) gives each
    worker a GPU, auto without GPUs trains on CPUs. Paths become absolute, as a Ray worker runs in
    a folder of Ray's. Returns rank 0's return value.
    """
    from liquid_pilot.train.distributed import Runtime
    from liquid_pilot.train.trainer import check_batch

    check(args.processes)
    check_batch(config, Runtime(world_size=args.processes))
    connected = connect(args.ray, args.processes)
    try:
        device = config.device
        use_gpu = device == "cuda" or (device == "auto" and cluster_gpus() > 0)
        worker_args = argparse.Namespace(**vars(args))
        worker_args.device = "cuda" if use_gpu else "cpu" if device == "auto" else device
        worker_args.config = None if args.config is None else os.path.abspath(args.config)
        worker_args.data = [os.path.abspath(path) for path in args.data]
        worker_args.out = os.path.abspath(args.out)
        worker_args.cache_dir = None if args.cache_dir is None else Path(args.cache_dir).absolute()
        return run(fn, (worker_args,), args.processes, use_gpu)
    finally:
        if connected:
            import ray

            ray.shutdown()
