"""The stage-2 output for SMPL targets: one parameter file per pose (`<pose_id:06d>.pkl`).

A pickled dict of float32 CPU torch tensors without autograd history, axis-angle, with
the keys of `smplx.SMPL` (`PARAMETER_SHAPES`): `body_pose` holds the 21 body joints and
then the two hand joints (SMPL joints 1-23).
"""
from .param_files import (build_parameters, pose_from_parameters, read_parameters,
                          write_parameters)

NUM_BETAS = 10       # the SMPL model files have 10 shape coefficients

PARAMETER_SHAPES = {
    "global_orient": (1, 3),
    "body_pose": (23, 3),
    "betas": (1, NUM_BETAS),
}

# Where each pose key sits in the SMPL joint order (24 joints, root first).
JOINT_SLICES = {
    "global_orient": slice(0, 1),
    "body_pose": slice(1, 24),
}


def smpl_parameters(pose, betas):
    """The dict of one pose: pose (24, 3) axis-angle, betas (10,) or (1, 10)."""
    return build_parameters(pose, betas, PARAMETER_SHAPES, JOINT_SLICES)


def write_smpl_params(path, pose, betas):
    """Write one pose's SMPL parameter file atomically."""
    write_parameters(path, smpl_parameters(pose, betas))


def read_smpl_params(path):
    """The dict of an SMPL parameter file, checked; InputError naming the file if not."""
    return read_parameters(path, PARAMETER_SHAPES, "SMPL")


def pose_from_params(params):
    """Inverse of `smpl_parameters`: (24, 3) pose and (10,) betas tensors."""
    return pose_from_parameters(params, JOINT_SLICES)
