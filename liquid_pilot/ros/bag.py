"""What the recorder and the player share: message classes by name, QoS, and bag folders.

A recording is one rosbag2 bag (a folder with ``metadata.yaml``) or, when split, a folder
of such bags that the player reads as one stream.
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence

from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                QosTime)


def message_class(type_name: str) -> type:
    """``sensor_msgs/msg/Image`` -> the installed Python class, or ValueError."""
    package, kind, name = (type_name.split("/") + ["", ""])[:3]
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"message type {type_name!r} is not installed") from None


def _qos_time(duration: Duration) -> QosTime:
    sec, nsec = divmod(duration.nanoseconds, 1_000_000_000)
    return QosTime(sec, nsec)


def to_bag_qos(profile: QoSProfile) -> Qos:
    """Convert an endpoint's rclpy QoS to what rosbag2 stores (offered_qos_profiles)."""
    return Qos(QosHistory[profile.history.name], profile.depth, QosReliability[profile.reliability.name],
               QosDurability[profile.durability.name], _qos_time(profile.deadline), _qos_time(profile.lifespan),
               QosLiveliness[profile.liveliness.name], _qos_time(profile.liveliness_lease_duration),
               profile.avoid_ros_namespace_conventions)


def matching_qos(offered: Sequence[Qos], depth: int) -> QoSProfile:
    """Return a QoS that hears every one of these publishers, as reliable and durable as all of them offer."""
    reliable = bool(offered) and all(q.reliability == QosReliability.RELIABLE for q in offered)
    latched = bool(offered) and all(q.durability == QosDurability.TRANSIENT_LOCAL for q in offered)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
