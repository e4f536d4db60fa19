"""Flight records: a video (onboard view beside a top-down map) and a trajectory plot."""
from __future__ import annotations

import os
from collections.abc import Callable

import cv2
import numpy as np

from liquid_pilot.flight.saliency import overlay
from liquid_pilot.sim.world import Observation, Simulator

MAP_SIZE = 320


class FlightRecorder:
    """An ``on_step`` callback for ``fly`` that keeps frames for the video and the map."""

    def __init__(self, scale: int = 5, saliency: Callable[[Observation], np.ndarray] | None = None,
                 title: str = ""):
        self.scale, self.saliency, self.title = scale, saliency, title
        self.frames: list[np.ndarray] = []
        self.path: list[np.ndarray] = []

    def __call__(self, sim: Simulator, obs: Observation, command: np.ndarray) -> None:
        self.path.append(sim.state.position.copy())
        onboard = cv2.resize(obs.image, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_NEAREST)
        onboard = cv2.resize(onboard, (MAP_SIZE, MAP_SIZE), interpolation=cv2.INTER_NEAREST)
        if self.saliency is not None:  # where the network looks, in warm colours
            onboard = overlay(onboard, self.saliency(obs))
        text = (f"t {obs.time:5.2f}s  vx {command[0]:+.2f} vy {command[1]:+.2f} "
                f"vz {command[2]:+.2f} yaw {command[3]:+.2f}")
        frame = np.concatenate([onboard, self.top_down(sim)], 1)
        cv2.putText(frame, text, (6, MAP_SIZE - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        if self.title:
            cv2.putText(frame, self.title, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        self.frames.append(frame)

    def top_down(self, sim: Simulator) -> np.ndarray:
        """Draw a schematic map: obstacles, chairs, distractors, the stand-off ring and the path."""
        radius = sim.scenario.scene.radius
        image = np.full((MAP_SIZE, MAP_SIZE, 3), np.round(np.array(sim.scene.look["ground"]) * 200), np.uint8)

        def px(xy: np.ndarray) -> tuple[int, int]:
            u = (xy[0] + radius) / (2 * radius) * (MAP_SIZE - 1)
            v = (radius - xy[1]) / (2 * radius) * (MAP_SIZE - 1)
            return int(round(u)), int(round(v))

        metres = MAP_SIZE / (2 * radius)
        for obstacle in sim.scene.obstacles:
            cv2.circle(image, px(obstacle.position), max(2, int(obstacle.radius * metres)), (60, 60, 60), -1)
        for d in sim.scene.distractors:
            cv2.circle(image, px(d), 5, (200, 40, 40), 2)
        target = sim.monitor.target_xy
        cv2.circle(image, px(target), int(sim.scenario.task.standoff * metres), (255, 255, 255), 1, cv2.LINE_AA)
        cv2.rectangle(image, np.subtract(px(target), 4), np.add(px(target), 4), (220, 20, 20), -1)
        if len(self.path) > 1:
            points = np.array([px(p) for p in self.path], np.int32)
            cv2.polylines(image, [points], False, (255, 255, 0), 1, cv2.LINE_AA)
        state = sim.state
        tip = state.position[:2] + 0.8 * np.array([np.cos(state.yaw), np.sin(state.yaw)])
        cv2.arrowedLine(image, px(state.position), px(tip), (255, 255, 255), 2, cv2.LINE_AA, tipLength=0.4)
        return image

    def write_video(self, path: str | os.PathLike, fps: float) -> None:
        write_video(self.frames, path, fps)


def write_video(frames: list[np.ndarray], path: str | os.PathLike, fps: float) -> None:
    """Write RGB frames of one size as an MP4."""
    if not frames:
        raise ValueError("no frames recorded")
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot write video {path}")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def plot_trajectory(sim: Simulator, trajectory: list[list[float]], path: str | os.PathLike, title: str = "") -> None:
    """Top view of the flight with obstacles and targets, and distance/height over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.array(trajectory).reshape(-1, 5)
    fig, (top, side) = plt.subplots(1, 2, figsize=(11, 5), gridspec_kw={"width_ratios": [1, 1.2]})
    for obstacle in sim.scene.obstacles:
        top.add_patch(plt.Circle(obstacle.position, max(obstacle.radius, 0.08), color="0.35"))
    for xy, _ in sim.layout.targets:
        top.plot(*xy, "s", color="#d62728", ms=9)
    for d in sim.scene.distractors:
        top.plot(d[0], d[1], "o", mfc="none", mec="#d62728", ms=9)
    top.plot(data[:, 1], data[:, 2], "-", color="#1f77b4", lw=1.5, label="flight")
    top.plot(data[0, 1], data[0, 2], "o", color="#1f77b4", label="start")
    top.set_aspect("equal")
    r = sim.scenario.scene.radius
    top.set_xlim(-r, r)
    top.set_ylim(-r, r)
    top.set_xlabel("x (m)")
    top.set_ylabel("y (m)")
    top.legend(loc="upper right", fontsize=8)
    targets = np.array([xy for xy, _ in sim.layout.targets])
    distance = np.min(np.linalg.norm(data[:, None, 1:3] - targets[None], axis=2), 1)
    side.plot(data[:, 0], distance, label="distance to nearest target (m)")
    side.plot(data[:, 0], data[:, 3], label="height (m)")
    side.axhline(sim.scenario.task.standoff, color="0.5", ls="--", lw=0.8, label="stand-off")
    side.set_xlabel("time (s)")
    side.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
