"""The stage-2 output for SMPL-X targets: one parameter file per pose (`<pose_id:06d>.pkl`).

The contract read by PoseEmbroider (docs/FORMATS.md): a pickled dict of float32 CPU torch
tensors without autograd history, axis-angle, with exactly the keys and shapes of
`PARAMETER_SHAPES`.
"""
from .param_files import build_parameters, pose_from_parameters, read_parameters, write_parameters

NUM_BETAS = 10

# Key -> shape of every tensor in a parameter file, in the order the file lists them.
PARAMETER_SHAPES = {
    "global_orient": (1, 3),
    "body_pose": (21, 3),
    "betas": (1, NUM_BETAS),
    "left_hand_pose": (15, 3),
    "right_hand_pose": (15, 3),
    "jaw_pose": (1, 3),
    "leye_pose": (1, 1, 3),
    "reye_pose": (1, 1, 3),
}

# Where each pose key sits in the SMPL-X joint order (55 joints, root first).
JOINT_SLICES = {
    "global_orient": slice(0, 1),
    "body_pose": slice(1, 22),
    "jaw_pose": slice(22, 23),
    "leye_pose": slice(23, 24),
    "reye_pose": slice(24, 25),
    "left_hand_pose": slice(25, 40),
    "right_hand_pose": slice(40, 55),
}


def smplx_parameters(pose, betas):
    """The contract's dict for one pose.

    Args:
        pose: (55, 3) axis-angle local rotations in SMPL-X joint order (tensor or array).
        betas: (NUM_BETAS,) or (1, NUM_BETAS) shape coefficients.
    Returns:
        dict key -> float32 CPU tensor, detached, shaped as in `PARAMETER_SHAPES`.
    """
    return build_parameters(pose, betas, PARAMETER_SHAPES, JOINT_SLICES)


def write_smplx_params(path, pose, betas):
    """Write one pose's parameter file atomically (see `smplx_parameters` for the arguments)."""
    write_parameters(path, smplx_parameters(pose, betas))


def read_smplx_params(path):
    """The dict of a SMPL-X parameter file, read safely and checked against the contract
    (see `param_files.read_parameters`); InputError naming the file if not."""
    return read_parameters(path, PARAMETER_SHAPES, "SMPL-X")


def pose_from_params(params):
    """Inverse of `smplx_parameters`: (55, 3) pose and (NUM_BETAS,) betas tensors."""
    return pose_from_parameters(params, JOINT_SLICES)
