"""Shared test settings: one thread and fixed seeds, so every run computes the same numbers; the ROS fixture.

The onboard tests (``test/onboard``) also run in an environment without PyTorch.
"""
import numpy as np
import pytest

try:
    import torch
except ImportError:  # the onboard install: flight needs no PyTorch
    torch = None


@pytest.fixture(autouse=True)
def _seeded() -> None:
    if torch is not None:
        torch.set_num_threads(1)
        torch.manual_seed(0)
    np.random.seed(0)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item):
    """Mark a test whose call failed (``item.call_failed``), for fixtures that clean up after a failure."""
    report = yield
    if report.when == "call":
        item.call_failed = report.failed
    return report


@pytest.fixture(scope="module")
def ros():
    """rclpy on an isolated domain, nodes spinning in the background (test_ros_support.Ros): one per test module."""
    from test_ros_support import Ros  # here: the onboard tests run without rclpy
    with Ros() as r:
        yield r
