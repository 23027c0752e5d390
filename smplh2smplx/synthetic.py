"""Synthetic stand-ins for the licensed inputs: body models, deformation transfer, AMASS, annotations.

SMPL-H, SMPL-X, AMASS and the PoseScript/PoseFix annotations cannot be shipped, so tests,
the demo and the benchmarks run on files written here in exactly the official formats,
with the real vertex, face and joint counts and blend-shape sizes:

- one designed human body (T-pose, y up, facing +z, metres, ~1.72 m) as a signed distance
  field: a smooth union of ellipsoids, rounded cones and rounded boxes along a SMPL-like
  skeleton, with separate fingers. Each model's surface is that field's zero level set
  (marching cubes in a narrow band), decimated (quadric error) and then refined by longest
  edge splits to exactly 6890 (SMPL-H, closed, genus 0) or 9383 vertices (the SMPL-X body,
  denser on the face and hands, with a small mouth opening), plus two eyeballs for SMPL-X;
- SMPL-X differs from SMPL-H as the real models do: a little taller and thinner, smooth
  surface bumps outside its shape space, joints moved by a few millimetres, its own
  skinning weights and pose correctives. Fitting SMPL-X to a transferred SMPL-H mesh
  therefore leaves a few millimetres of error, as with the real models;
- skinning weights from each joint's own body parts (distance to its primitives, softened,
  then smoothed over the mesh); joint regressors as convex combinations of the surface
  vertices around each joint; height, girth and smooth random shape directions; face-only
  expression directions; small local pose correctives;
- the deformation transfer as barycentric weights of the nearest SMPL-H triangle;
- AMASS sequences of smooth sinusoidal motions and annotation files pointing into them.

Everything is a deterministic function of the seed.
"""
import heapq
import json
import pickle
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse
import scipy.spatial

from .formats.files import atomic_write

# ----------------------------------------------------------------------------- skeleton

BODY_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]
FINGERS = ("index", "middle", "pinky", "ring", "thumb")
SMPLX_JAW, SMPLX_LEFT_EYE, SMPLX_RIGHT_EYE = 22, 23, 24
SMPLX_HAND_START = {"left": 25, "right": 40}     # SMPL-H: 22 and 37
SMPLH_FROM_SMPLX = np.r_[0:22, 25:55]            # SMPL-H joint i is SMPL-X joint [i]
LEFT, RIGHT = "left", "right"
SIDES = {LEFT: 1.0, RIGHT: -1.0}                  # sign of x


def smplx_parents():
    """(55,) parent of each SMPL-X joint: body, jaw and eyes from the head, then hands."""
    parents = list(BODY_PARENTS) + [15, 15, 15]
    for wrist in (20, 21):
        for finger in range(5):
            first = len(parents)
            parents += [wrist, first, first + 1]
    return np.array(parents, dtype=np.int64)


def smplh_parents():
    """(52,) parent of each SMPL-H joint."""
    parents = smplx_parents()[SMPLH_FROM_SMPLX]
    remap = np.full(55, -1)
    remap[SMPLH_FROM_SMPLX] = np.arange(52)
    return np.where(parents < 0, -1, remap[np.maximum(parents, 0)])


def finger_joint(side, finger, segment):
    """SMPL-X joint id of a finger's segment-th joint (0: knuckle) on one side."""
    return SMPLX_HAND_START[side] + 3 * FINGERS.index(finger) + segment


# Left body joints (x > 0) of the SMPL rest pose; right ones are mirrored. Metres.
_BODY_JOINTS = {
    0: (0.0, -0.225, 0.020), 1: (0.068, -0.318, 0.012), 3: (0.0, -0.112, -0.010),
    4: (0.106, -0.690, 0.008), 6: (0.0, 0.022, -0.006), 7: (0.090, -1.085, -0.035),
    9: (0.0, 0.072, 0.008), 10: (0.115, -1.145, 0.085), 12: (0.0, 0.285, -0.020),
    13: (0.078, 0.192, -0.012), 15: (0.0, 0.358, 0.028), 16: (0.172, 0.222, -0.022),
    18: (0.430, 0.212, -0.040), 20: (0.680, 0.218, -0.042),
    SMPLX_JAW: (0.0, 0.402, 0.006), SMPLX_LEFT_EYE: (0.031, 0.455, 0.082),
}
_MIRRORED = {2: 1, 5: 4, 8: 7, 11: 10, 14: 13, 17: 16, 19: 18, 21: 20,
             SMPLX_RIGHT_EYE: SMPLX_LEFT_EYE}

# Left hand, from the wrist (x along the fingers, y up = back of the hand, z forward =
# thumb side): knuckle offset, spread angle in degrees (towards +z), the three segment
# lengths, and the radii at the three joints and at the tip.
_FINGER_DESIGN = {
    "index": ((0.090, 0.000, 0.027), 10.0, (0.040, 0.024, 0.020),
              (0.0096, 0.0087, 0.0079, 0.0070)),
    "middle": ((0.094, 0.000, 0.005), 3.0, (0.044, 0.028, 0.021),
               (0.0098, 0.0089, 0.0081, 0.0071)),
    "pinky": ((0.080, -0.002, -0.034), -15.0, (0.032, 0.019, 0.018),
              (0.0082, 0.0075, 0.0069, 0.0061)),
    "ring": ((0.089, 0.000, -0.015), -5.5, (0.041, 0.026, 0.020),
             (0.0092, 0.0084, 0.0077, 0.0067)),
}
# The thumb points forward and a little down: joint offsets from the previous point.
_THUMB_DESIGN = {"base": (0.024, -0.011, 0.022),
                 "segments": ((0.036, -0.012, 0.030), (0.026, -0.006, 0.020),
                              (0.021, -0.003, 0.014)),
                 "radii": (0.0135, 0.0110, 0.0098, 0.0086)}


@dataclass(frozen=True)
class Skeleton:
    """Designed joint centres in the rest pose (SMPL-X order) and the fingertips.

    joints: (55, 3); tips: {side: (5, 3)} end points of each finger in FINGERS order.
    """
    joints: np.ndarray
    tips: dict

    def smplh_joints(self):
        return self.joints[SMPLH_FROM_SMPLX]


def design_skeleton():
    """The SMPL-like skeleton every synthetic body is built around."""
    joints = np.zeros((55, 3))
    for joint, position in _BODY_JOINTS.items():
        joints[joint] = position
    for joint, source in _MIRRORED.items():
        joints[joint] = joints[source] * (-1.0, 1.0, 1.0)
    tips = {}
    for side, sign in SIDES.items():
        wrist = joints[20 if side == LEFT else 21]
        side_tips = []
        for finger in FINGERS:
            points = _finger_points(finger)
            for segment in range(3):
                joints[finger_joint(side, finger, segment)] = wrist + points[segment] * (
                    sign, 1.0, 1.0)
            side_tips.append(wrist + points[3] * (sign, 1.0, 1.0))
        tips[side] = np.array(side_tips)
    return Skeleton(joints=joints, tips=tips)


def _finger_points(finger):
    """(4, 3) left-hand joint positions and tip of a finger, relative to the wrist."""
    if finger == "thumb":
        points = [np.array(_THUMB_DESIGN["base"])]
        for step in _THUMB_DESIGN["segments"]:
            points.append(points[-1] + step)
        return np.array(points)
    knuckle, spread, lengths, _ = _FINGER_DESIGN[finger]
    angle = np.radians(spread)
    direction = np.array([np.cos(angle), 0.0, np.sin(angle)])
    offsets = np.cumsum([0.0, *lengths])
    return np.asarray(knuckle) + offsets[:, None] * direction


def _finger_radii(finger):
    return _THUMB_DESIGN["radii"] if finger == "thumb" else _FINGER_DESIGN[finger][3]


# ----------------------------------------------------------------------------- shapes

_FAR = 1.0  # value of a part's field far outside its bounding box (metres)


def _ellipsoid(points, center, radii):
    """Approximate signed distance to an axis-aligned ellipsoid (exact on the surface)."""
    scaled = (points - center) / radii
    k0 = np.linalg.norm(scaled, axis=1)
    k1 = np.linalg.norm(scaled / radii, axis=1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)


def _round_cone(points, start, end, start_radius, end_radius):
    """Exact signed distance to a cone with spherical caps (a tapered capsule)."""
    axis = end - start
    length2 = axis @ axis
    rr = start_radius - end_radius
    a2 = length2 - rr * rr
    rel = points - start
    y = rel @ axis
    z = y - length2
    x2 = np.sum((rel * length2 - y[:, None] * axis) ** 2, axis=1)
    y2 = y * y * length2
    z2 = z * z * length2
    k = np.sign(rr) * rr * rr * x2
    near_end = np.sign(z) * a2 * z2 > k
    near_start = np.sign(y) * a2 * y2 < k
    side = (np.sqrt(np.maximum(x2 * a2 / length2, 0.0)) + y * rr) / length2 - start_radius
    return np.where(near_end, np.sqrt(x2 + z2) / length2 - end_radius,
                    np.where(near_start, np.sqrt(x2 + y2) / length2 - start_radius, side))


def _round_box(points, center, half_size, rounding):
    """Exact signed distance to an axis-aligned box with rounded edges."""
    q = np.abs(points - center) - (np.asarray(half_size) - rounding)
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
    return outside + np.minimum(q.max(axis=1), 0.0) - rounding


