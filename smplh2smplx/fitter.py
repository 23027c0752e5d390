"""Batched Levenberg-Marquardt fit of SMPL-X parameters to target vertices.

Every pose is an independent least-squares problem: minimise the squared distance between
the posed SMPL-X vertices and the target over the masked vertices, with respect to the
local joint rotations, the betas and the translation. Derivatives are analytic:

- rotations are updated by local left increments, R_k <- exp(e_k) R_k. Such an increment
  turns the whole subtree of joint k about the posed joint p_k by the world-frame vector
  W_parent(k) e_k, so the vertex derivative is -[a_ik]x W_parent(k), where a_ik sums the
  skinning-weighted offsets (G_j(x_i) - p_k) over the joints j of k's subtree; the pose
  correctives add their own term;
- betas enter the rest vertices and, through the joint regressor, every joint position;
- translation enters every vertex with the identity.

A step solves the damped Gauss-Newton system (J^T J + lambda D) step = -J^T r:

- the gradient J^T r is exact and costs about one forward pass: it is summed per joint as
  forces and torques (`_gradient`), never through a per-vertex Jacobian; products J v
  (`_jacobian_product`) cost as little;
- the system is solved by conjugate gradients on the exact J^T J (its products are
  J^T (J v)), preconditioned by J^T J built on a small sample of every body part
  (`gauss_newton_sample`, `_block_gauss_newton`), the only place a per-vertex Jacobian is
  formed. A step thus costs a few passes over the mask plus a fixed cost, and where the
  sample stands badly for the mask the fit needs no more steps.

Per-vertex arrays are vertex-major, (S, 3, B) with the batch last, so that every product
with the model's per-vertex arrays (skinning weights, blend shapes) is one matrix product
for the whole batch.

Each pose keeps its own damping, accepts or rejects its own steps and stops on its own;
poses that have stopped leave the batch, so one badly converging pose neither slows nor
spoils the others. By default the loss is the whole mask's from the first step; with
`fit_vertices` the first steps follow a weighted subset, then the whole mask. Errors are
always reported on the whole mask.
"""
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

import numpy as np
import roma
import torch

from .body_models import BodyModelData
from .lbs import forward_kinematics, kinematic_levels, skinning_transforms
from .threads import torch_threads


@dataclass(frozen=True)
class FitSettings:
    """Knobs of the fit; the defaults are the product's default setting.

    max_iterations: steps per pose (Jacobian evaluations) in the first phase.
    refine_iterations: further steps on the whole mask when the first phase follows a
        vertex subset (unused when fit_vertices is 0).
    tolerance: a pose has converged when a step lowers its loss by less than this fraction.
    fit_betas: fit the shape (the SMPL-H zero shape is not the SMPL-X zero shape).
    num_betas: shape coefficients fitted and written.
    fit_vertices: size of the vertex subset whose loss the first phase follows (0: the
        whole mask from the start).
    """
    max_iterations: int = 20
    refine_iterations: int = 3
    tolerance: float = 1e-3
    fit_betas: bool = True
    num_betas: int = 10
    fit_vertices: int = 0


@dataclass
class FitResult:
    """Fitted parameters and errors of a batch of B poses (CPU tensors).

    pose: (B, 55, 3) axis-angle local rotations, root first (SMPL-X joint order).
    betas: (B, num_betas); transl: (B, 3).
    v2v_mean_mm, v2v_max_mm: (B,) mean and max vertex error over the mask, in millimetres.
    iterations: (B,) steps computed (Jacobian evaluations); converged: (B,) bool.
    """
    pose: torch.Tensor
    betas: torch.Tensor
    transl: torch.Tensor
    v2v_mean_mm: torch.Tensor
    v2v_max_mm: torch.Tensor
    iterations: torch.Tensor
    converged: torch.Tensor


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
# Levenberg-Marquardt damping: the start, the factors on an accepted and a rejected step,
# the damped steps tried per iteration before the derivatives are computed again, and the
# damping beyond which a pose whose steps are all rejected is at a minimum.
INITIAL_DAMPING = 1e-3
DAMPING_DOWN, DAMPING_UP = 0.2, 10.0
MAX_ATTEMPTS = 4
MAX_DAMPING = 1e6
# Conjugate-gradient iterations per step: the first scales the sample's step to its best
# length, the second corrects its direction (the fit then takes as few steps as with the
# exact J^T J; with the first alone, up to twice as many on hard starts).
CG_ITERATIONS = 2
# Poses a CPU thread fits at once: larger slices spill the CPU caches (at 256 poses the fit
# runs 25% slower than at 64), smaller ones pay more per-operation overhead.
SLICE_POSES = 64
# Quantities of the working state whose batch dimension is the last one (vertex-major).
VERTEX_MAJOR = ("rest", "blended", "residual")


def skew(vectors):
    """(..., 3) vectors -> (..., 3, 3) cross-product matrices [v]x."""
    x, y, z = vectors.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).view(*x.shape, 3, 3)


def apply_vertex_major(matrices, vectors, plus=None):
    """sum_y M[:, x, y] v[:, y] (+ plus) for vertex-major (S, 3, 3, B) matrices and
    (S, 3, B) vectors: three fused multiply-adds, no (S, 3, 3, B) temporary."""
    result = matrices[:, :, 0] * vectors[:, 0, None]
    if plus is not None:
        result += plus
    for y in (1, 2):
        result.addcmul_(matrices[:, :, y], vectors[:, y, None])
    return result


