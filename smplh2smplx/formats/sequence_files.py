"""Motion-sequence files: reading AMASS SMPL-H `*_poses.npz`, writing AMASS SMPL-X `*_stageii.npz`.

Input (AMASS "SMPL+H G"): `poses` (T, 156), `trans` (T, 3), `betas` (16,), `gender`,
`mocap_framerate`; `dmpls` (soft-tissue coefficients) and marker data are not read. Files
that are not SMPL-H motion files are told apart so that a tree scan can skip them with a
reason (`SkipFile`): `shape.npz` (betas and gender only) and AMASS SMPL-X sequences. Anything
else wrong is an `InputError` naming the file.

Output (AMASS "SMPL-X N / G" layout, see FORMATS.md "Motion sequences"): plain arrays only,
so `np.load(path, allow_pickle=False)` reads it. A file is written atomically, and counts as
finished only when it reads back valid (`read_smplx_sequence`).
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .files import atomic_write, check_finite
from .npz import read_npz

SMPLH_POSE_SIZE = 156        # root, 21 body joints, 15 + 15 hand joints
SMPLX_POSE_SIZE = 165        # root, 21 body, jaw, two eyes, 15 + 15 hand joints
SMPL_POSE_SIZE = 72          # root, 21 body joints, 2 hand joints
MIN_FRAMERATE, MAX_FRAMERATE = 1, 10000      # frames/s any capture could have
GENDERS = ("neutral", "male", "female")
INPUT_SUFFIX = "_poses"      # AMASS SMPL-H file names end in _poses.npz
OUTPUT_SUFFIX = "_stageii"   # AMASS SMPL-X file names end in _stageii.npz

# Where each split-out pose array sits in `poses` (T, 165), in the file's key order.
SMPLX_POSE_SLICES = {
    "root_orient": slice(0, 3),
    "pose_body": slice(3, 66),
    "pose_jaw": slice(66, 69),
    "pose_eye": slice(69, 75),
    "pose_hand": slice(75, 165),
}
INPUT_KEYS = ("poses", "trans", "betas", "gender", "mocap_framerate", "surface_model_type")
OUTPUT_KEYS = ("poses", "root_orient", "pose_body", "pose_hand", "pose_jaw", "pose_eye",
               "trans", "betas", "num_betas", "gender", "surface_model_type",
               "mocap_frame_rate", "mocap_time_length")


class SkipFile(InputError):
    """A file of the tree that is not a SMPL-H motion file (shape.npz, a SMPL-X sequence):
    skipped with this reason, not a failure."""


@dataclass(frozen=True)
class SmplhSequence:
    """An AMASS SMPL-H motion file, checked.

    poses: (T, 156) float64 axis-angle (flat-hand convention); trans: (T, 3) float64;
    betas: (S,) float64 (16 in AMASS); gender: neutral, male or female; framerate: frames/s.
    """
    path: Path
    poses: np.ndarray
    trans: np.ndarray
    betas: np.ndarray
    gender: str
    framerate: float

    @property
    def num_frames(self):
        return len(self.poses)


@dataclass(frozen=True)
class SmplxSequence:
    """What one output file holds.

    pose: (T, 55, 3) axis-angle in SMPL-X joint order; trans: (T, 3); betas: (B,);
    gender: the model fitted; framerate: frames/s of the written frames.
    """
    pose: np.ndarray
    trans: np.ndarray
    betas: np.ndarray
    gender: str
    framerate: float


def _text(value):
    """A 0-d or 1-element string/bytes array as str (None when it is not text)."""
    value = np.asarray(value)
    if value.size != 1 or value.dtype.kind not in "US":
        return None
    item = value.reshape(-1)[0]
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)


def _load(path, keys):
    """{key: array} of the members `keys` that the .npz file holds (no other member is
    decompressed); InputError naming it when it cannot be read."""
    try:
        return read_npz(path, keys)
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None


def read_smplh_sequence(path):
    """The checked `SmplhSequence` of an AMASS SMPL-H `*_poses.npz` file.

    Raises:
        SkipFile: `shape.npz` or another file without `poses`; an AMASS SMPL-X sequence.
        InputError: missing or unreadable file, a SMPL sequence, zero frames, NaN or
            infinite values (the frames are named), missing or malformed arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: sequence file not found")
    arrays = _load(path, INPUT_KEYS)
    if "poses" not in arrays:
        what = ("a subject shape file" if "betas" in arrays
                else "keys: " + (", ".join(sorted(arrays)) or "none"))
        raise SkipFile(f"{path}: not a motion file (no `poses` array; {what})")
    poses = arrays["poses"]
    model_type = _text(arrays.get("surface_model_type", "smplh"))
    width = poses.shape[1] if poses.ndim == 2 else None
    if model_type == "smplx" or width == SMPLX_POSE_SIZE:
        raise SkipFile(f"{path}: already a SMPL-X sequence (surface_model_type {model_type}, "
                       f"poses {poses.shape}); give the AMASS SMPL+H G file")
    if model_type not in ("smplh", None) or width == SMPL_POSE_SIZE:
        kind = "SMPL" if width == SMPL_POSE_SIZE else f"{model_type!r}"
        raise InputError(f"{path}: is a {kind} sequence (poses {poses.shape}), expected "
                         f"SMPL-H (T, {SMPLH_POSE_SIZE})")
    if poses.ndim != 2 or width != SMPLH_POSE_SIZE or poses.dtype.kind != "f":
        raise InputError(f"{path}: poses has shape {poses.shape} and type {poses.dtype}, "
                         f"expected (T, {SMPLH_POSE_SIZE}) floats")
    num_frames = len(poses)
    if num_frames == 0:
        raise InputError(f"{path}: has zero frames")
    missing = [key for key in ("trans", "betas", "gender", "mocap_framerate")
               if key not in arrays]
    if missing:
        raise InputError(f"{path}: lacks {', '.join(missing)} (an AMASS SMPL+H G file has "
                         "poses, trans, betas, gender and mocap_framerate)")
    trans, betas = arrays["trans"], arrays["betas"]
    if trans.shape != (num_frames, 3) or trans.dtype.kind != "f":
        raise InputError(f"{path}: trans has shape {trans.shape}, expected ({num_frames}, 3)")
    if betas.ndim != 1 or len(betas) == 0 or betas.dtype.kind != "f":
        raise InputError(f"{path}: betas has shape {betas.shape}, expected (S,) floats")
    bad = np.flatnonzero(~(np.isfinite(poses).all(1) & np.isfinite(trans).all(1)))
    if len(bad):
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise InputError(f"{path}: {len(bad)} frames hold NaN or infinite values "
                         f"(frames {shown})")
    if not np.isfinite(betas).all():
        raise InputError(f"{path}: betas hold NaN or infinite values")
    gender = _text(arrays["gender"])
    if gender not in GENDERS:
        raise InputError(f"{path}: gender is {arrays['gender']!r}, expected one of "
                         f"{', '.join(GENDERS)}")
    framerate = arrays["mocap_framerate"]
    if framerate.size != 1 or framerate.dtype.kind not in "fiu" \
            or not MIN_FRAMERATE <= float(framerate.reshape(-1)[0]) <= MAX_FRAMERATE:
        raise InputError(f"{path}: mocap_framerate is {framerate!r}, expected a number of "
                         f"frames per second from {MIN_FRAMERATE} to {MAX_FRAMERATE}")
    return SmplhSequence(path=path, poses=poses.astype(np.float64),
                         trans=trans.astype(np.float64), betas=betas.astype(np.float64),
                         gender=gender, framerate=float(framerate.reshape(-1)[0]))


