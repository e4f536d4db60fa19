"""Real autopilots for tests: ArduCopter and PX4 (SIH) SITL processes, and an operator's ground-station link.

The binaries are found through environment variables and the tests skip, saying why, without them:
``ARDUPILOT_SITL`` names the ``arducopter`` binary (``copter.parm`` beside it), ``PX4_SITL`` the ``px4/`` folder
(``bin/px4``, ``etc/``). ``.ci/run`` points them at ``../shared/sitl/``. Each instance runs in its own scratch
folder and is stopped by its process id; nothing waits a fixed time: readiness is the autopilot accepting to arm.

Ports. ArduCopter instance ``I``: MAVLink TCP servers on 5760 + 10 I (SERIAL0, the bridge; the firmware starts
once something connects there), 5762 + 10 I (SERIAL1, the operator) and 5763 + 10 I (SERIAL2).
PX4 (one at a time: it locks a file in /tmp): the onboard link sends to UDP 14540 (the bridge listens there),
the ground-station link to 14550 (the operator listens there).
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from liquid_pilot.bridge.mavlink import mavutil

HOME = "-35.363261,149.165230,584,60"  # CMAC, heading 60 degrees: body and world axes differ
COPTER_GUIDED, COPTER_LAND = 4, 9
PX4_AUTO, PX4_AUTO_TAKEOFF, PX4_AUTO_LOITER, PX4_AUTO_LAND = 4, 2, 3, 6
MAV_LANDED_STATE_ON_GROUND = 1


def ardupilot_binary() -> Path:
    path = os.environ.get("ARDUPILOT_SITL", "")
    if not path or not Path(path).is_file():
        pytest.skip("ArduCopter SITL not available: set ARDUPILOT_SITL to the arducopter binary (.ci/run uses "
                    "../shared/sitl/arducopter)")
    return Path(path)


def px4_folder() -> Path:
    path = os.environ.get("PX4_SITL", "")
    if not path or not (Path(path) / "bin" / "px4").is_file():
        pytest.skip("PX4 SITL not available: set PX4_SITL to the px4/ folder with bin/px4 and etc/ (.ci/run uses "
                    "../shared/sitl/px4)")
    return Path(path)


@dataclass
class Sitl:
    """A running SITL: where the bridge connects and where the operator does."""

    kind: str  # ardupilot or px4
    process: subprocess.Popen
    folder: Path
    bridge_address: str
    operator_address: str
    flavour: str
    telemetry_address: str = ""  # ArduPilot's SERIAL2: a port that enforces signing (SERIAL0 counts as USB)

    def log(self) -> str:
        path = self.folder / "sitl.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@contextlib.contextmanager
def ardupilot(folder: Path, instance: int = 0, speedup: float = 1.0) -> Iterator[Sitl]:
    binary = ardupilot_binary()
    folder.mkdir(parents=True, exist_ok=True)
    defaults = binary.parent / "copter.parm"
    args = [str(binary), "--model", "quad", "--speedup", str(speedup), "-I", str(instance), "-w", "--home", HOME]
    if defaults.exists():
        args[1:1] = ["--defaults", str(defaults)]
    with _process(args, folder, os.environ.copy()) as process:
        base = 5760 + 10 * instance
        yield Sitl("ardupilot", process, folder, f"tcp:127.0.0.1:{base}", f"tcp:127.0.0.1:{base + 2}", "ardupilot",
                   f"tcp:127.0.0.1:{base + 3}")


@contextlib.contextmanager
def px4(folder: Path) -> Iterator[Sitl]:
    root = px4_folder()
    folder.mkdir(parents=True, exist_ok=True)
    # The start-up scripts call px4-* commands found beside the binary; the shipped folder has them as plain
    # files (read-only), so a scratch bin/ links each name to the binary.
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    for entry in (root / "bin").iterdir():
        target = bin_dir / entry.name
        if entry.name.endswith(".sh"):
            shutil.copy(entry, target)
        elif not target.exists():
            target.symlink_to((root / "bin" / "px4").resolve())
    env = dict(os.environ, PX4_SIM_MODEL="sihsim_quadx", PX4_SIMULATOR="sihsim")
    with _process([str(bin_dir / "px4"), "-d", str((root / "etc").resolve())], folder, env) as process:
        yield Sitl("px4", process, folder, "udpin:127.0.0.1:14540", "udpin:127.0.0.1:14550", "px4")


SITL_NICE = -10  # an autopilot runs on hardware of its own; the SITL runs in real time beside the tests


def _priority() -> None:
    """Raise the SITL's CPU priority where allowed (root, as CI runs).

    On a loaded machine a starved SITL's control loop and estimator degrade (PX4 SIH under CI's load held its
    fence 0.6-0.9 m off), which tests the machine, not the bridge. Unprivileged, the SITL keeps the tests' priority.
    """
    with contextlib.suppress(OSError):
        os.nice(SITL_NICE)


@contextlib.contextmanager
def _process(args: list[str], folder: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    with open(folder / "sitl.log", "wb") as log:
        process = subprocess.Popen(args, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_priority)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


class Operator:
    """The pilot on the ground station: a second MAVLink link that arms, takes off, switches modes and watches."""

    def __init__(self, sitl: Sitl, timeout: float = 120.0):
        self.sitl = sitl
        self.conn = mavutil().mavlink_connection(sitl.operator_address, source_system=254, source_component=190,
                                                 retries=60)
        self.latest: dict[str, Any] = {}
        with contextlib.suppress(AttributeError, OSError):  # room for what comes while a test looks elsewhere
            self.conn.port.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        heartbeat = self.wait(lambda m: m.get_type() == "HEARTBEAT" and m.autopilot in (3, 12), timeout)
        self.system, self.component = heartbeat.get_srcSystem(), heartbeat.get_srcComponent()
        for message, hz in ((32, 20.0), (245, 10.0), (30, 10.0)):  # position, landed state, attitude
            self.command(511, message, 1e6 / hz, wait=False)

    def close(self) -> None:
        self.conn.close()

    # Reading.
    def pump(self) -> None:
        while (msg := self.conn.recv_match(blocking=False)) is not None:
            self._keep(msg)

    def _keep(self, msg: Any) -> None:
        """Keep the latest message of each kind; heartbeats only the vehicle's (not a ground station's)."""
        if msg.get_type() == "HEARTBEAT" and (msg.autopilot not in (3, 12) or msg.type in (6, 18)):
            return
        self.latest[msg.get_type()] = msg

    def wait(self, predicate: Callable[[Any], bool], timeout: float) -> Any:
        """Return the first message for which ``predicate`` holds; AssertionError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.conn.recv_match(blocking=True, timeout=0.5)
            if msg is None:
                continue
            self._keep(msg)
            if predicate(msg):
                return msg
        raise AssertionError(f"{self.sitl.kind} SITL: nothing matched within {timeout} s\n{self.sitl.log()}")

    def until(self, condition: Callable[[], bool], timeout: float) -> None:
        """Read messages until ``condition()`` holds; AssertionError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.sitl.kind} SITL: condition not met within {timeout} s")
            msg = self.conn.recv_match(blocking=True, timeout=0.2)
            if msg is not None:
                self._keep(msg)

    def position(self) -> tuple[float, float, float]:
        """The latest local position, NED."""
        p = self.latest["LOCAL_POSITION_NED"]
        return p.x, p.y, p.z

    def wait_disarmed(self, timeout: float = 120.0) -> None:
        """Until the vehicle says, in a heartbeat sent after this call, that it is disarmed and on the ground.

        The last flight's landing over, as slow as a loaded machine makes it: a vehicle still landing takes
        commands as a flying one does (under CI's load, PX4 in AUTO.LAND, armed, took the next test's arm and
        take-off, then disarmed on landing and never climbed; ArduPilot, landing, took GUIDED from a bridge without
        the signing key). Only a fresh heartbeat counts, with the landed state on the ground where the vehicle
        sends one: a heartbeat kept from earlier once let the next test start with PX4 still landing.
        """
        def down(msg: Any) -> bool:
            return (msg.get_type() == "HEARTBEAT" and self.latest.get("HEARTBEAT") is msg
                    and not msg.base_mode & 128 and self.landed_state() in (None, MAV_LANDED_STATE_ON_GROUND))

        self.pump()  # what queued while the tests flew
        self.wait(down, timeout)

    def landed_state(self) -> int | None:
        msg = self.latest.get("EXTENDED_SYS_STATE")
        return None if msg is None else msg.landed_state

    # Commands.
    def command(self, command: int, *params: float, wait: bool = True, timeout: float = 5.0) -> int | None:
        """Send a COMMAND_LONG; with ``wait``, return its COMMAND_ACK's result (sent again, up to 3 times, unanswered).

        What queued while the tests flew is read first: the answer must not wait behind it, nor be dropped by a
        full socket buffer (under CI's load PX4's acknowledgement of a mode switch was never seen once).
        """
        values = list(params) + [0.0] * (7 - len(params))
        self.pump()
        for attempt in range(3):
            self.conn.mav.command_long_send(self.system, self.component, command, attempt, *values)
            if not wait:
                return None
            try:
                return self.wait(lambda m: m.get_type() == "COMMAND_ACK" and m.command == command, timeout).result
            except AssertionError:
                if attempt == 2:
                    raise
        return None

    def set_param(self, name: str, value: float, kind: int = 9) -> None:
        """PARAM_SET, confirmed by the echoed PARAM_VALUE (kind 9: float, 6: int32)."""
        for _ in range(5):
            self.conn.mav.param_set_send(self.system, self.component, name.encode(), value, kind)
            with contextlib.suppress(AssertionError):
                self.wait(lambda m: m.get_type() == "PARAM_VALUE" and m.param_id == name, 3.0)
                return
        raise AssertionError(f"{self.sitl.kind} SITL: parameter {name} not confirmed")

    def set_mode(self, custom_mode: int, sub_mode: int = 0) -> int | None:
        return self.command(176, 1, custom_mode, sub_mode)

    def arm(self, timeout: float = 150.0) -> None:
        """Arm as soon as the autopilot allows it (its estimator needs tens of seconds after start-up)."""
        self.accepted(lambda: self.command(400, 1.0, timeout=3.0), timeout, "arming")

    def accepted(self, request: Callable[[], int | None], timeout: float, what: str) -> None:
        """Make ``request`` (a command) until the autopilot accepts it; AssertionError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(AssertionError):
                if request() == 0:
                    return
            time.sleep(1.0)  # the autopilot refused (not ready yet): ask again in a second
        raise AssertionError(f"{self.sitl.kind} SITL: {what} refused for {timeout} s\n{self.sitl.log()}")

    def takeoff(self, height: float, timeout: float = 150.0) -> None:
        """Arm and take off to ``height`` m as a ground station does (ArduPilot GUIDED, PX4 AUTO.TAKEOFF), once the
        vehicle is disarmed on the ground."""
        self.wait_disarmed()
        if self.sitl.kind == "ardupilot":
            self.set_mode(COPTER_GUIDED)
            self.arm(timeout)
            assert self.command(22, 0, 0, 0, math.nan, math.nan, math.nan, height) == 0
        else:
            self.set_param("MIS_TAKEOFF_ALT", height)
            # Hold first, as an operator does. Once disarmed, PX4 goes back to the mode it was in before a landing
            # it was commanded to make: after the bridge has flown and landed it, Offboard, where it refuses to arm
            # without a setpoint stream ("Resolve system health failures first", docs/autopilot.md).
            self.accepted(lambda: self.set_mode(PX4_AUTO, PX4_AUTO_LOITER), timeout, "Hold (AUTO.LOITER)")
            self.arm(timeout)
            assert self.command(22, 0, 0, 0, math.nan, math.nan, math.nan, math.nan) == 0

    def prepare(self) -> None:
        """Settings the SITLs need: PX4's SIH accelerometer is noisy (shared/sitl/README.md)."""
        if self.sitl.kind == "px4":
            self.set_param("EKF2_ACC_NOISE", 1.0)
