"""Building the body models in memory: SMPL-H (the designed body), SMPL-X (a denser remesh
of it with mouth, eyeballs and the differences of the real models, per variant) and SMPL
(the SMPL-H body with one joint per hand), each neutral, male and female; their blend
shapes and regressors; the six deformation transfers and the SMPL-X mask."""
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import scipy.sparse

from .blendshapes import (NUM_SMPL_BETAS, NUM_SMPLH_BETAS, NUM_SMPLX_BETAS, SmoothBasis,
                          corrective_coefficients, expression_directions, face_mask, follow_anchors, girth_field,
                          pose_directions, shape_directions, shape_mixing, shape_scales)
from .landmarks import (SMPLH_KEYPOINT_VERTICES, SMPLX_KEYPOINT_VERTICES, face_contour_points,
                        face_landmark_points, keypoint_order, keypoint_positions, reorder)
from .meshing import (EYEBALL_RADIUS, EYEBALL_RINGS, EYEBALL_SEGMENTS, marching_cubes_surface,
                      neighbour_matrix, open_mouth, part_spacing, remesh, uv_sphere,
                      vertex_normals)
from .motions import hand_pca, mirror_rotvecs, random_hand_poses
from .seeding import stream_rng
from .shapes import BodyField, body_tree
from .skeleton import (HAND_JOINTS, MIRRORED, SMPL_FROM_SMPLX, SMPLH_FROM_SMPLX, SMPLX_JAW, SMPLX_LEFT_EYE,
                       SMPLX_RIGHT_EYE, design_skeleton, smpl_parents, smplh_parents,
                       smplx_parents)
from .skinning import joint_regressor, skinning_weights
from .transfer import deformation_transfer_matrix, nearest_triangles


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


def joint_shifts(rng):
    """(55, 3) how far each SMPL-X joint sits from the SMPL-H one (mirror-symmetric)."""
    shifts = np.zeros((55, 3))
    centre_and_left = [0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 18, 20, SMPLX_JAW]
    shifts[centre_and_left] = rng.normal(0, SMPLX_JOINT_SHIFT, (len(centre_and_left), 3))
    shifts[[0, 3, 6, 9, 12, 15, SMPLX_JAW], 0] = 0.0
    shifts[25:40] = rng.normal(0, 0.0012, (15, 3))
    for right, left in MIRRORED.items():
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
    """Every model of a kit, by type and gender, the deformation transfers and the mask."""
    smplh: dict                  # {gender: _Model}
    smplx: dict
    smpl: dict
    transfers: dict              # {"smplh2smplx", ...: sparse (target V, 2 * source V)}
    mask_ids: np.ndarray         # SMPL-X vertices with a valid correspondence
    smplx_design: np.ndarray     # SMPL-X vertices before the SMPL-X differences


GENDERS = ("neutral", "male", "female")
MODEL_TYPES = ("smplh", "smplx", "smpl")
TRANSFERS = ("smpl2smplh", "smpl2smplx", "smplh2smpl", "smplh2smplx", "smplx2smpl",
             "smplx2smplh")


@dataclass(frozen=True)
class Proportions:
    """A gender's body as a smooth deformation of the neutral one, about the pelvis (y up):
    height scales y; width scales x by `shoulders` above the waist and by `hips` around the
    hips (smoothly in between, the arms follow the shoulders); depth scales z."""
    height: float
    shoulders: float
    hips: float
    depth: float

    def apply(self, points, pelvis):
        """(N, 3) points of the neutral body moved onto this gender's body."""
        relative = np.asarray(points) - pelvis
        y = relative[..., 1]
        upper = np.clip((y - 0.12) / 0.2, 0.0, 1.0)          # waist to chest
        upper = upper * upper * (3 - 2 * upper)
        hips = np.exp(-((y + 0.05) / 0.15) ** 2) * (1.0 - upper)
        width = 1.0 + (self.shoulders - 1.0) * upper + (self.hips - 1.0) * hips
        scale = np.stack([width, np.full_like(y, self.height),
                          np.full_like(y, self.depth)], axis=-1)
        return pelvis + relative * scale


PROPORTIONS = {"male": Proportions(height=1.045, shoulders=1.07, hips=0.97, depth=1.03),
               "female": Proportions(height=0.955, shoulders=0.94, hips=1.07, depth=0.97)}


def gendered(model, gender, pelvis):
    """The model of another gender: the same arrays on a re-proportioned template."""
    if gender == "neutral":
        return model
    return replace(model, v_template=PROPORTIONS[gender].apply(model.v_template, pelvis))


