"""The MAVROS backend, the plain-Python half: what goes on ``setpoint_velocity/cmd_vel`` and what comes back.

MAVROS takes ``setpoint_velocity/cmd_vel`` (geometry_msgs/TwistStamped) in the ENU world frame by default:
``frame: world`` rotates the pilot's body FLU velocity by the heading from ``local_position/pose``
(``conversions.command_to_enu``; the yaw rate about up keeps its sign). With MAVROS's ``mav_frame``
parameter set to ``BODY_NED`` the twist is read in the body frame (MAVROS itself turns FLU into FRD):
``frame: body`` sends the pilot's command unchanged, in ``base_link``.

Arming and mode changes are services of ``mavros_msgs``, which has no wheel: this backend cannot arm,
switch to OFFBOARD/GUIDED, land by mode or stop the motors, and cannot see the mode (``mavros/state``)
to notice an operator taking over. The operator arms, takes off and switches mode on the RC or ground
station; the bridge streams once the vehicle is airborne, lands by descending setpoints, and an
emergency stop holds instead (use the RC kill switch). The ROS wiring (subscriptions, publisher) is in
``liquid_pilot.ros.bridge_node``, which calls ``on_pose`` and ``on_velocity`` and gets ``publish`` calls.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from liquid_pilot.bridge.conversions import Command, Vector, command_to_enu, yaw_from_quaternion
from liquid_pilot.bridge.supervisor import Backend, Telemetry
from liquid_pilot.flight.types import Log

FRAMES = {"world": "map", "body": "base_link"}  # frame -> the TwistStamped's frame_id

Publish = Callable[[Vector, float, str], None]  # linear (m/s), angular z (rad/s), frame_id


class MavrosBackend(Backend):
    """MAVROS's setpoint and pose topics (the ROS wiring is bridge_node's)."""

    name = "mavros"
    rate = 20.0
    can_switch = can_arm = can_kill = False
    takes_off_itself = lands_itself = False

    def __init__(self, publish: Publish, frame: str = "world", clock: Callable[[], int] = time.monotonic_ns,
                 log: Log | None = None):
        if frame not in FRAMES:
            raise ValueError(f"mavros frame {frame!r}: expected world (MAVROS's default) or body (mav_frame BODY_NED)")
        self.publish = publish
        self.frame = frame
        self.clock = clock
        self.log = log or (lambda level, message: None)
        self.t = Telemetry()
        self._lock = threading.Lock()  # the subscriptions' callbacks and the keep-alive tick
        self.log("info", "mavros: arming, mode switches and takeover detection need mavros_msgs (no wheel): the "
                         "operator arms, takes off and switches to OFFBOARD/GUIDED; the stream starts once airborne")

    def on_pose(self, position: Vector, orientation: tuple[float, float, float, float]) -> None:
        """``local_position/pose``: ENU position and orientation quaternion (x, y, z, w)."""
        now = self.clock()
        with self._lock:
            self.t.position = position
            self.t.yaw = yaw_from_quaternion(*orientation)
            self.t.heard = self.t.pose_stamp = now

    def on_velocity(self, linear: Vector) -> None:
        """``local_position/velocity_local``: ENU velocity."""
        with self._lock:
            self.t.velocity = linear

    def poll(self, now: int) -> Telemetry:
        with self._lock:
            return Telemetry(**vars(self.t))

    def send(self, command: Command, now: int) -> None:
        if self.frame == "body":
            self.publish(command[:3], command[3], FRAMES["body"])
            return
        yaw = self.t.yaw
        if yaw is None:  # no heading yet: nothing can be rotated; the supervisor waits for a pose anyway
            self.publish((0.0, 0.0, 0.0), 0.0, FRAMES["world"])
            return
        ve, vn, vu, yaw_rate = command_to_enu(command, yaw)
        self.publish((ve, vn, vu), yaw_rate, FRAMES["world"])

    def request_control(self) -> None:
        raise NotImplementedError("mavros_msgs has no wheel: the operator switches modes")

    def arm(self) -> None:
        raise NotImplementedError("mavros_msgs has no wheel: the operator arms")

    def takeoff(self, height: float) -> None:
        raise NotImplementedError("the operator takes off")

    def land(self) -> None:
        raise NotImplementedError("landing is by descending setpoints")

    def kill(self) -> None:
        raise NotImplementedError("use the RC kill switch")
