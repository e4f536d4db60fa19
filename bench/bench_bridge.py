"""The bridges: end-to-end success through MAVLink, the keep-alive rate under load, and the MAVLink library.

- **episodes**: the shipped pilot flies the same in-distribution seeds (forest_summer) directly (``episode.fly``
  with ``PilotPolicy``) and through the bridge to the simulator as a MAVLink vehicle (``MavlinkPilot``: camera ->
  pilot -> supervisor -> MAVLink over loopback UDP -> ``MavlinkVehicle``), as PX4 and as ArduPilot; success rates,
  time to target and the hand-over's cost. Target: within 5 points of direct. The direct run again, hovering first
  as long as the bridged run's hand-over took (``direct_after_handover``), separates the bridge's own effect
  (float32 setpoints over MAVLink) from the hand-over's (``--scenario wind`` shows it: gusts make the flight
  chaotic).
- **keepalive**: the real keep-alive thread (``Runner``) streams to a vehicle on its own thread, in real time, while
  one spinning process per core keeps every core busy: the measured rate (target within 10% of the setting) and
  the intervals between setpoints as the vehicle received them.
- **library**: pymavlink's import time and cost per setpoint (encode and send); with ``--mavsdk-python PYTHON``
  (a Python that has the ``mavsdk`` wheel) the same vehicle sees MAVSDK's offboard stream: time to find the
  autopilot, to start offboard, its rate, frame and type mask.

Prints one JSON object per line (metric, value, unit, and target where the project sets one).
Usage: python bench/bench_bridge.py [--quick] [--episodes N] [--scenario NAME] [--only PART] [--mavsdk-python PATH]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from liquid_pilot.bridge.mavlink import MavlinkBackend
from liquid_pilot.bridge.runner import Runner
from liquid_pilot.bridge.supervisor import Supervisor, SupervisorConfig
from liquid_pilot.models import default_model
from liquid_pilot.sim.config import load_scenario
from liquid_pilot.sim.episode import fly
from liquid_pilot.harness.mavlink_vehicle import Kinematic, MavlinkPilot, MavlinkVehicle
from liquid_pilot.harness.pilots import PilotPolicy
from liquid_pilot.sim.world import Observation, Simulator


def emit(metric: str, value: float | bool | str, unit: str, **extra: object) -> None:
    row = {"metric": metric, "value": round(value, 3) if isinstance(value, float) else value, "unit": unit}
    row.update(extra)
    print(json.dumps(row), flush=True)


class HoverFirst:
    """The pilot, after hovering as long as the bridge's hand-over took: the direct run with the same start."""

    def __init__(self, pilot: PilotPolicy):
        self.pilot, self.seconds, self.started = pilot, 0.0, False

    def reset(self) -> None:
        self.started = False

    def act(self, obs: Observation, sim: Simulator) -> np.ndarray:
        if obs.time < self.seconds - 1e-9:
            return np.zeros(4)
        if not self.started:
            self.pilot.reset()
            self.started = True
        return self.pilot.act(obs, sim)