def _smooth_min(a, b, k):
    """Polynomial smooth minimum: equals min(a, b) where |a - b| >= k."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


@dataclass(frozen=True)
class Primitive:
    """One solid of the body: its field, the joint whose part it is, its bounding box."""
    kind: str
    params: tuple
    owner: int
    low: np.ndarray
    high: np.ndarray

    def distance(self, points):
        return {"ellipsoid": _ellipsoid, "cone": _round_cone,
                "box": _round_box}[self.kind](points, *self.params)


def ellipsoid(center, radii, owner):
    center, radii = np.asarray(center, float), np.asarray(radii, float)
    return Primitive("ellipsoid", (center, radii), owner, center - radii, center + radii)


def cone(start, end, start_radius, end_radius, owner):
    start, end = np.asarray(start, float), np.asarray(end, float)
    radius = max(start_radius, end_radius)
    return Primitive("cone", (start, end, start_radius, end_radius), owner,
                     np.minimum(start, end) - radius, np.maximum(start, end) + radius)


def box(center, half_size, rounding, owner):
    center, half_size = np.asarray(center, float), np.asarray(half_size, float)
    return Primitive("box", (center, half_size, rounding), owner, center - half_size,
                     center + half_size)


@dataclass(frozen=True)
class Blend:
    """A node of the body's construction tree.

    mode "smooth": children[0] smoothly united with each next child in turn, with that
    child's blend width; "each": the first child smoothly united with every other child
    separately, then the results united sharply (fingers blend into the palm, not into
    each other); "carve": the other children smoothly cut out of the first (eye sockets).
    """
    mode: str
    children: tuple          # of (Primitive | Blend, blend width in metres)

    @cached_property
    def bounds(self):
        lows, highs = zip(*(_bounds(child) for child, _ in self.children))
        margin = max(width for _, width in self.children)
        return np.min(lows, axis=0) - margin, np.max(highs, axis=0) + margin


def _bounds(node):
    return (node.low, node.high) if isinstance(node, Primitive) else node.bounds


def _evaluate(node, points, box, pad=0.0):
    """Field of a construction-tree node at (N, 3) points lying in `box` (low, high).

    Returns None when every point lies outside the node's bounding box grown by `pad`
    (the width with which the node is blended into its parent, plus a safety margin):
    the node is then too far from all of them to change any union and counts as
    +infinity. Points outside that box among others inside get _FAR.
    """
    node_low, node_high = _bounds(node)
    node_low, node_high = node_low - pad, node_high + pad
    box_low, box_high = box
    if np.any(node_low >= box_high) or np.any(node_high <= box_low):
        return None
    inside = None
    for axis in range(3):
        if node_low[axis] > box_low[axis]:
            above = points[:, axis] > node_low[axis]
            inside = above if inside is None else inside & above
        if node_high[axis] < box_high[axis]:
            below = points[:, axis] < node_high[axis]
            inside = below if inside is None else inside & below
    if inside is not None:
        if not inside.any():
            return None
        points = points[inside]
        box = (np.maximum(box_low, node_low), np.minimum(box_high, node_high))
    if isinstance(node, Primitive):
        result = node.distance(points)
    else:
        child_pad = max(width for _, width in node.children) + 0.005
        fields = [_evaluate(child, points, box, child_pad) for child, _ in node.children]
        widths = [width for _, width in node.children]
        if node.mode == "carve" and fields[0] is None:
            fields = [None]
        if node.mode == "each":
            base = fields[0]
            fields = [base] + [None if field is None else
                               field if base is None else _smooth_min(base, field, width)
                               for field, width in zip(fields[1:], widths[1:])]
        result = None
        for field, width in zip(fields, widths):
            if field is None:
                continue
            if result is None:
                result = field
            elif node.mode == "smooth":
                result = _smooth_min(result, field, width)
            elif node.mode == "carve":
                result = -_smooth_min(-result, field, width)
            else:
                result = np.minimum(result, field)
    if inside is None or result is None:
        return result
    values = np.full(len(inside), _FAR)
    values[inside] = result
    return values


def _leaves(node):
    if isinstance(node, Primitive):
        return [node]
    return [leaf for child, _ in node.children for leaf in _leaves(child)]


class BodyField:
    """The signed distance field of a designed body (negative inside, metres)."""

    def __init__(self, tree):
        self.tree = tree
        self.primitives = _leaves(tree)
        self.low, self.high = tree.bounds

    def __call__(self, points, chunk=0.1):
        """Field values at (N, 3) points.

        Many points (a grid) are evaluated in spatial chunks of `chunk` metres, so that
        each chunk only meets the few primitives near it; a few (mesh vertices) at once.
        """
        points = np.asarray(points, float)
        if len(points) < 200_000:
            box = (points.min(axis=0), points.max(axis=0))
            result = _evaluate(self.tree, points, box)
            return np.full(len(points), _FAR) if result is None else result
        cells = np.floor((points - self.low) / chunk).astype(np.int64)
        keys = (cells[:, 0] * 4096 + cells[:, 1]) * 4096 + cells[:, 2]
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        values = np.full(len(points), _FAR)
        for begin, end in zip(starts, [*starts[1:], len(points)]):
            ids = order[begin:end]
            low = self.low + chunk * cells[ids[0]]
            result = _evaluate(self.tree, points[ids], (low, low + chunk))
            if result is not None:
                values[ids] = result
        return values

    def value_and_gradient(self, points, step=1e-5):
        """Field values (N,) and central-difference gradients (N, 3), in one evaluation."""
        offsets = np.concatenate([np.zeros((1, 3)), np.eye(3) * step, -np.eye(3) * step])
        values = self((points[None] + offsets[:, None]).reshape(-1, 3)).reshape(7, -1)
        return values[0], (values[1:4] - values[4:7]).T / (2 * step)

    def project(self, points, iterations=3):
        """Points moved onto the zero level set along the field's gradient."""
        points = np.array(points, float)
        for _ in range(iterations):
            value, gradient = self.value_and_gradient(points)
            scale = value / np.maximum(np.sum(gradient ** 2, axis=1), 1e-12)
            points -= scale[:, None] * gradient
        return points

    def part_distances(self, points, num_joints=55):
        """(N, num_joints) distance of each point to the nearest primitive of each joint."""
        points = np.asarray(points, float)
        result = np.full((len(points), num_joints), _FAR)
        for primitive in self.primitives:
            result[:, primitive.owner] = np.minimum(result[:, primitive.owner],
                                                    primitive.distance(points))
        return result


def body_tree(skeleton, jaw_owner=15):
    """The construction tree of the body around a skeleton (SMPL-X joint numbering).

    jaw_owner: joint owning the chin and lower jaw (SMPL-H: the head, SMPL-X: the jaw).
    """
    j = skeleton.joints
    torso = Blend("smooth", (
        (ellipsoid((0, -0.228, 0.0), (0.160, 0.088, 0.105), 0), 0.0),
        *[(ellipsoid((s * 0.068, -0.295, -0.050), (0.075, 0.085, 0.070), 0), 0.03)
          for s in (1, -1)],
        (ellipsoid((0, -0.095, 0.020), (0.135, 0.120, 0.100), 3), 0.05),
        (ellipsoid((0, 0.030, 0.005), (0.138, 0.100, 0.096), 6), 0.05),
        (ellipsoid((0, 0.140, -0.006), (0.150, 0.118, 0.098), 9), 0.05),
        *[(ellipsoid((s * 0.068, 0.135, 0.058), (0.072, 0.060, 0.045), 9), 0.03)
          for s in (1, -1)],
        *[(cone((s * 0.050, 0.205, -0.026), j[16] * (s, 1, 1), 0.060, 0.050, 13 if s > 0 else 14),
           0.04) for s in (1, -1)],
        *[(cone((0, 0.272, -0.034), (s * 0.135, 0.232, -0.030), 0.048, 0.042,
                13 if s > 0 else 14), 0.04) for s in (1, -1)],
    ))
    head = Blend("smooth", (
        (cone((0, 0.240, -0.020), (0, 0.400, -0.006), 0.057, 0.050, 12), 0.0),
        (ellipsoid((0, 0.465, 0.004), (0.074, 0.088, 0.098), 15), 0.03),
        (ellipsoid((0, 0.414, 0.030), (0.061, 0.070, 0.071), 15), 0.03),
        (ellipsoid((0, 0.373, 0.046), (0.050, 0.037, 0.054), jaw_owner), 0.02),
        (ellipsoid((0, 0.479, 0.070), (0.056, 0.016, 0.030), 15), 0.015),
        *[(ellipsoid((s * 0.043, 0.430, 0.064), (0.026, 0.020, 0.026), 15), 0.015)
          for s in (1, -1)],
        (ellipsoid((0, 0.391, 0.092), (0.025, 0.011, 0.013), jaw_owner), 0.008),
        (cone((0, 0.462, 0.093), (0, 0.424, 0.112), 0.007, 0.011, 15), 0.010),
        (ellipsoid((0, 0.424, 0.106), (0.017, 0.009, 0.011), 15), 0.006),
        *[(ellipsoid((s * 0.076, 0.445, 0.000), (0.012, 0.030, 0.018), 15), 0.006)
          for s in (1, -1)],
    ))
    head = Blend("carve", ((head, 0.0), *[
        (ellipsoid(j[eye] + (0, 0.001, 0.017), (0.017, 0.010, 0.010), 15), 0.008)
        for eye in (SMPLX_LEFT_EYE, SMPLX_RIGHT_EYE)]))
    parts = [(torso, 0.0), (head, 0.03)]
    for side, sign in SIDES.items():
        left = side == LEFT
        shoulder, elbow, wrist = (j[k if left else k + 1] for k in (16, 18, 20))
        hip, knee, ankle, foot = (j[k if left else k + 1] for k in (1, 4, 7, 10))
        flip = np.array([sign, 1.0, 1.0])
        arm = Blend("smooth", (
            (ellipsoid(shoulder + flip * (0.012, 0.0, 0.0), (0.064, 0.058, 0.060),
                       16 if left else 17), 0.0),
            (cone(shoulder, elbow, 0.052, 0.040, 16 if left else 17), 0.03),
            (cone(elbow, wrist, 0.040, 0.027, 18 if left else 19), 0.02),
            (ellipsoid(elbow + 0.3 * (wrist - elbow), (0.075, 0.038, 0.044),
                       18 if left else 19), 0.03),
            (ellipsoid(wrist, (0.022, 0.018, 0.027), 20 if left else 21), 0.015),
        ))
        leg = Blend("smooth", (
            (cone(hip + flip * (0.006, 0.01, 0.0), knee, 0.082, 0.056, 1 if left else 2), 0.0),
            (cone(knee, ankle, 0.054, 0.031, 4 if left else 5), 0.03),
            (ellipsoid(flip * (0.098, -0.800, -0.025), (0.048, 0.100, 0.048),
                       4 if left else 5), 0.03),
            (ellipsoid(flip * (0.090, -1.135, -0.032), (0.032, 0.030, 0.040),
                       7 if left else 8), 0.02),
            (ellipsoid(flip * (0.102, -1.134, 0.030), (0.041, 0.031, 0.075),
                       7 if left else 8), 0.02),
            (ellipsoid(flip * (0.113, -1.150, 0.122), (0.045, 0.018, 0.050),
                       10 if left else 11), 0.015),
        ))
        palm = Blend("smooth", (
            (box(wrist + flip * (0.047, -0.003, -0.002), (0.042, 0.012, 0.039), 0.012,
                 20 if left else 21), 0.0),
            (ellipsoid(wrist + flip * (0.048, 0.002, -0.002), (0.046, 0.012, 0.036),
                       20 if left else 21), 0.010),
            (ellipsoid(wrist + flip * (0.036, -0.010, 0.020), (0.030, 0.014, 0.020),
                       finger_joint(side, "thumb", 0)), 0.012),
        ))
        fingers = []
        for finger in FINGERS:
            ids = [finger_joint(side, finger, s) for s in range(3)]
            points = [*j[ids], skeleton.tips[side][FINGERS.index(finger)]]
            radii = _finger_radii(finger)
            segments = [(cone(points[s], points[s + 1], radii[s], radii[s + 1], ids[s]),
                         0.0 if s == 0 else 0.003) for s in range(3)]
            fingers.append((Blend("smooth", tuple(segments)), 0.007))
        hand = Blend("each", ((palm, 0.0), *fingers))
        parts += [(arm, 0.03), (leg, 0.028), (hand, 0.012)]
    return Blend("smooth", tuple(parts))


# ----------------------------------------------------------------------------- meshing

