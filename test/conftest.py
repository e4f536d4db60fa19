"""Shared test settings: one thread and fixed seeds, so every run computes the same numbers.

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
