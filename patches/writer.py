"""From the official run's variable dictionary to one parameter file per pose.

The official `__main__` pickles the whole dictionary `run_fitting` returns (variables,
rotation matrices, vertices, joints, faces; the whole batch in every file). The published
fix keeps only the pose fields, in axis-angle, on the CPU; here that is `contract_params`
(one dict per mesh of the batch, the format of docs/FORMATS.md, with the translation the
run fitted) and `write_params` (atomic), for SMPL-X targets the PoseEmbroider contract, for
SMPL and SMPL-H targets their own files.
"""
import roma
import torch

from smplh2smplx.family import KINDS
from smplh2smplx.formats.param_files import build_parameters, write_parameter_dict


def _axis_angle(value, batch_size, num_joints, key):
    """(B, J, 3) float64 CPU axis-angle from rotation matrices or axis-angle of any layout.

    `run_fitting` returns rotation matrices ((B, J, 3, 3)) for the pose keys, since it
    overwrites its axis-angle variables with the body model's echo of its inputs; its
    variables themselves are axis-angle ((B, J, 3) or (B, 3 J)). The element count tells
    them apart.
    """
    value = torch.as_tensor(value).detach().to("cpu", torch.float64)
    if value.numel() == batch_size * num_joints * 9:
        return roma.rotmat_to_rotvec(value.reshape(batch_size, num_joints, 3, 3))
    if value.numel() == batch_size * num_joints * 3:
        return value.reshape(batch_size, num_joints, 3)
    raise ValueError(f"{key}: shape {tuple(value.shape)} holds neither {batch_size} x "
                     f"{num_joints} rotation matrices nor axis-angle vectors")


def official_pose(var_dict: dict, kind: str = "smplx") -> tuple:
    """(B, J, 3) axis-angle pose of the `kind` model and (B, num_betas) betas from an
    official dict.

    Args:
        var_dict: mapping with `betas` (B, num_betas) and the pose keys of the model's
            parameter file (SMPL-X: `global_orient`, `body_pose`, `left_hand_pose`,
            `right_hand_pose`, `jaw_pose`, `leye_pose`, `reye_pose`) as rotation matrices or
            axis-angle; other keys are ignored.
        kind: the target model, "smpl", "smplh" or "smplx".
    Returns:
        float64 CPU tensors, detached.
    """
    joint_slices = KINDS[kind].joint_slices
    betas = torch.as_tensor(var_dict["betas"]).detach().to("cpu", torch.float64)
    betas = betas.reshape(len(betas), -1)
    batch_size = len(betas)
    num_joints = max(joints.stop for joints in joint_slices.values())
    pose = torch.zeros(batch_size, num_joints, 3, dtype=torch.float64)
    for key, joints in joint_slices.items():
        num_joints = joints.stop - joints.start
        pose[:, joints] = _axis_angle(var_dict[key], batch_size, num_joints, key)
    return pose, betas


def contract_params(var_dict: dict, kind: str = "smplx", transl=None) -> list:
    """One parameter dict per mesh of the batch (float32 CPU tensors, the keys and shapes of
    the `kind` target's file in docs/FORMATS.md); transl: (B, 3) translations, None: zero."""
    pose, betas = official_pose(var_dict, kind)
    return [build_parameters(kind, pose[index], betas[index],
                             None if transl is None else transl[index])
            for index in range(len(pose))]


def write_params(path, params: dict, kind: str = "smplx") -> None:
    """Pickle one contract dict to `path` atomically: the file appears whole or not at all.

    Replaces the official `pickle.dump(var_dict, open(path, 'wb'))`, which leaves a
    truncated file when interrupted (and a truncated file would be skipped as converted).
    """
    expected = KINDS[kind].parameter_shapes
    if set(params) != set(expected):
        raise ValueError(f"keys {sorted(params)}, expected {sorted(expected)}")
    write_parameter_dict(path, params)
