"""How a motion file lays out its poses, and which model they are.

A file holds the pose as `poses` (T, 3 J), root first, or cut into parts under
human_body_prior's names (`root_orient`, `pose_body`, ...) or the smplx package's
(`global_orient`, `body_pose`, ...): `PART_SCHEMES`, from the model table. Any of them may
be axis-angle, (T, values) or (T, joints, 3), or rotation matrices (T, joints, 3, 3). The
model is told by the sizes (`file_kind`); `pose_values` gives the axis-angle poses.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import roma
import torch

from ..errors import InputError, SkipFile, listed
from ..family import KINDS
from .files import shown_value
from .npz import member_names

KIND_OF_POSE_SIZE = {kind.pose_size: name for name, kind in KINDS.items()}


def _part_schemes(kind) -> tuple:
    """The ways a file may split a pose of `kind` into parts, each {part name: slice of the
    model's joints}, root and body first: human_body_prior's names (AMASS's SMPL-X part
    arrays; SMPL's two hand joints as `pose_hand`), then the smplx package's."""
    amass = {name: slice(*joints) for name, joints in kind.motion.parts.items()} or {
        "root_orient": slice(0, 1), "pose_body": slice(1, 22),
        "pose_hand": slice(22, kind.num_joints)}
    return amass, kind.joint_slices


PART_SCHEMES = {name: _part_schemes(kind) for name, kind in KINDS.items()}
PART_KEYS = tuple(dict.fromkeys(part for schemes in PART_SCHEMES.values()
                                for scheme in schemes for part in scheme))


def _is_rotations(shape: tuple) -> bool:
    """Whether an array of this shape holds rotation matrices: (T, ..., 3, 3). No
    axis-angle array of the layouts has that shape (a part of three joints would)."""
    return len(shape) >= 3 and tuple(shape[-2:]) == (3, 3)


def _values_per_frame(shape: tuple) -> int:
    """Axis-angle values per frame of a pose array of this shape, (T, values), (T, joints,
    3) or rotation matrices (T, joints, 3, 3)."""
    return 3 * math.prod(shape[1:-2]) if _is_rotations(shape) else math.prod(shape[1:])


def _part_fits(shapes: dict) -> list:
    """[(kind, scheme)] of the part schemes (`PART_SCHEMES`) that hold every part in `shapes`
    (part name -> (T, ...)), their root and body among them, each at its size."""
    sizes = {part: _values_per_frame(shape) for part, shape in shapes.items()}
    return [(kind, scheme) for kind, schemes in PART_SCHEMES.items() for scheme in schemes
            if set(list(scheme)[:2]) <= set(sizes) <= set(scheme)
            and all(sizes[part] == 3 * (scheme[part].stop - scheme[part].start)
                    for part in sizes)]


def _what_parts_take() -> list:
    """A line per model: the values per frame of each part of its schemes."""
    return [f"{KINDS[kind].label}: " + " or ".join(
        ", ".join(f"{part} {3 * (joints.stop - joints.start)}" for part, joints in scheme.items())
        for scheme in schemes) for kind, schemes in PART_SCHEMES.items()]


def file_kind(path: str | Path, shapes: dict, stated: str | None = None,
              expected_kind: str | None = None) -> tuple:
    """(model kind, part scheme) of a motion file from the shapes of its pose arrays
    (`shapes`: `poses` and part names -> shape); the scheme (part -> joints) is None for a
    file with `poses`. `stated`: the file's `surface_model_type`; `expected_kind`: the
    model the caller was told the file holds (None: the file's own).
    Raises:
        SkipFile: a file without poses; a file of another model than `expected_kind`.
        InputError: poses or parts that fit no model, or, split into parts, several.
    """
    if "poses" in shapes:
        shape = shapes["poses"]
        kind = KIND_OF_POSE_SIZE.get(_values_per_frame(shape)) if len(shape) > 1 else None
        if kind is None:
            sizes = ", ".join(f"{size} ({KINDS[name].label})"
                              for size, name in KIND_OF_POSE_SIZE.items())
            raise InputError(f"{path}: poses has shape {shape}, expected (T, N) floats with "
                             f"N one of {sizes} (or (T, joints, 3) or rotation matrices "
                             "(T, joints, 3, 3))")
        fits, found = [(kind, None)], f"poses {shape}"
    elif shapes:
        found = "pose parts " + ", ".join(f"{part} {shape}" for part, shape in shapes.items())
        if any(len(shape) < 2 for shape in shapes.values()) or \
                len({shape[0] for shape in shapes.values()}) != 1:
            raise InputError(f"{path}: its {found} are not arrays of one number of frames, "
                             "(T, values)")
        fits = _part_fits(shapes)
        if not fits:
            raise InputError(f"{path}: its {found} fit no model; the values per frame each "
                             "takes (hand poses as axis-angle, not PCA):"
                             + listed(_what_parts_take()))
    else:
        members = member_names(path)
        what = ("a subject shape file" if members and set(members) <= {"betas", "gender"}
                else "members: " + (", ".join(members) or "none"))
        raise SkipFile(f"{path}: not a motion file (no `poses` array nor pose parts; {what})")

    def labels(fits):
        return " or ".join(dict.fromkeys(KINDS[kind].label for kind, _scheme in fits))

    if stated is not None and not any(kind == stated for kind, _scheme in fits):
        raise InputError(f"{path}: surface_model_type is {shown_value(stated)} but {found} "
                         f"are {labels(fits)} poses")
    fits = [fit for fit in fits if stated in (None, fit[0])]
    if expected_kind is not None:
        if not any(kind == expected_kind for kind, _scheme in fits):
            raise SkipFile(f"{path}: is a {labels(fits)} sequence ({found}), not "
                           f"{KINDS[expected_kind].label}, the source model given")
        fits = [fit for fit in fits if fit[0] == expected_kind]
    # Of several models, the one whose every part is there (SMPL-H's root, body and hands
    # are SMPL-X's without the face); none or several such: not told.
    whole = [fit for fit in fits if fit[1] is not None and set(fit[1]) <= set(shapes)]
    fits = whole if len(fits) > 1 and len(whole) == 1 else fits
    if len(fits) > 1:
        raise InputError(f"{path}: its {found} fit {labels(fits)} alike; give the source "
                         "model (convert_sequences.py --source-model)")
    return fits[0]


# How far from a rotation a matrix read may be (largest entry of R^T R - I): float32
# networks' outputs are within 1e-5, float16 ones within 8e-4 (10,000 random rotations);
# anything further is not a rotation.
ROTATION_TOLERANCE = 1e-3


def _axis_angle(path: Path, key: str, array: np.ndarray) -> np.ndarray:
    """A pose array as axis-angle (T, values): rotation matrices (T, ..., 3, 3) converted,
    others flattened per frame. InputError naming the file, the key and the first frame
    where an entry is not a float or a matrix not a rotation."""
    if array.dtype.kind != "f":
        raise InputError(f"{path}: {key} has type {array.dtype}, expected floats")
    shape = (len(array), _values_per_frame(array.shape))     # known with zero frames too
    if not _is_rotations(array.shape):
        return array.reshape(shape)
    matrices = torch.as_tensor(np.asarray(array, dtype=np.float64)).reshape(-1, 3, 3)
    error = (matrices.transpose(1, 2) @ matrices - torch.eye(3, dtype=torch.float64)
             ).abs().amax((1, 2))
    bad = ~((error <= ROTATION_TOLERANCE) & (torch.linalg.det(matrices) > 0))   # NaN too
    if bad.any():
        frame = int(bad.nonzero()[0, 0]) // (len(matrices) // len(array))
        raise InputError(f"{path}: {key} holds rotation matrices, and frame {frame}'s are not "
                         "all rotations (orthonormal, determinant 1)")
    return roma.rotmat_to_rotvec(matrices).reshape(shape).numpy()


def pose_values(path: Path, arrays: dict, kind: str, scheme: dict | None) -> np.ndarray:
    """The (T, 3 J) axis-angle poses of `kind` from a file's arrays: its `poses` (scheme
    None), or the part arrays of `scheme` it holds, the joints of a part it lacks at rest.
    InputError naming the file and the array that is not floats or not rotations."""
    if scheme is None:
        return _axis_angle(path, "poses", arrays["poses"])
    parts = {part: _axis_angle(path, part, arrays[part]) for part in scheme if part in arrays}
    num_frames = len(next(iter(parts.values())))
    poses = np.zeros((num_frames, KINDS[kind].pose_size))
    for part, values in parts.items():
        joints = scheme[part]
        poses[:, 3 * joints.start:3 * joints.stop] = values
    return poses
