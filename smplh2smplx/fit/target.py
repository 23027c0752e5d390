"""The body model a fit poses, as data: its constants, prepared once per run."""
import numpy as np
import torch

from ..body.lbs import kinematic_levels
from ..formats.body_models import BodyModelData
from .sampling import (GAUSS_NEWTON_BLOCKS, GAUSS_NEWTON_PART_VERTICES, GAUSS_NEWTON_ROWS,
                       gauss_newton_sample, moving_joints, part_labels, stratified_subset,
                       subtree_matrix)

# A loss subset is at most this share of the mask, and a fit whose subset was cut to it ends
# with a step on the whole mask (`TargetModel.subset_cut`). On SMPL's 6890 vertices a
# 3000-vertex subset alone ended 1.3 to 2.4% above the floor (SMPL-X's mask of about 9300:
# 0.75%); the whole mask alone reached it at 0.85 times the speed of ac20042's 2000 vertices
# plus one whole-mask step, and a third of the mask plus that step (2296 + 1) at 1.1 times it,
# 0.3% above the whole mask (realistic kit, seed 0, SMPL-H to SMPL).
MAX_SUBSET_SHARE = 1 / 3


def subset_size(fit_vertices: int, num_masked: int) -> int:
    """Vertices of the loss subset asked for as `fit_vertices` on a mask of `num_masked`
    (0: the whole mask): at most MAX_SUBSET_SHARE of the mask."""
    return min(fit_vertices, int(MAX_SUBSET_SHARE * num_masked))


def blend_directions(data: BodyModelData, ids: np.ndarray, num_betas: int,
                     dtype: torch.dtype) -> torch.Tensor:
    """(len(ids) * 3, num_betas + 9(J-1)): the shape and pose blend shapes of vertices `ids`
    side by side, so that both offsets are one product with the coefficients [betas | pose
    features]. Written straight into `dtype` (for SMPL-X's mask, a third of the time of
    joining them in float64 first)."""
    num_pose = data.posedirs.shape[-1]
    blend = torch.empty(len(ids), 3, num_betas + num_pose, dtype=dtype)
    blend[..., :num_betas] = torch.as_tensor(data.shapedirs[ids, :, :num_betas])
    blend[..., num_betas:] = torch.as_tensor(data.posedirs[ids])
    return blend.view(len(ids) * 3, -1)


class VertexSet(torch.nn.Module):
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
        self.register_buffer("blend_dirs", blend_directions(data, ids, num_betas, dtype))
        buffer("weights", data.weights[ids])
        buffer("loss_weights", loss_weights)
        self.weighted = not np.all(loss_weights == 1.0)


class PartBlock(torch.nn.Module):
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
        self.register_buffer("blend_dirs", blend_directions(data, flat_ids, num_betas, dtype))
        buffer("part_shapedirs",                                           # (G, nb, 3, N)
               data.shapedirs[ids, :, :num_betas].transpose(0, 3, 2, 1))
        buffer("mix", mix)
        buffer("reach", reach.transpose(0, 2, 1))                          # (G, K, N)
        buffer("skin", skin)
        buffer("part_posedirs", posedirs.reshape(num_parts * num_moving, 9, rows * 3))
        buffer("row_scale", scale)


class TargetModel(torch.nn.Module):
    """The body model a fit poses, as data: everything constant, computed once.

    Holds the kinematic tree, the joint regressor as a linear function of the shape, the
    skinning weights, shape blend shapes and pose correctives of the masked vertices (the
    whole mask, the loss subset, and the Gauss-Newton sample's blocks of body parts), as
    buffers, so that `.to(device)` moves everything. Nothing in it names a model: any
    SMPL-family model is a target.

    Args:
        data: the target model's arrays (`formats.body_models.load_body_model`).
        mask_ids: (M,) target vertex ids with a valid correspondence.
        num_betas: shape coefficients fitted (or held).
        fit_betas: whether the betas are unknowns of the fit.
        fit_vertices: size of a vertex subset whose loss the first phase follows (0: the
            whole mask from the start), cut to MAX_SUBSET_SHARE of the mask.
        gauss_newton_part_vertices: vertices of each body part on which the Gauss-Newton
            matrix is built (0: every masked vertex).
        dtype: floating type of the buffers and the Jacobian (steps are solved in float64).

    Attributes (besides the buffers): parents (J,), levels (see `lbs.kinematic_levels`),
    subset_cut: whether the subset asked for was cut to MAX_SUBSET_SHARE of the mask (the
    fit then ends with a step on the whole mask), joint_slots: the joints that move masked
    vertices (the unknowns' rotation part; the
    others, such as SMPL-X's eyes, keep their start), num_unknowns: P =
    3 * len(joint_slots) + (num_betas if fit_betas) + 3.
    """

    def __init__(self, data: BodyModelData, mask_ids, num_betas=10, fit_betas=True,
                 fit_vertices=0, gauss_newton_part_vertices=GAUSS_NEWTON_PART_VERTICES,
                 dtype=torch.float32):
        super().__init__()
        self.kind = data.kind
        self.num_betas, self.fit_betas = num_betas, fit_betas
        self.parents = data.parents.copy()
        self.levels = kinematic_levels(self.parents)
        nb = num_betas
        mask_ids = np.asarray(mask_ids, dtype=np.int64)
        self.register_buffer("mask_ids", torch.as_tensor(mask_ids))

        # Joints that move masked vertices; the others (the eyes) keep their initial value.
        # Unknowns: [3 per active joint (local rotation increment) | betas | translation].
        in_subtree = subtree_matrix(self.parents)
        reach = data.weights[mask_ids] @ in_subtree
        self.joint_slots = np.flatnonzero(reach.sum(0) > 1e-3)
        num_rot = 3 * len(self.joint_slots)
        self.num_unknowns = num_rot + (nb if fit_betas else 0) + 3
        shared = np.arange(num_rot, self.num_unknowns)

        rng = np.random.default_rng(0)
        num_masked = len(mask_ids)
        self.mask_set = VertexSet(data, mask_ids, np.arange(num_masked), np.ones(num_masked),
                                   nb, dtype)
        subset = subset_size(fit_vertices, num_masked)
        self.subset_cut = 0 < subset < fit_vertices
        if subset > 0:
            positions, loss_weights = stratified_subset(
                part_labels(data.weights[mask_ids]), subset, rng)
            self.fit_set = VertexSet(data, mask_ids, positions, loss_weights, nb, dtype)
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
            PartBlock(data, mask_ids, [pieces[i] for i in chunk], self.joint_slots,
                       self.num_unknowns, shared, nb, dtype)
            for chunk in np.array_split(np.arange(len(pieces)), GAUSS_NEWTON_BLOCKS)
            if len(chunk))

        def buffer(name, array):
            self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(array), dtype=dtype))

        buffer("joint_template", data.j_regressor @ data.v_template)
        buffer("joint_shapedirs", data.joint_shapedirs(nb))
        buffer("in_subtree", in_subtree)
        buffer("template_weights", data.weights)
        buffer("template_vertices", data.v_template)

    @property
    def num_joints(self):
        return len(self.parents)
