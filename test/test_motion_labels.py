"""Labels from the vehicle's motion: Odometry and velocity telemetry, their frames, lead and smoothing; the lead
estimated from bags with commands too; training and replay on them."""
from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from liquid_pilot.harness.bags import TYPESTORE, image_msg, imu_msg, odometry_msg, twist_stamped_msg
from liquid_pilot.data.reader import BagError, TopicConfig, estimate_lead, read_flight, suggested_lead
from test_real_bags import EPOCH, IMAGE, IMU, STAMPED, bare, frame

T = TYPESTORE.types
ODOMETRY = "nav_msgs/msg/Odometry"
FRAME_PERIOD, ODOM_PERIOD = 50_000_000, 20_000_000  # 20 Hz camera, 50 Hz odometry
SECONDS = 4.0


def velocity(t: np.ndarray | float) -> np.ndarray:
    """The flown body velocity and yaw rate at time t (s): smooth, every axis moving."""
    t = np.asarray(t, np.float64)
    w = 2 * math.pi * 0.5
    return np.stack([0.5 + 0.3 * np.sin(w * t), 0.2 * np.cos(w * t), 0.1 * np.sin(2 * w * t), 0.4 * np.sin(w * t + 1)],
                    -1)


def odometry(v: np.ndarray, stamp: int, child: str = "base_link", parent: str = "odom") -> object:
    msg = odometry_msg(np.zeros(3), (0.0, 0.0, 0.0, 1.0), v[:3], np.array([0.0, 0.0, v[3]]), stamp)
    msg.child_frame_id, msg.header.frame_id = child, parent
    return msg


def motion_bag(path: Path, noise: float = 0.0, child: str = "base_link", parent: str = "odom",
               telemetry: str | None = None, commands: bool = False) -> Path:
    """Camera and IMU at 20 Hz, the vehicle's motion at 50 Hz: Odometry on /odom, or a TwistStamped on
    ``telemetry`` (header frame ``child``); ``commands``: also /cmd_vel, the motion 0.3 s ahead."""
    rng = np.random.default_rng(0)
    out = []
    for k in range(int(SECONDS * 1e9 / FRAME_PERIOD)):
        stamp = EPOCH + k * FRAME_PERIOD
        out.append(("/camera/image_raw", IMAGE, stamp, image_msg(frame(k), stamp)))
        out.append(("/imu/data", IMU, stamp, imu_msg(np.array([0.0, 0.0, 0.0, 0.0, 0.0, 9.8]), stamp)))
        if commands:
            out.append(("/cmd_vel", STAMPED, stamp, twist_stamped_msg(velocity(k * FRAME_PERIOD / 1e9 + 0.3), stamp)))
    for k in range(int(SECONDS * 1e9 / ODOM_PERIOD)):
        stamp = EPOCH + k * ODOM_PERIOD
        v = velocity(k * ODOM_PERIOD / 1e9) + noise * rng.normal(size=4)
        if telemetry:
            msg = twist_stamped_msg(v, stamp)
            msg.header.frame_id = child
            out.append((telemetry, STAMPED, stamp, msg))
        else:
            out.append(("/odom", ODOMETRY, stamp, odometry(v, stamp, child, parent)))
    return bare(path, sorted(out, key=lambda m: m[2]))


def frame_times(flight) -> np.ndarray:  # noqa: ANN001
    """Each kept frame's time (s from the start), from its index in the red channel."""
    return flight.images[:, 0, 0, 0].astype(np.float64) * FRAME_PERIOD / 1e9


ODOM = TopicConfig(command="/odom", motion_smoothing_s=0.0)


def test_odometry_labels_are_the_motion_at_the_frame_time_plus_the_lead(tmp_path: Path) -> None:
    bag = motion_bag(tmp_path / "rc_flight.mcap")
    flight = read_flight(bag, TopicConfig(command="/odom", command_lead_s=0.3, motion_smoothing_s=0.0))
    t = frame_times(flight)
    np.testing.assert_allclose(flight.commands, velocity(t + 0.3), atol=1e-3)  # interpolated between samples
    # The last frames have no motion 0.3 s later in the bag: counted and left out, not extrapolated.
    last_odom = (int(SECONDS * 1e9 / ODOM_PERIOD) - 1) * ODOM_PERIOD / 1e9
    assert t.max() + 0.3 <= last_odom + 0.02 and flight.report["frames_without_command"] == 6
    label = flight.report["label"]
    assert label == {"kind": "motion", "type": ODOMETRY, "frame": "flu", "frame_from":
                     "'base_link', a body frame in FLU (REP-103)", "lead_s": [0.3] * 4, "smoothing_s": 0.0}
    per_axis = read_flight(bag, TopicConfig(command="/odom", command_lead_s=[0.4, 0.3, 0.2, 0.1],
                                            motion_smoothing_s=0.0))
    t = frame_times(per_axis)
    for axis, lead in enumerate((0.4, 0.3, 0.2, 0.1)):
        np.testing.assert_allclose(per_axis.commands[:, axis], velocity(t + lead)[:, axis], atol=1e-3)


