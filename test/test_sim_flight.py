"""The simulated quadrotor: physics, inner controller, sensors, disturbances, repeatability."""
import colorsys
import math

import numpy as np
import pytest

from liquid_pilot.sim.config import load_scenario
from liquid_pilot.sim.quadrotor import load_params
from liquid_pilot.sim.scene import random_look
from liquid_pilot.sim.world import Simulator

OPEN = {"scene.obstacles": 0, "task.timeout_s": 60.0, "inject.gyro_noise": 0.0, "inject.accel_noise": 0.0}


def make(**overrides: object) -> Simulator:
    return Simulator(load_scenario("forest_summer").with_overrides({**OPEN, **overrides}))


def fly_for(sim: Simulator, command: list[float], seconds: float) -> None:
    for _ in range(round(seconds * sim.scenario.sim.camera_hz)):
        sim.step(np.array(command))


def body_velocity(sim: Simulator) -> np.ndarray:
    return sim.truth().rotation.T @ sim.truth().velocity


def test_crazyflie_constants() -> None:
    p = load_params()
    assert p.mass == 0.027 and p.arm == 0.0397 and p.kf == 3.16e-10 and p.km == 7.94e-12
    assert p.max_rpm == pytest.approx(21700, rel=0.01)  # thrust-to-weight 2.25
    assert p.hover_rpm == pytest.approx(14468, rel=0.01)


def test_hovers_in_place_on_a_zero_command() -> None:
    sim = make()
    sim.reset(1)
    start = sim.truth().position
    fly_for(sim, [0, 0, 0, 0], 3.0)
    assert np.linalg.norm(sim.truth().position - start) < 0.05
    assert sim.truth().tilt < math.radians(2)


@pytest.mark.parametrize("command,axis,expected", [
    ([0.8, 0, 0, 0], 0, 0.8), ([0, -0.6, 0, 0], 1, -0.6), ([0, 0, 0.4, 0], 2, 0.4)])
def test_tracks_body_velocity_commands(command: list[float], axis: int, expected: float) -> None:
    sim = make()
    sim.reset(2)
    fly_for(sim, command, 2.5)
    assert body_velocity(sim)[axis] == pytest.approx(expected, abs=0.06)


def test_tracks_yaw_rate_and_respects_limits() -> None:
    sim = make()
    sim.reset(3)
    yaw0 = sim.truth().yaw
    fly_for(sim, [0, 0, 0, 0.5], 2.0)
    turned = (sim.truth().yaw - yaw0 + math.pi) % (2 * math.pi) - math.pi
    assert turned == pytest.approx(1.0, abs=0.12)
    fly_for(sim, [5.0, 0, 0, 0], 3.0)  # beyond max_speed_xy = 1 m/s: clipped
    assert body_velocity(sim)[0] == pytest.approx(1.0, abs=0.06)


def test_motors_lag_with_the_configured_time_constant() -> None:
    sim = make()
    sim.reset(0)
    drone = sim.drone
    drone.rpm[:] = 10000.0
    drone.rpm_command[:] = 20000.0
    for _ in range(round(sim.scenario.sim.motor_time_constant * sim.scenario.sim.physics_hz)):
        drone.physics_tick()
    np.testing.assert_allclose(drone.rpm, 10000 + 10000 * (1 - math.exp(-1)), rtol=1e-6)


