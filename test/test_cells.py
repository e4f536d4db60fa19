"""Liquid cells: ncps parity (outputs, states, gradients), strict wiring, and time handling."""
import numpy as np
import pytest
import torch
from ncps_reference import ncps_cfc, ncps_ltc

from liquid_pilot.nn.cells import LTC, WiredCfC
from liquid_pilot.nn.wiring import Wiring, auto_ncp

INPUTS, BATCH, STEPS = 12, 3, 24


def _rollout_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(BATCH, STEPS, INPUTS, generator=g, dtype=torch.double)
    dt = 0.05 + 0.9 * torch.rand(BATCH, STEPS, 1, generator=g, dtype=torch.double)  # irregular, never 1
    h0 = 0.5 * torch.randn(BATCH, 19, generator=g, dtype=torch.double)
    return x, dt, h0


def _ours_and_reference(kind: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    wiring = auto_ncp(INPUTS, 19, 4, 0.5, 3)
    if kind == "cfc":
        ours = WiredCfC(wiring, strict=False).double()
        return ours, ncps_cfc(ours)
    ours = LTC(wiring).double()
    with torch.no_grad():  # move off the init ranges so every term matters
        for p in ours.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return ours, ncps_ltc(ours)


@pytest.mark.parametrize("kind", ["cfc", "ltc"])
def test_matches_ncps_outputs_states_and_gradients(kind: str) -> None:
    ours, ref = _ours_and_reference(kind)
    x, dt, h0 = _rollout_data()
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    y, h = ours.sequence(x_ours, dt, h0)
    ys, h_ref = [], h0
    for t in range(STEPS):
        y_t, h_ref = ref(x_ref[:, t], h_ref, dt[:, t])
        ys.append(y_t)
    y_ref = torch.stack(ys, 1)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-6)
    weights = torch.linspace(-1, 1, y.numel(), dtype=torch.double).reshape(y.shape)
    (y * weights).sum().add(h.square().sum()).backward()
    (y_ref * weights).sum().add(h_ref.square().sum()).backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=0, atol=1e-6)
    ref_grads = _grads_in_our_layout(kind, ours, ref)
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name], rtol=0, atol=1e-6, msg=lambda m: f"{name}: {m}")


def _grads_in_our_layout(kind: str, ours: torch.nn.Module, ref: torch.nn.Module) -> dict[str, torch.Tensor]:
    if kind == "ltc":
        return {name: getattr(ref, name).grad for name, _ in ours.named_parameters()}
    grads = {}
    for i, (layer, theirs) in enumerate(zip(ours.layers, ref._layers)):
        inputs = layer.w_in.shape[1]
        gates = [getattr(theirs, n) for n in ("ff1", "ff2", "time_a", "time_b")]
        grads[f"layers.{i}.w_in"] = torch.cat([g.weight.grad[:, :inputs] for g in gates])
        grads[f"layers.{i}.w_rec"] = torch.cat([g.weight.grad[:, inputs:] for g in gates])
        grads[f"layers.{i}.bias"] = torch.cat([g.bias.grad for g in gates])
    # ncps multiplies the mask into ff1/ff2 only, so masked entries get zero gradient there too.
    return grads


def _one_step_reach(wiring: Wiring, kind: str, unfolds: int = 1) -> np.ndarray:
    """Which (source, neuron) pairs may influence a neuron within one step: sources are the
    inputs then the previous states, both in the cell's own state order."""
    n = wiring.units
    adj = (wiring.adjacency != 0).astype(int)
    sens = (wiring.sensory_adjacency != 0).astype(int)
    if kind == "ltc":  # one neuron population; each unfold passes along one synapse or the own state
        step = np.minimum(adj + np.eye(n, dtype=int), 1)
        from_state, from_input = np.eye(n, dtype=int), np.zeros_like(sens)
        for _ in range(unfolds):
            from_input = np.minimum(from_input @ step + sens, 1)
            from_state = np.minimum(from_state @ step, 1)
        return np.concatenate([from_input, from_state]).astype(bool)
    # CfC: the layers run in sequence within a step, and the state is ordered by layer.
    inputs = sens.shape[0]
    columns, previous, start = [], None, 0
    for index, ids in enumerate(wiring.layers):
        ids = list(ids)
        direct = np.zeros((inputs + n, len(ids)), dtype=int)
        direct[inputs + start: inputs + start + len(ids)] = adj[np.ix_(ids, ids)] + np.eye(len(ids), dtype=int)
        if index == 0:
            direct[:inputs] = sens[:, ids]
        else:
            direct += previous @ adj[np.ix_(list(wiring.layers[index - 1]), ids)]
        previous = np.minimum(direct, 1)
        columns.append(previous)
        start += len(ids)
    return np.concatenate(columns, 1).astype(bool)


def _one_step_jacobian(cell: torch.nn.Module, inputs: int) -> np.ndarray:
    torch.manual_seed(1)
    x, h = torch.randn(1, inputs, dtype=torch.double), torch.randn(1, 19, dtype=torch.double)
    dt = torch.full((1, 1), 0.7, dtype=torch.double)

    def step(xh: torch.Tensor) -> torch.Tensor:
        return cell.step(xh[:inputs].unsqueeze(0), xh[inputs:].unsqueeze(0), dt)[1][0]

    jac = torch.autograd.functional.jacobian(step, torch.cat([x[0], h[0]]))  # (neurons, sources)
    return jac.T.numpy()


