"""Checkpoints: exact round trips, and clear errors for damaged or mismatched files."""
from pathlib import Path

import pytest
import torch

from liquid_pilot.nn import checkpoint
from liquid_pilot.nn.checkpoint import CheckpointError, load_pilot, read_checkpoint, save_pilot
from liquid_pilot.nn.heads import HEADS
from liquid_pilot.nn.policy import Pilot, PilotConfig


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return (torch.randint(0, 256, (1, 5, 64, 64, 3), generator=g, dtype=torch.uint8),
            torch.randn(1, 5, 6, generator=g), torch.full((1, 5, 1), 0.07))


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    pilot = Pilot(PilotConfig(wiring_seed=9, time_scale=10.0), seed=2)
    pilot.set_normalisation(torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.3, 0.25]),
                            torch.arange(6.0), torch.arange(1.0, 7.0))
    path = tmp_path / "pilot.pt"
    save_pilot(pilot, path, {"data": ["bag_a", "bag_b"], "epochs": 3})
    return path


@pytest.mark.parametrize("head", HEADS)
def test_round_trip_keeps_every_number(head: str, tmp_path: Path) -> None:
    pilot = Pilot(PilotConfig(head=head, units=12 if head == "lstm" else 19), seed=5).eval()
    save_pilot(pilot, tmp_path / "p.pt")
    loaded = load_pilot(tmp_path / "p.pt")
    assert loaded.config == pilot.config and not loaded.training
    images, imu, dt = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images, imu, dt), pilot(images, imu, dt), rtol=0, atol=0)


def test_normalisation_wiring_and_provenance_are_kept(saved: Path) -> None:
    pilot = load_pilot(saved)
    assert pilot.config.wiring_seed == 9 and pilot.config.time_scale == 10.0
    torch.testing.assert_close(pilot.imu_std, torch.arange(1.0, 7.0))
    torch.testing.assert_close(pilot.image_mean, torch.tensor([0.4, 0.5, 0.6]))
    payload = read_checkpoint(saved)
    assert payload["provenance"] == {"data": ["bag_a", "bag_b"], "epochs": 3}
    assert torch.equal(payload["wiring"]["adjacency"], torch.as_tensor(pilot.head.wiring.adjacency))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pt: no such file"):
        load_pilot(tmp_path / "nope.pt")


def test_truncated_file_names_the_file(saved: Path) -> None:
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"{saved.name}: not a readable checkpoint \(truncated or corrupted"):
        load_pilot(saved)


def test_flipped_weight_bytes_are_caught(saved: Path) -> None:
    pilot = load_pilot(saved)
    raw = bytearray(saved.read_bytes())
    needle = pilot.head.layers[0].w_in.detach().numpy().tobytes()[:16]
    at = bytes(raw).index(needle)
    raw[at + 3] ^= 0x40  # one bit of one weight: the archive stays readable
    saved.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_pilot(saved)


def test_other_files_are_refused(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other\.pt: not a liquid_pilot checkpoint"):
        load_pilot(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_pilot(tmp_path / "text.pt")


def _rewrite(path: Path, change: callable) -> None:
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def test_newer_format_version_is_refused(saved: Path) -> None:
    _rewrite(saved, lambda p: p.update(version=99))
    with pytest.raises(CheckpointError, match="format version 99 is not supported"):
        load_pilot(saved)


def test_weights_not_matching_the_architecture(saved: Path) -> None:
    _rewrite(saved, lambda p: p["config"].update(image_height=96))
    with pytest.raises(CheckpointError, match="weights do not match the architecture"):
        load_pilot(saved)
    _rewrite(saved, lambda p: p["config"].update(image_height=64, head="resnet"))
    with pytest.raises(CheckpointError, match="invalid architecture: head must be one of .*, got 'resnet'"):
        load_pilot(saved)


def test_wiring_that_its_seed_does_not_generate(saved: Path) -> None:
    _rewrite(saved, lambda p: p["wiring"]["adjacency"].neg_())
    with pytest.raises(CheckpointError, match="stored wiring differs"):
        load_pilot(saved)


def test_failed_save_leaves_the_old_file_intact(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = saved.read_bytes()

    def broken_save(obj: object, f: object) -> None:
        f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_pilot(Pilot(), saved)
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]