def sample_field(field, voxel, coarse_factor=4):
    """The field on a regular grid, exact only near its zero level set.

    A coarse grid (voxel * coarse_factor) finds the cells the surface may cross; the
    fine grid is evaluated in those cells only and elsewhere carries the sign of the
    coarse cell's corners (all equal there), which is all marching cubes needs away from
    the surface.
    Returns (values (nx, ny, nz) float32, origin (3,)).
    """
    step = voxel * coarse_factor
    origin = field.low - step
    coarse_shape = np.ceil((field.high + step - origin) / step).astype(int) + 1
    axes = [origin[d] + step * np.arange(coarse_shape[d]) for d in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    coarse = field(grid).reshape(coarse_shape)
    corners = np.stack([coarse[a:a + coarse_shape[0] - 1, b:b + coarse_shape[1] - 1,
                               c:c + coarse_shape[2] - 1]
                        for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    band = 1.2 * step * np.sqrt(3.0)   # the field changes by at most ~1 per metre
    active = (np.abs(corners).min(axis=0) < band) | (
        (corners.min(axis=0) < 0) & (corners.max(axis=0) > 0))
    # Crop to the cells near the surface (plus one), to keep the fine grid small.
    used = np.nonzero(active)
    first = np.array([max(u.min() - 1, 0) for u in used])
    last = np.array([min(u.max() + 2, n - 1) for u, n in zip(used, active.shape)])
    active = active[first[0]:last[0], first[1]:last[1], first[2]:last[2]]
    signs = np.sign(coarse[first[0]:last[0], first[1]:last[1], first[2]:last[2]])
    origin = origin + step * first

    fine_shape = np.array(active.shape) * coarse_factor + 1
    values = signs.astype(np.float32)
    touched = active
    for axis in range(3):
        values = np.repeat(values, coarse_factor, axis=axis)
        touched = np.repeat(touched, coarse_factor, axis=axis)
    values = np.pad(values, [(0, 1)] * 3, mode="edge")
    # A fine point needs its exact value when any fine cell around it lies in an active
    # coarse cell: dilate the cell mask by one point along each axis in turn.
    touched = np.pad(touched, [(0, 1)] * 3)
    for axis in range(3):
        shifted = np.roll(touched, 1, axis=axis)
        touched |= shifted
    ids = np.nonzero(touched)
    values[ids] = field(origin + voxel * np.stack(ids, axis=1))
    assert values.shape == tuple(fine_shape)
    return values, origin


def marching_cubes_surface(field, voxel):
    """Closed triangle mesh (vertices, faces) of the field's zero level set, outward faces."""
    import mcubes
    values, origin = sample_field(field, voxel)
    vertices, faces = mcubes.marching_cubes(values, 0.0)
    vertices = origin + voxel * vertices
    faces = faces.astype(np.int64)
    if _signed_volume(vertices, faces) < 0:
        faces = faces[:, ::-1]
    return vertices, faces


def _signed_volume(vertices, faces):
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    return np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0


def edge_face_counts(faces):
    """(E, 2) undirected edges and how many faces hold each."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    return np.unique(edges, axis=0, return_counts=True)


def is_closed_manifold(vertices, faces):
    """True when every edge has two faces, directed edges are unique, no vertex is unused."""
    _, counts = edge_face_counts(faces)
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    unique_directed = np.unique(directed, axis=0).shape[0] == directed.shape[0]
    used = np.unique(faces).size == len(vertices)
    return bool(np.all(counts == 2) and unique_directed and used)


def decimate(vertices, faces, num_faces):
    """Quadric-error decimation to `num_faces` faces, keeping a closed manifold.

    The decimation library occasionally glues two sheets along an edge; other
    aggressiveness settings then give a clean result.
    """
    import fast_simplification
    for aggressiveness in (3, 2, 4, 5, 6):
        result = fast_simplification.simplify(vertices.astype(np.float64),
                                              faces.astype(np.int64),
                                              target_count=num_faces, agg=aggressiveness)
        if is_closed_manifold(*result):
            return result[0].astype(np.float64), result[1].astype(np.int64)
    raise RuntimeError("quadric decimation gave no closed manifold mesh")


class _EditableMesh:
    """A closed triangle mesh under edge splits and flips (orientation kept)."""

    def __init__(self, vertices, faces):
        self.vertices = [tuple(v) for v in vertices]
        self.faces = [list(f) for f in faces]
        self.edge_faces = {}
        for index, face in enumerate(self.faces):
            self._attach(index, face)

    def _attach(self, index, face):
        for k in range(3):
            key = _edge_key(face[k], face[(k + 1) % 3])
            self.edge_faces.setdefault(key, []).append(index)

    def _detach(self, index, face):
        for k in range(3):
            key = _edge_key(face[k], face[(k + 1) % 3])
            owners = self.edge_faces[key]
            owners.remove(index)
            if not owners:
                del self.edge_faces[key]

    def _replace(self, index, face):
        self._detach(index, self.faces[index])
        self.faces[index] = face
        self._attach(index, face)

    def _add(self, face):
        self.faces.append(face)
        self._attach(len(self.faces) - 1, face)

    def wings(self, a, b):
        """Faces (a, b, c) and (b, a, d) around edge a-b, as (c, d, face ids)."""
        first, second = self.edge_faces[_edge_key(a, b)]
        if _directed_third(self.faces[first], a, b) is None:
            first, second = second, first
        return (_directed_third(self.faces[first], a, b),
                _directed_third(self.faces[second], b, a), first, second)

    def split(self, a, b, position):
        """Insert a vertex on edge a-b; returns its id."""
        c, d, first, second = self.wings(a, b)
        m = len(self.vertices)
        self.vertices.append(tuple(position))
        self._replace(first, [a, m, c])
        self._replace(second, [b, m, d])
        self._add([m, b, c])
        self._add([m, a, d])
        return m

    def flip(self, a, b):
        """Replace edge a-b by the other diagonal of its two faces."""
        c, d, first, second = self.wings(a, b)
        self._replace(first, [a, d, c])
        self._replace(second, [d, b, c])

    def arrays(self):
        return np.array(self.vertices, float), np.array(self.faces, np.int64)


def _edge_key(a, b):
    return (a, b) if a < b else (b, a)


def _directed_third(face, a, b):
    """The third vertex of `face` when it holds the directed edge a -> b, else None."""
    for k in range(3):
        if face[k] == a and face[(k + 1) % 3] == b:
            return face[(k + 2) % 3]
    return None


def refine_to_count(vertices, faces, spacing, num_vertices):
    """Split the edges longest relative to the wanted spacing until `num_vertices`.

    spacing: (V,) wanted edge length around each vertex (any scale: only ratios count);
    a new vertex takes the mean of its edge's two ends.
    Returns vertices (new ones on the edge midpoints), faces and spacing.
    """
    mesh = _EditableMesh(vertices, faces)
    spacing = list(spacing)
    points = mesh.vertices

    def priority(a, b):
        pa, pb = points[a], points[b]
        length = np.sqrt((pa[0] - pb[0]) ** 2 + (pa[1] - pb[1]) ** 2 + (pa[2] - pb[2]) ** 2)
        return -length / (0.5 * (spacing[a] + spacing[b])), length

    heap = []
    for a, b in mesh.edge_faces:
        score, length = priority(a, b)
        heap.append((score, a, b, length))
    heapq.heapify(heap)
    while len(points) < num_vertices:
        score, a, b, length = heapq.heappop(heap)
        if _edge_key(a, b) not in mesh.edge_faces or priority(a, b)[1] != length:
            continue
        c, d, _, _ = mesh.wings(a, b)
        m = mesh.split(a, b, tuple((np.array(points[a]) + np.array(points[b])) / 2))
        spacing.append(0.5 * (spacing[a] + spacing[b]))
        for other in (a, b, c, d):
            score, length = priority(m, other)
            heapq.heappush(heap, (score, min(m, other), max(m, other), length))
    vertices, faces = mesh.arrays()
    return vertices, faces, np.array(spacing)


def _edge_wings(faces):
    """For every interior edge once: (a, b, c, d, f, g) with faces f = (a, b, c), g = (b, a, d)."""
    num_faces = len(faces)
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    third = faces[:, [2, 0, 1]].reshape(-1)
    face_of = np.repeat(np.arange(num_faces), 3)
    width = int(faces.max()) + 1
    keys = directed[:, 0] * width + directed[:, 1]
    twins = directed[:, 1] * width + directed[:, 0]
    order = np.argsort(keys)
    position = np.searchsorted(keys[order], twins)
    twin = order[np.minimum(position, len(order) - 1)]
    first = np.flatnonzero((directed[:, 0] < directed[:, 1]) & (keys[twin] == twins))
    second = twin[first]
    return (directed[first, 0], directed[first, 1], third[first], third[second],
            face_of[first], face_of[second])


def _face_normals(vertices, faces):
    corners = vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-15)


def vertex_normals(vertices, faces):
    """(V, 3) unit area-weighted vertex normals."""
    corners = vertices[faces]
    weighted = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], weighted)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-15)


def _angle_at(apex, p, q):
    u, v = p - apex, q - apex
    cos = np.einsum("ij,ij->i", u, v) / np.maximum(
        np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1), 1e-15)
    return np.arccos(np.clip(cos, -1.0, 1.0))


def delaunay_flips(vertices, faces, rounds=8, max_bend_degrees=25.0):
    """Flip edges whose opposite angles sum above pi (towards a Delaunay mesh).

    A flip is done only where the surface is nearly flat across the edge (the new faces'
    normals stay within `max_bend_degrees` of the old ones), where both ends of the edge
    keep at least three neighbours and where the new edge does not exist yet.
    """
    faces = faces.copy()
    limit = np.cos(np.radians(max_bend_degrees))
    for _ in range(rounds):
        a, b, c, d, f, g = _edge_wings(faces)
        excess = _angle_at(vertices[c], vertices[a], vertices[b]) + _angle_at(
            vertices[d], vertices[b], vertices[a]) - np.pi
        old = _face_normals(vertices, faces[f]) + _face_normals(vertices, faces[g])
        old /= np.maximum(np.linalg.norm(old, axis=1, keepdims=True), 1e-15)
        new_first = _face_normals(vertices, np.stack([a, d, c], axis=1))
        new_second = _face_normals(vertices, np.stack([d, b, c], axis=1))
        valence = np.bincount(faces.reshape(-1), minlength=len(vertices))
        candidate = ((excess > 1e-6) & (c != d) & (valence[a] > 3) & (valence[b] > 3)
                     & (np.einsum("ij,ij->i", old, new_first) > limit)
                     & (np.einsum("ij,ij->i", old, new_second) > limit))
        if not candidate.any():
            break
        width = len(vertices)
        existing = set((np.minimum(a, b) * width + np.maximum(a, b)).tolist())
        used_faces, chosen = set(), []
        for edge in np.flatnonzero(candidate)[np.argsort(-excess[candidate], kind="stable")]:
            new_key = min(c[edge], d[edge]) * width + max(c[edge], d[edge])
            if f[edge] in used_faces or g[edge] in used_faces or new_key in existing:
                continue
            used_faces.update((f[edge], g[edge]))
            existing.add(new_key)
            chosen.append(edge)
        chosen = np.array(chosen, np.int64)
        faces[f[chosen]] = np.stack([a[chosen], d[chosen], c[chosen]], axis=1)
        faces[g[chosen]] = np.stack([d[chosen], b[chosen], c[chosen]], axis=1)
    return faces


def neighbour_matrix(faces, num_vertices):
    """(V, V) sparse row-normalised adjacency: row i averages vertex i's neighbours."""
    edges = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    adjacency = scipy.sparse.csr_matrix(
        (np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(num_vertices,) * 2)
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    return scipy.sparse.diags(1.0 / degree) @ adjacency


def relax(vertices, faces, field, iterations=4, step=0.5):
    """Tangential smoothing of the vertex positions, each step projected back onto the
    field's zero level set: evens out the triangles without changing the surface."""
    average = neighbour_matrix(faces, len(vertices))
    vertices = vertices.copy()
    for _ in range(iterations):
        normals = vertex_normals(vertices, faces)
        move = average @ vertices - vertices
        move -= np.einsum("ij,ij->i", move, normals)[:, None] * normals
        vertices = field.project(vertices + step * move)
    return vertices


def remesh(field, vertices, faces, part_spacing, num_vertices, coarse_fraction=0.5):
    """A closed genus-0 mesh of the field's surface with exactly `num_vertices` vertices.

    The dense marching-cubes mesh is decimated to about `coarse_fraction` of the count
    (keeping curved parts), refined by longest-edge splits where its edges are longest
    relative to `part_spacing` (a (55,) wanted relative edge length for each joint's part,
    e.g. small on the hands and face), projected onto the surface, then evened out by
    Delaunay flips and tangential relaxation.
    """
    coarse_vertices = int(num_vertices * coarse_fraction)
    vertices, faces = decimate(vertices, faces, 2 * coarse_vertices - 4)
    owners = np.argmin(field.part_distances(vertices), axis=1)
    vertices, faces, _ = refine_to_count(vertices, faces, part_spacing[owners], num_vertices)
    vertices = field.project(vertices)
    faces = delaunay_flips(vertices, faces)
    vertices = relax(vertices, faces, field)
    faces = delaunay_flips(vertices, faces)
    if len(vertices) != num_vertices or not is_closed_manifold(vertices, faces):
        raise RuntimeError("remeshing did not give a closed manifold of the wanted size")
    return vertices, faces


def part_spacing(hands, head, face, feet=0.8):
    """(55,) relative edge lengths per joint part: the body 1, the others as given."""
    spacing = np.ones(55)
    spacing[[20, 21]] = hands
    spacing[25:55] = hands
    spacing[[15, SMPLX_LEFT_EYE, SMPLX_RIGHT_EYE]] = head
    spacing[SMPLX_JAW] = face
    spacing[[7, 8, 10, 11]] = feet
    return spacing


# ----------------------------------------------------------------------------- SMPL-X parts

EYEBALL_RINGS, EYEBALL_SEGMENTS = 17, 32          # 17 * 32 + 2 = 546 vertices each
EYEBALL_RADIUS = 0.0118
MOUTH_CORNERS = ((-0.021, 0.391), (0.021, 0.391))  # (x, y) of the lip line's ends
MOUTH_FACES = 30                                   # faces removed for the mouth opening


def uv_sphere(center, radius, rings=EYEBALL_RINGS, segments=EYEBALL_SEGMENTS):
    """Closed sphere with its poles on the z axis: vertex 0 is the front pole (+z).

    Returns vertices (rings * segments + 2, 3) and outward faces (2 * rings * segments, 3).
    """
    polar = np.pi * np.arange(1, rings + 1) / (rings + 1)
    azimuth = 2 * np.pi * np.arange(segments) / segments
    ring_points = np.stack([
        np.sin(polar)[:, None] * np.cos(azimuth)[None],
        np.sin(polar)[:, None] * np.sin(azimuth)[None],
        np.repeat(np.cos(polar)[:, None], segments, axis=1)], axis=-1).reshape(-1, 3)
    unit = np.concatenate([[[0.0, 0.0, 1.0]], ring_points, [[0.0, 0.0, -1.0]]])
    last = len(unit) - 1

    def ring(r, k):
        return 1 + r * segments + k % segments

    faces = []
    for k in range(segments):
        faces.append([0, ring(0, k), ring(0, k + 1)])
        faces.append([last, ring(rings - 1, k + 1), ring(rings - 1, k)])
        for r in range(rings - 1):
            faces.append([ring(r, k), ring(r + 1, k), ring(r + 1, k + 1)])
            faces.append([ring(r, k), ring(r + 1, k + 1), ring(r, k + 1)])
    faces = np.array(faces, np.int64)
    vertices = np.asarray(center) + radius * unit
    if _signed_volume(vertices, faces) < 0:
        faces = faces[:, ::-1]
    return vertices, faces


def open_mouth(vertices, faces, corners=MOUTH_CORNERS, count=MOUTH_FACES):
    """Remove a strip of `count` faces along the lip line, every vertex kept in use.

    The strip grows from the face nearest the first corner, one face at a time through a
    free edge, always adding a face with a vertex new to the strip (so the strip is a
    disc with all its vertices on its rim and none is left without faces), choosing the
    face closest to the lip line. The rim vertices are then moved onto two smooth lip
    curves just above and below the line, so the opening is a thin slit.
    Returns (vertices, faces kept, ids of the opening's rim vertices).
    """
    start, end = (np.array([x, y]) for x, y in corners)
    centers = vertices[faces].mean(axis=1)
    front = centers[:, 2] > 0.05

    def line_distance(points):
        along = np.clip((points[:, :2] - start) @ (end - start) / np.sum((end - start) ** 2),
                        0.0, 1.0)
        return np.linalg.norm(points[:, :2] - (start + along[:, None] * (end - start)), axis=1)

    score = np.where(front, line_distance(centers), np.inf)
    edge_faces = {}
    for index, face in enumerate(faces.tolist()):
        for k in range(3):
            edge_faces.setdefault(_edge_key(face[k], face[(k + 1) % 3]), []).append(index)
    first = int(np.argmin(np.where(front, np.linalg.norm(centers[:, :2] - start, axis=1),
                                   np.inf)))
    strip, strip_vertices = [first], set(faces[first].tolist())
    while len(strip) < count:
        best = None
        for index in strip:
            face = faces[index]
            for k in range(3):
                for other in edge_faces[_edge_key(face[k], face[(k + 1) % 3])]:
                    if other in strip:
                        continue
                    new = set(faces[other].tolist()) - strip_vertices
                    if len(new) == 1 and (best is None or score[other] < score[best]):
                        best = other
        strip.append(best)
        strip_vertices.update(faces[best].tolist())
    keep = np.ones(len(faces), bool)
    keep[strip] = False
    rim = np.array(sorted(strip_vertices), np.int64)
    vertices = vertices.copy()
    half_width = np.abs(end[0] - start[0]) / 2 + 0.004
    centre = (start + end) / 2
    opening = 0.0004 + 0.0011 * np.sqrt(np.clip(
        1 - ((vertices[rim, 0] - centre[0]) / half_width) ** 2, 0.0, 1.0))
    side = np.sign(vertices[rim, 1] - centre[1])
    vertices[rim, 1] = centre[1] + side * opening
    return vertices, faces[keep], rim


# ----------------------------------------------------------------------------- vertex order

# Vertex ids that smplx (vertex_ids.py) reads extra keypoints from, and what they mark.
SMPLH_KEYPOINT_VERTICES = {
    "nose": 332, "reye": 6260, "leye": 2800, "rear": 4071, "lear": 583,
    "rthumb": 6191, "rindex": 5782, "rmiddle": 5905, "rring": 6016, "rpinky": 6133,
    "lthumb": 2746, "lindex": 2319, "lmiddle": 2445, "lring": 2556, "lpinky": 2673,
    "LBigToe": 3216, "LSmallToe": 3226, "LHeel": 3387,
    "RBigToe": 6617, "RSmallToe": 6624, "RHeel": 6787,
}
SMPLX_KEYPOINT_VERTICES = {
    "nose": 9120, "reye": 9929, "leye": 9448, "rear": 616, "lear": 6,
    "rthumb": 8079, "rindex": 7669, "rmiddle": 7794, "rring": 7905, "rpinky": 8022,
    "lthumb": 5361, "lindex": 4933, "lmiddle": 5058, "lring": 5169, "lpinky": 5286,
    "LBigToe": 5770, "LSmallToe": 5780, "LHeel": 8846,
    "RBigToe": 8463, "RSmallToe": 8474, "RHeel": 8635,
}


def keypoint_positions(skeleton):
    """Where each smplx keypoint vertex should lie on the designed body."""
    j = skeleton.joints
    points = {"nose": (0.0, 0.425, 0.13), "lear": (0.095, 0.445, 0.0),
              "rear": (-0.095, 0.445, 0.0),
              "leye": j[SMPLX_LEFT_EYE] + (0, 0, 0.03), "reye": j[SMPLX_RIGHT_EYE] + (0, 0, 0.03)}
    for side, prefix in ((LEFT, "l"), (RIGHT, "r")):
        for index, finger in enumerate(FINGERS):
            tip = skeleton.tips[side][index]
            last = j[finger_joint(side, finger, 2)]
            points[prefix + finger] = tip + 0.02 * (tip - last) / np.linalg.norm(tip - last)
    for sign, prefix in ((1.0, "L"), (-1.0, "R")):
        points[prefix + "BigToe"] = (sign * 0.085, -1.15, 0.19)
        points[prefix + "SmallToe"] = (sign * 0.150, -1.155, 0.15)
        points[prefix + "Heel"] = (sign * 0.090, -1.17, -0.09)
    return {name: np.asarray(point, float) for name, point in points.items()}


def keypoint_order(vertices, wanted_ids, positions, fixed=None):
    """A vertex order putting, for each keypoint, its nearest vertex at the wanted id.

    wanted_ids: {name: id}; positions: {name: (3,) point}; fixed: {name: current id} for
    keypoints whose vertex is known. Returns `order` with new vertex i = old order[i].
    """
    fixed = fixed or {}
    order = np.arange(len(vertices))
    position_of = np.arange(len(vertices))     # old id -> current position in `order`
    taken = set()
    for name, wanted in wanted_ids.items():
        if name in fixed:
            old = fixed[name]
        else:
            distances = np.linalg.norm(vertices - positions[name], axis=1)
            distances[list(taken)] = np.inf
            old = int(np.argmin(distances))
        taken.add(old)
        here = position_of[old]
        displaced = order[wanted]
        order[wanted], order[here] = old, displaced
        position_of[old], position_of[displaced] = wanted, here
    return order


def reorder(vertices, faces, order):
    """Vertices in a new order (new i = old order[i]) and faces renumbered to match."""
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return vertices[order], inverse[faces]


# ----------------------------------------------------------------------------- skinning

def _per_joint(values):
    """(55,) array from {joint ids: value} (later entries win), default 0."""
    result = np.zeros(55)
    for ids, value in values.items():
        result[list(ids) if isinstance(ids, tuple) else ids] = value
    return result


_HANDS = tuple(range(25, 55))
# Softness of the skinning weights at each joint's part boundaries (metres).
_SOFTNESS = _per_joint({tuple(range(25)): 0.014, (12, 15, SMPLX_JAW): 0.010,
                        (7, 8, 10, 11): 0.008, (20, 21): 0.007, _HANDS: 0.0025})
# Outward displacement of each part per unit of the girth shape coefficient (metres).
_GIRTH = _per_joint({0: 0.022, (1, 2): 0.016, 3: 0.028, (4, 5): 0.009, 6: 0.025,
                     (7, 8): 0.004, 9: 0.020, (10, 11): 0.002, 12: 0.008, (13, 14): 0.012,
                     (15, SMPLX_JAW): 0.004, (16, 17): 0.011, (18, 19): 0.007,
                     (20, 21): 0.003, _HANDS: 0.0015})


def skinning_weights(faces, distances, smoothing_passes, softness_scale=1.0, fixed=None):
    """(V, 55) skinning weights from each vertex's distance to every joint's parts.

    A vertex belongs mostly to the joint whose primitives it lies on; the others get
    exp(-excess distance / softness), so weights blend where parts meet (widely on the
    body, narrowly between fingers); what both thighs share goes to the pelvis. Then `smoothing_passes` rounds of averaging with the
    mesh neighbours, tiny weights dropped, rows normalised to 1.

    Args:
        faces: (F, 3); distances: (V, 55) from BodyField.part_distances.
        fixed: {joint: vertex ids} bound rigidly to one joint (the eyeballs).
    """
    softness = _SOFTNESS * softness_scale
    excess = distances - distances.min(axis=1, keepdims=True)
    weights = np.where(excess < 6 * softness, np.exp(-excess / softness), 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    # Where both thighs meet (the crotch) the skin follows the pelvis, not the legs.
    shared = 2.0 * np.minimum(weights[:, 1], weights[:, 2])
    weights[:, 0] += shared
    weights[:, 1:3] -= shared[:, None] / 2
    average = neighbour_matrix(faces, len(distances))
    for _ in range(smoothing_passes):
        weights = 0.5 * weights + 0.5 * (average @ weights)
    for joint, ids in (fixed or {}).items():
        weights[ids] = 0.0
        weights[ids, joint] = 1.0
    weights[weights < 2e-3] = 0.0
    return weights / weights.sum(axis=1, keepdims=True)


def joint_regressor(vertices, targets, first_neighbours=32, tolerance=2e-4, groups=None):
    """(J, V) regressor: each joint a convex combination of surface vertices around it.

    For each target the nearest vertices are weighted (non-negative, summing to one,
    spread as evenly as the fit allows) so that their weighted mean is the target; the
    neighbourhood doubles until the target is within `tolerance` (metres).
    groups: {joint: vertex ids} regressed uniformly instead (eyeballs: their centre).
    """
    from scipy.optimize import nnls
    tree = scipy.spatial.cKDTree(vertices)
    regressor = np.zeros((len(targets), len(vertices)))
    for joint, target in enumerate(targets):
        if groups and joint in groups:
            regressor[joint, groups[joint]] = 1.0 / len(groups[joint])
            continue
        count = first_neighbours
        while True:
            _, ids = tree.query(target, k=min(count, len(vertices)))
            offsets = vertices[ids] - target
            offsets /= np.sqrt(np.mean(np.sum(offsets ** 2, axis=1)))
            evenness = 0.05
            system = np.vstack([offsets.T, np.ones((1, len(ids))), evenness * np.eye(len(ids))])
            goal = np.concatenate([np.zeros(3), [1.0], np.full(len(ids), evenness / len(ids))])
            weights, _ = nnls(system, goal, maxiter=50 * len(ids))
            weights /= weights.sum()
            error = np.linalg.norm(weights @ vertices[ids] - target)
            if error < tolerance or count >= len(vertices):
                break
            count *= 2
        weights[weights < 1e-4 * weights.max()] = 0.0
        regressor[joint, ids] = weights / weights.sum()
    return regressor


# ----------------------------------------------------------------------------- blend shapes

NUM_SMPLH_BETAS, NUM_SMPLX_BETAS, NUM_SMPLX_EXPRESSIONS = 16, 300, 100
SIZE_PER_BETA = 0.04        # beta 0: relative size change per unit (~7 cm of height)


@dataclass(frozen=True)
class SmoothBasis:
    """Random smooth scalar functions of position, shared by both models so that their
    shape spaces agree: phi(x) = sqrt(2 / n) cos(w . x + p), wavelengths ~ `wavelength`."""
    frequencies: np.ndarray      # (n, 3)
    phases: np.ndarray           # (n,)

    @classmethod
    def draw(cls, rng, count, wavelength):
        return cls(rng.normal(size=(count, 3)) * (2 * np.pi / wavelength),
                   rng.uniform(0, 2 * np.pi, count))

    def __call__(self, points):
        return np.sqrt(2.0 / len(self.phases)) * np.cos(points @ self.frequencies.T + self.phases)


def girth_field(weights, normals):
    """(V, 3) outward displacement per unit of girth: more on the belly than the wrists."""
    return (weights @ _GIRTH)[:, None] * normals


def shape_directions(positions, normals, weights, basis, mixing, scales, pelvis):
    """(V, 3, K) shape blend shapes: size, girth, then smooth random deformations.

    Args:
        positions: (V, 3) design rest positions; normals: (V, 3); weights: (V, 55).
        basis: SmoothBasis; mixing: (K, n, 3) coefficients of each direction in it;
        scales: (K,) factor making direction k's RMS size what it should be.
        pelvis: (3,) centre of the size change.
    """
    directions = _combine(basis(positions), mixing) * scales
    directions[:, :, 0] = SIZE_PER_BETA * (positions - pelvis)
    directions[:, :, 1] = girth_field(weights, normals)
    return directions


def _combine(values, mixing):
    """(V, 3, K) fields from basis values (V, n) and coefficients (K, n, 3)."""
    count, size, _ = mixing.shape
    flat = values @ mixing.transpose(1, 2, 0).reshape(size, 3 * count)
    return flat.reshape(len(values), 3, count)


def shape_mixing(rng, count, basis_size):
    """(count, n, 3) random coefficients of the smooth shape directions."""
    return rng.normal(size=(count, basis_size, 3))


def shape_scales(positions, basis, mixing):
    """Per-direction factors giving direction k an RMS displacement of 12 mm / (k - 0.5)."""
    raw = _combine(basis(positions), mixing)
    rms = np.sqrt(np.mean(np.sum(raw ** 2, axis=1), axis=0))
    wanted = 0.012 / np.maximum(np.arange(len(mixing)) - 0.5, 0.5)
    return wanted / rms


def face_mask(positions, weights):
    """(V,) in [0, 1]: 1 on the face (front of the head, eyebrows to chin), 0 elsewhere."""
    head = weights[:, 15] + weights[:, SMPLX_JAW]
    y, z = positions[:, 1], positions[:, 2]
    return (head * _smoothstep(0.010, 0.050, z) * _smoothstep(0.330, 0.350, y)
            * _smoothstep(0.505, 0.485, y))


def _smoothstep(edge0, edge1, x):
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def expression_directions(positions, mask, rng, count=NUM_SMPLX_EXPRESSIONS):
    """(V, 3, count) face-only deformations of decreasing size (zero where mask is 0)."""
    basis = SmoothBasis.draw(rng, 48, 0.08)
    raw = _combine(basis(positions), rng.normal(size=(count, 48, 3)))
    raw *= mask[:, None, None]
    on_face = mask > 0.5
    rms = np.sqrt(np.mean(np.sum(raw[on_face] ** 2, axis=1), axis=0))
    return raw * (0.003 / (1.0 + np.arange(count) / 10.0) / rms)


def follow_anchors(directions, groups):
    """Make each group of vertices (an eyeball) move rigidly with the mean of its anchor
    vertices (the face around it): groups is a list of (vertex ids, anchor ids)."""
    for ids, anchors in groups:
        directions[ids] = directions[anchors].mean(axis=0)
    return directions


# Size of the pose correctives per unit pose feature (metres) and of their region.
_CORRECTIVE_SIZE = _per_joint({tuple(range(22)): 0.004, (20, 21): 0.002, SMPLX_JAW: 0.0015,
                               (SMPLX_LEFT_EYE, SMPLX_RIGHT_EYE): 0.0, _HANDS: 0.0008})
_CORRECTIVE_REACH = _per_joint({tuple(range(25)): 0.12, (15, SMPLX_JAW): 0.06, (20, 21): 0.05,
                                _HANDS: 0.025})


def corrective_coefficients(rng):
    """(55, 9, 16) random coefficients of every joint's nine pose correctives."""
    return rng.normal(size=(55, 9, 16))


def pose_directions(positions, normals, weights, joints, parents, joint_ids, coefficients):
    """(V, 3, 9 * (J - 1)) pose correctives: smooth local bulges near each joint.

    The corrective of pose feature k of joint j moves the vertices of j's and its
    parent's parts by size * (normal * (a + b . r) + 0.3 * (C r + d)), with r the offset
    from the joint over its reach; sizes are a few millimetres per unit of feature.

    Args:
        positions, normals: (V, 3); weights: (V, 55) SMPL-X-numbered skinning weights.
        joints: (55, 3) design joint centres; parents: (55,) SMPL-X parents.
        joint_ids: SMPL-X ids of the model's joints in its order (root first).
        coefficients: (55, 9, 16) from corrective_coefficients.
    """
    blocks = []
    for joint in joint_ids[1:]:
        region = np.clip(weights[:, joint] + weights[:, parents[joint]], 0.0, 1.0)
        near = np.flatnonzero(region > 0)
        block = np.zeros((len(positions), 3, 9))
        offset = (positions[near] - joints[joint]) / _CORRECTIVE_REACH[joint]
        c = coefficients[joint]                                       # (9, 16)
        along_normal = c[:, 0][None] + offset @ c[:, 1:4].T             # (n, 9)
        sideways = (np.einsum("nj,kij->nik", offset, c[:, 4:13].reshape(9, 3, 3))
                    + c[:, 13:16].T[None])                              # (n, 3, 9)
        block[near] = (_CORRECTIVE_SIZE[joint] * region[near, None, None]
                       * (normals[near, :, None] * along_normal[:, None] / 3.0
                          + 0.3 / 3.0 * sideways))
        blocks.append(block)
    return np.concatenate(blocks, axis=2)


# ----------------------------------------------------------------------------- correspondences

def closest_points_on_triangles(points, a, b, c):
    """(N, 3) barycentric weights of the point of triangle (a, b, c) nearest each point.

    Vectorised form of the region tests of Ericson, Real-Time Collision Detection 5.1.5.
    All arguments are (N, 3).
    """
    ab, ac, ap = b - a, c - a, points - a
    bp, cp = points - b, points - c

    def dot(u, v):
        return np.einsum("ij,ij->i", u, v)

    d1, d2, d3, d4, d5, d6 = dot(ab, ap), dot(ac, ap), dot(ab, bp), dot(ac, bp), dot(ab, cp), \
        dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        total = va + vb + vc
        inside_v, inside_w = vb / total, vc / total
        edge_ab = d1 / (d1 - d3)
        edge_ac = d2 / (d2 - d6)
        edge_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    zero, one = np.zeros_like(d1), np.ones_like(d1)
    cases = [  # (condition, (u, v, w)) in order of precedence
        ((d1 <= 0) & (d2 <= 0), (one, zero, zero)),
        ((d3 >= 0) & (d4 <= d3), (zero, one, zero)),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), (1 - edge_ab, edge_ab, zero)),
        ((d6 >= 0) & (d5 <= d6), (zero, zero, one)),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), (1 - edge_ac, zero, edge_ac)),
        ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), (zero, 1 - edge_bc, edge_bc)),
    ]
    result = np.stack([1 - inside_v - inside_w, inside_v, inside_w], axis=1)
    for condition, weights in reversed(cases):
        result[condition] = np.stack(weights, axis=1)[condition]
    return result


