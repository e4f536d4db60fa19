"""The command gate's rules against a manual clock (never a sleep), and FlightCore with a fake network."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from liquid_pilot.flight.codec import BadInput, imu_to_array
from liquid_pilot.flight.core import FlightCore
from liquid_pilot.flight.gate import ACCEL_RANGE, GYRO_RANGE, Gate, GateConfig
from liquid_pilot.flight.types import ZERO, ManualClock

S = 1_000_000_000  # ns per second
T0 = 100 * S  # the clock's start: far from 0, since a stamp of 0 means "unstamped"
MS = S // 1000
OUT = np.array([0.3, -0.2, 0.1, 0.05])  # a network output within every limit
GOOD_IMU = np.array([0.1, -0.2, 0.3, 0.0, 0.0, 9.81])


class Logs:
    """The log callback: collects (level, message)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def __call__(self, level: str, message: str) -> None:
        self.records.append((level, message))

    def of(self, level: str, text: str = "") -> list[str]:
        return [m for lv, m in self.records if lv == level and text in m]


def make(uses_imu: bool = False, enabled: bool = True, **config) -> tuple[Gate, ManualClock, Logs]:
    """A gate on a manual clock; without ``fault_window`` given, recovery counts good frames alone (window 0);
    a pilot without IMU gets no IMU watchdog unless asked (these tests send no IMU)."""
    config.setdefault("fault_window", 0.0)
    config.setdefault("imu_watchdog", uses_imu)
    clock, logs = ManualClock(T0), Logs()
    gate = Gate(GateConfig(**config), uses_imu=uses_imu, clock=clock, log=logs)
    if enabled:
        gate.set_enabled(True)
    return gate, clock, logs


def fly(gate: Gate, stamp: int | None = None, output=OUT):
    """Admit a frame stamped now (or ``stamp``), step it with ``output``: (admission, command)."""
    admission = gate.admit(gate.clock() if stamp is None else stamp)
    if admission is None:
        return None, None
    return admission, gate.finish(admission, np.asarray(output, dtype=np.float64))


def flown(output=OUT) -> tuple[float, ...]:
    return tuple(float(v) for v in output)


# Disabled.
def test_disabled_gate_hovers_and_admits_nothing() -> None:
    gate, clock, logs = make(enabled=False)
    assert gate.tick()[0] == ZERO
    assert gate.admit(clock()) is None
    clock.advance(5.0)
    assert gate.tick() == (ZERO, clock())
    assert gate.reject(BadInput("decode", "garbage")) == ZERO
    assert not gate.flying
    assert logs.records == []


def test_disable_while_flying_hovers() -> None:
    gate, clock, _ = make()
    assert fly(gate)[1] == flown()
    gate.set_enabled(False)
    assert gate.tick()[0] == ZERO


# Frame timing.
def test_first_frame_resets_then_dt_is_the_stamp_difference() -> None:
    gate, clock, _ = make()
    first, command = fly(gate)
    assert first.reset and first.dt == 0.0
    assert command == flown()
    clock.advance(0.05)
    second = gate.admit(clock() - 7 * MS)  # the stamp, not the arrival, sets dt
    assert not second.reset
    assert second.dt == pytest.approx(0.043)
    assert gate.finish(second, OUT) == flown()


def test_gap_longer_than_camera_timeout_starts_a_new_flight() -> None:
    gate, clock, _ = make(camera_timeout=0.2)
    fly(gate)
    clock.advance(0.2)  # a gap of exactly camera_timeout is flown through
    within = gate.admit(clock())
    assert not within.reset and within.dt == pytest.approx(0.2)
    gate.finish(within, OUT)
    clock.advance(0.25)
    after = gate.admit(clock())
    assert after.reset and after.dt == 0.0


def test_enable_restarts_the_flight() -> None:
    gate, clock, _ = make()
    fly(gate)
    clock.advance(0.05)
    gate.set_enabled(True)
    admission = gate.admit(clock())
    assert admission.reset and admission.dt == 0.0


# Silent camera.
def test_silent_camera_hovers_strictly_after_the_timeout() -> None:
    gate, clock, logs = make(camera_timeout=0.2)
    fly(gate)
    start = clock()
    clock.now = start + round(0.2 * S)  # exactly at the timeout: still flying
    assert gate.tick() == (flown(), start)
    assert logs.of("warn") == []
    clock.now += 1  # one nanosecond past it
    assert gate.tick()[0] == ZERO
    for _ in range(50):
        clock.advance(0.01)
        assert gate.tick()[0] == ZERO
    assert logs.of("warn") == [w for w in logs.of("warn") if "[camera_stale]" in w]
    assert len(logs.of("warn", "[camera_stale]")) == 1
    assert not gate.flying


