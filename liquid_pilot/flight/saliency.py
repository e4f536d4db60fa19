"""Where the pilot looks: a saliency map of the frame it flew, and the overlay the demo draws.

Two measures, one per kind of model a drone flies:

- a checkpoint (``.pt``, PyTorch there): the demo's map, gradient times input of the command's size
  (``Pilot.saliency``), so ``~/saliency`` shows what ``liquid-pilot demo`` shows;
- an exported graph (``.onnx``, onnxruntime alone): occlusion sensitivity, how much the command
  changes when a patch of the frame is greyed out (``occlusion``): no gradients are needed, only
  steps of the network that flies, from its current state, keeping nothing.

Both are (H, W) in [0, 1] at the model's input size; ``overlay`` draws one on a frame in warm colours.
"""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Evaluate = Callable[[np.ndarray, "np.ndarray | None", "np.ndarray | None", float],
                    tuple[np.ndarray, np.ndarray]]  # (image, imu, state, dt) -> (command, next state)


def occlusion(evaluate: Evaluate, image: np.ndarray, imu: np.ndarray | None, state: np.ndarray | None, dt: float,
              patch: int = 8) -> np.ndarray:
    """Occlusion sensitivity of the command to each ``patch`` x ``patch`` square of ``image``, (H, W) in [0, 1].

    Each square in turn takes the frame's mean colour; the map is the change of the command (its
    norm), smoothed back to the frame's size. ``evaluate`` steps the network without keeping state.
    """
    base, _ = evaluate(image, imu, state, dt)
    height, width = image.shape[:2]
    fill = image.reshape(-1, image.shape[2]).mean(0).round().astype(image.dtype)
    rows, cols = -(-height // patch), -(-width // patch)
    heat = np.zeros((rows, cols), np.float32)
    for i in range(rows):
        for j in range(cols):
            occluded = image.copy()
            occluded[i * patch:(i + 1) * patch, j * patch:(j + 1) * patch] = fill
            command, _ = evaluate(occluded, imu, state, dt)
            heat[i, j] = float(np.linalg.norm(command - base))
    heat = cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)
    span = float(heat.max() - heat.min())
    return (heat - heat.min()) / span if span > 1e-12 else np.zeros_like(heat)


def overlay(rgb: np.ndarray, heat: np.ndarray, size: int | None = None) -> np.ndarray:
    """Draw ``heat`` over a frame (RGB; scaled to ``size`` square pixels if given) in warm colours."""
    if size is not None:
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_NEAREST)
    height, width = rgb.shape[:2]
    heat = cv2.resize(np.asarray(heat, np.float32), (width, height))
    colour = cv2.applyColorMap(np.uint8(255 * np.clip(heat, 0, 1)), cv2.COLORMAP_JET)[:, :, ::-1]
    alpha = 0.6 * heat[:, :, None]  # only where the network looks
    return np.uint8(rgb * (1 - alpha) + colour * alpha)
