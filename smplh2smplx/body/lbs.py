"""Linear blend skinning for SMPL-family body models, computing only what callers need.

Every constant (joint locations as a linear function of the shape, flattened blend
shapes) is prepared once in `BodyModel.__init__` and registered as a buffer, so that
`.to(device)` moves everything and a forward pass does only per-call work.
"""
from __future__ import annotations

import numpy as np
import roma
import torch

from ..formats.body_models import BodyModelData


def kinematic_levels(parents: np.ndarray) -> list:
    """Group joints by depth in the tree: a list of index arrays, root level first.

    Joints of one level depend only on joints of earlier levels, so forward kinematics
    needs one batched product per level instead of one per joint.
    """
    depth = np.zeros(len(parents), dtype=np.int64)
    for joint in range(1, len(parents)):
        depth[joint] = depth[parents[joint]] + 1
    return [np.flatnonzero(depth == d) for d in range(depth.max() + 1)]


def forward_kinematics(rotmats: torch.Tensor, rest_joints: torch.Tensor, parents: torch.Tensor,
                       levels: list) -> tuple:
    """World rotations and positions of every joint.

    Args:
        rotmats: (B, J, 3, 3) local joint rotations (joint 0: global orientation).
        rest_joints: (B, J, 3) joint locations of the shaped body in the rest pose.
        parents: (J,) int array, parents[0] == -1.
        levels: output of `kinematic_levels(parents)`.
    Returns:
        world_rotmats (B, J, 3, 3) and world_joints (B, J, 3), the root left in place.
    """
    offsets = rest_joints.clone()
    offsets[:, 1:] -= rest_joints[:, parents[1:]]
    world_rotmats = torch.empty_like(rotmats)
    world_joints = torch.empty_like(rest_joints)
    world_rotmats[:, 0] = rotmats[:, 0]
    world_joints[:, 0] = rest_joints[:, 0]
    for level in levels[1:]:
        parent = parents[level]
        parent_rot = world_rotmats[:, parent]
        world_rotmats[:, level] = parent_rot @ rotmats[:, level]
        world_joints[:, level] = world_joints[:, parent] + (
            parent_rot @ offsets[:, level, :, None]).squeeze(-1)
    return world_rotmats, world_joints


def apply_vertex_major(matrices: torch.Tensor, vectors: torch.Tensor,
                       plus: torch.Tensor | None = None) -> torch.Tensor:
    """sum_y M[:, x, y] v[:, y] (+ plus) for vertex-major (V, 3, 3, B) matrices and
    (V, 3, B) vectors: three fused multiply-adds, no (V, 3, 3, B) temporary."""
    result = matrices[:, :, 0] * vectors[:, 0, None]
    if plus is not None:
        result += plus
    for y in (1, 2):
        result.addcmul_(matrices[:, :, y], vectors[:, y, None])
    return result


def skinning_transforms(world_rotmats: torch.Tensor, world_joints: torch.Tensor,
                        rest_joints: torch.Tensor) -> tuple:
    """Per-joint rigid transforms (R, t) that map rest-pose points to posed points.

    A rest point x attached to joint j moves to R_j x + t_j with
    t_j = p_j - R_j J_j (p: posed joint, J: rest joint).
    """
    translations = world_joints - (world_rotmats @ rest_joints[..., None]).squeeze(-1)
    return world_rotmats, translations


