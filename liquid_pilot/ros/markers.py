"""The simulator's world for RViz and Foxglove: chairs, look-alikes, obstacles and the flown path as markers.

``scene_markers`` turns a simulator's episode into one ``visualization_msgs/MarkerArray`` in the
``odom`` frame (the simulator's world, where ``odom`` puts the drone): the target chairs (their six
boxes, the current one in full red, those still to visit paler), the red look-alikes, the
obstacles (cylinders of their footprint) and the path flown so far (a line strip). It starts with
a DELETEALL, so each array replaces the previous episode's markers whole. ``draw`` draws a
MarkerArray from above with matplotlib (the picture in docs/, and a check of what was published).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from geometry_msgs.msg import Point
from visualization_msgs.msg import Marker, MarkerArray

from liquid_pilot.sim.scene import CHAIR_PARTS
from liquid_pilot.sim.world import Simulator

FRAME = "odom"
OBSTACLE_HEIGHT = 3.0  # m: drawn height of an obstacle's cylinder (its footprint is what the sim knows)
LOOKALIKE_RADIUS = 0.4  # m: a look-alike's footprint (box, drum or a red chair)
PATH_POINTS = 2000  # the path keeps the latest this many positions


def _marker(kind: int, ns: str, ident: int, stamp: TimeMsg, frame: str, rgba: Sequence[float]) -> Marker:
    m = Marker(type=kind, ns=ns, id=ident, action=Marker.ADD)
    m.header.stamp, m.header.frame_id = stamp, frame
    m.color.r, m.color.g, m.color.b, m.color.a = (float(v) for v in rgba)
    m.pose.orientation.w = 1.0
    m.frame_locked = True
    return m


def _chair(xy: np.ndarray, yaw: float, first: int, stamp: TimeMsg, frame: str, rgba: Sequence[float],
           ns: str) -> list[Marker]:
    """Return a chair's six boxes as CUBE markers, rotated by ``yaw`` about its centre."""
    out, c, s = [], math.cos(yaw), math.sin(yaw)
    for k, (half, centre) in enumerate(CHAIR_PARTS):
        m = _marker(Marker.CUBE, ns, first + k, stamp, frame, rgba)
        m.pose.position.x = float(xy[0] + c * centre[0] - s * centre[1])
        m.pose.position.y = float(xy[1] + s * centre[0] + c * centre[1])
        m.pose.position.z = float(centre[2])
        m.pose.orientation.z, m.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
        m.scale.x, m.scale.y, m.scale.z = (2.0 * float(h) for h in half)
        out.append(m)
    return out


def scene_markers(sim: Simulator, path: Sequence[Sequence[float]], stamp: TimeMsg,
                  frame: str = FRAME) -> MarkerArray:
    """Return the episode's world and the path flown so far (positions in the world frame, metres)."""
    markers = [Marker(action=Marker.DELETEALL)]
    monitor = sim.monitor
    current = monitor.index
    for i, (xy, yaw) in enumerate(monitor.layout.targets):
        if i < current:
            continue  # visited: the simulator has taken it away
        if i == current:  # a moving target is where the monitor says it is now
            xy = monitor.target_xy
        rgba = (0.86, 0.08, 0.08, 1.0) if i == current else (0.86, 0.45, 0.45, 0.6)
        markers += _chair(np.asarray(xy), float(yaw), 10 * i, stamp, frame, rgba, "chairs")
    for i, centre in enumerate(sim.scene.distractors):
        m = _marker(Marker.CYLINDER, "look-alikes", i, stamp, frame, (0.78, 0.16, 0.16, 0.5))
        m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in centre)
        m.scale.x = m.scale.y = 2 * LOOKALIKE_RADIUS
        m.scale.z = 2 * float(centre[2])
        markers.append(m)
    distractor_xy = [np.asarray(d[:2]) for d in sim.scene.distractors]
    for i, obstacle in enumerate(sim.scene.obstacles):
        if any(np.allclose(obstacle.position, d) for d in distractor_xy):
            continue  # a look-alike's footprint: drawn above
        m = _marker(Marker.CYLINDER, "obstacles", i, stamp, frame, (0.35, 0.3, 0.25, 0.8))
        m.pose.position.x, m.pose.position.y = (float(v) for v in obstacle.position)
        m.pose.position.z = OBSTACLE_HEIGHT / 2
        m.scale.x = m.scale.y = 2 * float(obstacle.radius)
        m.scale.z = OBSTACLE_HEIGHT
        markers.append(m)
    line = _marker(Marker.LINE_STRIP, "path", 0, stamp, frame, (0.1, 0.5, 1.0, 1.0))
    line.scale.x = 0.05
    line.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in list(path)[-PATH_POINTS:]]
    if len(line.points) >= 2:
        markers.append(line)
    return MarkerArray(markers=markers)


def draw(array: MarkerArray, ax: Any) -> None:
    """Draw a MarkerArray from above (x east, y north) on a matplotlib axis: cubes, cylinders, line strips."""
    from matplotlib.patches import Circle, Polygon

    for m in array.markers:
        if m.action != Marker.ADD:
            continue
        colour = (m.color.r, m.color.g, m.color.b, max(m.color.a, 0.2))
        x, y = m.pose.position.x, m.pose.position.y
        if m.type == Marker.CYLINDER:
            ax.add_patch(Circle((x, y), m.scale.x / 2, color=colour, zorder=2))
        elif m.type == Marker.CUBE:
            yaw = 2 * math.atan2(m.pose.orientation.z, m.pose.orientation.w)
            c, s, hx, hy = math.cos(yaw), math.sin(yaw), m.scale.x / 2, m.scale.y / 2
            corners = [(x + c * dx - s * dy, y + s * dx + c * dy) for dx, dy in
                       ((hx, hy), (-hx, hy), (-hx, -hy), (hx, -hy))]
            ax.add_patch(Polygon(corners, closed=True, color=colour, zorder=3))
        elif m.type == Marker.LINE_STRIP and m.points:
            ax.plot([p.x for p in m.points], [p.y for p in m.points], color=colour, linewidth=2, zorder=4)
    ax.set_aspect("equal")
