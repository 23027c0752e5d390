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
    """A BodyModel's per-vertex constants on the masked vertices, gathered once.

    body: the BodyModel (its joints and kinematic tree are used whole); mask_ids: (M,).
    """

    def __init__(self, body, mask_ids):
        self.body = body
        mask_ids = torch.as_tensor(mask_ids, device=body.v_template.device)
        num_features = len(body.posedirs)
        self.v_template = body.v_template[mask_ids]
        self.weights = body.weights[mask_ids]                                 # (M, J)
        self.shapedirs = body.shapedirs[mask_ids]                             # (M, 3, nb)
        self.posedirs = body.posedirs.view(num_features, -1, 3)[:, mask_ids].reshape(
            num_features, -1)                                                 # (P, M*3)


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
        base (K, M, 3) and columns (K, M, 3, nb), in the body's dtype.
    """
    body = masked.body
    dtype, device = body.v_template.dtype, body.v_template.device
    rotmats = roma.rotvec_to_rotmat(pose.to(device, dtype))
    count, num_joints, num_betas = len(pose), body.num_joints, body.num_betas
    units = torch.cat([torch.zeros(1, num_betas), torch.eye(num_betas)]).to(device, dtype)
    rest = body.rest_joints(units).repeat_interleave(count, 0)         # ((nb+1) K, J, 3)
    world_rot, world_joints = forward_kinematics(
        rotmats.repeat(num_betas + 1, 1, 1, 1), rest, body.parents, body.levels)
    trans = skinning_transforms(world_rot, world_joints, rest)[1].view(
        num_betas + 1, count, num_joints, 3)
    blended = torch.einsum("mj,kjab->kmab", masked.weights, world_rot[:count])  # (K, M, 3, 3)
    identity = torch.eye(3, dtype=dtype, device=device)
    features = (rotmats[:, 1:] - identity).reshape(count, -1)
    rest_vertices = masked.v_template + (features @ masked.posedirs).view(count, -1, 3)
    shifts = torch.einsum("mj,nkjc->nkmc", masked.weights, trans)       # (nb+1, K, M, 3)
    base = (blended @ rest_vertices[..., None]).squeeze(-1) + shifts[0]
    columns = (torch.einsum("kmab,mbs->kmas", blended, masked.shapedirs)
               + (shifts[1:] - shifts[:1]).permute(1, 2, 3, 0))
    return base, columns


@torch.no_grad()
def solve_shape(masked: MaskedBody, pose: torch.Tensor, targets: torch.Tensor,
                ridge: float = SHAPE_RIDGE) -> tuple:
    """Shared betas and per-frame translations for fixed rotations, by linear least squares.

    Args:
        masked: the SMPL-X MaskedBody (float64).
        pose: (K, J, 3) of the target axis-angle; targets: (K, M, 3).
    Returns:
        betas (nb,) and translations (K, 3), in the body's dtype.
    """
    num_betas = masked.body.num_betas
    with cpu_single_thread(masked.body.v_template.device):
        base, columns = shape_columns(masked, pose)
    residual = targets.to(base) - base                            # (K, M, 3)
    # The best translation of a frame is its mean residual: take it out of both sides.
    centred_columns = columns - columns.mean(1, keepdim=True)     # (K, M, 3, nb)
    centred_residual = residual - residual.mean(1, keepdim=True)
    matrix = centred_columns.reshape(-1, num_betas)
    normal = matrix.T @ matrix + ridge * torch.eye(num_betas, dtype=matrix.dtype,
                                                   device=matrix.device)
    betas = torch.linalg.solve(normal, matrix.T @ centred_residual.reshape(-1))
    transl = (residual - columns @ betas).mean(1)
    return betas, transl