def test_silent_camera_resets_the_network() -> None:
    gate, clock, _ = make(camera_timeout=0.2)
    fly(gate)
    clock.advance(0.05)
    pending = gate.admit(clock())  # the network is stepping this one when the camera goes silent
    assert not pending.reset
    clock.advance(0.21)
    assert gate.tick()[0] == ZERO
    assert gate.finish(pending, OUT) is None  # stepped on the old state: discarded
    clock.advance(0.01)
    admission = gate.admit(clock())
    assert admission.reset and admission.dt == 0.0


def test_silent_camera_requests_a_reset_even_when_frames_resume_within_the_gap() -> None:
    # Frames stamped late (their age is within camera_timeout) can close the stamp gap; the reset must still come
    # from the timeout itself.
    gate, clock, _ = make(camera_timeout=0.2)
    fly(gate)
    last = clock()
    clock.advance(0.21)
    gate.tick()
    admission = gate.admit(last + 100 * MS)  # 0.1 s after the last flown stamp, 0.11 s old
    assert admission.reset and admission.dt == 0.0


def test_camera_recovers_after_recover_frames() -> None:
    gate, clock, logs = make(camera_timeout=0.2, recover_frames=3)
    fly(gate)
    clock.advance(0.5)
    gate.tick()
    for i in range(2):
        clock.advance(0.05)
        assert fly(gate)[1] == ZERO
        assert gate.tick()[0] == ZERO
    clock.advance(0.05)
    assert fly(gate)[1] == flown()
    assert gate.tick()[0] == flown()
    assert len(logs.of("info", "recovered from camera_stale")) == 1


# IMU timing.
def test_imu_stall_with_frames_arriving_is_imu_stale_not_camera_stale() -> None:
    gate, clock, logs = make(uses_imu=True, camera_timeout=0.2, imu_timeout=0.2)
    gate.imu(GOOD_IMU)
    assert fly(gate)[1] == flown()
    for i in range(1, 31):  # 0.6 s of frames every 20 ms, no IMU
        clock.advance(0.02)
        if i <= 10:  # the sample is at most imu_timeout old: flying
            assert fly(gate)[1] == flown()
        else:
            with pytest.raises(BadInput) as bad:
                gate.admit(clock())
            assert bad.value.kind == "imu_stale"
            assert gate.reject(bad.value) == ZERO
        assert gate.tick()[0] == (flown() if i <= 10 else ZERO)
    assert "imu_stale" in gate.faults
    assert "camera_stale" not in gate.faults
    assert logs.of("warn", "[camera_stale]") == []
    assert len(logs.of("warn", "[imu_stale]")) == 1


def test_imu_stall_between_frames_is_found_by_tick() -> None:
    gate, clock, logs = make(uses_imu=True, camera_timeout=0.2, imu_timeout=0.05)
    gate.imu(GOOD_IMU)
    fly(gate)
    clock.advance(0.05)
    assert gate.tick()[0] == flown()
    clock.now += 1
    assert gate.tick()[0] == ZERO
    assert list(gate.faults) == ["imu_stale"]


def test_imu_stall_found_by_tick_resets_the_network() -> None:
    gate, clock, _ = make(uses_imu=True, camera_timeout=0.2, imu_timeout=0.05)
    gate.imu(GOOD_IMU)
    fly(gate)
    clock.advance(0.04)
    gate.imu(GOOD_IMU)
    fly(gate)
    clock.advance(0.06)
    assert gate.tick()[0] == ZERO
    assert "imu_stale" in gate.faults
    clock.advance(0.005)
    gate.imu(GOOD_IMU)
    clock.advance(0.005)
    admission = gate.admit(clock())
    assert admission.reset and admission.dt == 0.0


def test_imu_stall_found_by_a_frame_resets_the_network() -> None:
    gate, clock, _ = make(uses_imu=True, camera_timeout=0.2, imu_timeout=0.05)
    gate.imu(GOOD_IMU)
    fly(gate)
    clock.advance(0.04)
    gate.imu(GOOD_IMU)
    fly(gate)  # IMU last at 0.04
    clock.advance(0.06)  # 0.10: the IMU is 0.06 s old, and a frame notices first
    with pytest.raises(BadInput) as bad:
        gate.admit(clock())
    assert bad.value.kind == "imu_stale"
    assert gate.reject(bad.value) == ZERO
    assert gate.tick()[0] == ZERO
    clock.advance(0.005)
    gate.imu(GOOD_IMU)
    clock.advance(0.005)
    admission = gate.admit(clock())
    assert admission.reset and admission.dt == 0.0


