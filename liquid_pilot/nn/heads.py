"""Recurrent heads behind one interface, so every pilot shares the same CNN and loop.

A head maps sensory features to normalised commands. ``step(x, state, dt)`` takes
(B, F), (B, state_size), (B, 1); ``sequence(x, dt, state)`` takes (B, T, F), (B, T, 1).
Discrete-time baselines ignore dt, as in the paper's comparison.
"""
from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from liquid_pilot.nn.cells import LTC, DenseCfC, WiredCfC
from liquid_pilot.nn.wiring import auto_ncp


class Head(Protocol):
    """A recurrent (or feed-forward) head from features to commands, with its state as one flat tensor."""

    state_size: int

    def step(self, x: Tensor, state: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]: ...

    def sequence(self, x: Tensor, dt: Tensor, state: Tensor) -> tuple[Tensor, Tensor]: ...


class GatedRNNHead(nn.Module):
    """LSTM or GRU with a linear read-out; an LSTM's state is [h, c] side by side."""

    def __init__(self, kind: str, inputs: int, units: int, outputs: int):
        super().__init__()
        self.rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(inputs, units, batch_first=True)
        self.is_lstm = kind == "lstm"
        self.units = units
        self.state_size = 2 * units if self.is_lstm else units
        self.readout = nn.Linear(units, outputs)

    def sequence(self, x: Tensor, dt: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        if self.is_lstm:
            h, c = state.unsqueeze(0).split(self.units, 2)
            y, (h, c) = self.rnn(x, (h.contiguous(), c.contiguous()))
            return self.readout(y), torch.cat([h[0], c[0]], 1)
        y, h = self.rnn(x, state.unsqueeze(0))
        return self.readout(y), h[0]

    def step(self, x: Tensor, state: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        y, state = self.sequence(x.unsqueeze(1), dt.unsqueeze(1), state)
        return y[:, 0], state


class FeedForwardHead(nn.Module):
    """A memoryless two-layer perceptron: the baseline that cannot integrate over time."""

    state_size = 0

    def __init__(self, inputs: int, units: int, outputs: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(inputs, units), nn.Tanh(), nn.Linear(units, outputs))

    def step(self, x: Tensor, state: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        return self.net(x), state

    def sequence(self, x: Tensor, dt: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return self.net(x), state


HEADS = ("cfc_ncp", "ltc_ncp", "cfc", "lstm", "gru", "ff")


def make_head(name: str, inputs: int, outputs: int, units: int, sparsity: float = 0.5,
              wiring_seed: int = 22222, ltc_unfolds: int = 6, strict_wiring: bool = True) -> nn.Module:
    """Build a head by name; NCP heads draw their wiring from ``wiring_seed``."""
    if name == "cfc_ncp":
        return WiredCfC(auto_ncp(inputs, units, outputs, sparsity, wiring_seed), strict=strict_wiring)
    if name == "ltc_ncp":
        return LTC(auto_ncp(inputs, units, outputs, sparsity, wiring_seed), unfolds=ltc_unfolds)
    if name == "cfc":
        return DenseCfC(inputs, units, outputs)
    if name in ("lstm", "gru"):
        return GatedRNNHead(name, inputs, units, outputs)
    if name == "ff":
        return FeedForwardHead(inputs, units, outputs)
    raise ValueError(f"unknown head {name!r}; choose one of {', '.join(HEADS)}")
