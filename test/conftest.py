"""Shared test settings: one thread and fixed seeds, so every run computes the same numbers."""
import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
