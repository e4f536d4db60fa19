"""pilot_node's last word: SIGTERM, SIGINT or an exception, with both cores busy, ends the command stream with zero.

Each pilot runs as its own process (``python -m liquid_pilot.ros.pilot_node``, as launched) and
flies on IMU samples and 64x64 frames at 30 Hz; two spinning processes at normal priority then
keep both cores busy while it is stopped, and the last cmd_vel that a reliable listener received
must be zero. The exception is injected by a wrapper around the executor (the spin loop raises),
the node itself unchanged. The pilot is a tiny network exported to ONNX once: a checkpoint would
make each pilot import PyTorch and export it again at start-up (5-9 s each on this 2-core
machine, against 1 s), the exit path being the same. The pilots start together, then fly and
stop one at a time: about 30 s in all.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import TwistStamped
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, Imu
from test_ros_support import Ros, wait_for

from liquid_pilot.flight.codec import stamp_ns
from liquid_pilot.nn.export import export_onnx
from liquid_pilot.nn.policy import Pilot
from liquid_pilot.ros.convert import time_msg

TRIALS = 3
START_S = 60.0  # s: the pilots' start-up, all at once on a loaded machine
EXIT_S = 20.0  # s: a pilot still running this long after the signal has hung
LOAD_S = 0.5  # s of flight with both cores busy before the stop
CAMERA_HZ = 30.0
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
ZERO = (0.0, 0.0, 0.0, 0.0)


class PilotProcess:
    """A pilot_node process in its own namespace, and the drone around it: IMU, camera, a cmd_vel listener."""

    def __init__(self, ros: Ros, model: Path, namespace: str, log: Path, faulty: bool = False):
        self.namespace, self.log = namespace, log
        head = [sys.executable, "-c", FAULTY] if faulty else [sys.executable, "-m", "liquid_pilot.ros.pilot_node"]
        with open(log, "w") as out:
            self.process = subprocess.Popen(head + ["--ros-args", "-r", f"__ns:=/{namespace}", "-p",
                                                    "start_enabled:=true", "-p", f"model:={model}"],
                                            stdout=out, stderr=subprocess.STDOUT)
        self.node = ros.node("drone", namespace)
        self.images = self.node.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
        self.imu = self.node.create_publisher(Imu, "imu/data", qos_profile_sensor_data)
        self.commands: list[tuple[float, int, tuple[float, ...]]] = []  # (arrival, stamp, command)
        self.sent: set[int] = set()
        self.node.create_subscription(TwistStamped, "cmd_vel", self._on_command, QoSProfile(depth=100))

    def _on_command(self, msg: TwistStamped) -> None:
        t = msg.twist
        self.commands.append((time.monotonic(), stamp_ns(msg.header.stamp),
                              (t.linear.x, t.linear.y, t.linear.z, t.angular.z)))

    def connected(self) -> bool:
        return bool(self.images.get_subscription_count() and self.imu.get_subscription_count() and self.commands)

    def flying(self) -> bool:
        return any(stamp in self.sent and command != ZERO for _, stamp, command in self.commands[-50:])

    @contextmanager
    def fed(self) -> Iterator[None]:
        """IMU samples and frames at 30 Hz, each stamped as it is published."""
        stop = threading.Event()
        rng = np.random.default_rng(3)
        frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8).tobytes() for _ in range(10)]

        def feed() -> None:
            imu = Imu()
            imu.linear_acceleration.z = 9.81
            image = Image(height=64, width=64, encoding="rgb8", step=192)
            k = 0
            while not stop.wait(1.0 / CAMERA_HZ):
                imu.header.stamp = time_msg(time.time_ns())
                self.imu.publish(imu)
                image.data = frames[k % len(frames)]
                stamp = time.time_ns()
                image.header.stamp = time_msg(stamp)
                self.images.publish(image)
                self.sent.add(stamp)
                k += 1

        thread = threading.Thread(target=feed, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@contextmanager
def busy(cores: int = 2) -> Iterator[None]:
    """Keep ``cores`` cores busy with spinning processes at normal priority."""
    loaders = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        yield
    finally:
        for loader in loaders:
            loader.kill()
            loader.wait()


@pytest.fixture(scope="module")
def pilots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, PilotProcess]]:
    """All the trials' pilots, started together (on an isolated domain: Ros isolates it)."""
    tmp = tmp_path_factory.mktemp("exit")
    model = tmp / "pilot.onnx"
    export_onnx(Pilot(seed=3), model, batch=1)
    names = [f"{kind}_{i}" for kind in ("sigterm", "sigint") for i in range(TRIALS)] + ["exception_0"]
    with Ros() as ros:
        started: dict[str, PilotProcess] = {}
        try:
            for name in names:
                started[name] = PilotProcess(ros, model, f"exit_{name}", tmp / f"{name}.log",
                                             faulty=name.startswith("exception"))
            yield started
        finally:
            for pilot in started.values():
                pilot.end()


