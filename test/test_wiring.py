"""The NCP wiring: exact ncps parity, structural invariants, and clear errors."""
import numpy as np
import pytest
from ncps.wirings import AutoNCP

from liquid_pilot.nn.wiring import auto_ncp, ncp

GRID = [(units, outputs, sparsity, seed, inputs)
        for units in (8, 19, 32, 64) for outputs in (1, 2, 4)
        for sparsity in (0.1, 0.5, 0.75, 1.0) for seed in (0, 22222, 12345) for inputs in (1, 7, 38)]


@pytest.mark.parametrize("units,outputs,sparsity,seed,inputs", GRID)
def test_adjacency_equals_ncps_autoncp(units: int, outputs: int, sparsity: float, seed: int, inputs: int) -> None:
    ref = AutoNCP(units, outputs, sparsity, seed)
    ref.build(inputs)
    ours = auto_ncp(inputs, units, outputs, sparsity, seed)
    np.testing.assert_array_equal(ours.adjacency, ref.adjacency_matrix)
    np.testing.assert_array_equal(ours.sensory_adjacency, ref.sensory_adjacency_matrix)
    assert ours.layers == (tuple(ref._inter_neurons), tuple(ref._command_neurons), tuple(ref._motor_neurons))


def test_default_circuit_has_19_neurons_in_three_layers() -> None:
    w = auto_ncp(38)
    assert w.units == 19 and w.outputs == 4 and w.layer_sizes == [9, 6, 4]


@pytest.mark.parametrize("seed", [0, 1, 22222])
def test_synapses_only_flow_forward_and_reach_every_neuron(seed: int) -> None:
    w = auto_ncp(10, 24, 3, 0.6, seed)
    inter, command, motor = (list(layer) for layer in w.layers)
    allowed = np.zeros_like(w.adjacency, dtype=bool)
    allowed[np.ix_(inter, command)] = True
    allowed[np.ix_(command, command)] = True
    allowed[np.ix_(command, motor)] = True
    assert not np.any(w.adjacency[~allowed]), "synapse outside inter->command->motor"
    assert not np.any(w.sensory_adjacency[:, command + motor]), "sensory synapse beyond the inter layer"
    assert set(np.unique(w.adjacency)) <= {-1, 0, 1} and set(np.unique(w.sensory_adjacency)) <= {-1, 0, 1}
    assert np.all(np.abs(w.sensory_adjacency[:, inter]).sum(0) >= 1), "an inter neuron without input"
    assert np.all(np.abs(w.adjacency[np.ix_(inter, command)]).sum(0) >= 1), "a command neuron without input"
    assert np.all(np.abs(w.adjacency[np.ix_(command, motor)]).sum(1) >= 1), "a command neuron driving no motor"
    assert np.all(np.abs(w.adjacency[np.ix_(command, motor)]).sum(0) >= int(6 * 0.4)), "motor fan-in too small"
    # Both polarities occur, as the circuit needs excitation and inhibition.
    assert {-1, 1} <= set(np.unique(w.adjacency))


def test_seed_determines_the_circuit() -> None:
    a, b, c = auto_ncp(12, seed=5), auto_ncp(12, seed=5), auto_ncp(12, seed=6)
    assert np.array_equal(a.adjacency, b.adjacency) and np.array_equal(a.sensory_adjacency, b.sensory_adjacency)
    assert not np.array_equal(a.sensory_adjacency, c.sensory_adjacency)


@pytest.mark.parametrize("kwargs,message", [
    (dict(inputs=4, units=6, outputs=4), "outputs=4"),
    (dict(inputs=4, units=19, outputs=4, sparsity=0.05), "sparsity=0.05"),
    (dict(inputs=4, units=19, outputs=0), "outputs=0"),
])
def test_impossible_auto_ncp_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        auto_ncp(**kwargs)


def test_impossible_fan_is_refused() -> None:
    with pytest.raises(ValueError, match="sensory_fanout=5 must be between 1 and the number of inter neurons"):
        ncp(3, inter=4, command=3, motor=2, sensory_fanout=5, inter_fanout=1,
            recurrent_command_synapses=1, motor_fanin=1)