def nearest_triangles(points, vertices, faces, candidates=24):
    """For each point: the nearest triangle, its barycentric weights and the distance."""
    centers = vertices[faces].mean(axis=1)
    _, near = scipy.spatial.cKDTree(centers).query(points, k=candidates)
    best_face = np.zeros(len(points), np.int64)
    best_weights = np.zeros((len(points), 3))
    best_distance = np.full(len(points), np.inf)
    for column in range(candidates):
        face = faces[near[:, column]]
        weights = closest_points_on_triangles(points, *(vertices[face[:, k]] for k in range(3)))
        closest = np.einsum("nk,nkc->nc", weights, vertices[face])
        distance = np.linalg.norm(points - closest, axis=1)
        better = distance < best_distance
        best_face[better] = near[better, column]
        best_weights[better] = weights[better]
        best_distance[better] = distance[better]
    return best_face, np.clip(best_weights, 0.0, 1.0), best_distance


def deformation_transfer_matrix(target_vertices, source_vertices, source_faces):
    """(len(target), 2 * len(source)) sparse matrix: each target vertex as barycentric
    weights of the nearest source triangle (the second half of the columns stays empty,
    as in smplh2smplx_deftrafo_setup.pkl). Also returns the distances."""
    face, weights, distance = nearest_triangles(target_vertices, source_vertices, source_faces)
    weights /= weights.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(len(target_vertices)), 3)
    matrix = scipy.sparse.csr_matrix(
        (weights.reshape(-1), (rows, source_faces[face].reshape(-1))),
        shape=(len(target_vertices), 2 * len(source_vertices)))
    return matrix, distance


