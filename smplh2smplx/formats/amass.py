"""Reading the AMASS sequences stage 1 poses from (`STAGE1_MODEL`: SMPL-H, the "SMPL+H G"
download), with the format checked.

Only the `poses` array is read (`read_npz` decompresses no other member, so the marker
data and other arrays some files carry cost nothing). A sequence of another model (AMASS's
SMPL-X release) is refused rather than guessed around: its values per frame are laid out
differently (jaw and eyes between body and hands), so reading it as SMPL-H would silently
give wrong hands.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from ..errors import InputError
from ..family import KINDS, STAGE1_MODEL
from .limits import MAX_ANGLE_RAD, value_problem
from .npz import read_npz

# (T, 156) for SMPL-H: root, 21 body joints, 15 + 15 hand joints
SMPLH_POSE_SIZE = STAGE1_MODEL.pose_size

# AMASS renamed these subsets after its first release: the PoseScript/PoseFix id mapping
# names the older folders, a download of today may hold the newer ones (sometimes with the
# older folder inside). {older name: newer name}
RENAMED_SUBSETS = {
    "BioMotionLab_NTroje": "BMLrub", "DFaust_67": "DFaust",
    "Eyes_Japan_Dataset": "EyesJapanDataset", "MPI_HDM05": "HDM05", "MPI_Limits": "PosePrior",
    "MPI_mosh": "MoSh", "SSM_synced": "SSM", "TCD_handMocap": "TCDHands",
    "Transitions_mocap": "Transitions"}
OLDER_SUBSET_NAMES = {newer: older for older, newer in RENAMED_SUBSETS.items()}


def sequence_path(amass_dir: str | Path, relative: str) -> Path:
    """The file of the id mapping's `relative` path under `amass_dir`: as written, else under
    its subset's other name (`RENAMED_SUBSETS`, either way), else nested in the newer
    folder (BMLrub/BioMotionLab_NTroje/...). The path as written when none is there."""
    written, parts = Path(amass_dir) / relative, Path(relative).parts
    subset = parts[0] if parts else ""                         # "." names no file
    older = subset if subset in RENAMED_SUBSETS else OLDER_SUBSET_NAMES.get(subset)
    if older is None:
        return written
    newer = RENAMED_SUBSETS[older]
    other = newer if subset == older else older
    candidates = (written, Path(amass_dir, other, *parts[1:]),
                  Path(amass_dir, newer, older, *parts[1:]))
    return next((path for path in candidates if path.is_file()), written)


def _other_model(stated: str, poses: np.ndarray) -> Optional[str]:
    """The label of the model a sequence holds when it is not stage 1's (told by its
    `surface_model_type`, or the pose width of another model), else None."""
    if stated != STAGE1_MODEL.name:
        return KINDS[stated].label if stated in KINDS else stated
    width = poses.shape[1] if poses.ndim == 2 else None
    return next((kind.label for kind in KINDS.values()
                 if kind.pose_size == width and kind is not STAGE1_MODEL), None)


def read_smplh_poses(path: str | Path, frames: Optional[Iterable[int]] = None) -> np.ndarray:
    """(T, 156) float64 axis-angle poses of an AMASS SMPL-H sequence file.

    Args:
        frames: the frames that will be used; only those must be finite (frames beyond
            the sequence are left to `check_frame`). None: every frame.
    Raises InputError naming the file when it is missing, not a readable .npz, a SMPL-X
    sequence, or holds no (T, 156) `poses` array; and naming the first frame of `frames`
    that holds NaN, infinity or an angle beyond MAX_ANGLE_RAD.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: AMASS sequence not found")
    arrays = read_npz(path, ("poses", "surface_model_type"))
    if "poses" not in arrays:
        raise InputError(f"{path}: not an AMASS sequence (no `poses` array)")
    model_type = str(arrays.get("surface_model_type", STAGE1_MODEL.name))
    poses = arrays["poses"]
    other = _other_model(model_type, poses)
    if other is not None:
        raise InputError(f"{path}: is an AMASS {other} sequence (surface_model_type "
                         f"{model_type}, poses {poses.shape}); use the SMPL+H G download")
    if poses.ndim != 2 or poses.shape[1] != SMPLH_POSE_SIZE or poses.dtype.kind != "f":
        raise InputError(f"{path}: poses has shape {poses.shape} and type {poses.dtype}, "
                         f"expected (T, {SMPLH_POSE_SIZE}) floats")
    frames = range(len(poses)) if frames is None else frames
    for frame in frames:
        problem = value_problem(poses[frame], MAX_ANGLE_RAD, "rad") if 0 <= frame < len(
            poses) else None
        if problem:
            raise InputError(f"{path}: frame {frame} of poses {problem}")
    return poses.astype(np.float64, copy=False)


def check_frame(pose_id: int, frame: int, num_frames: int, path: str | Path) -> None:
    """Raise InputError naming the pose and the file when `frame` is not in 0..num_frames-1."""
    if not 0 <= frame < num_frames:
        raise InputError(f"pose {pose_id}: frame {frame} is beyond {path} ({num_frames} frames)")


def check_frame_values(pose_id: int, frame: int, poses: np.ndarray, path: str | Path) -> None:
    """Raise InputError naming the pose, the frame and the file when `poses[frame]` holds
    NaN, infinity or an angle beyond MAX_ANGLE_RAD (only the frames that are used are
    checked)."""
    problem = value_problem(poses[frame], MAX_ANGLE_RAD, "rad")
    if problem:
        raise InputError(f"pose {pose_id}: frame {frame} of {path} {problem}")
