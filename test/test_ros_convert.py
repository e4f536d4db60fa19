"""Message conversions, without DDS: image encodings, strides, refusals, camera model, quaternions."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage, Image, Imu

from liquid_pilot.flight.codec import BadInput, compressed_to_rgb, raw_to_rgb
from liquid_pilot.ros.convert import camera_info, from_cdr, imu_to_array, stamp_ns, time_msg
from liquid_pilot.sim.quadrotor import quaternion

RGB = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)


def image(pixels: np.ndarray, encoding: str, pad: int = 0) -> Image:
    rows = pixels.reshape(pixels.shape[0], -1)
    rows = np.concatenate([rows, np.full((rows.shape[0], pad), 77, np.uint8)], 1)
    return Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding, step=rows.shape[1],
                 data=rows.tobytes())


@pytest.mark.parametrize(("encoding", "pixels", "want"), [
    ("rgb8", RGB, RGB),
    ("bgr8", RGB[:, :, ::-1], RGB),
    ("rgba8", np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)]), RGB),
    ("bgra8", np.dstack([RGB[:, :, ::-1], np.zeros(RGB.shape[:2], np.uint8)]), RGB),
    ("mono8", RGB[:, :, 0], np.repeat(RGB[:, :, :1], 3, 2)),
])
@pytest.mark.parametrize("pad", [0, 3])  # rows may be padded beyond width x channels
def test_supported_encodings_become_rgb(encoding: str, pixels: np.ndarray, want: np.ndarray, pad: int) -> None:
    rgb = raw_to_rgb(image(np.ascontiguousarray(pixels), encoding, pad))
    assert rgb.dtype == np.uint8 and rgb.flags.writeable
    np.testing.assert_array_equal(rgb, want)


@pytest.mark.parametrize(("msg", "kind"), [
    (image(RGB, "yuv422"), "encoding"),
    (image(RGB, "16UC1"), "encoding"),
    (Image(height=6, width=5, encoding="rgb8", step=15), "empty"),
    (Image(height=0, width=5, encoding="rgb8", step=15, data=b"x"), "empty"),
    (Image(height=6, width=5, encoding="rgb8", step=15, data=RGB.tobytes()[:-1]), "size"),
    (Image(height=6, width=5, encoding="rgb8", step=14, data=RGB.tobytes()[:84]), "size"),
    (Image(height=6, width=5, encoding="rgb8", step=15, data=RGB.tobytes() + b"\x00"), "size"),
])
def test_malformed_images_are_refused_with_a_reason(msg: Image, kind: str) -> None:
    with pytest.raises(BadInput) as refused:
        raw_to_rgb(msg)
    assert refused.value.kind == kind and str(refused.value)


def test_compressed_images_decode_and_garbage_is_refused() -> None:
    png = cv2.imencode(".png", cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))[1].tobytes()
    np.testing.assert_array_equal(compressed_to_rgb(CompressedImage(format="png", data=png)), RGB)
    for data, kind in ((b"", "empty"), (b"not an image", "decode")):
        with pytest.raises(BadInput) as refused:
            compressed_to_rgb(CompressedImage(format="jpeg", data=data))
        assert refused.value.kind == kind


def test_imu_is_gyro_then_accelerometer_and_nan_is_refused() -> None:
    msg = Imu()
    msg.angular_velocity.x, msg.linear_acceleration.z = 0.5, 9.81
    np.testing.assert_allclose(imu_to_array(msg), [0.5, 0, 0, 0, 0, 9.81], rtol=1e-6)
    for bad in (math.inf, -math.inf, math.nan, 1e39):  # 1e39 would become infinity in float32
        msg.linear_acceleration.y = bad
        with pytest.raises(BadInput, match="not finite"):
            imu_to_array(msg)


@pytest.mark.parametrize("frame_id", ["", "imu", "base_link_7"])  # lengths that shift the fields' alignment
def test_serialized_messages_decode_as_rclpy_built_them(frame_id: str) -> None:
    """The pilot decodes its raw subscriptions with from_cdr: what rclpy sent must come out unchanged."""
    imu = Imu()
    imu.header.frame_id, imu.header.stamp = frame_id, time_msg(1_795_848_090_260_058_934)
    w, a = imu.angular_velocity, imu.linear_acceleration
    w.x, w.y, w.z, a.x, a.y, a.z = 0.1, -0.2, 0.3, 1.5, -2.5, 9.81
    decoded = from_cdr(serialize_message(imu), "sensor_msgs/msg/Imu", "imu_invalid")
    np.testing.assert_array_equal(imu_to_array(decoded), imu_to_array(imu))
    assert stamp_ns(decoded.header.stamp) == 1_795_848_090_260_058_934 and decoded.header.frame_id == frame_id
    frame = image(RGB, "bgr8", pad=3)
    frame.header.frame_id = frame_id
    np.testing.assert_array_equal(raw_to_rgb(from_cdr(serialize_message(frame), "sensor_msgs/msg/Image", "decode")),
                                  RGB[:, :, ::-1])
    with pytest.raises(BadInput, match="undecodable sensor_msgs/msg/Image") as refused:
        from_cdr(serialize_message(frame)[:30], "sensor_msgs/msg/Image", "decode")
    assert refused.value.kind == "decode"


def test_stamps_round_trip() -> None:
    for ns in (0, 1, 999_999_999, 1_000_000_000, 1_795_848_090_260_058_934):
        assert stamp_ns(time_msg(ns)) == ns
    assert time_msg(2_500_000_000) == Time(sec=2, nanosec=500_000_000)


def test_camera_info_projects_the_fov_edges_to_the_image_edges() -> None:
    info = camera_info(64, 48, math.radians(80), Time(sec=3), "camera_optical_frame")
    k = np.array(info.k).reshape(3, 3)
    top = k @ np.array([0.0, -math.tan(math.radians(40)), 1.0])  # a ray along the top edge of the view
    assert top[1] == pytest.approx(-0.5)  # the top edge of pixel row 0 (pixel centres at whole numbers)
    assert k[0, 0] == k[1, 1] and (k[0, 2], k[1, 2]) == (31.5, 23.5)
    assert list(info.p[:3]) == list(info.k[:3]) and info.header.frame_id == "camera_optical_frame"


@pytest.mark.parametrize("seed", range(6))
def test_quaternion_matches_the_rotation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation = q * np.sign(np.linalg.det(q))  # a proper rotation
    if seed == 0:
        rotation = np.diag([-1.0, -1.0, 1.0])  # 180 degrees about z: the trace is negative
    x, y, z, w = quaternion(rotation)
    rebuilt = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    np.testing.assert_allclose(rebuilt, rotation, atol=1e-12)