def test_no_imu_yet_skips_frames_quietly_then_refuses_them() -> None:
    gate, clock, logs = make(uses_imu=True)
    assert gate.admit(clock()) is None  # just enabled: the IMU may simply not have spoken yet
    assert not logs.of("warn", "[imu_stale]")
    clock.advance(gate.config.imu_timeout + 0.001)  # but not for longer than its timeout
    with pytest.raises(BadInput) as bad:
        gate.admit(clock())
    assert bad.value.kind == "imu_stale"
    assert gate.reject(bad.value) == ZERO
    assert len(logs.of("warn", "[imu_stale]")) == 1
    gate.imu(GOOD_IMU)
    clock.advance(0.02)
    admission = gate.admit(clock())
    assert np.array_equal(admission.imu, GOOD_IMU)


def test_enabling_does_not_refresh_an_old_imu_sample() -> None:
    gate, clock, logs = make(uses_imu=True, enabled=False, imu_timeout=0.2)
    gate.imu(GOOD_IMU)  # the IMU works while the pilot waits to be enabled, then dies
    clock.advance(10.0)
    gate.set_enabled(True)
    with pytest.raises(BadInput) as bad:
        gate.admit(clock())
    assert bad.value.kind == "imu_stale"


def test_pilot_without_imu_ignores_the_imu() -> None:
    gate, clock, logs = make(uses_imu=False, imu_timeout=0.05)
    for _ in range(20):
        clock.advance(0.02)
        admission, command = fly(gate)
        assert admission.imu is None
        assert command == flown()
        assert gate.tick()[0] == flown()
    gate.imu(np.array([100.0, 0, 0, 0, 0, 1e6]))  # implausible, but not flown on
    gate.imu_fault(BadInput("imu_invalid", "NaN"))
    clock.advance(0.02)
    assert fly(gate)[1] == flown()
    assert gate.tick()[0] == flown()
    assert logs.of("warn") == []


def test_a_camera_only_pilot_still_hovers_on_a_silent_or_implausible_imu() -> None:
    # The default: the IMU watchdog holds for a pilot that does not read the IMU; the network never sees it.
    assert GateConfig().imu_watchdog
    gate, clock, logs = make(uses_imu=False, imu_watchdog=True, imu_timeout=0.05, recover_frames=1)
    assert fly(gate) == (None, None)  # just enabled, no IMU sample yet: the frame waits quietly
    gate.imu(GOOD_IMU)
    admission, command = fly(gate)
    assert admission.imu is None and command == flown()  # flying; the IMU is not a network input
    clock.advance(0.06)  # the IMU falls silent, frames keep coming
    assert gate.tick()[0] == ZERO and "imu_stale" in gate.faults
    with pytest.raises(BadInput) as bad:
        gate.admit(clock())
    assert bad.value.kind == "imu_stale"
    gate.imu(GOOD_IMU)
    clock.advance(0.01)
    assert fly(gate)[1] == flown()  # back, after recover_frames good frames
    gate.imu(np.array([100.0, 0, 0, 0, 0, 9.81]))  # a gyro beyond its range: the drone is tumbling
    assert "imu_range" in gate.faults and gate.tick()[0] == ZERO
    clock.advance(0.01)
    with pytest.raises(BadInput) as bad:
        gate.admit(clock())
    assert bad.value.kind == "imu_range"
    assert len(logs.of("warn", "[imu_stale]")) == 1 and len(logs.of("warn", "[imu_range]")) == 1
    with pytest.raises(ValueError, match="imu_watchdog must be true or false, got 'yes'"):
        GateConfig(imu_watchdog="yes")


# IMU plausibility.
@pytest.mark.parametrize("sample", [[100.0, 0, 0, 0, 0, 9.81], [0, 0, 0, 0, 0, 1e6], [0, -100.0, 0, 0, 0, 9.81],
                                    [0, 0, 0, -1e6, 0, 0]])
def test_implausible_imu_is_a_fault(sample) -> None:
    gate, clock, logs = make(uses_imu=True)
    gate.imu(GOOD_IMU)
    assert fly(gate)[1] == flown()
    clock.advance(0.01)
    gate.imu(np.array(sample, dtype=np.float32))
    assert "imu_range" in gate.faults
    assert gate.tick()[0] == ZERO
    for _ in range(5):
        clock.advance(0.01)
        gate.imu(np.array(sample, dtype=np.float32))
        with pytest.raises(BadInput) as bad:  # never fly on the last good sample
            gate.admit(clock())
        assert bad.value.kind == "imu_range"
        assert gate.reject(bad.value) == ZERO
        assert gate.tick()[0] == ZERO
    assert len(logs.of("warn")) == 1
    assert len(logs.of("warn", "[imu_range]")) == 1


