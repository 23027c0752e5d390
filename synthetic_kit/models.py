"""Building the body models in memory: SMPL-H (the designed body) and SMPL-X (a denser
remesh of it with mouth, eyeballs and the differences of the real models), their blend
shapes, regressors, the deformation transfer and the mask."""
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from .blendshapes import (NUM_SMPLH_BETAS, NUM_SMPLX_BETAS, SmoothBasis, corrective_coefficients,
                          expression_directions, face_mask, follow_anchors, girth_field,
                          pose_directions, shape_directions, shape_mixing, shape_scales)
from .landmarks import (SMPLH_KEYPOINT_VERTICES, SMPLX_KEYPOINT_VERTICES, face_contour_points,
                        face_landmark_points, keypoint_order, keypoint_positions, reorder)
from .meshing import (EYEBALL_RADIUS, EYEBALL_RINGS, EYEBALL_SEGMENTS, marching_cubes_surface,
                      neighbour_matrix, open_mouth, part_spacing, remesh, uv_sphere,
                      vertex_normals)
from .motions import hand_pca, mirror_rotvecs, random_hand_poses
from .seeding import stream_rng
from .shapes import BodyField, body_tree
from .skeleton import (MIRRORED, SMPLH_FROM_SMPLX, SMPLX_JAW, SMPLX_LEFT_EYE, SMPLX_RIGHT_EYE,
                       design_skeleton, smplh_parents, smplx_parents)
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


def stream_rng(seed, *stream):
    """An independent random generator for one purpose, from the kit's seed."""
    return np.random.default_rng([seed, *stream])


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
    shifts = joint_shifts(stream_rng(seed, 1))
    displacement = (pelvis + SMPLX_SCALE * (x0 - pelvis) - x0
                    - SMPLX_THINNING * girth_field(weights_x, normals_x)
                    + 0.5 * weights_x @ shifts
                    + bump_field(x0, normals_x, weights_x, stream_rng(seed, 2)))
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
    coefficients_x = coefficients + 0.35 * corrective_coefficients(stream_rng(seed, 8))
    posedirs_h = pose_directions(vh, normals_h, weights_h, skeleton.joints, smplx_parents(),
                                 SMPLH_FROM_SMPLX, coefficients)
    posedirs_x = follow_anchors(
        pose_directions(x0, normals_x, weights_x, skeleton.joints, smplx_parents(),
                        np.arange(55), coefficients_x), anchors)

    # Hand PCA (unused with flat hands, but read by smplx), face landmarks.
    samples = random_hand_poses(skeleton, stream_rng(seed, 9), 2048)
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