def output_name(input_name):
    """`<name>_poses.npz` -> `<name>_stageii.npz` (other names: `<stem>_stageii.npz`)."""
    stem = Path(input_name).stem
    if stem.endswith(INPUT_SUFFIX):
        stem = stem[:-len(INPUT_SUFFIX)]
    return f"{stem}{OUTPUT_SUFFIX}.npz"


def smplx_arrays(sequence):
    """{key: array} of an output file, in the order of OUTPUT_KEYS."""
    pose = np.asarray(sequence.pose, dtype=np.float64)
    num_frames = len(pose)
    if pose.shape != (num_frames, 55, 3) or np.shape(sequence.trans) != (num_frames, 3):
        raise ValueError(f"expected pose (T, 55, 3) and trans (T, 3), got {pose.shape} and "
                         f"{np.shape(sequence.trans)}")
    if sequence.gender not in GENDERS:
        raise ValueError(f"gender {sequence.gender!r}")
    poses = pose.reshape(num_frames, SMPLX_POSE_SIZE)
    betas = np.asarray(sequence.betas, dtype=np.float64).reshape(-1)
    arrays = {"poses": poses}
    arrays.update({key: poses[:, part] for key, part in SMPLX_POSE_SLICES.items()})
    arrays.update(trans=np.asarray(sequence.trans, dtype=np.float64),
                  betas=betas, num_betas=np.array(len(betas)),
                  gender=np.array(sequence.gender), surface_model_type=np.array("smplx"),
                  mocap_frame_rate=np.array(float(sequence.framerate)),
                  mocap_time_length=np.array(num_frames / float(sequence.framerate)))
    return {key: np.require(arrays[key], requirements="C") for key in OUTPUT_KEYS}


