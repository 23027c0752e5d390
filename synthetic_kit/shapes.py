"""The body as a signed distance field: ellipsoids, rounded cones and rounded boxes along
the skeleton, smoothly united in a construction tree, with separate fingers."""
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .skeleton import FINGERS, LEFT, SIDES, SMPLX_LEFT_EYE, SMPLX_RIGHT_EYE, finger_joint, \
    finger_radii


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
            radii = finger_radii(finger)
            segments = [(cone(points[s], points[s + 1], radii[s], radii[s + 1], ids[s]),
                         0.0 if s == 0 else 0.003) for s in range(3)]
            fingers.append((Blend("smooth", tuple(segments)), 0.007))
        hand = Blend("each", ((palm, 0.0), *fingers))
        parts += [(arm, 0.03), (leg, 0.028), (hand, 0.012)]
    return Blend("smooth", tuple(parts))