def apply_transposed_vertex_major(matrices, vectors):
    """sum_x M[:, x, y] v[:, x]: the transposed product of `apply_vertex_major`."""
    out = matrices[:, 0] * vectors[:, 0, None]
    for x in (1, 2):
        out.addcmul_(matrices[:, x], vectors[:, x, None])
    return out


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
    centres = features[rng.choice(len(features), count, replace=False)]
    for _ in range(rounds):
        nearest = ((features[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        for group in range(count):
            members = features[nearest == group]
            if len(members):
                centres[group] = members.mean(0)
    nearest = ((features[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
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


class _VertexSet(torch.nn.Module):
    """Per-vertex constants of some of the masked vertices, for the loss and its gradient.

    positions: (S,) their indices into the mask. Each vertex carries a weight in the loss,
    (S,) `loss_weights`: 1 on the whole mask; on a subset, the number of masked vertices of
    its body part over the number kept.
    """

    def __init__(self, data, mask_ids, positions, loss_weights, num_betas, dtype):
        super().__init__()
        self.positions = positions
        ids = mask_ids[positions]

        def buffer(name, array):
            self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(array), dtype=dtype))

        buffer("v_template", data.v_template[ids])
        # (S*3, nb + 9(J-1)): shape and pose blend shapes side by side, so that both
        # offsets are one product with the coefficients [betas | pose features].
        buffer("blend_dirs", np.concatenate(
            [data.shapedirs[ids, :, :num_betas], data.posedirs[ids]], axis=2).reshape(
                len(ids) * 3, -1))
        buffer("weights", data.weights[ids])
        buffer("loss_weights", loss_weights)
        self.weighted = not np.all(loss_weights == 1.0)


class _PartBlock(torch.nn.Module):
    """Constants of some body parts of the Gauss-Newton sample, padded to common sizes.

    A part (the masked vertices whose largest skinning weight is one joint) moves with
    only K joints: the ancestors of the joints it is skinned to, and the joints whose pose
    correctives move it. Its Jacobian is dense over 3K rotation columns plus the shared
    betas and translation columns, and zero elsewhere. The G parts of a block are padded
    to N rows, K moving joints and W skinned joints; padding has zero weight, and padded
    columns go to a spare column of the matrix that is dropped. Row weights (the sample
    weights' square roots) are folded into the per-row constants.
    """

    def __init__(self, data, mask_ids, parts, slots, num_unknowns, shared, num_betas, dtype):
        super().__init__()
        in_subtree = subtree_matrix(data.parents)
        column_of = np.full(data.num_joints, -1)
        column_of[slots] = 3 * np.arange(len(slots))
        rows = max(len(positions) for _, positions, _, _ in parts)
        num_moving = max(len(moving) for _, _, _, moving in parts)
        skinned = [np.flatnonzero(data.weights[mask_ids[positions]].max(0) > 0)
                   for _, positions, _, _ in parts]
        num_skinned = max(len(joints) for joints in skinned)
        num_parts = len(parts)
        self.shape = (num_parts, rows, num_moving)
        ids = np.zeros((num_parts, rows), dtype=np.int64)
        scale = np.zeros((num_parts, rows))
        primary = np.zeros(num_parts, dtype=np.int64)
        moving_ids = np.zeros((num_parts, num_moving), dtype=np.int64)
        skinned_ids = np.zeros((num_parts, num_skinned), dtype=np.int64)
        mix = np.zeros((num_parts, rows, num_skinned, num_moving))
        reach = np.zeros((num_parts, rows, num_moving))
        skin = np.zeros((num_parts, rows, num_skinned))
        posedirs = np.zeros((num_parts, num_moving, 9, 3, rows))
        columns = np.full((num_parts, 3 * num_moving + len(shared)), num_unknowns)
        for part, ((joint, positions, weights, moving), skin_joints) in enumerate(
                zip(parts, skinned)):
            count = len(positions)
            ids[part, :count] = mask_ids[positions]
            ids[part, count:] = mask_ids[positions[0]]
            scale[part, :count] = np.sqrt(weights)
            vertex_weights = data.weights[ids[part, :count]]
            primary[part] = joint
            moving_ids[part, :len(moving)] = moving
            skinned_ids[part, :len(skin_joints)] = skin_joints
            row_scale = scale[part, :count, None]
            part_weights = vertex_weights[:, skin_joints] * row_scale
            skin[part, :count, :len(skin_joints)] = part_weights
            # mix[n, w, k] = weight of skinned joint w if it lies in the subtree of joint k.
            mix[part, :count, :len(skin_joints), :len(moving)] = (
                part_weights[:, :, None] * in_subtree[skin_joints][:, moving][None])
            reach[part, :count, :len(moving)] = (vertex_weights @ in_subtree)[:, moving] * row_scale
            # (K, 9, 3, N): correctives of the moving joints (the root has none).
            correctives = np.concatenate(
                [np.zeros((count, 3, 1, 9)), data.posedirs[ids[part, :count]].reshape(
                    count, 3, -1, 9)], axis=2)[:, :, moving] * row_scale[:, :, None, None]
            posedirs[part, :len(moving), :, :, :count] = correctives.transpose(2, 3, 1, 0)
            columns[part, :3 * len(moving)] = (column_of[moving][:, None] + np.arange(3)).ravel()
            columns[part, 3 * num_moving:] = shared
        size = num_unknowns + 1

        def index(name, array):
            self.register_buffer(name, torch.as_tensor(array, dtype=torch.int64))

        def buffer(name, array):
            self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(array), dtype=dtype))

        index("primary", primary)
        index("moving", moving_ids)
        index("skinned", skinned_ids)
        # Where each entry of a part's J^T J goes in the (P + 1)^2 flattened matrix.
        index("flat_index", (columns[:, :, None] * size + columns[:, None, :]).ravel())
        flat_ids = ids.ravel()
        buffer("v_template", data.v_template[flat_ids])
        buffer("blend_dirs", np.concatenate(
            [data.shapedirs[flat_ids, :, :num_betas], data.posedirs[flat_ids]], axis=2).reshape(
                len(flat_ids) * 3, -1))
        buffer("part_shapedirs",                                           # (G, nb, 3, N)
               data.shapedirs[ids, :, :num_betas].transpose(0, 3, 2, 1))
        buffer("mix", mix)
        buffer("reach", reach.transpose(0, 2, 1))                          # (G, K, N)
        buffer("skin", skin)
        buffer("part_posedirs", posedirs.reshape(num_parts * num_moving, 9, rows * 3))
        buffer("row_scale", scale)


class SmplxFitter(torch.nn.Module):
    """Fits SMPL-X to batches of target vertices on the masked vertex ids.

    Args:
        data: the SMPL-X model arrays.
        mask_ids: (M,) SMPL-X vertex ids with a valid correspondence.
        settings: `FitSettings`.
        dtype: floating type of the model buffers and the Jacobian (steps are solved in
            float64).
        gauss_newton_part_vertices: vertices of each body part on which the Gauss-Newton
            matrix is built (0: every masked vertex).
    Use `.to(device)` to move it; `fit` then runs where the buffers are.
    """

    def __init__(self, data: BodyModelData, mask_ids, settings=FitSettings(), dtype=torch.float32,
                 gauss_newton_part_vertices=GAUSS_NEWTON_PART_VERTICES):
        super().__init__()
        self.settings = settings
        self.parents = data.parents.copy()
        self.levels = kinematic_levels(self.parents)
        nb = settings.num_betas
        mask_ids = np.asarray(mask_ids, dtype=np.int64)
        self.register_buffer("mask_ids", torch.as_tensor(mask_ids))

        # Joints that move masked vertices; the others (the eyes) keep their initial value.
        # Unknowns: [3 per active joint (local rotation increment) | betas | translation].
        in_subtree = subtree_matrix(self.parents)
        reach = data.weights[mask_ids] @ in_subtree
        self.joint_slots = np.flatnonzero(reach.sum(0) > 1e-3)
        num_rot = 3 * len(self.joint_slots)
        self.num_unknowns = num_rot + (nb if settings.fit_betas else 0) + 3
        shared = np.arange(num_rot, self.num_unknowns)

        rng = np.random.default_rng(0)
        num_masked = len(mask_ids)
        self.mask_set = _VertexSet(data, mask_ids, np.arange(num_masked), np.ones(num_masked),
                                   nb, dtype)
        subset = settings.fit_vertices
        if 0 < subset < num_masked:
            positions, loss_weights = stratified_subset(
                part_labels(data.weights[mask_ids]), subset, rng)
            self.fit_set = _VertexSet(data, mask_ids, positions, loss_weights, nb, dtype)
        else:
            self.fit_set = self.mask_set
        pieces = []
        for joint, positions, weights in gauss_newton_sample(
                data, mask_ids, gauss_newton_part_vertices, rng):
            for rows in np.array_split(np.arange(len(positions)),
                                       -(-len(positions) // GAUSS_NEWTON_ROWS)):
                pieces.append((joint, positions[rows], weights[rows], moving_joints(
                    data, mask_ids[positions[rows]], self.joint_slots)))
        pieces.sort(key=lambda piece: len(piece[3]))
        self.blocks = torch.nn.ModuleList(
            _PartBlock(data, mask_ids, [pieces[i] for i in chunk], self.joint_slots,
                       self.num_unknowns, shared, nb, dtype)
            for chunk in np.array_split(np.arange(len(pieces)), GAUSS_NEWTON_BLOCKS)
            if len(chunk))

        def buffer(name, array):
            self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(array), dtype=dtype))

        shapedirs = data.shapedirs[:, :, :nb]
        buffer("joint_template", data.j_regressor @ data.v_template)
        buffer("joint_shapedirs", np.einsum("jv,vcs->jcs", data.j_regressor, shapedirs))
        buffer("in_subtree", in_subtree)
        buffer("template_weights", data.weights)
        buffer("template_vertices", data.v_template)

    # ----------------------------------------------------------------- forward model

    def _rest_joints(self, betas):
        return self.joint_template + torch.einsum("jcs,bs->bjc", self.joint_shapedirs, betas)

    def _kinematics(self, rotmats, betas):
        """Per-joint quantities of a batch, batch first: the rotations and betas given,
        world rotations (B, J, 3, 3) and joints (B, J, 3), skinning translations
        t_j = p_j - R_j J_j (B, J, 3) and pose features (B, 9(J-1)), R - I of every
        non-root joint."""
        batch = rotmats.shape[0]
        rest_joints = self._rest_joints(betas)
        world_rot, world_joints = forward_kinematics(rotmats, rest_joints, self.parents,
                                                     self.levels)
        identity = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        return dict(rotmats=rotmats, betas=betas, world_rot=world_rot, world_joints=world_joints,
                    trans=skinning_transforms(world_rot, world_joints, rest_joints)[1],
                    features=(rotmats[:, 1:] - identity).reshape(batch, -1))

    def _rest_vertices(self, vset, betas, features):
        """(S, 3, B) rest-pose vertices of `vset` with shape and pose blend shapes."""
        coefficients = torch.cat([betas, features], dim=1).T
        return vset.v_template[..., None] + (vset.blend_dirs @ coefficients).view(
            -1, 3, len(betas))

    def _pose(self, vset, rotmats, betas, transl):
        """Posed vertices (S, 3, B) of `vset` and the intermediates the derivatives need."""
        batch, num_joints = rotmats.shape[:2]
        state = self._kinematics(rotmats, betas)
        rest = self._rest_vertices(vset, betas, state["features"])
        rotations = state["world_rot"].permute(1, 2, 3, 0).reshape(num_joints, 9 * batch)
        blended = (vset.weights @ rotations).view(-1, 3, 3, batch)
        shifts = state["trans"].permute(1, 2, 0).reshape(num_joints, 3 * batch)
        vertices = apply_vertex_major(
            blended, rest, (vset.weights @ shifts).view(-1, 3, batch) + transl.T)
        state.update(transl=transl, rest=rest, blended=blended)
        return vertices, state

    def posed_vertices(self, rotmats, betas, transl):
        """(B, M, 3) posed SMPL-X vertices on the mask, in mask order."""
        return self._pose(self.mask_set, rotmats, betas, transl)[0].permute(2, 0, 1)

    # ----------------------------------------------------------------- derivatives

    def _shape_joint_jacobian(self, world_rot):
        """(B, J, 3, nb): derivative of the skinning translations t_j = p_j - R_j J_j
        with respect to the betas (the joints move with the shape)."""
        joint_dirs = self.joint_shapedirs.expand(world_rot.shape[0], -1, -1, -1)
        djoints = torch.empty_like(joint_dirs)
        djoints[:, 0] = joint_dirs[:, 0]
        for level in self.levels[1:]:
            parent = self.parents[level]
            djoints[:, level] = djoints[:, parent] + world_rot[:, parent] @ (
                joint_dirs[:, level] - joint_dirs[:, parent])
        return djoints - world_rot @ joint_dirs

    def _parent_rotations(self, world_rot):
        """(B, J, 3, 3) world rotation of each joint's parent (identity for the root): an
        increment e of joint k turns its subtree by the world vector parent_rot[k] e."""
        batch = world_rot.shape[0]
        eye = torch.eye(3, dtype=world_rot.dtype, device=world_rot.device)
        return torch.cat([eye.expand(batch, 1, 3, 3), world_rot[:, self.parents[1:]]], 1)

    def _gradient(self, vset, state):
        """J^T W r (B, P) for the vertices of `vset`, W their loss weights, r the state's
        residual (S, 3, B).

        Rotation k: sum_i a_ik x r_i = sum over k's subtree of the joint torques
        sum_i w_ij G_j(x_i) x r_i, less p_k x the subtree's force sum_i w_ij r_i; the
        torques come from the per-joint moments sum_i w_ij x_i r_i^T. Pose correctives and
        betas go through the rest-space residual u_i = B_i^T r_i (B_i: blended rotation).
        """
        residual = state["residual"]
        num_vertices, _, batch = residual.shape
        world_rot, world_joints = state["world_rot"], state["world_joints"]
        if vset.weighted:
            residual = residual * vset.loss_weights[:, None, None]
        weights_t = vset.weights.T
        forces = (weights_t @ residual.reshape(num_vertices, -1)).view(-1, 3, batch)
        outer = state["rest"][:, :, None] * residual[:, None]                  # x_d r_p
        moments = (weights_t @ outer.view(num_vertices, -1)).view(-1, 3, 3, batch)
        forces, moments = forces.permute(2, 0, 1), moments.permute(3, 0, 1, 2)
        turned = world_rot @ moments                                           # sum w (R x) r^T
        torques = torch.stack([turned[..., 1, 2] - turned[..., 2, 1],
                               turned[..., 2, 0] - turned[..., 0, 2],
                               turned[..., 0, 1] - turned[..., 1, 0]], dim=-1)
        torques = torques + torch.linalg.cross(state["trans"], forces, dim=-1)
        subtree_torques = torch.einsum("jk,bjc->bkc", self.in_subtree, torques)
        subtree_forces = torch.einsum("jk,bjc->bkc", self.in_subtree, forces)
        about_joint = subtree_torques - torch.linalg.cross(world_joints, subtree_forces, dim=-1)
        parent_rot = self._parent_rotations(world_rot)
        rot_grad = (parent_rot.transpose(-1, -2) @ about_joint[..., None]).squeeze(-1)

        rest_residual = apply_transposed_vertex_major(state["blended"], residual)   # B_i^T r_i
        blend_grad = (vset.blend_dirs.T @ rest_residual.view(-1, batch)).T    # (B, nb + 9(J-1))
        nb = self.settings.num_betas
        # Pose correctives: feature f_k = vec(R_k - I), d vec(R_k) / d e_a = vec([e_a]x R_k).
        eye = torch.eye(3, dtype=residual.dtype, device=residual.device)
        dfeat = (skew(eye) @ state["rotmats"][:, 1:, None]).reshape(batch, -1, 3, 9)
        rot_grad[:, 1:] += (dfeat @ blend_grad[:, nb:].reshape(batch, -1, 9, 1)).squeeze(-1)

        parts = [rot_grad[:, self.joint_slots].reshape(batch, -1)]
        if self.settings.fit_betas:
            per_joint = self._shape_joint_jacobian(world_rot)
            parts.append(blend_grad[:, :nb] + torch.einsum("bjcs,bjc->bs", per_joint, forces))
        parts.append(forces.sum(1))
        return torch.cat(parts, dim=1)

    def _jacobian_product(self, vset, state, step):
        """J v (S, 3, B): how the posed vertices of `vset` move along a step v (B, P).

        The forward-mode counterpart of `_gradient`: increment e_k turns k's subtree by
        w_k = W_parent(k) e_k, so joint j's frame turns by the sum W_j of the w_k of k
        on the path from the root to j, its position moves by the turns of its strict
        ancestors, w_k x (p_j - p_k), and its skinning translation t_j = p_j - R_j J_j
        by dp_j - W_j x (p_j - t_j); pose correctives and betas move the rest vertices.
        """
        rotmats, world_rot = state["rotmats"], state["world_rot"]
        world_joints = state["world_joints"]
        batch, num_joints = rotmats.shape[:2]
        num_rot = 3 * len(self.joint_slots)
        increments = step.new_zeros(batch, num_joints, 3)
        increments[:, self.joint_slots] = step[:, :num_rot].view(batch, -1, 3)
        turns = (self._parent_rotations(world_rot) @ increments[..., None]).squeeze(-1)
        frames = torch.einsum("jk,bkc->bjc", self.in_subtree, turns)          # W_j
        about_origin = torch.linalg.cross(turns, world_joints, dim=-1)         # w_k x p_k
        joint_motion = (torch.linalg.cross(frames - turns, world_joints, dim=-1)
                        - torch.einsum("jk,bkc->bjc", self.in_subtree, about_origin)
                        + about_origin)
        shifts = joint_motion - torch.linalg.cross(frames, world_joints - state["trans"], dim=-1)
        nb = self.settings.num_betas
        feature_motion = (skew(increments[:, 1:]) @ rotmats[:, 1:]).reshape(batch, -1)
        if self.settings.fit_betas:
            shape_step = step[:, num_rot:num_rot + nb]
            shifts = shifts + (self._shape_joint_jacobian(world_rot) @ shape_step[:, None, :, None]
                               ).squeeze(-1)
        else:
            shape_step = step.new_zeros(batch, nb)
        rest_motion = (vset.blend_dirs @ torch.cat([shape_step, feature_motion], 1).T).view(
            -1, 3, batch)
        turning = (vset.weights @ (skew(frames) @ world_rot).permute(1, 2, 3, 0).reshape(
            num_joints, -1)).view(-1, 3, 3, batch)                             # sum w [W_j]x R_j
        motion = (vset.weights @ shifts.permute(1, 2, 0).reshape(num_joints, -1)).view(
            -1, 3, batch) + step[:, -3:].T
        return apply_vertex_major(state["blended"], rest_motion,
                                  apply_vertex_major(turning, state["rest"], motion))

    def _gauss_newton(self, state):
        """J^T J (B, P, P) on the Gauss-Newton sample, at the state's parameters.

        Exact when every sample vertex with pose correctives is skinned to its part's joint
        alone (see `_block_gauss_newton`); J is built part by part over each part's own
        columns, for a block of parts at once, and never held whole.
        """
        rotmats = state["rotmats"]
        batch = rotmats.shape[0]
        eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        # d vec(R_k) / d e_c = vec([e_c]x R_k) for every joint: (B, J, c, 9).
        dfeat = (skew(eye) @ rotmats[:, :, None]).flatten(-2)
        per_joint = (self._shape_joint_jacobian(state["world_rot"]) if self.settings.fit_betas
                     else None)
        size = self.num_unknowns + 1                        # the last column takes the padding
        hessian = rotmats.new_zeros(batch, size * size)
        for block in self.blocks:
            hessian.index_add_(1, block.flat_index,
                               self._block_gauss_newton(block, state, dfeat, per_joint))
        return hessian.view(batch, size, size)[:, :-1, :-1]

    def _block_gauss_newton(self, block, state, dfeat, per_joint):
        """(B, G*C*C): J_g^T J_g of each part g of `block`, C = its columns.

        The rows of a part are turned by U^T, U the world rotation of the part's joint,
        which leaves J^T J unchanged. Then rotation column (k, c) of vertex i is
        t_kc x a'_ik (t_kc = U^T W_parent(k) e_c, a'_ik = U^T a_ik) plus the pose
        correctives U^T B_i posedirs_ik d vec(R_k) / d e_c, taken with U^T B_i = I (B_i:
        the vertex's blended rotation): exact for a vertex skinned to the part's joint
        alone, and close for the others, whose correctives are small. This way the
        correctives of all poses are one matrix product per part and joint.
        """
        betas, world_rot = state["betas"], state["world_rot"]
        batch = betas.shape[0]
        num_parts, rows, num_moving = block.shape
        turn = world_rot[:, block.primary].transpose(-1, -2)                 # (B, G, 3, 3) U^T
        # Skinned joints' transforms seen from the part's joint: U^T R_w, U^T t_w.
        turned = turn[:, :, None] @ world_rot[:, block.skinned]              # (B, G, W, 3, 3)
        shifted = (turn[:, :, None] @ state["trans"][:, block.skinned, :, None]).squeeze(-1)
        rest = self._rest_vertices(block, betas, state["features"]).view(
            num_parts, rows, 3, batch)
        points = torch.einsum("bgwxy,gnyb->bgnwx", turned, rest) + shifted[:, :, None]
        joints = (turn[:, :, None] @ state["world_joints"][:, block.moving, :, None]).squeeze(-1)
        levers = (torch.einsum("gnwk,bgnwx->bgkxn", block.mix, points)
                  - block.reach[:, :, None] * joints[..., None])                # (B, G, K, 3, N)
        parent_rot = self._parent_rotations(world_rot)[:, block.moving]
        axes = parent_rot.transpose(-1, -2) @ turn.transpose(-1, -2)[:, :, None]  # rows t_kc

        # J^T of each part, its rows (J's columns) ordered [rotations | betas | translation]
        # and its columns (J's rows) coordinate-major, x then n.
        num_columns = 3 * num_moving + (betas.shape[1] if per_joint is not None else 0) + 3
        jac_t = betas.new_empty(batch, num_parts, num_columns, 3 * rows)
        rot = jac_t[:, :, :3 * num_moving].view(batch, num_parts, num_moving, 3, 3, rows)
        corrective = torch.bmm(
            dfeat[:, block.moving].permute(1, 2, 0, 3, 4).reshape(-1, batch * 3, 9),
            block.part_posedirs)                                           # (G*K, 3B, 3N)
        rot.copy_(corrective.view(num_parts, num_moving, batch, 3, 3, rows)
                  .permute(2, 0, 1, 3, 4, 5))
        # (t x a)_x = t_y a_z - t_z a_y, for the three x at once.
        after, before = [1, 2, 0], [2, 0, 1]
        rot.addcmul_(axes[..., after, None], levers[:, :, :, None, before])
        rot.addcmul_(axes[..., before, None], levers[:, :, :, None, after], value=-1.0)
        if per_joint is not None:
            # U^T (B_i shapedirs_i + sum_j w_ij dt_j/dbetas), B_i = sum_j w_ij R_j.
            blended = torch.einsum("gnw,bgwxy->bgxyn", block.skin, turned)
            shape = sum(blended[:, :, None, :, y] * block.part_shapedirs[:, :, None, y]
                        for y in range(3))
            shape = shape + torch.einsum("gnw,bgwxs->bgsxn", block.skin,
                                         turn[:, :, None] @ per_joint[:, block.skinned])
            jac_t[:, :, 3 * num_moving:-3].view(batch, num_parts, -1, 3, rows).copy_(shape)
        # Translation: U^T on every row.
        jac_t[:, :, -3:].view(batch, num_parts, 3, 3, rows).copy_(
            turn.transpose(-1, -2)[..., None] * block.row_scale[:, None, None])
        jac_t = jac_t.view(batch * num_parts, num_columns, rows * 3)
        return torch.bmm(jac_t, jac_t.transpose(1, 2)).view(batch, -1)

    # ----------------------------------------------------------------- optimisation

    def _apply_step(self, rotmats, betas, transl, step):
        """Unknowns after a step laid out as [rotations | betas | translation]."""
        num_rot = 3 * len(self.joint_slots)
        rotmats = rotmats.clone()
        increments = roma.rotvec_to_rotmat(step[:, :num_rot].reshape(len(step), -1, 3))
        rotmats[:, self.joint_slots] = increments @ rotmats[:, self.joint_slots]
        if self.settings.fit_betas:
            betas = betas + step[:, num_rot:-3]
        return rotmats, betas, transl + step[:, -3:]

    def _evaluate(self, vset, targets, rotmats, betas, transl):
        """The working state of parameters: the parameters, their forward intermediates,
        the residual (S, 3, B) against `targets` (S, 3, B) and the weighted loss (B,)."""
        vertices, state = self._pose(vset, rotmats, betas, transl)
        residual = vertices - targets
        squared = (residual ** 2).sum(1)
        state.update(residual=residual,
                     loss=(vset.loss_weights @ squared) if vset.weighted else squared.sum(0))
        return state

    @staticmethod
    def _rows(state, index):
        """The state of the poses `index` (the batch is last in vertex-major entries)."""
        return {key: value[..., index] if key in VERTEX_MAJOR else value[index]
                for key, value in state.items()}

    @staticmethod
    def _assign(state, rows, new, index):
        """state's poses `rows` <- new's poses `index`, in place."""
        for key, value in state.items():
            if key in VERTEX_MAJOR:
                value[..., rows] = new[key][..., index]
            else:
                value[rows] = new[key][index]

    def _step(self, vset, state, chol, scaled, gradient):
        """The damped Gauss-Newton step (B, P): (J^T W J + lambda D) step = -g.

        Solved by conjugate gradients on the exact J^T W J (products with it through
        `_jacobian_product` and `_gradient`), preconditioned by the sample's system whose
        Cholesky factor is `chol` (B, P, P); scaled: (B, P) lambda D. Started from 0, the
        first iterate is the step of the sample's system scaled to its best length; the
        next ones correct what the sample gets wrong.
        """
        def precondition(vector):
            return torch.cholesky_solve(vector[..., None], chol).squeeze(-1)

        step = torch.zeros_like(gradient)
        remainder = -gradient
        preconditioned = precondition(remainder)
        direction = preconditioned
        product = (remainder * preconditioned).sum(1)
        dtype = state["rest"].dtype
        for iteration in range(CG_ITERATIONS):
            motion = self._jacobian_product(vset, state, direction.to(dtype))
            image = self._gradient(vset, dict(state, residual=motion)).double() + scaled * direction
            length = product / (direction * image).sum(1)
            step = step + length[:, None] * direction
            if iteration == CG_ITERATIONS - 1:
                break
            remainder = remainder - length[:, None] * image
            preconditioned = precondition(remainder)
            new_product = (remainder * preconditioned).sum(1)
            direction = preconditioned + (new_product / product)[:, None] * direction
            product = new_product
        return step

    def _solve(self, vset, targets, rotmats, betas, transl, iterations):
        """Levenberg-Marquardt following the loss on `vset`; targets (S, 3, B) in its order.

        Works on the poses still iterating only; returns the new rotations, betas and
        translations, the steps spent and whether each pose converged.
        """
        batch = rotmats.shape[0]
        device = rotmats.device
        tolerance = self.settings.tolerance
        rotmats, betas, transl = rotmats.clone(), betas.clone(), transl.clone()
        spent = torch.zeros(batch, dtype=torch.int64, device=device)
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        if iterations <= 0 or batch == 0:
            return rotmats, betas, transl, spent, done
        active = torch.arange(batch, device=device)            # the poses still iterating
        state = self._evaluate(vset, targets, rotmats.clone(), betas.clone(), transl.clone())
        damping = torch.full((batch,), INITIAL_DAMPING, dtype=torch.float64, device=device)
        for _ in range(iterations):
            spent[active] += 1
            gradient = self._gradient(vset, state).double()
            hessian = self._gauss_newton(state).double()
            diagonal = torch.diagonal(hessian, dim1=1, dim2=2)
            floor = 1e-6 * diagonal.mean(1, keepdim=True)
            count = len(active)
            accepted = torch.zeros(count, dtype=torch.bool, device=device)
            small = torch.zeros(count, dtype=torch.bool, device=device)
            pending = torch.arange(count, device=device)
            # Retry rejected steps with more damping, reusing the same derivatives.
            for _attempt in range(MAX_ATTEMPTS):
                scaled = damping[pending, None] * (diagonal[pending] + floor[pending])
                chol, info = torch.linalg.cholesky_ex(hessian[pending] + torch.diag_embed(scaled))
                rows_state = state if len(pending) == count else self._rows(state, pending)
                step = self._step(vset, rows_state, chol, scaled, gradient[pending])
                solvable = (info == 0) & torch.isfinite(step).all(1)
                step = torch.where(solvable[:, None], step, torch.zeros_like(step))
                trial = self._evaluate(vset, targets[..., pending], *self._apply_step(
                    state["rotmats"][pending], state["betas"][pending], state["transl"][pending],
                    step.to(rotmats.dtype)))
                old_loss = state["loss"][pending]
                better = (trial["loss"] < old_loss) & solvable
                small[pending] = better & ((old_loss - trial["loss"] < tolerance * old_loss)
                                           | (step.abs().amax(1) < 1e-6))
                kept = torch.nonzero(better).squeeze(1)
                rows = pending[kept]
                if len(kept) == count:
                    state = trial                      # every pose took its first step
                else:
                    self._assign(state, rows, trial, kept)
                accepted[rows] = True
                damping[rows] = (damping[rows] * DAMPING_DOWN).clamp(min=1e-9)
                pending = pending[~better]
                damping[pending] *= DAMPING_UP
                if len(pending) == 0:
                    break
            # A pose stops on a small decrease, or when not even a step damped down to a
            # tiny gradient step lowers its loss: a minimum, to the loss's precision.
            finished = small | (~accepted & (damping >= MAX_DAMPING))
            done[active[finished]] = True
            rotmats[active], betas[active] = state["rotmats"], state["betas"]
            transl[active] = state["transl"]
            keep = torch.nonzero(~finished).squeeze(1)
            if len(keep) == 0:
                break
            if len(keep) < count:
                active, damping = active[keep], damping[keep]
                targets, state = targets[..., keep], self._rows(state, keep)
        return rotmats, betas, transl, spent, done

    def initial_rotmats_from_mesh(self, targets):
        """Local rotations estimated from target vertices on the mask alone.

        Each body part (the vertices whose largest skinning weight is a joint) is aligned
        rigidly to the target, root first; a part too small to align keeps its parent's
        orientation. Used when no source pose is known.

        Args:
            targets: (B, M, 3) target vertices on the mask ids.
        Returns:
            (B, J, 3, 3) local rotations.
        """
        with torch_threads(1):                               # a batch of 3x3 SVDs per part
            return self._rotmats_from_mesh(targets)

    def _rotmats_from_mesh(self, targets):
        """`initial_rotmats_from_mesh` with torch's current threads."""
        batch = targets.shape[0]
        num_joints = len(self.parents)
        template = self.template_vertices[self.mask_ids]
        labels = self.template_weights[self.mask_ids].argmax(1)
        eye = torch.eye(3, dtype=targets.dtype, device=targets.device)
        world = eye.expand(batch, num_joints, 3, 3).clone()
        local = eye.expand(batch, num_joints, 3, 3).clone()
        for level in self.levels:
            for joint in level:
                parent = self.parents[joint]
                members = torch.nonzero(labels == joint).squeeze(1)
                if len(members) >= 4:
                    world[:, joint] = roma.rigid_points_registration(
                        template[members].expand(batch, -1, -1), targets[:, members])[0]
                elif parent >= 0:
                    world[:, joint] = world[:, parent]
                if parent >= 0:
                    local[:, joint] = world[:, parent].transpose(1, 2) @ world[:, joint]
                else:
                    local[:, joint] = world[:, joint]
        return local

    @torch.no_grad()
    def fit(self, targets, init_pose=None, init_betas=None, init_transl=None):
        """Fit a batch.

        Args:
            targets: (B, M, 3) target vertices on the mask ids (same order as `mask_ids`).
            init_pose: (B, 55, 3) axis-angle initial pose (e.g. the source SMPL-H pose with
                zero jaw and eyes), or None to initialise from the targets alone.
            init_betas: (B, num_betas) initial shape, or None for zero. With
                `settings.fit_betas` False the betas are held fixed at this value (a
                shape fitted once for a whole motion sequence).
            init_transl: (B, 3) initial translation, or None to move the initial body's
                centroid onto the target's (the best translation for the initial pose).
        Returns:
            a `FitResult` on the CPU.

        On the CPU the batch is cut into slices of at most SLICE_POSES poses (at least one
        per torch thread), which a pool of as many threads as torch has fits with torch
        itself single-threaded: the poses are independent, so the threads never wait for
        one another, where torch's own threads meet at the end of every operation (on a
        loaded 2-core machine that made the fit 3 times slower).
        """
        if self.mask_ids.device.type != "cpu":
            return self._fit(targets, init_pose, init_betas, init_transl)
        batch, threads = targets.shape[0], torch.get_num_threads()
        count = max(1, min(threads, batch), -(-batch // SLICE_POSES))
        slices = np.array_split(np.arange(batch), count)

        def rows_of(tensor, rows):
            return None if tensor is None else tensor[rows]

        with torch_threads(1), ThreadPoolExecutor(min(threads, count)) as pool:
            results = list(pool.map(lambda rows: self._fit(
                targets[rows], rows_of(init_pose, rows), rows_of(init_betas, rows),
                rows_of(init_transl, rows)), slices))
        return FitResult(**{field.name: torch.cat([getattr(result, field.name)
                                                   for result in results])
                            for field in fields(FitResult)})

    @torch.no_grad()
    def _fit(self, targets, init_pose, init_betas=None, init_transl=None):
        """`fit` on the calling thread."""
        settings = self.settings
        dtype = self.mask_set.v_template.dtype
        targets = targets.to(self.mask_ids.device, dtype)
        batch = targets.shape[0]
        if init_pose is None:
            rotmats = self.initial_rotmats_from_mesh(targets)
        else:
            rotmats = roma.rotvec_to_rotmat(init_pose.to(targets))
        betas = (targets.new_zeros(batch, settings.num_betas) if init_betas is None
                 else init_betas.to(targets).clone())
        mask_targets = targets.permute(1, 2, 0).contiguous()                 # (M, 3, B)
        fit_targets = (mask_targets if self.fit_set is self.mask_set
                       else mask_targets[self.fit_set.positions])
        if init_transl is None:
            start = self._pose(self.fit_set, rotmats, betas, targets.new_zeros(batch, 3))[0]
            transl = (fit_targets - start).mean(0).T
        else:
            transl = init_transl.to(targets).clone()

        rotmats, betas, transl, spent, done = self._solve(
            self.fit_set, fit_targets, rotmats, betas, transl, settings.max_iterations)
        if settings.refine_iterations > 0 and self.fit_set is not self.mask_set:
            rotmats, betas, transl, refine_spent, done = self._solve(
                self.mask_set, mask_targets, rotmats, betas, transl, settings.refine_iterations)
            spent = spent + refine_spent

        vertices = self._pose(self.mask_set, rotmats, betas, transl)[0]
        errors = (vertices - mask_targets).square().sum(1).sqrt() * 1000.0   # (M, B)
        return FitResult(pose=roma.rotmat_to_rotvec(rotmats).cpu(), betas=betas.cpu(),
                         transl=transl.cpu(), v2v_mean_mm=errors.mean(0).cpu(),
                         v2v_max_mm=errors.amax(0).cpu(), iterations=spent.cpu(),
                         converged=done.cpu())
