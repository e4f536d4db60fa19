"""The /diagnostics mappings (liquid_pilot.ros.diagnostics) without a graph: levels, lines, values, the rate meter."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from liquid_pilot.flight.types import ManualClock
from liquid_pilot.ros.diagnostics import ERROR, OK, WARN, RateMeter, band, bridge_report, pilot_report, \
    recorder_report, sim_report, text, to_status

GATE = {"state": "flying", "faults": [], "fault_totals": {}, "last_fault_age": None, "clean_frames": None,
        "frames_received": 100, "duplicates": 0, "camera_age": 0.03, "imu_age": 0.01}
CAMERA = {"rate": 16.0, "expected": 16.0, "age": 0.03, "in_band": True, "replaced": 0}
IMU = {"rate": 200.0, "age": 0.01}
STEP = {"count": 10, "mean_ms": 2.0, "max_ms": 5.0}
MODEL = {"file": "cfc_ncp.onnx", "kind": "flight artefact", "epoch": 25}


@pytest.mark.parametrize("gate, camera, problems, level, message", [
    ({}, {}, [], OK, "flying"),
    ({"state": "disabled"}, {}, [], OK, "disabled (zero commands)"),
    ({"state": "hovering", "faults": ["encoding"]}, {}, [], WARN, "hovering on encoding"),
    ({"state": "hovering", "faults": ["camera_stale"]}, {}, [], ERROR, "hovering on camera_stale"),
    ({"state": "hovering", "faults": ["decode_slow", "encoding"]}, {}, [], ERROR, "hovering on decode_slow, encoding"),
    ({}, {"rate": 5.0, "in_band": False}, [], WARN, "flying; camera at 5.0 Hz, the model expects 16 Hz"),
    ({"state": "disabled", "camera_age": None}, {"age": None}, [], WARN,
     "disabled (zero commands); no camera frame yet"),
    ({}, {}, ["/imu/data: a publisher's QoS cannot match"], ERROR, "flying; /imu/data: a publisher's QoS cannot match"),
])
def test_the_pilots_level_and_line_follow_the_gate(gate, camera, problems, level, message) -> None:
    report = pilot_report({**GATE, **gate}, {**CAMERA, **camera}, IMU, STEP, MODEL, problems)
    assert (report.level, report.message) == (level, message)
    assert report.values["model epoch"] == 25 and report.values["imu rate (Hz)"] == 200.0


def test_a_pilot_without_imu_reports_no_imu() -> None:
    report = pilot_report(GATE, CAMERA, None, STEP, MODEL)
    assert "imu rate (Hz)" not in report.values and report.level == OK


STATUS = {"backend": "mavlink (px4)", "state": "flying", "reason": "in offboard", "since": 3.2, "pilot_enabled": True,
          "link": True, "armed": True, "mode": "OFFBOARD", "in_control": True, "height": 1.0, "distance": 2.0,
          "speed": 0.5, "setpoints": 400, "transitions": 4}
FENCE = {"radius": 10.0, "height": 5.0, "speed": 3.0}


@dataclass
class Battery:
    voltage: float | None
    current: float | None
    remaining: float | None


@pytest.mark.parametrize("status, level", [
    ({}, OK), ({"state": "wait_link", "link": False}, WARN), ({"state": "stale"}, WARN),
    ({"state": "hold", "link": False}, ERROR), ({"state": "taken_over"}, ERROR), ({"state": "failed"}, ERROR),
    ({"distance": 10.5}, ERROR)])
def test_the_bridges_level_follows_the_supervisor_and_the_fence(status, level) -> None:
    report = bridge_report({**STATUS, **status}, None, FENCE, 20.0, 20.0)
    assert report.level == level
    assert report.message.startswith(f"{report.values['state']}: ")


def test_the_bridges_values_fence_margins_and_a_battery_where_there_is_one() -> None:
    report = bridge_report(STATUS, Battery(15.8, 12.5, 0.71), FENCE, 19.9, 20.0)
    v = report.values
    margins = (v["fence margin radius (m)"], v["fence margin height (m)"], v["fence margin speed (m/s)"])
    assert margins == (8.0, 4.0, 2.5)
    assert (v["battery voltage (V)"], v["battery current (A)"], v["battery remaining"]) == (15.8, 12.5, 0.71)
    assert v["vehicle mode"] == "OFFBOARD" and v["setpoint rate (Hz)"] == 19.9
    unknown = bridge_report({**STATUS, "height": None, "distance": None, "speed": None}, None, FENCE, None, 0.0)
    assert unknown.values["battery remaining"] is None and unknown.values["fence margin radius (m)"] is None
    assert unknown.level == OK
    low = bridge_report(STATUS, Battery(14.0, None, 0.15), FENCE, 20.0, 20.0)
    assert low.level == WARN and low.message.endswith("; battery at 15%")
    assert bridge_report(STATUS, Battery(13.0, None, 0.05), FENCE, 20.0, 20.0).level == ERROR
    assert bridge_report(STATUS, Battery(None, None, None), FENCE, 20.0, 20.0).level == OK


def test_the_recorder_and_the_simulator() -> None:
    assert recorder_report(10, 1000, 0, 50 << 30, {"/a": 10}, 0).level == OK
    low = recorder_report(10, 1000, 3, 100 << 20, {"/a": 10}, 0)
    assert low.level == ERROR and low.message == "10 messages, 0.0 MB; 3 not recorded; 0.10 GB free on disk"
    assert recorder_report(0, 0, 0, 50 << 30, {}, 0).level == WARN
    waiting = sim_report({}, 0, 0, 0.0, 16.0, False)
    assert waiting.level == OK and waiting.message.startswith("waiting for the first episode")
    assert sim_report({"episode": 2, "scenario": "forest", "seed": 2}, 2, 1, 16.0, 16.0, True).level == WARN


def test_values_are_shown_as_text() -> None:
    assert [text(v) for v in (None, True, 0.123456, 12345.6, [], ["a", "b"], {"x": 1})] == [
        "none", "true", "0.123", "12346", "none", "a, b", "x=1"]
    status = to_status(pilot_report(GATE, CAMERA, IMU, STEP, MODEL), "/pilot_node: pilot", "artefact x")
    assert status.level == b"\x00" and status.hardware_id == "artefact x"
    assert {kv.key: kv.value for kv in status.values}["step time mean (ms)"] == "2"


def test_the_rate_meter_counts_over_its_window() -> None:
    clock = ManualClock(10**9)
    meter = RateMeter(window=2.0, clock=clock)
    assert meter.rate() == 0.0
    for _ in range(11):
        meter.add()
        clock.advance(0.2)  # 5 Hz
    assert meter.rate() == pytest.approx(5.0) and meter.intervals() == 9
    clock.advance(3.0)
    assert meter.rate() == 0.0 and meter.intervals() == 0  # nothing in the last 2 s
    assert band(5.0, 16.0, 0.3) is False and band(14.0, 16.0, 0.3) is True and band(5.0, 0.0, 0.3) is True


def test_a_stream_that_starts_after_a_pause_reads_as_its_own_rate() -> None:
    """One old frame and a burst at 30 Hz: the median interval gives 30 Hz, not the count over the span."""
    clock = ManualClock(10**9)
    meter = RateMeter(window=2.0, clock=clock)
    meter.add()
    clock.advance(1.5)
    for _ in range(8):
        meter.add()
        clock.advance(1 / 30)
    assert meter.rate() == pytest.approx(30.0, rel=1e-3)
