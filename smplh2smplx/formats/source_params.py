"""`source_params.npz`: the SMPL-H source pose of every pose stage 1 read from AMASS.

Written by stage 1 beside its meshes, read by stage 2 (to start each fit from the source
pose, or to pose SMPL-H itself with `from_params`) and by the report. Two plain arrays:
`pose_ids` (N,) int64, sorted, and `poses` (N, 156) float32 SMPL-H axis-angle poses.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, listed
from .amass import SMPLH_POSE_SIZE
from .files import atomic_write, check_finite, exclusive_lock
from .limits import MAX_ANGLE_RAD, value_problem
from .npz import read_npz

SOURCE_PARAMS = "source_params.npz"


def read_source_params(path: str | Path) -> dict:
    """{pose_id: (156,) float32 SMPL-H pose} from a source_params.npz; {} if it is absent."""
    path = Path(path)
    if not path.exists():
        return {}
    arrays = read_npz(path, ("pose_ids", "poses"))
    missing = [key for key in ("pose_ids", "poses") if key not in arrays]
    if missing:
        raise InputError(f"{path}: lacks" + listed(missing))
    pose_ids, poses = arrays["pose_ids"], arrays["poses"]
    if pose_ids.ndim != 1 or poses.shape != (len(pose_ids), SMPLH_POSE_SIZE):
        raise InputError(f"{path}: expected pose_ids (N,) and poses (N, {SMPLH_POSE_SIZE}), "
                         f"got {pose_ids.shape} and {poses.shape}")
    if pose_ids.dtype.kind not in "iu" or poses.dtype.kind not in "iuf" or (
            pose_ids.size and pose_ids.min() < 0):
        raise InputError(f"{path}: expected non-negative integer pose_ids and float poses, "
                         f"got {pose_ids.dtype} and {poses.dtype}")
    problem = value_problem(poses, MAX_ANGLE_RAD, "rad")
    if problem:
        raise InputError(f"{path}: poses {problem}")
    return {int(pose_id): pose for pose_id, pose in zip(pose_ids, poses.astype(np.float32))}


def write_source_params(path: str | Path, params: dict) -> None:
    """Write {pose_id: (156,) pose} atomically, as `read_source_params` reads it."""
    pose_ids = np.array(sorted(params), dtype=np.int64)
    poses = np.array([params[pose_id] for pose_id in pose_ids], np.float32)
    check_finite(path, {"poses": poses})
    with atomic_write(path) as handle:
        np.savez(handle, pose_ids=pose_ids, poses=poses.reshape(-1, SMPLH_POSE_SIZE))


def merge_source_params(path: str | Path, params: dict) -> None:
    """Add {pose_id: (156,) pose} to the source_params.npz at `path` (created if absent).

    Two stage-1 runs may write into one folder at once (disjoint --ids): the file is
    re-read and rewritten under an exclusive lock, as errors.csv is, so that neither run's
    poses are lost. A new pose replaces a recorded one of the same id.
    """
    with exclusive_lock(path):
        write_source_params(path, {**read_source_params(path), **params})