def stop_in_flight(pilot: PilotProcess, sig: int) -> int | None:
    """Fly the pilot, stop it with ``sig`` while both cores are busy and frames keep coming; its exit code."""
    assert wait_for(pilot.connected, START_S), f"{pilot.namespace} did not come up:\n{pilot.log.read_text()}"
    with pilot.fed():
        assert wait_for(pilot.flying, 20.0), f"{pilot.namespace} did not fly:\n{pilot.log.read_text()}"
        with busy():
            time.sleep(LOAD_S)  # flight under the load, not a wait for anything
            pilot.process.send_signal(sig)
            try:
                rc = pilot.process.wait(EXIT_S)
            except subprocess.TimeoutExpired:
                rc = None
    # The pilot is gone: the commands it sent are delivered; let the listener's executor take the last ones.
    wait_for(lambda: time.monotonic() - pilot.commands[-1][0] > 0.3, 10.0)
    return rc


def check_zero(pilot: PilotProcess, rc: int | None) -> str | None:
    """None if the last command was zero, else what went wrong."""
    last = pilot.commands[-1][2]
    if rc is not None and last == ZERO:
        return None
    return (f"{pilot.namespace}: exit code {rc} ({'hung' if rc is None else 'exited'}), last command {last}; "
            f"log:\n{pilot.log.read_text()[-1500:]}")


@pytest.mark.parametrize("kind", ["sigterm", "sigint"])
def test_signal_under_load_ends_with_a_zero_command(pilots: dict[str, PilotProcess], kind: str) -> None:
    sig = signal.SIGTERM if kind == "sigterm" else signal.SIGINT
    failures = []
    for i in range(TRIALS):
        pilot = pilots[f"{kind}_{i}"]
        try:
            rc = stop_in_flight(pilot, sig)
        finally:
            pilot.end()
        failure = check_zero(pilot, rc)
        if failure is None and rc != 0:
            failure = f"{pilot.namespace}: exit code {rc} after {kind}:\n{pilot.log.read_text()[-1500:]}"
        text = pilot.log.read_text()
        # The listener had the zero: the pilot's line about it must say so or say why it cannot know (the DDS
        # acknowledgement comes at the writer's heartbeat, every 3 s), never that a subscriber failed to get it.
        if failure is None and not ("final zero acknowledged by 1 reliable subscriber" in text or
                                    "not acknowledged within 0.5 s: DDS readers in other processes" in text):
            failure = f"{pilot.namespace}: no true line about the final zero:\n{text[-1500:]}"
        if failure:
            failures.append(failure)
    assert not failures, f"{len(failures)} of {TRIALS} {kind} trials failed:\n" + "\n".join(failures)


def test_exception_in_the_spin_loop_under_load_ends_with_a_zero_command(pilots: dict[str, PilotProcess]) -> None:
    pilot = pilots["exception_0"]
    try:
        rc = stop_in_flight(pilot, signal.SIGUSR1)  # the wrapper's spin loop raises from then on
    finally:
        pilot.end()
    failure = check_zero(pilot, rc)
    assert failure is None, failure
    assert rc != 0 and "fault injected" in pilot.log.read_text(), "the injected exception did not end the pilot"
