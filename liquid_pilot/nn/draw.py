"""Draw an NCP circuit: sensory features -> inter -> command -> motor, synapses by polarity."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # files only; no display on robots or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from liquid_pilot.nn.wiring import Wiring  # noqa: E402

EXCITATORY, INHIBITORY = "#2a9d8f", "#e76f51"


def draw_wiring(wiring: Wiring, path: str | os.PathLike, input_names: list[str] | None = None,
                output_names: list[str] | None = None, title: str = "") -> None:
    """Write a PNG (or any matplotlib format, by suffix) of the circuit."""
    columns = [list(range(wiring.inputs)), *[list(layer) for layer in wiring.layers]]
    height = max(len(c) for c in columns)
    pos: dict[tuple[int, int], tuple[float, float]] = {}  # (column, id) -> (x, y)
    for col, ids in enumerate(columns):
        for row, node in enumerate(ids):
            pos[(col, node)] = (col * 3.0, (height - 1) / 2 - row * (height - 1) / max(len(ids) - 1, 1)
                                if len(ids) > 1 else 0.0)
    layer_of = {n: i + 1 for i, layer in enumerate(wiring.layers) for n in layer}

    fig, ax = plt.subplots(figsize=(10, max(6, height * 0.22)))
    for (src, dest), polarity in np.ndenumerate(wiring.sensory_adjacency):
        if polarity:
            _edge(ax, pos[(0, src)], pos[(1, dest)], polarity, 0.25)
    for (src, dest), polarity in np.ndenumerate(wiring.adjacency):
        if polarity:
            a, b = pos[(layer_of[src], src)], pos[(layer_of[dest], dest)]
            _edge(ax, a, b, polarity, 0.6, curve=0.6 if layer_of[src] == layer_of[dest] else 0.0)
    names = ["sensory", "inter", "command", "motor"]
    for col, ids in enumerate(columns):
        xy = np.array([pos[(col, n)] for n in ids])
        ax.scatter(xy[:, 0], xy[:, 1], s=120 if col else 40, c="#264653" if col else "#8d99ae", zorder=3)
        ax.text(col * 3.0, height / 2 + 1, f"{names[col]} ({len(ids)})", ha="center", fontsize=11)
        labels = input_names if col == 0 else output_names if col == len(columns) - 1 else None
        for i, node in enumerate(ids):
            if labels is not None and i < len(labels):
                x, y = pos[(col, node)]
                ax.text(x + (-0.3 if col == 0 else 0.3), y, labels[i], ha="right" if col == 0 else "left",
                        va="center", fontsize=7 if col == 0 else 10)
    ax.plot([], [], color=EXCITATORY, label="excitatory (+1)")
    ax.plot([], [], color=INHIBITORY, label="inhibitory (-1)")
    ax.legend(loc="lower center", ncol=2, frameon=False, bbox_to_anchor=(0.5, -0.06))
    ax.set_title(title or f"NCP: {wiring.units} neurons, {wiring.synapse_count} synapses, "
                          f"{wiring.sensory_synapse_count} sensory synapses")
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _edge(ax: plt.Axes, a: tuple[float, float], b: tuple[float, float], polarity: int, alpha: float,
          curve: float = 0.0) -> None:
    color = EXCITATORY if polarity > 0 else INHIBITORY
    if a == b:  # a self-synapse: a small loop beside the neuron
        ax.add_patch(plt.Circle((a[0] + 0.25, a[1]), 0.18, fill=False, color=color, alpha=alpha, lw=0.8))
        return
    ax.annotate("", xy=b, xytext=a, arrowprops=dict(
        arrowstyle="-|>", color=color, alpha=alpha, lw=0.8,
        shrinkA=5, shrinkB=5, connectionstyle=f"arc3,rad={curve}"))
