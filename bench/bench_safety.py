"""Safety benchmark of pilot_node over DDS: the last command on exit, a silent camera, starving frames. JSON lines.

- **exit**: pilot_node runs as its own process (``python -m liquid_pilot.ros.pilot_node``, a
  tiny checkpoint, ``start_enabled``); this process feeds it IMU samples and 64x64 frames at
  30 Hz until it flies (non-zero commands), then keeps both cores busy with two spinning
  processes at normal priority for a second of flight, sends SIGTERM or SIGINT (or makes its
  spin loop raise: an exception, injected by a wrapper around the executor, not a change to
  the node) while the frames keep coming, and records whether the last cmd_vel that a
  reliable listener (depth 100) received is zero. The load starts once the pilot flies, so
  that its start-up (about 5 s alone, 11 s under the load) does not dominate the run.
- **silent camera**: an in-process pilot (its production executor on its own thread) flies on
  frames and IMU samples; the frames stop while the IMU goes on; the delay from the last flown
  command to the first zero is timed on the commands' stamps (flown commands carry their frame's
  stamp, zero ones the pilot's clock) and must be within camera_timeout + one control period.
- **starvation**: while the pilot flies on 64x64 frames at 30 Hz, a frame it cannot use quickly
  arrives at 10 Hz for 3 s on the same topic: an 8000x8000 PNG of zeros (about 200 KB on the
  wire; refused on its header) on the compressed transport, or a 20 MB raw rgb8 frame
  (2582x2582; under max_image_pixels, so decoded and resized when it gets through) on the raw
  transport, best effort or reliable (publisher depth 1 and 5). The share of control ticks
  published must stay >= 90%: 1 - missed / expected, a gap of more than 1.5 control periods
  between commands' DDS arrivals here counting as its periods less one (commands per second /
  control_rate, which also counts the answers to frames, is reported beside it). The baseline
  is the same pilot in the 3 s before the large frames.

Every pilot process is killed at the end of its trial, and so are the spinning processes.
    python bench/bench_safety.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import rclpy
from bench_support import Frames
from geometry_msgs.msg import TwistStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, Imu

from liquid_pilot.flight.codec import stamp_ns
from liquid_pilot.nn.checkpoint import save_pilot
from liquid_pilot.nn.policy import Pilot
from liquid_pilot.ros.convert import time_msg
from liquid_pilot.ros.spin import Background, single_thread_executor, spinning

CAMERA_HZ = 30.0
CONTROL_RATE = 50.0  # the pilot's default
CAMERA_TIMEOUT = 0.2  # s: the pilot's default
DISCOVERY_S = 60.0  # s: the pilot's start-up (model export included) and discovery, on a loaded machine
EXIT_S = 20.0  # s: a pilot that has not exited this long after the signal is killed and counted as hung
LOAD_S = 1.0  # s of flight under the load before the signal
BUSY = "while True: pass"
TICKS_TARGET = 90.0  # %
# Makes the pilot's spin loop raise on SIGUSR1: an exception inside the node's process, the node unchanged.
FAULTY = """
import signal, sys
import liquid_pilot.ros.spin as spin
fault = []
signal.signal(signal.SIGUSR1, lambda *_: fault.append(True))
make = spin.single_thread_executor
class Faulty:
    def __init__(self, inner):
        self.inner = inner
    def __getattr__(self, name):
        return getattr(self.inner, name)
    def spin_once(self, *args, **kwargs):
        if fault:
            raise RuntimeError("fault injected into the pilot's spin loop")
        return self.inner.spin_once(*args, **kwargs)
spin.single_thread_executor = lambda: Faulty(make())
from liquid_pilot.ros.pilot_node import main
raise SystemExit(main(sys.argv))
"""
EXIT_KINDS = {"sigterm": signal.SIGTERM, "sigint": signal.SIGINT, "exception": signal.SIGUSR1}


def emit(metric: str, value: object, unit: str, **extra: object) -> None:
    print(json.dumps({"metric": metric, "value": value, "unit": unit, **extra}), flush=True)


def wait_for(condition: Callable[[], object], timeout: float, what: str = "") -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            if what:
                raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
            return False
        time.sleep(0.005)
    return True


def sensor_qos(reliability: str, depth: int = 1) -> QoSProfile:
    """The drone's sensor publishers for a pilot whose ``sensor_reliability`` is ``reliability``."""
    if reliability == "reliable":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)
    return qos_profile_sensor_data


