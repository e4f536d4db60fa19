"""The pilot node: camera frames and IMU in, body-frame velocity commands out.

A thin ROS shell around the flight core (``liquid_pilot.flight``): the gate decides what the
command stream carries, the runtime steps the network, and this node moves messages on three
threads so that nothing can starve the command stream:

- the executor: IMU samples (decoded and handed to the gate), camera frames (only stored: a
  frame that arrives while the network is busy replaces the waiting one, newest wins), services;
- the step thread: decodes the newest frame, preprocesses it and steps the network outside the
  lock, then publishes the gate's command at once;
- the control thread: publishes the gate's command (or zero) at ``control_rate`` whatever the
  other two are doing.

Every exit path (Ctrl-C, SIGTERM, an exception, ``~/enable`` false) ends with a zero command,
delivered to reliable subscribers before the node goes away. The node starts disabled,
publishing zero, until ``~/enable`` is called.

Topics: ``camera/image_raw`` (sensor_msgs/Image, or ``camera/image_raw/compressed``),
``camera/camera_info`` (optional: the field of view check), ``imu/data`` (sensor_msgs/Imu) in;
``cmd_vel`` (geometry_msgs/TwistStamped or Twist) and ``~/neurons`` (std_msgs/Float32MultiArray)
out. Services: ``~/enable`` (std_srvs/SetBool), ``~/reset`` (std_srvs/Trigger).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from geometry_msgs.msg import Twist, TwistStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu
from std_msgs.msg import Float32MultiArray, MultiArrayDimension
from std_srvs.srv import SetBool, Trigger

from liquid_pilot.flight.codec import DEFAULT_MAX_PIXELS, IMU_TYPE, BadInput, from_cdr, image_to_rgb, imu_to_array, \
    stamp_ns, warm_up
from liquid_pilot.flight.core import FlightCore
from liquid_pilot.flight.gate import ACCEL_RANGE, GYRO_RANGE, ZERO, Command, GateConfig
from liquid_pilot.flight.image import camera_mismatch, fov_after_fit
from liquid_pilot.flight.runtime import DEFAULT_RUNTIME, RUNTIMES, default_model, load_runtime
from liquid_pilot.ros.convert import time_msg
from liquid_pilot.ros.params import Param, declare_parameters
from liquid_pilot.ros.spin import run

PARAMETERS = (
    Param("model", "", "pilot checkpoint (.pt) or exported graph (.onnx); empty: the shipped pilot, "
          "share/liquid_pilot/models/cfc_ncp.pt"),
    Param("runtime", DEFAULT_RUNTIME, "network runtime: onnxruntime (a checkpoint is exported at start-up; faster), "
          "or eager PyTorch", choices=RUNTIMES),
    Param("control_rate", 50.0, "Hz: the control thread publishes the latest command (or zero) this often",
          low=1.0, high=500.0),
    Param("camera_timeout", 0.2, "s without a camera frame before hovering and resetting the network (2-3 frame "
          "periods); also the largest accepted image age and the longest gap flown through", low=0.01, high=1.0,
          read_only=False),
    Param("imu_timeout", 0.2, "s without a usable IMU sample before hovering and resetting the network",
          low=0.01, high=1.0, read_only=False),
    Param("max_speed_xy", 1.0, "m/s: horizontal speed limit (the command's horizontal vector is scaled down)",
          low=0.0, high=10.0, read_only=False),
    Param("max_speed_z", 0.5, "m/s: vertical speed limit", low=0.0, high=5.0, read_only=False),
    Param("max_yaw_rate", 1.0, "rad/s: yaw rate limit", low=0.0, high=6.3, read_only=False),
    Param("recover_frames", 3, "after a fault, consecutive good frames before flying resumes (1: the first)",
          low=1, high=100, read_only=False),
    Param("gyro_range", GYRO_RANGE, "rad/s: a gyro reading beyond this is implausible (a fault: hover); the default "
          "is a typical flight IMU's +-2000 deg/s", low=0.1, high=1000.0, read_only=False),
    Param("accel_range", ACCEL_RANGE, "m/s^2: an accelerometer reading beyond this is implausible (a fault: hover); "
          "the default is +-16 g", low=1.0, high=10000.0, read_only=False),
    Param("max_image_pixels", DEFAULT_MAX_PIXELS, "frames (raw, or compressed by their header) with more pixels are "
          "refused before decoding, so no frame can stall the pilot", low=1, high=2**31 - 1),
    Param("command_type", "twist_stamped", "cmd_vel message: geometry_msgs/TwistStamped or Twist",
          choices=("twist_stamped", "twist")),
    Param("frame_id", "base_link", "frame of the TwistStamped commands (body FLU)"),
    Param("image_transport", "raw", "raw: sensor_msgs/Image on camera/image_raw; compressed: "
          "sensor_msgs/CompressedImage on camera/image_raw/compressed", choices=("raw", "compressed")),
    Param("sensor_reliability", "best_effort", "QoS of the camera and IMU subscriptions: best_effort matches every "
          "publisher and suits small or compressed frames; reliable (the publisher must be reliable too) carries "
          "large raw frames (640x480 and up), which best effort loses in fragments", choices=("best_effort",
                                                                                              "reliable")),
    Param("start_enabled", False, "fly from start-up without ~/enable: for simulation only"),
)
GATE_PARAMETERS = ("camera_timeout", "imu_timeout", "max_speed_xy", "max_speed_z", "max_yaw_rate", "recover_frames",
                   "gyro_range", "accel_range")
FINAL_ZEROS = 5  # the final zero is sent this many times, one control period apart: a reliable writer's last
#                 message is acknowledged only at its next heartbeat (about a second with Fast DDS), one
#                 followed by others at once, so the repeats make the wait below short
FINAL_ZERO_WAIT_S = 0.5  # how long the final zeros wait for reliable subscribers to acknowledge them


class PilotNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("pilot_node", **kwargs)
        self.params = p = declare_parameters(self, PARAMETERS)
        model = p["model"] or default_model()
        runtime = load_runtime(model, p["runtime"])
        self.core = FlightCore(runtime, GateConfig(**{name: p[name] for name in GATE_PARAMETERS}), self._now,
                               self._log)
        self.gate = self.core.gate
        warm_up()  # decoders built before the first message, not while it waits
        self.get_logger().info(
            f"pilot {model} ({p['runtime']}): {runtime.image_size[1]}x{runtime.image_size[0]} RGB"
            f"{' + IMU' if runtime.uses_imu else ''}, {runtime.state_size} neurons of state")
        self._lock = threading.Lock()  # the gate and the command publisher; held briefly, never while stepping
        self._stop = threading.Event()
        self._frame: tuple[bytes, int] | None = None  # the newest frame waiting for the step thread, and its arrival
        self._frame_ready = threading.Condition()
        self.replaced_frames = 0  # frames replaced by a newer one before the network was free
        self.frames_handled = 0  # frames the step thread has finished with (flown, refused or dropped)
        self.imu_samples = 0  # IMU messages handed to the gate (good or not)
        self._camera: tuple[int, int] | None = None  # (width, height) of the frames last checked against training
        self._camera_fov: tuple[float, float] | None = None
        self._internal_logged = False

        # Commands are reliable (a lost command is not silently dropped). Sensors keep only the newest
        # message: a pilot that falls behind flies on the latest frame instead of working through old ones.
        # One command message, refilled and published under the lock.
        if p["command_type"] == "twist_stamped":
            self._cmd_msg = TwistStamped()
            self._cmd_msg.header.frame_id = p["frame_id"]
            self._twist = self._cmd_msg.twist
        else:
            self._cmd_msg = self._twist = Twist()
        self._cmd_pub = self.create_publisher(type(self._cmd_msg), "cmd_vel", QoSProfile(depth=10))
        self._neurons_pub = self.create_publisher(Float32MultiArray, "~/neurons", QoSProfile(depth=10))
        reliability = (ReliabilityPolicy.RELIABLE if p["sensor_reliability"] == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        sensors = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=reliability)
        # Sensor messages arrive serialized (raw) and are decoded by the flight codec: faster than
        # rclpy's conversion, and a message no decoder can read becomes a logged fault, not an exception.
        self.create_subscription(Imu, "imu/data", self._guard(self._on_imu), sensors, raw=True,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        image_cls, topic = Image, "camera/image_raw"
        if p["image_transport"] == "compressed":
            # image_transport naming: the transport is a suffix of the (remapped) base topic.
            image_cls, topic = CompressedImage, self.resolve_topic_name(topic) + "/compressed"
        self._image_type = f"sensor_msgs/msg/{image_cls.__name__}"
        self.create_subscription(image_cls, topic, self._guard(self._on_image), sensors, raw=True,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self.create_subscription(CameraInfo, "camera/camera_info", self._guard(self._on_camera_info), sensors,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        services = MutuallyExclusiveCallbackGroup()
        self.create_service(SetBool, "~/enable", self._on_enable, callback_group=services)
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=services)
        self.add_post_set_parameters_callback(self._on_parameters)
        self._threads = [threading.Thread(target=self._step_loop, name="pilot_step", daemon=True),
                         threading.Thread(target=self._control_loop, name="pilot_control", daemon=True)]
        for thread in self._threads:
            thread.start()
        if p["start_enabled"]:
            self.set_enabled(True)
        else:
            self.get_logger().info("disabled: publishing zero commands until ~/enable is called")

    # Public controls: the services call these, and so may code composing the node in a process.
    def set_enabled(self, enabled: bool) -> None:
        with self._lock:
            self.gate.set_enabled(enabled)
            self._publish(*self.gate.tick())
        self.get_logger().info("enabled: flying on the network" if enabled else "disabled: publishing zero")

    def reset_network(self) -> None:
        with self._lock:
            self.gate.reset()

    def destroy_node(self) -> None:
        """Stop the threads, then publish a final zero and wait for reliable subscribers to have it."""
        self._stop.set()
        with self._frame_ready:
            self._frame_ready.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5.0)
        try:
            with self._lock:
                self.gate.set_enabled(False)
            for i in range(FINAL_ZEROS):
                if i:
                    time.sleep(1.0 / self.params["control_rate"])
                with self._lock:
                    self._publish(ZERO, self._now())
            if not self._cmd_pub.wait_for_all_acked(Duration(seconds=FINAL_ZERO_WAIT_S)):
                self.get_logger().info(f"final zero sent; not every subscriber acknowledged it within "
                                       f"{FINAL_ZERO_WAIT_S} s")
        except Exception as exc:  # the context may be gone already (shut down elsewhere): nothing more to do
            self.get_logger().warning(f"could not publish the final zero command: {exc}")
        super().destroy_node()

    # Callbacks on the executor.
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
                self.gate.imu_fault(bad)
                self.imu_samples += 1
            return
        with self._lock:
            self.gate.imu(imu)
            self.imu_samples += 1

    def _on_image(self, data: bytes) -> None:
        received = self._now()  # the camera counts as alive from the frame's arrival, not from its turn to step
        with self._frame_ready:
            if self._frame is not None:
                self.replaced_frames += 1
            self._frame = (data, received)
            self._frame_ready.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        if msg.k[0] > 0 and msg.k[4] > 0 and msg.width and msg.height:
            fov = fov_after_fit(msg.width, msg.height, msg.k[0], msg.k[4], self.core.runtime.image_size)
            if fov != self._camera_fov:
                self._camera_fov, self._camera = fov, None  # check again against the next frame

    def _on_parameters(self, params: list[Parameter]) -> None:
        changed = {param.name: param.value for param in params if param.name in GATE_PARAMETERS}
        if changed:
            with self._lock:
                self.gate.config.update(**changed)  # in range already: the parameters' descriptors checked

    # The step thread: decode, preprocess and step outside the lock; newest frame first.
    def _step_loop(self) -> None:
        while not self._stop.is_set():
            with self._frame_ready:
                while self._frame is None and not self._stop.is_set():
                    self._frame_ready.wait()
                frame, self._frame = self._frame, None
            if frame is not None and not self._stop.is_set():
                self._guard(self._fly_frame)(*frame)
                self.frames_handled += 1

    def _fly_frame(self, data: bytes, received: int) -> None:
        try:
            msg = from_cdr(data, self._image_type, "decode")
            with self._lock:
                admission = self.gate.admit(stamp_ns(msg.header.stamp), received)
            if admission is None:  # disabled, or the same frame delivered again
                return
            rgb = image_to_rgb(msg, self._image_type, self.params["max_image_pixels"])
            self._check_camera(rgb.shape[1], rgb.shape[0])
            output = self.core.step(admission, rgb)
        except BadInput as bad:
            with self._lock:
                self.gate.reject(bad, received)
                self._publish(*self.gate.tick())
            return
        with self._lock:
            if self.gate.finish(admission, output) is None:
                return  # reset or disabled while the network stepped: the output is stale
            self._publish(*self.gate.tick())
        state = self.core.runtime.state
        if state is not None:
            self._publish_neurons(state[0])

    def _check_camera(self, width: int, height: int) -> None:
        """Warn once when the camera differs from the training camera in aspect ratio or field of view."""
        if self._camera == (width, height):
            return
        self._camera = (width, height)
        runtime = self.core.runtime
        warning = camera_mismatch(width, height, runtime.image_size, self._camera_fov, runtime.trained_fov)
        if warning:
            self.get_logger().warning(f"camera differs from training: {warning}")
        elif (height, width) != runtime.image_size:
            self.get_logger().info(f"fitting {width}x{height} frames to the model's {runtime.image_size[1]}x"
                                   f"{runtime.image_size[0]} (centre crop, then resize)")

    # The control thread: the command stream at control_rate, whatever the network is doing.
    def _control_loop(self) -> None:
        period = 1.0 / self.params["control_rate"]
        due = time.monotonic()
        while not self._stop.is_set():
            due += period
            delay = due - time.monotonic()
            if delay < -period:
                due = time.monotonic()  # far behind (the process was stalled): do not burst to catch up
            elif delay > 0 and self._stop.wait(delay):
                break
            try:
                with self._lock:
                    self._publish(*self.gate.tick())
            except Exception as exc:  # never let the stream die; the context may be shutting down
                if self.context.ok():
                    self._internal(exc)

    # Helpers.
    def _guard(self, callback: Callable[..., None]) -> Callable[..., None]:
        """Run a callback so that an unexpected exception hovers and is logged (once) instead of killing the node."""
        def guarded(*args: Any) -> None:
            try:
                callback(*args)
            except Exception as exc:
                self._internal(exc)
                with self._lock:
                    self.gate.reject(BadInput("internal", f"internal error: {type(exc).__name__}: {exc}: hovering"))
                    self._publish(*self.gate.tick())
        return guarded

    def _internal(self, exc: Exception) -> None:
        if not self._internal_logged:
            self._internal_logged = True
            self.get_logger().error(f"unexpected {type(exc).__name__} in the pilot: {exc}")

    def _log(self, level: str, message: str) -> None:
        # Two call sites: rclpy's logger keys its once-only settings by the caller's line, and a line
        # that logs at two severities raises.
        if level == "warn":
            self.get_logger().warning(message)
        else:
            self.get_logger().info(message)

    def _now(self) -> int:
        return self.get_clock().now().nanoseconds

    def _publish(self, command: Command, stamp: int) -> None:
        """Publish a command; the caller holds the lock (one message object is refilled)."""
        self._twist.linear.x, self._twist.linear.y, self._twist.linear.z, self._twist.angular.z = command
        if self._cmd_msg is not self._twist:
            # The stamp is that of the camera frame the command came from (repeats keep it), so the
            # command's age is visible downstream; zero commands carry the current time.
            self._cmd_msg.header.stamp = time_msg(stamp)
        self._cmd_pub.publish(self._cmd_msg)

    def _publish_neurons(self, state: Any) -> None:
        msg = Float32MultiArray(data=[float(v) for v in state])
        msg.layout.dim = [MultiArrayDimension(label="neurons", size=len(state), stride=len(state))]
        self._neurons_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    return run([PilotNode], args)


if __name__ == "__main__":
    raise SystemExit(main())
