"""The least-squares problem of a fit: posed vertices, residual, gradient, J v and J^T J.

Every pose is an independent problem: minimise the squared distance between the posed
target-model vertices and the target vertices over the masked vertices, with respect to the
local joint rotations, the betas and the translation. The derivatives are analytic:

- rotations are updated by local left increments, R_k <- exp(e_k) R_k. Such an increment
  turns the whole subtree of joint k about the posed joint p_k by the world-frame vector
  W_parent(k) e_k, so the vertex derivative is -[a_ik]x W_parent(k), where a_ik sums the
  skinning-weighted offsets (G_j(x_i) - p_k) over the joints j of k's subtree; the pose
  correctives add their own term;
- betas enter the rest vertices and, through the joint regressor, every joint position;
- translation enters every vertex with the identity.

The gradient J^T r is exact and costs about one forward pass: it is summed per joint as
forces and torques, never through a per-vertex Jacobian; products J v cost as little. The
only per-vertex Jacobian is built on the small Gauss-Newton sample (`gauss_newton`).

Unknowns are laid out [3 per joint slot (rotation increment) | betas | translation].
Per-vertex arrays are vertex-major, (S, 3, B) with the batch last, so that every product
with the model's per-vertex arrays (skinning weights, blend shapes) is one matrix product
for the whole batch. Every function takes the `TargetModel` first.
"""
from dataclasses import dataclass, fields

import roma
import torch

from ..body.lbs import apply_vertex_major, forward_kinematics, skinning_transforms


@dataclass
class State:
    """A batch of B poses at some parameters, with what the derivatives need.

    Batch first: rotmats (B, J, 3, 3) local rotations, betas (B, nb), transl (B, 3),
    world_rot (B, J, 3, 3), world_joints (B, J, 3), trans (B, J, 3) skinning translations
    t_j = p_j - R_j J_j, features (B, 9(J-1)) pose features R - I of the non-root joints,
    loss (B,), and where the betas are fitted joint_shape (B, J, 3, nb), the skinning
    translations' derivative with respect to them (`shape_joint_jacobian`: the gradient, each
    J v and J^T J need it at the same parameters). Vertex-major (batch last): rest (S, 3, B)
    rest vertices with blend shapes, blended (S, 3, 3, B) skinning-blended rotations,
    residual (S, 3, B) posed minus target.
    """
    rotmats: torch.Tensor
    betas: torch.Tensor
    transl: torch.Tensor
    world_rot: torch.Tensor
    world_joints: torch.Tensor
    trans: torch.Tensor
    features: torch.Tensor
    rest: torch.Tensor
    blended: torch.Tensor
    joint_shape: torch.Tensor = None
    residual: torch.Tensor = None
    loss: torch.Tensor = None

    VERTEX_MAJOR = ("rest", "blended", "residual")

    def rows(self, index):
        """The state of the poses `index` alone."""
        return State(**{field.name: self._take(field.name, index) for field in fields(self)})

    def assign(self, rows, new, index):
        """Poses `rows` of this state <- poses `index` of `new`, in place."""
        for field in fields(self):
            mine = getattr(self, field.name)
            if mine is None:
                continue
            if field.name in self.VERTEX_MAJOR:
                mine[..., rows] = getattr(new, field.name)[..., index]
            else:
                mine[rows] = getattr(new, field.name)[index]

    def _take(self, name, index):
        value = getattr(self, name)
        if value is None:
            return None
        return value[..., index] if name in self.VERTEX_MAJOR else value[index]


def skew(vectors):
    """(..., 3) vectors -> (..., 3, 3) cross-product matrices [v]x."""
    x, y, z = vectors.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).view(*x.shape, 3, 3)


def apply_transposed_vertex_major(matrices, vectors):
    """sum_x M[:, x, y] v[:, x]: the transposed product of `apply_vertex_major`."""
    out = matrices[:, 0] * vectors[:, 0, None]
    for x in (1, 2):
        out.addcmul_(matrices[:, x], vectors[:, x, None])
    return out


def rest_joints(model, betas):
    """(B, J, 3) rest-pose joint locations of shape coefficients `betas` (B, num_betas)."""
    return model.joint_template + torch.einsum("jcs,bs->bjc", model.joint_shapedirs, betas)


