"""The player node: replays a recording's serialized messages with their original timing.

A recording is any bag ``liquid-pilot`` reads (``data.storage``): a rosbag2 folder (the
recorder's, split into files, even one cut short by a crash), a bare .mcap or .db3 file, or a
folder of bags, played one after another. ROS 1 bags hold ROS 1 messages and are not played.

``rate`` scales the timing (2 = twice as fast). With ``publish_clock`` it also publishes
``/clock`` in the recording's time, so nodes with use_sim_time run on the bag's clock.
Each topic is published with the reliability and durability it was recorded with. The
node sets ``finished`` when the recording ends; the executables then exit.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import QoSProfile
from rosgraph_msgs.msg import Clock

from liquid_pilot.data.storage import BagError, find_bags, open_bag
from liquid_pilot.ros.bag import matching_qos, message_class
from liquid_pilot.ros.convert import time_msg
from liquid_pilot.ros.params import declare_parameters, params_from
from liquid_pilot.ros.spin import run
from liquid_pilot.settings import Range, check_fields, setting


@dataclass(frozen=True)
class PlayerSettings:
    """player_node's settings, each documented and bounded once: its ROS parameters are made of them."""

    bag: str = setting("", "recording to play: a rosbag2 bag folder, a .mcap or .db3 file, or a folder of bags")
    rate: float = setting(1.0, "playback speed: 1 = as recorded, 2 = twice as fast", Range(0.01, 100.0))
    publish_clock: bool = setting(False, "publish /clock in the recording's time")
    topics: list[str] = setting(help="topics to play (absolute names as recorded); empty: all", factory=list)
    wait_for_subscribers: float = setting(0.0, "s to wait, at most, until every topic has a subscriber before "
                                               "playing", Range(0.0, 60.0))

    def __post_init__(self) -> None:
        check_fields(self, "player_node parameter ")


PARAMETERS = params_from(PlayerSettings)
CLOCK_PERIOD_S = 0.01  # wall seconds between /clock messages while waiting for the next message
DEPTH = 100


class PlayerNode(Node):
    """Plays any bag liquid_pilot reads with its original timing (times ``rate``), optionally with /clock."""

    def __init__(self, **kwargs) -> None:
        super().__init__("player_node", **kwargs)
        self.params = p = declare_parameters(self, PARAMETERS)
        if not p["bag"]:
            raise ValueError("player_node: set the 'bag' parameter to the recording to play")
        self._bags = []
        try:
            paths, unread = find_bags([Path(p["bag"])])
            for path in paths:
                self._bags.append(open_bag(path))
        except BagError as exc:
            self._close_bags()
            raise ValueError(f"player_node: cannot read {exc}") from None
        for line in unread:
            self.get_logger().warning(line)
        for bag in self._bags:
            for note in bag.notes:
                self.get_logger().info(f"{bag.path}: {note}")
        wanted = set(p["topics"])
        self._outputs = {}
        for bag in self._bags:
            for topic, info in bag.topics.items():
                if ((wanted and topic not in wanted) or topic in self._outputs
                        or (topic == "/clock" and p["publish_clock"])):
                    continue
                try:
                    if info.encoding != "cdr":
                        raise ValueError(f"its messages are {info.encoding}, not ROS 2 (cdr)")
                    cls = message_class(info.msgtype)
                except ValueError as exc:
                    self.get_logger().warning(f"not playing {topic}: {exc}")
                    continue
                self._outputs[topic] = self.create_publisher(cls, topic, matching_qos(info.qos, DEPTH))
        self._clock_pub = self.create_publisher(Clock, "/clock", QoSProfile(depth=10)) if p["publish_clock"] else None
        self.finished = threading.Event()
        self.published = 0
        self._stop = threading.Event()
        self.context.on_shutdown(self._stop.set)  # stop publishing before the context goes away
        self._thread = threading.Thread(target=self._play, name="player_node", daemon=True)
        self._thread.start()

    def destroy_node(self) -> None:
        self._stop.set()
        self._thread.join()
        self._close_bags()
        super().destroy_node()

    def _close_bags(self) -> None:
        for bag in self._bags:
            bag.close()
        self._bags = []

    def _play(self) -> None:
        try:
            self._wait_for_subscribers()
            self._replay()
        except Exception as exc:
            if self.context.ok():  # not a publish racing the shutdown
                self.get_logger().error(f"playback stopped: {type(exc).__name__}: {exc}")
        self.finished.set()

    def _replay(self) -> None:
        rate = self.params["rate"]
        start_wall = start_bag = None
        self.get_logger().info(f"playing {len(self._outputs)} topics from {self.params['bag']} at x{rate}")
        for topic, stamp, data in (m for bag in self._bags for m in bag.messages(self._outputs)):
            if start_wall is None:
                start_wall, start_bag = time.monotonic(), stamp
            due = start_wall + (stamp - start_bag) / 1e9 / rate
            while (wait := due - (now := time.monotonic())) > 0 and not self._stop.is_set():
                if self._clock_pub is not None:
                    tick = clock_between(start_bag, now - start_wall, rate, stamp)
                    self._clock_pub.publish(Clock(clock=time_msg(tick)))
                self._stop.wait(min(wait, CLOCK_PERIOD_S) if self._clock_pub is not None else wait)
            if self._stop.is_set():
                break
            if self._clock_pub is not None:
                self._clock_pub.publish(Clock(clock=time_msg(stamp)))
            self._outputs[topic].publish(bytes(data))
            self.published += 1
        self.get_logger().info(f"played {self.published} messages")

    def _wait_for_subscribers(self) -> None:
        deadline = time.monotonic() + self.params["wait_for_subscribers"]
        while (time.monotonic() < deadline and not self._stop.is_set()
               and any(pub.get_subscription_count() == 0 for pub in self._outputs.values())):
            self._stop.wait(0.02)


def clock_between(start_bag: int, wall_s: float, rate: float, next_stamp: int) -> int:
    """Return the recording's time ``wall_s`` wall seconds into playback, never past the next message's stamp.

    /clock must not run backwards: the next message publishes its own stamp as the clock, and a tick computed
    from a later reading of the wall clock (or rounded up) would otherwise run ahead of it.
    """
    return min(next_stamp, start_bag + round(wall_s * rate * 1e9))


def main(args: list[str] | None = None) -> int:
    return run([PlayerNode], args)


if __name__ == "__main__":
    raise SystemExit(main())
