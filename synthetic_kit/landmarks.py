"""Points smplx reads from fixed places of the mesh: the keypoint vertices (a vertex order
that puts the right vertex at each id) and the face landmarks (points on the designed face)."""
import numpy as np

from .skeleton import FINGERS, LEFT, RIGHT, SMPLX_LEFT_EYE, SMPLX_RIGHT_EYE, finger_joint


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

