"""Shared by the ROS 2 tests (no tests here): an isolated DDS domain, rclpy, a spinning executor.

Every test process talks on its own domain (from its process id) and on localhost only,
so concurrent runs and other machines never cross-talk. Waits poll a condition with a
deadline; nothing sleeps a fixed time hoping that discovery has finished.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from liquid_pilot.ros.spin import Background

TIMEOUT = 10.0  # s: discovery, services and messages all arrive well within this


def isolate() -> dict[str, str]:
    """Set (and return) this process's ROS domain; subprocesses inherit it."""
    os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return dict(os.environ)


def wait_for(condition: Callable[[], object], timeout: float = TIMEOUT) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass; return whether it became true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class Ros:
    """rclpy initialised on an isolated domain, with nodes spinning in a background executor."""

    def __enter__(self) -> Ros:
        isolate()
        rclpy.init()
        # One thread: rclpy's multi-threaded executor was seen spinning hot (a core at 100%, the test thread
        # starved of the GIL); the nodes under test run their own threads where they need them.
        self.background = Background(SingleThreadedExecutor())
        self.executor = self.background.executor
        self.nodes: list[Node] = []
        return self

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def node(self, name: str, namespace: str = "") -> Node:
        """A plain node for the test's own publishers, subscriptions and clients."""
        return self.add(rclpy.create_node(name, namespace=namespace))

    def remove(self, node: Node) -> None:
        self.nodes.remove(node)
        self.background.remove(node)

    def __exit__(self, *exc: object) -> None:
        self.background.stop()
        for node in reversed(self.nodes):
            node.destroy_node()
        rclpy.shutdown()


def call(node: Node, srv_type: type, name: str, request: object) -> object:
    """Call a service once it is available and return its response (the executor spins in the background)."""
    client = node.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=TIMEOUT), f"service {name} did not appear"
    future = client.call_async(request)
    assert wait_for(future.done), f"service {name} did not answer"
    node.destroy_client(client)
    return future.result()