def surface_points(field, starts, iterations=12):
    """Points on the field's surface reached from `starts` along the gradient."""
    return field.project(np.asarray(starts, float), iterations=iterations)


def face_landmark_points(field):
    """(51, 3) the static face landmarks: eyebrows, nose, eyes, mouth (68-point scheme
    without its 17 contour points), found on the designed face."""
    xy = []
    for sign in (-1.0, 1.0):                                   # eyebrows, right then left
        for t in np.linspace(0.0, 1.0, 5)[:: int(sign)]:
            xy.append((sign * (0.012 + 0.045 * t), 0.478 + 0.008 * np.sin(np.pi * t)))
    xy += [(0.0, y) for y in np.linspace(0.458, 0.428, 4)]      # nose bridge
    xy += [(x, 0.421) for x in np.linspace(-0.014, 0.014, 5)]   # nostrils
    for sign in (-1.0, 1.0):                                   # eyes, six points each
        for angle in np.linspace(np.pi, -np.pi, 6, endpoint=False):
            xy.append((sign * 0.031 + 0.014 * np.cos(angle), 0.455 + 0.005 * np.sin(angle)))
    for angle in np.linspace(np.pi, -np.pi, 12, endpoint=False):   # outer lips
        xy.append((0.026 * np.cos(angle), 0.391 + 0.011 * np.sin(angle)))
    for angle in np.linspace(np.pi, -np.pi, 8, endpoint=False):    # inner lips
        xy.append((0.016 * np.cos(angle), 0.391 + 0.003 * np.sin(angle)))
    xy = np.array(xy)
    return surface_points(field, np.c_[xy, np.full(len(xy), 0.16)])


def face_contour_points(field, yaw_bins=79, count=17):
    """(yaw_bins, count, 3) the jaw-line contour seen at head yaws of -39 to 39 degrees:
    the contour slides around the jaw as the head turns."""
    spread = np.radians(np.linspace(-80.0, 80.0, count))
    heights = 0.343 + 0.095 * (np.abs(spread) / np.radians(80.0)) ** 1.6
    starts = []
    for yaw in np.radians(np.linspace(-39.0, 39.0, yaw_bins)):
        azimuth = np.clip(spread + 0.6 * yaw, -np.radians(85.0), np.radians(85.0))
        starts.append(np.stack([0.1 * np.sin(azimuth), heights, 0.02 + 0.1 * np.cos(azimuth)],
                               axis=1))
    starts = np.concatenate(starts)
    return surface_points(field, starts).reshape(yaw_bins, count, 3)


# ----------------------------------------------------------------------------- motions