def test_smoothing_removes_noise_without_delaying_the_motion(tmp_path: Path) -> None:
    clean = read_flight(motion_bag(tmp_path / "clean.mcap"), TopicConfig(command="/odom", motion_smoothing_s=0.05))
    t = frame_times(clean)
    inner = (t > 0.2) & (t < SECONDS - 0.2)  # away from the ends, where the window is one-sided
    error = np.abs(clean.commands[inner] - velocity(t[inner]))
    # A delay of one smoothing sigma would be 0.047 m/s on vx here; the Gaussian's attenuation is 0.004.
    assert error.max() < 0.006
    noisy = motion_bag(tmp_path / "noisy.mcap", noise=0.1)
    raw = read_flight(noisy, ODOM)
    smoothed = read_flight(noisy, TopicConfig(command="/odom", motion_smoothing_s=0.05))
    rms = [np.sqrt(np.mean((f.commands - velocity(frame_times(f))) ** 2)) for f in (raw, smoothed)]
    assert rms[1] < 0.5 * rms[0]


def test_frames_of_the_twist_frd_flu_and_world(tmp_path: Path) -> None:
    frd = read_flight(motion_bag(tmp_path / "frd.mcap", child="base_link_frd"), ODOM)
    np.testing.assert_allclose(frd.commands, velocity(frame_times(frd)) * [1, -1, -1, -1], atol=1e-3)
    assert frd.report["label"]["frame"] == "frd" and frd.report["command_frame"] == "frd"
    unnamed = read_flight(motion_bag(tmp_path / "unnamed.mcap", child=""), ODOM)  # REP-105: the body frame
    np.testing.assert_allclose(unnamed.commands, velocity(frame_times(unnamed)), atol=1e-3)
    said = read_flight(motion_bag(tmp_path / "said.mcap", child="body"),
                       TopicConfig(command="/odom", command_frame="frd", motion_smoothing_s=0.0))
    np.testing.assert_allclose(said.commands, velocity(frame_times(said)) * [1, -1, -1, -1], atol=1e-3)
    for child, parent in (("odom", "odom"), ("map", "map"), ("odom_ned", "")):
        with pytest.raises(BagError) as error:
            read_flight(motion_bag(tmp_path / f"world_{child}.mcap", child=child, parent=parent), ODOM)
        assert f"the velocities on /odom are in a world frame (child_frame_id '{child}' is a world frame)" \
               in str(error.value) and "\n" not in str(error.value)


def test_velocity_telemetry_is_motion_by_its_name_or_when_told(tmp_path: Path) -> None:
    body = motion_bag(tmp_path / "mavros.mcap", telemetry="/mavros/local_position/velocity_body")
    flight = read_flight(body, TopicConfig(command="auto", motion_smoothing_s=0.0))
    assert flight.report["topics"]["command"] == "/mavros/local_position/velocity_body"
    assert flight.report["label"]["kind"] == "motion"
    np.testing.assert_allclose(flight.commands, velocity(frame_times(flight)), atol=1e-3)
    other = motion_bag(tmp_path / "vio.mcap", telemetry="/vio/twist")
    assert read_flight(other, TopicConfig(command="/vio/twist")).report["label"]["kind"] == "command"
    told = read_flight(other, TopicConfig(command="/vio/twist", command_kind="motion", command_lead_s=0.3))
    assert told.report["label"]["kind"] == "motion" and told.report["frames_without_command"] == 6
    local = motion_bag(tmp_path / "local.mcap", telemetry="/mavros/local_position/velocity_local", child="map")
    with pytest.raises(BagError, match=r"world frame \(header.frame_id 'map' is a world frame\).*velocity_body"):
        read_flight(local, TopicConfig(command="/mavros/local_position/velocity_local", command_kind="motion"))


def test_a_lead_or_kind_that_contradicts_the_topic_is_one_line(tmp_path: Path) -> None:
    bag = motion_bag(tmp_path / "both.mcap", commands=True)
    with pytest.raises(BagError, match=r"a lead \(command_lead_s 0.3\) is for motion labels, and /cmd_vel holds "
                                       r"velocity commands"):
        read_flight(bag, TopicConfig(command="/cmd_vel", command_lead_s=0.3))
    with pytest.raises(BagError, match="/odom is nav_msgs/Odometry, the vehicle's motion: it cannot be read as "
                                       "velocity commands"):
        read_flight(bag, TopicConfig(command="/odom", command_kind="command"))
    for bad in (-0.1, 6.0, [0.1, 0.2], "soon"):
        with pytest.raises(ValueError, match="command_lead_s must be seconds from 0 to 5"):
            TopicConfig(command_lead_s=bad)
    assert TopicConfig(command_lead_s="0.3,0.3,0.2,0.1").leads() == [0.3, 0.3, 0.2, 0.1]
    with pytest.raises(ValueError, match="command_kind must be one of auto, command, motion"):
        TopicConfig(command_kind="odometry")


