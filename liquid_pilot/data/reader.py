"""Reading flights from bags of any kind (``data.storage``), from our simulator or a real drone.

Images: sensor_msgs/Image (rgb8, bgr8, mono8, rgba8, bgra8) or sensor_msgs/CompressedImage (jpeg, png),
decoded by ``flight.codec`` and brought to the model's size by ``flight.image.fit`` (centre crop to
the model's aspect, then resize), exactly as in flight. The camera's sensor_msgs/CameraInfo, when
the bag has it, gives the field of view the model sees after that crop.
Labels (the command topic): velocity commands (geometry_msgs/Twist or TwistStamped), or the
vehicle's motion (nav_msgs/Odometry, or TwistStamped velocity telemetry such as MAVROS's
``local_position/velocity_body``) for flights flown by RC, whose stick commands never reach a
topic. A command label is held until the next command; a motion label is the body-frame velocity
and yaw rate the vehicle flew, smoothed by a zero-phase Gaussian (``motion_smoothing_s``) and
interpolated at the frame's time plus a lead (``command_lead_s``): commands lead the motion they
cause by the vehicle's response, which ``estimate_lead`` measures on bags that hold both.
IMU: sensor_msgs/Imu (optional).

Topics are named, or ``auto``: the one topic of the right type (or the conventional name among
several), the choice reported. Time: header stamps or the time each message was recorded
(``time_source``); ``auto`` takes the header stamps unless the streams' clocks disagree, which is
detected and explained. Zero stamps take the receive time, counted. A stamp that steps back
more than ``max_reorder_s`` starts a new stretch (a clock reset): stretches are never sorted
across, and each frame takes its command and IMU sample from the stretch that was running
when it arrived. Smaller reorders are sorted and counted; gaps split a flight into segments.
Commands and IMU samples recorded in FRD are converted to the pilot's FLU; a motion label's body
frame is read from its message where it names one (``base_link_frd``), and a twist in a world
frame (``odom``, ``map``, ``*_ned``) is refused: it needs the attitude.
Each frame gets the latest command and IMU sample stamped no later than the frame plus a
tolerance, and no older than a maximum age; frames without them are reported, not hidden.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from liquid_pilot.data.storage import BagError, Topic, open_bag
from liquid_pilot.flight.codec import IMU_TYPE, BadInput, image_to_rgb
from liquid_pilot.flight.conventions import FRAMES, command_to_flu, imu_to_flu
from liquid_pilot.flight.image import fit, fov_after_fit
from liquid_pilot.settings import NON_NEGATIVE, SettingsError, check_fields, setting

__all__ = ["BagError", "Flight", "TopicConfig", "estimate_lead", "read_flight", "resolve_topics"]

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
COMMAND_TYPES = ("geometry_msgs/msg/TwistStamped", "geometry_msgs/msg/Twist")
ODOMETRY_TYPE = "nav_msgs/msg/Odometry"
LABEL_TYPES = (*COMMAND_TYPES, ODOMETRY_TYPE)
COMMAND_KINDS = ("auto", "command", "motion")
# TwistStamped topics that auto reads as the vehicle's motion, by their last name: MAVROS's body-frame velocity.
TELEMETRY_NAMES = ("velocity_body",)
# Frame ids of world frames (REP-105, MAVROS, PX4): a twist in one of them needs the attitude to be a body velocity.
WORLD_FRAMES = ("map", "odom", "world", "earth", "local_origin", "local")
WORLD_SUFFIXES = ("_ned", "_enu")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
HEADERLESS = {"geometry_msgs/msg/Twist"}
AUTO, NONE = "auto", "none"
CONVENTIONAL = {"image": "/camera/image_raw", "command": "/cmd_vel", "imu": "/imu/data"}
ALLOWED = {"image": IMAGE_TYPES, "command": LABEL_TYPES, "imu": (IMU_TYPE,)}
OPTION = {"image": "--image-topic", "command": "--command-topic", "imu": "--imu-topic"}
TIME_SOURCES = ("header", "receive", "auto")
CLOCK_OFFSET_S = 0.5  # streams whose header clocks differ by more than this are on different clocks


@dataclass
class TopicConfig:
    """How to read a flight from a bag: topics, time and conventions.

    Each setting is documented and bounded once, and checked on construction.
    """

    image: str = setting("/camera/image_raw", "the image topic, or auto: the bag's image topic, chosen by type")
    camera_info: str | None = setting(None, "sensor_msgs/CameraInfo of the image; null: the image topic's sibling "
                                            "camera_info (/camera/image_raw -> /camera/camera_info); empty: none")
    command: str = setting("/cmd_vel", "the label topic (velocity commands or the vehicle's motion), or auto")
    imu: str | None = setting("/imu/data", "the IMU topic, auto, or null / none: no IMU (an image-only pilot)")
    tolerance_s: float = setting(0.02, "s a command or IMU sample may be stamped after its frame", NON_NEGATIVE)
    command_max_age_s: float = setting(0.5, "s: a frame whose latest command is older has no usable label",
                                       NON_NEGATIVE)
    imu_max_age_s: float = setting(0.2, "s: a frame whose latest IMU sample is older has no usable IMU input",
                                   NON_NEGATIVE)
    gap_factor: float = setting(2.5, "a frame interval longer than this many median intervals is a gap",
                                NON_NEGATIVE)
    time_source: str = setting("auto", "header, receive (when recorded), or auto (header unless the clocks "
                                       "disagree)", TIME_SOURCES)
    max_reorder_s: float = setting(0.25, "s: a stamp this much before one already seen means the clock stepped back",
                                   NON_NEGATIVE)
    command_frame: str = setting("flu", "body frame of the recorded commands: flu (REP-103) or frd (PX4's and "
                                        "MAVLink's BODY_NED)", FRAMES)
    imu_frame: str = setting("flu", "body frame of the recorded IMU samples: flu or frd", FRAMES)
    command_kind: str = setting("auto", "what the command topic holds: command (velocity commands: each frame takes "
                                        "the latest), motion (the velocity the vehicle flew: Odometry, velocity "
                                        "telemetry), or auto: motion for Odometry and for a TwistStamped named like "
                                        "velocity telemetry (.../velocity_body), else command", COMMAND_KINDS)
    command_lead_s: float | list[float] = setting(0.0, "motion labels: the label of a frame at t is the motion at "
                                                       "t + lead (s): one value, or one per axis [vx, vy, vz, "
                                                       "yaw_rate]; commands lead the motion by the vehicle's "
                                                       "response (bag info estimates it)")
    motion_smoothing_s: float = setting(0.05, "motion labels: standard deviation (s) of the zero-phase Gaussian "
                                              "that smooths the velocities; 0: none", NON_NEGATIVE)

    def __post_init__(self) -> None:
        if self.imu is None or (isinstance(self.imu, str) and self.imu.lower() == NONE):
            self.imu = None
        for role in ("image", "command"):
            value = getattr(self, role)
            if not isinstance(value, str) or not value or value.lower() == NONE:
                raise SettingsError(f"topics.{role} must be a topic or 'auto' (only the IMU can be 'none'), "
                                    f"got {value!r}")
        self.command_lead_s = _lead_values(self.command_lead_s)
        check_fields(self)

    def leads(self) -> list[float]:
        """Return the lead (s) of each axis [vx, vy, vz, yaw_rate]."""
        lead = self.command_lead_s
        return [float(lead)] * 4 if isinstance(lead, (int, float)) else [float(v) for v in lead]

    def camera_info_topic(self, image: str | None = None) -> str | None:
        """Return the CameraInfo topic to read for ``image`` (default: the configured one), or None."""
        if self.camera_info is not None:
            return self.camera_info or None
        base = (image or self.image).removesuffix("/compressed")  # image_transport's topic for compressed frames
        return base.rpartition("/")[0] + "/camera_info" if "/" in base else "camera_info"


MAX_LEAD_S = 5.0


def _lead_values(value: object) -> float | list[float]:
    """Check a lead: one number, or four (vx, vy, vz, yaw_rate); "0.3" and "0.3,0.3,0.2,0.1" from a command line."""
    given = value
    if isinstance(value, str):
        try:
            value = [float(v) for v in value.split(",")]
        except ValueError:
            value = []
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) not in (1, 4) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                            and 0 <= v <= MAX_LEAD_S for v in values):
        raise ValueError(f"command_lead_s must be seconds from 0 to {MAX_LEAD_S:g}: one value, or four (vx, vy, vz, "
                         f"yaw_rate), got {given!r}")
    return float(values[0]) if len(values) == 1 else [float(v) for v in values]


def label_kind(topic: str, msgtype: str, kind: str = "auto") -> str:
    """Return what a label topic holds, 'command' or 'motion', under the ``command_kind`` setting.

    Raises ValueError if the setting contradicts the type (Odometry read as commands).
    """
    if msgtype == ODOMETRY_TYPE:
        if kind == "command":
            raise ValueError(f"{topic} is nav_msgs/Odometry, the vehicle's motion: it cannot be read as velocity "
                             f"commands (command_kind motion or auto)")
        return "motion"
    if kind != "auto":
        return kind
    last = topic.rstrip("/").rpartition("/")[2]
    return "motion" if msgtype != "geometry_msgs/msg/Twist" and last in TELEMETRY_NAMES else "command"


def motion_frame(frame_id: str, world_id: str, configured: str) -> tuple[str | None, str]:
    """Return the body frame (flu, frd) a motion label's twist is in, from its frame id, and how it was decided.

    ``frame_id``: Odometry's child_frame_id, or a TwistStamped's header frame; ``world_id``: an
    Odometry's header frame (the pose's). None for a world frame, whose twist needs the attitude.
    """
    name = frame_id.strip().lstrip("/").lower()
    if not name:
        return configured, f"no frame id: taken as the body frame (REP-105), {configured.upper()}"
    if name == world_id.strip().lstrip("/").lower() or name in WORLD_FRAMES or name.endswith(WORLD_SUFFIXES):
        return None, f"{frame_id!r} is a world frame"
    if name.endswith("frd"):
        return "frd", f"{frame_id!r} names FRD"
    if name.endswith("flu"):
        return "flu", f"{frame_id!r} names FLU"
    return configured, f"{frame_id!r}, a body frame in {configured.upper()}" + (
        " (REP-103)" if configured == "flu" else " (--command-frame)")


@dataclass
class Flight:
    """One bag decoded: frames with their label, IMU and elapsed time, ready for training."""

    bag: str
    images: np.ndarray  # (N, H, W, 3) uint8 RGB
    commands: np.ndarray  # (N, 4) float32 [vx, vy, vz, yaw_rate], FLU
    imu: np.ndarray  # (N, 6) float32, FLU (zeros without an IMU topic)
    dt: np.ndarray  # (N,) float32 seconds since the previous kept frame; 0 at segment starts
    segments: np.ndarray  # (N,) int: frames of one segment are contiguous in time
    # (horizontal, vertical) degrees the frames show after preprocessing, from the bag's CameraInfo;
    # None without one
    camera_fov_deg: tuple[float, float] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def _listing(topics: dict[str, Topic]) -> str:
    items = [f"{t.name} ({t.msgtype or 'no type'})" for t in sorted(topics.values(), key=lambda t: t.name)]
    return ", ".join(items[:30]) + (f", and {len(items) - 30} more" if len(items) > 30 else "") or "nothing"


def resolve_topics(bag: str | Path, topics: dict[str, Topic],
                   config: TopicConfig) -> tuple[dict[str, str | None], list[str]]:
    """Return the topics to read ({image, command, imu, camera_info}) and how each was chosen, or raise BagError.

    ``auto`` takes the one topic of the role's type, or the conventional name when several are;
    errors list the bag's topics and the option that chooses.
    """
    chosen: dict[str, str | None] = {}
    how: list[str] = []
    for role in ("image", "command", "imu"):
        name = getattr(config, role)
        allowed = ALLOWED[role]
        setting = f"{OPTION[role]} (topics.{role} in a training config)"
        if name is None:
            chosen[role] = None
            continue
        if name != AUTO:
            if name not in topics:
                raise BagError(bag, f"no {role} topic {name!r}; the bag has: {_listing(topics)}; choose with "
                                    f"{setting}")
            if topics[name].msgtype not in allowed:
                raise BagError(bag, f"{role} topic {name!r} has type {topics[name].msgtype}; expected "
                                    f"{' or '.join(allowed)}; choose another with {setting}")
            chosen[role] = name
            continue
        candidates = sorted(t.name for t in topics.values() if t.msgtype in allowed)
        if len(candidates) == 1:
            chosen[role] = candidates[0]
            how.append(f"{role} {candidates[0]} (the only {' or '.join(a.rpartition('/')[2] for a in allowed)})")
        elif CONVENTIONAL[role] in candidates:
            chosen[role] = CONVENTIONAL[role]
            others = [c for c in candidates if c != CONVENTIONAL[role]]
            how.append(f"{role} {CONVENTIONAL[role]} (the conventional name; also there: {', '.join(others)})")
        elif candidates:
            raise BagError(bag, f"{len(candidates)} {role} topics ({', '.join(candidates)}): choose one with {setting}")
        else:
            none = ", or --imu-topic none for an image-only pilot" if role == "imu" else ""
            raise BagError(bag, f"no {role} topic ({' or '.join(allowed)}); the bag has: {_listing(topics)}; "
                                f"name one with {setting}{none}")
    info = config.camera_info_topic(chosen["image"])
    chosen["camera_info"] = info if info in topics and topics[info].msgtype == CAMERA_INFO_TYPE else None
    return chosen, how


def _stamp(msg: Any) -> int:
    stamp = msg.header.stamp
    return stamp.sec * 1_000_000_000 + stamp.nanosec


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
    """[vx, vy, vz, yaw rate] of a Twist, TwistStamped or Odometry (its twist, in the child frame)."""
    twist = getattr(msg, "twist", msg)
    twist = getattr(twist, "twist", twist)  # Odometry: TwistWithCovariance
    return [twist.linear.x, twist.linear.y, twist.linear.z, twist.angular.z]


def _label_frames(msg: Any) -> tuple[str, str]:
    """Return (the twist's frame id, the world frame id) of a label message.

    Odometry's child and header frames, a TwistStamped's header frame; empty where the type has none.
    """
    header = getattr(msg, "header", None)
    frame = header.frame_id if header is not None else ""
    child = getattr(msg, "child_frame_id", None)
    return (child, frame) if child is not None else (frame, "")


def _imu(msg: Any) -> list[float]:
    w, a = msg.angular_velocity, msg.linear_acceleration
    return [w.x, w.y, w.z, a.x, a.y, a.z]


@dataclass
class _Stream:
    """One topic's samples as read: header stamps (-1: the type has none), receive times, arrival order."""

    topic: str
    header: list[int] = field(default_factory=list)
    receive: list[int] = field(default_factory=list)
    arrival: list[int] = field(default_factory=list)
    values: list = field(default_factory=list)


def read_flight(path: str | Path, topics: TopicConfig | None = None,
                size: tuple[int, int] | None = None) -> Flight:
    """Decode a bag; ``size`` (height, width) fits frames to it (``flight.image.fit``).

    Raises ``BagError`` on any problem.
    """
    config = topics or TopicConfig()
    bag_path = Path(path)
    with open_bag(bag_path) as bag:
        chosen, how = resolve_topics(bag_path, bag.topics, config)
        roles = {chosen[r]: r for r in ("imu", "command", "image") if chosen[r]}
        streams = {role: _Stream(topic) for topic, role in roles.items()}
        info_topic = chosen["camera_info"]
        info, shape = None, None
        wanted = set(roles) | ({info_topic} if info_topic else set())
        headed = {role: bag.topics[topic].msgtype not in HEADERLESS for topic, role in roles.items()}
        label_type = bag.topics[chosen["command"]].msgtype
        try:
            kind = label_kind(chosen["command"], label_type, config.command_kind)
        except ValueError as exc:
            raise BagError(bag_path, f"{exc}; choose with --command-kind") from None
        if kind == "command" and any(config.leads()):
            raise BagError(bag_path, f"a lead (command_lead_s {config.command_lead_s}) is for motion labels, and "
                                     f"{chosen['command']} holds velocity commands; name the motion topic (Odometry, "
                                     f"velocity telemetry) with --command-topic, or --command-kind motion")
        label_frames: Counter = Counter()
        invalid = {"command": 0, "imu": 0}
        try:
            for arrival, (topic, receive, raw) in enumerate(bag.messages(wanted)):
                if topic == info_topic:
                    if info is None:  # the first is used; a camera's intrinsics do not change in flight
                        info = bag.decode(topic, raw)
                    continue
                msg = bag.decode(topic, raw)
                role = roles[topic]
                stream = streams[role]
                if role == "image":
                    image = _decode(msg, bag.topics[topic].msgtype, bag_path)
                    if shape is None:
                        shape = image.shape
                    elif image.shape != shape:
                        raise BagError(bag_path, f"frames change size within the bag: {shape[:2]} and "
                                                 f"{image.shape[:2]}")
                    stream.values.append(fit(image, size) if size is not None else image)
                else:
                    values = _command(msg) if role == "command" else _imu(msg)
                    if role == "command" and kind == "motion" and len(label_frames) < 8:
                        label_frames[_label_frames(msg)] += 1
                    if not all(math.isfinite(v) for v in values):
                        invalid[role] += 1  # NaN or infinity: a sample that would poison training
                        continue
                    stream.values.append(values)
                stream.header.append(_stamp(msg) if headed[role] else -1)
                stream.receive.append(receive)
                stream.arrival.append(arrival)
        except BagError:
            raise
        except Exception as exc:
            raise BagError(bag_path, f"damaged message data (truncated or corrupted?): {exc}") from None
        notes = list(bag.notes)
        notes += [f"{n} {role} samples on {chosen[role]} are not finite (NaN or infinity): left out"
                  for role, n in invalid.items() if n]
        metadata = dict(bag.custom_data)
    label = _label(bag_path, config, chosen["command"], label_type, kind, label_frames)
    flight = _align(bag_path, config, streams, notes, label)
    flight.metadata = metadata
    if info is not None:
        flight.camera_fov_deg = _camera_fov(info, shape, size)
    flight.report.update(topics=chosen, chosen=how, camera_info=info_topic if info is not None else None,
                         command_frame=label["frame"], imu_frame=config.imu_frame, label=label)
    return flight


def _label(bag: Path, config: TopicConfig, topic: str, msgtype: str, kind: str, frames: Counter) -> dict[str, Any]:
    """How the label is read (for the report and the checkpoint): its kind, body frame, lead and smoothing."""
    label: dict[str, Any] = {"kind": kind, "type": msgtype, "frame": config.command_frame}
    if kind == "command":
        return label
    (frame_id, world_id), _ = frames.most_common(1)[0] if frames else (("", ""), 0)
    frame, how = motion_frame(frame_id, world_id, config.command_frame)
    if frame is None:
        field_name = "child_frame_id" if msgtype == ODOMETRY_TYPE else "header.frame_id"
        raise BagError(bag, f"the velocities on {topic} are in a world frame ({field_name} {how}): a label is the "
                            f"body-frame velocity (REP-105: twist in the child frame base_link); record the vehicle's "
                            f"body velocity (e.g. MAVROS local_position/velocity_body, or an Odometry in base_link)")
    label.update(frame=frame, frame_from=how, lead_s=config.leads(), smoothing_s=config.motion_smoothing_s)
    return label


def _clock_offsets(streams: dict[str, _Stream]) -> dict[str, float]:
    """Per stream, the median of receive time minus header stamp (s); 0 for a stream without headers."""
    offsets = {}
    for role, s in streams.items():
        header, receive = np.asarray(s.header, np.int64), np.asarray(s.receive, np.int64)
        valid = header > 0
        offsets[role] = float(np.median(receive[valid] - header[valid])) / 1e9 if valid.any() else 0.0
    return offsets


def _choose_time(bag: Path, config: TopicConfig, streams: dict[str, _Stream], notes: list[str]) -> str:
    headed = [r for r, s in streams.items() if any(h > 0 for h in s.header)]
    if config.time_source == "receive" or not headed:
        return "receive"
    offsets = _clock_offsets(streams)
    clocks = {r: offsets[r] if r in headed else 0.0 for r in ("image", "command", "imu") if r in streams}
    low, high = min(clocks, key=clocks.get), max(clocks, key=clocks.get)
    if clocks[high] - clocks[low] <= CLOCK_OFFSET_S:
        return "header"

    def clock(role: str) -> str:
        topic = streams[role].topic
        return f"{topic} (header stamps)" if role in headed else f"{topic} (no header: receive time)"

    explained = (f"the streams are stamped on different clocks: {clock(low)} runs {clocks[high] - clocks[low]:.3f} s "
                 f"ahead of {clock(high)} (a sensor's boot clock, or an unsynchronised computer)")
    if config.time_source == "header":
        raise BagError(bag, f"{explained}; use --time-source receive (or auto) to align them by the time each "
                            f"message was recorded")
    notes.append(f"time: the time each message was recorded, not the header stamps: {explained}")
    return "receive"


def _times(stream: _Stream, source: str, offset_s: float) -> tuple[np.ndarray, int]:
    """Stamps (ns) of a stream by the time source, and how many zero stamps took the receive time."""
    receive = np.asarray(stream.receive, np.int64)
    header = np.asarray(stream.header, np.int64)
    if source == "receive" or not len(header) or (header < 0).all():
        return receive, 0
    zero = header <= 0
    # Zero stamps take the receive time, shifted onto the header clock by the stream's usual delay.
    return np.where(zero, receive - int(round(offset_s * 1e9)), header), int(zero.sum())


def _runs(stamps: np.ndarray, max_reorder: int) -> np.ndarray:
    """Run index of each sample (in arrival order): a new run wherever the clock steps back over ``max_reorder``."""
    runs = np.zeros(len(stamps), np.int64)
    start, run = 0, 0
    while start < len(stamps):
        peak = np.maximum.accumulate(stamps[start:])
        back = np.flatnonzero(stamps[start + 1:] < peak[:-1] - max_reorder)
        end = start + 1 + int(back[0]) if len(back) else len(stamps)
        runs[start:end] = run
        start, run = end, run + 1
    return runs


def _ordered(stamps: np.ndarray, runs: np.ndarray) -> tuple[np.ndarray, int]:
    """Order samples run by run (in arrival order), by stamp within a run; also count those out of order."""
    order = np.lexsort((np.arange(len(stamps)), stamps, runs))
    within = (np.diff(stamps) < 0) & (np.diff(runs) == 0)
    return order, int(within.sum())


def _latest(stamps: np.ndarray, at: np.ndarray, tolerance: int, max_age: int) -> tuple[np.ndarray, np.ndarray]:
    """Index of the latest sample stamped <= at + tolerance, and whether it is young enough."""
    index = np.searchsorted(stamps, at + tolerance, side="right") - 1
    ok = index >= 0
    ok[ok] = at[ok] - stamps[index[ok]] <= max_age
    return np.maximum(index, 0), ok


def _frame_runs(frames: tuple[np.ndarray, np.ndarray, np.ndarray],
                samples: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Return the sample run each frame looks in (see ``_match``)."""
    _, f_runs, f_arrival = frames
    _, s_runs, s_arrival = samples
    if f_runs.max() == s_runs.max():
        return f_runs
    last = np.searchsorted(s_arrival, f_arrival) - 1
    return s_runs[np.maximum(last, 0)]


def _smooth(stamps: np.ndarray, values: np.ndarray, sigma: float) -> np.ndarray:
    """Zero-phase Gaussian smoothing (standard deviation ``sigma`` ns) of samples at sorted ``stamps``, cut at 3 sigma.

    Each sample becomes the Gaussian-weighted mean of the samples within 3 sigma of it, weighted by
    their distance in time (so uneven sampling is smoothed alike), which neither delays nor
    advances the signal.
    """
    if sigma <= 0 or len(stamps) < 2:
        return values
    reach = np.searchsorted(stamps, stamps + 3 * sigma, side="right") - np.arange(len(stamps)) - 1
    total = values.copy()
    weight = np.ones(len(stamps))
    for k in range(1, int(reach.max()) + 1):
        near = reach[:-k] >= k  # sample i and i + k are within 3 sigma
        w = np.exp(-0.5 * ((stamps[k:] - stamps[:-k]) / sigma) ** 2) * near
        total[:-k] += w[:, None] * values[k:]
        total[k:] += w[:, None] * values[:-k]
        weight[:-k] += w
        weight[k:] += w
    return total / weight[:, None]


def _motion(frames: tuple[np.ndarray, np.ndarray, np.ndarray], samples: tuple[np.ndarray, np.ndarray, np.ndarray],
            values: np.ndarray, leads: list[float], sigma_s: float, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Motion labels of frames: each axis's smoothed velocity interpolated at the frame's stamp + that axis's lead.

    Samples of the frame's run only (as ``_match``); a frame is labelled when, on every axis, its
    target time lies within the run, between samples at most ``max_gap`` apart: motion is
    interpolated, never extrapolated. Returns (N, 4) labels and which frames have them.
    """
    f_stamps = frames[0]
    s_stamps, s_runs, _ = samples
    labels = np.zeros((len(f_stamps), 4))
    ok = np.zeros(len(f_stamps), bool)
    if not len(s_stamps):
        return labels, ok
    for mine, indices, t in _by_run(frames, samples):
        if not len(t):
            continue
        v = _smooth(t.astype(np.float64), values[indices], sigma_s * 1e9)
        good = np.ones(int(mine.sum()), bool)
        for axis, lead in enumerate(leads):
            target = f_stamps[mine] + int(round(lead * 1e9))
            right = np.clip(np.searchsorted(t, target), 0, len(t) - 1)
            left = np.clip(right - 1, 0, len(t) - 1)
            inside = (target >= t[0]) & (target <= t[-1])
            good &= inside & (t[right] - t[left] <= max_gap)
            labels[mine, axis] = np.interp(target, t, v[:, axis])
        ok[mine] = good
    return labels, ok


def _by_run(frames: tuple[np.ndarray, np.ndarray, np.ndarray], samples: tuple[np.ndarray, np.ndarray, np.ndarray]):
    """Yield (frames' mask, sample indices in time order, their stamps) for each sample run frames look in.

    A frame looks only in its own run (``_frame_runs``); the indices point into ``samples``.
    """
    s_stamps, s_runs, _ = samples
    run_of_frame = _frame_runs(frames, samples)
    order, _ = _ordered(s_stamps, s_runs)
    sorted_stamps, sorted_runs = s_stamps[order], s_runs[order]
    for run in np.unique(run_of_frame):
        lo, hi = np.searchsorted(sorted_runs, run), np.searchsorted(sorted_runs, run, side="right")
        yield run_of_frame == run, order[lo:hi], sorted_stamps[lo:hi]


def _match(frames: tuple[np.ndarray, np.ndarray, np.ndarray], samples: tuple[np.ndarray, np.ndarray, np.ndarray],
           tolerance: int, max_age: int) -> tuple[np.ndarray, np.ndarray]:
    """For frames (stamps, runs, arrival) in flight order, each one's sample (an index into ``samples``), and ok.

    A frame looks only in the matching sample run, so a clock that stepped back never lends a frame
    a sample of another stretch: when both streams stepped back as often (one clock reset them all),
    the run of the same rank; else the run that was running when the frame arrived (that of the
    last sample received before it).
    """
    f_stamps = frames[0]
    s_stamps, s_runs, _ = samples
    index = np.zeros(len(f_stamps), np.int64)
    ok = np.zeros(len(f_stamps), bool)
    if not len(s_stamps):
        return index, ok
    for mine, indices, stamps in _by_run(frames, samples):
        i, good = _latest(stamps, f_stamps[mine], tolerance, max_age)
        index[mine], ok[mine] = indices[i], good
    return index, ok


def _align(bag: Path, config: TopicConfig, streams: dict[str, _Stream], notes: list[str],
           label: dict[str, Any]) -> Flight:
    if not streams["image"].values:
        raise BagError(bag, f"no frames on {streams['image'].topic}")
    if not streams["command"].values:
        raise BagError(bag, f"no commands on {streams['command'].topic}")
    source = _choose_time(bag, config, streams, notes)
    offsets = _clock_offsets(streams)
    report: dict[str, Any] = {"frames": len(streams["image"].values), "time_source": source}
    reorder = int(config.max_reorder_s * 1e9)
    arrays = {}
    for role, stream in streams.items():
        stamps, zero = _times(stream, source, offsets[role])
        runs = _runs(stamps, reorder)
        arrays[role] = (stamps, runs, np.asarray(stream.arrival, np.int64))
        _, report[f"{role}_out_of_order"] = _ordered(stamps, runs)
        report[f"{role}_zero_stamps"] = zero
        report[f"{role}_clock_steps"] = int(runs[-1]) if len(runs) else 0
        if zero:
            notes.append(f"{zero} {role} messages on {stream.topic} have a zero stamp: they took the time they were "
                         f"recorded")
    report["frame_out_of_order"] = report.pop("image_out_of_order")  # the names bag info has always printed
    steps = report["image_clock_steps"]
    if steps:
        notes.append(f"the clock of {streams['image'].topic} steps back {steps} time(s) (more than "
                     f"{config.max_reorder_s} s): each stretch is a segment of its own, never sorted across")
    f_stamps, f_runs, f_arrival = arrays["image"]
    order, _ = _ordered(f_stamps, f_runs)
    frames = (f_stamps[order], f_runs[order], f_arrival[order])
    tol = int(config.tolerance_s * 1e9)
    if label["kind"] == "motion":
        labels, c_ok = _motion(frames, arrays["command"], np.asarray(streams["command"].values, np.float64),
                               label["lead_s"], label["smoothing_s"], int(config.command_max_age_s * 1e9))
    else:
        c_index, c_ok = _match(frames, arrays["command"], tol, int(config.command_max_age_s * 1e9))
        labels = np.asarray(streams["command"].values, np.float64)[c_index]
    keep = c_ok.copy()
    report["frames_without_command"] = int(np.sum(~c_ok))
    if "imu" in streams:
        i_index, i_ok = _match(frames, arrays["imu"], tol, int(config.imu_max_age_s * 1e9))
        report["frames_without_imu"] = int(np.sum(c_ok & ~i_ok))
        keep &= i_ok
    if not keep.any():
        raise BagError(bag, "no usable frames: none has a command (and IMU sample) close enough in time"
                            + _closest(frames[0], arrays, config))
    stamps, runs = frames[0][keep], frames[1][keep]
    intervals = np.diff(stamps)
    same_run = np.diff(runs) == 0
    positive = intervals[same_run & (intervals > 0)]
    median = float(np.median(positive)) if len(positive) else 0.0
    gaps = same_run & (intervals > config.gap_factor * median) if median > 0 else same_run & False
    breaks = np.concatenate([[True], ~same_run | gaps])
    report.update(gaps=int(gaps.sum()), median_frame_interval_s=median / 1e9, kept=int(keep.sum()),
                  duration_s=float(sum(np.ptp(stamps[runs == r]) for r in np.unique(runs))) / 1e9, notes=notes)
    dt = np.concatenate([[0.0], intervals / 1e9]).astype(np.float32)
    dt[breaks] = 0.0
    images = np.stack([streams["image"].values[i] for i in order[keep]])
    commands = labels[keep]
    if "imu" in streams:
        imu = imu_to_flu(np.asarray(streams["imu"].values, np.float64)[i_index[keep]], config.imu_frame)
    else:
        imu = np.zeros((len(stamps), 6), np.float32)
    return Flight(bag=str(bag), images=images, commands=command_to_flu(commands, label["frame"]), imu=imu,
                  dt=dt, segments=np.cumsum(breaks) - 1, report=report)


def _closest(frame_stamps: np.ndarray, arrays: dict, config: TopicConfig) -> str:
    """Say how far apart the frames and commands are, when that explains why none matched."""
    commands = np.sort(arrays["command"][0])
    if not len(commands):
        return ""
    index = np.clip(np.searchsorted(commands, frame_stamps), 0, len(commands) - 1)
    gap = float(np.min(np.abs(commands[index] - frame_stamps))) / 1e9
    if gap > config.command_max_age_s:
        return (f"; the nearest command is {gap:.3f} s from any frame: if the topics are stamped on different "
                f"clocks, try --time-source receive")
    return ""


LEAD_STEP_S = 0.01  # the grid the two streams are resampled on to correlate them
LEAD_RANGE_S = (-0.5, 2.0)  # lags tried; a peak below zero means the motion comes first: not a response
MIN_CORRELATION = 0.3  # weaker peaks give no estimate
MIN_SPREAD = 0.01  # m/s or rad/s: an axis commanded less than this (standard deviation) gives no estimate
MIN_OVERLAP_S = 8.0  # commands and motion recorded together for less than this give no estimate


def lead_pair(topics: dict[str, Topic], config: TopicConfig,
              label: str | None = None) -> tuple[str | None, str | None, str]:
    """Return the (command, motion) topics a bag's lead is estimated from, or Nones and why not.

    ``label``: the label topic chosen for training, which is one of the two when it can be; the
    other is the only one of its kind, or the conventional name (/cmd_vel, /odom) among several.
    """
    def kind(topic: Topic) -> str:
        setting = config.command_kind if topic.name == label else "auto"
        try:
            return label_kind(topic.name, topic.msgtype, setting)
        except ValueError:
            return "motion"

    found: dict[str, list[str]] = {"command": [], "motion": []}
    for topic in topics.values():
        if topic.msgtype in LABEL_TYPES:
            found[kind(topic)].append(topic.name)
    chosen: dict[str, str | None] = {}
    for what, conventional in (("command", "/cmd_vel"), ("motion", "/odom")):
        names = sorted(found[what])
        if label in names:
            chosen[what] = label
        elif len(names) == 1 or conventional in names:
            chosen[what] = names[0] if len(names) == 1 else conventional
        elif names:
            return None, None, f"several {what} topics ({', '.join(names)}): name the label with --command-topic"
        else:
            return None, None, f"no {what} topic" + (" (velocity commands)" if what == "command" else
                                                     " (Odometry or velocity telemetry)")
    return chosen["command"], chosen["motion"], ""


def estimate_lead(path: str | Path, command: str, motion: str, config: TopicConfig | None = None) -> dict[str, Any]:
    """How long the motion on ``motion`` follows the commands on ``command``, per axis [vx, vy, vz, yaw_rate].

    Both streams are brought to FLU (commands by ``command_frame``, motion by its frame id),
    resampled every 10 ms (commands held, motion interpolated) and correlated at lags from -0.5
    to 2 s; each axis's lead is the lag of the highest correlation (refined between grid points),
    where it is positive, at least 0.3, the axis was commanded and the two streams overlap at
    least 8 s. Returns {command, motion,
    lead_s, correlation, why} with a lead and correlation per axis (None where there is no estimate,
    and ``why`` says why), or raises BagError.
    """
    config = config or TopicConfig()
    bag_path = Path(path)
    streams = {"command": _Stream(command), "motion": _Stream(motion)}
    frames: Counter = Counter()
    with open_bag(bag_path) as bag:
        headed = {role: bag.topics[s.topic].msgtype not in HEADERLESS for role, s in streams.items()}
        role_of = {command: "command", motion: "motion"}
        try:
            for arrival, (topic, receive, raw) in enumerate(bag.messages(set(role_of))):
                msg = bag.decode(topic, raw)
                role = role_of[topic]
                values = _command(msg)
                if not all(math.isfinite(v) for v in values):
                    continue
                if role == "motion" and len(frames) < 8:
                    frames[_label_frames(msg)] += 1
                stream = streams[role]
                stream.values.append(values)
                stream.header.append(_stamp(msg) if headed[role] else -1)
                stream.receive.append(receive)
                stream.arrival.append(arrival)
        except Exception as exc:
            raise BagError(bag_path, f"damaged message data (truncated or corrupted?): {exc}") from None
    result: dict[str, Any] = {"command": command, "motion": motion, "lead_s": [None] * 4, "correlation": [None] * 4,
                              "why": [""] * 4}
    if min(len(s.values) for s in streams.values()) < 2:
        result["why"] = ["too few samples"] * 4
        return result
    (frame_id, world_id), _ = frames.most_common(1)[0] if frames else (("", ""), 0)
    frame, how = motion_frame(frame_id, world_id, "flu")
    if frame is None:
        result["why"] = [f"the motion is in a world frame ({how})"] * 4
        return result
    offsets = _clock_offsets(streams)
    both = all(any(h > 0 for h in s.header) for s in streams.values())
    source = "header" if both and abs(offsets["command"] - offsets["motion"]) <= CLOCK_OFFSET_S else "receive"
    series = {}
    for role, stream in streams.items():
        stamps, _ = _times(stream, source, offsets[role])
        order = np.argsort(stamps, kind="stable")
        values = np.asarray(stream.values, np.float64)[order]
        body = config.command_frame if role == "command" else frame
        series[role] = (stamps[order] / 1e9, command_to_flu(values, body).astype(np.float64))
    (ct, cv), (mt, mv) = series["command"], series["motion"]
    start, end = max(ct[0], mt[0]), min(ct[-1], mt[-1])
    if end - start < MIN_OVERLAP_S:
        result["why"] = [f"the two streams overlap {max(0.0, end - start):.1f} s, too short"] * 4
        return result
    grid = np.arange(start, end, LEAD_STEP_S)
    held = cv[np.clip(np.searchsorted(ct, grid, side="right") - 1, 0, len(ct) - 1)]
    lags = np.arange(int(round(LEAD_RANGE_S[0] / LEAD_STEP_S)), int(round(LEAD_RANGE_S[1] / LEAD_STEP_S)) + 1)
    for axis in range(4):
        c = held[:, axis]
        m = np.interp(grid, mt, mv[:, axis])
        if c.std() < MIN_SPREAD:
            result["why"][axis] = "not commanded"
            continue
        r = np.array([_correlation(c[max(0, -k):len(c) - max(0, k)], m[max(0, k):len(m) - max(0, -k)])
                      for k in lags])
        best = int(np.nanargmax(r)) if np.isfinite(r).any() else 0
        peak = float(r[best]) if np.isfinite(r[best]) else 0.0
        if peak < MIN_CORRELATION:
            result["why"][axis] = f"weak correlation (at most {peak:.2f})"
            continue
        shift = 0.0
        if 0 < best < len(r) - 1:  # the peak of the parabola through the best lag and its neighbours
            a, b, z = r[best - 1], r[best], r[best + 1]
            shift = 0.5 * (a - z) / (a - 2 * b + z) if a - 2 * b + z < 0 else 0.0
        lead = (lags[best] + shift) * LEAD_STEP_S
        result["correlation"][axis] = round(peak, 3)
        if lead < 0:
            result["why"][axis] = f"the motion comes {-lead:.2f} s before the commands: not their response"
            continue
        result["lead_s"][axis] = round(float(lead), 3)
    return result


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's correlation of two equal-length series (NaN when one is constant)."""
    a, b = a - a.mean(), b - b.mean()
    norm = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / norm if norm > 0 else math.nan


def suggested_lead(estimates: list[dict[str, Any]]) -> list[float] | None:
    """Return the lead to train with from one or more bags' estimates (None when no axis has one).

    Each axis's median over the bags; an axis without an estimate takes the median of the others.
    """
    per_axis = [[e["lead_s"][axis] for e in estimates if e["lead_s"][axis] is not None] for axis in range(4)]
    medians = [float(np.median(v)) if v else None for v in per_axis]
    known = [m for m in medians if m is not None]
    if not known:
        return None
    fill = float(np.median(known))
    return [round(m if m is not None else fill, 2) for m in medians]
