"""Shape, expression and pose-corrective blend shapes."""
from dataclasses import dataclass

import numpy as np

from .skeleton import HAND_JOINTS, SMPLX_JAW, SMPLX_LEFT_EYE, SMPLX_RIGHT_EYE, per_joint


NUM_SMPL_BETAS, NUM_SMPLH_BETAS, NUM_SMPLX_BETAS, NUM_SMPLX_EXPRESSIONS = 10, 16, 300, 100
SIZE_PER_BETA = 0.04        # beta 0: relative size change per unit (~7 cm of height)
# Outward displacement of each part per unit of the girth shape coefficient (metres).
_GIRTH = per_joint({0: 0.022, (1, 2): 0.016, 3: 0.028, (4, 5): 0.009, 6: 0.025,
                    (7, 8): 0.004, 9: 0.020, (10, 11): 0.002, 12: 0.008, (13, 14): 0.012,
                    (15, SMPLX_JAW): 0.004, (16, 17): 0.011, (18, 19): 0.007,
                    (20, 21): 0.003, HAND_JOINTS: 0.0015})


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
_CORRECTIVE_SIZE = per_joint({tuple(range(22)): 0.004, (20, 21): 0.002, SMPLX_JAW: 0.0015,
                              (SMPLX_LEFT_EYE, SMPLX_RIGHT_EYE): 0.0, HAND_JOINTS: 0.0008})
_CORRECTIVE_REACH = per_joint({tuple(range(25)): 0.12, (15, SMPLX_JAW): 0.06, (20, 21): 0.05,
                               HAND_JOINTS: 0.025})


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

