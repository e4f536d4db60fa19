"""The pilot: budget, one interface for every head, input checks, and that it can learn."""
import pytest
import torch

from liquid_pilot.nn.heads import HEADS
from liquid_pilot.nn.policy import Pilot, PilotConfig


def _batch(batch: int = 2, steps: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, steps, 64, 64, 3), generator=g, dtype=torch.uint8)
    imu = torch.randn(batch, steps, 6, generator=g)
    dt = 1 / 16 + 0.02 * torch.rand(batch, steps, 1, generator=g)
    return images, imu, dt


def test_default_pilot_fits_the_parameter_budget() -> None:
    pilot = Pilot()
    counts = pilot.parameter_counts()
    assert pilot.config.head == "cfc_ncp" and pilot.config.units == 19
    assert counts["total"] <= 25_000
    assert counts["total"] == sum(p.numel() for p in pilot.parameters() if p.requires_grad)


@pytest.mark.parametrize("head", HEADS)
def test_every_head_steps_like_it_runs_sequences(head: str) -> None:
    pilot = Pilot(PilotConfig(head=head)).eval()
    images, imu, dt = _batch()
    with torch.no_grad():
        commands, final = pilot(images, imu, dt)
        state = None
        for t in range(images.shape[1]):
            command, state = pilot.step({"image": images[:, t], "imu": imu[:, t]}, state, dt[:, t])
            torch.testing.assert_close(command, commands[:, t], rtol=0, atol=1e-5)
    assert commands.shape == (2, 6, 4) and final.shape == (2, pilot.state_size)
    torch.testing.assert_close(state, final, rtol=0, atol=1e-5)


@pytest.mark.parametrize("head", ["cfc_ncp", "ltc_ncp", "cfc"])
def test_liquid_heads_use_the_elapsed_time(head: str) -> None:
    pilot = Pilot(PilotConfig(head=head)).eval()
    images, imu, _ = _batch(1, 8)
    with torch.no_grad():
        slow = pilot(images, imu, torch.full((1, 8, 1), 0.2))[0]
        fast = pilot(images, imu, torch.full((1, 8, 1), 0.02))[0]
    assert (slow - fast).abs().max() > 1e-4


def test_command_scale_is_part_of_the_model() -> None:
    a = Pilot(PilotConfig(command_scale=[1.0, 1.0, 1.0, 1.0])).eval()
    b = Pilot(PilotConfig(command_scale=[2.0, 1.0, 0.5, 3.0])).eval()
    images, imu, dt = _batch(1, 3)
    with torch.no_grad():
        ya, yb = a(images, imu, dt)[0], b(images, imu, dt)[0]
    torch.testing.assert_close(yb, ya * torch.tensor([2.0, 1.0, 0.5, 3.0]))


def test_same_seed_same_pilot_other_seed_other_pilot() -> None:
    images, imu, dt = _batch(1, 3)
    with torch.no_grad():
        y1, y2, y3 = (Pilot(seed=s).eval()(images, imu, dt)[0] for s in (4, 4, 5))
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)


def test_wrong_inputs_get_clear_errors() -> None:
    pilot = Pilot().eval()
    with pytest.raises(ValueError, match=r"image must be \(batch, 64, 64, 3\) RGB, got \(1, 48, 64, 3\)"):
        pilot.step({"image": torch.zeros(1, 48, 64, 3, dtype=torch.uint8), "imu": torch.zeros(1, 6)}, None, 0.06)
    with pytest.raises(ValueError, match="needs an IMU vector of 6 values"):
        pilot.step({"image": torch.zeros(1, 64, 64, 3, dtype=torch.uint8)}, None, 0.06)
    with pytest.raises(ValueError, match="head must be one of cfc_ncp, .*, got 'transformer'"):
        PilotConfig(head="transformer")
    with pytest.raises(ValueError, match="command_scale needs 4 positive values"):
        PilotConfig(command_scale=[1.0, 1.0])


def test_a_pilot_without_imu_ignores_it() -> None:
    pilot = Pilot(PilotConfig(use_imu=False)).eval()
    image = torch.zeros(1, 64, 64, 3, dtype=torch.uint8)
    with torch.no_grad():
        y, _ = pilot.step({"image": image}, None, 0.06)
    assert y.shape == (1, 4)


def test_a_frame_normalised_pilot_sees_through_exposure_and_colour_cast() -> None:
    """frame_norm: a frame darker, flatter and tinted per channel (no clipping) gives the CNN the same input and
    the same command; without it they move. The training set's image statistics are not used."""
    g = torch.Generator().manual_seed(3)
    image = torch.randint(40, 200, (1, 64, 64, 3), generator=g).float()
    gain, offset = torch.tensor([0.3, 0.45, 0.6]), torch.tensor([5.0, 20.0, 2.0])  # dusk with an orange cast
    dimmed = image * gain + offset
    commands = {}
    for frame_norm in (True, False):
        pilot = Pilot(PilotConfig(use_imu=False, frame_norm=frame_norm)).eval()
        pilot.set_normalisation(torch.tensor([0.2, 0.4, 0.6]), torch.tensor([0.1, 0.2, 0.3]))
        with torch.no_grad():
            commands[frame_norm] = [torch.cat([pilot._normalised(x).flatten(1), pilot.step({"image": x}, None,
                                                                                           0.06)[0]], 1)
                                    for x in (image, dimmed)]
    assert (commands[False][0] - commands[False][1]).abs().max() > 1.0  # what the CNN sees, and the command
    torch.testing.assert_close(commands[True][0], commands[True][1], rtol=0, atol=1e-2)  # the floor
    assert torch.equal(pilot.image_mean, torch.tensor([0.2, 0.4, 0.6]))  # the plain pilot keeps them
    flat = Pilot(PilotConfig(use_imu=False, frame_norm=True)).eval()
    with torch.no_grad():  # a flat frame has no spread: finite, not a division by zero
        assert torch.isfinite(flat.step({"image": torch.full((1, 64, 64, 3), 90.0)}, None, 0.06)[0]).all()


@pytest.mark.parametrize("head", ["cfc_ncp", "ltc_ncp", "lstm"])
def test_training_reduces_the_loss_on_a_steering_task(head: str) -> None:
    """Steer toward a bright square: yaw rate follows its horizontal position."""
    g = torch.Generator().manual_seed(1)
    images = torch.zeros(16, 4, 64, 64, 3, dtype=torch.uint8)
    columns = torch.randint(4, 56, (16,), generator=g)
    for i, c in enumerate(columns):
        images[i, :, 24:32, c - 4:c + 4] = 255
    target = torch.zeros(16, 4, 4)
    target[..., 3] = -(columns.float()[:, None] - 32) / 32  # target to the right: turn right (yaw < 0)
    imu, dt = torch.zeros(16, 4, 6), torch.full((16, 4, 1), 1 / 16)
    pilot = Pilot(PilotConfig(head=head, command_scale=[1.0, 1.0, 1.0, 1.0]), seed=0)
    opt = torch.optim.Adam(pilot.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        loss = torch.nn.functional.mse_loss(pilot(images, imu, dt)[0], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses[::10]