def test_imu_exactly_at_the_range_is_fine() -> None:
    gate, clock, logs = make(uses_imu=True)
    for sample in ([GYRO_RANGE, -GYRO_RANGE, GYRO_RANGE, ACCEL_RANGE, -ACCEL_RANGE, ACCEL_RANGE],
                   [0.0, 0.0, 0.0, 0.0, 0.0, 9.81]):
        gate.imu(np.array(sample, dtype=np.float64))
        clock.advance(0.02)
        assert fly(gate)[1] == flown()
    assert gate.faults.active == {}
    assert logs.of("warn") == []


def test_imu_message_exactly_at_the_range_is_fine() -> None:
    gate, clock, logs = make(uses_imu=True)
    vector = SimpleNamespace
    msg = SimpleNamespace(angular_velocity=vector(x=GYRO_RANGE, y=0.0, z=-GYRO_RANGE),
                          linear_acceleration=vector(x=0.0, y=ACCEL_RANGE, z=-ACCEL_RANGE))
    gate.imu(imu_to_array(msg))
    assert gate.faults.active == {}
    assert fly(gate)[1] == flown()


def test_imu_ranges_are_configurable() -> None:
    gate, clock, logs = make(uses_imu=True, gyro_range=5.0, accel_range=50.0)
    gate.imu(np.array([5.0, 0, 0, 0, 0, 50.0]))
    assert fly(gate)[1] == flown()
    clock.advance(0.01)
    gate.imu(np.array([5.5, 0, 0, 0, 0, 9.81]))
    assert "imu_range" in gate.faults
    gate.config.update(gyro_range=10.0)
    clock.advance(0.01)
    gate.imu(np.array([5.5, 0, 0, 0, 0, 9.81]))
    clock.advance(0.01)
    assert gate.admit(clock()) is not None
    gate2, _, _ = make(uses_imu=True, accel_range=50.0)
    gate2.imu(np.array([0, 0, 0, 0, 0, 51.0]))
    assert "imu_range" in gate2.faults


def test_good_imu_after_a_range_fault_recovers() -> None:
    gate, clock, logs = make(uses_imu=True, recover_frames=2)
    gate.imu(np.array([100.0, 0, 0, 0, 0, 0]))
    gate.imu(GOOD_IMU)
    clock.advance(0.01)
    assert fly(gate)[1] == ZERO
    clock.advance(0.01)
    assert fly(gate)[1] == flown()
    assert len(logs.of("info", "recovered from imu_range")) == 1


# Hysteresis.
def test_recovery_needs_recover_frames_good_frames() -> None:
    gate, clock, logs = make(recover_frames=3)
    fly(gate)
    clock.advance(0.02)
    assert gate.reject(BadInput("decode", "garbage")) == ZERO
    assert gate.tick()[0] == ZERO
    for _ in range(2):
        clock.advance(0.02)
        assert fly(gate)[1] == ZERO
        assert gate.tick()[0] == ZERO
        assert not gate.flying
    clock.advance(0.02)
    assert fly(gate)[1] == flown()
    assert gate.tick()[0] == flown()
    assert gate.flying


def test_recover_frames_one_flies_the_first_good_frame() -> None:
    gate, clock, logs = make(recover_frames=1)
    gate.reject(BadInput("decode", "garbage"))
    clock.advance(0.02)
    assert fly(gate)[1] == flown()


