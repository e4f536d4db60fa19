"""The forward camera, rigidly attached to the body, rendered on the CPU (TinyRenderer).

The view follows the body: its up vector is the body's, so the horizon rolls with the
drone. The projection's aspect equals the image's; pixels that hit nothing get the sky.
"""
from __future__ import annotations

import math

import numpy as np
import pybullet as pb

from liquid_pilot.sim.config import SimConfig
from liquid_pilot.sim.quadrotor import BodyState

MOUNT = np.array([0.035, 0.0, 0.01])  # camera position on the body, m (just ahead of the frame)
NEAR, FAR = 0.05, 40.0


class Camera:
    """The forward camera on the body: renders the scene from the body's pose and says what is in view."""

    def __init__(self, client: int, config: SimConfig, sky: np.ndarray, light: float = 1.0):
        self.client, self.width, self.height = client, config.image_width, config.image_height
        pitch = math.radians(config.camera_pitch_deg)
        self.forward = np.array([math.cos(pitch), 0.0, -math.sin(pitch)])  # body frame
        self.up = np.array([math.sin(pitch), 0.0, math.cos(pitch)])
        self.vfov = math.radians(config.fov_deg)
        self.hfov = 2 * math.atan(math.tan(self.vfov / 2) * self.width / self.height)
        self.projection = pb.computeProjectionMatrixFOV(config.fov_deg, self.width / self.height, NEAR, FAR)
        self.sky = np.round(np.clip(sky, 0, 1) * 255).astype(np.uint8)
        self.light = dict(lightDirection=[0.4, 0.3, 1.0], lightColor=[1.0, 1.0, 1.0],
                          lightAmbientCoeff=0.6 * light, lightDiffuseCoeff=0.35 * light,
                          lightSpecularCoeff=0.05 * light)
        self.light_scale = light

    def render(self, state: BodyState) -> np.ndarray:
        """Render an (H, W, 3) uint8 RGB image from the body pose."""
        eye = state.position + state.rotation @ MOUNT
        view = pb.computeViewMatrix(eye.tolist(), (eye + state.rotation @ self.forward).tolist(),
                                    (state.rotation @ self.up).tolist())
        _, _, rgba, depth, _ = pb.getCameraImage(
            self.width, self.height, view, self.projection, renderer=pb.ER_TINY_RENDERER, shadow=0,
            flags=pb.ER_NO_SEGMENTATION_MASK, physicsClientId=self.client, **self.light)
        image = np.asarray(rgba, dtype=np.uint8).reshape(self.height, self.width, 4)[:, :, :3].copy()
        sky = np.asarray(depth).reshape(self.height, self.width) >= 0.9999
        image[sky] = np.clip(self.sky.astype(np.float32) * min(self.light_scale, 1.3), 0, 255).astype(np.uint8)
        return image

    def in_view(self, state: BodyState, point: np.ndarray, margin: float = 0.9) -> bool:
        """Whether ``point`` lies inside ``margin`` of the field of view (ignoring occlusion)."""
        body = state.rotation.T @ (point - state.position - state.rotation @ MOUNT)
        ahead = float(body @ self.forward)
        if ahead <= NEAR:
            return False
        return (abs(math.atan2(body[1], ahead)) < margin * self.hfov / 2
                and abs(math.atan2(float(body @ self.up), ahead)) < margin * self.vfov / 2)