# Rotation axes of the anatomical movements of left-side and middle joints, in the rest
# pose frame (y up, facing +z); a positive angle is the movement named. Right joints use
# the mirrored axes. Values: (axis, lowest angle, highest angle) in radians.
_BODY_DOFS = {
    (1, "flex"): ((-1, 0, 0), -0.5, 2.0), (1, "abduct"): ((0, 0, 1), -0.3, 0.9),
    (1, "twist"): ((0, 1, 0), -0.5, 0.5), (4, "flex"): ((1, 0, 0), 0.0, 2.4),
    (7, "flex"): ((1, 0, 0), -0.6, 0.7), (7, "invert"): ((0, 0, 1), -0.3, 0.3),
    (10, "flex"): ((1, 0, 0), -0.4, 0.3),
    (3, "bend"): ((1, 0, 0), -0.3, 0.8), (3, "side"): ((0, 0, 1), -0.3, 0.3),
    (3, "twist"): ((0, 1, 0), -0.4, 0.4),
    (6, "bend"): ((1, 0, 0), -0.2, 0.4), (6, "side"): ((0, 0, 1), -0.2, 0.2),
    (6, "twist"): ((0, 1, 0), -0.3, 0.3),
    (9, "bend"): ((1, 0, 0), -0.2, 0.4), (9, "side"): ((0, 0, 1), -0.2, 0.2),
    (9, "twist"): ((0, 1, 0), -0.3, 0.3),
    (12, "nod"): ((1, 0, 0), -0.4, 0.5), (12, "turn"): ((0, 1, 0), -0.6, 0.6),
    (15, "nod"): ((1, 0, 0), -0.4, 0.5), (15, "turn"): ((0, 1, 0), -0.6, 0.6),
    (15, "tilt"): ((0, 0, 1), -0.3, 0.3),
    (13, "raise"): ((0, 0, 1), -0.2, 0.4), (13, "forward"): ((0, -1, 0), -0.2, 0.3),
    (16, "down"): ((0, 0, -1), -1.2, 1.5), (16, "forward"): ((0, -1, 0), -0.8, 1.6),
    (16, "twist"): ((1, 0, 0), -0.8, 0.8), (18, "flex"): ((0, -1, 0), 0.0, 2.4),
    (18, "twist"): ((1, 0, 0), -0.5, 0.5),
    (20, "flex"): ((0, 0, -1), -0.7, 0.9), (20, "deviate"): ((0, 1, 0), -0.3, 0.4),
}
_MIDDLE_JOINTS = {3, 6, 9, 12, 15}
_RIGHT_OF = {1: 2, 4: 5, 7: 8, 10: 11, 13: 14, 16: 17, 18: 19, 20: 21}


def mirror_rotvecs(rotvecs):
    """Axis-angle rotations mirrored through the x = 0 plane (left <-> right)."""
    return np.asarray(rotvecs) * np.array([1.0, -1.0, -1.0])


def finger_axes(skeleton, finger):
    """(curl axis, spread axis) of a left-hand finger: curling bends it towards the palm."""
    side_joints = [finger_joint(LEFT, finger, s) for s in range(3)]
    points = [*skeleton.joints[side_joints], skeleton.tips[LEFT][FINGERS.index(finger)]]
    direction = points[3] - points[0]
    direction /= np.linalg.norm(direction)
    toward = np.array([0.0, -1.0, -0.6]) if finger == "thumb" else np.array([0.0, -1.0, 0.0])
    curl = np.cross(direction, toward)
    curl /= np.linalg.norm(curl)
    spread = np.cross(curl, direction)
    return curl, spread / np.linalg.norm(spread)


def hand_poses(skeleton, curls, spreads):
    """(N, 15, 3) left-hand axis-angle poses from per-finger curls (N, 5, 3) and spreads
    (N, 5), fingers in FINGERS order."""
    axes = [finger_axes(skeleton, finger) for finger in FINGERS]
    curl_axes = np.array([curl for curl, _ in axes])              # (5, 3)
    spread_axes = np.array([spread for _, spread in axes])
    poses = curls[..., None] * curl_axes[None, :, None]            # (N, 5, 3 joints, 3)
    poses[:, :, 0] += spreads[..., None] * spread_axes[None]
    return poses.reshape(len(curls), 15, 3)


def random_hand_poses(skeleton, rng, count):
    """(count, 15, 3) plausible left-hand poses: relaxed to fist-like curls, small spreads."""
    base = rng.uniform(-0.1, 1.2, size=(count, 1, 1))
    curls = np.clip(base * np.array([0.9, 1.0, 0.7]) + rng.normal(0, 0.2, (count, 5, 3)),
                    -0.15, 1.6)
    poses = hand_poses(skeleton, curls, rng.normal(0, 0.12, (count, 5)))
    return poses + rng.normal(0, 0.03, poses.shape)


def hand_pca(samples):
    """(components (45, 45), mean (45,)) of hand poses (N, 15, 3), like MANO's hand PCA."""
    flat = samples.reshape(len(samples), -1)
    mean = flat.mean(axis=0)
    _, _, components = np.linalg.svd(flat - mean, full_matrices=False)
    return components, mean


_MOTIONS = ("walk", "wave", "squat", "bend", "dance")


def motion_angles(kind, times, rng):
    """{(joint, dof): angles (T,)} of left/middle joints, and {(joint, dof): angles} of
    right joints (keys use the left joint id), for one kind of motion over `times` (s)."""
    def wave(amplitude, period, phase=0.0, offset=0.0):
        return offset + amplitude * np.sin(2 * np.pi * times / period + phase)

    jitter = rng.uniform(0.85, 1.15)
    period = rng.uniform(0.9, 1.3)
    left, right = {}, {}
    if kind == "walk":
        for angles, phase in ((left, 0.0), (right, np.pi)):
            angles[(1, "flex")] = wave(0.45 * jitter, period, phase, 0.1)
            angles[(4, "flex")] = 0.55 + 0.5 * np.sin(2 * np.pi * times / period + phase - 1.2)
            angles[(7, "flex")] = wave(0.2, period, phase + 0.6)
            angles[(16, "down")] = np.full_like(times, 1.25)
            angles[(16, "forward")] = wave(0.35 * jitter, period, phase + np.pi)
            angles[(18, "flex")] = wave(0.15, period, phase + np.pi, 0.35)
        left[(3, "twist")] = wave(0.08, period)
        left[(15, "nod")] = wave(0.05, period / 2, 0.0, 0.05)
    elif kind == "wave":
        left[(16, "down")] = wave(0.1, 2.0, 0.0, 1.2)
        left[(18, "flex")] = np.full_like(times, 0.25)
        right[(16, "down")] = wave(0.15, 2.0, 0.5, -0.35)
        right[(16, "twist")] = np.full_like(times, -0.6)
        right[(18, "flex")] = wave(0.45 * jitter, period * 0.7, 0.0, 1.1)
        right[(20, "deviate")] = wave(0.2, period * 0.7, 1.0)
        left[(15, "turn")] = wave(0.25, 3.0)
        left[(3, "side")] = wave(0.06, 3.0, 1.0)
        for angles in (left, right):
            angles[(1, "abduct")] = np.full_like(times, 0.08)
    elif kind == "squat":
        depth = 0.5 - 0.5 * np.cos(2 * np.pi * times / (2.2 * period))
        for angles in (left, right):
            angles[(1, "flex")] = 1.3 * jitter * depth
            angles[(1, "abduct")] = 0.05 + 0.15 * depth
            angles[(4, "flex")] = 1.9 * jitter * depth
            angles[(7, "flex")] = -0.5 * depth
            angles[(16, "down")] = 1.2 - 0.9 * depth
            angles[(16, "forward")] = 1.3 * depth
            angles[(18, "flex")] = 0.2 + 0.3 * depth
        left[(3, "bend")] = 0.35 * depth
        left[(15, "nod")] = -0.2 * depth
    elif kind == "bend":
        depth = 0.5 - 0.5 * np.cos(2 * np.pi * times / (2.5 * period))
        left[(3, "bend")] = 0.6 * jitter * depth
        left[(6, "bend")] = 0.25 * depth
        left[(9, "bend")] = 0.2 * depth
        left[(3, "twist")] = wave(0.2, 2.5 * period, 0.5) * depth
        left[(15, "nod")] = 0.3 * depth
        for angles, side in ((left, 1.0), (right, -1.0)):
            angles[(1, "flex")] = 0.3 * depth
            angles[(4, "flex")] = 0.15 * depth
            angles[(16, "down")] = 1.25 - 0.3 * depth
            angles[(16, "forward")] = 0.6 * depth + side * 0.1 * depth
            angles[(18, "flex")] = 0.3 + 0.2 * depth
    else:  # dance: every movement oscillates within part of its range
        for angles in (left, right):
            for key, (_, low, high) in _BODY_DOFS.items():
                if key[0] in _MIDDLE_JOINTS and angles is right:
                    continue
                middle, half = (low + high) / 2, (high - low) / 2
                angles[key] = wave(0.35 * half * rng.uniform(0.5, 1.0), rng.uniform(0.8, 2.5),
                                   rng.uniform(0, 2 * np.pi), 0.3 * middle)
                if key == (16, "down"):
                    angles[key] += 0.7
    for angles in (left, right):
        for key, values in angles.items():
            _, low, high = _BODY_DOFS[key]
            angles[key] = np.clip(values, low, high)
    return left, right


def body_rotvecs(left, right, num_frames):
    """(T, 22, 3) body axis-angle poses from the movement angles of motion_angles."""
    pose = np.zeros((num_frames, 22, 3))
    for angles, mirrored in ((left, False), (right, True)):
        for (joint, dof), values in angles.items():
            axis = np.asarray(_BODY_DOFS[(joint, dof)][0], float)
            target = joint
            if mirrored:
                target = _RIGHT_OF.get(joint, joint)
                axis = mirror_rotvecs(axis)
            pose[:, target] += values[:, None] * axis
    return pose


def hand_motion(skeleton, times, rng):
    """(T, 15, 3) left-hand poses: each finger curling and uncurling at its own pace."""
    curls = np.zeros((len(times), 5, 3))
    base = rng.uniform(0.0, 0.8)
    for finger in range(5):
        amplitude, period = rng.uniform(0.1, 0.6), rng.uniform(0.8, 2.5)
        curl = base + amplitude * np.sin(2 * np.pi * times / period + rng.uniform(0, 6.3))
        curls[:, finger] = np.clip(curl, -0.1, 1.5)[:, None] * np.array([0.9, 1.0, 0.7])
    spreads = np.broadcast_to(rng.normal(0, 0.08, 5), (len(times), 5))
    return hand_poses(skeleton, curls, spreads)


def root_rotvecs(headings, tilt):
    """(T, 3) AMASS global orientations: the y-up body stood up in AMASS's z-up world,
    turned by `headings` (T,) about z, leaning by `tilt` (T, 3) (body frame axis-angle)."""
    from scipy.spatial.transform import Rotation
    stand_up = Rotation.from_rotvec([np.pi / 2, 0.0, 0.0])
    turn = Rotation.from_rotvec(np.outer(headings, [0.0, 0.0, 1.0]))
    return (turn * stand_up * Rotation.from_rotvec(tilt)).as_rotvec()


def synthetic_sequence(skeleton, kind, num_frames, framerate, rng):
    """(poses (T, 156), heading (T,)) of one AMASS-style SMPL-H motion."""
    times = np.arange(num_frames) / framerate
    left, right = motion_angles(kind, times, rng)
    body = body_rotvecs(left, right, num_frames)
    left_hand = hand_motion(skeleton, times, rng)
    right_hand = mirror_rotvecs(hand_motion(skeleton, times, rng))
    heading = rng.uniform(-np.pi, np.pi) + rng.uniform(-0.3, 0.3) * times / max(times[-1], 1)
    tilt = np.stack([0.03 * np.sin(times * rng.uniform(1, 3)), np.zeros(num_frames),
                     0.02 * np.sin(times * rng.uniform(1, 3))], axis=1)
    body[:, 0] = root_rotvecs(heading, tilt)
    poses = np.concatenate([body.reshape(num_frames, -1), left_hand.reshape(num_frames, -1),
                            right_hand.reshape(num_frames, -1)], axis=1)
    return poses, heading


def _dof_angle(poses, joint, dof, mirrored=False):
    """Angle (N,) of one movement read back from (N, 22+, 3) axis-angle poses (the
    rotation vector's component along the movement's axis)."""
    axis = np.asarray(_BODY_DOFS[(joint, dof)][0], float)
    if mirrored:
        joint, axis = _RIGHT_OF[joint], mirror_rotvecs(axis)
    return poses[:, joint] @ axis


def describe_pose(pose):
    """A PoseScript-like sentence about one SMPL-H pose (52, 3)."""
    pose = pose[None]
    parts = []
    knees = [_dof_angle(pose, 4, "flex", m)[0] for m in (False, True)]
    if min(knees) > 1.2:
        parts.append("The person is crouching with both knees deeply bent.")
    elif max(knees) > 0.6:
        side = "left" if knees[0] > knees[1] else "right"
        parts.append(f"The person stands with the {side} knee bent, as if stepping forward.")
    else:
        parts.append("The person is standing with straight legs.")
    for side, mirrored in (("left", False), ("right", True)):
        down = _dof_angle(pose, 16, "down", mirrored)[0]
        elbow = _dof_angle(pose, 18, "flex", mirrored)[0]
        arm = ("raised above the shoulder" if down < 0.2 else
               "held out to the side" if down < 0.9 else "hanging down along the body")
        bend = " with the elbow bent" if elbow > 0.8 else ""
        parts.append(f"The {side} arm is {arm}{bend}.")
    if _dof_angle(pose, 3, "bend")[0] > 0.3:
        parts.append("The torso leans forward.")
    return " ".join(parts)