def kinematics(model, rotmats, betas):
    """Per-joint quantities of a batch, batch first: the rotations and betas given,
    world rotations (B, J, 3, 3) and joints (B, J, 3), skinning translations
    t_j = p_j - R_j J_j (B, J, 3), pose features (B, 9(J-1)), R - I of every
    non-root joint, and where the betas are fitted the translations' derivative with
    respect to them (B, J, 3, nb)."""
    batch = rotmats.shape[0]
    joints = rest_joints(model, betas)
    world_rot, world_joints = forward_kinematics(rotmats, joints, model.parents, model.levels)
    identity = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
    return dict(rotmats=rotmats, betas=betas, world_rot=world_rot, world_joints=world_joints,
                trans=skinning_transforms(world_rot, world_joints, joints)[1],
                features=(rotmats[:, 1:] - identity).reshape(batch, -1),
                joint_shape=(shape_joint_jacobian(model, world_rot) if model.fit_betas
                             else None))


def rest_vertices(model, vset, betas, features):
    """(S, 3, B) rest-pose vertices of `vset` with shape and pose blend shapes."""
    coefficients = torch.cat([betas, features], dim=1).T
    return vset.v_template[..., None] + (vset.blend_dirs @ coefficients).view(
        -1, 3, len(betas))


def forward(model, vset, rotmats, betas, transl):
    """Posed vertices (S, 3, B) of `vset` and the `State` the derivatives need."""
    batch, num_joints = rotmats.shape[:2]
    joints = kinematics(model, rotmats, betas)
    rest = rest_vertices(model, vset, betas, joints["features"])
    rotations = joints["world_rot"].permute(1, 2, 3, 0).reshape(num_joints, 9 * batch)
    blended = (vset.weights @ rotations).view(-1, 3, 3, batch)
    shifts = joints["trans"].permute(1, 2, 0).reshape(num_joints, 3 * batch)
    vertices = apply_vertex_major(
        blended, rest, (vset.weights @ shifts).view(-1, 3, batch) + transl.T)
    return vertices, State(**joints, transl=transl, rest=rest, blended=blended)


def mean_distance(vset, distances):
    """(B,) mean over the vertices of `vset` of distances (S, B), weighted by their loss
    weights on a subset (so that it estimates the mean over the whole mask)."""
    if not vset.weighted:
        return distances.mean(0)
    return vset.loss_weights @ distances / vset.loss_weights.sum()


def posed_vertices(model, rotmats, betas, transl):
    """(B, M, 3) posed vertices on the mask, in mask order."""
    return forward(model, model.mask_set, rotmats, betas, transl)[0].permute(2, 0, 1)


def shape_joint_jacobian(model, world_rot):
    """(B, J, 3, nb): derivative of the skinning translations t_j = p_j - R_j J_j
    with respect to the betas (the joints move with the shape)."""
    joint_dirs = model.joint_shapedirs.expand(world_rot.shape[0], -1, -1, -1)
    djoints = torch.empty_like(joint_dirs)
    djoints[:, 0] = joint_dirs[:, 0]
    for level in model.levels[1:]:
        parent = model.parents[level]
        djoints[:, level] = djoints[:, parent] + world_rot[:, parent] @ (
            joint_dirs[:, level] - joint_dirs[:, parent])
    return djoints - world_rot @ joint_dirs


def parent_rotations(model, world_rot):
    """(B, J, 3, 3) world rotation of each joint's parent (identity for the root): an
    increment e of joint k turns its subtree by the world vector parent_rot[k] e."""
    batch = world_rot.shape[0]
    eye = torch.eye(3, dtype=world_rot.dtype, device=world_rot.device)
    return torch.cat([eye.expand(batch, 1, 3, 3), world_rot[:, model.parents[1:]]], 1)


