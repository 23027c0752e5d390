"""The stage-2 output for SMPL-H targets: one parameter file per pose (`<pose_id:06d>.pkl`).

A pickled dict of float32 CPU torch tensors without autograd history, axis-angle, with
the keys of `smplx.SMPLH` with flat hands and no PCA (`PARAMETER_SHAPES`). `betas` is
(1, B): as many shape coefficients as the run fits (10 by default, up to 16).
"""
from .param_files import (ANY, build_parameters, pose_from_parameters, read_parameters,
                          write_parameters)

PARAMETER_SHAPES = {
    "global_orient": (1, 3),
    "body_pose": (21, 3),
    "betas": (1, ANY),
    "left_hand_pose": (15, 3),
    "right_hand_pose": (15, 3),
}

# Where each pose key sits in the SMPL-H joint order (52 joints, root first).
JOINT_SLICES = {
    "global_orient": slice(0, 1),
    "body_pose": slice(1, 22),
    "left_hand_pose": slice(22, 37),
    "right_hand_pose": slice(37, 52),
}


def smplh_parameters(pose, betas):
    """The dict of one pose: pose (52, 3) axis-angle, betas (B,) or (1, B)."""
    return build_parameters(pose, betas, PARAMETER_SHAPES, JOINT_SLICES)


def write_smplh_params(path, pose, betas):
    """Write one pose's SMPL-H parameter file atomically."""
    write_parameters(path, smplh_parameters(pose, betas))


def read_smplh_params(path):
    """The dict of an SMPL-H parameter file, checked; InputError naming the file if not."""
    return read_parameters(path, PARAMETER_SHAPES, "SMPL-H")


def pose_from_params(params):
    """Inverse of `smplh_parameters`: (52, 3) pose and (B,) betas tensors."""
    return pose_from_parameters(params, JOINT_SLICES)
