"""The flight codec: image headers read without decoding, raw and compressed images, IMU and CDR, import weight."""
from __future__ import annotations

import struct
import subprocess
import sys
import time
import zlib
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from liquid_pilot.flight import codec
from liquid_pilot.flight.codec import (BadInput, COMPRESSED_TYPE, compressed_size, compressed_to_rgb,
                                       DEFAULT_MAX_PIXELS, from_cdr, IMAGE_TYPE, image_to_rgb, IMU_TYPE,
                                       imu_to_array, raw_to_rgb, stamp_ns, TYPESTORE)


def picture(height: int = 30, width: int = 40) -> np.ndarray:
    """A BGR test picture with structure (so a wrong conversion shows)."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def encode(ext: str, image: np.ndarray, *params: int) -> bytes:
    ok, data = cv2.imencode(ext, image, list(params))
    assert ok
    return data.tobytes()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_1bit(width: int, height: int) -> bytes:
    """A valid, all-black 1-bit greyscale PNG built by hand: a decompression bomb when large."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = b"\x00" * ((1 + (width + 7) // 8) * height)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def forge_png(data: bytes, width: int, height: int) -> bytes:
    """The same PNG with its IHDR claiming another size (the CRC no longer matches: it must not be decoded)."""
    return data[:16] + struct.pack(">II", width, height) + data[24:]


def sof_offset(jpeg: bytes) -> int:
    i = 2
    while True:
        marker, length = jpeg[i + 1], (jpeg[i + 2] << 8) | jpeg[i + 3]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return i
        i += 2 + length


def forge_jpeg(data: bytes, width: int, height: int) -> bytes:
    i = sof_offset(data)
    return data[:i + 5] + struct.pack(">HH", height, width) + data[i + 9:]


def segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def with_segments(jpeg: bytes, *segments: bytes) -> bytes:
    """Insert segments right after SOI (where cameras put EXIF and ICC profiles)."""
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


EXIF = segment(0xE1, b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08" + bytes(200))
ICC = segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + bytes(60000))
COMMENT = segment(0xFE, b"taken by a drone")


def compressed(data: bytes | np.ndarray, fmt: str = "jpeg") -> SimpleNamespace:
    return SimpleNamespace(format=fmt, data=data)


# compressed_size.
@pytest.mark.parametrize("height, width", [(30, 40), (1, 1), (480, 640), (37, 1)])
def test_compressed_size_of_png_and_jpeg(height, width) -> None:
    image = picture(height, width)
    assert compressed_size(encode(".png", image)) == ("png", width, height)
    assert compressed_size(encode(".jpg", image)) == ("jpeg", width, height)


def test_compressed_size_of_progressive_jpeg() -> None:
    data = encode(".jpg", picture(30, 40), cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    assert data[sof_offset(data) + 1] == 0xC2  # really progressive (SOF2)
    assert compressed_size(data) == ("jpeg", 40, 30)


def test_compressed_size_of_jpeg_with_exif_icc_comment_and_fill_bytes() -> None:
    plain = encode(".jpg", picture(30, 40))
    data = with_segments(plain, EXIF, ICC, b"\xff\xff", COMMENT)  # fill bytes before a marker are allowed
    assert compressed_size(data) == ("jpeg", 40, 30)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape == (30, 40, 3)  # still a valid JPEG
    assert np.array_equal(compressed_to_rgb(compressed(data)), cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB))


def test_compressed_size_skips_tables_that_share_the_frame_markers_range() -> None:
    # DHT (0xC4), JPG (0xC8) and DAC (0xCC) lie among the SOFn markers but are not frames; some encoders write the
    # Huffman tables before the frame header.
    plain = encode(".jpg", picture(30, 40))
    i = plain.index(b"\xff\xc4")
    dht = plain[i:i + 2 + ((plain[i + 2] << 8) | plain[i + 3])]
    data = with_segments(plain, dht, segment(0xCC, b"\x00\x10"), segment(0xC8, b"\x01\x02\x03"))
    assert compressed_size(data) == ("jpeg", 40, 30)


def test_compressed_size_of_grey_and_16_bit_images() -> None:
    assert compressed_size(encode(".png", np.zeros((5, 7), np.uint16))) == ("png", 7, 5)
    assert compressed_size(encode(".jpg", np.zeros((5, 7), np.uint8))) == ("jpeg", 7, 5)