def gradient(model, vset, state, curvature=False):
    """J^T W r (B, P) for the vertices of `vset`, W their loss weights, r the state's
    residual (S, 3, B); with `curvature`, also the residual's curvature blocks (see
    `curvature_blocks`), from the same per-joint sums.

    Rotation k: sum_i a_ik x r_i = sum over k's subtree of the joint torques
    sum_i w_ij G_j(x_i) x r_i, less p_k x the subtree's force sum_i w_ij r_i; the
    torques come from the per-joint moments sum_i w_ij x_i r_i^T. Pose correctives and
    betas go through the rest-space residual u_i = B_i^T r_i (B_i: blended rotation).
    """
    residual = state.residual
    num_vertices, _, batch = residual.shape
    world_rot, world_joints = state.world_rot, state.world_joints
    if vset.weighted:
        residual = residual * vset.loss_weights[:, None, None]
    weights_t = vset.weights.T
    forces = (weights_t @ residual.reshape(num_vertices, -1)).view(-1, 3, batch)
    outer = state.rest[:, :, None] * residual[:, None]                  # x_d r_p
    moments = (weights_t @ outer.view(num_vertices, -1)).view(-1, 3, 3, batch)
    forces, moments = forces.permute(2, 0, 1), moments.permute(3, 0, 1, 2)
    turned = world_rot @ moments                                           # sum w (R x) r^T
    if curvature:
        # sum_i w_ij G_j(x_i) r_i^T per joint, then over each subtree, about its joint.
        posed_moments = torch.einsum("jk,bjxy->bkxy", model.in_subtree,
                                     turned + state.trans[..., None] * forces[..., None, :])
    torques = torch.stack([turned[..., 1, 2] - turned[..., 2, 1],
                           turned[..., 2, 0] - turned[..., 0, 2],
                           turned[..., 0, 1] - turned[..., 1, 0]], dim=-1)
    torques = torques + torch.linalg.cross(state.trans, forces, dim=-1)
    subtree_torques = torch.einsum("jk,bjc->bkc", model.in_subtree, torques)
    subtree_forces = torch.einsum("jk,bjc->bkc", model.in_subtree, forces)
    about_joint = subtree_torques - torch.linalg.cross(world_joints, subtree_forces, dim=-1)
    parent_rot = parent_rotations(model, world_rot)
    rot_grad = (parent_rot.transpose(-1, -2) @ about_joint[..., None]).squeeze(-1)

    rest_residual = apply_transposed_vertex_major(state.blended, residual)   # B_i^T r_i
    # r^T A, not (A^T r)^T: for a few poses BLAS reads A at 2.4 times the speed this way.
    blend_grad = rest_residual.view(-1, batch).T @ vset.blend_dirs        # (B, nb + 9(J-1))
    nb = model.num_betas
    # Pose correctives: feature f_k = vec(R_k - I), d vec(R_k) / d e_a = vec([e_a]x R_k).
    eye = torch.eye(3, dtype=residual.dtype, device=residual.device)
    dfeat = (skew(eye) @ state.rotmats[:, 1:, None]).reshape(batch, -1, 3, 9)
    rot_grad[:, 1:] += (dfeat @ blend_grad[:, nb:].reshape(batch, -1, 9, 1)).squeeze(-1)

    parts = [rot_grad[:, model.joint_slots].reshape(batch, -1)]
    if model.fit_betas:
        parts.append(blend_grad[:, :nb] + torch.einsum("bjcs,bjc->bs", state.joint_shape,
                                                       forces))
    parts.append(forces.sum(1))
    grad = torch.cat(parts, dim=1)
    if not curvature:
        return grad
    lever_moments = posed_moments - world_joints[..., None] * subtree_forces[..., None, :]
    return grad, curvature_blocks(model, state, lever_moments, parent_rot,
                                  blend_grad[:, nb:].reshape(batch, -1, 3, 3))


def curvature_blocks(model, state, lever_moments, parent_rot, feature_grad):
    """(B, slots, 3, 3): the residual's part of the loss's second derivative within each
    joint's rotation, sum_i w_i r_i . d2 x_i / de_k^2, which Gauss-Newton leaves out.

    Turning joint k's subtree by a world vector w moves a point by [w]x a + [w]x^2 a / 2
    (a: its lever from p_k), so the block is sym(M) - tr(M) I in the world, M the subtree's
    sum_i w_i a_i r_i^T (`lever_moments`, (B, J, 3, 3)), seen from the parent's frame; a pose
    corrective adds its feature gradient (`feature_grad`, (B, J-1, 3, 3)) against
    d2 vec(R_k) / de_a de_b. (The correctives' turn with the skinning is left out: 3.5% of a
    block for correctives of 1 mm per unit of feature.)
    Where the residual is large against a short lever (fingers) this term is comparable to
    Gauss-Newton's, which alone then converges slowly.
    """
    eye = torch.eye(3, dtype=lever_moments.dtype, device=lever_moments.device)
    trace = lever_moments.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]
    world = 0.5 * (lever_moments + lever_moments.transpose(-1, -2)) - trace * eye
    blocks = parent_rot.transpose(-1, -2) @ world @ parent_rot
    generators = skew(eye)                                               # [e_a]x
    pairs = 0.5 * (generators[:, None] @ generators[None] + generators[None] @ generators[:, None])
    blocks[:, 1:] += torch.einsum("acxy,bjyz,bjxz->bjac", pairs, state.rotmats[:, 1:],
                                  feature_grad)
    return blocks[:, model.joint_slots]