def raw_frames(count: int, size: int = 64) -> Frames:
    rng = np.random.default_rng(5)
    return Frames([Image(height=size, width=size, encoding="rgb8", step=size * 3,
                         data=rng.integers(0, 256, (size, size, 3), dtype=np.uint8).tobytes()) for _ in range(count)])


def compressed_frames(count: int) -> Frames:
    rng = np.random.default_rng(5)
    return Frames([CompressedImage(format="rgb8; jpeg compressed bgr8", data=cv2.imencode(
        ".jpg", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))[1].tobytes()) for _ in range(count)])


class Drone:
    """The drone around a pilot: IMU and camera publishers fed at 30 Hz on a thread, a cmd_vel listener."""

    def __init__(self, executor: SingleThreadedExecutor, namespace: str, frames: Frames, transport: str = "raw",
                 reliability: str = "best_effort", depth: int = 1):
        self.executor = executor
        self.node = rclpy.create_node("drone", namespace=namespace)
        image_cls, topic = (Image, "camera/image_raw") if transport == "raw" else (
            CompressedImage, "camera/image_raw/compressed")
        self.images = self.node.create_publisher(image_cls, topic, sensor_qos(reliability, depth))
        self.imu = self.node.create_publisher(Imu, "imu/data", sensor_qos(reliability, depth))
        self.commands: list[tuple[float, int, tuple[float, ...]]] = []  # (callback monotonic, stamp, command)
        self.arrivals: list[int] = []  # DDS receive time (ns, system clock) of each command
        self.node.create_subscription(TwistStamped, "cmd_vel", self._on_command, QoSProfile(depth=100))
        executor.add_node(self.node)
        self.frames = frames
        self.lock = threading.Lock()  # around the sets of stamps sent
        self.sent: set[int] = set()  # stamps of the frames published
        self.camera = threading.Event()  # frames are published while set (the IMU always)
        self.extra: Frames | None = None  # published as well on every third frame while set
        self.extra_sent: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def _on_command(self, msg: TwistStamped, info: dict) -> None:
        t = msg.twist
        self.arrivals.append(info["received_timestamp"])
        self.commands.append((time.monotonic(), stamp_ns(msg.header.stamp),
                              (t.linear.x, t.linear.y, t.linear.z, t.angular.z)))

    def _feed(self) -> None:
        sample = Imu()
        sample.linear_acceleration.z = 9.81
        sample.angular_velocity.z = 0.01
        period, k = 1.0 / CAMERA_HZ, 0
        due = time.monotonic()
        while not self._stop.is_set():
            due += period
            delay = due - time.monotonic()
            if delay < -period:
                due = time.monotonic()  # stalled: do not burst
            elif delay > 0 and self._stop.wait(delay):
                break
            sample.header.stamp = time_msg(time.time_ns())
            self.imu.publish(sample)
            if self.camera.is_set():
                stamp = time.time_ns()
                self.images.publish(self.frames.stamped(k, stamp))
                with self.lock:
                    self.sent.add(stamp)
                extra = self.extra
                if extra is not None and k % 3 == 0:
                    stamp = time.time_ns()
                    self.images.publish(extra.stamped(k, stamp))
                    with self.lock:
                        self.extra_sent.append(stamp)
            k += 1

    def connected(self) -> bool:
        return bool(self.images.get_subscription_count() and self.imu.get_subscription_count() and self.commands)

    def flying(self, since: int = 0) -> bool:
        """Whether a command from a frame (its stamp), non-zero, has arrived among the commands from ``since``."""
        return any(stamp in self.sent and any(command) for _, stamp, command in self.commands[since:])

    def quiet(self, seconds: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until no command has arrived for ``seconds`` (the pilot is gone: the last ones delivered)."""
        wait_for(lambda: not self.commands or time.monotonic() - self.commands[-1][0] > seconds, timeout)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.executor.remove_node(self.node)
        self.node.destroy_node()


def start_pilot(model: Path, namespace: str, log: Path, *params: str, faulty: bool = False) -> subprocess.Popen:
    head = [sys.executable, "-c", FAULTY] if faulty else [sys.executable, "-m", "liquid_pilot.ros.pilot_node"]
    args = ["--ros-args", "-r", f"__ns:=/{namespace}", "-p", "start_enabled:=true", "-p", f"model:={model}"]
    for param in params:
        args += ["-p", param]
    with open(log, "w") as out:
        return subprocess.Popen(head + args, stdout=out, stderr=subprocess.STDOUT)


def end(process: subprocess.Popen) -> None:
    """Make sure a process started here is gone."""
    if process.poll() is None:
        process.kill()
    process.wait()


@contextmanager
def busy(cores: int = 2) -> Iterator[None]:
    """Keep ``cores`` cores busy with spinning processes at normal priority."""
    loaders = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(cores)]
    try:
        yield
    finally:
        for loader in loaders:
            end(loader)


def exit_trial(executor: SingleThreadedExecutor, model: Path, kind: str, index: int, tmp: Path) -> dict[str, object]:
    """One flight ended by ``kind``: was the last command received zero?"""
    namespace = f"exit_{kind}_{index}"
    log = tmp / f"{namespace}.log"
    drone = Drone(executor, namespace, raw_frames(30))
    pilot = start_pilot(model, namespace, log, faulty=kind == "exception")
    try:
        wait_for(drone.connected, DISCOVERY_S, "the pilot to connect")
        drone.camera.set()
        wait_for(drone.flying, DISCOVERY_S, "non-zero commands")
        with busy():
            time.sleep(LOAD_S)  # flight under the load
            before = len(drone.commands)
            flying = drone.flying(max(0, before - 25))  # flown on a frame in the last half second
            pilot.send_signal(EXIT_KINDS[kind])
            signalled = time.monotonic()
            try:
                rc = pilot.wait(EXIT_S)
                hung = False
            except subprocess.TimeoutExpired:
                rc, hung = None, True
            exit_s = time.monotonic() - signalled
        drone.quiet()
        last = drone.commands[-1][2] if drone.commands else None
        zero_s = drone.commands[-1][0] - signalled if drone.commands else 0.0
        text = log.read_text(errors="replace")
        return {"zero": last == (0.0, 0.0, 0.0, 0.0), "last": last, "rc": rc, "hung": hung,
                "exit_s": round(exit_s, 3), "zero_s": round(zero_s, 3), "flying_at_signal": flying,
                "after_signal": len(drone.commands) - before,
                "unacknowledged": "not acknowledged" in text,
                "no_final_zero": "could not publish the final zero" in text,
                "log_tail": text[-600:]}
    finally:
        end(pilot)
        drone.close()


def silent_camera(executor: SingleThreadedExecutor, model: Path, trials: int) -> list[float]:
    """Delays (s) from the last flown command's stamp to the first zero's, one per trial."""
    from liquid_pilot.ros.pilot_node import PilotNode

    pilot = PilotNode(namespace="silent", parameter_overrides=[
        Parameter("model", value=str(model)), Parameter("start_enabled", value=True),
        Parameter("camera_timeout", value=CAMERA_TIMEOUT), Parameter("control_rate", value=CONTROL_RATE)])
    pilot_executor = single_thread_executor()  # as pilot_node runs it
    pilot_executor.add_node(pilot)
    background = Background(pilot_executor)
    drone = Drone(executor, "silent", raw_frames(30))
    delays = []
    try:
        wait_for(drone.connected, DISCOVERY_S, "the in-process pilot to connect")
        for _ in range(trials):
            start = len(drone.commands)
            drone.camera.set()
            wait_for(lambda: drone.flying(start), 10.0, "non-zero commands")
            time.sleep(0.3)  # steady flight on several frames
            drone.camera.clear()
            stopped = len(drone.commands)
            wait_for(lambda: any(stamp not in drone.sent and not any(command)
                                 for _, stamp, command in drone.commands[stopped:]), 5.0, "a zero command")
            # The last frame's answer may arrive after the camera stopped: the flown commands up to the first zero.
            after = drone.commands[stopped:]
            first_zero = next(i for i, (_, stamp, command) in enumerate(after)
                              if stamp not in drone.sent and not any(command))
            zero = after[first_zero][1]
            flown = [stamp for _, stamp, command in drone.commands[:stopped] + after[:first_zero]
                     if stamp in drone.sent and any(command)]
            delays.append((zero - max(flown)) / 1e9)
            time.sleep(0.1)
    finally:
        drone.close()
        background.stop()
        pilot.destroy_node()
    return delays


def starvation(executor: SingleThreadedExecutor, model: Path, transport: str, reliability: str, depth: int,
               big: Frames, seconds: float, tmp: Path) -> tuple[dict[str, object], dict[str, object]]:
    """The command stream while an unusable frame arrives at 10 Hz amid 64x64 frames at 30 Hz, and
    before (the baseline: the same pilot and frames, ``seconds`` without the large ones)."""
    namespace = f"starve_{transport}_{reliability}_{depth}"
    log = tmp / f"{namespace}.log"
    frames = raw_frames(30) if transport == "raw" else compressed_frames(30)
    drone = Drone(executor, namespace, frames, transport, reliability, depth)
    pilot = start_pilot(model, namespace, log, f"image_transport:={transport}",
                        f"sensor_reliability:={reliability}", f"control_rate:={CONTROL_RATE}")
    try:
        wait_for(drone.connected, DISCOVERY_S, "the pilot to connect")
        drone.camera.set()
        wait_for(drone.flying, DISCOVERY_S, "non-zero commands")
        time.sleep(0.5)
        calm = time.time_ns()
        time.sleep(seconds)
        start = time.time_ns()
        drone.extra = big
        time.sleep(seconds)
        drone.extra = None
        finish = time.time_ns()
        time.sleep(0.3)
    finally:
        end(pilot)
        drone.close()
    return ({**stream(drone, calm, start), "faults": faults(log, calm, start)},
            {**stream(drone, start, finish), "faults": faults(log, start, finish)})


def faults(log: Path, start: int, finish: int) -> list[str]:
    """The kinds of the faults the pilot logged between two times (ns, system clock)."""
    kinds = set()
    for line in log.read_text(errors="replace").splitlines():
        parts = line.split(" ", 2)  # [WARN] [seconds.nanoseconds] [name]: message [kind]
        if len(parts) == 3 and parts[0] == "[WARN]" and line.endswith("]"):
            try:
                when = float(parts[1].strip("[]")) * 1e9
            except ValueError:
                continue
            if start <= when < finish:
                kinds.add(line.rsplit("[", 1)[1].rstrip("]"))
    return sorted(kinds)


def stream(drone: Drone, start: int, finish: int) -> dict[str, object]:
    """The commands that arrived (DDS receive time in this process: not delayed by this process's Python,
    which publishing large frames stalls) between two times (ns, system clock).

    ticks: the share of control ticks published, 1 - missed / expected, a gap of more than 1.5
    control periods between commands (answers to frames included) counting as its periods less one.
    """
    period = 1e9 / CONTROL_RATE
    window = [(arrival, stamp, command) for arrival, (_, stamp, command) in zip(drone.arrivals, drone.commands)
              if start <= arrival < finish]
    arrivals = np.array([start] + [arrival for arrival, _, _ in window] + [finish], dtype=np.float64)
    gaps = np.diff(arrivals) / period
    expected = (finish - start) / period
    missed = int(sum(round(g) - 1 for g in gaps if g > 1.5))
    with drone.lock:
        sent = {stamp for stamp in drone.sent if start <= stamp < finish}
        extra = {stamp for stamp in drone.extra_sent if start <= stamp < finish}
    stamps = {stamp for _, stamp, _ in window}
    return {"ticks": round(100.0 * (expected - missed) / expected, 1), "missed": missed,
            "commands": round(100.0 * len(window) / expected, 1),
            "max_gap_ms": round(float(gaps.max() * period / 1e6), 1),
            "frames_answered": round(100.0 * len(stamps & sent) / max(1, len(sent)), 1),
            "flown": round(100.0 * sum(any(c) for _, _, c in window) / max(1, len(window)), 1),
            "big_sent": len(extra), "big_answered": len(stamps & extra)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 exit trials of each kind instead of 20, "
                                                             "5 silent-camera trials instead of 20")
    parser.add_argument("--only", choices=("exit", "silent", "starvation"), help="run one part")
    args = parser.parse_args()
    exit_trials = {"sigterm": 3, "sigint": 3, "exception": 2} if args.quick else \
        {"sigterm": 20, "sigint": 20, "exception": 5}
    silent_trials = 5 if args.quick else 20
    starve_s = 3.0
    os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)  # isolated from other runs
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    rclpy.init()
    try:
        with tempfile.TemporaryDirectory() as tmp_name, spinning() as executor:
            tmp = Path(tmp_name)
            model = tmp / "pilot.pt"
            save_pilot(Pilot(seed=3), model)

            for kind, trials in exit_trials.items() if args.only in (None, "exit") else ():
                results = []
                for index in range(trials):
                    try:
                        results.append(exit_trial(executor, model, kind, index, tmp))
                    except RuntimeError as exc:  # the pilot did not come up or fly: a failed trial, said so
                        results.append({"zero": False, "error": str(exc)})
                failed = [r for r in results if not r["zero"]]
                exits = [r["exit_s"] for r in results if "exit_s" in r]
                zeros = [r["zero_s"] for r in results if "zero_s" in r]
                emit("exit_final_zero", sum(r["zero"] for r in results), "trials", trials=trials, target=trials,
                     exit=kind, load="2 spinning processes at normal priority on 2 cores",
                     exit_s_p50=round(float(np.median(exits)), 3) if exits else None,
                     exit_s_max=max(exits) if exits else None,
                     last_command_s_p50=round(float(np.median(zeros)), 3) if zeros else None,
                     last_command_s_max=max(zeros) if zeros else None,
                     rc=sorted({str(r.get("rc")) for r in results}),
                     flying_at_signal=sum(bool(r.get("flying_at_signal")) for r in results),
                     commands_after_signal_p50=float(np.median([r["after_signal"] for r in results
                                                                if "after_signal" in r] or [0])),
                     hung=sum(bool(r.get("hung")) for r in results),
                     unacknowledged=sum(bool(r.get("unacknowledged")) for r in results),
                     unacknowledged_is="trials where the pilot logged that the final zero was not acknowledged "
                     "within its wait (1 s)", last_command_is="s from the signal to the last command's arrival here",
                     failures=[{k: r.get(k) for k in ("last", "rc", "hung", "error", "log_tail")} for r in failed][:3])

            if args.only in (None, "silent"):
                delays = np.array(silent_camera(executor, model, silent_trials)) * 1e3
                bound = (CAMERA_TIMEOUT + 1.0 / CONTROL_RATE) * 1e3
                emit("silent_camera_zero_within_bound", int(np.sum(delays <= bound)), "trials", trials=len(delays),
                     target=len(delays), bound_ms=bound, delay_ms_p50=round(float(np.median(delays)), 1),
                     delay_ms_max=round(float(delays.max()), 1), delay_ms_min=round(float(delays.min()), 1),
                     note="last flown command's stamp (its frame's) to the first zero command's (the pilot's clock)")

            if args.only in (None, "starvation"):
                png = cv2.imencode(".png", np.zeros((8000, 8000, 3), np.uint8))[1].tobytes()
                big_png = Frames([CompressedImage(format="png", data=png)])
                side = 2582
                big_raw = Frames([Image(height=side, width=side, encoding="rgb8", step=side * 3,
                                        data=bytes(side * side * 3))])
                raw = f"{side}x{side} rgb8, {side * side * 3 / 1e6:.1f} MB"
                cases = [("compressed", "best_effort", 5, big_png, f"8000x8000 PNG, {len(png) / 1e3:.0f} KB"),
                         ("raw", "best_effort", 5, big_raw, raw), ("raw", "reliable", 1, big_raw, raw),
                         ("raw", "reliable", 5, big_raw, raw)]
                for transport, reliability, depth, big, what in cases:
                    base, r = starvation(executor, model, transport, reliability, depth, big, starve_s, tmp)
                    emit("starvation_control_ticks", r["ticks"], "%", target=TICKS_TARGET,
                         passes=r["ticks"] >= TICKS_TARGET, baseline=base["ticks"],
                         ratio=round(r["ticks"] / base["ticks"], 3), image_transport=transport,
                         sensor_reliability=reliability, publisher_depth=depth, big_frame=what, big_hz=CAMERA_HZ / 3,
                         normal_frames="64x64 at 30 Hz", seconds=starve_s, control_rate=CONTROL_RATE,
                         missed_ticks=r["missed"], baseline_missed_ticks=base["missed"],
                         commands_per_s_over_rate=r["commands"], baseline_commands_per_s_over_rate=base["commands"],
                         max_gap_ms=r["max_gap_ms"], baseline_max_gap_ms=base["max_gap_ms"],
                         normal_frames_answered=r["frames_answered"], baseline_frames_answered=base["frames_answered"],
                         commands_flown=r["flown"], baseline_commands_flown=base["flown"], big_sent=r["big_sent"],
                         big_answered=r["big_answered"], pilot_faults=r["faults"], baseline_pilot_faults=base["faults"],
                         baseline_is=f"the same pilot and frames, the {starve_s:g} s before the large frames")
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
