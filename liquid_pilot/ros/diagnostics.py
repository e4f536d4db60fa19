"""What each node reports on ``/diagnostics``: plain functions from a node's state to a level, a line and key/values.

ROS operators watch ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``) with rqt_robot_monitor,
Foxglove's diagnostics panel or ``diagnostic_aggregator``. Each node publishes one
``DiagnosticStatus`` named ``NODE: WHAT`` (``/drone1/pilot_node: pilot``), as ROS's
diagnostic_updater names them, once a second and at once when its level or message changes
(``Reporter``). The functions here only map state to a ``Report``, so each node's part is small and
each mapping is tested without a graph:

- ``pilot_report``: the gate (disabled, flying, hovering and why), the camera and IMU against what
  the model expects (rate, age), the step time, the model and its provenance;
- ``bridge_report``: the supervisor (state, link, vehicle mode, armed, take-over), the geofence margin,
  the battery where the stack reports one (WARN below 20%, ERROR below 10%), the setpoint rate;
- ``recorder_report``: messages, bytes, dropped, the disk's free space;
- ``sim_report``: the episode, its outcome so far, the pace.

``qos_events`` reports a publisher whose QoS cannot match a subscription (rclpy's incompatible-QoS
event): one warning line per topic and policy, and an ERROR in the node's diagnostics, instead of a
silent topic.
"""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import QoSPolicyKind, QoSProfile

OK, WARN, ERROR, STALE = (int.from_bytes(level, "little") if isinstance(level, bytes) else int(level) for level in (
    DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR, DiagnosticStatus.STALE))
LEVELS = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}
TOPIC = "/diagnostics"  # absolute, as diagnostic_updater publishes it: one topic for the whole robot
PERIOD_S = 1.0  # a status at least this often
CHECK_S = 0.1  # how often a change of level or message is looked for
LOW_BATTERY = 0.2  # remaining fraction below which the bridge WARNs (ERROR below half of it)
# Faults of missing input or of the pilot itself: ERROR; the others (bad frames, which the gate refuses): WARN.
SEVERE = frozenset({"camera_stale", "imu_stale", "behind", "no_clock", "output", "internal", "decode_slow",
                    "image_too_large", "camera_rate"})


@dataclass
class Report:
    """One node's status: a level (OK, WARN, ERROR), one line, and key/values (shown in that order)."""

    level: int
    message: str
    values: dict[str, Any] = field(default_factory=dict)