def write_smplx_sequence(path, sequence):
    """Write a `SmplxSequence` to `path` (an `_stageii.npz`), atomically; InputError
    naming it, and nothing written, when a value is not finite."""
    arrays = smplx_arrays(sequence)
    check_finite(path, arrays)
    with atomic_write(path) as handle:
        np.savez(handle, **arrays)


def read_smplx_sequence(path):
    """{key: array} of an output file, checked: InputError naming the file when it is not
    a complete, consistent SMPL-X sequence of this format."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: not found")
    arrays = _load(path, OUTPUT_KEYS)
    missing = [key for key in OUTPUT_KEYS if key not in arrays]
    if missing:
        raise InputError(f"{path}: lacks {', '.join(missing)}")
    poses = arrays["poses"]
    if poses.ndim != 2 or poses.shape[1] != SMPLX_POSE_SIZE or len(poses) == 0:
        raise InputError(f"{path}: poses has shape {poses.shape}, expected (T, 165), T > 0")
    num_frames = len(poses)
    for key, part in SMPLX_POSE_SLICES.items():
        if not np.array_equal(arrays[key], poses[:, part]):
            raise InputError(f"{path}: {key} does not match poses[:, {part.start}:{part.stop}]")
    betas = arrays["betas"]
    if arrays["trans"].shape != (num_frames, 3) or betas.ndim != 1 \
            or int(arrays["num_betas"]) != len(betas):
        raise InputError(f"{path}: trans {arrays['trans'].shape}, betas {betas.shape} and "
                         f"num_betas {arrays['num_betas']} do not fit {num_frames} frames")
    if _text(arrays["surface_model_type"]) != "smplx" or _text(arrays["gender"]) not in GENDERS:
        raise InputError(f"{path}: surface_model_type {arrays['surface_model_type']} and "
                         f"gender {arrays['gender']}, expected smplx and a gender")
    if not all(np.isfinite(arrays[key]).all() for key in ("poses", "trans", "betas")):
        raise InputError(f"{path}: holds NaN or infinite values")
    rate = float(arrays["mocap_frame_rate"])
    if not rate > 0 or not np.isclose(float(arrays["mocap_time_length"]), num_frames / rate):
        raise InputError(f"{path}: mocap_frame_rate {rate} and mocap_time_length "
                         f"{arrays['mocap_time_length']} do not fit {num_frames} frames")
    return arrays


def is_finished(path):
    """Whether `path` is an output file that reads back valid."""
    try:
        read_smplx_sequence(path)
    except InputError:
        return False
    return True
