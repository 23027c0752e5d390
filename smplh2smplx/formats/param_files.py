"""Per-pose parameter files: a pickled dict of float32 CPU torch tensors, axis-angle.

The shared machinery of the three output formats (`smpl_params`, `smplh_params`,
`smplx_params`): each names its keys, their shapes and where each pose key sits in the
model's joint order; this module builds, writes and checks such dicts.
"""
import pickle
from pathlib import Path

import torch

from ..errors import InputError
from .files import atomic_write, check_finite
from .safe_pickle import load_tensor_pickle

ANY = None   # a size a file may choose (SMPL-H's number of betas)


def parameter_path(output_dir, pose_id):
    """The parameter file of `pose_id` in `output_dir`."""
    return Path(output_dir) / f"{pose_id:06d}.pkl"


def build_parameters(pose, betas, shapes, joint_slices):
    """The dict of one pose.

    Args:
        pose: (J, 3) axis-angle local rotations in the model's joint order.
        betas: (S,) or (1, S) shape coefficients.
        shapes: key -> shape (ANY for a free size), in file order.
        joint_slices: pose key -> slice of joints.
    Returns:
        dict key -> float32 CPU tensor, detached, each owning its storage.
    """
    pose = torch.as_tensor(pose).detach().to("cpu", torch.float32)
    betas = torch.as_tensor(betas).detach().to("cpu", torch.float32).reshape(1, -1)
    num_joints = max(joints.stop for joints in joint_slices.values())
    if pose.shape != (num_joints, 3):
        raise ValueError(f"pose must be ({num_joints}, 3), got {tuple(pose.shape)}")
    if shapes["betas"][1] not in (ANY, betas.shape[1]):
        raise ValueError(f"betas must hold {shapes['betas'][1]} values, got {betas.shape[1]}")
    params = {}
    for key, shape in shapes.items():
        value = betas if key == "betas" else pose[joint_slices[key]].reshape(shape)
        params[key] = value.clone()
    return params


def write_parameters(path, params):
    """Pickle `params` to `path` atomically (InputError, nothing written, when a value is
    not finite)."""
    check_finite(path, params)
    with atomic_write(path) as handle:
        pickle.dump(params, handle, protocol=pickle.HIGHEST_PROTOCOL)


def read_parameters(path, shapes, label):
    """Load a parameter file without running its code and check it against `shapes`.

    The file is read by `safe_pickle.load_tensor_pickle`, never by plain `pickle.load`:
    output folders may be shared, and a planted `.pkl` must not run code in whoever
    resumes a run or makes a report.

    Returns:
        the dict of tensors as stored (fresh CPU tensors, nothing else attached).
    Raises:
        InputError naming the file and the first departure from the format.
    """
    path = Path(path)
    params = load_tensor_pickle(path)
    if type(params) is not dict:
        raise InputError(f"{path}: holds a {type(params).__name__}, expected a dict")
    if not all(isinstance(key, str) for key in params):
        raise InputError(f"{path}: holds keys that are not strings, expected {sorted(shapes)}")
    if set(params) != set(shapes):
        raise InputError(f"{path}: keys {sorted(params)[:20]}, expected {sorted(shapes)} "
                         f"({label} parameters)")
    for key, shape in shapes.items():
        value = params[key]
        if type(value) is not torch.Tensor:
            raise InputError(f"{path}: {key} is a {type(value).__name__}, expected a torch tensor")
        problem = None
        if len(value.shape) != len(shape) or any(
                wanted not in (ANY, size) for size, wanted in zip(value.shape, shape)):
            problem = f"shape {tuple(value.shape)}, expected {shape_text(shape)}"
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
    return {key: params[key].detach().clone() for key in shapes}


def shape_text(shape):
    """(1, ANY) -> "(1, B)"."""
    return "(" + ", ".join("B" if size is ANY else str(size) for size in shape) + ")"


def pose_from_parameters(params, joint_slices):
    """Inverse of `build_parameters`: (J, 3) pose and (S,) betas tensors."""
    num_joints = max(joints.stop for joints in joint_slices.values())
    pose = torch.zeros(num_joints, 3, dtype=params["betas"].dtype)
    for key, joints in joint_slices.items():
        pose[joints] = params[key].reshape(-1, 3)
    return pose, params["betas"].reshape(-1)
