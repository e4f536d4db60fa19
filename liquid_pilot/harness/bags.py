"""Writing flights as rosbag2 bags (MCAP or sqlite3) with the standard ROS topics and types.

Topics: /camera/image_raw (sensor_msgs/Image, rgb8), /camera/camera_info, /imu/data
(sensor_msgs/Imu), /cmd_vel (geometry_msgs/TwistStamped: the label), /odom (nav_msgs/Odometry).
The episode's scenario, task, seed and outcome go into the bag's custom metadata. A bag is
written in a hidden ``.partial/`` folder and moved into place when closed, so every bag under
its final name is complete and readable.
"""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer

from liquid_pilot.flight.codec import TYPESTORE
from liquid_pilot.flight.image import camera_matrices

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
EPOCH_S = 1_700_000_000  # bag time of every episode's start: fixed, so bags are reproducible
CAMERA_FRAME, BODY_FRAME, WORLD_FRAME = "camera_optical_frame", "base_link", "odom"
TOPICS = {
    "image": ("/camera/image_raw", "sensor_msgs/msg/Image"),
    "camera_info": ("/camera/camera_info", "sensor_msgs/msg/CameraInfo"),
    "imu": ("/imu/data", "sensor_msgs/msg/Imu"),
    "command": ("/cmd_vel", "geometry_msgs/msg/TwistStamped"),
    "odom": ("/odom", "nav_msgs/msg/Odometry"),
}
T = TYPESTORE.types


def _header(stamp_ns: int, frame: str) -> Any:
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
        sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000), frame_id=frame)


def _vector(v: np.ndarray) -> Any:
    return T["geometry_msgs/msg/Vector3"](x=float(v[0]), y=float(v[1]), z=float(v[2]))


def image_msg(image: np.ndarray, stamp_ns: int) -> Any:
    h, w = image.shape[:2]
    return T["sensor_msgs/msg/Image"](header=_header(stamp_ns, CAMERA_FRAME), height=h, width=w, encoding="rgb8",
                                      is_bigendian=0, step=3 * w, data=np.ascontiguousarray(image).reshape(-1))


def camera_info_msg(width: int, height: int, vfov: float, stamp_ns: int) -> Any:
    """Pinhole intrinsics of an ideal camera with vertical field of view ``vfov`` (rad)."""
    described = camera_matrices(width, height, vfov)
    matrices = {name: np.array(values, dtype=np.float64) for name, values in described.items()}
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return T["sensor_msgs/msg/CameraInfo"](
        header=_header(stamp_ns, CAMERA_FRAME), height=height, width=width, distortion_model="plumb_bob",
        binning_x=0, binning_y=0, roi=roi, **matrices)


def imu_msg(imu: np.ndarray, stamp_ns: int) -> Any:
    """REP-145: orientation not provided (covariance[0] = -1)."""
    unknown = np.zeros(9)
    unknown[0] = -1.0
    return T["sensor_msgs/msg/Imu"](
        header=_header(stamp_ns, BODY_FRAME), orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
        orientation_covariance=unknown, angular_velocity=_vector(imu[:3]), angular_velocity_covariance=np.zeros(9),
        linear_acceleration=_vector(imu[3:]), linear_acceleration_covariance=np.zeros(9))


def twist_stamped_msg(command: np.ndarray, stamp_ns: int) -> Any:
    twist = T["geometry_msgs/msg/Twist"](linear=_vector(command[:3]), angular=_vector([0.0, 0.0, command[3]]))
    return T["geometry_msgs/msg/TwistStamped"](header=_header(stamp_ns, BODY_FRAME), twist=twist)


def odometry_msg(position: np.ndarray, orientation: tuple[float, float, float, float], body_velocity: np.ndarray,
                 rates: np.ndarray, stamp_ns: int) -> Any:
    """Pose in the world (odom) frame, twist in the body frame, as nav_msgs/Odometry defines.

    ``orientation``: the body's attitude as a quaternion (x, y, z, w).
    """
    x, y, z, w = orientation
    quat = T["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w)
    pose = T["geometry_msgs/msg/PoseWithCovariance"](
        pose=T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](
            x=float(position[0]), y=float(position[1]), z=float(position[2])), orientation=quat),
        covariance=np.zeros(36))
    twist = T["geometry_msgs/msg/TwistWithCovariance"](
        twist=T["geometry_msgs/msg/Twist"](linear=_vector(body_velocity), angular=_vector(rates)),
        covariance=np.zeros(36))
    return T["nav_msgs/msg/Odometry"](header=_header(stamp_ns, WORLD_FRAME), child_frame_id=BODY_FRAME, pose=pose,
                                      twist=twist)


class BagWriter:
    """One episode's bag, used as a context manager.

    Leaving the block by an exception (Ctrl-C included) deletes the unfinished bag instead of
    leaving a broken one.
    """

    def __init__(self, path: str | Path, storage: str = "mcap", metadata: dict[str, Any] | None = None):
        if storage not in STORAGES:
            raise ValueError(f"unknown bag storage {storage!r}; choose one of {', '.join(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} already exists; refusing to overwrite a recorded bag")
        self.partial = self.path.parent / ".partial" / self.path.name
        shutil.rmtree(self.partial, ignore_errors=True)
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self.writer = Writer(self.partial, version=9, storage_plugin=STORAGES[storage])
        self.metadata = {k: str(v) for k, v in (metadata or {}).items()}
        self.connections: dict[str, Any] = {}

    def __enter__(self) -> BagWriter:
        self.writer.open()
        for key, (topic, msgtype) in TOPICS.items():
            self.connections[key] = self.writer.add_connection(topic, msgtype, typestore=TYPESTORE)
        return self

    def write(self, key: str, msg: Any, stamp_ns: int) -> None:
        topic, msgtype = TOPICS[key]
        self.writer.write(self.connections[key], stamp_ns, TYPESTORE.serialize_cdr(msg, msgtype))

    def __exit__(self, kind: type | None, error: BaseException | None, trace: object) -> None:
        if kind is not None:
            self.writer.close()
            shutil.rmtree(self.partial, ignore_errors=True)
        else:
            for key, value in self.metadata.items():
                self.writer.set_custom_data(key, value)
            self.writer.close()
            self.partial.rename(self.path)
        with contextlib.suppress(OSError):  # other writers may still use it: then it stays
            self.partial.parent.rmdir()
