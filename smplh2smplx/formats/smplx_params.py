"""The stage-2 output: one SMPL-X parameter file per pose (`<pose_id:06d>.pkl`).

The contract read by PoseEmbroider (docs/FORMATS.md): a pickled dict of float32 CPU torch
tensors without autograd history, axis-angle, with exactly the keys and shapes of
`PARAMETER_SHAPES`.
"""
import pickle
from pathlib import Path

import torch

from ..errors import InputError
from .files import atomic_write
from .safe_pickle import load_tensor_pickle

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


def parameter_path(output_dir, pose_id):
    """The parameter file of `pose_id` in `output_dir`."""
    return Path(output_dir) / f"{pose_id:06d}.pkl"


def smplx_parameters(pose, betas):
    """The contract's dict for one pose.

    Args:
        pose: (55, 3) axis-angle local rotations in SMPL-X joint order (tensor or array).
        betas: (NUM_BETAS,) or (1, NUM_BETAS) shape coefficients.
    Returns:
        dict key -> float32 CPU tensor, detached, shaped as in `PARAMETER_SHAPES`.
    """
    pose = torch.as_tensor(pose).detach().to("cpu", torch.float32)
    betas = torch.as_tensor(betas).detach().to("cpu", torch.float32)
    if pose.shape != (55, 3):
        raise ValueError(f"pose must be (55, 3), got {tuple(pose.shape)}")
    if betas.numel() != NUM_BETAS:
        raise ValueError(f"betas must hold {NUM_BETAS} values, got {tuple(betas.shape)}")
    params = {}
    for key, shape in PARAMETER_SHAPES.items():
        value = betas if key == "betas" else pose[JOINT_SLICES[key]]
        # clone: each tensor owns its storage, so the pickle holds no view of the whole pose.
        params[key] = value.reshape(shape).clone()
    return params


def write_smplx_params(path, pose, betas):
    """Write one pose's parameter file atomically (see `smplx_parameters` for the arguments)."""
    params = smplx_parameters(pose, betas)
    with atomic_write(path) as handle:
        pickle.dump(params, handle, protocol=pickle.HIGHEST_PROTOCOL)


def read_smplx_params(path):
    """Load a parameter file without running its code and check it against the contract.

    The file is read by `safe_pickle.load_tensor_pickle`, never by plain `pickle.load`:
    output folders may be shared, and a planted `.pkl` must not run code in whoever
    resumes a run or makes a report.

    Returns:
        the dict of tensors as stored (fresh CPU tensors, nothing else attached).
    Raises:
        InputError naming the file and the first departure from the contract.
    """
    path = Path(path)
    params = load_tensor_pickle(path)
    if type(params) is not dict:
        raise InputError(f"{path}: holds a {type(params).__name__}, expected a dict")
    if not all(isinstance(key, str) for key in params):
        raise InputError(f"{path}: holds keys that are not strings, expected "
                         f"{sorted(PARAMETER_SHAPES)}")
    if set(params) != set(PARAMETER_SHAPES):
        raise InputError(f"{path}: keys {sorted(params)[:20]}, expected "
                         f"{sorted(PARAMETER_SHAPES)}")
    for key, shape in PARAMETER_SHAPES.items():
        value = params[key]
        if type(value) is not torch.Tensor:
            raise InputError(f"{path}: {key} is a {type(value).__name__}, expected a torch tensor")
        problem = None
        if tuple(value.shape) != shape:
            problem = f"shape {tuple(value.shape)}, expected {shape}"
        elif value.dtype != torch.float32:
            problem = f"dtype {value.dtype}, expected torch.float32"
        elif value.device.type != "cpu":
            problem = f"on {value.device}, expected the CPU"
        elif value.requires_grad or value.grad_fn is not None:
            problem = "carries autograd history"
        elif not torch.isfinite(value).all():
            problem = "holds NaN or infinite values"
        if problem:
            raise InputError(f"{path}: {key} {problem}")
    return {key: params[key].detach().clone() for key in PARAMETER_SHAPES}


def pose_from_params(params):
    """Inverse of `smplx_parameters`: (55, 3) pose and (NUM_BETAS,) betas tensors."""
    pose = torch.zeros(55, 3, dtype=params["body_pose"].dtype)
    for key, joints in JOINT_SLICES.items():
        pose[joints] = params[key].reshape(-1, 3)
    return pose, params["betas"].reshape(-1)
