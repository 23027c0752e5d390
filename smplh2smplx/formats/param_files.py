"""Per-pose parameter files, the stage-2 output: one `<pose_id:06d>.pkl` per pose.

A pickled dict of float32 CPU torch tensors without autograd history, axis-angle, with the
keys of the target's `smplx` layer (flat hands, no PCA) and their shapes as the model table
gives them (`family.ModelKind.parameter_shapes`): the pose keys, `betas` (1, B) and
`transl` (1, 3), the translation the pose's error was computed with. For SMPL-X targets
this is the file PoseEmbroider reads (docs/FORMATS.md). One module serves every model:
what differs between them is data in `family.py`.
"""
import pickle
from pathlib import Path

import torch

from ..errors import InputError
from ..family import ANY, KINDS
from .files import atomic_write, check_finite
from .limits import parameter_limit, value_problem
from .safe_pickle import load_tensor_pickle


def parameter_path(output_dir: Path, pose_id: int) -> Path:
    """The parameter file of `pose_id` in `output_dir`."""
    return Path(output_dir) / f"{pose_id:06d}.pkl"


def betas_problem(kind: str, count: int) -> str | None:
    """Why a per-pose file of the `kind` model cannot hold `count` betas, or None (SMPL's
    and SMPL-X's hold 10, as their consumers read them; SMPL-H's 1 to 16)."""
    exact, most = KINDS[kind].betas
    if (exact and count != exact) or not 1 <= count <= most:
        return (f"a {KINDS[kind].label} parameter file holds {exact or f'1 to {most}'} betas, "
                f"got {count}")
    return None


def build_parameters(kind: str, pose, betas, transl=None) -> dict:
    """The dict of one pose of the `kind` model.

    Args:
        pose: (J, 3) axis-angle local rotations in the model's joint order.
        betas: (B,) or (1, B) shape coefficients (as many as the model's files hold).
        transl: (3,) or (1, 3) translation; None: zero.
    Returns:
        dict key -> float32 CPU tensor, detached, each owning its storage.
    """
    model = KINDS[kind]
    pose = torch.as_tensor(pose).detach().to("cpu", torch.float32)
    betas = torch.as_tensor(betas).detach().to("cpu", torch.float32).reshape(1, -1)
    transl = (torch.zeros(1, 3) if transl is None
              else torch.as_tensor(transl).detach().to("cpu", torch.float32).reshape(1, 3))
    if pose.shape != (model.num_joints, 3):
        raise ValueError(f"pose must be ({model.num_joints}, 3), got {tuple(pose.shape)}")
    problem = betas_problem(kind, betas.shape[1])
    if problem:
        raise ValueError(problem)
    joint_slices = model.joint_slices
    params = {}
    for key, shape in model.parameter_shapes.items():
        value = {"betas": betas, "transl": transl}.get(key)
        if value is None:
            value = pose[joint_slices[key]].reshape(shape)
        params[key] = value.clone()
    return params


def write_parameters(path: Path, kind: str, pose, betas, transl=None) -> None:
    """Write one pose's parameter file atomically (arguments as `build_parameters`)."""
    write_parameter_dict(path, build_parameters(kind, pose, betas, transl))


def write_parameter_dict(path: Path, params: dict) -> None:
    """Pickle a dict of `build_parameters` to `path` atomically (InputError, nothing
    written, when a value is not finite)."""
    check_finite(path, params)
    with atomic_write(path) as handle:
        pickle.dump(params, handle, protocol=pickle.HIGHEST_PROTOCOL)


def read_parameters(path: Path, kind: str) -> dict:
    """Load a parameter file of the `kind` model without running its code, and check it.

    The file is read by `safe_pickle.load_tensor_pickle`, never by plain `pickle.load`:
    output folders may be shared, and a planted `.pkl` must not run code in whoever
    resumes a run or makes a report.

    Returns:
        the dict of tensors as stored (fresh CPU tensors, nothing else attached).
    Raises:
        InputError naming the file and the first departure from the format.
    """
    path = Path(path)
    model = KINDS[kind]
    shapes = model.parameter_shapes
    params = load_tensor_pickle(path)
    if type(params) is not dict:
        raise InputError(f"{path}: holds a {type(params).__name__}, expected a dict")
    if not all(isinstance(key, str) for key in params):
        raise InputError(f"{path}: holds keys that are not strings, expected {sorted(shapes)}")
    if set(params) != set(shapes):
        raise InputError(f"{path}: keys {sorted(params)[:20]}, expected {sorted(shapes)} "
                         f"({model.label} parameters)")
    for key, shape in shapes.items():
        value = params[key]
        if type(value) is not torch.Tensor:
            raise InputError(f"{path}: {key} is a {type(value).__name__}, expected a torch tensor")
        problem = None
        if len(value.shape) != len(shape) or any(
                wanted not in (ANY, size) for size, wanted in zip(value.shape, shape)):
            problem = f"shape {tuple(value.shape)}, expected {shape_text(shape)}"
        elif key == "betas" and not 1 <= value.shape[1] <= model.betas[1]:
            problem = f"holds {value.shape[1]} values, at most {model.betas[1]} expected"
        elif value.dtype != torch.float32:
            problem = f"dtype {value.dtype}, expected torch.float32"
        elif value.device.type != "cpu":
            problem = f"on {value.device}, expected the CPU"
        elif value.requires_grad or value.grad_fn is not None:
            problem = "carries autograd history"
        else:
            problem = value_problem(value, *parameter_limit(key))
        if problem:
            raise InputError(f"{path}: {key} {problem}")
    return {key: params[key].detach().clone() for key in shapes}


def shape_text(shape: tuple) -> str:
    """(1, ANY) -> "(1, B)"."""
    return "(" + ", ".join("B" if size is ANY else str(size) for size in shape) + ")"


def pose_from_parameters(params: dict, kind: str) -> tuple:
    """Inverse of `build_parameters`: (J, 3) pose, (B,) betas and (3,) transl tensors."""
    model = KINDS[kind]
    pose = torch.zeros(model.num_joints, 3, dtype=params["betas"].dtype)
    for key, joints in model.joint_slices.items():
        pose[joints] = params[key].reshape(-1, 3)
    return pose, params["betas"].reshape(-1), params["transl"].reshape(3)