@pytest.mark.parametrize("kind,unfolds", [("cfc", 1), ("ltc", 1), ("ltc", 3)])
def test_no_influence_without_a_synapse(kind: str, unfolds: int) -> None:
    wiring = auto_ncp(INPUTS, 19, 4, 0.5, 11)
    cell = (WiredCfC(wiring) if kind == "cfc" else LTC(wiring, unfolds=unfolds)).double()
    reach = _one_step_reach(wiring, kind, unfolds)
    jac = _one_step_jacobian(cell, INPUTS)
    assert np.all(jac[~reach] == 0), "influence where the wiring has no synapse"
    assert np.count_nonzero(jac[reach]) > 0.9 * reach.sum(), "wired synapses should carry influence"


def test_ncps_semantics_leak_through_time_gates_and_strict_mode_does_not() -> None:
    wiring = auto_ncp(INPUTS, 19, 4, 0.5, 11)
    reach = _one_step_reach(wiring, "cfc")
    leaky = _one_step_jacobian(WiredCfC(wiring, strict=False).double(), INPUTS)
    assert np.count_nonzero(leaky[~reach]) > 0  # the reason strict mode exists
    only_time_gates = WiredCfC(wiring, strict=False).double()
    with torch.no_grad():  # zero the ff1/ff2 weights: any remaining input influence is a time gate's
        for layer in only_time_gates.layers:
            layer.w_in[: 2 * layer.size] = 0
    gated = _one_step_jacobian(only_time_gates, INPUTS)[:INPUTS]
    assert np.count_nonzero(gated[~reach[:INPUTS]]) > 0


@pytest.mark.parametrize("cell_type", [WiredCfC, LTC])
@pytest.mark.parametrize("steps", [1, 2, STEPS])  # shorter and longer than the three layers
def test_sequence_equals_repeated_steps_and_batch_equals_single_samples(cell_type: type, steps: int) -> None:
    cell = cell_type(auto_ncp(INPUTS, 19, 4, 0.5, 3)).double()
    x, dt, h0 = _rollout_data()
    x, dt = x[:, :steps], dt[:, :steps]
    y_seq, h_seq = cell.sequence(x, dt, h0)
    h = h0
    for t in range(steps):
        y_t, h = cell.step(x[:, t], h, dt[:, t])
        torch.testing.assert_close(y_t, y_seq[:, t], rtol=0, atol=1e-12)
    torch.testing.assert_close(h, h_seq, rtol=0, atol=1e-12)
    for b in range(BATCH):  # each sample alone, with its own dt, gives its row of the batch
        y_b, h_b = cell.sequence(x[b:b + 1], dt[b:b + 1], h0[b:b + 1])
        torch.testing.assert_close(y_b[0], y_seq[b], rtol=0, atol=1e-12)
        torch.testing.assert_close(h_b[0], h_seq[b], rtol=0, atol=1e-12)


def test_dt_matters_for_both_cells() -> None:
    for cell in (WiredCfC(auto_ncp(INPUTS)).double(), LTC(auto_ncp(INPUTS)).double()):
        x, _, h0 = _rollout_data()
        short = cell.step(x[:, 0], h0, torch.full((BATCH, 1), 0.1, dtype=torch.double))[1]
        long = cell.step(x[:, 0], h0, torch.full((BATCH, 1), 2.0, dtype=torch.double))[1]
        assert (short - long).abs().max() > 1e-3


def test_ltc_state_barely_moves_when_no_time_passes() -> None:
    cell = LTC(auto_ncp(INPUTS)).double()
    x, _, h0 = _rollout_data()
    for dt in (1e-6, 0.0):
        _, h = cell.step(x[:, 0], h0, torch.full((BATCH, 1), dt, dtype=torch.double))
        assert torch.isfinite(h).all()
        assert (h - h0).abs().max() < 1e-4
    _, moved = cell.step(x[:, 0], h0, torch.ones(BATCH, 1, dtype=torch.double))
    assert (moved - h0).abs().max() > 1e-2


def test_inference_cache_follows_weight_changes() -> None:
    cell = WiredCfC(auto_ncp(INPUTS))
    x, h, dt = torch.randn(1, INPUTS), torch.randn(1, 19), torch.ones(1, 1)
    changes = [
        lambda layer: layer.bias.add_(1.0),  # an in-place optimiser-style update
        lambda layer: setattr(layer.w_in, "data", layer.w_in.data * 2),  # a swapped storage
        lambda layer: setattr(layer, "w_rec", torch.nn.Parameter(layer.w_rec * 3)),  # a new parameter
        lambda layer: layer.mask_in.zero_(),  # a cut wiring
    ]
    for change in changes:
        with torch.no_grad():
            before = cell.step(x, h, dt)[1]
            change(cell.layers[0])
            after = cell.step(x, h, dt)[1]
        assert (before - after).abs().max() > 1e-3
        torch.testing.assert_close(after, cell.step(x, h, dt)[1])  # with autograd: same numbers