def test_compressed_size_takes_an_array() -> None:
    # rosbags' and raw subscriptions' messages carry the bytes as a uint8 array.
    png, jpeg = encode(".png", picture()), with_segments(encode(".jpg", picture()), EXIF)
    assert compressed_size(np.frombuffer(png, np.uint8)) == ("png", 40, 30)
    assert compressed_size(np.frombuffer(jpeg, np.uint8)) == ("jpeg", 40, 30)


@pytest.mark.parametrize("data", [b"", b"hello world, not an image", bytes(range(256)), b"\x89PNG\r\n\x1a\n",
                                  b"\xff\xd8", b"\xff\xd8\xff\xda\x00\x0c" + bytes(40), b"\xff\xd8\xff\xe0\x00\x00",
                                  b"GIF89a" + bytes(40), b"BM" + bytes(60)])
def test_garbage_is_a_decode_fault(data) -> None:
    with pytest.raises(BadInput) as bad:
        compressed_size(data)
    assert bad.value.kind == "decode"


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_every_truncation_of_a_header_is_read_or_refused(ext) -> None:
    data = with_segments(encode(ext, picture()), EXIF) if ext == ".jpg" else encode(ext, picture())
    fmt = "png" if ext == ".png" else "jpeg"
    limit = 24 if ext == ".png" else sof_offset(data) + 9  # the first length at which the size can be read
    for n in range(len(data)):
        if n >= limit:
            assert compressed_size(data[:n]) == (fmt, 40, 30)
            continue
        with pytest.raises(BadInput) as bad:
            compressed_size(data[:n])
        assert bad.value.kind == "decode"


def test_corrupted_jpeg_headers_never_raise_anything_but_bad_input() -> None:
    data = with_segments(encode(".jpg", picture()), EXIF, COMMENT)
    head = sof_offset(data) + 9
    rng = np.random.default_rng(1)
    for _ in range(2000):
        corrupt = bytearray(data)
        for i in rng.integers(2, head, size=int(rng.integers(1, 4))):
            corrupt[i] = int(rng.integers(0, 256))
        try:
            fmt, width, height = compressed_size(bytes(corrupt))
        except BadInput as bad:
            assert bad.kind == "decode"
        else:
            assert fmt == "jpeg" and 0 <= width < 65536 and 0 <= height < 65536


# compressed_to_rgb.
@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_compressed_to_rgb(ext) -> None:
    bgr = picture()
    data = encode(ext, bgr)
    rgb = compressed_to_rgb(compressed(np.frombuffer(data, np.uint8), ext[1:]))
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.array_equal(rgb, expected)
    if ext == ".png":  # lossless: the channels are swapped to RGB
        assert np.array_equal(rgb, bgr[:, :, ::-1])


def test_compressed_grey_and_16_bit_become_rgb8() -> None:
    grey = np.arange(35, dtype=np.uint8).reshape(5, 7)
    rgb = compressed_to_rgb(compressed(encode(".png", grey), "png"))
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[:, :, 0], grey) and np.array_equal(rgb[:, :, 2], grey)
    deep = compressed_to_rgb(compressed(encode(".png", np.full((5, 7, 3), 65535, np.uint16)), "png"))
    assert deep.dtype == np.uint8 and deep.shape == (5, 7, 3) and int(deep.min()) == 255


def test_compressed_empty_and_zero_sized() -> None:
    for data in (b"", np.zeros(0, np.uint8)):
        with pytest.raises(BadInput) as bad:
            compressed_to_rgb(compressed(data))
        assert bad.value.kind == "empty"
    for data in (forge_png(encode(".png", picture()), 0, 30), forge_jpeg(encode(".jpg", picture()), 40, 0)):
        with pytest.raises(BadInput) as bad:
            compressed_to_rgb(compressed(data))
        assert bad.value.kind == "empty"


def test_compressed_undecodable_body_is_a_decode_fault() -> None:
    data = encode(".png", picture())
    broken = data[:40] + bytes(len(data) - 40)  # header intact, pixels destroyed
    with pytest.raises(BadInput) as bad:
        compressed_to_rgb(compressed(broken, "png"))
    assert bad.value.kind == "decode"


