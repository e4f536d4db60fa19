"""The one image preprocessing (centre crop to the model's aspect, then resize) and the field of view it keeps."""
import math

import numpy as np
import pytest

from liquid_pilot.flight.image import fit, fov_after_fit, fov_from_intrinsics, pinhole

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def _bordered(height: int, width: int, keep: int) -> tuple[np.ndarray, int]:
    """A frame whose centred ``keep`` x ``keep`` square is green with a white top-left corner block,
    and whose outside (left/right or top/bottom) is red before and blue after it."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = GREEN
    if width > height:  # the sides are cropped
        left = (width - keep) // 2
        image[:, :left], image[:, left + keep:] = RED, BLUE
        top = 0
    else:  # the top and bottom are cropped
        top, left = (height - keep) // 2, 0
        image[:top], image[top + keep:] = RED, BLUE
    block = keep // 8
    image[top:top + block, left:left + block] = WHITE
    return image, block


@pytest.mark.parametrize("height,width", [(480, 640), (720, 1280), (640, 480)])
def test_fit_keeps_exactly_the_centred_square(height: int, width: int) -> None:
    keep = min(height, width)
    image, _ = _bordered(height, width, keep)
    out = fit(image, (64, 64))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    expected = np.zeros((64, 64, 3), np.uint8)
    expected[:] = GREEN
    expected[:8, :8] = WHITE  # the corner block, keep/8 pixels wide, becomes 8 of the 64 output pixels
    # No red or blue pixel survives (a squash or a crop off by one column would bleed them in),
    # and the kept square is neither shifted nor flipped.
    assert np.array_equal(out, expected)


def test_fit_to_a_wide_model_crops_to_its_aspect() -> None:
    image = np.zeros((720, 1280, 3), np.uint8)
    image[:] = GREEN
    image[:, :160], image[:, 1120:] = RED, BLUE  # 1280x720 (16:9) -> its centred 960x720 (4:3)
    out = fit(image, (48, 64))
    assert out.shape == (48, 64, 3)
    assert np.all(out == GREEN)
    image[:, 159] = GREEN  # one more column kept would have been red: the crop starts exactly at 160
    image[:, 160] = RED
    assert fit(image, (48, 64))[:, 0, 0].min() > 0


def test_same_aspect_is_only_resized_and_same_size_is_untouched() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    out = fit(image, (48, 64))  # 4:3 to 4:3: nothing is cropped
    assert out.shape == (48, 64, 3)
    block_means = image.reshape(48, 10, 64, 10, 3).astype(float).mean((1, 3))  # area resize by 10
    assert np.abs(out - block_means).max() <= 1
    small = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    same = fit(small, (64, 64))
    assert same is small or np.array_equal(same, small)


def test_field_of_view_after_fit_of_a_known_camera() -> None:
    # 640x480 with f = 320 px: 90 deg across, 2*atan(0.75) = 73.74 deg high.
    assert fov_from_intrinsics(640, 480, 320.0, 320.0) == pytest.approx((90.0, 73.7397953))
    # The model (square) sees the centred 480x480: 73.74 deg both ways.
    assert fov_after_fit(640, 480, 320.0, 320.0, (64, 64)) == pytest.approx((73.7397953, 73.7397953))
    # A 4:3 model keeps the whole frame.
    assert fov_after_fit(640, 480, 320.0, 320.0, (48, 64)) == pytest.approx((90.0, 73.7397953))
    # 1280x720, f = 640: 90 x 58.72 deg; square crop 720x720 -> 58.72 x 58.72.
    assert fov_after_fit(1280, 720, 640.0, 640.0, (64, 64)) == pytest.approx((58.7155, 58.7155), abs=1e-3)
    # The simulator's camera: 64x64, 80 deg vertical -> 80 x 80 deg as the model sees it.
    f, _, _ = pinhole(64, 64, math.radians(80))
    assert fov_after_fit(64, 64, f, f, (64, 64)) == pytest.approx((80.0, 80.0))
