"""Which vertices the fit looks at: a loss subset per body part, and the Gauss-Newton sample.

A body part is the set of masked vertices whose largest skinning weight is one joint. Both
samples keep every part represented, so that every rotation stays well determined.
"""
import warnings

import numpy as np
import scipy.cluster.vq

# Vertices of each body part in the sample on which the Gauss-Newton matrix is built (16:
# as few steps as 24 on the kit's poses; 8 or 12: more steps on the tests' random model),
# and the most rows of a piece of a part (larger parts are cut into pieces, so that padding
# stays small).
GAUSS_NEWTON_PART_VERTICES = 16
GAUSS_NEWTON_ROWS = 24
# The sample's parts are split into this many blocks by the number of joints moving them,
# so that little of a block is padding.
GAUSS_NEWTON_BLOCKS = 3
# Metres a unit of skinning weight counts for when a part's vertices are clustered: vertices
# with other weights move otherwise, so they should not stand for one another.
SKIN_WEIGHT_SCALE = 0.1
# Pose correctives smaller than this (metres per unit of pose feature, i.e. below a
# micrometre for a 0.1 rad turn) are left out of a part's Gauss-Newton columns.
CORRECTIVE_FLOOR = 1e-5
# Each body part keeps at least this many vertices in a subset (when it has them), so that
# its rotation stays well determined however small the subset.
MIN_PART_VERTICES = 8

def subtree_matrix(parents):
    """(J, J) float64 array: [j, k] = 1 when joint j is k or one of its descendants."""
    in_subtree = np.eye(len(parents))
    for joint in range(len(parents)):
        ancestor = parents[joint]
        while ancestor >= 0:
            in_subtree[joint, ancestor] = 1.0
            ancestor = parents[ancestor]
    return in_subtree


def part_labels(weights):
    """(V,) body part of each vertex: the joint of its largest skinning weight."""
    return weights.argmax(1)


def stratified_subset(labels, size, rng):
    """Mask positions of a subset of about `size` vertices and their loss weights.

    Every body part keeps a share of the subset proportional to its size, at least
    MIN_PART_VERTICES (or all its vertices); a kept vertex weighs (part size / kept), so
    that the subset's loss estimates the mask's.
    """
    positions, weights = [], []
    for part in np.unique(labels):
        members = np.flatnonzero(labels == part)
        take = int(round(size * len(members) / len(labels)))
        take = min(len(members), max(take, MIN_PART_VERTICES))
        positions.append(rng.choice(members, take, replace=False))
        weights.append(np.full(take, len(members) / take))
    positions, weights = np.concatenate(positions), np.concatenate(weights)
    order = np.argsort(positions)
    return positions[order], weights[order]


def representatives(features, count, rng, rounds=10):
    """Cluster points into `count` groups (k-means) and pick one point per group.

    Args:
        features: (S, F) points; count: groups wanted; rng: numpy Generator.
    Returns:
        (K,) indices of the points picked (the member nearest its group's mean) and (K,)
        the size of each group; K = min(count, S), fewer if groups come out empty.
    """
    if len(features) <= count:
        return np.arange(len(features)), np.ones(len(features))
    with warnings.catch_warnings():             # an empty group is fine: it is dropped
        warnings.simplefilter("ignore", UserWarning)
        centres, nearest = scipy.cluster.vq.kmeans2(features, count, iter=rounds,
                                                    minit="points", seed=rng)
    picked, sizes = [], []
    for group in range(count):
        members = np.flatnonzero(nearest == group)
        if len(members):
            closest = ((features[members] - centres[group]) ** 2).sum(-1).argmin()
            picked.append(members[closest])
            sizes.append(len(members))
    return np.array(picked), np.array(sizes, dtype=np.float64)


def gauss_newton_sample(data, mask_ids, per_part, rng):
    """The vertices on which the Gauss-Newton matrix is built: a few per body part.

    Each part's masked vertices are clustered (k-means on the rest position and the
    skinning weights) into `per_part` groups (all its vertices when `per_part` is 0 or the
    part is smaller); the vertex nearest each group's mean stands for the group, weighted
    by its size, so that the sample's J^T J estimates the whole mask's. (A random sample of
    the same size estimates it too poorly: the fit then needs three times the steps.)

    Returns:
        a list, one entry per part: (its joint, mask positions (N_p,), weights (N_p,)).
    """
    weights = data.weights[mask_ids]
    labels = part_labels(weights)
    features = np.concatenate([data.v_template[mask_ids], SKIN_WEIGHT_SCALE * weights], axis=1)
    sample = []
    for part in np.unique(labels):
        members = np.flatnonzero(labels == part)
        taken, sizes = representatives(features[members],
                                       per_part if per_part > 0 else len(members), rng)
        sample.append((part, members[taken], sizes))
    return sample


def moving_joints(data, vertex_ids, slots):
    """Joints among `slots` that move some of `vertex_ids`: by skinning (a skinned joint
    or one of its ancestors) or by a pose corrective above CORRECTIVE_FLOOR."""
    reach = data.weights[vertex_ids] @ subtree_matrix(data.parents)
    correctives = np.abs(data.posedirs[vertex_ids]).reshape(len(vertex_ids), 3, -1, 9)
    corrected = np.concatenate([[False], correctives.max(axis=(0, 1, 3)) > CORRECTIVE_FLOOR])
    moves = (reach.max(0) > 0) | corrected
    return np.asarray([joint for joint in slots if moves[joint]], dtype=np.int64)
