"""The perception CNN: camera frame -> a few sensory features for the liquid head.

A spatial softmax turns each of the last conv maps into "where" (expected x, y) and
"how much" (mean activation), which is what steering toward a target needs and keeps
the dense layer small.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# (out channels, kernel, stride) per conv layer.
CONV_LAYERS = ((12, 5, 2), (16, 3, 2), (24, 3, 2), (32, 3, 1))


class ConvEncoder(nn.Module):
    """The CNN: four convolutions, a spatial softmax (where each map looks) and a dense layer to the features."""

    def __init__(self, height: int, width: int, features: int):
        super().__init__()
        if min(height, width) < 8 or features < 1:
            raise ValueError(f"image must be at least 8x8 and features >= 1 (got {height}x{width}, {features})")
        layers: list[nn.Module] = []
        channels = 3
        for out, kernel, stride in CONV_LAYERS:
            layers += [nn.Conv2d(channels, out, kernel, stride, padding=kernel // 2), nn.ReLU()]
            channels = out
            height, width = math.ceil(height / stride), math.ceil(width / stride)
        self.convs = nn.Sequential(*layers[:-1])  # the last maps are softmax logits
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.flatten(), ys.flatten()], 1))  # (h*w, 2)
        self.map_size = (height, width)
        self.log_temperature = nn.Parameter(torch.zeros(()))
        self.fc = nn.Linear(3 * channels, features)

    def attention(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits (B, C, h*w) and their spatial softmax for normalised images (B, 3, H, W)."""
        logits = self.convs(x).flatten(2)
        return logits, torch.softmax(logits * torch.exp(-self.log_temperature), -1)

    def forward(self, x: Tensor) -> Tensor:
        logits, weights = self.attention(x)
        points = torch.matmul(weights, self.grid).flatten(1)  # (B, 2C): expected x, y per map
        return torch.tanh(self.fc(torch.cat([points, logits.mean(-1)], 1)))
