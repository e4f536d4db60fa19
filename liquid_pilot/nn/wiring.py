"""Neural Circuit Policy wiring: sensory -> inter -> command -> motor.

Neuron ids follow the ncps convention (motor first, then command, then inter) so
that the same seed gives the same circuit as ``ncps.wirings.AutoNCP``: the random
draws below happen in exactly the order ncps makes them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LAYER_NAMES = ("inter", "command", "motor")


@dataclass(frozen=True)
class Wiring:
    """A fixed circuit. Adjacency entries are synapse polarities (+1, -1) or 0."""

    sensory_adjacency: np.ndarray  # (inputs, units): sensory -> neuron
    adjacency: np.ndarray  # (units, units): neuron src -> neuron dest
    layers: tuple[tuple[int, ...], ...]  # neuron ids of inter, command, motor

    @property
    def inputs(self) -> int:
        return self.sensory_adjacency.shape[0]

    @property
    def units(self) -> int:
        return self.adjacency.shape[0]

    @property
    def outputs(self) -> int:
        return len(self.layers[-1])

    @property
    def layer_sizes(self) -> list[int]:
        return [len(layer) for layer in self.layers]

    @property
    def synapse_count(self) -> int:
        return int(np.count_nonzero(self.adjacency))

    @property
    def sensory_synapse_count(self) -> int:
        return int(np.count_nonzero(self.sensory_adjacency))

    def feedforward_mask(self, layer: int) -> np.ndarray:
        """Return the (sources, layer size) 0/1 mask of synapses into ``layer`` from the layer before."""
        dest = list(self.layers[layer])
        if layer == 0:
            return np.abs(self.sensory_adjacency[:, dest])
        return np.abs(self.adjacency[np.ix_(list(self.layers[layer - 1]), dest)])

    def recurrent_mask(self, layer: int) -> np.ndarray:
        """(size, size) 0/1 mask of synapses within ``layer``, plus each neuron's own state."""
        ids = list(self.layers[layer])
        mask = np.abs(self.adjacency[np.ix_(ids, ids)])
        return np.maximum(mask, np.eye(len(ids), dtype=mask.dtype))


def _connect(rng: np.random.RandomState, matrix: np.ndarray, anchors: list[int], pool: list[int],
             fan: int, outgoing: bool) -> None:
    """Connect every anchor to ``fan`` random partners from ``pool``.

    Pool neurons left unconnected then get the mean fan of the pool, drawn from the
    anchors. Anchors are the sources when ``outgoing`` and the destinations otherwise;
    every synapse draws a polarity.
    """
    def link(anchor: int, partner: int) -> None:
        src, dest = (anchor, partner) if outgoing else (partner, anchor)
        matrix[src, dest] = rng.choice([-1, 1])

    unreached = list(pool)
    for anchor in anchors:
        for partner in rng.choice(pool, size=fan, replace=False):
            if partner in unreached:
                unreached.remove(partner)
            link(anchor, partner)
    mean_fan = int(np.clip(int(len(anchors) * fan / len(pool)), 1, len(anchors)))
    for partner in unreached:
        for anchor in rng.choice(anchors, size=mean_fan, replace=False):
            link(anchor, partner)


def ncp(inputs: int, inter: int, command: int, motor: int, sensory_fanout: int, inter_fanout: int,
        recurrent_command_synapses: int, motor_fanin: int, seed: int = 22222) -> Wiring:
    """Build an NCP circuit with explicit layer sizes and fan rules."""
    for name, value, limit, what in (
        ("sensory_fanout", sensory_fanout, inter, "inter"),
        ("inter_fanout", inter_fanout, command, "command"),
        ("motor_fanin", motor_fanin, command, "command"),
    ):
        if not 1 <= value <= limit:
            raise ValueError(f"{name}={value} must be between 1 and the number of {what} neurons ({limit})")
    if min(inputs, inter, command, motor) < 1 or recurrent_command_synapses < 0:
        raise ValueError("an NCP needs at least one input and one neuron in every layer")
    units = inter + command + motor
    motors = list(range(motor))
    commands = list(range(motor, motor + command))
    inters = list(range(motor + command, units))
    sensors = list(range(inputs))
    rng = np.random.RandomState(seed)
    sensory = np.zeros((inputs, units), dtype=np.int8)
    adjacency = np.zeros((units, units), dtype=np.int8)
    _connect(rng, sensory, sensors, inters, sensory_fanout, outgoing=True)
    _connect(rng, adjacency, inters, commands, inter_fanout, outgoing=True)
    for _ in range(recurrent_command_synapses):
        src, dest = rng.choice(commands), rng.choice(commands)
        adjacency[src, dest] = rng.choice([-1, 1])
    _connect(rng, adjacency, motors, commands, motor_fanin, outgoing=False)
    return Wiring(sensory, adjacency, (tuple(inters), tuple(commands), tuple(motors)))


def auto_ncp(inputs: int, units: int = 19, outputs: int = 4, sparsity: float = 0.5,
             seed: int = 22222) -> Wiring:
    """Build a circuit by the ncps ``AutoNCP`` rule: 40% of non-motor neurons are command neurons."""
    if not 0 < outputs < units - 2:
        raise ValueError(f"outputs={outputs} must be between 1 and units - 3 ({units - 3})")
    if not 0.1 <= sparsity <= 1.0:
        raise ValueError(f"sparsity={sparsity} must be between 0.1 and 1.0")
    density = 1.0 - sparsity
    command = max(int(0.4 * (units - outputs)), 1)
    inter = units - outputs - command
    return ncp(
        inputs, inter, command, outputs,
        sensory_fanout=max(int(inter * density), 1),
        inter_fanout=max(int(command * density), 1),
        recurrent_command_synapses=max(int(command * density * 2), 1),
        motor_fanin=max(int(command * density), 1),
        seed=seed,
    )