def _delayed_bag(path: Path, delays: tuple[float, ...]) -> Path:
    """Commands (a smooth random signal at 20 Hz) and odometry that follows each axis after its delay."""
    rng = np.random.default_rng(1)
    n = 400  # 20 s
    signal = np.cumsum(rng.normal(size=(n, 4)), 0)
    signal = np.apply_along_axis(lambda x: np.convolve(x, np.ones(5) / 5, "same"), 0, signal) * 0.05
    out = []
    for k in range(n):
        stamp = EPOCH + k * FRAME_PERIOD
        out.append(("/camera/image_raw", IMAGE, stamp, image_msg(frame(k), stamp)))
        out.append(("/cmd_vel", STAMPED, stamp, twist_stamped_msg(signal[k], stamp)))
    for k in range(n * FRAME_PERIOD // ODOM_PERIOD):
        stamp = EPOCH + k * ODOM_PERIOD
        t = k * ODOM_PERIOD / 1e9
        held = [signal[min(n - 1, max(0, int(math.floor((t - d) * 1e9 / FRAME_PERIOD + 1e-9)))), axis]
                for axis, d in enumerate(delays)]
        out.append(("/odom", ODOMETRY, stamp, odometry(np.array(held), stamp)))
    return bare(path, sorted(out, key=lambda m: m[2]))


def test_the_lead_is_estimated_per_axis_from_commands_and_odometry(tmp_path: Path) -> None:
    delays = (0.4, 0.3, 0.2, 0.1)
    bag = _delayed_bag(tmp_path / "offboard.mcap", delays)
    estimate = estimate_lead(bag, "/cmd_vel", "/odom")
    # The odometry's 20 ms samples, interpolated as labels are, show each step up to 20 ms early: within 0.02 s.
    assert estimate["lead_s"] == pytest.approx(list(delays), abs=0.02)
    assert all(r > 0.9 for r in estimate["correlation"])
    assert suggested_lead([estimate, estimate]) == pytest.approx(list(delays), abs=0.02)
    assert suggested_lead([{"lead_s": [0.5, None, 0.3, 0.1]}]) == [0.5, 0.3, 0.3, 0.1]  # a missing axis: the median
    result = subprocess.run([sys.executable, "-m", "liquid_pilot.cli", "bag", "info", str(bag), "--imu-topic", "none"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("  lead: "))
    assert line.startswith("  lead: /odom follows /cmd_vel by vx ")
    assert [float(v) for v in re.findall(r"(\d\.\d\d) s \(r", line)] == pytest.approx(list(delays), abs=0.02)
    advice = re.search(r"lead to train on the motion \(this bag\): --command-lead ([\d.,]+) ", result.stdout)
    assert [float(v) for v in advice.group(1).split(",")] == pytest.approx(list(delays), abs=0.02)


def test_an_rc_flight_trains_on_its_odometry_and_replays_as_trained(tmp_path: Path) -> None:
    bag = motion_bag(tmp_path / "rc.mcap")
    config = tmp_path / "small.yaml"
    config.write_text("pilot: {image_height: 16, image_width: 16, features: 8}\nepochs: 1\nsequence_length: 16\n"
                      "shift: 8\nbatch_size: 4\nthreads: 1\n")
    cli = [sys.executable, "-m", "liquid_pilot.cli"]
    info = subprocess.run([*cli, "bag", "info", str(bag)], capture_output=True, text=True, timeout=300)
    assert info.returncode == 0, info.stderr
    assert "command /odom (by type)" in info.stdout and "lead:" not in info.stdout  # no commands to compare
    assert "label: the vehicle's motion on /odom (body frame: 'base_link', a body frame in FLU (REP-103)), " \
           "smoothed by a zero-phase Gaussian of 0.05 s, at the frame's time + 0 s" in info.stdout
    out = tmp_path / "p.pt"
    result = subprocess.run([*cli, "train", "--config", str(config), "--data", str(bag), "--out", str(out),
                             "--command-lead", "0.2", "--motion-smoothing", "0.1"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "labels: the vehicle's motion on /odom at the frame's time + [0.2, 0.2, 0.2, 0.2] s, smoothed by a " \
           "zero-phase Gaussian of 0.1 s (all 1 bags)" in result.stderr
    from liquid_pilot.nn.checkpoint import read_inputs

    inputs = read_inputs(out)
    assert inputs["command_kind"] == "motion" and inputs["command_lead_s"] == 0.2
    assert inputs["motion_smoothing_s"] == 0.1 and inputs["topics"]["command"] == "/odom"
    replay = subprocess.run([*cli, "replay", str(out), str(bag)], capture_output=True, text=True, timeout=300)
    assert replay.returncode == 0, replay.stderr
    assert "smoothed by a zero-phase Gaussian of 0.1 s, at the frame's time + 0.2 s" in replay.stdout