def jacobian_product(model, vset, state, step):
    """J v (S, 3, B): how the posed vertices of `vset` move along a step v (B, P).

    The forward-mode counterpart of `_gradient`: increment e_k turns k's subtree by
    w_k = W_parent(k) e_k, so joint j's frame turns by the sum W_j of the w_k of k
    on the path from the root to j, its position moves by the turns of its strict
    ancestors, w_k x (p_j - p_k), and its skinning translation t_j = p_j - R_j J_j
    by dp_j - W_j x (p_j - t_j); pose correctives and betas move the rest vertices.
    """
    rotmats, world_rot = state.rotmats, state.world_rot
    world_joints = state.world_joints
    batch, num_joints = rotmats.shape[:2]
    num_rot = 3 * len(model.joint_slots)
    increments = step.new_zeros(batch, num_joints, 3)
    increments[:, model.joint_slots] = step[:, :num_rot].view(batch, -1, 3)
    turns = (parent_rotations(model, world_rot) @ increments[..., None]).squeeze(-1)
    frames = torch.einsum("jk,bkc->bjc", model.in_subtree, turns)          # W_j
    about_origin = torch.linalg.cross(turns, world_joints, dim=-1)         # w_k x p_k
    joint_motion = (torch.linalg.cross(frames - turns, world_joints, dim=-1)
                    - torch.einsum("jk,bkc->bjc", model.in_subtree, about_origin)
                    + about_origin)
    shifts = joint_motion - torch.linalg.cross(frames, world_joints - state.trans, dim=-1)
    nb = model.num_betas
    feature_motion = (skew(increments[:, 1:]) @ rotmats[:, 1:]).reshape(batch, -1)
    if model.fit_betas:
        shape_step = step[:, num_rot:num_rot + nb]
        shifts = shifts + (state.joint_shape @ shape_step[:, None, :, None]).squeeze(-1)
    else:
        shape_step = step.new_zeros(batch, nb)
    rest_motion = (vset.blend_dirs @ torch.cat([shape_step, feature_motion], 1).T).view(
        -1, 3, batch)
    turning = (vset.weights @ (skew(frames) @ world_rot).permute(1, 2, 3, 0).reshape(
        num_joints, -1)).view(-1, 3, 3, batch)                             # sum w [W_j]x R_j
    motion = (vset.weights @ shifts.permute(1, 2, 0).reshape(num_joints, -1)).view(
        -1, 3, batch) + step[:, -3:].T
    return apply_vertex_major(state.blended, rest_motion,
                              apply_vertex_major(turning, state.rest, motion))


def gauss_newton(model, state):
    """J^T J (B, P, P) on the Gauss-Newton sample, at the state's parameters.

    Exact when every sample vertex with pose correctives is skinned to its part's joint
    alone (see `_block_gauss_newton`); J is built part by part over each part's own
    columns, for a block of parts at once, and never held whole.
    """
    rotmats = state.rotmats
    batch = rotmats.shape[0]
    eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
    # d vec(R_k) / d e_c = vec([e_c]x R_k) for every joint: (B, J, c, 9).
    dfeat = (skew(eye) @ rotmats[:, :, None]).flatten(-2)
    size = model.num_unknowns + 1                        # the last column takes the padding
    hessian = rotmats.new_zeros(batch, size * size)
    for block in model.blocks:
        hessian.index_add_(1, block.flat_index,
                           block_gauss_newton(model, block, state, dfeat))
    return hessian.view(batch, size, size)[:, :-1, :-1]