def text(value: Any) -> str:
    """Return a value as diagnostics show it: rounded floats, 'none' for unknown, lists joined by commas."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={text(v)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple, set)):
        return ", ".join(text(v) for v in value) or "none"
    return str(value)


def worst(*levels: int) -> int:
    return max(levels, default=OK)


class RateMeter:
    """Events per second over the last ``window`` seconds, on an injectable clock (ns).

    The rate is one over the median interval between the window's events, so a stream that starts,
    stops or stutters (one old event among many new ones) reads as the rate it runs at.
    """

    def __init__(self, window: float = 2.0, clock: Callable[[], int] = time.monotonic_ns):
        self.window = round(window * 1e9)
        self.clock = clock
        self.times: deque[int] = deque()
        self.count = 0

    def add(self, when: int | None = None) -> None:
        self.times.append(self.clock() if when is None else when)
        self.count += 1

    def _prune(self, now: int | None) -> None:
        now = self.clock() if now is None else now
        while self.times and (now - self.times[0] > self.window or self.times[0] > now):
            self.times.popleft()

    def rate(self, now: int | None = None) -> float:
        """Events per second in the window ending now; 0 when fewer than two fell in it."""
        self._prune(now)
        if len(self.times) < 2:
            return 0.0
        intervals = sorted(b - a for a, b in zip(self.times, list(self.times)[1:]))
        middle = intervals[len(intervals) // 2] if len(intervals) % 2 else \
            (intervals[len(intervals) // 2 - 1] + intervals[len(intervals) // 2]) / 2
        return 1e9 / middle if middle > 0 else 0.0

    def intervals(self, now: int | None = None) -> int:
        """How many intervals the window holds (how much the rate is based on)."""
        self._prune(now)
        return max(0, len(self.times) - 1)


def band(rate: float, expected: float, tolerance: float) -> bool:
    """Whether a measured rate is within ``tolerance`` (relative) of the expected one."""
    return expected <= 0 or abs(rate / expected - 1.0) <= tolerance


# The nodes' reports.
def pilot_report(gate: dict[str, Any], camera: dict[str, Any], imu: dict[str, Any] | None, step: dict[str, Any],
                 model: dict[str, Any], problems: Iterable[str] = ()) -> Report:
    """Report pilot_node's health.

    ``gate`` is ``Gate.status()``; ``camera``/``imu``: rate, expected rate, age (None: unused IMU);
    ``step``: the network step's times; ``model``: its file and provenance; ``problems``: other ERRORs
    (QoS, clock).
    """
    problems = list(problems)
    state, faults = gate["state"], gate["faults"]
    notes, level = [], OK
    if state == "hovering":
        level = ERROR if SEVERE & set(faults) else WARN
        notes.append(f"hovering on {', '.join(faults) or 'a fault'}")
    else:
        notes.append({"flying": "flying", "disabled": "disabled (zero commands)"}.get(state, state))
    if camera.get("age") is None:
        level = worst(level, WARN)
        notes.append("no camera frame yet")
    elif not camera.get("in_band", True):
        level = worst(level, WARN)
        notes.append(f"camera at {camera['rate']:.1f} Hz, the model expects {camera['expected']:g} Hz")
    if imu is not None and imu.get("age") is None:
        level = worst(level, WARN)
        notes.append("no IMU sample yet")
    if problems:
        level = ERROR
        notes += problems
    values = {
        "state": state, "active faults": faults, "fault totals": gate["fault_totals"],
        "last fault age (s)": gate["last_fault_age"], "good frames since fault": gate["clean_frames"],
        "camera rate (Hz)": camera.get("rate"), "camera expected rate (Hz)": camera.get("expected"),
        "camera age (s)": camera.get("age"), "frames received": gate["frames_received"],
        "frames replaced before stepping": camera.get("replaced"), "duplicate frames": gate["duplicates"],
    }
    if imu is not None:
        values.update({"imu rate (Hz)": imu.get("rate"), "imu age (s)": imu.get("age")})
    values.update({"step time mean (ms)": step.get("mean_ms"), "step time max (ms)": step.get("max_ms"),
                   "steps": step.get("count")})
    values.update({f"model {k}": v for k, v in model.items()})
    return Report(level, "; ".join(notes), values)


def bridge_report(status: dict[str, Any], battery: Any, fence: dict[str, float], setpoint_rate: float | None,
                  expected_rate: float) -> Report:
    """Report bridge_node's health.

    ``status`` is ``Supervisor.status()``; ``battery`` the latest battery reading (``voltage``, ``current``,
    ``remaining`` as a fraction; None where the stack reports none, or a field it does not measure);
    ``fence`` the geofence limits (radius, height, speed).
    """
    state = status["state"]
    if state in ("failed", "taken_over", "estop") or (state == "hold" and not status["link"]):
        level = ERROR
    elif state in ("hold", "stale", "landing", "shutdown", "wait_link") or not status["link"]:
        level = WARN
    else:
        level = OK
    notes = [f"{state}: {status['reason']}"]
    margins = {}
    for key, limit in (("distance", fence.get("radius")), ("height", fence.get("height")),
                       ("speed", fence.get("speed"))):
        value = status.get(key)
        margins[key] = None if value is None or limit is None else limit - value
    known = [m for m in margins.values() if m is not None]
    if known and min(known) < 0:
        level = worst(level, ERROR)
    voltage, current, remaining = (getattr(battery, name, None) for name in ("voltage", "current", "remaining"))
    if remaining is not None and remaining < LOW_BATTERY:
        level = worst(level, ERROR if remaining < LOW_BATTERY / 2 else WARN)
        notes.append(f"battery at {remaining:.0%}")
    values = {
        "state": state, "reason": status["reason"], "state age (s)": status["since"], "backend": status["backend"],
        "link": status["link"], "vehicle mode": status["mode"] or None, "armed": status["armed"],
        "in our mode": status["in_control"], "taken over": state == "taken_over",
        "pilot enabled": status["pilot_enabled"], "height (m)": status["height"], "distance (m)": status["distance"],
        "speed (m/s)": status["speed"], "fence margin radius (m)": margins["distance"],
        "fence margin height (m)": margins["height"], "fence margin speed (m/s)": margins["speed"],
        "battery voltage (V)": voltage, "battery current (A)": current, "battery remaining": remaining,
        "setpoint rate (Hz)": setpoint_rate, "setpoint rate expected (Hz)": expected_rate,
        "setpoints": status["setpoints"], "estimator resets": status.get("resets", 0),
    }
    return Report(level, "; ".join(notes), values)


def recorder_report(messages: int, bytes_: int, dropped: int, disk_free: int | None, topics: dict[str, int],
                    waiting: int, problems: Iterable[str] = (), low_disk: int = 1 << 30) -> Report:
    """Report recorder_node's health: counts, bytes, messages not recorded, free disk (WARN below ``low_disk``)."""
    problems = list(problems)
    level, notes = OK, [f"{messages} messages, {bytes_ / 1e6:.1f} MB"]
    if dropped:
        level = WARN
        notes.append(f"{dropped} not recorded")
    if disk_free is not None and disk_free < low_disk:
        level = worst(level, ERROR if disk_free < low_disk // 8 else WARN)
        notes.append(f"{disk_free / 1e9:.2f} GB free on disk")
    if not topics:
        level = worst(level, WARN)
        notes.append("no topic found to record yet")
    if problems:
        level = ERROR
        notes += problems
    values = {"messages": messages, "bytes": bytes_, "dropped": dropped, "waiting for /clock": waiting,
              "disk free (GB)": None if disk_free is None else disk_free / 1e9, "topics": topics}
    return Report(level, "; ".join(notes), values)


def sim_report(status: dict[str, Any], episodes: int, successes: int, rate: float, expected: float,
               hovering: bool, problems: Iterable[str] = ()) -> Report:
    """Report sim_node's state: the episode, how many ended and succeeded, the camera rate against the scenario's."""
    if not status:
        level, notes = OK, ["waiting for the first episode (wait_for_subscribers, pilot_enable_service)"]
    else:
        level, notes = OK, [f"episode {status.get('episode')} ({status.get('scenario')}, seed {status.get('seed')})"]
    if hovering:
        level = WARN
        notes.append("no fresh cmd_vel: hovering")
    problems = list(problems)
    if problems:
        level = ERROR
        notes += problems
    values = {"episode": status.get("episode"), "scenario": status.get("scenario"), "seed": status.get("seed"),
              "episode time (s)": status.get("time"), "episodes ended": episodes, "successes": successes,
              "camera rate (Hz)": rate, "camera expected rate (Hz)": expected, "hovering (stale cmd_vel)": hovering}
    return Report(level, "; ".join(notes), values)


# Publishing.
def to_status(report: Report, name: str, hardware_id: str) -> DiagnosticStatus:
    return DiagnosticStatus(level=bytes([report.level]), name=name, message=report.message, hardware_id=hardware_id,
                            values=[KeyValue(key=str(k), value=text(v)) for k, v in report.values.items()])


class Reporter:
    """Publishes one node's ``Report`` on ``/diagnostics`` once a second and at once when it changes.

    A subscriber that matches (an operator opening rqt_robot_monitor, Foxglove) gets one at once too:
    the topic is volatile, as diagnostic_updater's, so nothing waits for it otherwise. ``report`` is
    called every ``CHECK_S`` on a steady-clock timer (it must be cheap and never raise: an exception
    becomes an ERROR status saying so). Stamps are the node's clock.
    """

    def __init__(self, node: Node, what: str, hardware_id: str, report: Callable[[], Report]):
        self.node = node
        self.name = f"{node.get_fully_qualified_name()}: {what}"
        self.hardware_id = hardware_id
        self.report = report
        self.published = 0
        self.last: Report | None = None
        self._sent_at = -math.inf
        self._key: tuple[int, str] | None = None
        self._subscribers = 0
        self._pub = node.create_publisher(DiagnosticArray, TOPIC, QoSProfile(depth=10))
        # The steady clock: under use_sim_time a ROS-time timer would wait for /clock, and diagnostics
        # matter most when it does not come.
        node.create_timer(CHECK_S, self._check, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _check(self) -> None:
        try:
            report = self.report()
        except Exception as exc:  # never let a report kill the timer: say what went wrong instead
            report = Report(ERROR, f"diagnostics failed: {type(exc).__name__}: {exc}")
        key = (report.level, report.message)
        now = time.monotonic()
        subscribers, self._subscribers = self._subscribers, self._pub.get_subscription_count()
        if key == self._key and now - self._sent_at < PERIOD_S and self._subscribers <= subscribers:
            return
        self._key, self._sent_at, self.last = key, now, report
        msg = DiagnosticArray(status=[to_status(report, self.name, self.hardware_id)])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self._pub.publish(msg)
        self.published += 1


# QoS events.
class QosProblems:
    """Incompatible-QoS events of a node's subscriptions: logged once per topic and policy, kept for diagnostics."""

    def __init__(self, node: Node):
        self.node = node
        self.problems: dict[str, str] = {}  # topic -> the latest problem, one line
        self._logged: set[tuple[str, str]] = set()  # (topic, policy) already logged

    def callbacks(self, topic: str, qos: QoSProfile) -> SubscriptionEventCallbacks:
        """Event callbacks for a subscription to ``topic`` with ``qos``: pass as ``event_callbacks``."""
        return SubscriptionEventCallbacks(incompatible_qos=lambda info: self._incompatible(topic, qos, info))

    def _incompatible(self, topic: str, qos: QoSProfile, info: Any) -> None:
        policy = _policy_name(info.last_policy_kind)
        asked = _asked(qos, policy)
        line = (f"{topic}: a publisher's QoS cannot match this subscription ({policy}: the subscription asks "
                f"{asked}; {info.total_count} incompatible so far): its messages never arrive")
        if policy == "reliability":
            line += "; subscribe best_effort (matches every publisher) or publish reliable"
        elif policy == "durability":
            line += "; the publisher must be transient_local, or subscribe volatile"
        self.problems[topic] = line
        if (topic, policy) not in self._logged:
            self._logged.add((topic, policy))
            self.node.get_logger().error(line)

    def lines(self) -> list[str]:
        return list(self.problems.values())


def _policy_name(kind: Any) -> str:
    try:
        return QoSPolicyKind(kind).name.lower()
    except (ValueError, TypeError):
        return str(kind).lower()


def _asked(qos: QoSProfile, policy: str) -> str:
    value = getattr(qos, policy, None)
    return getattr(value, "name", str(value)).lower() if value is not None else "?"