def test_hand_made_png_is_valid() -> None:
    decoded = cv2.imdecode(np.frombuffer(png_1bit(16, 9), np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape == (9, 16, 3) and not decoded.any()


@pytest.mark.parametrize("make", ["bomb", "forged_png", "forged_jpeg"])
def test_oversized_image_is_refused_before_decoding(make, monkeypatch) -> None:
    if make == "bomb":
        data = png_1bit(8000, 8000)  # a real, valid PNG: 8 kB that inflates to 192 MB of RGB
        assert len(data) < 100_000
    elif make == "forged_png":
        data = forge_png(encode(".png", picture()), 8000, 8000)
    else:
        data = forge_jpeg(with_segments(encode(".jpg", picture()), EXIF), 8000, 8000)
    assert compressed_size(data)[1:] == (8000, 8000)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded an image over max_pixels")

    monkeypatch.setattr(codec.cv2, "imdecode", no_decoding)
    start = time.perf_counter()
    with pytest.raises(BadInput) as bad:
        compressed_to_rgb(compressed(np.frombuffer(data, np.uint8)))
    elapsed = time.perf_counter() - start
    assert bad.value.kind == "image_too_large"
    assert "8000x8000" in str(bad.value)
    assert elapsed < 0.5  # typically well under a millisecond; generous for a loaded CI machine


def test_max_pixels_is_a_limit_on_width_times_height() -> None:
    data = encode(".png", picture(30, 40))
    assert compressed_to_rgb(compressed(data), max_pixels=1200).shape == (30, 40, 3)
    with pytest.raises(BadInput) as bad:
        compressed_to_rgb(compressed(data), max_pixels=1199)
    assert bad.value.kind == "image_too_large"
    assert DEFAULT_MAX_PIXELS == 4096 * 4096


# raw_to_rgb.
def raw(encoding: str, pixels: np.ndarray, step: int | None = None, **fields) -> SimpleNamespace:
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    step = rows.shape[1] if step is None else step
    padded = np.zeros((height, step), np.uint8)
    padded[:, :min(step, rows.shape[1])] = rows[:, :step]
    msg = SimpleNamespace(encoding=encoding, height=height, width=width, step=step, is_bigendian=0,
                          data=padded.tobytes())
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


def test_raw_rgb8_is_copied() -> None:
    rgb = picture()
    msg = raw("rgb8", rgb)
    out = raw_to_rgb(msg)
    assert np.array_equal(out, rgb) and out.dtype == np.uint8
    assert out.flags.writeable and out.flags.c_contiguous
    out[0, 0] = 7
    assert np.array_equal(raw_to_rgb(msg), rgb)  # a copy, not a view of the message


def test_raw_bgr8_is_swapped() -> None:
    bgr = picture()
    assert np.array_equal(raw_to_rgb(raw("bgr8", bgr)), bgr[:, :, ::-1])


def test_raw_mono8_is_replicated() -> None:
    grey = picture()[:, :, 0].copy()
    out = raw_to_rgb(raw("mono8", grey))
    assert out.shape == (30, 40, 3)
    for c in range(3):
        assert np.array_equal(out[:, :, c], grey)


@pytest.mark.parametrize("encoding", ["rgba8", "bgra8"])
def test_raw_with_alpha(encoding) -> None:
    rgba = np.dstack([picture(), np.full((30, 40), 9, np.uint8)])
    out = raw_to_rgb(raw(encoding, rgba))
    expected = rgba[:, :, :3] if encoding == "rgba8" else rgba[:, :, 2::-1]
    assert np.array_equal(out, expected)


def test_raw_rows_with_padding() -> None:
    bgr = picture(5, 7)
    assert np.array_equal(raw_to_rgb(raw("bgr8", bgr, step=7 * 3 + 11)), bgr[:, :, ::-1])
    assert np.array_equal(raw_to_rgb(raw("RGB8", bgr, step=7 * 3 + 1)), bgr)  # the encoding's case does not matter


def test_raw_takes_array_data() -> None:
    rgb = picture()
    msg = raw("rgb8", rgb)
    msg.data = np.frombuffer(msg.data, np.uint8)
    assert np.array_equal(raw_to_rgb(msg), rgb)


@pytest.mark.parametrize("change", [{"step": 40 * 3 - 1}, {"step": 40 * 3 + 1}, {"data": bytes(40 * 3 * 30 - 1)},
                                    {"data": bytes(40 * 3 * 30 + 1)}, {"height": 31}, {"width": 41}])
def test_raw_bad_step_or_size(change) -> None:
    msg = raw("rgb8", picture(30, 40))  # step 120, 3600 bytes
    for name, value in change.items():
        setattr(msg, name, value)
    with pytest.raises(BadInput) as bad:
        raw_to_rgb(msg)
    assert bad.value.kind == "size"


@pytest.mark.parametrize("change", [{"data": b""}, {"width": 0}, {"height": 0}])
def test_raw_empty(change) -> None:
    with pytest.raises(BadInput) as bad:
        raw_to_rgb(raw("rgb8", picture(), **change))
    assert bad.value.kind == "empty"


@pytest.mark.parametrize("encoding", ["16UC1", "yuv422", "bayer_rggb8", "32FC1", ""])
def test_raw_unsupported_encoding(encoding) -> None:
    with pytest.raises(BadInput) as bad:
        raw_to_rgb(raw(encoding, picture()))
    assert bad.value.kind == "encoding"
    assert repr(encoding) in str(bad.value)


def test_raw_too_large_is_refused_before_reading_the_data() -> None:
    msg = SimpleNamespace(encoding="rgb8", width=5000, height=5000, step=15000, is_bigendian=0, data=bytes(10))
    with pytest.raises(BadInput) as bad:
        raw_to_rgb(msg)
    assert bad.value.kind == "image_too_large" and "5000x5000" in str(bad.value)
    small = raw("rgb8", picture(30, 40))
    assert raw_to_rgb(small, max_pixels=1200).shape == (30, 40, 3)
    with pytest.raises(BadInput) as bad:
        raw_to_rgb(small, max_pixels=1199)
    assert bad.value.kind == "image_too_large"


def test_image_to_rgb_dispatches_on_the_type() -> None:
    bgr = picture()
    assert np.array_equal(image_to_rgb(raw("bgr8", bgr), IMAGE_TYPE), bgr[:, :, ::-1])
    png = compressed(encode(".png", bgr), "png")
    assert np.array_equal(image_to_rgb(png, COMPRESSED_TYPE), bgr[:, :, ::-1])
    assert np.array_equal(image_to_rgb(png, "sensor_msgs/CompressedImage"), bgr[:, :, ::-1])


# CDR and IMU.
def header(sec: int = 12, nanosec: int = 345):
    types = TYPESTORE.types
    return types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                        frame_id="camera")


def imu_message(gyro=(0.1, -0.2, 0.3), accel=(0.0, 0.5, 9.81)):
    types = TYPESTORE.types
    vector, quaternion = types["geometry_msgs/msg/Vector3"], types["geometry_msgs/msg/Quaternion"]
    return types[IMU_TYPE](header=header(), orientation=quaternion(x=0.0, y=0.0, z=0.0, w=1.0),
                           orientation_covariance=np.zeros(9), angular_velocity=vector(*gyro),
                           angular_velocity_covariance=np.zeros(9), linear_acceleration=vector(*accel),
                           linear_acceleration_covariance=np.zeros(9))


def serialized_messages() -> dict[str, bytes]:
    types = TYPESTORE.types
    bgr = picture(3, 4)
    image = types[IMAGE_TYPE](header=header(), height=3, width=4, encoding="bgr8", is_bigendian=0, step=12,
                              data=bgr.reshape(-1))
    jpeg = types[COMPRESSED_TYPE](header=header(), format="jpeg",
                                  data=np.frombuffer(encode(".jpg", picture()), np.uint8))
    return {IMAGE_TYPE: bytes(TYPESTORE.serialize_cdr(image, IMAGE_TYPE)),
            COMPRESSED_TYPE: bytes(TYPESTORE.serialize_cdr(jpeg, COMPRESSED_TYPE)),
            IMU_TYPE: bytes(TYPESTORE.serialize_cdr(imu_message(), IMU_TYPE))}


def test_from_cdr_round_trip() -> None:
    data = serialized_messages()
    image = from_cdr(data[IMAGE_TYPE], IMAGE_TYPE, "image")
    assert stamp_ns(image.header.stamp) == 12_000_000_345
    assert np.array_equal(raw_to_rgb(image), picture(3, 4)[:, :, ::-1])
    jpeg = from_cdr(data[COMPRESSED_TYPE], COMPRESSED_TYPE, "image")
    assert compressed_to_rgb(jpeg).shape == (30, 40, 3)
    imu = from_cdr(data[IMU_TYPE], IMU_TYPE, "imu")
    assert np.allclose(imu_to_array(imu), [0.1, -0.2, 0.3, 0.0, 0.5, 9.81])


@pytest.mark.parametrize("msgtype, kind", [(IMAGE_TYPE, "image_cdr"), (COMPRESSED_TYPE, "image_cdr"),
                                           (IMU_TYPE, "imu_cdr")])
def test_from_cdr_truncated_is_bad_input_of_the_kind(msgtype, kind) -> None:
    data = serialized_messages()[msgtype]
    for n in range(len(data)):  # every truncation, the empty message included
        with pytest.raises(BadInput) as bad:
            from_cdr(data[:n], msgtype, kind)
        assert bad.value.kind == kind
        assert msgtype in str(bad.value)


def test_from_cdr_garbage_is_bad_input() -> None:
    for data in (b"\x00\x01\x00\x00" + bytes(3), b"\xff" * 8, b"hello"):
        with pytest.raises(BadInput) as bad:
            from_cdr(data, IMU_TYPE, "imu_cdr")
        assert bad.value.kind == "imu_cdr"


def test_imu_to_array() -> None:
    values = imu_to_array(imu_message((1.0, 2.0, 3.0), (4.0, 5.0, 6.0)))
    assert values.dtype == np.float32
    assert values.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), 1e39, -1e300])