def block_gauss_newton(model, block, state, dfeat):
    """(B, G*C*C): J_g^T J_g of each part g of `block`, C = its columns.

    The rows of a part are turned by U^T, U the world rotation of the part's joint,
    which leaves J^T J unchanged. Then rotation column (k, c) of vertex i is
    t_kc x a'_ik (t_kc = U^T W_parent(k) e_c, a'_ik = U^T a_ik) plus the pose
    correctives U^T B_i posedirs_ik d vec(R_k) / d e_c, taken with U^T B_i = I (B_i:
    the vertex's blended rotation): exact for a vertex skinned to the part's joint
    alone, and close for the others, whose correctives are small. This way the
    correctives of all poses are one matrix product per part and joint.
    """
    betas, world_rot, per_joint = state.betas, state.world_rot, state.joint_shape
    batch = betas.shape[0]
    num_parts, rows, num_moving = block.shape
    turn = world_rot[:, block.primary].transpose(-1, -2)                 # (B, G, 3, 3) U^T
    # Skinned joints' transforms seen from the part's joint: U^T R_w, U^T t_w.
    turned = turn[:, :, None] @ world_rot[:, block.skinned]              # (B, G, W, 3, 3)
    shifted = (turn[:, :, None] @ state.trans[:, block.skinned, :, None]).squeeze(-1)
    rest = rest_vertices(model, block, betas, state.features).view(
        num_parts, rows, 3, batch)
    points = torch.einsum("bgwxy,gnyb->bgnwx", turned, rest) + shifted[:, :, None]
    joints = (turn[:, :, None] @ state.world_joints[:, block.moving, :, None]).squeeze(-1)
    # Levers a'_ik and axes t_kc, laid out part, moving joint, pose first.
    levers = (torch.einsum("gnwk,bgnwx->gkbxn", block.mix, points)
              - block.reach[:, :, None, None] * joints.permute(1, 2, 0, 3)[..., None])
    parent_rot = parent_rotations(model, world_rot)[:, block.moving]
    axes = (parent_rot.transpose(-1, -2) @ turn.transpose(-1, -2)[:, :, None]
            ).permute(1, 2, 0, 3, 4)                                       # (G, K, B, c, 3)

    # J^T of each part, its rows (J's columns) ordered [rotations | betas | translation]
    # and its columns (J's rows) coordinate-major, x then n.
    num_columns = 3 * num_moving + (betas.shape[1] if per_joint is not None else 0) + 3
    jac_t = betas.new_empty(batch, num_parts, num_columns, 3 * rows)
    rot = jac_t[:, :, :3 * num_moving].view(batch, num_parts, num_moving, 3, 3, rows)
    corrective = torch.bmm(
        dfeat[:, block.moving].permute(1, 2, 0, 3, 4).reshape(-1, batch * 3, 9),
        block.part_posedirs)                                           # (G*K, 3B, 3N)
    # t_kc x a'_ik = [t_kc]x a'_ik: the cross products of all columns and rows are one
    # batched product of the axes' cross-product matrices, rows (c, x), with the levers.
    turned_columns = torch.baddbmm(corrective.view(-1, 9, rows), skew(axes).view(-1, 9, 3),
                                   levers.reshape(-1, 3, rows))
    rot.copy_(turned_columns.view(num_parts, num_moving, batch, 3, 3, rows)
              .permute(2, 0, 1, 3, 4, 5))
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


def apply_step(model, rotmats, betas, transl, step):
    """Unknowns after a step laid out as [rotations | betas | translation]."""
    num_rot = 3 * len(model.joint_slots)
    rotmats = rotmats.clone()
    increments = roma.rotvec_to_rotmat(step[:, :num_rot].reshape(len(step), -1, 3))
    rotmats[:, model.joint_slots] = increments @ rotmats[:, model.joint_slots]
    if model.fit_betas:
        betas = betas + step[:, num_rot:-3]
    return rotmats, betas, transl + step[:, -3:]


def evaluate(model, vset, targets, rotmats, betas, transl):
    """The working state of parameters: the parameters, their forward intermediates,
    the residual (S, 3, B) against `targets` (S, 3, B) and the weighted loss (B,)."""
    vertices, state = forward(model, vset, rotmats, betas, transl)
    state.residual = vertices - targets
    state.loss = weighted_squares(vset, state.residual)
    return state


def weighted_squares(vset, vectors):
    """(B,) sum over the vertices of `vset` of |v_i|^2 (vectors (S, 3, B)), weighted by their
    loss weights."""
    squared = vectors.square().sum(1)
    return (vset.loss_weights @ squared) if vset.weighted else squared.sum(0)
