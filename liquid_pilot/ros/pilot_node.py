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

Topics: ``camera/image_raw`` (sensor_msgs/Image, or ``camera/image_raw/compressed``), its
``camera_info`` (the sibling of the image topic, as image_transport's camera subscriber takes it, so
remapping the image moves it too; optional: the field of view check), ``imu/data`` (sensor_msgs/Imu)
in; ``cmd_vel`` (geometry_msgs/TwistStamped or Twist), ``~/neurons`` (std_msgs/Float32MultiArray),
``/diagnostics`` (``liquid_pilot.ros.diagnostics``) and, opt-in, ``~/saliency`` (sensor_msgs/Image)
out. Services: ``~/enable`` (std_srvs/SetBool), ``~/reset`` (std_srvs/Trigger).
"""
from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from geometry_msgs.msg import Twist, TwistStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu
from std_msgs.msg import Float32MultiArray, MultiArrayDimension
from std_srvs.srv import SetBool, Trigger

from liquid_pilot.flight.codec import DEFAULT_DECODE_BUDGET, DEFAULT_MAX_PIXELS, IMU_TYPE, BadInput, Decoder, \
    from_cdr, imu_to_array, stamp_ns, warm_up
from liquid_pilot.flight.conventions import TRAINING_CAMERA_HZ, camera_info_topic
from liquid_pilot.flight.core import FlightCore
from liquid_pilot.flight.gate import GateConfig
from liquid_pilot.flight.types import ZERO, Command
from liquid_pilot.flight.image import camera_mismatch, fit, fov_after_fit
from liquid_pilot.flight.runtime import DEFAULT_RUNTIME, RUNTIMES
from liquid_pilot.flight.saliency import occlusion, overlay
from liquid_pilot.models import default_model, describe_model, load_runtime
from liquid_pilot.ros.convert import rgb_to_image, time_msg
from liquid_pilot.ros.diagnostics import QosProblems, RateMeter, Reporter, band, pilot_report
from liquid_pilot.ros.params import declare_parameters, params_from
from liquid_pilot.ros.spin import run
from liquid_pilot.settings import Range, check_fields, setting

GATE_PARAMETERS = tuple(f.name for f in dataclasses.fields(GateConfig))  # parameters that set the gate


@dataclass(frozen=True)
class PilotNodeSettings:
    """pilot_node's own settings, each documented and bounded once: its ROS parameters are made of them.

    The gate's settings are ``GateConfig``'s.
    """

    model: str = setting("", "pilot checkpoint (.pt) or exported graph (.onnx); empty: the shipped pilot, "
                             "share/liquid_pilot/models/cfc_ncp.pt")
    runtime: str = setting(DEFAULT_RUNTIME, "network runtime: onnxruntime (a checkpoint is exported at start-up; "
                                            "faster), or eager PyTorch", RUNTIMES)
    control_rate: float = setting(50.0, "Hz: the control thread publishes the latest command (or zero) this often",
                                  Range(1.0, 500.0))
    max_image_pixels: int = setting(DEFAULT_MAX_PIXELS, "frames (raw, or compressed by their header) with more "
                                                        "pixels are refused before decoding, so no frame can stall "
                                                        "the pilot", Range(1, 2**31 - 1))
    decode_budget: float = setting(DEFAULT_DECODE_BUDGET, "s of CPU one compressed frame's decoding may take (large "
                                                          "JPEGs are decoded at a reduced size first); frames of a "
                                                          "format and size that take longer are refused with one "
                                                          "line, so the pilot keeps pace with its camera",
                                   Range(0.001, 10.0))
    camera_rate: float = setting(0.0, "Hz the model expects of the camera; 0: the rate its training recorded, else "
                                      f"{TRAINING_CAMERA_HZ:g} (the simulator's camera, on which the shipped pilots "
                                      "were trained)", Range(0.0, 1000.0))
    camera_rate_tolerance: float = setting(0.3, "relative: a measured camera rate further than this from "
                                                "camera_rate is reported (once per excursion; diagnostics WARN)",
                                           Range(0.01, 10.0))
    camera_rate_action: str = setting("warn", "a camera outside the rate band: warn (fly on) or hover (refuse its "
                                              "frames until the rate is back in the band)", ("warn", "hover"))
    saliency_rate: float = setting(0.0, "Hz of ~/saliency images (the frame with where the network looks drawn over "
                                        "it); 0: none. A checkpoint: the demo's gradient map; an .onnx artefact: "
                                        "occlusion sensitivity", Range(0.0, 10.0))
    command_type: str = setting("twist_stamped", "cmd_vel message: geometry_msgs/TwistStamped or Twist",
                                ("twist_stamped", "twist"))
    frame_id: str = setting("base_link", "frame of the TwistStamped commands (body FLU)")
    image_transport: str = setting("raw", "raw: sensor_msgs/Image on camera/image_raw; compressed: "
                                          "sensor_msgs/CompressedImage on camera/image_raw/compressed",
                                   ("raw", "compressed"))
    sensor_reliability: str = setting("best_effort", "QoS of the camera and IMU subscriptions: best_effort matches "
                                                     "every publisher and suits small or compressed frames; reliable "
                                                     "(the publisher must be reliable too) carries large raw frames "
                                                     "(640x480 and up), which best effort loses in fragments",
                                      ("best_effort", "reliable"))
    start_enabled: bool = setting(False, "fly from start-up without ~/enable: for simulation only")

    def __post_init__(self) -> None:
        check_fields(self, "pilot_node parameter ")


LIVE = ("decode_budget", "camera_rate_tolerance", "camera_rate_action")  # pilot_node settings ros2 param set changes
PARAMETERS = (
    *params_from(PilotNodeSettings, ("model", "runtime", "control_rate")),
    *params_from(GateConfig, GATE_PARAMETERS, read_only=False),  # the gate's settings: text and range once
    *params_from(PilotNodeSettings, [f.name for f in dataclasses.fields(PilotNodeSettings)][3:], live=LIVE),
)
FINAL_ZEROS = 5  # the final zero is sent this many times, one control period apart: one lost datagram does not
#                 lose it (over a reliable writer a lost sample is repaired only after the next heartbeat)
FINAL_ZERO_WAIT_S = 0.5  # how long the final zeros wait for reliable subscribers to acknowledge them. Another
#                        process's reader acknowledges only at the writer's periodic heartbeat, every 3 s with
#                        Fast DDS's defaults (measured: 1.0-3.0 s), so across processes this wait usually ends
#                        first; within a process the acknowledgement is immediate
FAST_DDS_HEARTBEAT_S = 3.0
NO_CLOCK_WARNING_S = 2.0  # under use_sim_time, warn when no /clock has come this long after start-up
RATE_INTERVALS = 5  # the camera rate is judged once its 2 s window holds this many frame intervals
RATE_BACK_S = 2.0  # s well inside the band before a camera off its rate counts as back
SALIENCY_SIZE = 256  # pixels (square) of the ~/saliency image


class PilotNode(Node):
    """The liquid pilot as a ROS 2 node: camera (and IMU) in, body-frame cmd_vel out at control rate.

    A shell around the flight core (``liquid_pilot.flight.core``): the node receives and decodes frames on one
    thread, steps the network through ``FlightCore.fly`` on another, and publishes the latest command (or zero)
    on a third, so nothing can starve the command stream. Starts disabled; ``~/enable`` flies.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("pilot_node", **kwargs)
        self.params = p = declare_parameters(self, PARAMETERS)
        self.model = model = p["model"] or default_model()
        runtime = load_runtime(model, p["runtime"])
        self.core = FlightCore(runtime, GateConfig(**{name: p[name] for name in GATE_PARAMETERS}), self._now,
                               self._log)
        self.gate = self.core.gate
        self.decoder = Decoder(runtime.image_size, p["max_image_pixels"], p["decode_budget"])
        self.model_info = describe_model(model, runtime)
        warm_up()  # decoders built before the first message, not while it waits
        self.decoder.calibrate()  # this machine's PNG speed: too large a PNG is refused before decoding
        self.get_logger().info(
            f"pilot {model} ({p['runtime']}): {runtime.image_size[1]}x{runtime.image_size[0]} RGB"
            f"{' + IMU' if runtime.uses_imu else ''}, {runtime.state_size} neurons of state")
        self._lock = self.core.lock  # the gate and the command publisher; held briefly, never while stepping
        self._stop = threading.Event()
        self._frame: tuple[bytes, int] | None = None  # the newest frame waiting for the step thread, and its arrival
        self._frame_lock = threading.Lock()  # the slot above
        # One token while the slot holds a frame the step thread has not taken (and one at stop): a SimpleQueue
        # wakes a thread from C, about 45 us sooner after a camera period asleep than threading.Condition here.
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        self.replaced_frames = 0  # frames replaced by a newer one before the network was free
        self.frames_handled = 0  # frames the step thread has finished with (flown, refused or dropped)
        self.imu_samples = 0  # IMU messages handed to the gate (good or not)
        self._camera: tuple[int, int] | None = None  # (width, height) of the frames last checked against training
        self._camera_fov: tuple[float, float] | None = None
        self._internal_logged = False
        # What diagnostics report. Rates on the node's clock: under use_sim_time a simulator running at twice
        # real time still gives its camera's 16 Hz.
        self.camera_rate, self.imu_rate = RateMeter(clock=self._now), RateMeter(clock=self._now)
        self.step_times: deque[float] = deque(maxlen=100)  # s: decode + preprocess + step of the latest frames
        self.expected_rate = p["camera_rate"] or float(self.model_info.get("camera_hz") or TRAINING_CAMERA_HZ)
        self._rate_out: float | None = None  # the camera's rate while outside the band (None: in the band)
        self._rate_back: float | None = None  # since when (monotonic s) an off-rate camera is well inside it again
        self._started = time.monotonic()
        self._no_clock_warned = False
        self.qos = QosProblems(self)

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
        # Every subscription reports a publisher whose QoS cannot match it (one line, and diagnostics).
        imu_topic = self.resolve_topic_name("imu/data")
        self.create_subscription(Imu, imu_topic, self._guard(self._on_imu), sensors, raw=True,
                                 callback_group=MutuallyExclusiveCallbackGroup(),
                                 event_callbacks=self.qos.callbacks(imu_topic, sensors))
        image_cls, topic = Image, self.resolve_topic_name("camera/image_raw")
        info_topic = camera_info_topic(topic)  # the image's sibling: remapping the image moves it too
        if p["image_transport"] == "compressed":
            # image_transport naming: the transport is a suffix of the (remapped) base topic.
            image_cls, topic = CompressedImage, topic + "/compressed"
        self._image_type = f"sensor_msgs/msg/{image_cls.__name__}"
        self.create_subscription(image_cls, topic, self._guard(self._on_image), sensors, raw=True,
                                 callback_group=MutuallyExclusiveCallbackGroup(),
                                 event_callbacks=self.qos.callbacks(topic, sensors))
        self.create_subscription(CameraInfo, info_topic, self._guard(self._on_camera_info), sensors,
                                 callback_group=MutuallyExclusiveCallbackGroup(),
                                 event_callbacks=self.qos.callbacks(info_topic, sensors))
        services = MutuallyExclusiveCallbackGroup()
        self.create_service(SetBool, "~/enable", self._on_enable, callback_group=services)
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=services)
        self.add_post_set_parameters_callback(self._on_parameters)
        self.create_timer(0.1, self._watch, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.diagnostics = Reporter(self, "pilot", f"{self.model_info.get('kind', 'model')} {model}",
                                    self._diagnostics)
        self._saliency_pub = None
        self._saliency_due = 0.0
        self._saliency_map: Callable[..., np.ndarray] | None = None
        self._saliency_failed = False
        if p["saliency_rate"] > 0:
            self._saliency_pub = self.create_publisher(Image, "~/saliency", QoSProfile(depth=1))
            self._saliency_map = self._make_saliency()
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
        self._wake.put(None)
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
            self._final_zero_acked()
        except Exception as exc:  # the context may be gone already (shut down elsewhere): nothing more to do
            self.get_logger().warning(f"could not publish the final zero command: {exc}")
        super().destroy_node()

    def _final_zero_acked(self) -> None:
        """Wait for reliable subscribers to acknowledge the final zeros; say how it ended (one line)."""
        readers = [info for info in self.get_subscriptions_info_by_topic(self._cmd_pub.topic_name)
                   if info.qos_profile.reliability == ReliabilityPolicy.RELIABLE]
        if not readers:
            return
        start = time.monotonic()
        if self._cmd_pub.wait_for_all_acked(Duration(seconds=FINAL_ZERO_WAIT_S)):
            self.get_logger().info(f"final zero acknowledged by {len(readers)} reliable subscriber(s) in "
                                   f"{time.monotonic() - start:.2f} s")
        else:  # not a warning: usually the heartbeat had not come yet, nothing was lost
            self.get_logger().info(f"final zero published {FINAL_ZEROS} times to {len(readers)} reliable "
                                   f"subscriber(s), not acknowledged within {FINAL_ZERO_WAIT_S} s: DDS readers in "
                                   f"other processes acknowledge at the writer's periodic heartbeat (every "
                                   f"{FAST_DDS_HEARTBEAT_S:g} s with Fast DDS), so this does not mean it was lost")

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
        self.imu_rate.add()
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
        self.camera_rate.add()
        with self._lock:
            self.gate.frame_arrived(received)
        with self._frame_lock:
            waiting = self._frame is not None
            self._frame = (data, received)
        if waiting:
            self.replaced_frames += 1  # the step thread's token is out already: it takes this newer frame
        else:
            self._wake.put(None)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        if msg.k[0] > 0 and msg.k[4] > 0 and msg.width and msg.height:
            fov = fov_after_fit(msg.width, msg.height, msg.k[0], msg.k[4], self.core.runtime.image_size)
            if fov != self._camera_fov:
                self._camera_fov, self._camera = fov, None  # check again against the next frame

    def _on_parameters(self, params: list[Parameter]) -> None:
        changed = {param.name: param.value for param in params if param.name in GATE_PARAMETERS}
        for param in params:
            if param.name == "decode_budget":
                self.decoder.budget = param.value
            elif param.name == "camera_rate_tolerance":
                self._rate_out = None  # judged afresh against the new band
        if changed:
            with self._lock:
                self.gate.config.update(**changed)  # in range already: the parameters' descriptors checked

    # The step thread: decode, preprocess and step outside the lock; newest frame first.
    def _step_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.get()
            with self._frame_lock:
                frame, self._frame = self._frame, None
            if frame is not None and not self._stop.is_set():
                self._guard(self._fly_frame)(*frame)
                self.frames_handled += 1

    def _fly_frame(self, data: bytes, received: int) -> None:
        """Fly one frame through the flight core's one ordering; then the neurons and, when due, the saliency."""
        started = time.perf_counter()
        try:
            msg = from_cdr(data, self._image_type, "decode")
        except BadInput as bad:
            self.core.fly(0, bad, self._publish, received)
            return

        def decode() -> np.ndarray:
            rgb = self.decoder(msg, self._image_type)
            self._check_camera(*self.decoder.last_size, self.decoder.last_factor)
            return rgb

        flown = self.core.fly(stamp_ns(msg.header.stamp), decode, self._publish, received,
                              self._refuse_unclocked_or_off_rate)
        if flown is None or flown.admission is None:
            return  # nothing to fly, or refused (the gate hovers)
        admission, rgb, state = flown.admission, flown.rgb, flown.state
        self.step_times.append(time.perf_counter() - started)
        state_after = self.core.runtime.state
        if state_after is not None:
            self._publish_neurons(state_after[0])
        if self._saliency_pub is not None and time.monotonic() >= self._saliency_due:
            self._saliency_due = time.monotonic() + 1.0 / self.params["saliency_rate"]
            self._publish_saliency(rgb, admission, state, msg.header)

    def _refuse_unclocked_or_off_rate(self) -> None:
        """Raise BadInput for a frame the clock or the camera's rate forbids flying (under the lock)."""
        if self._sim_time() and self._now() == 0:
            raise BadInput("no_clock", "use_sim_time is on and no /clock has arrived, so the pilot's clock reads 0 "
                                       "and no frame can be timed: hovering; start the simulator or a /clock "
                                       "publisher, or set use_sim_time false")
        if self._rate_out is not None and self.params["camera_rate_action"] == "hover":
            raise BadInput("camera_rate", f"the camera runs at {self._rate_out:.1f} Hz and the model expects "
                                          f"{self.expected_rate:g} Hz (camera_rate_tolerance "
                                          f"{self.params['camera_rate_tolerance']:g}): hovering until it is back "
                                          "(camera_rate_action: hover)")

    def _check_camera(self, width: int, height: int, factor: int = 1) -> None:
        """Warn once when the camera differs from the training camera in aspect ratio or field of view.

        ``factor``: the frame was decoded at 1/factor of its size (a large JPEG).
        """
        if self._camera == (width, height):
            return
        self._camera = (width, height)
        runtime = self.core.runtime
        warning = camera_mismatch(width, height, runtime.image_size, self._camera_fov, runtime.trained_fov)
        if warning:
            self.get_logger().warning(f"camera differs from training: {warning}")
        elif (height, width) != runtime.image_size:
            reduced = f" (decoded at 1/{factor} of their size)" if factor > 1 else ""
            self.get_logger().info(f"fitting {width}x{height} frames{reduced} to the model's {runtime.image_size[1]}x"
                                   f"{runtime.image_size[0]} (centre crop, then resize)")

    # Watching the clock and the camera's rate (steady timer), diagnostics.
    def _watch(self) -> None:
        """Warn once when use_sim_time has no /clock; warn once per excursion of the camera rate from the band."""
        if not self._no_clock_warned and self._sim_time() and self._now() == 0 and \
                time.monotonic() - self._started >= NO_CLOCK_WARNING_S and "no_clock" not in self.gate.faults:
            self._no_clock_warned = True
            self.get_logger().warning(f"use_sim_time is on and no /clock has arrived in {NO_CLOCK_WARNING_S:g} s: "
                                      "the pilot's clock reads 0, frames cannot be timed and zero commands are "
                                      "stamped 0; start the simulator or a /clock publisher, or set use_sim_time "
                                      "false")
        if self.camera_rate.intervals() < RATE_INTERVALS:
            return  # too few frames lately to judge (a silent camera is the gate's camera_stale)
        rate, tolerance = self.camera_rate.rate(), self.params["camera_rate_tolerance"]
        if self._rate_out is None:
            if not band(rate, self.expected_rate, tolerance):
                self._rate_out, self._rate_back = rate, None
                action = ("hovering until it is back" if self.params["camera_rate_action"] == "hover" else
                          "flying on (camera_rate_action: hover refuses such frames)")
                self.get_logger().warning(f"the camera runs at {rate:.1f} Hz and the model was trained at "
                                          f"{self.expected_rate:g} Hz (beyond camera_rate_tolerance {tolerance:g}): "
                                          f"the network's timing differs from training; {action}")
            return
        # Back in the band only once well inside it (0.8 of the tolerance) for RATE_BACK_S: no flapping at its edge.
        self._rate_out = rate
        now = time.monotonic()
        if not band(rate, self.expected_rate, 0.8 * tolerance):
            self._rate_back = None
        elif self._rate_back is None:
            self._rate_back = now
        elif now - self._rate_back >= RATE_BACK_S:
            self._rate_out = self._rate_back = None
            self.get_logger().info(f"camera rate back in the band: {rate:.1f} Hz (the model expects "
                                   f"{self.expected_rate:g} Hz)")

    def _diagnostics(self):
        """Return the pilot's /diagnostics report (liquid_pilot.ros.diagnostics.pilot_report)."""
        with self._lock:
            gate = self.gate.status()
        camera = {"rate": self.camera_rate.rate(), "expected": self.expected_rate, "age": gate["camera_age"],
                  "in_band": self._rate_out is None, "replaced": self.replaced_frames}
        imu = {"rate": self.imu_rate.rate(), "age": gate["imu_age"]} if self.core.runtime.uses_imu else None
        times = list(self.step_times)
        step = {"count": len(times), "mean_ms": 1e3 * sum(times) / len(times) if times else None,
                "max_ms": 1e3 * max(times) if times else None}
        problems = self.qos.lines()
        if self._sim_time() and self._now() == 0:
            problems.append("use_sim_time is on and no /clock has arrived")
        return pilot_report(gate, camera, imu, step, self.model_info, problems)

    def _sim_time(self) -> bool:
        return bool(self.get_parameter("use_sim_time").value)

    # Saliency (opt-in, at saliency_rate): where the network looks, drawn over the frame it flew.
    def _make_saliency(self) -> Callable[..., np.ndarray]:
        runtime = self.core.runtime
        if str(self.model).endswith(".onnx"):
            self.get_logger().info(f"~/saliency at {self.params['saliency_rate']:g} Hz: occlusion sensitivity on "
                                   "onnxruntime (the artefact carries no gradients)")
            return lambda image, imu, state, dt: occlusion(runtime.evaluate, image, imu, state, dt)
        import torch

        from liquid_pilot.nn.checkpoint import load_pilot

        pilot = load_pilot(self.model).eval()
        self.get_logger().info(f"~/saliency at {self.params['saliency_rate']:g} Hz: the demo's gradient map")

        def gradient(image: np.ndarray, imu: np.ndarray | None, state: np.ndarray | None, dt: float) -> np.ndarray:
            inputs = {"image": torch.from_numpy(np.ascontiguousarray(image))[None],
                      "imu": torch.from_numpy(np.zeros(6, np.float32) if imu is None else imu)[None]}
            state = None if state is None else torch.from_numpy(np.asarray(state, np.float32))
            return pilot.saliency(inputs, state, torch.tensor([[dt]], dtype=torch.float32)).numpy()
        return gradient

    def _publish_saliency(self, rgb: np.ndarray, admission: Any, state: np.ndarray | None, header: Any) -> None:
        """Publish the map of the frame just flown; a failure here is logged once and never touches the commands."""
        try:
            image = fit(rgb, self.core.runtime.image_size)
            heat = self._saliency_map(image, admission.imu, state, admission.dt)
            msg = rgb_to_image(overlay(image, heat, SALIENCY_SIZE), time_msg(stamp_ns(header.stamp)),
                               header.frame_id)
            self._saliency_pub.publish(msg)
        except Exception as exc:  # the map is for the operator: the command stream never pays for it
            if not self._saliency_failed:
                self._saliency_failed = True
                self.get_logger().error(f"~/saliency failed ({type(exc).__name__}: {exc}); the pilot flies on")

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
