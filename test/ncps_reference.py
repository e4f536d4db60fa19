"""Build ncps 1.0.1 reference cells with the same weights as ours (tests only)."""
from __future__ import annotations

import numpy as np
import torch
from ncps.torch import LTCCell, WiredCfCCell
from ncps.wirings import Wiring as NcpsWiring

from liquid_pilot.nn.cells import LTC, WiredCfC
from liquid_pilot.nn.wiring import Wiring


def ncps_wiring(wiring: Wiring) -> NcpsWiring:
    """Our circuit as a built ncps wiring. Fresh each call, and cells must get
    input_size=None: ncps adds synapses again whenever a built wiring is rebuilt."""
    from ncps.wirings import NCP
    inter, command, motor = wiring.layer_sizes
    ref = NCP(inter, command, motor, 1, 1, 0, 1)  # fan rules unused: adjacency is overwritten
    ref.build(wiring.inputs)
    ref.adjacency_matrix[:] = wiring.adjacency
    ref.sensory_adjacency_matrix[:] = wiring.sensory_adjacency
    return ref


def ncps_cfc(model: WiredCfC) -> WiredCfCCell:
    ref = WiredCfCCell(None, ncps_wiring(model.wiring)).double()
    with torch.no_grad():
        for ours, theirs in zip(model.layers, ref._layers):
            inputs = ours.w_in.shape[1]
            for gate, name in enumerate(("ff1", "ff2", "time_a", "time_b")):
                rows = slice(gate * ours.size, (gate + 1) * ours.size)
                linear = getattr(theirs, name)
                linear.weight[:, :inputs] = ours.w_in[rows]
                linear.weight[:, inputs:] = ours.w_rec[rows]
                linear.bias[:] = ours.bias[rows]
    return ref


def ncps_ltc(model: LTC) -> LTCCell:
    ref = LTCCell(ncps_wiring(model.wiring), ode_unfolds=model.unfolds,
                  implicit_param_constraints=True).double()
    with torch.no_grad():
        for name, param in model.named_parameters():
            getattr(ref, name)[:] = param
    return ref


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()
