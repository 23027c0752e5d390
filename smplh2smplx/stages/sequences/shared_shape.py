"""The one shape of a motion: with the joint rotations fixed, the posed vertices are affine
in the betas and the translation, so the betas shared by several frames are one linear
least-squares solve (`solve_shape`).
"""
from __future__ import annotations

import roma
import torch

from ...body.lbs import forward_kinematics, skinning_transforms
from ...runtime import cpu_single_thread

SHAPE_RIDGE = 1e-6               # Tikhonov weight of the betas' least squares (m^2)


class MaskedBody:
    """A BodyModel's per-vertex constants on some of its vertices, gathered once.

    body: the BodyModel (its joints and kinematic tree are used whole); vertex_ids: (M,);
    loss_weights: (M,) each vertex's weight in the least squares (a fit's loss subset,
    whose weights make its sums estimate the whole mask's), or None: all 1.
    """

    def __init__(self, body, vertex_ids, loss_weights=None):
        self.body = body
        device = body.v_template.device
        vertex_ids = torch.as_tensor(vertex_ids, device=device)
        num_features = len(body.posedirs)
        self.v_template = body.v_template[vertex_ids]
        self.weights = body.weights[vertex_ids]                               # (M, J)
        self.shapedirs = body.shapedirs[vertex_ids]                           # (M, 3, nb)
        self.posedirs = body.posedirs.view(num_features, -1, 3)[:, vertex_ids].reshape(
            num_features, -1)                                                 # (P, M*3)
        self.loss_weights = (torch.ones(len(vertex_ids)) if loss_weights is None
                             else torch.as_tensor(loss_weights)).to(body.v_template)


@torch.no_grad()
def shape_columns(masked: MaskedBody, pose: torch.Tensor) -> tuple:
    """The masked vertices as an affine function of the betas for fixed rotations.

    v_i = sum_j w_ij (R_j x_i + t_j), with x_i = T_i + S_i betas + P_i(rotations) and the
    skinning translations t_j = p_j - R_j J_j, where the joints J and their posed places p
    are linear in the betas: so v = base + columns @ betas, computed here from one forward
    kinematics per unit beta (joints only) and the blended rotations of the mask.

    Args:
        masked: a MaskedBody; pose: (K, J, 3) axis-angle.
    Returns:
        base (M, K, 3) and columns (M, K, 3, nb), vertex-major, in the body's dtype.
    """
    body = masked.body
    dtype, device = body.v_template.dtype, body.v_template.device
    rotmats = roma.rotvec_to_rotmat(pose.to(device, dtype))
    count, num_joints, num_betas = len(pose), body.num_joints, body.num_betas
    num_vertices = len(masked.v_template)
    units = torch.cat([torch.zeros(1, num_betas), torch.eye(num_betas)]).to(device, dtype)
    rest = body.rest_joints(units).repeat_interleave(count, 0)         # ((nb+1) K, J, 3)
    world_rot, world_joints = forward_kinematics(
        rotmats.repeat(num_betas + 1, 1, 1, 1), rest, body.parents, body.levels)
    trans = skinning_transforms(world_rot, world_joints, rest)[1].view(
        num_betas + 1, count, num_joints, 3)
    blended = (masked.weights @ world_rot[:count].permute(1, 0, 2, 3).reshape(
        num_joints, count * 9)).view(num_vertices, count, 3, 3)
    identity = torch.eye(3, dtype=dtype, device=device)
    features = (rotmats[:, 1:] - identity).reshape(count, -1)
    rest_vertices = (masked.v_template[:, None]
                     + (masked.posedirs.T @ features.T).view(num_vertices, 3, count)
                     .permute(0, 2, 1))                                  # (M, K, 3)
    shift = (masked.weights @ trans[0].permute(1, 0, 2).reshape(num_joints, count * 3))
    base = (blended * rest_vertices[:, :, None]).sum(-1) + shift.view(num_vertices, count, 3)
    # The joints' part, sum_j w_ij dt_j/dbetas, is one product with the weights; the
    # blend shapes' part, B_i S_i, is added to it in place.
    per_beta = (trans[1:] - trans[:1]).permute(2, 1, 3, 0).reshape(num_joints, -1)
    columns = (masked.weights @ per_beta).view(num_vertices, count * 3, num_betas)
    columns.baddbmm_(blended.view(num_vertices, count * 3, 3), masked.shapedirs)
    return base, columns.view(num_vertices, count, 3, num_betas)


@torch.no_grad()
def shape_system(masked: MaskedBody, pose: torch.Tensor, targets: torch.Tensor) -> tuple:
    """The least squares of the betas over frames with fixed rotations, each frame's best
    translation (its mean residual, weighted by the vertices' loss weights) taken out of
    both sides.

    Args:
        masked: the MaskedBody (float64); pose: (K, J, 3) target axis-angle; targets:
            (K, M, 3) on its vertices.
    Returns:
        the normal matrix (nb, nb) and right-hand side (nb,) of the betas, and the frames'
        mean residuals (K, 3) and mean columns (K, 3, nb): a frame's translation for betas
        b is residual - columns @ b.
    """
    with cpu_single_thread(masked.body.v_template.device):
        base, columns = shape_columns(masked, pose)
    residual = targets.to(base).permute(1, 0, 2) - base            # (M, K, 3)
    share = masked.loss_weights / masked.loss_weights.sum()
    mean_residual = torch.einsum("m,mkc->kc", share, residual)
    mean_columns = torch.einsum("m,mkcs->kcs", share, columns)
    # Rows scaled by the square roots of the weights: the weighted sum of squares.
    scale = masked.loss_weights.sqrt()[:, None, None]
    matrix = columns.sub_(mean_columns).mul_(scale[..., None]).view(-1, columns.shape[-1])
    right = matrix.T @ ((residual - mean_residual) * scale).reshape(-1)
    return matrix.T @ matrix, right, mean_residual, mean_columns


def solve_shape(masked: MaskedBody, pose: torch.Tensor, targets: torch.Tensor,
                ridge: float = SHAPE_RIDGE) -> tuple:
    """Shared betas and per-frame translations for fixed rotations, by linear least squares.

    Args:
        masked: the target's MaskedBody (float64).
        pose: (K, J, 3) of the target axis-angle; targets: (K, M, 3) on its vertices.
    Returns:
        betas (nb,) and translations (K, 3), in the body's dtype.
    """
    normal, right, mean_residual, mean_columns = shape_system(masked, pose, targets)
    betas = torch.linalg.solve(normal + ridge * torch.eye(len(normal), dtype=normal.dtype,
                                                          device=normal.device), right)
    return betas, mean_residual - mean_columns @ betas
