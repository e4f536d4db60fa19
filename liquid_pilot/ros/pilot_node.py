"""The pilot node: camera frames and IMU in, body-frame velocity commands out.

The network steps once per camera frame with the real time elapsed since the previous
frame and the command goes out at once. A watchdog timer at ``control_rate`` keeps the
command stream alive and turns stale or bad input into a zero twist (hover) and a network
reset. The node starts disabled, publishing zero, until ``~/enable`` is called.

Topics: ``camera/image_raw`` (sensor_msgs/Image, or ``camera/image_raw/compressed``),
``imu/data`` (sensor_msgs/Imu) in; ``cmd_vel`` (geometry_msgs/TwistStamped or Twist) and
``~/neurons`` (std_msgs/Float32MultiArray) out. Services: ``~/enable`` (std_srvs/SetBool),
``~/reset`` (std_srvs/Trigger).
"""
from __future__ import annotations

import math
import threading
from typing import Any

import cv2
import numpy as np
from geometry_msgs.msg import Twist, TwistStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, Imu
from std_msgs.msg import Float32MultiArray, MultiArrayDimension
from std_srvs.srv import SetBool, Trigger

from liquid_pilot.data.images import BadInput, compressed_to_rgb, raw_to_rgb
from liquid_pilot.data.reader import IMU_TYPE
from liquid_pilot.ros.convert import from_cdr, imu_to_array, stamp_ns, time_msg
from liquid_pilot.ros.params import Param, declare_parameters
from liquid_pilot.ros.runtime import DEFAULT_RUNTIME, RUNTIMES, PilotRuntime, default_model
from liquid_pilot.ros.spin import run

PARAMETERS = (
    Param("model", "", "pilot checkpoint (.pt); empty: the shipped pilot, share/liquid_pilot/models/cfc_ncp.pt"),
    Param("runtime", DEFAULT_RUNTIME, "network runtime: onnxruntime on an export made at start-up (faster), or "
          "eager PyTorch", choices=RUNTIMES),
    Param("control_rate", 50.0, "Hz: the watchdog republishes the latest command (or zero) this often",
          low=1.0, high=500.0),
    Param("camera_timeout", 0.2, "s without a usable camera frame before hovering and resetting the network "
          "(2-3 frame periods); also the largest accepted image age", low=0.01, high=1.0, read_only=False),
    Param("imu_timeout", 0.2, "s without a usable IMU sample before hovering and resetting the network",
          low=0.01, high=1.0, read_only=False),
    Param("max_speed_xy", 1.0, "m/s: horizontal speed limit (the command's horizontal vector is scaled down)",
          low=0.0, high=10.0, read_only=False),
    Param("max_speed_z", 0.5, "m/s: vertical speed limit", low=0.0, high=5.0, read_only=False),
    Param("max_yaw_rate", 1.0, "rad/s: yaw rate limit", low=0.0, high=6.3, read_only=False),
    Param("command_type", "twist_stamped", "cmd_vel message: geometry_msgs/TwistStamped or Twist",
          choices=("twist_stamped", "twist")),
    Param("frame_id", "base_link", "frame of the TwistStamped commands (body FLU)"),
    Param("image_transport", "raw", "raw: sensor_msgs/Image on camera/image_raw; compressed: "
          "sensor_msgs/CompressedImage on camera/image_raw/compressed", choices=("raw", "compressed")),
    Param("resize_images", False, "resize frames of another size to the model's input (the field of view must "
          "still match the training camera); false: refuse them and hover"),
    Param("start_enabled", False, "fly from start-up without ~/enable: for simulation only"),
)

Command = tuple[float, float, float, float]  # vx, vy, vz (m/s), yaw rate (rad/s), body FLU
ZERO: Command = (0.0, 0.0, 0.0, 0.0)
NEWEST = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
# Faults a good frame clears (IMU faults clear when a good IMU sample arrives).
FRAME_FAULTS = ("encoding", "empty", "size", "decode", "image_size", "stamp", "camera_stale")


class PilotNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("pilot_node", **kwargs)
        self.params = p = declare_parameters(self, PARAMETERS)
        model = p["model"] or default_model()
        self.runtime = PilotRuntime.from_file(model, p["runtime"])
        self.get_logger().info(
            f"pilot {model} ({p['runtime']}): {self.runtime.image_size[1]}x"
            f"{self.runtime.image_size[0]} RGB{' + IMU' if self.runtime.uses_imu else ''}, "
            f"{self.runtime.state_size} neurons of state")
        self._lock = threading.Lock()  # frames, IMU, watchdog and services may run on separate threads
        self._enabled = False
        self._command = ZERO  # latest command and the stamp of the frame it came from
        self._command_stamp = 0
        self._prev_frame_ns: int | None = None  # time of the last frame the network stepped on
        self._last_frame_rx = 0  # node-clock receive times of the last usable frame and IMU sample
        self._last_imu_rx = 0
        self._imu: np.ndarray | None = None
        self._faults: set[str] = set()
        self._notes: set[str] = set()

        # Commands are reliable (a lost command is not silently dropped). Sensors are best effort,
        # which matches both best-effort and reliable publishers, keeping only the newest message:
        # a pilot that falls behind flies on the latest frame instead of working through old ones.
        # One message, refilled and published under the lock: building one per command costs more
        # than the rest of the publishing path.
        if p["command_type"] == "twist_stamped":
            self._cmd_msg = TwistStamped()
            self._cmd_msg.header.frame_id = p["frame_id"]
            self._twist = self._cmd_msg.twist
        else:
            self._cmd_msg = self._twist = Twist()
        self._cmd_pub = self.create_publisher(type(self._cmd_msg), "cmd_vel", QoSProfile(depth=10))
        self._neurons_pub = self.create_publisher(Float32MultiArray, "~/neurons", QoSProfile(depth=10))
        # Sensor messages arrive serialized (raw) and are decoded by from_cdr: faster than rclpy's
        # own conversion, and a message no decoder can read becomes a logged fault, not an exception.
        # The IMU has its own group, so a high-rate IMU is not starved while the network steps; it is
        # created first, so that an IMU sample and a frame arriving together are taken in that order.
        self.create_subscription(Imu, "imu/data", self._on_imu, NEWEST, raw=True,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        image_cls, topic = Image, "camera/image_raw"
        if p["image_transport"] == "compressed":
            # image_transport naming: the transport is a suffix of the (remapped) base topic.
            image_cls, topic = CompressedImage, self.resolve_topic_name(topic) + "/compressed"
        self._image_type = f"sensor_msgs/msg/{image_cls.__name__}"
        self.create_subscription(image_cls, topic, self._on_image, NEWEST, raw=True,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        control = MutuallyExclusiveCallbackGroup()
        self.create_timer(1.0 / p["control_rate"], self._watchdog, callback_group=control)
        self.create_service(SetBool, "~/enable", self._on_enable, callback_group=control)
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=control)
        if p["start_enabled"]:
            self.set_enabled(True)
        else:
            self.get_logger().info("disabled: publishing zero commands until ~/enable is called")

    # Public controls: the services call these, and so may code composing the node in a process.
    def set_enabled(self, enabled: bool) -> None:
        with self._lock:
            now = self._now()
            self._enabled = enabled
            self._reset_network()
            # A grace period of one timeout before missing input counts as stale.
            self._last_frame_rx = self._last_imu_rx = now
            self._command, self._command_stamp = ZERO, now
            self._faults.clear()
            self._publish(ZERO, now)
        self.get_logger().info("enabled: flying on the network" if enabled else "disabled: publishing zero")

    def reset_network(self) -> None:
        with self._lock:
            self._reset_network()

    # Callbacks.
    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self.set_enabled(request.data)
        response.success, response.message = True, "enabled" if request.data else "disabled"
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.reset_network()
        self.get_logger().info("network state reset on request")
        response.success, response.message = True, "network state reset"
        return response

    def _on_imu(self, data: bytes) -> None:
        try:
            imu = imu_to_array(from_cdr(data, IMU_TYPE, "imu_invalid"))
        except BadInput as bad:
            with self._lock:
                self._imu = None  # never fly on the last good sample once the sensor reports garbage
                self._fault(bad.kind, str(bad))
            return
        with self._lock:
            self._imu, self._last_imu_rx = imu, self._now()
            self._clear("imu_invalid")
            self._clear("imu_stale")

    def _on_image(self, data: bytes) -> None:
        with self._lock:
            # Clock read under the lock: a sample stored by a concurrent IMU callback must never
            # look newer than this frame, or a fresh IMU would count as stale.
            now = self._now()
            if not self._enabled:
                return
            try:
                msg = from_cdr(data, self._image_type, "decode")
                rgb = self._decode(msg)
                frame_ns, dt = self._elapsed(stamp_ns(msg.header.stamp), now)
                imu = self._usable_imu(now)
            except BadInput as bad:
                self._fault(bad.kind, str(bad))
                self._command, self._command_stamp = ZERO, now
                self._publish(ZERO, now)
                return
            for kind in FRAME_FAULTS:
                self._clear(kind)
            output = self.runtime.step(rgb, imu, dt)
            if np.all(np.isfinite(output)):
                self._clear("output")
                command = self._clamp(output)
            else:
                self._fault("output", f"the network produced {output.tolist()}: hovering, network reset")
                self._reset_network()
                command = ZERO
            self._prev_frame_ns, self._last_frame_rx = frame_ns, now
            self._command, self._command_stamp = command, frame_ns
            self._publish(command, frame_ns)
            if self.runtime.state is not None:
                self._publish_neurons(self.runtime.state[0])

    def _watchdog(self) -> None:
        with self._lock:
            now = self._now()
            if self._enabled:
                try:
                    self._check_fresh(now)
                except BadInput as bad:
                    if bad.kind not in self._faults:
                        self._reset_network()
                    self._fault(bad.kind, str(bad))
                    self._command, self._command_stamp = ZERO, now
            command, stamp = (self._command, self._command_stamp) if self._enabled else (ZERO, now)
            self._publish(command, stamp)

    # Input checks: each raises BadInput naming the fault.
    def _decode(self, msg: Any) -> np.ndarray:
        """RGB of a sensor_msgs/Image or CompressedImage (per image_transport), at the model's size."""
        rgb = compressed_to_rgb(msg) if self.params["image_transport"] == "compressed" else raw_to_rgb(msg)
        height, width = self.runtime.image_size
        if rgb.shape[:2] != (height, width):
            if not self.params["resize_images"]:
                raise BadInput("image_size", f"image is {rgb.shape[1]}x{rgb.shape[0]} but the model takes "
                                             f"{width}x{height} (set resize_images to resize)")
            self._note("resize", f"resizing {rgb.shape[1]}x{rgb.shape[0]} frames to {width}x{height}")
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        return rgb

    def _elapsed(self, stamp: int, now: int) -> tuple[int, float]:
        """Frame time (its stamp, or receive time when unstamped) and seconds since the previous frame."""
        timeout = self._timeout_ns("camera_timeout")
        if stamp == 0:
            self._note("unstamped", "camera frames carry no stamp: timing them by their arrival")
            stamp = now
        elif abs(now - stamp) > timeout:
            raise BadInput("stamp", f"image stamp {stamp / 1e9:.3f} s is {(now - stamp) / 1e9:+.3f} s away from "
                                    f"this node's clock (more than camera_timeout): stale or a clock mismatch")
        if self._prev_frame_ns is None:
            return stamp, 0.0  # the first step of a flight, as in training
        if stamp <= self._prev_frame_ns:
            raise BadInput("stamp", f"image stamp {stamp / 1e9:.3f} s is not after the previous frame's "
                                    f"{self._prev_frame_ns / 1e9:.3f} s")
        if stamp - self._prev_frame_ns > timeout:
            self._reset_network()  # a gap longer than the timeout: start a new flight
            return stamp, 0.0
        return stamp, (stamp - self._prev_frame_ns) / 1e9

    def _usable_imu(self, now: int) -> np.ndarray | None:
        if not self.runtime.uses_imu:
            return None
        if self._imu is None:
            # None yet, or the last sample was invalid (reported already as imu_invalid).
            kind = "imu_invalid" if "imu_invalid" in self._faults else "imu_stale"
            raise BadInput(kind, "no IMU sample received yet: hovering")
        if not 0 <= now - self._last_imu_rx <= self._timeout_ns("imu_timeout"):
            raise BadInput("imu_stale", f"no IMU sample for more than imu_timeout={self.params['imu_timeout']} s: "
                                        "hovering, network reset")
        return self._imu

    def _check_fresh(self, now: int) -> None:
        if not 0 <= now - self._last_frame_rx <= self._timeout_ns("camera_timeout"):
            raise BadInput("camera_stale", f"no usable camera frame for more than camera_timeout="
                                           f"{self.params['camera_timeout']} s: hovering, network reset")
        self._usable_imu(now)

    # Helpers; the caller holds the lock.
    def _reset_network(self) -> None:
        self.runtime.reset()
        self._prev_frame_ns = None

    def _clamp(self, output: np.ndarray) -> Command:
        p = self.params
        vx, vy, vz, yaw_rate = (float(v) for v in output)  # plain floats: numpy scalars are slower here
        speed, limit = math.hypot(vx, vy), p["max_speed_xy"]
        if speed > limit:
            vx, vy = vx * limit / speed, vy * limit / speed
        return (vx, vy, min(max(vz, -p["max_speed_z"]), p["max_speed_z"]),
                min(max(yaw_rate, -p["max_yaw_rate"]), p["max_yaw_rate"]))

    def _fault(self, kind: str, message: str) -> None:
        """Log a fault once, when it starts; it stays quiet until cleared."""
        if kind not in self._faults:
            self._faults.add(kind)
            self.get_logger().warning(f"{message} [{kind}]")

    def _clear(self, kind: str) -> None:
        if kind in self._faults:
            self._faults.discard(kind)
            self.get_logger().info(f"recovered from {kind}")

    def _note(self, kind: str, message: str) -> None:
        if kind not in self._notes:
            self._notes.add(kind)
            self.get_logger().info(message)

    def _timeout_ns(self, name: str) -> int:
        return int(self.params[name] * 1e9)

    def _now(self) -> int:
        return self.get_clock().now().nanoseconds

    def _publish(self, command: Command, stamp: int) -> None:
        self._twist.linear.x, self._twist.linear.y, self._twist.linear.z, self._twist.angular.z = command
        if self._cmd_msg is not self._twist:
            # The stamp is that of the camera frame the command came from (repeats keep it), so the
            # command's age is visible downstream; zero commands carry the current time.
            self._cmd_msg.header.stamp = time_msg(stamp)
        self._cmd_pub.publish(self._cmd_msg)

    def _publish_neurons(self, state: np.ndarray) -> None:
        msg = Float32MultiArray(data=state.astype(np.float32).tolist())
        msg.layout.dim = [MultiArrayDimension(label="neurons", size=len(state), stride=len(state))]
        self._neurons_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    return run([PilotNode], args)


if __name__ == "__main__":
    raise SystemExit(main())