def test_same_seed_same_flight_bit_for_bit() -> None:
    overrides = {"inject.image_noise": 0.05, "inject.wind": 0.1, "inject.gyro_noise": 0.01, "inject.frame_drop": 0.1}

    def run(seed: int) -> tuple[np.ndarray, np.ndarray]:
        sim = Simulator(load_scenario("forest_summer").with_overrides(overrides))
        obs = sim.reset(seed)
        positions, images = [], []
        for k in range(40):
            obs = sim.step(np.array([0.5, 0.1 * math.sin(k / 5), 0.0, 0.2]))
            positions.append(sim.truth().position)
            images.append(obs.image)
        return np.array(positions), np.array(images)

    a, b, c = run(7), run(7), run(8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_observation_timing_follows_the_camera_rate_and_drops() -> None:
    sim = make(**{"inject.frame_drop": 0.3})
    obs = sim.reset(4)
    assert obs.dt == 0.0 and obs.image.shape == (64, 64, 3) and obs.image.dtype == np.uint8
    dts = [sim.step(np.zeros(4)).dt for _ in range(60)]
    period = 1 / 16
    assert set(np.round(np.array(dts) / period, 6)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert 0.1 < np.mean(np.array(dts) > period * 1.5) < 0.5  # about 30% of frames lost
    slow = make(**{"sim.camera_hz": 8})
    slow.reset(4)
    assert slow.step(np.zeros(4)).dt == pytest.approx(1 / 8)


def test_frozen_frames_repeat_the_previous_image() -> None:
    sim = make(**{"inject.frozen_frame": 0.5})
    obs = sim.reset(5)
    images = [obs.image] + [sim.step(np.array([0.6, 0, 0, 0.3])).image for _ in range(30)]
    repeats = sum(np.array_equal(a, b) for a, b in zip(images, images[1:]))
    assert 8 <= repeats <= 24


def test_latency_delivers_older_images() -> None:
    fresh, late = make(), make(**{"inject.camera_latency_s": 2 / 16})
    fresh_images = [fresh.reset(6).image] + [fresh.step(np.array([0.8, 0, 0, 0.4])).image for _ in range(12)]
    late_images = [late.reset(6).image] + [late.step(np.array([0.8, 0, 0, 0.4])).image for _ in range(12)]
    for k in range(3, 13):  # two frames late, same flight
        assert np.array_equal(late_images[k], fresh_images[k - 2])


def test_image_perturbations_change_pixels_as_asked() -> None:
    clean, noisy = make(), make(**{"inject.image_noise": 0.1})
    a, b = clean.reset(9).image.astype(float), noisy.reset(9).image.astype(float)
    assert np.std(b - a) / 255 == pytest.approx(0.1, rel=0.25)
    dark = make(**{"inject.brightness": -0.3})
    assert dark.reset(9).image.mean() < a.mean() - 50
    blurred = make(**{"inject.blur": 2.0}).reset(9).image.astype(float)
    assert np.abs(np.diff(blurred, axis=1)).mean() < 0.6 * np.abs(np.diff(a, axis=1)).mean()


def test_imu_reads_gravity_and_its_noise() -> None:
    sim = make(**{"inject.gyro_noise": 0.02})
    sim.reset(10)
    samples = np.array([sim.step(np.zeros(4)).imu for _ in range(60)])
    assert samples[:, 5].mean() == pytest.approx(9.81, abs=0.1)  # specific force while hovering
    assert samples[:, :3].std() == pytest.approx(0.02, rel=0.3)


def test_wind_pushes_a_hovering_drone() -> None:
    calm, windy = make(), make(**{"inject.wind": 0.2})
    calm.reset(11)
    windy.reset(11)
    fly_for(calm, [0, 0, 0, 0], 3.0)
    fly_for(windy, [0, 0, 0, 0], 3.0)
    assert np.abs(windy.truth().velocity).max() > 3 * np.abs(calm.truth().velocity).max()


def test_camera_is_body_fixed_and_its_aspect_matches_the_image() -> None:
    sim = make(**{"sim.image_width": 96, "sim.image_height": 64})
    sim.reset(12)
    assert sim.camera.projection[5] / sim.camera.projection[0] == pytest.approx(96 / 64)
    level = sim.camera.render(sim.truth())
    state = sim.truth()
    roll = np.array([[1, 0, 0], [0, math.cos(0.5), -math.sin(0.5)], [0, math.sin(0.5), math.cos(0.5)]])
    state.rotation = state.rotation @ roll  # bank left: the horizon must tilt in the image
    banked = sim.camera.render(state)
    sky = np.array(sim.camera.sky)

    def sky_rows(image: np.ndarray, column: int) -> int:
        return int(np.sum(np.all(image[:, column] == sky, axis=1)))

    assert abs(sky_rows(level, 5) - sky_rows(level, 90)) <= 2
    assert abs(sky_rows(banked, 5) - sky_rows(banked, 90)) > 10


def test_a_random_look_is_new_each_episode_the_same_for_a_seed_and_never_red() -> None:
    """Domain randomisation (``scene.season: random``): each seed its own look, none of it the chair's red."""
    sim = Simulator(load_scenario("forest_summer").with_overrides({"scene.season": "random"}))
    looks = {}
    for seed in (3, 3, 4):
        sim.reset(seed)
        looks.setdefault(seed, []).append(sim.scene.look)
    sim.close()
    assert looks[3][0] == looks[3][1] and looks[3][0] != looks[4][0]
    draws = [random_look(np.random.default_rng(s)) for s in range(400)]
    parts = [c for d in draws for c in (d["ground"], d["sky"], d["trunk"], *d["canopy"])]
    hsv = np.array([colorsys.rgb_to_hsv(*c) for c in parts])
    red = ((hsv[:, 0] < 30 / 360) | (hsv[:, 0] > 330 / 360)) & (hsv[:, 1] > 0.4)
    assert not red.any()
    grounds = np.array([d["ground"] for d in draws])
    assert grounds.min(1).max() > 0.85 and grounds.max(1).min() < 0.3  # from snow-white to dark grounds
    assert len({tuple(np.round(g, 3)) for g in grounds}) == len(draws)


def test_the_named_looks_fly_as_before_the_random_one() -> None:
    """A named season draws no colour: its layout, and so every flight recorded before, is unchanged."""
    def first_frame(season: str) -> np.ndarray:
        sim = Simulator(load_scenario("forest_summer").with_overrides({"scene.season": season}))
        image = sim.reset(11).image
        positions = [o.position.copy() for o in sim.scene.obstacles]
        sim.close()
        return image, np.array(positions)

    summer, winter, random = first_frame("summer"), first_frame("winter"), first_frame("random")
    assert np.array_equal(summer[1], winter[1]) and not np.array_equal(summer[0], winter[0])
    assert not np.array_equal(summer[1], random[1])  # the random look takes one draw from the episode's stream
