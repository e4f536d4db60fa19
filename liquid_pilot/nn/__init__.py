"""Liquid networks: NCP wiring, CfC/LTC cells, the pilot model, checkpoints and export."""

from liquid_pilot.nn.checkpoint import CheckpointError, load_pilot, save_pilot
from liquid_pilot.nn.policy import COMMAND_AXES, IMU_FIELDS, Pilot, PilotConfig

__all__ = ["COMMAND_AXES", "IMU_FIELDS", "CheckpointError", "Pilot", "PilotConfig", "load_pilot", "save_pilot"]
