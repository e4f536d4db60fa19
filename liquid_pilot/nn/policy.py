"""The pilot: CNN + recurrent head, camera frame (+ IMU) and elapsed time -> velocity command.

Commands are [vx, vy, vz, yaw_rate] in the body frame (FLU, REP-103), m/s and rad/s.
Input normalisation and output scaling live in the model as buffers, so a checkpoint
flies without side files. Images reach the model already preprocessed, in training and in
flight alike, by ``liquid_pilot.flight.image.fit``: a centre crop to the model's aspect ratio,
then a resize to (image_height, image_width); nothing is squashed.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from liquid_pilot.nn.encoder import ConvEncoder
from liquid_pilot.nn.heads import HEADS, make_head
from liquid_pilot.settings import POSITIVE, Range, check_fields, setting

COMMAND_AXES = ("vx", "vy", "vz", "yaw_rate")
# Added to a frame's per-channel variance before standardising ([0, 1] units): a flat frame stays finite, and
# a channel that varies by less than about one level of 255 is not stretched into noise.
FRAME_NORM_FLOOR = 1e-5
IMU_FIELDS = ("gyro_x", "gyro_y", "gyro_z", "accel_x", "accel_y", "accel_z")


@dataclass
class PilotConfig:
    """The architecture, and what the network was trained to see; saved in every checkpoint."""

    head: str = setting("cfc_ncp", "the head after the CNN: cfc_ncp, ltc_ncp (liquid NCPs), cfc (dense CfC), lstm, "
                                   "gru or ff (feed-forward)", HEADS)
    units: int = setting(19, "neurons (NCP heads) or hidden units (baselines)", Range(1, 4096))
    features: int = setting(32, "CNN features fed to the head", Range(1, 4096))
    image_height: int = setting(64, "the network's input height, pixels (frames are fitted to it)", Range(8, 4096))
    image_width: int = setting(64, "the network's input width, pixels", Range(8, 4096))
    use_imu: bool = setting(True, "the head reads the IMU beside the camera's features")
    frame_norm: bool = setting(False, "each frame is standardised per colour channel by its own mean and spread "
                                      "before the CNN (exposure and colour-cast invariance: grey-world); the "
                                      "training set's image statistics are then not used")
    # 0.1, denser than AutoNCP's 0.5: at 0.5 the 19-neuron circuit underfit our demonstrations
    # (validation loss 2.3x higher after 7 epochs) and did not fly; see models/README.md.
    sparsity: float = setting(0.1, "share of the NCP's possible synapses left out", Range(0, 1, open_high=True))
    wiring_seed: int = setting(22222, "seed of the NCP's wiring draw (AutoNCP's default)", Range(0, 2**32 - 1))
    strict_wiring: bool = setting(True, "false: ncps 1.0.1's CfC (time gates unmasked, layers all-to-all)")
    ltc_unfolds: int = setting(6, "LTC: fused semi-implicit solver steps per step", Range(1, 100))
    time_scale: float = setting(16.0, "elapsed seconds are multiplied by this before reaching the cells: 16 makes a "
                                      "16 Hz control period one unit of cell time, the regime the cells' "
                                      "initialisations are tuned for", POSITIVE)
    command_scale: list[float] = setting(help="the head's outputs times this are the commands [vx, vy, vz, yaw "
                                              "rate]: twice the flight limits, so bounded motor neurons reach full "
                                              "speed at 0.5, away from saturation",
                                         factory=lambda: [2.0, 2.0, 1.0, 2.0])
    camera_fov_deg: list[float] | None = setting(None, "[horizontal, vertical] field of view, degrees, of the "
                                                       "training camera as the model sees it (after the centre crop); "
                                                       "set by the trainer from the bags' CameraInfo; None: unknown")

    def __post_init__(self) -> None:
        check_fields(self)
        if len(self.command_scale) != len(COMMAND_AXES) or min(self.command_scale) <= 0:
            raise ValueError(f"command_scale needs {len(COMMAND_AXES)} positive values {COMMAND_AXES}, got "
                             f"{self.command_scale}")
        fov = self.camera_fov_deg
        if fov is not None and (len(fov) != 2 or not all(0 < v < 180 for v in fov)):
            raise ValueError(f"camera_fov_deg needs two angles in (0, 180) degrees [horizontal, vertical], "
                             f"got {fov!r}")


class Pilot(nn.Module):
    """The whole pilot: the CNN encoder, the recurrent head and the command scaling, stepped or run on sequences."""

    def __init__(self, config: PilotConfig | None = None, seed: int = 0):
        super().__init__()
        self.config = config = config or PilotConfig()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.encoder = ConvEncoder(config.image_height, config.image_width, config.features)
            inputs = config.features + (len(IMU_FIELDS) if config.use_imu else 0)
            self.head = make_head(config.head, inputs, len(COMMAND_AXES), config.units,
                                  config.sparsity, config.wiring_seed, config.ltc_unfolds, config.strict_wiring)
        self.register_buffer("image_mean", torch.full((3,), 0.5))
        self.register_buffer("image_std", torch.full((3,), 0.25))
        self.register_buffer("imu_mean", torch.zeros(len(IMU_FIELDS)))
        self.register_buffer("imu_std", torch.ones(len(IMU_FIELDS)))
        self.register_buffer("command_scale", torch.tensor(config.command_scale, dtype=torch.float32))

    @property
    def state_size(self) -> int:
        return self.head.state_size

    def initial_state(self, batch: int = 1) -> Tensor:
        return torch.zeros(batch, self.state_size, device=self.command_scale.device)

    def set_normalisation(self, image_mean: Tensor, image_std: Tensor,
                          imu_mean: Tensor | None = None, imu_std: Tensor | None = None) -> None:
        """Per-channel image statistics in [0, 1] units, and per-field IMU statistics."""
        with torch.no_grad():
            if self.config.frame_norm:  # each frame is standardised by its own statistics: identity after
                image_mean, image_std = torch.zeros(3), torch.ones(3)
            self.image_mean.copy_(torch.as_tensor(image_mean))
            self.image_std.copy_(torch.as_tensor(image_std).clamp_min(1e-6))
            if imu_mean is not None and imu_std is not None:
                self.imu_mean.copy_(torch.as_tensor(imu_mean))
                self.imu_std.copy_(torch.as_tensor(imu_std).clamp_min(1e-6))

    def _normalised(self, image: Tensor) -> Tensor:
        """Images (N, H, W, 3) RGB, uint8 or float in 0..255 -> normalised (N, 3, H, W)."""
        expected = (self.config.image_height, self.config.image_width, 3)
        if tuple(image.shape[1:]) != expected:
            raise ValueError(f"image must be (batch, {expected[0]}, {expected[1]}, 3) RGB, got {tuple(image.shape)}")
        x = image.permute(0, 3, 1, 2).float() / 255.0
        if self.config.frame_norm:
            mean = x.mean((2, 3), keepdim=True)
            spread = ((x - mean) ** 2).mean((2, 3), keepdim=True)
            x = (x - mean) / torch.sqrt(spread + FRAME_NORM_FLOOR)
        return (x - self.image_mean[:, None, None]) / self.image_std[:, None, None]

    def sensory(self, image: Tensor, imu: Tensor | None) -> Tensor:
        """Images (N, H, W, 3) and IMU (N, 6) -> the head's sensory features (N, F)."""
        features = self.encoder(self._normalised(image))
        if not self.config.use_imu:
            return features
        if imu is None or imu.shape[-1] != len(IMU_FIELDS):
            raise ValueError(f"this pilot needs an IMU vector of {len(IMU_FIELDS)} values {IMU_FIELDS}")
        return torch.cat([features, (imu.float() - self.imu_mean) / self.imu_std], -1)

    def step(self, obs: Mapping[str, Tensor], state: Tensor | None, dt: Tensor | float) -> tuple[Tensor, Tensor]:
        """One control step. obs: "image" (B, H, W, 3) and "imu" (B, 6); dt: elapsed seconds, (B, 1)."""
        image = obs["image"]
        batch = image.shape[0]
        state = self.initial_state(batch) if state is None else state
        dt = torch.as_tensor(dt, dtype=torch.float32).reshape(-1, 1).expand(batch, 1)
        y, state = self.head.step(self.sensory(image, obs.get("imu")), state, dt * self.config.time_scale)
        return y * self.command_scale, state

    def forward(self, images: Tensor, imu: Tensor | None, dt: Tensor,
                state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Sequences for training: images (B, T, H, W, 3), imu (B, T, 6), dt (B, T, 1) seconds."""
        batch, steps = images.shape[:2]
        flat_imu = None if imu is None else imu.flatten(0, 1)
        return self.sequence(self.sensory(images.flatten(0, 1), flat_imu).unflatten(0, (batch, steps)), dt, state)

    def sequence(self, features: Tensor, dt: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Run the head over sequences of per-frame sensory features (B, T, F); dt (B, T, 1) seconds."""
        batch, steps = features.shape[:2]
        state = self.initial_state(batch) if state is None else state
        y, state = self.head.sequence(features, dt.reshape(batch, steps, 1) * self.config.time_scale, state)
        return y * self.command_scale, state

    def saliency(self, obs: Mapping[str, Tensor], state: Tensor | None, dt: Tensor | float) -> Tensor:
        """Where the pilot looks for this step's command: (H, W) in [0, 1] for one observation.

        Gradient times input of the command's size with respect to the (normalised) pixels,
        summed over colours and smoothed over a few pixels.
        """
        image = obs["image"]
        with torch.enable_grad():
            x = self._normalised(image).requires_grad_(True)
            features = self.encoder(x)
            if self.config.use_imu:
                features = torch.cat([features, (obs["imu"].float() - self.imu_mean) / self.imu_std], -1)
            state = self.initial_state(1) if state is None else state.detach()
            dt = torch.as_tensor(dt, dtype=torch.float32).reshape(1, 1)
            command, _ = self.head.step(features, state, dt * self.config.time_scale)
            (x_grad,) = torch.autograd.grad((command / self.command_scale).norm(), x)
        heat = (x_grad * x).detach().abs().sum(1, keepdim=True)
        heat = torch.nn.functional.avg_pool2d(heat, 5, stride=1, padding=2)[0, 0]
        return (heat - heat.min()) / (heat.max() - heat.min()).clamp_min(1e-12)

    def parameter_counts(self) -> dict[str, int]:
        """Count trainable parameters of the CNN, the head and in total.

        ``masked_out`` counts the head's entries that the wiring switches off (they never
        affect the output).
        """
        def count(module: nn.Module) -> int:
            return sum(p.numel() for p in module.parameters() if p.requires_grad)
        masked_out = getattr(self.head, "masked_out", lambda: 0)()
        return {"encoder": count(self.encoder), "head": count(self.head), "total": count(self),
                "masked_out": masked_out}
