"""Reading flights from rosbag2 bags (MCAP or sqlite3), from our simulator or a real drone.

Images: sensor_msgs/Image (rgb8, bgr8, mono8, rgba8, bgra8) or sensor_msgs/CompressedImage (jpeg, png),
decoded by ``flight.codec`` and brought to the model's size by ``flight.image.fit`` (centre crop to
the model's aspect, then resize), exactly as in flight. The camera's sensor_msgs/CameraInfo, when
the bag has it, gives the field of view the model sees after that crop.
Commands: geometry_msgs/Twist or TwistStamped. IMU: sensor_msgs/Imu (optional).
Each frame gets the latest command and IMU sample stamped no later than the frame plus a
tolerance, and no older than a maximum age; frames without them are reported, not hidden.
Out-of-order stamps are sorted and counted; gaps split the flight into segments.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rosbags.rosbag2 import Reader

from liquid_pilot.flight.codec import IMU_TYPE, TYPESTORE, BadInput, image_to_rgb
from liquid_pilot.flight.image import fit, fov_after_fit

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
COMMAND_TYPES = ("geometry_msgs/msg/TwistStamped", "geometry_msgs/msg/Twist")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"


class BagError(ValueError):
    """A bag that cannot be used; the message names the bag and the problem."""

    def __init__(self, bag: str | Path, problem: str):
        super().__init__(f"{bag}: {problem}")


@dataclass
class TopicConfig:
    image: str = "/camera/image_raw"
    # sensor_msgs/CameraInfo of the image; None: the image topic's sibling camera_info
    # (/camera/image_raw -> /camera/camera_info); "": do not read one.
    camera_info: str | None = None
    command: str = "/cmd_vel"
    imu: str | None = "/imu/data"  # None: the pilot flies without IMU
    tolerance_s: float = 0.02  # a command or IMU sample may be stamped this much after its frame
    command_max_age_s: float = 0.5  # older than this, a frame has no usable label
    imu_max_age_s: float = 0.2
    gap_factor: float = 2.5  # a frame interval longer than this many median intervals is a gap

    def camera_info_topic(self) -> str | None:
        """Return the CameraInfo topic to read, or None."""
        if self.camera_info is not None:
            return self.camera_info or None
        base = self.image.removesuffix("/compressed")  # image_transport's topic for compressed frames
        return base.rpartition("/")[0] + "/camera_info" if "/" in base else "camera_info"


@dataclass
class Flight:
    """One bag decoded: frames with their label, IMU and elapsed time, ready for training."""

    bag: str
    images: np.ndarray  # (N, H, W, 3) uint8 RGB
    commands: np.ndarray  # (N, 4) float32 [vx, vy, vz, yaw_rate]
    imu: np.ndarray  # (N, 6) float32 (zeros without an IMU topic)
    dt: np.ndarray  # (N,) float32 seconds since the previous kept frame; 0 at segment starts
    segments: np.ndarray  # (N,) int: frames of one segment are contiguous in time
    # (horizontal, vertical) degrees the frames show after preprocessing, from the bag's CameraInfo;
    # None without one
    camera_fov_deg: tuple[float, float] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def bag_metadata(path: Path) -> dict[str, Any]:
    """Read the rosbag2 metadata.yaml of a bag folder (custom_data holds our episode facts)."""
    meta = path / "metadata.yaml"
    if not meta.is_file():
        raise BagError(path, "not a rosbag2 bag (no metadata.yaml)")
    try:
        return yaml.load(meta.read_text(), Loader=yaml.CSafeLoader)["rosbag2_bagfile_information"]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise BagError(path, f"unreadable metadata.yaml: {exc}") from None


def _stamp(msg: Any, bag_time: int) -> int:
    header = getattr(msg, "header", None)
    if header is None:
        return bag_time
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def _decode(msg: Any, msgtype: str, bag: Path) -> np.ndarray:
    try:
        return image_to_rgb(msg, msgtype)
    except BadInput as bad:
        raise BagError(bag, str(bad)) from None


def _camera_fov(info: Any, frame_shape: tuple[int, ...], size: tuple[int, int] | None) -> tuple[float, float] | None:
    """Field of view (degrees) of frames of ``frame_shape`` after ``fit`` to ``size``, from a CameraInfo.

    None for an uncalibrated camera (zero focal lengths). Intrinsics calibrated at another
    resolution (binning, a scaled stream) are scaled to the frames' size first.
    """
    height, width = frame_shape[:2]
    fx, fy = float(info.k[0]), float(info.k[4])
    if not (fx > 0 and fy > 0 and np.isfinite(fx) and np.isfinite(fy)):
        return None
    if info.width and info.height:
        fx, fy = fx * width / info.width, fy * height / info.height
    fov = fov_after_fit(width, height, fx, fy, tuple(size) if size is not None else (height, width))
    return float(fov[0]), float(fov[1])


def _command(msg: Any) -> list[float]:
    twist = getattr(msg, "twist", msg)
    return [twist.linear.x, twist.linear.y, twist.linear.z, twist.angular.z]


def _latest(stamps: np.ndarray, at: np.ndarray, tolerance: int, max_age: int) -> tuple[np.ndarray, np.ndarray]:
    """Index of the latest sample stamped <= at + tolerance, and whether it is young enough."""
    index = np.searchsorted(stamps, at + tolerance, side="right") - 1
    ok = index >= 0
    ok[ok] = at[ok] - stamps[index[ok]] <= max_age
    return np.maximum(index, 0), ok


def read_flight(path: str | Path, topics: TopicConfig | None = None,
                size: tuple[int, int] | None = None) -> Flight:
    """Decode a bag; ``size`` (height, width) fits frames to it (``flight.image.fit``).

    Raises ``BagError`` on any problem.
    """
    topics = topics or TopicConfig()
    bag = Path(path)
    metadata = bag_metadata(bag)
    try:
        reader = Reader(bag)
        reader.open()
    except Exception as exc:  # rosbags raises its own error types for damaged storage
        raise BagError(bag, f"cannot open the bag (truncated or corrupted?): {exc}") from None
    try:
        types = {c.topic: c.msgtype for c in reader.connections}
        wanted = {"image": (topics.image, IMAGE_TYPES), "command": (topics.command, COMMAND_TYPES)}
        if topics.imu:
            wanted["imu"] = (topics.imu, (IMU_TYPE,))
        for role, (topic, allowed) in wanted.items():
            if topic not in types:
                raise BagError(bag, f"no {role} topic {topic!r}; the bag has: {', '.join(sorted(types)) or 'nothing'}")
            if types[topic] not in allowed:
                raise BagError(bag, f"{role} topic {topic!r} has type {types[topic]}; expected {' or '.join(allowed)}")
        info_topic = topics.camera_info_topic()
        if types.get(info_topic) != CAMERA_INFO_TYPE:
            info_topic = None  # none recorded (or not a CameraInfo): the field of view stays unknown
        frames, frame_stamps, commands, command_stamps, imu, imu_stamps = [], [], [], [], [], []
        info, shape = None, None
        topic_names = {t for t, _ in wanted.values()} | {info_topic}
        chosen = [c for c in reader.connections if c.topic in topic_names]
        try:
            for connection, bag_time, raw in reader.messages(connections=chosen):
                if connection.topic == info_topic:
                    if info is None:  # the first is used; a camera's intrinsics do not change in flight
                        info = TYPESTORE.deserialize_cdr(raw, connection.msgtype)
                    continue
                msg = TYPESTORE.deserialize_cdr(raw, connection.msgtype)
                if connection.topic == topics.image:
                    image = _decode(msg, connection.msgtype, bag)
                    if shape is None:
                        shape = image.shape
                    if size is not None:
                        image = fit(image, size)
                    frames.append(image)
                    frame_stamps.append(_stamp(msg, bag_time))
                elif connection.topic == topics.command:
                    commands.append(_command(msg))
                    command_stamps.append(_stamp(msg, bag_time))
                else:
                    imu.append([msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z,
                                msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z])
                    imu_stamps.append(_stamp(msg, bag_time))
        except BagError:
            raise
        except Exception as exc:
            raise BagError(bag, f"damaged message data (truncated or corrupted?): {exc}") from None
    finally:
        reader.close()
    flight = _align(bag, metadata, topics, frames, frame_stamps, commands, command_stamps, imu, imu_stamps)
    if info is not None:
        flight.camera_fov_deg = _camera_fov(info, shape, size)
    flight.report["camera_info"] = info_topic if info is not None else None
    return flight


def _align(bag: Path, metadata: dict, topics: TopicConfig, frames: list, frame_stamps: list, commands: list,
           command_stamps: list, imu: list, imu_stamps: list) -> Flight:
    if not frames:
        raise BagError(bag, f"no frames on {topics.image}")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise BagError(bag, f"frames change size within the bag: {sorted(shapes)}")
    report: dict[str, Any] = {"frames": len(frames)}

    def ordered(stamps: list, values: list, name: str) -> tuple[np.ndarray, np.ndarray]:
        stamps_arr = np.array(stamps, dtype=np.int64).reshape(-1)
        order = np.argsort(stamps_arr, kind="stable")
        report[f"{name}_out_of_order"] = int(np.sum(np.diff(stamps_arr) < 0))
        return stamps_arr[order], np.asarray(values)[order] if len(values) else np.zeros((0,))

    f_stamps, order = ordered(frame_stamps, np.arange(len(frames)), "frame")
    c_stamps, c_values = ordered(command_stamps, commands, "command")
    i_stamps, i_values = ordered(imu_stamps, imu, "imu")
    if len(c_stamps) == 0:
        raise BagError(bag, f"no commands on {topics.command}")
    tol = int(topics.tolerance_s * 1e9)
    c_index, c_ok = _latest(c_stamps, f_stamps, tol, int(topics.command_max_age_s * 1e9))
    keep = c_ok.copy()
    report["frames_without_command"] = int(np.sum(~c_ok))
    if topics.imu:
        i_index, i_ok = _latest(i_stamps, f_stamps, tol, int(topics.imu_max_age_s * 1e9))
        report["frames_without_imu"] = int(np.sum(c_ok & ~i_ok))
        keep &= i_ok
    if not keep.any():
        raise BagError(bag, "no usable frames: none has a command (and IMU sample) close enough in time")
    stamps = f_stamps[keep]
    intervals = np.diff(stamps)
    median = float(np.median(intervals)) if len(intervals) else 0.0
    breaks = np.concatenate([[True], intervals > topics.gap_factor * median]) if median > 0 else np.ones(1, bool)
    report.update(gaps=int(breaks[1:].sum()), median_frame_interval_s=median / 1e9, kept=int(keep.sum()),
                  duration_s=float(stamps[-1] - stamps[0]) / 1e9)
    dt = np.concatenate([[0.0], intervals / 1e9]).astype(np.float32)
    dt[breaks] = 0.0
    images = np.stack([frames[i] for i in order[keep]])
    imu_out = i_values[i_index[keep]].astype(np.float32) if topics.imu else np.zeros((len(stamps), 6), np.float32)
    return Flight(bag=str(bag), images=images, commands=c_values[c_index[keep]].astype(np.float32), imu=imu_out,
                  dt=dt, segments=np.cumsum(breaks) - 1,
                  metadata={str(k): str(v) for k, v in (metadata.get("custom_data") or {}).items()}, report=report)
