"""End to end: camera -> pilot -> supervisor -> MAVLink (loopback UDP) -> the simulator as a PX4/ArduPilot vehicle.

The shipped pilot flies the same seeds directly (``episode.fly`` with ``PilotPolicy``) and through the bridge
(``MavlinkPilot``): it must reach the chair through the bridge wherever it does directly. A handful of
episodes (about 10 s); bench/bench_bridge.py flies more and reports the rates.
"""
from __future__ import annotations

import pytest

from liquid_pilot.models import default_model
from liquid_pilot.sim.config import load_scenario
from liquid_pilot.sim.episode import fly
from liquid_pilot.harness.mavlink_vehicle import MavlinkPilot
from liquid_pilot.harness.pilots import PilotPolicy
from liquid_pilot.sim.world import Simulator


@pytest.fixture(scope="module")
def sim():
    simulator = Simulator(load_scenario("forest_summer"))
    yield simulator
    simulator.close()


@pytest.mark.parametrize(("flavour", "seeds"), [("px4", [0, 1, 2]), ("ardupilot", [3, 4])])
def test_the_pilot_reaches_the_chair_through_mavlink_as_it_does_directly(sim: Simulator, flavour: str,
                                                                         seeds: list[int]) -> None:
    pilot = PilotPolicy.from_file(default_model())
    pilot.check(sim)
    bridged = MavlinkPilot(pilot, flavour)
    try:
        for seed in seeds:
            direct = fly(sim, pilot, seed)
            through = fly(sim, bridged, seed)
            assert through.success or not direct.success, (seed, direct.reason, through.reason)
            assert bridged.states == ["wait_airborne", "prime", "switch", "flying"]  # handed over, then flown
            vehicle = bridged.vehicle
            assert vehicle.ignored == {"frame": 0, "mask": 0, "target": 0} and vehicle.failsafes == 0
            assert vehicle.mode == ("OFFBOARD" if flavour == "px4" else "GUIDED")
            # The hand-over (the climb settling for settle_s, 1 s of stream, the mode switch seen in the next 1 Hz
            # heartbeat) costs about 3 s of hovering before the pilot flies.
            if direct.success:
                assert 0.0 < through.time_to_target - direct.time_to_target < 4.0
    finally:
        bridged.close()