def describe_change(pose_a, pose_b):
    """A PoseFix-like instruction turning pose A (52, 3) into pose B."""
    pose_a, pose_b = pose_a[None], pose_b[None]
    steps = []
    for side, mirrored in (("left", False), ("right", True)):
        for joint, dof, more, less in ((4, "flex", f"bend your {side} knee more",
                                        f"straighten your {side} leg"),
                                       (18, "flex", f"bend your {side} elbow",
                                        f"straighten your {side} arm"),
                                       (16, "down", f"lower your {side} arm",
                                        f"raise your {side} arm")):
            change = (_dof_angle(pose_b, joint, dof, mirrored)
                      - _dof_angle(pose_a, joint, dof, mirrored))[0]
            if abs(change) > 0.15:
                steps.append((abs(change), more if change > 0 else less))
    change = (_dof_angle(pose_b, 3, "bend") - _dof_angle(pose_a, 3, "bend"))[0]
    if abs(change) > 0.1:
        steps.append((abs(change), "lean forward" if change > 0 else "straighten your back"))
    if not steps:
        return "Move your hands slightly and keep the rest of the pose."
    steps = [text for _, text in sorted(steps, reverse=True)[:3]]
    return (", ".join(steps[:-1]) + " and " + steps[-1] if len(steps) > 1
            else steps[0]).capitalize() + "."


# ----------------------------------------------------------------------------- the models

NUM_SMPLH_VERTICES, NUM_SMPLX_VERTICES = 6890, 10475
NUM_SMPLX_BODY_VERTICES = NUM_SMPLX_VERTICES - 2 * (EYEBALL_RINGS * EYEBALL_SEGMENTS + 2)
VOXEL = 0.0035                                     # marching-cubes grid step (metres)
SMPLH_SPACING = dict(hands=0.38, head=0.6, face=0.6)
SMPLX_SPACING = dict(hands=0.24, head=0.32, face=0.26)
# How the SMPL-X body differs from the SMPL-H one (see the module docstring).
SMPLX_SCALE = np.array([1.006, 1.012, 1.006])     # about the pelvis: a little taller
SMPLX_THINNING = 0.15                             # girth coefficients removed
SMPLX_JOINT_SHIFT = 0.0045                        # metres, per axis, body joints
SMPLX_BUMPS = 60                                  # smooth surface bumps of 1.5-4 mm
ROOT_PARENT = 4294967295                          # the root's parent in kintree_table


def _rng(seed, *stream):
    """An independent random generator for one purpose, from the kit's seed."""
    return np.random.default_rng([seed, *stream])


def joint_shifts(rng):
    """(55, 3) how far each SMPL-X joint sits from the SMPL-H one (mirror-symmetric)."""
    shifts = np.zeros((55, 3))
    centre_and_left = [0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 18, 20, SMPLX_JAW]
    shifts[centre_and_left] = rng.normal(0, SMPLX_JOINT_SHIFT, (len(centre_and_left), 3))
    shifts[[0, 3, 6, 9, 12, 15, SMPLX_JAW], 0] = 0.0
    shifts[25:40] = rng.normal(0, 0.0012, (15, 3))
    for right, left in _MIRRORED.items():
        shifts[right] = shifts[left] * (-1.0, 1.0, 1.0)
    shifts[40:55] = shifts[25:40] * (-1.0, 1.0, 1.0)
    shifts[[SMPLX_LEFT_EYE, SMPLX_RIGHT_EYE]] = shifts[15]
    return shifts


def bump_field(positions, normals, weights, rng, count=SMPLX_BUMPS):
    """(V, 3) smooth bumps along the normals (1.5 to 4 mm, 3 to 8 cm wide), weaker on the
    face and none on the hands: surface detail no shape coefficient explains."""
    centres = positions[rng.choice(len(positions), count, replace=False)]
    widths = rng.uniform(0.03, 0.08, count)
    heights = rng.choice([-1.0, 1.0], count) * rng.uniform(0.0015, 0.004, count)
    squared = np.sum((positions[:, None] - centres[None]) ** 2, axis=2)
    bumps = np.exp(-squared / (2 * widths ** 2)) @ heights
    hands = weights[:, [20, 21, *range(25, 55)]].sum(axis=1)
    head = weights[:, [15, SMPLX_JAW, SMPLX_LEFT_EYE, SMPLX_RIGHT_EYE]].sum(axis=1)
    return (bumps * np.clip(1.0 - hands - 0.6 * head, 0.0, 1.0))[:, None] * normals


@dataclass
class _Model:
    """The arrays of one body model, numpy, SMPL-X or SMPL-H joint numbering."""
    v_template: np.ndarray
    faces: np.ndarray
    j_regressor: np.ndarray
    parents: np.ndarray
    weights: np.ndarray
    posedirs: np.ndarray
    shapedirs: np.ndarray
    hands: tuple                 # (components left, right (45, 45), means left, right (45,))
    extra: dict                  # landmarks (SMPL-X)

    def arrays(self, sparse_regressor):
        """The dict written to a model file."""
        kintree = np.stack([self.parents, np.arange(len(self.parents))]).astype(np.int64)
        kintree[0, 0] = ROOT_PARENT
        regressor = (scipy.sparse.csc_matrix(self.j_regressor) if sparse_regressor
                     else self.j_regressor)
        return {"v_template": self.v_template, "f": self.faces, "J_regressor": regressor,
                "kintree_table": kintree, "weights": self.weights,
                "posedirs": self.posedirs.astype(np.float32),
                "shapedirs": self.shapedirs.astype(np.float32), **self.extra}

    def hand_arrays(self):
        left, right, mean_left, mean_right = self.hands
        return {"hands_componentsl": left, "hands_componentsr": right,
                "hands_meanl": mean_left, "hands_meanr": mean_right}


@dataclass
class _Models:
    smplh: _Model
    smplx: _Model
    deftrafo: scipy.sparse.csr_matrix
    mask_ids: np.ndarray
    smplx_design: np.ndarray     # SMPL-X vertices before the SMPL-X differences


def build_models(seed):
    """Both body models, the deformation transfer and the mask (numpy, in memory)."""
    skeleton = design_skeleton()
    pelvis = skeleton.joints[0]
    field_h = BodyField(body_tree(skeleton, jaw_owner=15))
    field_x = BodyField(body_tree(skeleton, jaw_owner=SMPLX_JAW))
    dense_vertices, dense_faces = marching_cubes_surface(field_h, VOXEL)
    keypoints = keypoint_positions(skeleton)

    # SMPL-H: the designed body itself.
    vh, fh = remesh(field_h, dense_vertices, dense_faces, part_spacing(**SMPLH_SPACING),
                    NUM_SMPLH_VERTICES)
    vh, fh = reorder(vh, fh, keypoint_order(vh, SMPLH_KEYPOINT_VERTICES, keypoints))
    normals_h = vertex_normals(vh, fh)
    weights_h = skinning_weights(fh, field_h.part_distances(vh), smoothing_passes=3)

    # SMPL-X: a denser body with a mouth opening, then the eyeballs.
    vb, fb = remesh(field_x, dense_vertices, dense_faces, part_spacing(**SMPLX_SPACING),
                    NUM_SMPLX_BODY_VERTICES)
    vb, fb, mouth_rim = open_mouth(vb, fb)
    eye_size = EYEBALL_RINGS * EYEBALL_SEGMENTS + 2
    eye_ids = {}
    vertices, faces = [vb], [fb]
    for eye in (SMPLX_LEFT_EYE, SMPLX_RIGHT_EYE):
        sphere, sphere_faces = uv_sphere(skeleton.joints[eye], EYEBALL_RADIUS)
        start = sum(len(v) for v in vertices)
        eye_ids[eye] = np.arange(start, start + eye_size)
        vertices.append(sphere)
        faces.append(sphere_faces + start)
    x0, fx = np.concatenate(vertices), np.concatenate(faces)
    fixed = {"leye": eye_ids[SMPLX_LEFT_EYE][0], "reye": eye_ids[SMPLX_RIGHT_EYE][0]}
    order = keypoint_order(x0, SMPLX_KEYPOINT_VERTICES, keypoints, fixed=fixed)
    x0, fx = reorder(x0, fx, order)
    inverse = np.argsort(order)
    mouth_rim = inverse[mouth_rim]
    eye_ids = {eye: np.sort(inverse[ids]) for eye, ids in eye_ids.items()}
    eyeballs = np.concatenate(list(eye_ids.values()))
    body = np.setdiff1d(np.arange(len(x0)), eyeballs)
    normals_x = vertex_normals(x0, fx)
    weights_x = skinning_weights(fx, field_x.part_distances(x0), smoothing_passes=5,
                                 softness_scale=1.25, fixed=eye_ids)
    anchors = []
    for eye, ids in eye_ids.items():
        near = np.linalg.norm(x0[body] - skeleton.joints[eye], axis=1) < 0.022
        anchors.append((ids, body[near]))

    # The SMPL-X differences: size, girth, joints, bumps.
    shifts = joint_shifts(_rng(seed, 1))
    displacement = (pelvis + SMPLX_SCALE * (x0 - pelvis) - x0
                    - SMPLX_THINNING * girth_field(weights_x, normals_x)
                    + 0.5 * weights_x @ shifts
                    + bump_field(x0, normals_x, weights_x, _rng(seed, 2)))
    vx = x0 + follow_anchors(displacement, anchors)
    targets_x = pelvis + SMPLX_SCALE * (skeleton.joints - pelvis) + shifts

    # Joint regressors.
    regressor_h = joint_regressor(vh, skeleton.smplh_joints())
    regressor_x = joint_regressor(vx, targets_x, groups=eye_ids)

    # Shape and expression directions (a shared smooth basis), pose correctives.
    basis = SmoothBasis.draw(_rng(seed, 3), 64, 0.9)
    mixing = shape_mixing(_rng(seed, 4), NUM_SMPLX_BETAS, 64)
    scales = shape_scales(vh, basis, mixing)
    shapedirs_h = shape_directions(vh, normals_h, weights_h, basis, mixing[:NUM_SMPLH_BETAS],
                                   scales[:NUM_SMPLH_BETAS], pelvis)
    mixing_x = mixing + 0.1 * shape_mixing(_rng(seed, 5), NUM_SMPLX_BETAS, 64)
    shapedirs_x = np.concatenate([
        shape_directions(x0, normals_x, weights_x, basis, mixing_x, scales, pelvis),
        expression_directions(x0, face_mask(x0, weights_x), _rng(seed, 6))], axis=2)
    shapedirs_x = follow_anchors(shapedirs_x, anchors)
    coefficients = corrective_coefficients(_rng(seed, 7))
    coefficients_x = coefficients + 0.35 * corrective_coefficients(_rng(seed, 8))
    posedirs_h = pose_directions(vh, normals_h, weights_h, skeleton.joints, smplx_parents(),
                                 SMPLH_FROM_SMPLX, coefficients)
    posedirs_x = follow_anchors(
        pose_directions(x0, normals_x, weights_x, skeleton.joints, smplx_parents(),
                        np.arange(55), coefficients_x), anchors)

    # Hand PCA (unused with flat hands, but read by smplx), face landmarks.
    samples = random_hand_poses(skeleton, _rng(seed, 9), 2048)
    (components_left, mean_left), (components_right, mean_right) = (
        hand_pca(samples), hand_pca(mirror_rotvecs(samples)))
    hands = (components_left, components_right, mean_left, mean_right)
    num_body_faces = len(fb)
    landmark_faces, landmark_weights, _ = nearest_triangles(
        face_landmark_points(field_x), x0, fx[:num_body_faces])
    contour = face_contour_points(field_x)
    contour_faces, contour_weights, _ = nearest_triangles(contour.reshape(-1, 3), x0,
                                                          fx[:num_body_faces])
    landmarks = {
        "lmk_faces_idx": landmark_faces.astype(np.int64),
        "lmk_bary_coords": landmark_weights,
        "dynamic_lmk_faces_idx": contour_faces.reshape(contour.shape[:2]).astype(np.int64),
        "dynamic_lmk_bary_coords": contour_weights.reshape(*contour.shape[:2], 3),
    }

    # Deformation transfer and mask: found between the two designed bodies.
    deftrafo, distance = deformation_transfer_matrix(x0, vh, fh)
    adjacency = neighbour_matrix(fx, len(x0))
    near_mouth = np.zeros(len(x0), bool)
    near_mouth[mouth_rim] = True
    near_mouth |= (adjacency @ near_mouth.astype(float)) > 0
    valid = (distance < 0.004) & ~near_mouth
    valid[eyeballs] = False

    smplh = _Model(vh, fh.astype(np.uint32), regressor_h, smplh_parents(),
                   weights_h[:, SMPLH_FROM_SMPLX] / weights_h[:, SMPLH_FROM_SMPLX].sum(
                       axis=1, keepdims=True),
                   posedirs_h, shapedirs_h, hands, {})
    smplx = _Model(vx, fx.astype(np.int32), regressor_x, smplx_parents(), weights_x,
                   posedirs_x, shapedirs_x, hands, landmarks)
    return _Models(smplh, smplx, deftrafo, np.flatnonzero(valid).astype(np.int64), x0)



