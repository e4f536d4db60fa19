"""The gymnasium environment, the trained-pilot policy and the `liquid-pilot sim` command."""
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from cli_support import cli
from gymnasium.utils.env_checker import check_env

import liquid_pilot.sim  # noqa: F401  (registers LiquidPilot-v0)
from liquid_pilot.nn.checkpoint import save_pilot
from liquid_pilot.nn.policy import Pilot, PilotConfig
from liquid_pilot.sim.config import load_scenario
from liquid_pilot.sim.episode import fly
from liquid_pilot.harness.pilots import PilotPolicy
from liquid_pilot.sim.world import Simulator


def test_registered_env_passes_the_gymnasium_checker() -> None:
    env = gymnasium.make("LiquidPilot-v0", overrides={"task.timeout_s": 5.0})
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_observations_match_their_spaces_and_seeds_repeat() -> None:
    env = gymnasium.make("LiquidPilot-v0", scenario="forest_winter")
    first, info = env.reset(seed=3)
    again, _ = env.reset(seed=3)
    assert np.array_equal(first["image"], again["image"]) and info["episode_seed"] >= 0
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(np.array([0.5, 0, 0, 0], np.float32))
        assert env.observation_space.contains(obs)
        assert obs["dt"][0] == pytest.approx(1 / 16)
    env.close()


def test_an_episode_ends_with_its_reason() -> None:
    env = gymnasium.make("LiquidPilot-v0", overrides={"task.timeout_s": 1.0})
    env.reset(seed=0)
    done, steps = False, 0
    while not done:
        _, reward, terminated, truncated, info = env.step(np.zeros(4, np.float32))
        done, steps = terminated or truncated, steps + 1
    assert truncated and not terminated and info["reason"] == "timeout" and reward < -5
    assert steps == 16
    env.close()


def test_a_trained_pilot_checkpoint_flies_an_episode(tmp_path: Path) -> None:
    save_pilot(Pilot(PilotConfig(), seed=0), tmp_path / "p.pt")
    policy = PilotPolicy.from_file(tmp_path / "p.pt")
    sim = Simulator(load_scenario("forest_summer").with_overrides({"task.timeout_s": 2.0}))
    policy.check(sim)
    result = fly(sim, policy, seed=0)
    assert result.steps >= 10 and result.reason in ("timeout", "collision", "out_of_bounds", "tilt")
    # Another camera is fitted (centre crop, then resize) as on the drone, not refused.
    wide = Simulator(load_scenario("forest_summer").with_overrides({"sim.image_width": 96, "task.timeout_s": 1.0}))
    policy.check(wide)
    assert fly(wide, policy, seed=0).steps >= 10


def test_sim_command_prints_metrics_and_writes_video_and_plot(tmp_path: Path) -> None:
    result = cli("sim", "--seed", "2", "--video", str(tmp_path / "flight.mp4"))
    assert result.returncode == 0, result.stderr
    assert "success: True" in result.stdout and "reason: reached" in result.stdout
    video, plot = tmp_path / "flight.mp4", tmp_path / "flight.png"
    assert video.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
    import cv2

    capture = cv2.VideoCapture(str(video))
    ok, frame = capture.read()
    assert ok and frame.shape == (320, 640, 3)


@pytest.mark.parametrize("args,message", [
    (["--scenario", "mars"], "unknown scenario 'mars'; available:"),
    (["--set", "sim.camera_hz=7"], "sim.camera_hz=7 must divide sim.physics_hz=240"),
    (["--set", "inject.noise"], "--set expects section.field=value"),
])
def test_sim_command_bad_input(args: list[str], message: str) -> None:
    result = cli("sim", *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