def test_alternating_good_and_bad_frames_never_fly() -> None:
    gate, clock, logs = make(recover_frames=3)
    fly(gate)
    kinds = ["decode", "size"]
    for i in range(100):
        clock.advance(0.02)
        if i % 2:
            command = fly(gate)[1]
        else:
            command = gate.reject(BadInput(kinds[(i // 2) % 2], "bad frame"))
        assert command == ZERO
        assert gate.tick()[0] == ZERO
    assert len(logs.of("warn", "[decode]")) == 1
    assert len(logs.of("warn", "[size]")) == 1
    assert len(logs.of("warn")) == 2
    assert logs.of("info", "recovered") == []


def test_recovery_is_logged_once_with_the_count() -> None:
    gate, clock, logs = make(recover_frames=3)
    fly(gate)
    for i in range(100):
        clock.advance(0.02)
        if i % 2:
            fly(gate)
        else:
            gate.reject(BadInput("decode", "bad frame"))
    for _ in range(3):
        clock.advance(0.02)
        command = fly(gate)[1]
    assert command == flown()
    infos = logs.of("info", "recovered")
    assert len(infos) == 1
    assert "decode" in infos[0] and "50 times" in infos[0]
    for _ in range(10):
        clock.advance(0.02)
        fly(gate)
    assert len(logs.of("info", "recovered")) == 1
    clock.advance(0.02)
    gate.reject(BadInput("decode", "bad frame"))  # a new burst: logged again
    assert len(logs.of("warn", "[decode]")) == 2


def test_a_fault_during_recovery_restarts_the_count() -> None:
    gate, clock, logs = make(recover_frames=3)
    gate.reject(BadInput("decode", "bad"))
    for _ in range(2):
        clock.advance(0.02)
        fly(gate)
    gate.reject(BadInput("decode", "bad"))
    for _ in range(2):
        clock.advance(0.02)
        assert fly(gate)[1] == ZERO
    clock.advance(0.02)
    assert fly(gate)[1] == flown()


# The fault window: sparse bad frames hover instead of chattering (the fuzzer's 3:1 and 9:1 patterns).
def pattern(gate: Gate, clock: ManualClock, good: int, seconds: float = 3.0, hz: float = 30.0) -> list[bool]:
    """Frames at ``hz`` for ``seconds``, ``good`` good ones to one bad; whether the stream flies after each frame."""
    flying = []
    for i in range(round(seconds * hz)):
        clock.advance(1 / hz)
        if i % (good + 1) == good:
            gate.reject(BadInput("encoding", "image encoding 'yuv422' is not supported"))
        else:
            fly(gate)
        flying.append(gate.tick()[0] != ZERO)
    return flying


def switches(flying: list[bool]) -> int:
    return sum(a != b for a, b in zip(flying, flying[1:]))


@pytest.mark.parametrize("good", [3, 4, 9])
@pytest.mark.parametrize("hz", [30.0, 16.0])
def test_sparse_bad_frames_hover_without_chatter_and_log_one_line(good: int, hz: float) -> None:
    gate, clock, logs = make(fault_window=GateConfig().fault_window)  # the default window
    fly(gate)
    flying = pattern(gate, clock, good, hz=hz)
    first = flying.index(False)
    assert first == good  # flying up to the first bad frame
    assert switches(flying[first:]) == 0  # then zero, never full speed again while bad frames keep coming
    assert len(logs.records) == 1 and "[encoding]" in logs.records[0][1]  # one line in 3 s
    # The camera heals: flying again once the window has passed without a fault, logged once with the count.
    bad = gate.faults.active["encoding"].count
    for _ in range(round(hz * GateConfig().fault_window) + 1):
        clock.advance(1 / hz)
        fly(gate)
    assert gate.tick()[0] == flown()
    assert logs.of("info") == [f"recovered from encoding ({bad} times over "
                               f"{logs.of('info')[0].split(' over ')[1]}"]
    assert f"good frames in a row and {GateConfig().fault_window:g} s without a fault: flying" in logs.of("info")[0]


def test_window_zero_recovers_after_recover_frames_and_chatters() -> None:
    """Without the window (the former rule) the 3:1 pattern switches every four frames: what the window stops."""
    gate, clock, _ = make(fault_window=0.0, recover_frames=3)
    fly(gate)
    assert switches(pattern(gate, clock, 3)) > 40


def test_an_isolated_fault_hovers_for_the_window_then_flies() -> None:
    gate, clock, logs = make(fault_window=0.5, recover_frames=3)
    fly(gate)
    clock.advance(0.02)
    gate.reject(BadInput("decode", "garbage"))
    fault = clock()
    while clock() - fault < round(0.5 * S) - 20 * MS:  # good frames every 20 ms, the window not yet passed
        clock.advance(0.02)
        assert fly(gate)[1] == ZERO
        assert gate.status()["state"] == "hovering"
    clock.now = fault + round(0.5 * S)  # exactly the window: flying
    assert fly(gate)[1] == flown()
    assert gate.status()["state"] == "flying"


def test_the_window_needs_recover_frames_too() -> None:
    """After a long silence the window has passed at once; recover_frames good frames are still needed."""
    gate, clock, logs = make(fault_window=0.1, recover_frames=3)
    fly(gate)
    clock.advance(1.0)
    gate.tick()  # camera_stale
    for _ in range(2):
        clock.advance(0.2)
        assert fly(gate)[1] == ZERO
    clock.advance(0.2)
    assert fly(gate)[1] == flown()


def test_disabling_during_a_fault_says_it_did_not_recover() -> None:
    gate, clock, logs = make()
    clock.advance(0.5)
    gate.tick()  # no camera frame ever arrived: camera_stale
    gate.set_enabled(False)
    assert logs.of("info", "recovered") == []
    assert logs.of("info") == ["camera_stale (once) ended without recovering: the pilot was disabled; no camera "
                               "frame has arrived since start-up"]
    gate.set_enabled(True)
    fly(gate)
    clock.advance(0.5)
    gate.tick()
    gate.set_enabled(False)
    assert logs.of("info")[-1] == "camera_stale (once) ended without recovering: the pilot was disabled"


# Frames waiting for the network.
def test_frames_arriving_but_never_reaching_the_network_is_behind_not_a_silent_camera() -> None:
    gate, clock, logs = make(camera_timeout=0.2)
    fly(gate)
    for _ in range(20):  # frames keep arriving, the network is busy with none of them
        clock.advance(0.02)
        gate.frame_arrived()
        gate.tick()
    assert list(gate.faults) == ["behind"]
    assert logs.of("warn", "[camera_stale]") == []
    assert "decoding or the network step is too slow" in logs.of("warn", "[behind]")[0]
    assert gate.tick()[0] == ZERO


def test_a_waiting_frame_after_a_silence_is_not_behind() -> None:
    gate, clock, logs = make(camera_timeout=0.2)
    fly(gate)
    clock.advance(1.0)
    gate.tick()  # camera_stale
    gate.frame_arrived()  # the camera is back; the network takes the frame a moment later
    clock.advance(0.01)
    gate.tick()
    assert "behind" not in gate.faults
    assert gate.status()["frames_received"] == 2


# Stamps.
def test_duplicate_stamp_is_dropped_silently() -> None:
    gate, clock, logs = make()
    stamp = clock()
    assert fly(gate, stamp)[1] == flown()
    for i in range(3):
        clock.advance(0.01)
        assert gate.admit(stamp) is None
        assert gate.tick()[0] == flown()  # the command stays as it was
    assert gate.duplicates == 3
    assert logs.records == []
    assert gate.flying
    clock.advance(0.01)
    admission = gate.admit(clock())
    assert not admission.reset and admission.dt == pytest.approx(0.04)


def test_duplicate_frames_keep_the_camera_alive() -> None:
    gate, clock, logs = make(camera_timeout=0.2)
    stamp = clock()
    fly(gate, stamp)
    clock.advance(0.15)
    assert gate.admit(stamp) is None  # a repeated frame is still a camera message
    clock.advance(0.1)
    assert gate.tick()[0] == flown()
    assert logs.records == []


def test_backwards_stamp_is_a_fault() -> None:
    gate, clock, logs = make()
    fly(gate)
    clock.advance(0.05)
    with pytest.raises(BadInput) as bad:
        gate.admit(clock() - 60 * MS)
    assert bad.value.kind == "stamp"
    assert gate.reject(bad.value) == ZERO
    assert len(logs.of("warn", "[stamp]")) == 1


@pytest.mark.parametrize("offset", [-0.2 - 1e-9, 0.2 + 1e-9, -3600.0, 3600.0])
def test_stamp_far_from_the_clock_is_a_fault(offset) -> None:
    gate, clock, logs = make(camera_timeout=0.2)
    with pytest.raises(BadInput) as bad:
        gate.admit(clock() + round(offset * S))
    assert bad.value.kind == "stamp"
    assert gate.reject(bad.value) == ZERO
    assert logs.of("warn", "[stamp]")


@pytest.mark.parametrize("offset", [-0.2, 0.2])
def test_stamp_exactly_camera_timeout_from_the_clock_is_flown(offset) -> None:
    gate, clock, _ = make(camera_timeout=0.2)
    assert fly(gate, clock() + round(offset * S))[1] == flown()


def test_unstamped_frames_are_timed_by_their_arrival() -> None:
    gate, clock, logs = make()
    first = gate.admit(0)
    assert first.stamp == clock()
    gate.finish(first, OUT)
    clock.advance(0.03)
    second = gate.admit(0)
    assert second.dt == pytest.approx(0.03)
    gate.finish(second, OUT)
    clock.advance(0.03)
    gate.admit(0)
    assert len(logs.of("info", "no stamp")) == 1
    assert logs.of("warn") == []


# Network output.
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_output_hovers_and_resets(bad) -> None:
    gate, clock, logs = make()
    fly(gate)
    clock.advance(0.02)
    admission, command = fly(gate, output=[0.1, bad, 0.0, 0.0])
    assert not admission.reset
    assert command == ZERO
    assert gate.tick()[0] == ZERO
    assert len(logs.of("warn", "[output]")) == 1
    clock.advance(0.02)
    after = gate.admit(clock())
    assert after.reset and after.dt == 0.0


# Stale results.
def test_finish_after_reset_is_discarded_and_keeps_the_reset() -> None:
    gate, clock, _ = make()
    fly(gate)
    clock.advance(0.02)
    admission = gate.admit(clock())
    assert not admission.reset
    gate.reset()
    assert gate.finish(admission, OUT) is None
    assert gate.tick()[0] == flown()  # the previous command is not replaced by the stale one
    clock.advance(0.02)
    after = gate.admit(clock())
    assert after.reset and after.dt == 0.0


def test_finish_of_a_resetting_admission_after_reset_keeps_the_reset() -> None:
    gate, clock, _ = make()
    first = gate.admit(clock())
    assert first.reset
    gate.reset()
    assert gate.finish(first, OUT) is None
    clock.advance(0.02)
    assert gate.admit(clock()).reset


@pytest.mark.parametrize("re_enable", [False, True])
def test_finish_after_disable_is_discarded(re_enable) -> None:
    gate, clock, _ = make()
    fly(gate)
    clock.advance(0.02)
    admission = gate.admit(clock())
    gate.set_enabled(False)
    if re_enable:
        gate.set_enabled(True)
    assert gate.finish(admission, OUT) is None
    assert gate.tick()[0] == ZERO
    if re_enable:
        clock.advance(0.02)
        assert gate.admit(clock()).reset


# Clamps.
def test_horizontal_speed_is_scaled_keeping_direction() -> None:
    gate, clock, _ = make(max_speed_xy=1.0, max_speed_z=0.5, max_yaw_rate=1.0)
    command = fly(gate, output=[3.0, -4.0, 0.2, 0.1])[1]
    assert command[0] == pytest.approx(0.6) and command[1] == pytest.approx(-0.8)
    assert math.hypot(command[0], command[1]) == pytest.approx(1.0)
    assert command[2:] == pytest.approx((0.2, 0.1))


def test_vertical_speed_and_yaw_rate_are_clipped() -> None:
    gate, clock, _ = make(max_speed_xy=1.0, max_speed_z=0.5, max_yaw_rate=1.0)
    assert fly(gate, output=[0.0, 0.0, 2.0, -3.0])[1] == (0.0, 0.0, 0.5, -1.0)
    clock.advance(0.02)
    assert fly(gate, output=[0.0, 0.0, -2.0, 3.0])[1] == (0.0, 0.0, -0.5, 1.0)
    clock.advance(0.02)
    assert fly(gate, output=[0.6, 0.0, 0.5, 1.0])[1] == (0.6, 0.0, 0.5, 1.0)  # within: untouched


def test_commands_are_plain_floats() -> None:
    gate, _, _ = make()
    command = fly(gate, output=np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32))[1]
    assert all(type(v) is float for v in command)


# Settings.
@pytest.mark.parametrize("name, value", [("camera_timeout", -0.1), ("camera_timeout", 0.0), ("imu_timeout", 11.0),
                                         ("recover_frames", 0), ("recover_frames", 2.0), ("recover_frames", True),
                                         ("max_speed_xy", "fast"), ("max_speed_z", -1.0), ("max_yaw_rate", False),
                                         ("gyro_range", float("nan")), ("accel_range", float("inf")),
                                         ("camera_timeout", None)])
def test_bad_settings_are_refused_naming_the_field(name, value) -> None:
    with pytest.raises(ValueError) as error:
        GateConfig(**{name: value})
    assert name in str(error.value) and repr(value) in str(error.value)


def test_update_checks_before_applying() -> None:
    config = GateConfig()
    before = (config.camera_timeout, config.max_speed_xy, config.recover_frames)
    with pytest.raises(ValueError, match="recover_frames"):
        config.update(camera_timeout=0.5, max_speed_xy=2.0, recover_frames=0)
    assert (config.camera_timeout, config.max_speed_xy, config.recover_frames) == before
    with pytest.raises(ValueError, match="max_speed_xy must be a number, got 'x'"):
        config.update(max_speed_xy="x")
    assert config.max_speed_xy == before[1]
    config.update(camera_timeout=0.5, max_speed_xy=2.0)
    assert (config.camera_timeout, config.max_speed_xy) == (0.5, 2.0)


def test_updated_limits_apply_to_the_next_frame() -> None:
    gate, clock, _ = make(max_speed_z=0.5)
    assert fly(gate, output=[0, 0, 2.0, 0])[1][2] == 0.5
    gate.config.update(max_speed_z=0.25)
    clock.advance(0.02)
    assert fly(gate, output=[0, 0, 2.0, 0])[1][2] == 0.25


def test_manual_clock() -> None:
    clock = ManualClock(5)
    assert clock() == 5
    assert clock.advance(0.5) == 5 + S // 2
    assert clock() == 5 + S // 2


# FlightCore with a fake network.
class FakeRuntime:
    image_size = (8, 8)

    def __init__(self, uses_imu: bool = False, output=OUT):
        self.uses_imu = uses_imu
        self.state_size = 2
        self.state = None
        self.output = np.asarray(output, dtype=np.float64)
        self.steps: list[tuple[tuple[int, ...], np.ndarray | None, float]] = []
        self.resets = 0

    def reset(self) -> None:
        self.state = None
        self.resets += 1

    def step(self, image: np.ndarray, imu: np.ndarray | None, dt: float) -> np.ndarray:
        assert image.dtype == np.uint8
        self.steps.append((image.shape, imu, dt))
        self.state = np.ones(self.state_size)
        return self.output


def make_core(uses_imu: bool = False, **config) -> tuple[FlightCore, FakeRuntime, ManualClock, Logs]:
    config.setdefault("fault_window", 0.0)
    config.setdefault("imu_watchdog", uses_imu)
    clock, logs, runtime = ManualClock(T0), Logs(), FakeRuntime(uses_imu)
    core = FlightCore(runtime, GateConfig(**config), clock, logs)
    core.start()
    return core, runtime, clock, logs


def test_core_flies_and_fits_frames_of_another_size() -> None:
    core, runtime, clock, logs = make_core()
    assert core.frame(np.zeros((48, 64, 3), np.uint8), clock()) == flown()
    clock.advance(0.05)
    assert core.frame(np.zeros((8, 8, 3), np.uint8), clock()) == flown()
    assert [s[0] for s in runtime.steps] == [(8, 8, 3), (8, 8, 3)]
    assert runtime.steps[0][2] == 0.0 and runtime.steps[1][2] == pytest.approx(0.05)
    assert core.tick() == flown()


def test_core_bad_input_hovers_without_stepping() -> None:
    core, runtime, clock, logs = make_core()
    assert core.frame(np.zeros((8, 8, 3), np.uint8), clock()) == flown()
    clock.advance(0.02)
    assert core.frame(BadInput("decode", "garbage"), clock()) == ZERO
    assert core.tick() == ZERO
    assert len(runtime.steps) == 1
    assert logs.of("warn", "[decode]")


def test_core_resets_the_runtime_on_a_new_flight() -> None:
    core, runtime, clock, logs = make_core(camera_timeout=0.2)
    core.frame(np.zeros((8, 8, 3), np.uint8), clock())
    resets = runtime.resets
    clock.advance(0.05)
    core.frame(np.zeros((8, 8, 3), np.uint8), clock())
    assert runtime.resets == resets
    clock.advance(0.5)
    core.tick()
    clock.advance(0.02)
    core.frame(np.zeros((8, 8, 3), np.uint8), clock())
    assert runtime.resets == resets + 1
    assert runtime.steps[-1][2] == 0.0


def test_core_duplicate_frame_keeps_the_command_and_skips_the_step() -> None:
    core, runtime, clock, logs = make_core()
    stamp = clock()
    core.frame(np.zeros((8, 8, 3), np.uint8), stamp)
    clock.advance(0.02)
    assert core.frame(np.zeros((8, 8, 3), np.uint8), stamp) == flown()
    assert len(runtime.steps) == 1
    assert core.gate.duplicates == 1


def test_core_with_imu_passes_the_sample_and_refuses_without() -> None:
    core, runtime, clock, logs = make_core(uses_imu=True)
    assert core.frame(np.zeros((8, 8, 3), np.uint8), clock()) == ZERO
    assert runtime.steps == []
    core.imu(GOOD_IMU)
    for _ in range(3):
        clock.advance(0.02)
        command = core.frame(np.zeros((8, 8, 3), np.uint8), clock())
    assert command == flown()
    assert np.array_equal(runtime.steps[-1][1], GOOD_IMU)


def test_core_disabled_hovers() -> None:
    core, runtime, clock, logs = make_core()
    core.gate.set_enabled(False)
    assert core.frame(np.zeros((8, 8, 3), np.uint8), clock()) == ZERO
    assert runtime.steps == []