# ----------------------------------------------------------------------------- writing

@dataclass(frozen=True)
class SyntheticKit:
    """Paths of a written synthetic kit (see write_synthetic_kit)."""
    root: Path
    body_models: Path             # holds smplh/ and smplx/ (smplx.create's model_path)
    smplh_npz: Path               # smplh/neutral/model.npz, AMASS codebase
    smplh_pkl: Path               # smplh/SMPLH_NEUTRAL.pkl, smplx codebase
    smplx_npz: Path
    smplx_pkl: Path
    deftrafo: Path                # transfer/smplh2smplx_deftrafo_setup.pkl
    mask: Path                    # transfer/smplx_mask_ids.npy
    amass: Path                   # AMASS SMPL-H root
    posescript_ids: Path          # posescript/ids_2_dataset_sequence_and_frame_index_100k.json
    posescript_human: Path        # posescript/posescript_human_6293.json
    posefix_human: Path           # posefix/posefix_human_6157.json
    posefix_pairs: Path           # posefix/pair_id_2_pose_ids.json
    posefix_ids: Path             # posefix/ids_2_dataset_sequence_and_frame_index_100k.json
    sequences: tuple              # AMASS files written, relative to `amass`


def kit_paths(root):
    """The SyntheticKit of a kit rooted at `root` (written or not)."""
    root = Path(root)
    models = root / "body_models"
    return dict(
        root=root, body_models=models,
        smplh_npz=models / "smplh" / "neutral" / "model.npz",
        smplh_pkl=models / "smplh" / "SMPLH_NEUTRAL.pkl",
        smplx_npz=models / "smplx" / "SMPLX_NEUTRAL.npz",
        smplx_pkl=models / "smplx" / "SMPLX_NEUTRAL.pkl",
        deftrafo=root / "transfer" / "smplh2smplx_deftrafo_setup.pkl",
        mask=root / "transfer" / "smplx_mask_ids.npy",
        amass=root / "amass",
        posescript_ids=root / "posescript" / "ids_2_dataset_sequence_and_frame_index_100k.json",
        posescript_human=root / "posescript" / "posescript_human_6293.json",
        posefix_human=root / "posefix" / "posefix_human_6157.json",
        posefix_pairs=root / "posefix" / "pair_id_2_pose_ids.json",
        posefix_ids=root / "posefix" / "ids_2_dataset_sequence_and_frame_index_100k.json")


def _write_npz(path, arrays):
    with atomic_write(path) as handle:
        np.savez(handle, **arrays)


def _write_pickle(path, contents):
    with atomic_write(path) as handle:
        pickle.dump(contents, handle, protocol=2)


def _write_json(path, contents):
    with atomic_write(path, "w") as handle:
        json.dump(contents, handle, indent=1)


def write_models(models, paths):
    """The four body-model files, the deformation transfer and the mask."""
    smplh, smplx = models.smplh, models.smplx
    amass_codebase = dict(smplh.arrays(sparse_regressor=False),
                          J=smplh.j_regressor @ smplh.v_template,
                          bs_style=np.array("lbs"), bs_type=np.array("lrotmin"))
    _write_npz(paths["smplh_npz"], amass_codebase)
    _write_pickle(paths["smplh_pkl"], dict(smplh.arrays(sparse_regressor=True),
                                           **smplh.hand_arrays(), bs_style="lbs",
                                           bs_type="lrotmin"))
    _write_npz(paths["smplx_npz"], dict(smplx.arrays(sparse_regressor=False),
                                        **smplx.hand_arrays()))
    _write_pickle(paths["smplx_pkl"], dict(smplx.arrays(sparse_regressor=True),
                                           **smplx.hand_arrays()))
    _write_pickle(paths["deftrafo"], {"mtx": models.deftrafo})
    with atomic_write(paths["mask"]) as handle:
        np.save(handle, models.mask_ids)


# AMASS-like subset folders: (subset, subject folder, file name) patterns.
_SUBSETS = (
    ("CMU", "{subject:02d}", "{subject:02d}_{trial:02d}_poses.npz"),
    ("BMLrub", "rub{subject:03d}", "{trial:04d}_{motion}_poses.npz"),
    ("KIT", "{subject}", "{motion}{trial:02d}_poses.npz"),
    ("MPI_HDM05", "bk", "HDM_bk_{motion}_{trial:02d}_120_poses.npz"),
    ("BMLmovi", "Subject_{subject}_F_MoSh", "Subject_{subject}_F_{trial}_poses.npz"),
)
AMASS_FRAMERATE = 60.0


def sequence_path(index, motion):
    """Relative AMASS path of the index-th synthetic sequence."""
    subset, subject, name = _SUBSETS[index % len(_SUBSETS)]
    values = dict(subject=3 + 7 * index, trial=1 + index // len(_SUBSETS), motion=motion)
    return f"{subset}/{subject.format(**values)}/{name.format(**values)}"


def ground_translations(smplh, poses, betas, headings, moving, framerate):
    """(T, 3) AMASS translations: feet on the ground (z = 0), walking along the heading."""
    import torch
    from .formats.body_models import BodyModelData
    from .body.lbs import BodyModel
    data = BodyModelData(kind="smplh", path=Path("synthetic"), v_template=smplh.v_template,
                         faces=smplh.faces.astype(np.int64), j_regressor=smplh.j_regressor,
                         parents=smplh.parents, weights=smplh.weights,
                         posedirs=smplh.posedirs, shapedirs=smplh.shapedirs,
                         num_shape_coeffs=NUM_SMPLH_BETAS)
    model = BodyModel(data, num_betas=NUM_SMPLH_BETAS, dtype=torch.float64)
    with torch.no_grad():
        vertices, _ = model(torch.as_tensor(poses).view(len(poses), 52, 3),
                            torch.as_tensor(betas)[None].expand(len(poses), -1))
    lowest = vertices[..., 2].min(dim=1).values.numpy()
    forward = np.stack([np.sin(headings), -np.cos(headings)], axis=1)   # the body faces -y
    speed = 1.2 if moving else 0.0
    path = np.cumsum(forward * speed / framerate, axis=0)
    return np.c_[path, -lowest + 0.002]


def write_amass(models, paths, seed, n_sequences, frames_per_sequence):
    """Synthetic AMASS SMPL-H sequences; returns their relative paths."""
    skeleton = design_skeleton()
    written = []
    for index in range(n_sequences):
        rng = _rng(seed, 100, index)
        motion = _MOTIONS[index % len(_MOTIONS)]
        poses, headings = synthetic_sequence(skeleton, motion, frames_per_sequence,
                                             AMASS_FRAMERATE, rng)
        betas = rng.normal(0.0, 0.7, NUM_SMPLH_BETAS)
        trans = ground_translations(models.smplh, poses, betas, headings, motion == "walk",
                                    AMASS_FRAMERATE)
        trans[:, :2] += rng.uniform(-1.0, 1.0, 2)
        dmpls = np.cumsum(rng.normal(0, 0.05, (frames_per_sequence, 8)), axis=0)
        relative = sequence_path(index, motion)
        _write_npz(paths["amass"] / relative, {
            "poses": poses.astype(np.float64), "trans": trans.astype(np.float64),
            "betas": betas, "gender": np.array(["male", "female"][index % 2]),
            "mocap_framerate": np.array(AMASS_FRAMERATE), "dmpls": dmpls})
        written.append((relative, poses))
    return written


def write_annotations(sequences, paths, seed):
    """PoseScript and PoseFix files pointing at frames of the synthetic sequences.

    About half of all frames get a pose id (random, sparse below 100,000); half of those
    carry a PoseScript-H description; pairs of poses (mostly a few frames apart in one
    sequence, some across sequences) make PoseFix, half of them with an instruction.
    """
    rng = _rng(seed, 200)
    frames = [(relative, frame) for relative, poses in sequences
              for frame in range(0, len(poses), 2)]
    ids = np.sort(rng.choice(100_000, len(frames), replace=False))
    location = {int(pose_id): frame for pose_id, frame in zip(ids, frames)}
    pose_of = {relative: poses for relative, poses in sequences}
    mapping = {str(pose_id): ["AMASS", relative, int(frame)]
               for pose_id, (relative, frame) in location.items()}

    def pose(pose_id):
        relative, frame = location[pose_id]
        return pose_of[relative][frame].reshape(52, 3)

    described = rng.choice(ids, len(ids) // 2, replace=False)
    posescript = {str(pose_id): [describe_pose(pose(int(pose_id)))]
                  for pose_id in np.sort(described)}
    by_sequence = {}
    for pose_id, (relative, _) in location.items():
        by_sequence.setdefault(relative, []).append(pose_id)
    pairs = []
    for members in by_sequence.values():
        for first, second in zip(members, members[3:]):
            pairs.append([first, second])
    for _ in range(len(pairs) // 3):
        first, second = rng.choice(ids, 2, replace=False)
        pairs.append([int(first), int(second)])
    order = rng.permutation(len(pairs))
    pairs = [pairs[k] for k in order]
    annotated = np.sort(rng.choice(len(pairs), len(pairs) // 2, replace=False))
    posefix = {str(pair): [describe_change(pose(pairs[pair][0]), pose(pairs[pair][1]))]
               for pair in annotated}
    _write_json(paths["posescript_ids"], mapping)
    _write_json(paths["posefix_ids"], mapping)
    _write_json(paths["posescript_human"], posescript)
    _write_json(paths["posefix_human"], posefix)
    _write_json(paths["posefix_pairs"], pairs)


def write_synthetic_kit(root: Path, seed: int = 0, n_sequences: int = 4,
                        frames_per_sequence: int = 60) -> SyntheticKit:
    """Write a complete synthetic kit under `root`, deterministically from `seed`.

    Layout (all in the official formats, see docs FORMATS.md):
        body_models/smplh/neutral/model.npz, body_models/smplh/SMPLH_NEUTRAL.pkl,
        body_models/smplx/SMPLX_NEUTRAL.npz, body_models/smplx/SMPLX_NEUTRAL.pkl,
        transfer/smplh2smplx_deftrafo_setup.pkl, transfer/smplx_mask_ids.npy,
        amass/<subset>/<subject>/<name>_poses.npz (n_sequences of frames_per_sequence),
        posescript/ids_2_dataset_sequence_and_frame_index_100k.json,
        posescript/posescript_human_6293.json, posefix/posefix_human_6157.json,
        posefix/pair_id_2_pose_ids.json, posefix/ids_2_dataset_sequence_and_frame_index_100k.json
    The body surfaces depend on the design only; the seed varies the SMPL-X differences,
    the blend shapes, the motions and the annotations.
    """
    if n_sequences < 1 or frames_per_sequence < 8:
        raise ValueError("a kit needs at least one sequence of at least 8 frames")
    paths = kit_paths(root)
    models = build_models(seed)
    write_models(models, paths)
    sequences = write_amass(models, paths, seed, n_sequences, frames_per_sequence)
    write_annotations(sequences, paths, seed)
    return SyntheticKit(**paths, sequences=tuple(relative for relative, _ in sequences))
