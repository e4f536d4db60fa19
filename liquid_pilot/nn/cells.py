"""Liquid cells on an NCP wiring: closed-form CfC and the ODE-solved LTC.

Every cell takes the elapsed time of each step as a (B, 1) tensor, so a batch may
mix control periods. ``step`` advances one step; ``sequence`` runs (B, T, F) inputs
and hoists the work that does not depend on the recurrence out of the time loop.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liquid_pilot.nn.wiring import Wiring

GATES = 4  # CfC pre-activations per neuron: f1, f2, time_a, time_b


def cfc_update(z: Tensor, dt: Tensor, size: int) -> Tensor:
    """Return the CfC state f1 * (1 - g) + g * f2, f = tanh(.), g = sigmoid(time_a * dt + time_b)."""
    # One split, not unflatten + unbind: the same views, and in the exported step one Split node where
    # unbind made a Reshape, a Split and four Squeezes (162 -> 87 nodes for the default pilot).
    f1, f2, time_a, time_b = torch.split(z, size, -1)
    f1, f2 = torch.tanh(f1), torch.tanh(f2)
    gate = torch.sigmoid(torch.addcmul(time_b, time_a, dt))
    if torch.jit.is_tracing():  # ONNX has no lerp; the exporter's stand-in costs eight nodes
        return f1 + gate * (f2 - f1)
    return torch.lerp(f1, f2, gate)


class CfCLayer(nn.Module):
    """One group of CfC neurons whose four gates read (input, own state) through 0/1 masks."""

    def __init__(self, inputs: int, size: int, input_mask: Tensor, recurrent_mask: Tensor):
        super().__init__()
        self.size = size
        self.w_in = nn.Parameter(torch.empty(GATES * size, inputs))
        self.w_rec = nn.Parameter(torch.empty(GATES * size, size))
        self.bias = nn.Parameter(torch.empty(GATES * size))
        self.register_buffer("mask_in", input_mask.float())
        self.register_buffer("mask_rec", recurrent_mask.float())
        # Xavier per gate over the joint [input, state] fan-in, as for one Linear per gate.
        bound = math.sqrt(6.0 / (inputs + 2 * size))
        nn.init.uniform_(self.w_in, -bound, bound)
        nn.init.uniform_(self.w_rec, -bound, bound)
        nn.init.uniform_(self.bias, -1 / math.sqrt(inputs + size), 1 / math.sqrt(inputs + size))

    def masked(self) -> tuple[Tensor, Tensor]:
        """Transposed masked weights, ready for ``addmm``."""
        return (self.w_in * self.mask_in).t(), (self.w_rec * self.mask_rec).t()


class WiredCfC(nn.Module):
    """CfC neurons arranged as the wiring's inter -> command -> motor layers.

    ``strict`` masks every gate, time gates included, and lets a layer read only its own
    wired recurrent synapses plus each neuron's own state. ``strict=False`` reproduces
    ncps 1.0.1's ``WiredCfCCell`` (unmasked time gates, all-to-all state within a layer).
    The state is the layers' neurons concatenated in layer order; outputs are the motors.
    """

    def __init__(self, wiring: Wiring, strict: bool = True):
        super().__init__()
        self.wiring = wiring
        self.sizes = wiring.layer_sizes
        layers = []
        inputs = wiring.inputs
        for index, size in enumerate(self.sizes):
            ff = torch.as_tensor(wiring.feedforward_mask(index)).t()  # (size, inputs)
            if strict:
                rec = torch.as_tensor(wiring.recurrent_mask(index)).t()  # (dest, src)
                time_ff, time_rec = ff, rec
            else:
                rec = time_rec = torch.ones(size, size)
                time_ff = torch.ones_like(ff)
            input_mask = torch.cat([ff, ff, time_ff, time_ff])
            recurrent_mask = torch.cat([rec, rec, time_rec, time_rec])
            layers.append(CfCLayer(inputs, size, input_mask, recurrent_mask))
            inputs = size
        self.layers = nn.ModuleList(layers)
        self._cache_key: list[tuple[int, int, int]] = []
        self._cache: list[tuple[Tensor, ...]] = []

    @property
    def state_size(self) -> int:
        return sum(self.sizes)

    @property
    def units(self) -> int:
        return sum(self.sizes)

    def _layer_weights(self) -> list[tuple[Tensor, Tensor, Tensor]]:
        return [(*layer.masked(), layer.bias) for layer in self.layers]

    def _step_weights(self) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Return (input weights, whole-state weights, bias) per layer.

        The whole-state weights read a layer's own neurons from the full state (zeros
        elsewhere), so a step never slices the state. Without autograd they are cached until
        a parameter or mask changes (in place, by ``.data``, or by replacement), which saves
        a fifth of a flying pilot's step. Tracing for export always sees the masking.
        """
        if torch.is_grad_enabled() or torch.jit.is_tracing():
            return self._full_state_weights()
        key = [(id(t), t.data_ptr(), t._version) for layer in self.layers
               for tensors in (layer._parameters, layer._buffers) for t in tensors.values()]
        if self._cache_key != key:
            self._cache = [tuple(w.detach().contiguous() for w in ws) for ws in self._full_state_weights()]
            self._cache_key = key
        return self._cache

    def _full_state_weights(self) -> list[tuple[Tensor, Tensor, Tensor]]:
        weights, start = [], 0
        for (w_in, w_rec, bias), size in zip(self._layer_weights(), self.sizes):
            w_state = torch.cat([w_rec.new_zeros(start, w_rec.shape[1]), w_rec,
                                 w_rec.new_zeros(self.units - start - size, w_rec.shape[1])])
            weights.append((w_in, w_state, bias))
            start += size
        return weights

    def masked_out(self) -> int:
        """Parameter entries the wiring switches off (kept only for a uniform layout)."""
        return int(sum((layer.mask_in == 0).sum() + (layer.mask_rec == 0).sum() for layer in self.layers))

    def step(self, x: Tensor, state: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        new = []
        for (w_in, w_state, bias), size in zip(self._step_weights(), self.sizes):
            x = cfc_update(torch.addmm(torch.addmm(bias, state, w_state), x, w_in), dt, size)
            new.append(x)
        return x, torch.cat(new, 1)

    def sequence(self, x: Tensor, dt: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Run (B, T, F) inputs as a wavefront: at iteration k, layer l computes time k - l.

        Every layer then reads only states from the previous iteration, so one matmul and one
        CfC update over all neurons advance all layers at once: T + L - 1 iterations of a
        few ops instead of T * L small ones. The arithmetic is the same as repeated ``step``.
        """
        steps, layers = x.shape[1], len(self.sizes)
        w_in, w_state, bias = self._joint_weights()
        z_in = torch.matmul(x, w_in) + bias  # the sensory drive of layer 0, all steps at once
        delay = torch.cat([torch.full((size,), i) for i, size in enumerate(self.sizes)])  # per neuron
        time = torch.arange(steps + layers - 1).unsqueeze(1) - delay  # (K, N): time each neuron computes
        active = (time >= 0) & (time < steps)
        dt_skewed = dt[:, time.clamp(0, steps - 1), 0]  # (B, K, N)
        motors, h = [], state
        for k in range(steps + layers - 1):
            new = cfc_update(torch.addmm(z_in[:, min(k, steps - 1)], h, w_state), dt_skewed[:, k], self.units)
            h = new if bool(active[k].all()) else torch.where(active[k], new, h)
            if k >= layers - 1:
                motors.append(h[:, -self.sizes[-1]:])
        return torch.stack(motors, 1), h

    def _joint_weights(self) -> tuple[Tensor, Tensor, Tensor]:
        """Place every layer's masked weights in one (inputs, 4N) and one (N, 4N) matrix.

        Columns are gate-major: [f1 of all neurons, f2 of all, time_a of all, time_b of all].
        """
        n, weights = self.units, self._layer_weights()
        w_in = weights[0][0].new_zeros(self.wiring.inputs, GATES * n)
        w_state = weights[0][0].new_zeros(n, GATES * n)
        bias = weights[0][0].new_zeros(GATES * n)
        start = 0
        for i, ((layer_in, layer_rec, layer_bias), size) in enumerate(zip(weights, self.sizes)):
            prev = start - self.sizes[i - 1] if i else 0
            for g in range(GATES):
                cols, block = slice(g * n + start, g * n + start + size), slice(g * size, (g + 1) * size)
                if i == 0:
                    w_in[:, cols] = layer_in[:, block]
                else:
                    w_state[prev:start, cols] = layer_in[:, block]
                w_state[start:start + size, cols] = layer_rec[:, block]
                bias[cols] = layer_bias[block]
            start += size
        return w_in, w_state, bias


class DenseCfC(nn.Module):
    """A fully connected CfC layer with a linear read-out (the 'dense CfC' baseline)."""

    def __init__(self, inputs: int, units: int, outputs: int):
        super().__init__()
        self.layer = CfCLayer(inputs, units, torch.ones(GATES * units, inputs), torch.ones(GATES * units, units))
        self.readout = nn.Linear(units, outputs)
        self.state_size = units

    def step(self, x: Tensor, state: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        w_in, w_rec = self.layer.masked()
        h = cfc_update(torch.addmm(torch.addmm(self.layer.bias, x, w_in), state, w_rec), dt, self.state_size)
        return self.readout(h), h

    def sequence(self, x: Tensor, dt: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        w_in, w_rec = self.layer.masked()
        z = torch.matmul(x, w_in) + self.layer.bias
        hs = []
        for t in range(x.shape[1]):
            state = cfc_update(torch.addmm(z[:, t], state, w_rec), dt[:, t], self.state_size)
            hs.append(state)
        return self.readout(torch.stack(hs, 1)), state


class LTC(nn.Module):
    """Liquid time-constant neurons, dv/dt = -(1/tau + f) v + f A, on an NCP wiring.

    Each step runs ``unfolds`` fused semi-implicit Euler steps of length dt / unfolds:
    v <- (c v + g_leak v_leak + sum a E) / (c + g_leak + sum a), c = c_m unfolds / dt,
    a = softplus(w) sigmoid(sigma (v_pre - mu)). Positive quantities pass through softplus,
    so no clipping is needed after optimiser steps; this equals ncps 1.0.1's ``LTCCell``
    with ``implicit_param_constraints=True``. Synapses exist only where the wiring has them.
    """

    INIT = {"gleak": (0.001, 1.0), "vleak": (-0.2, 0.2), "cm": (0.4, 0.6), "w": (0.001, 1.0),
            "sigma": (3.0, 8.0), "mu": (0.3, 0.8)}

    def __init__(self, wiring: Wiring, unfolds: int = 6, epsilon: float = 1e-8):
        super().__init__()
        if unfolds < 1:
            raise ValueError(f"unfolds={unfolds} must be at least 1")
        self.wiring = wiring
        self.unfolds = unfolds
        self.epsilon = epsilon
        n, s, m = wiring.units, wiring.inputs, wiring.outputs
        self.state_size = n

        def uniform(name: str, *shape: int) -> nn.Parameter:
            low, high = self.INIT[name]
            return nn.Parameter(torch.empty(shape).uniform_(low, high))

        self.gleak, self.vleak, self.cm = uniform("gleak", n), uniform("vleak", n), uniform("cm", n)
        self.sigma, self.mu, self.w = uniform("sigma", n, n), uniform("mu", n, n), uniform("w", n, n)
        self.sensory_sigma, self.sensory_mu = uniform("sigma", s, n), uniform("mu", s, n)
        self.sensory_w = uniform("w", s, n)
        # Reversal potentials start at the synapse polarity.
        self.erev = nn.Parameter(torch.as_tensor(wiring.adjacency).float())
        self.sensory_erev = nn.Parameter(torch.as_tensor(wiring.sensory_adjacency).float())
        self.register_buffer("mask", torch.as_tensor(wiring.adjacency).abs().float())
        self.register_buffer("sensory_mask", torch.as_tensor(wiring.sensory_adjacency).abs().float())
        self.input_w, self.input_b = nn.Parameter(torch.ones(s)), nn.Parameter(torch.zeros(s))
        self.output_w, self.output_b = nn.Parameter(torch.ones(m)), nn.Parameter(torch.zeros(m))

    def masked_out(self) -> int:
        """Entries of the four per-synapse tensors (w, sigma, mu, erev) with no synapse."""
        return 4 * int((self.mask == 0).sum() + (self.sensory_mask == 0).sum())

    def _synapses(self) -> tuple[Tensor, Tensor, Tensor]:
        w = F.softplus(self.w) * self.mask
        return w, w * self.erev, F.softplus(self.gleak)

    def _solve(self, x: Tensor, v: Tensor, dt: Tensor, synapses: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        w, w_erev, gleak = synapses
        x = x * self.input_w + self.input_b
        sensory = F.softplus(self.sensory_w) * self.sensory_mask
        sensory = sensory * torch.sigmoid(self.sensory_sigma * (x.unsqueeze(-1) - self.sensory_mu))
        cm_t = F.softplus(self.cm) * self.unfolds / dt.clamp_min(1e-6)
        fixed_num = gleak * self.vleak + (sensory * self.sensory_erev).sum(1)
        fixed_den = cm_t + gleak + sensory.sum(1) + self.epsilon
        for _ in range(self.unfolds):
            gate = torch.sigmoid(self.sigma * (v.unsqueeze(-1) - self.mu))
            v = (cm_t * v + fixed_num + (gate * w_erev).sum(1)) / (fixed_den + (gate * w).sum(1))
        return v

    def _readout(self, v: Tensor) -> Tensor:
        return v[..., :self.wiring.outputs] * self.output_w + self.output_b

    def step(self, x: Tensor, state: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        v = self._solve(x, state, dt, self._synapses())
        return self._readout(v), v

    def sequence(self, x: Tensor, dt: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        synapses = self._synapses()
        vs = []
        for t in range(x.shape[1]):
            state = self._solve(x[:, t], state, dt[:, t], synapses)
            vs.append(state)
        return self._readout(torch.stack(vs, 1)), state