class BodyModel(torch.nn.Module):
    """A SMPL-H or SMPL-X body as a function of pose, shape and translation.

    Args:
        data: the model arrays (see `body_models.load_smplh`, `load_smplx`).
        num_betas: how many shape coefficients the forward pass takes.
        dtype: floating type of the buffers.
    """

    def __init__(self, data: BodyModelData, num_betas=10, dtype=torch.float32):
        super().__init__()
        if num_betas > data.num_shape_coeffs:
            raise ValueError(f"{data.path}: has {data.num_shape_coeffs} shape coefficients, "
                             f"{num_betas} requested")
        self.kind = data.kind
        self.num_betas = num_betas
        self.parents = data.parents.copy()
        self.levels = kinematic_levels(self.parents)
        shapedirs = data.shapedirs[:, :, :num_betas]

        def buffer(name, array):
            self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(array), dtype=dtype))

        buffer("v_template", data.v_template)
        buffer("shapedirs", shapedirs)
        # (P, V*3): pose features (R - I of every non-root joint) to vertex offsets.
        buffer("posedirs", data.posedirs.reshape(-1, data.posedirs.shape[-1]).T)
        buffer("weights", data.weights)
        buffer("joint_template", data.j_regressor @ data.v_template)
        buffer("joint_shapedirs", data.joint_shapedirs(num_betas))
        self.register_buffer("faces", torch.as_tensor(data.faces, dtype=torch.int64))

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    def rest_joints(self, betas: torch.Tensor) -> torch.Tensor:
        """(B, J, 3) rest-pose joint locations for shape coefficients `betas` (B, num_betas)."""
        return self.joint_template + torch.einsum("jcs,bs->bjc", self.joint_shapedirs, betas)

    def forward(self, pose: torch.Tensor, betas: torch.Tensor | None = None,
                transl: torch.Tensor | None = None) -> tuple:
        """Posed vertices (B, V, 3) and joints (B, J, 3).

        Args:
            pose: (B, J, 3) axis-angle or (B, J, 3, 3) rotation matrices, in joint order
                (root first); hand poses without any hand mean added.
            betas: (B, num_betas) shape coefficients, or (num_betas,) for every pose; zero
                when None.
            transl: (B, 3) translation; zero when None.
        """
        vertices, joints = self.vertex_major(pose, betas, transl)
        return vertices.permute(2, 0, 1).contiguous(), joints

    def vertex_major(self, pose: torch.Tensor, betas: torch.Tensor | None = None,
                     transl: torch.Tensor | None = None) -> tuple:
        """`forward` with the vertices laid out vertex-major, (V, 3, B), the batch last.

        In that layout each product with the per-vertex arrays is one matrix product for the
        whole batch, and the skinning three multiply-adds (laid out batch first, most of the
        time went to writing per-vertex 3x3 matrices). betas may also be one shape
        (num_betas,) for the whole batch, whose blend shapes are then added once (a motion's
        subject: SMPL-X's 300 shape directions were a sixth of posing its frames).
        """
        rotmats = pose if pose.dim() == 4 else roma.rotvec_to_rotmat(pose)
        batch = rotmats.shape[0]
        if betas is None:
            betas = rotmats.new_zeros(self.num_betas)
        num_vertices, num_joints = len(self.v_template), self.num_joints
        if betas.dim() == 1:
            shaped = (self.v_template + (self.shapedirs.view(-1, self.num_betas) @ betas)
                      .view(num_vertices, 3))[..., None]
            betas = betas.expand(batch, -1)
        else:
            shaped = (self.v_template[..., None]
                      + (self.shapedirs.view(-1, self.num_betas) @ betas.T).view(
                          num_vertices, 3, batch))
        rest_joints = self.rest_joints(betas)
        world_rotmats, world_joints = forward_kinematics(
            rotmats, rest_joints, self.parents, self.levels)

        identity = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        pose_features = (rotmats[:, 1:] - identity).reshape(batch, -1)
        rest_vertices = shaped + (self.posedirs.T @ pose_features.T).view(num_vertices, 3, batch)
        rotations, translations = skinning_transforms(world_rotmats, world_joints, rest_joints)
        blended_rot = (self.weights @ rotations.permute(1, 2, 3, 0).reshape(
            num_joints, 9 * batch)).view(num_vertices, 3, 3, batch)
        blended_t = (self.weights @ translations.permute(1, 2, 0).reshape(
            num_joints, 3 * batch)).view(num_vertices, 3, batch)
        if transl is not None:
            blended_t = blended_t + transl.T
            world_joints = world_joints + transl[:, None]
        return apply_vertex_major(blended_rot, rest_vertices, blended_t), world_joints