@dataclass(frozen=True)
class Differences:
    """How a variant's SMPL-X stand-in differs from its SMPL-H one.

    joint_shift: "gaussian" (per-axis sigma body_shift) or "ranged" (each body joint
        moved by a length drawn in body_shift_range, any direction); finger_shift: per-axis
        sigma of the finger joints' shifts (metres).
    surface_follow: fraction of the joint shifts the surface around each joint follows.
    skinning_passes, skinning_softness: SMPL-X's skinning smoothing and softness scale;
        finger_softness: the softness scale of its finger joints.
    corrective_mix: SMPL-X pose correctives = SMPL-H's coefficients + mix * new ones
        (None: all new ones), times corrective_scale (finger_corrective_scale for the
        finger joints').
    detail_bumps: small bumps on the hands and face (count each), on top of the body bumps.
    registered: the deformation transfer is found from the SMPL-X template itself to the
        SMPL-H surface (nearest points between registered templates that differ), rather
        than from the designed SMPL-X surface (where the correspondence is nearly exact);
        mask_distance: vertices farther than this from the SMPL-H surface are masked out.
    """
    joint_shift: str = "gaussian"
    body_shift: float = 0.0045
    body_shift_range: tuple = (0.01, 0.03)
    finger_shift: float = 0.0012
    surface_follow: float = 0.5
    skinning_passes: int = 5
    skinning_softness: float = 1.25
    finger_softness: float = 1.25
    corrective_mix: float = 0.35
    corrective_scale: float = 1.0
    finger_corrective_scale: float = 1.0
    detail_bumps: int = 0
    registered: bool = False
    mask_distance: float = 0.004


VARIANTS = {
    # SMPL-X a few millimetres off SMPL-H everywhere: a nearly constant error floor.
    "default": Differences(),
    # As far apart as the real models: joints 1 to 3 cm apart, fingers skinned more softly
    # with five times larger correctives, detailed hands and face, and a nearest-surface
    # correspondence between the two templates.
    "realistic": Differences(joint_shift="ranged", finger_shift=0.003, surface_follow=0.25,
                             finger_softness=5.0, finger_corrective_scale=5.0,
                             detail_bumps=40, registered=True, mask_distance=0.02),
}


@dataclass(frozen=True)
class Design:
    """The seed-independent designed meshes both models start from (see design())."""
    skeleton: object
    vh: np.ndarray                # (6890, 3) SMPL-H vertices, keypoint order
    fh: np.ndarray                # (13776, 3)
    distances_h: np.ndarray       # (6890, 55) distance to each joint's parts
    x0: np.ndarray                # (10475, 3) SMPL-X vertices on the designed surface
    fx: np.ndarray                # (20908, 3); body faces first, then the eyeballs
    num_body_faces: int
    distances_x: np.ndarray       # (10475, 55)
    mouth_rim: np.ndarray         # SMPL-X ids on the mouth opening's rim
    eye_ids: dict                 # {eye joint: SMPL-X ids of its eyeball}
    landmarks: dict               # smplx's landmark faces and barycentric weights


@lru_cache(maxsize=1)
def design():
    """Mesh the designed body for SMPL-H and SMPL-X (a few seconds, done once)."""
    skeleton = design_skeleton()
    field_h = BodyField(body_tree(skeleton, jaw_owner=15))
    field_x = BodyField(body_tree(skeleton, jaw_owner=SMPLX_JAW))
    dense_vertices, dense_faces = marching_cubes_surface(field_h, VOXEL)
    keypoints = keypoint_positions(skeleton)

    # SMPL-H: the designed body itself.
    vh, fh = remesh(field_h, dense_vertices, dense_faces, part_spacing(**SMPLH_SPACING),
                    NUM_SMPLH_VERTICES)
    vh, fh = reorder(vh, fh, keypoint_order(vh, SMPLH_KEYPOINT_VERTICES, keypoints))

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
    eye_ids = {eye: np.sort(inverse[ids]) for eye, ids in eye_ids.items()}

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
    return Design(skeleton, vh, fh, field_h.part_distances(vh), x0, fx,
                  num_body_faces, field_x.part_distances(x0), inverse[mouth_rim], eye_ids,
                  landmarks)


def ranged_joint_shifts(rng, lengths, finger_shift):
    """(55, 3) SMPL-X joint offsets (mirror-symmetric): each body joint and the jaw moved by
    a length drawn in `lengths` (metres) in a random direction (midline joints stay on
    the midline), the finger joints by per-axis Gaussians of sigma `finger_shift`."""
    shifts = np.zeros((55, 3))
    centre_and_left = [0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 18, 20, SMPLX_JAW]
    midline = [0, 3, 6, 9, 12, 15, SMPLX_JAW]
    directions = rng.normal(size=(55, 3))
    directions[midline, 0] = 0.0
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    length = rng.uniform(*lengths, 55)
    length[SMPLX_JAW] *= 0.4
    shifts[centre_and_left] = (directions * length[:, None])[centre_and_left]
    shifts[25:40] = rng.normal(0, finger_shift, (15, 3))
    for right, left in MIRRORED.items():
        shifts[right] = shifts[left] * (-1.0, 1.0, 1.0)
    shifts[40:55] = shifts[25:40] * (-1.0, 1.0, 1.0)
    shifts[[SMPLX_LEFT_EYE, SMPLX_RIGHT_EYE]] = shifts[15]
    return shifts


