"""Run nodes in one process: the node executables and the in-process launcher share this."""
from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Sequence

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


def run(factories: Sequence[Callable[[], Node]], args: list[str] | None = None) -> int:
    """Create the nodes and spin them until Ctrl-C, SIGTERM or the end, then shut down cleanly.

    ``args`` is a command line with ROS arguments (``--ros-args ...``; None: ``sys.argv``). A node
    with a ``finished`` event (the player) ends the run when it is set. A parameter file or ROS
    argument that rcl refuses, or a node that refuses its configuration (ValueError, OSError),
    gives a one-line error and exit code 2.
    """
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
