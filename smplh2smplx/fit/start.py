"""A start for poses whose source pose is unknown: rotations read off the target mesh."""
import roma
import torch

from ..runtime import torch_threads


def rotmats_from_mesh(model, targets):
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
        return _rotmats_from_mesh(model, targets)


def _rotmats_from_mesh(model, targets):
    """`rotmats_from_mesh` with torch's current threads."""
    batch = targets.shape[0]
    num_joints = len(model.parents)
    template = model.template_vertices[model.mask_ids]
    labels = model.template_weights[model.mask_ids].argmax(1)
    eye = torch.eye(3, dtype=targets.dtype, device=targets.device)
    world = eye.expand(batch, num_joints, 3, 3).clone()
    local = eye.expand(batch, num_joints, 3, 3).clone()
    for level in model.levels:
        for joint in level:
            parent = model.parents[joint]
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