def detail_bumps(positions, normals, region, rng, count):
    """(V, 3) small bumps along the normals (0.5 to 1.5 mm, 6 to 15 mm wide) on the vertices
    where `region` (V,) is above one half: knuckles and creases, lips and cheeks."""
    candidates = np.flatnonzero(region > 0.5)
    centres = positions[rng.choice(candidates, count, replace=False)]
    widths = rng.uniform(0.006, 0.015, count)
    heights = rng.choice([-1.0, 1.0], count) * rng.uniform(0.0005, 0.0015, count)
    squared = np.sum((positions[:, None] - centres[None]) ** 2, axis=2)
    bumps = np.exp(-squared / (2 * widths ** 2)) @ heights
    return (bumps * np.clip(region, 0.0, 1.0))[:, None] * normals


def build_models(seed, variant="default"):
    """Both body models, the deformation transfer and the mask (numpy, in memory).

    variant: a key of VARIANTS, how far SMPL-X is from SMPL-H.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown synthetic kit variant {variant!r}; "
                         f"known: {', '.join(VARIANTS)}")
    differences = VARIANTS[variant]
    shared = design()
    skeleton = shared.skeleton
    pelvis = skeleton.joints[0]
    vh, fh, x0, fx, eye_ids = shared.vh, shared.fh, shared.x0, shared.fx, shared.eye_ids
    normals_h = vertex_normals(vh, fh)
    weights_h = skinning_weights(fh, shared.distances_h, smoothing_passes=3)

    eyeballs = np.concatenate(list(eye_ids.values()))
    body = np.setdiff1d(np.arange(len(x0)), eyeballs)
    normals_x = vertex_normals(x0, fx)
    softness = np.full(55, differences.skinning_softness)
    softness[list(HAND_JOINTS)] = differences.finger_softness
    if differences.finger_softness == differences.skinning_softness:
        softness = differences.skinning_softness
    weights_x = skinning_weights(fx, shared.distances_x,
                                 smoothing_passes=differences.skinning_passes,
                                 softness_scale=softness, fixed=eye_ids)
    anchors = []
    for eye, ids in eye_ids.items():
        near = np.linalg.norm(x0[body] - skeleton.joints[eye], axis=1) < 0.022
        anchors.append((ids, body[near]))

    # The SMPL-X differences: size, girth, joints, bumps.
    if differences.joint_shift == "gaussian":
        shifts = joint_shifts(stream_rng(seed, 1))
    else:
        shifts = ranged_joint_shifts(stream_rng(seed, 11), differences.body_shift_range,
                                     differences.finger_shift)
    displacement = (pelvis + SMPLX_SCALE * (x0 - pelvis) - x0
                    - SMPLX_THINNING * girth_field(weights_x, normals_x)
                    + differences.surface_follow * weights_x @ shifts
                    + bump_field(x0, normals_x, weights_x, stream_rng(seed, 2)))
    if differences.detail_bumps:
        hands = weights_x[:, [20, 21, *range(25, 55)]].sum(axis=1)
        face = face_mask(x0, weights_x)
        face[eyeballs] = 0.0
        displacement += (
            detail_bumps(x0, normals_x, hands, stream_rng(seed, 12), differences.detail_bumps)
            + detail_bumps(x0, normals_x, face, stream_rng(seed, 13), differences.detail_bumps))
    vx = x0 + follow_anchors(displacement, anchors)
    targets_x = pelvis + SMPLX_SCALE * (skeleton.joints - pelvis) + shifts

    # Joint regressors.
    regressor_h = joint_regressor(vh, skeleton.smplh_joints())
    regressor_x = joint_regressor(vx, targets_x, groups=eye_ids)

    # Shape and expression directions (a shared smooth basis), pose correctives.
    basis = SmoothBasis.draw(stream_rng(seed, 3), 64, 0.9)
    mixing = shape_mixing(stream_rng(seed, 4), NUM_SMPLX_BETAS, 64)
    scales = shape_scales(vh, basis, mixing)
    shapedirs_h = shape_directions(vh, normals_h, weights_h, basis, mixing[:NUM_SMPLH_BETAS],
                                   scales[:NUM_SMPLH_BETAS], pelvis)
    mixing_x = mixing + 0.1 * shape_mixing(stream_rng(seed, 5), NUM_SMPLX_BETAS, 64)
    shapedirs_x = np.concatenate([
        shape_directions(x0, normals_x, weights_x, basis, mixing_x, scales, pelvis),
        expression_directions(x0, face_mask(x0, weights_x), stream_rng(seed, 6))], axis=2)
    shapedirs_x = follow_anchors(shapedirs_x, anchors)
    coefficients = corrective_coefficients(stream_rng(seed, 7))
    if differences.corrective_mix is None:
        coefficients_x = corrective_coefficients(stream_rng(seed, 18))
    else:
        coefficients_x = coefficients + differences.corrective_mix * corrective_coefficients(
            stream_rng(seed, 8))
    posedirs_h = pose_directions(vh, normals_h, weights_h, skeleton.joints, smplx_parents(),
                                 SMPLH_FROM_SMPLX, coefficients)
    posedirs_x = follow_anchors(
        pose_directions(x0, normals_x, weights_x, skeleton.joints, smplx_parents(),
                        np.arange(55), coefficients_x), anchors)
    if differences.corrective_scale != 1.0:
        posedirs_x *= differences.corrective_scale
    if differences.finger_corrective_scale != 1.0:
        finger_features = (np.array(HAND_JOINTS)[:, None] - 1) * 9 + np.arange(9)
        posedirs_x[:, :, finger_features.ravel()] *= differences.finger_corrective_scale

    # Hand PCA (unused with flat hands, but read by smplx).
    samples = random_hand_poses(skeleton, stream_rng(seed, 9), 2048)
    (components_left, mean_left), (components_right, mean_right) = (
        hand_pca(samples), hand_pca(mirror_rotvecs(samples)))
    hands = (components_left, components_right, mean_left, mean_right)

    # SMPL: the SMPL-H body, each hand skinned to one joint amid the knuckles.
    weights_smpl, joints_smpl = weights_h.copy(), skeleton.joints.copy()
    for first, hand, smpl_joint in ((25, 28, 22), (40, 43, 23)):
        fingers = np.arange(first, first + 15)
        whole_hand = weights_smpl[:, fingers].sum(axis=1)
        weights_smpl[:, fingers] = 0.0
        weights_smpl[:, hand] = whole_hand
        joints_smpl[hand] = skeleton.smpl_joints()[smpl_joint]
    posedirs_smpl = pose_directions(vh, normals_h, weights_smpl, joints_smpl, smplx_parents(),
                                    SMPL_FROM_SMPLX, coefficients)
    regressor_smpl = np.concatenate(
        [regressor_h[:22], joint_regressor(vh, skeleton.smpl_joints()[22:])])
    weights_smpl = weights_smpl[:, SMPL_FROM_SMPLX]

    # Deformation transfers and mask: between the designed bodies, or the templates.
    source_x = vx if differences.registered else x0
    deftrafo, distance = deformation_transfer_matrix(source_x, vh, fh)
    adjacency = neighbour_matrix(fx, len(x0))
    near_mouth = np.zeros(len(x0), bool)
    near_mouth[shared.mouth_rim] = True
    near_mouth |= (adjacency @ near_mouth.astype(float)) > 0
    valid = (distance < differences.mask_distance) & ~near_mouth
    valid[eyeballs] = False
    to_smplh, _ = deformation_transfer_matrix(vh, source_x, fx[:shared.num_body_faces])
    between_smplh, _ = deformation_transfer_matrix(vh, vh, fh)     # SMPL and SMPL-H
    transfers = {"smplh2smplx": deftrafo, "smpl2smplx": deftrafo,
                 "smplx2smplh": to_smplh, "smplx2smpl": to_smplh,
                 "smplh2smpl": between_smplh, "smpl2smplh": between_smplh}

    smplh = _Model(vh, fh.astype(np.uint32), regressor_h, smplh_parents(),
                   weights_h[:, SMPLH_FROM_SMPLX] / weights_h[:, SMPLH_FROM_SMPLX].sum(
                       axis=1, keepdims=True),
                   posedirs_h, shapedirs_h, hands, {})
    smplx = _Model(vx, fx.astype(np.int32), regressor_x, smplx_parents(), weights_x,
                   posedirs_x, shapedirs_x, hands, dict(shared.landmarks))
    smpl = _Model(vh, fh.astype(np.uint32), regressor_smpl, smpl_parents(),
                  weights_smpl / weights_smpl.sum(axis=1, keepdims=True), posedirs_smpl,
                  shapedirs_h[:, :, :NUM_SMPL_BETAS], None, {})
    return _Models(
        smplh={gender: gendered(smplh, gender, pelvis) for gender in GENDERS},
        smplx={gender: gendered(smplx, gender, pelvis) for gender in GENDERS},
        smpl={gender: gendered(smpl, gender, pelvis) for gender in GENDERS},
        transfers=transfers, mask_ids=np.flatnonzero(valid).astype(np.int64), smplx_design=x0)
