"""Skinning weights from the body parts, and joint regressors from the surface."""
import numpy as np
import scipy.spatial
from scipy.optimize import nnls

from .meshing import neighbour_matrix
from .skeleton import HAND_JOINTS, SMPLX_JAW, per_joint


# Softness of the skinning weights at each joint's part boundaries (metres).
_SOFTNESS = per_joint({tuple(range(25)): 0.014, (12, 15, SMPLX_JAW): 0.010,
                       (7, 8, 10, 11): 0.008, (20, 21): 0.007, HAND_JOINTS: 0.0025})


def skinning_weights(faces, distances, smoothing_passes, softness_scale=1.0, fixed=None):
    """(V, 55) skinning weights from each vertex's distance to every joint's parts.

    A vertex belongs mostly to the joint whose primitives it lies on; the others get
    exp(-excess distance / softness), so weights blend where parts meet (widely on the
    body, narrowly between fingers); what both thighs share goes to the pelvis. Then
    `smoothing_passes` rounds of averaging with the mesh neighbours, tiny weights dropped, rows normalised to 1.

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