@pytest.mark.parametrize("where", range(6))
def test_imu_to_array_refuses_non_finite(bad, where) -> None:
    values = [0.1, 0.2, 0.3, 0.0, 0.0, 9.81]
    values[where] = bad
    msg = SimpleNamespace(angular_velocity=SimpleNamespace(x=values[0], y=values[1], z=values[2]),
                          linear_acceleration=SimpleNamespace(x=values[3], y=values[4], z=values[5]))
    with pytest.raises(BadInput) as error:
        imu_to_array(msg)
    assert error.value.kind == "imu_invalid"


def test_bad_input_is_a_value_error() -> None:
    bad = BadInput("decode", "why")
    assert isinstance(bad, ValueError) and bad.kind == "decode" and str(bad) == "why"


# Import weight.
def test_flight_core_imports_no_simulator_torch_or_ros() -> None:
    code = ("import sys\n"
            "import liquid_pilot.flight.core, liquid_pilot.flight.gate, liquid_pilot.flight.codec\n"
            "import liquid_pilot.flight.image, liquid_pilot.flight.runtime\n"
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('pybullet', 'torch', 'rclpy')\n"
            "         or m == 'liquid_pilot.sim' or m.startswith('liquid_pilot.sim.')]\n"
            "print(repr(sorted(heavy)))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_the_flight_message_definitions_are_ros2s() -> None:
    """The small store flight decodes with defines its types exactly as the full ROS 2 Kilted store does."""
    from liquid_pilot.flight.codec import FLIGHT_MESSAGES, FLIGHT_TYPES

    for name in FLIGHT_MESSAGES:
        assert FLIGHT_TYPES.fielddefs[name] == TYPESTORE.fielddefs[name], name


def test_warm_up_builds_every_flight_decoder() -> None:
    from liquid_pilot.flight.codec import FLIGHT_TYPES, warm_up

    FLIGHT_TYPES.cache.clear()  # rosbags compiles a type's decoder on first use and keeps it here
    warm_up()
    assert {IMAGE_TYPE, COMPRESSED_TYPE, IMU_TYPE} <= set(FLIGHT_TYPES.cache)


# Decoding bounded in time: reduced JPEG decoding and the decode budget.
def scene(size: int) -> np.ndarray:
    """A smooth BGR picture with edges (a camera's, not noise): compresses as camera frames do."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.stack([128 + 100 * np.sin(6 * x), 128 + 100 * np.cos(5 * y), 255 * (x > y)], -1)
    return image.astype(np.uint8)


@pytest.mark.parametrize("fmt, size, target, factor", [
    ("jpeg", (4000, 4000), (64, 64), 8), ("jpeg", (640, 480), (64, 64), 2), ("jpeg", (256, 256), (64, 64), 2),
    ("jpeg", (200, 200), (64, 64), 1), ("jpeg", (1920, 1080), (64, 64), 8), ("png", (4000, 4000), (64, 64), 1),
    ("jpeg", (4000, 4000), None, 1)])
def test_reduction_keeps_twice_the_models_input_after_the_crop(fmt, size, target, factor) -> None:
    assert codec.reduction(fmt, *size, target) == factor


def test_a_reduced_jpeg_gives_the_model_what_a_full_decode_gives() -> None:
    from liquid_pilot.flight.image import fit
    data = encode(".jpg", scene(2000), cv2.IMWRITE_JPEG_QUALITY, 90)
    decoder = codec.Decoder((64, 64))
    reduced = decoder(compressed(data), COMPRESSED_TYPE)
    assert decoder.last_factor == 8 and decoder.last_size == (2000, 2000) and reduced.shape == (250, 250, 3)
    full = compressed_to_rgb(compressed(data))
    difference = np.abs(fit(reduced, (64, 64)).astype(int) - fit(full, (64, 64)).astype(int))
    assert difference.mean() < 1.0 and difference.max() <= 8, (difference.mean(), difference.max())


def test_a_4000_pixel_jpeg_decodes_within_the_budget_and_a_png_is_refused_with_one_reason() -> None:
    """The fuzzer's 4000x4000 frames: the JPEG is decoded at 1/8 within the default budget (CPU time, so the
    shared machine's load does not count); the PNG, which no decoder can reduce, is refused before decoding
    once two decodes went over it."""
    big = scene(4000)
    decoder = codec.Decoder((64, 64))
    jpeg = compressed(encode(".jpg", big, cv2.IMWRITE_JPEG_QUALITY, 90))
    for _ in range(3):
        assert decoder(jpeg, COMPRESSED_TYPE).shape == (500, 500, 3)
    assert max(decoder.costs.values()) < codec.DEFAULT_DECODE_BUDGET, decoder.costs
    png = compressed(encode(".png", big))
    reasons = []
    for _ in range(4):
        start = time.thread_time()
        with pytest.raises(BadInput) as bad:
            decoder(png, COMPRESSED_TYPE)
        reasons.append((bad.value.kind, str(bad.value), time.thread_time() - start))
    assert {kind for kind, _, _ in reasons} == {"decode_slow"}
    assert reasons[-1][1].startswith("4000x4000 png frames take ") and "over decode_budget (50 ms): refused before " \
        "decoding" in reasons[-1][1] and "publish JPEG" in reasons[-1][1]
    assert reasons[-1][2] < 0.005  # refused from its header: nothing decoded


class FakeTimer:
    """A CPU clock that runs ``cost`` seconds per decode (two reads per decode)."""

    def __init__(self, cost: float) -> None:
        self.cost, self.now, self.reads = cost, 0, 0

    def __call__(self) -> int:
        self.reads += 1
        if self.reads % 2 == 0:
            self.now += round(self.cost * 1e9)
        return self.now


def test_the_budget_refuses_after_two_slow_decodes_and_forgives_a_single_one() -> None:
    timer = FakeTimer(0.08)
    decoder = codec.Decoder((8, 8), budget=0.05, timer=timer)
    frame = compressed(encode(".png", picture()))
    with pytest.raises(BadInput, match="take 80 ms of CPU to decode, over decode_budget \\(50 ms\\): refused, so"):
        decoder(frame, COMPRESSED_TYPE)  # a slow decode is not flown
    timer.cost = 0.01  # the next is fast: a single slow decode is forgiven
    assert decoder(frame, COMPRESSED_TYPE).shape == (30, 40, 3)
    timer.cost = 0.08
    for _ in range(2):
        with pytest.raises(BadInput, match="refused, so"):
            decoder(frame, COMPRESSED_TYPE)
    reads = timer.reads
    with pytest.raises(BadInput, match="refused before decoding"):
        decoder(frame, COMPRESSED_TYPE)
    assert timer.reads == reads  # not decoded at all
    decoder.budget = 0.1  # a larger budget (the parameter changed): decoded again
    assert decoder(frame, COMPRESSED_TYPE).shape == (30, 40, 3)


def test_raw_frames_pass_the_decoder_unchanged() -> None:
    rgb = picture()[:, :, ::-1].copy()
    msg = SimpleNamespace(encoding="rgb8", width=40, height=30, step=120, data=rgb.tobytes())
    decoder = codec.Decoder((8, 8))
    assert np.array_equal(decoder(msg, IMAGE_TYPE), rgb) and decoder.last_size == (40, 30)


def test_a_calibrated_decoder_refuses_a_large_png_unread_and_decodes_a_small_one() -> None:
    decoder = codec.Decoder((64, 64))
    speed = decoder.calibrate()
    assert 0.1 < speed < 500, speed  # ns per pixel: a real measurement
    big = compressed(forge_png(encode(".png", scene(64)), 4000, 4000))  # a header is all it reads
    start = time.thread_time()
    with pytest.raises(BadInput, match="4000x4000 png frames would take about .* ms of CPU to decode here, over "
                                       "decode_budget \\(50 ms\\), and PNG cannot be decoded at a reduced size"):
        decoder(big, COMPRESSED_TYPE)
    assert time.thread_time() - start < 0.005
    assert decoder(compressed(encode(".png", scene(64))), COMPRESSED_TYPE).shape == (64, 64, 3)
