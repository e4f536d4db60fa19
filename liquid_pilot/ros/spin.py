"""Run nodes in one process: the node executables and the in-process launcher share this."""
from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.signals import SignalHandlerOptions

from liquid_pilot.ros.params import check_parameter_files

RCLError = rclpy_implementation.RCLError  # rcl refusing its arguments (e.g. a parameter file it cannot parse)


def single_thread_executor() -> Executor:
    """Make the executor for one node: rclpy's events executor where this rclpy has it.

    It dispatches each message as it arrives instead of rebuilding a wait set per callback,
    which cut rclpy's share of the latency by about a third (bench/bench_ros.py). A single thread either
    way: rclpy's thread pool costs more than it gains for these short callbacks.
    """
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:  # rclpy before Jazzy
        return SingleThreadedExecutor()
    return EventsExecutor()


class Background:
    """An executor spinning on its own thread until ``stop``: benchmarks and tests spin their nodes this way.

    Stopped by a flag between two ``spin_once`` calls, so shutting it down never races a callback in progress.
    """

    def __init__(self, executor: Executor | None = None):
        self.executor = executor or SingleThreadedExecutor()
        self.errors: list[Exception] = []  # what spin_once raised (the thread carries on)
        self.cycles = 0  # spin_once calls done
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, name="spin", daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception as exc:  # a node destroyed while its entities were being waited on: spin on
                self.errors.append(exc)
            self.cycles += 1

    def remove(self, node: Node, timeout: float = 2.0) -> None:
        """Take a node off the executor, wait until the executor no longer waits on it, then destroy it.

        Destroying it at once races the spinning thread, which may be waiting on the node's subscriptions:
        rclpy then raises InvalidHandle in ``spin_once``.
        """
        self.executor.remove_node(node)
        seen, deadline = self.cycles, time.monotonic() + timeout
        while self.cycles < seen + 2 and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        node.destroy_node()

    def stop(self) -> None:
        """Stop spinning, wait for the thread, shut the executor down."""
        self._stop.set()
        self.thread.join()
        self.executor.shutdown()


@contextmanager
def spinning(executor: Executor | None = None) -> Iterator[Executor]:
    """Spin ``executor`` (a new single-threaded one by default) on a thread for the block's duration."""
    background = Background(executor)
    try:
        yield background.executor
    finally:
        background.stop()


def describe(factory: Callable[[], Node]) -> str:
    """Return a node executable's ``--help``: what it does (its module's summary) and every parameter."""
    module = sys.modules[factory.__module__]
    spec = getattr(module, "__spec__", None)  # run as `python -m liquid_pilot.ros.NODE`, the module is __main__
    name = (spec.name if spec is not None else module.__name__).rsplit(".", 1)[-1]
    summary = (module.__doc__ or "").strip().split("\n\n")[0]
    lines = [f"usage: ros2 run liquid_pilot {name} [--ros-args -p NAME:=VALUE ... | --params-file FILE]", "",
             " ".join(summary.split()), "", "parameters (ros2 param describe shows the same):"]
    for param in getattr(module, "PARAMETERS", ()):
        kind = "list of strings" if isinstance(param.default, list) else type(param.default).__name__
        number = (lambda v: str(int(v))) if isinstance(param.default, int) else (lambda v: f"{v:g}")
        limits = f", in [{number(param.low)}, {number(param.high)}]" if param.low is not None else \
            f", one of {', '.join(param.choices)}" if param.choices else ""
        lines.append(f"  {param.name} ({kind}, default {param.default!r}{limits})")
        lines.append(f"      {param.description}")
    return "\n".join(lines)


def run(factories: Sequence[Callable[[], Node]], args: list[str] | None = None) -> int:
    """Create the nodes and spin them until Ctrl-C, SIGTERM or the end, then shut down cleanly.

    ``args`` is a command line with ROS arguments (``--ros-args ...``; None: ``sys.argv``). ``-h`` or
    ``--help`` before them prints the nodes' parameters and exits 0, starting nothing. A node
    with a ``finished`` event (the player) ends the run when it is set. A parameter file or ROS
    argument that rcl refuses, or a node that refuses its configuration (ValueError, OSError),
    gives a one-line error and exit code 2.
    """
    line = sys.argv[1:] if args is None else list(args)
    own = line[:line.index("--ros-args")] if "--ros-args" in line else line
    if "-h" in own or "--help" in own:
        print("\n\n".join(describe(factory) for factory in factories))
        return 0
    try:  # a bad parameter file or ROS argument: one line and exit code 2, like a bad parameter value
        check_parameter_files(sys.argv if args is None else args)
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except (ValueError, RCLError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    # Our own signal handling: rclpy's would shut the context down before the nodes are
    # destroyed, and they still publish and log while closing (the recorder its bag). A
    # flag, not an exception, so no callback is cut off halfway; SIGINT is caught even where
    # the parent ignores it (a background job of a script).
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    nodes: list[Node] = []
    executor: Executor | None = None
    try:
        try:
            for factory in factories:
                nodes.append(factory())
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        executor = single_thread_executor()  # the nodes run their own threads (multi-threaded: seen spinning hot)
        for node in nodes:
            executor.add_node(node)
        finished = [node.finished for node in nodes if hasattr(node, "finished")]
        while rclpy.ok() and not stop.is_set() and not any(event.is_set() for event in finished):
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass  # the context was shut down elsewhere: clean up all the same
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if executor is not None:
            executor.shutdown()
        for node in reversed(nodes):
            node.destroy_node()  # the recorder closes its bag here
        rclpy.try_shutdown()
    return 0