def episodes(n: int, scenario: str) -> None:
    sim = Simulator(load_scenario(scenario))
    pilot = PilotPolicy.from_file(default_model())
    pilot.check(sim)
    hover_first = HoverFirst(pilot)
    policies = {"direct": pilot, "px4": MavlinkPilot(pilot, "px4"), "ardupilot": MavlinkPilot(pilot, "ardupilot"),
                "direct_after_handover": hover_first}
    results: dict[str, list] = {name: [] for name in policies}
    walls = {name: 0.0 for name in policies}
    for seed in range(n):
        for name, policy in policies.items():
            start = time.perf_counter()
            results[name].append(fly(sim, policy, seed))
            walls[name] += time.perf_counter() - start
            if name == "px4":  # the direct run with the same hover at the start as this bridged one
                hover_first.seconds = policy.enabled_at if policy.enabled_at is not None else 0.0
    direct = 100.0 * np.mean([r.success for r in results["direct"]])
    for name, rows in results.items():
        rate = 100.0 * np.mean([r.success for r in rows])
        times = [r.time_to_target for r in rows if r.success]
        extra = {} if name not in ("px4", "ardupilot") else {
            "target": f"within 5 points of direct ({direct:.1f}%)", "met": bool(abs(rate - direct) <= 5.0)}
        emit(f"episodes.{name}.success", rate, "%", episodes=n, scenario=scenario, **extra)
        emit(f"episodes.{name}.time_to_target", float(np.mean(times)) if times else float("nan"), "s")
        emit(f"episodes.{name}.wall_per_episode", walls[name] / n, "s")
        if name == "direct_after_handover":
            emit("episodes.px4.same_outcome_as_direct_after_handover", 100.0 * np.mean(
                [d.success == b.success for d, b in zip(rows, results["px4"], strict=True)]), "%",
                 note="the bridge's own effect: the same start, then float32 setpoints over MAVLink")
            emit("episodes.px4.max_final_distance_difference_after_handover", float(max(
                abs(d.final_distance - b.final_distance) for d, b in zip(rows, results["px4"], strict=True))), "m")
        elif name != "direct":
            both = [(b.time_to_target - d.time_to_target) for d, b in zip(results["direct"], rows, strict=True)
                    if d.success and b.success]
            emit(f"episodes.{name}.handover_delay", float(np.mean(both)) if both else float("nan"), "s",
                 note="hover while the stream primes and the mode switch shows in the next heartbeat")
            emit(f"episodes.{name}.same_outcome", 100.0 * np.mean(
                [d.success == b.success for d, b in zip(results["direct"], rows, strict=True)]), "%")
    for policy in policies.values():
        if isinstance(policy, MavlinkPilot):
            policy.close()
    sim.close()


def _spin(stop: multiprocessing.synchronize.Event) -> None:
    while not stop.is_set():
        pass


def keepalive(rate: float, seconds: float) -> None:
    clock = time.monotonic_ns
    backend = MavlinkBackend("udpin:127.0.0.1:0", "px4")
    port = backend.conn.port.getsockname()[1]
    vehicle = MavlinkVehicle(Kinematic((0.0, 0.0, 1.0)), f"udpout:127.0.0.1:{port}", "px4", armed=True)
    sup = Supervisor(backend, SupervisorConfig(prime_s=0.2, command_timeout=seconds + 5), clock)
    runner = Runner(sup, rate)
    stop_vehicle = threading.Event()
    thread = threading.Thread(target=vehicle.run, args=(stop_vehicle, 0.01), daemon=True)
    stop_load = multiprocessing.Event()
    load = [multiprocessing.Process(target=_spin, args=(stop_load,), daemon=True) for _ in range(os.cpu_count() or 2)]
    thread.start()
    runner.start()
    deadline = time.monotonic() + 10
    while sup.state != "flying" and time.monotonic() < deadline:
        stop_vehicle.wait(0.05)
    for process in load:
        process.start()
    n0, t0 = len(vehicle.setpoints), time.monotonic()
    while time.monotonic() - t0 < seconds:
        sup.command((0.1, 0.0, 0.0, 0.0))
        stop_vehicle.wait(0.05)
    n1, t1 = len(vehicle.setpoints), time.monotonic()
    stop_load.set()
    for process in load:
        process.join(5)
    runner.stop(1.0)
    stop_vehicle.set()
    thread.join(2)
    times = np.array([sp.time for sp in vehicle.setpoints[n0:n1]]) / 1e9
    gaps = np.diff(times) * 1000
    measured = (n1 - n0) / (t1 - t0)
    emit(f"keepalive.{rate:g}hz.rate", measured, "Hz", target=f"within 10% of {rate:g}",
         met=bool(abs(measured - rate) <= 0.1 * rate), cores_busy=len(load))
    emit(f"keepalive.{rate:g}hz.interval_p50", float(np.percentile(gaps, 50)), "ms")
    emit(f"keepalive.{rate:g}hz.interval_p99", float(np.percentile(gaps, 99)), "ms",
         note="as the vehicle's 10 ms loop received them")
    emit(f"keepalive.{rate:g}hz.interval_max", float(gaps.max()), "ms")
    backend.close()
    vehicle.conn.close()


