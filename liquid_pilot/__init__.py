"""liquid_pilot: fly a drone with a liquid neural network."""

__version__ = "0.1.0"
