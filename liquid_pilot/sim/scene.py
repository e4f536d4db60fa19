"""Procedural scenes from simple shapes (fast to render): forests in five looks or a random one, an urban block.

The layout comes from the episode's random generator. Obstacles keep clear of the flight
corridors the task asks for, so every episode can be flown; the target is a red chair.
Scene bodies are visual only, in low-polygon meshes; collisions are checked against
``Solids`` (vertical cylinders and yawed boxes), which keeps physics steps cheap.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
import pybullet as pb

from liquid_pilot.sim.config import SceneConfig

# RGB in [0, 1] per scene look: ground, sky, trunk, canopy colours.
LOOKS = {
    "summer": dict(ground=(0.33, 0.52, 0.22), sky=(0.62, 0.78, 0.95), trunk=(0.36, 0.25, 0.15),
                   canopy=[(0.16, 0.45, 0.15), (0.22, 0.55, 0.18), (0.12, 0.38, 0.12)]),
    "autumn": dict(ground=(0.50, 0.38, 0.20), sky=(0.70, 0.75, 0.82), trunk=(0.33, 0.22, 0.13),
                   canopy=[(0.85, 0.55, 0.10), (0.78, 0.40, 0.08), (0.80, 0.68, 0.15)]),
    "winter": dict(ground=(0.90, 0.92, 0.95), sky=(0.80, 0.83, 0.88), trunk=(0.28, 0.22, 0.18),
                   canopy=[(0.82, 0.86, 0.88), (0.70, 0.75, 0.72), (0.88, 0.90, 0.93)]),
    # Held out for validation (sim/validation/): never trained on, never in the results table.
    "spring": dict(ground=(0.45, 0.62, 0.28), sky=(0.70, 0.82, 0.96), trunk=(0.40, 0.30, 0.20),
                   canopy=[(0.45, 0.70, 0.30), (0.92, 0.78, 0.84), (0.55, 0.78, 0.35)]),
    "dry": dict(ground=(0.62, 0.55, 0.35), sky=(0.78, 0.80, 0.78), trunk=(0.30, 0.24, 0.18),
                canopy=[(0.42, 0.45, 0.20), (0.55, 0.52, 0.25), (0.35, 0.38, 0.18)]),
    # Held out for the second validation set (sim/validation2/, issue 25 round 8). Ash: a burnt forest, its ground
    # and trunks darker than any random look's; frost: a frosted ground brighter than an overcast sky under dark
    # conifers; sunset: a warm orange sky, more saturated than any random look's, over a shaded forest.
    "ash": dict(ground=(0.20, 0.19, 0.18), sky=(0.70, 0.70, 0.68), trunk=(0.10, 0.09, 0.09),
                canopy=[(0.30, 0.28, 0.25), (0.22, 0.22, 0.20), (0.40, 0.36, 0.30)]),
    "frost": dict(ground=(0.85, 0.87, 0.90), sky=(0.66, 0.69, 0.74), trunk=(0.25, 0.22, 0.20),
                  canopy=[(0.15, 0.30, 0.20), (0.55, 0.62, 0.60), (0.20, 0.35, 0.25)]),
    "sunset": dict(ground=(0.38, 0.36, 0.20), sky=(0.95, 0.62, 0.42), trunk=(0.30, 0.20, 0.14),
                   canopy=[(0.20, 0.35, 0.12), (0.30, 0.40, 0.15), (0.18, 0.28, 0.10)]),
    "urban": dict(ground=(0.40, 0.40, 0.42), sky=(0.66, 0.74, 0.84), trunk=(0.25, 0.25, 0.27),
                  canopy=[(0.62, 0.60, 0.56), (0.72, 0.66, 0.55), (0.50, 0.55, 0.62), (0.78, 0.76, 0.70)]),
}
TARGET_RED = (0.85, 0.08, 0.08)
RANDOM_CANOPIES = 3  # canopy colours of a random look
DISTRACTOR_REDS = [(0.80, 0.12, 0.10), (0.90, 0.15, 0.18), (0.75, 0.05, 0.12)]
OCCLUDER = (0.30, 0.32, 0.30)
CHAIR_PARTS = [  # half extents, centre; the chair's open front faces +x of its frame
    ([0.22, 0.22, 0.03], [0.0, 0.0, 0.45]),  # seat
    ([0.03, 0.22, 0.22], [-0.20, 0.0, 0.70]),  # back rest
    *[([0.025, 0.025, 0.21], [0.18 * sx, 0.18 * sy, 0.21]) for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1))],
]
CHAIR_BOX = ([0.25, 0.25, 0.46], 0.46)  # collision: half extents, centre height


def random_look(rng: np.random.Generator) -> dict:
    """Draw a forest look for domain randomisation: ground, sky, trunk and canopy colours, none of them red.

    Hue is uniform; saturation and brightness are drawn per part within ranges wide enough to hold every named
    look (a snow-white ground, a grey sky, orange leaves) without naming any of them. A saturated red (hue within
    30 degrees of red, saturation above 0.4) is drawn again, so the chair and its look-alikes stay the only red
    things in view.
    """
    def colour(saturation: tuple[float, float], value: tuple[float, float]) -> tuple[float, float, float]:
        while True:
            hue, sat, val = rng.uniform(0, 1), rng.uniform(*saturation), rng.uniform(*value)
            if sat <= 0.4 or 30 / 360 < hue < 330 / 360:
                return tuple(float(c) for c in colorsys.hsv_to_rgb(hue, sat, val))

    return dict(ground=colour((0.0, 0.7), (0.25, 0.95)), sky=colour((0.0, 0.45), (0.55, 1.0)),
                trunk=colour((0.0, 0.6), (0.12, 0.5)),
                canopy=[colour((0.0, 0.9), (0.25, 0.95)) for _ in range(RANDOM_CANOPIES)])


def _icosahedron() -> tuple[list[list[float]], list[int]]:
    t = (1 + 5 ** 0.5) / 2
    v = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
                  [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], dtype=float)
    faces = [0, 11, 5, 0, 5, 1, 0, 1, 7, 0, 7, 10, 0, 10, 11, 1, 5, 9, 5, 11, 4, 11, 10, 2, 10, 7, 6, 7, 1, 8,
             3, 9, 4, 3, 4, 2, 3, 2, 6, 3, 6, 8, 3, 8, 9, 4, 9, 5, 2, 4, 11, 6, 2, 10, 8, 6, 7, 9, 8, 1]
    return (v / np.linalg.norm(v[0])).tolist(), faces


def _prism(sides: int = 6) -> tuple[list[list[float]], list[int]]:
    """Make a unit-radius, unit-height prism centred on the origin (a cheap cylinder)."""
    angles = np.arange(sides) * 2 * math.pi / sides
    ring = np.stack([np.cos(angles), np.sin(angles)], 1)
    vertices = np.concatenate([np.c_[ring, np.full(sides, -0.5)], np.c_[ring, np.full(sides, 0.5)]])
    faces = []
    for i in range(sides):
        j = (i + 1) % sides
        faces += [i, j, sides + j, i, sides + j, sides + i]
    for i in range(1, sides - 1):
        faces += [sides, sides + i, sides + i + 1, 0, i + 1, i]
    return vertices.tolist(), faces


SPHERE_MESH, PRISM_MESH = _icosahedron(), _prism()


class Solids:
    """Collision geometry outside PyBullet: vertical cylinders and yawed boxes."""

    def __init__(self) -> None:
        self.cylinders: list[list[float]] = []  # x, y, radius, top
        self.boxes: list[list[float]] = []  # x, y, z, half x, half y, half z, yaw
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def add_cylinder(self, x: float, y: float, radius: float, top: float) -> None:
        self.cylinders.append([x, y, radius, top])
        self._arrays = None

    def add_box(self, centre: list[float], half: list[float], yaw: float) -> int:
        self.boxes.append([*centre, *half, yaw])
        self._arrays = None
        return len(self.boxes) - 1

    def move_box(self, index: int, x: float, y: float, yaw: float) -> None:
        self.boxes[index][0], self.boxes[index][1], self.boxes[index][6] = x, y, yaw
        self._arrays = None

    def hits(self, point: np.ndarray, radius: float) -> bool:
        """Whether a sphere at ``point`` touches any solid or the ground."""
        if point[2] < radius:
            return True
        if self._arrays is None:
            self._arrays = (np.array(self.cylinders).reshape(-1, 4), np.array(self.boxes).reshape(-1, 7))
        cylinders, boxes = self._arrays
        if len(cylinders):
            near = np.hypot(cylinders[:, 0] - point[0], cylinders[:, 1] - point[1]) < cylinders[:, 2] + radius
            if np.any(near & (point[2] < cylinders[:, 3] + radius)):
                return True
        if len(boxes):
            dx, dy = point[0] - boxes[:, 0], point[1] - boxes[:, 1]
            c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
            local = np.abs(np.stack([c * dx + s * dy, -s * dx + c * dy, point[2] - boxes[:, 2]], 1))
            gap = np.maximum(local - boxes[:, 3:6], 0.0)
            if np.any(np.einsum("ij,ij->i", gap, gap) < radius ** 2):
                return True
        return False


@dataclass
class Obstacle:
    """A solid in the scene (a tree or a building) as a vertical cylinder for collisions and avoidance."""

    position: np.ndarray  # (x, y) of the footprint centre
    radius: float  # footprint radius, for the expert's avoidance and for layout clearance


def _rgba(rgb: tuple[float, float, float]) -> list[float]:
    return [*rgb, 1.0]


def _segment_distance(point: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip((point - a) @ ab / max(ab @ ab, 1e-9), 0.0, 1.0))
    return float(np.linalg.norm(point - (a + t * ab)))


class Scene:
    """The world of one episode: ground, sky colour, obstacles, chairs, distractors, occluders."""

    def __init__(self, client: int, config: SceneConfig, rng: np.random.Generator,
                 corridors: list[tuple[np.ndarray, np.ndarray]], clearance: float = 1.4):
        self.client, self.config = client, config
        if config.kind == "forest" and config.season == "random":  # its own stream: the layout's draws stay whole
            self.look = random_look(np.random.default_rng(int(rng.integers(2**63))))
        else:
            self.look = LOOKS["urban" if config.kind == "urban" else config.season]
        self.sky = np.array(self.look["sky"])
        self.obstacles: list[Obstacle] = []
        self.distractors: list[np.ndarray] = []  # (x, y, z) centres
        self.solids = Solids()
        self._obstacle_arrays: tuple[np.ndarray, np.ndarray] | None = None
        self.corridors, self.clearance = corridors, clearance
        side = config.radius + 6.0
        self._box([side, side, 0.05], [0, 0, -0.05], self.look["ground"])
        (self._forest if config.kind == "forest" else self._urban)(rng)

    # Visual-only bodies ------------------------------------------------------------------
    def _body(self, visual: int, position: list[float], yaw: float = 0.0) -> int:
        return pb.createMultiBody(0, -1, visual, position, pb.getQuaternionFromEuler([0, 0, yaw]),
                                  physicsClientId=self.client)

    def _box(self, half: list[float], position: list[float], rgb: tuple, yaw: float = 0.0) -> int:
        visual = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half, rgbaColor=_rgba(rgb), physicsClientId=self.client)
        return self._body(visual, position, yaw)

    def _mesh(self, mesh: tuple, scale: list[float], position: list[float], rgb: tuple) -> int:
        visual = pb.createVisualShape(pb.GEOM_MESH, vertices=mesh[0], indices=mesh[1], meshScale=scale,
                                      rgbaColor=_rgba(rgb), physicsClientId=self.client)
        return self._body(visual, position)

    def _post(self, xy: np.ndarray, radius: float, height: float, rgb: tuple) -> None:
        """Stand a vertical cylinder on the ground (trunk, lamp post, drum)."""
        self._mesh(PRISM_MESH, [radius, radius, height], [xy[0], xy[1], height / 2], rgb)
        self.solids.add_cylinder(float(xy[0]), float(xy[1]), radius, height)

    def _solid_box(self, half: list[float], centre: list[float], rgb: tuple, yaw: float) -> None:
        self._box(half, centre, rgb, yaw)
        self.solids.add_box(centre, half, yaw)

    def add_chair(self, xy: np.ndarray, yaw: float, rgb: tuple = TARGET_RED) -> tuple[int, int]:
        """Add a chair of six boxes; return its body and its collision box index."""
        parts = CHAIR_PARTS
        visual = pb.createVisualShapeArray([pb.GEOM_BOX] * len(parts), halfExtents=[p[0] for p in parts],
                                           visualFramePositions=[p[1] for p in parts],
                                           rgbaColors=[_rgba(rgb)] * len(parts), physicsClientId=self.client)
        body = self._body(visual, [float(xy[0]), float(xy[1]), 0.0], yaw)
        half, z = CHAIR_BOX
        return body, self.solids.add_box([float(xy[0]), float(xy[1]), z], half, yaw)

    def move_chair(self, chair: tuple[int, int], xy: np.ndarray, yaw: float) -> None:
        pb.resetBasePositionAndOrientation(chair[0], [float(xy[0]), float(xy[1]), 0.0],
                                           pb.getQuaternionFromEuler([0, 0, yaw]), physicsClientId=self.client)
        self.solids.move_box(chair[1], float(xy[0]), float(xy[1]), yaw)

    def obstacle_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Obstacle footprint centres (N, 2) and radii (N,), built once per scene."""
        if self._obstacle_arrays is None or len(self._obstacle_arrays[1]) != len(self.obstacles):
            self._obstacle_arrays = (np.array([o.position for o in self.obstacles]).reshape(-1, 2),
                                     np.array([o.radius for o in self.obstacles]))
        return self._obstacle_arrays

    # Layout ------------------------------------------------------------------------------
    def _free(self, xy: np.ndarray, radius: float, margin: float = 0.0) -> bool:
        if np.linalg.norm(xy) > self.config.radius - radius:
            return False
        if any(_segment_distance(xy, a, b) < radius + self.clearance + margin for a, b in self.corridors):
            return False
        return all(np.linalg.norm(xy - o.position) > radius + o.radius + 0.3 for o in self.obstacles)

    def _spot(self, rng: np.random.Generator, radius: float, margin: float = 0.0) -> np.ndarray | None:
        for _ in range(60):
            xy = rng.uniform(-self.config.radius, self.config.radius, 2)
            if self._free(xy, radius, margin):
                return xy
        return None

    def _forest(self, rng: np.random.Generator) -> None:
        look = self.look
        for _ in range(self.config.obstacles):
            trunk = rng.uniform(0.08, 0.16)
            xy = self._spot(rng, trunk)
            if xy is None:
                continue
            height = rng.uniform(2.2, 3.2)
            self._post(xy, trunk, height, look["trunk"])
            crown = rng.uniform(0.7, 1.1)
            colour = look["canopy"][rng.integers(len(look["canopy"]))]
            self._mesh(SPHERE_MESH, [crown] * 3, [xy[0], xy[1], height + crown * 0.6], colour)
            self.obstacles.append(Obstacle(xy, trunk))

    def _urban(self, rng: np.random.Generator) -> None:
        look = self.look
        for i in range(self.config.obstacles):
            if i % 3 == 2:  # lamp posts between the buildings
                xy = self._spot(rng, 0.1)
                if xy is not None:
                    self._post(xy, 0.06, 2.8, look["trunk"])
                    self.obstacles.append(Obstacle(xy, 0.06))
                continue
            half = rng.uniform([0.6, 0.6, 1.5], [2.0, 2.0, 5.0])
            radius = float(np.hypot(half[0], half[1]))
            xy = self._spot(rng, radius)
            if xy is None:
                continue
            colour = look["canopy"][rng.integers(len(look["canopy"]))]
            self._solid_box(half.tolist(), [xy[0], xy[1], half[2]], colour, float(rng.uniform(0, math.pi)))
            self.obstacles.append(Obstacle(xy, radius))

    def add_distractors(self, rng: np.random.Generator, count: int, keep_away: float) -> None:
        """Red look-alikes (box, drum, a second chair) off the flight corridors."""
        for i in range(count):
            xy = self._spot(rng, 0.4, margin=keep_away)
            if xy is None:
                continue
            colour = DISTRACTOR_REDS[i % len(DISTRACTOR_REDS)]
            yaw = float(rng.uniform(-math.pi, math.pi))
            if i % 3 == 0:
                self._solid_box([0.25, 0.25, 0.4], [xy[0], xy[1], 0.4], colour, yaw)
            elif i % 3 == 1:
                self._post(xy, 0.25, 0.9, colour)
            else:
                self.add_chair(xy, yaw, colour)
            self.distractors.append(np.array([xy[0], xy[1], 0.45]))
            self.obstacles.append(Obstacle(xy, 0.4))

    def add_occluder(self, target: np.ndarray, viewer: np.ndarray, share: float) -> None:
        """Stand a grey panel 0.55 m before the target, hiding ``share`` of its width from ``viewer``.

        It is no avoidance obstacle: it stands inside the stand-off distance, off the flight path.
        """
        if share <= 0:
            return
        offset = viewer - target
        distance = float(np.linalg.norm(offset))
        direction = offset / distance
        lateral = np.array([-direction[1], direction[0]])
        scale = (distance - 0.55) / distance  # the panel is nearer the viewer than the chair
        left, right = -0.25 * scale - 0.05, (-0.25 + 0.5 * share) * scale  # the chair spans +-0.25 m
        centre = target + direction * 0.55 + lateral * (left + right) / 2
        self._solid_box([(right - left) / 2, 0.03, 0.55], [centre[0], centre[1], 0.55], OCCLUDER,
                        math.atan2(lateral[1], lateral[0]))