MAVSDK_CLIENT = '''
import sys, time
t0 = time.perf_counter()
from mavsdk import ComponentType, Configuration, Mavsdk
from mavsdk.plugins.offboard.offboard import Offboard, VelocityBodyYawspeed
imported = time.perf_counter() - t0
drone = Mavsdk(Configuration.create_with_component_type(ComponentType.COMPANION_COMPUTER))
drone.add_any_connection(f"udpin://127.0.0.1:{sys.argv[1]}")
t1 = time.perf_counter()
system = drone.first_autopilot(10.0)
found = time.perf_counter() - t1
offboard = Offboard(system)
offboard.set_velocity_body(VelocityBodyYawspeed(0.5, -0.2, -0.1, -17.19))  # FRD, deg/s
t2 = time.perf_counter()
result = offboard.start()
started = time.perf_counter() - t2
time.sleep(3.0)
print(f"RESULT {imported} {found} {started} {result}", flush=True)
'''


def library(mavsdk_python: str | None) -> None:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", "import os; os.environ['MAVLINK20'] = '1'; "
                          "from pymavlink import mavutil"], capture_output=True, text=True)
    emit("library.pymavlink.import", time.perf_counter() - start, "s", note="a fresh interpreter, all included",
         ok=out.returncode == 0)
    backend = MavlinkBackend("udpout:127.0.0.1:9", "px4")  # the discard port: sending is all that is timed
    backend.target_system = 1
    n = 20000
    start = time.perf_counter()
    for i in range(n):
        backend.send((0.5, 0.1, 0.0, 0.2), i * 1_000_000)
    emit("library.pymavlink.setpoint", (time.perf_counter() - start) / n * 1e6, "us",
         note="convert, encode SET_POSITION_TARGET_LOCAL_NED, sendto")
    backend.close()
    if not mavsdk_python:
        emit("library.mavsdk", "not measured", "", note="pass --mavsdk-python PYTHON (a venv with the mavsdk wheel)")
        return
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "client.py"
        script.write_text(MAVSDK_CLIENT)
        client = subprocess.Popen([mavsdk_python, str(script), str(port)], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        vehicle = MavlinkVehicle(Kinematic((0.0, 0.0, 1.0)), f"udpout:127.0.0.1:{port}", "px4", armed=True)
        deadline = time.monotonic() + 30
        while client.poll() is None and time.monotonic() < deadline:
            now = time.monotonic_ns()
            vehicle.publish(now)
            vehicle.receive(now)
            time.sleep(0.01)
        output = client.communicate(timeout=10)[0]
    line = next((x for x in output.splitlines() if x.startswith("RESULT")), None)
    if line is None:
        emit("library.mavsdk", "failed", "", output=output[-500:])
        return
    _, imported, found, started, result = line.split(maxsplit=4)
    emit("library.mavsdk.import", float(imported), "s")
    emit("library.mavsdk.first_autopilot", float(found), "s")
    emit("library.mavsdk.offboard_start", float(started), "s", result=result, mode=vehicle.mode)
    sp = vehicle.setpoints
    if len(sp) > 2:
        t = np.array([x.time for x in sp]) / 1e9
        emit("library.mavsdk.stream_rate", (len(t) - 1) / (t[-1] - t[0]), "Hz",
             frames=sorted({x.frame for x in sp}), type_masks=sorted({x.type_mask for x in sp}),
             last=[round(v, 4) for v in (*sp[-1].velocity, sp[-1].yaw_rate)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 episodes, 2 s of keep-alive")
    parser.add_argument("--episodes", type=int, default=None, help="episodes per way of flying (default 50)")
    parser.add_argument("--mavsdk-python", default=None, help="a Python with the mavsdk wheel, to measure MAVSDK")
    parser.add_argument("--scenario", default="forest_summer", help="condition of the episodes (in distribution)")
    parser.add_argument("--only", choices=("library", "keepalive", "episodes"), help="one part only")
    args = parser.parse_args()
    if args.only in (None, "library"):
        library(args.mavsdk_python)
    if args.only in (None, "keepalive"):
        for rate in (20.0, 50.0):
            keepalive(rate, 2.0 if args.quick else 5.0)
    if args.only in (None, "episodes"):
        episodes(args.episodes or (10 if args.quick else 50), args.scenario)


if __name__ == "__main__":
    main()
