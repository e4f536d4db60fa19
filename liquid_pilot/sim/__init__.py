"""PyBullet quadrotor simulator: scenes, tasks, disturbances, expert and gymnasium environment."""

import gymnasium

from liquid_pilot.sim.config import Scenario, ScenarioError, list_scenarios, load_scenario

gymnasium.register(id="LiquidPilot-v0", entry_point="liquid_pilot.sim.env:LiquidPilotEnv")

__all__ = ["Scenario", "ScenarioError", "list_scenarios", "load_scenario"]
