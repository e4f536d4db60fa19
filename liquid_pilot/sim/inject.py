"""Disturbances injected on purpose, each switched on and scaled by an ``InjectConfig`` value.

Every draw comes from the generator handed in, so an episode's seed fixes its disturbances.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from liquid_pilot.sim.config import InjectConfig
from liquid_pilot.sim.quadrotor import GRAVITY

DELIVERED, DROPPED, FROZEN = "delivered", "dropped", "frozen"


class Injector:
    """The scenario's disturbances, drawn per episode: image faults, IMU noise and bias, wind, motor noise."""

    def __init__(self, config: InjectConfig, rng: np.random.Generator, mass: float):
        self.config, self.rng, self.mass = config, rng, mass
        self.gyro_bias = rng.normal(0.0, config.gyro_bias, 3) if config.gyro_bias else np.zeros(3)
        self.accel_bias = rng.normal(0.0, config.accel_bias, 3) if config.accel_bias else np.zeros(3)
        self.wind_force = np.zeros(3)

    def image(self, image: np.ndarray) -> np.ndarray:
        """Contrast and brightness, then blur, then pixel noise, on an (H, W, 3) uint8 image."""
        c = self.config
        if c.contrast == 1.0 and c.brightness == 0.0 and c.blur == 0.0 and c.image_noise == 0.0:
            return image
        x = image.astype(np.float32) / 255.0
        if c.contrast != 1.0 or c.brightness != 0.0:
            x = (x - 0.5) * c.contrast + 0.5 + c.brightness
        if c.blur > 0:
            x = cv2.GaussianBlur(x, (0, 0), sigmaX=c.blur)
        if c.image_noise > 0:
            x = x + self.rng.normal(0.0, c.image_noise, x.shape).astype(np.float32)
        return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)

    def frame_fate(self) -> str:
        """Whether the next frame arrives, never arrives, or arrives showing the previous image."""
        c = self.config
        if c.frame_drop == 0.0 and c.frozen_frame == 0.0:
            return DELIVERED
        u = self.rng.random()
        if u < c.frame_drop:
            return DROPPED
        return FROZEN if u < c.frame_drop + c.frozen_frame else DELIVERED

    def imu(self, gyro: np.ndarray, accel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        gyro = gyro + self.gyro_bias + (self.rng.normal(0.0, c.gyro_noise, 3) if c.gyro_noise else 0.0)
        accel = accel + self.accel_bias + (self.rng.normal(0.0, c.accel_noise, 3) if c.accel_noise else 0.0)
        return gyro, accel

    def wind(self, dt: float) -> np.ndarray:
        """Gust force in the world frame (N): an Ornstein-Uhlenbeck process per axis, vertical halved."""
        c = self.config
        if c.wind == 0.0:
            return self.wind_force
        sigma = c.wind * self.mass * GRAVITY * np.array([1.0, 1.0, 0.5])
        decay = math.exp(-dt / c.wind_tau_s)
        self.wind_force = self.wind_force * decay + sigma * math.sqrt(1 - decay ** 2) * self.rng.normal(size=3)
        return self.wind_force

    def motors(self, rpm: np.ndarray) -> np.ndarray:
        if self.config.actuator_noise == 0.0:
            return rpm
        return rpm * (1.0 + self.rng.normal(0.0, self.config.actuator_noise, 4))
