"""Motion-sequence files of every SMPL-family model, in the layouts AMASS writes them.

The model table (`family.KINDS`, each kind's `motion` layout) says what a file of each
model holds:
- SMPL-X: AMASS's "SMPL-X N / G" release, `<name>_stageii.npz`: `poses` (T, 165) and the
  same split out (`root_orient`, `pose_body`, `pose_jaw`, `pose_eye`, `pose_hand`), `trans`,
  `betas` (16), `num_betas`, `gender`, `surface_model_type`, `mocap_frame_rate`,
  `mocap_time_length`;
- SMPL-H: AMASS's "SMPL+H G" release, `<name>_poses.npz`: `poses` (T, 156), `trans`,
  `betas` (16), `gender`, `mocap_framerate` (sic), `dmpls` (T, 8) (zero when we write it);
- SMPL: `<name>_poses.npz` with `poses` (T, 72), `trans`, `betas` (10), `gender`,
  `mocap_framerate`.
Files written outside AMASS's releases (video pose estimators, other tools) may hold the
pose cut into parts or as rotation matrices (`motion_poses`), the translation as `transl`,
the frame rate as `fps`, `frame_rate` or `framerate`, and no gender or frame rate (the
caller gives them).
The model of an input is told by its poses (`motion_poses.file_kind`, checked against
`surface_model_type` where the file has one). `shape.npz` (betas and gender
only) and files already in the target model are skipped with a reason (`SkipFile`);
anything else wrong is an `InputError` naming the file. Outputs hold plain arrays only
(`np.load(path, allow_pickle=False)` reads them), float64 and numpy str as AMASS writes
them; a file is written atomically and counts as finished only when it reads back valid
(`read_motion_file`).
"""
from __future__ import annotations

import numbers
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import InputError, listed
from ..family import KINDS
from .files import atomic_write, check_finite, shown_value
from .limits import MAX_ANGLE_RAD, MAX_BETA, MAX_TRANSLATION_M, rows_beyond, value_problem
from .motion_poses import PART_KEYS, file_kind, pose_values
from .npz import member_shapes, read_npz

GENDERS = ("neutral", "male", "female")
# Every frame-rate spelling of the layouts (SMPL+H's mocap_framerate, SMPL-X's
# mocap_frame_rate) first, then those of other exports: an input may hold any.
RATE_KEYS = tuple(dict.fromkeys(kind.motion.rate_key for kind in KINDS.values()))
INPUT_RATE_KEYS = RATE_KEYS + ("fps", "frame_rate", "framerate")
INPUT_KEYS = ("poses", "trans", "transl", "betas",
              "surface_model_type") + INPUT_RATE_KEYS
# The way out for a file whose gender is missing or no gender: a gender given is every
# file's, and the files' own `gender` is then not read at all.
GENDER_GIVEN = "or one given for every file: convert_sequences.py --gender"
IGNORED_KEYS = ("marker_data", "marker_labels", "dmpls")
MIN_FRAMERATE, MAX_FRAMERATE = 1, 10000      # frames/s any capture could have


@dataclass(frozen=True)
class MotionSequence:
    """A motion of one model kind, checked.

    kind: "smpl", "smplh" or "smplx"; poses: (T, 3 J) float64 axis-angle (flat-hand
    convention); trans: (T, 3) float64; betas: (S,) float64, or (T, S) a shape per frame (as
    video pose estimators write; only as a source: a converted motion has one shape);
    gender: neutral, male or female; framerate: frames/s; path: the file read (None for one
    made in memory).
    """
    kind: str
    poses: np.ndarray
    trans: np.ndarray
    betas: np.ndarray
    gender: str
    framerate: float
    path: Path = None

    @property
    def num_frames(self) -> int:
        return len(self.poses)


# The text of a bytes object, `b'female'`: AMASS's SSM_synced files hold their gender so.
BYTES_TEXT = re.compile(r"""b(['"])(.*)\1""")


def _unquoted(text: str) -> str:
    """`text` without the `b'...'` around it (module comment), when it has them."""
    match = BYTES_TEXT.fullmatch(text)
    return match.group(2).strip() if match else text


def _text(value):
    """A 0-d or 1-element string/bytes array as str (None when it is not text)."""
    value = np.asarray(value)
    if value.size != 1 or value.dtype.kind not in "US":
        return None
    item = value.reshape(-1)[0]
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)


def _own_gender(path) -> dict:
    """{"gender": array} of the file's own gender member ({} when it has none)."""
    try:
        return _load(path, ("gender",))
    except InputError as error:     # e.g. a member of Python objects, which is never read
        raise InputError(f"{error} ({GENDER_GIVEN})") from None


def _gender_text(path, value) -> str:
    """A file's own gender, lowercase: spelled in any case, with spaces around it
    (`Female`, b'MALE '), as exports other than AMASS's own write it."""
    text = _text(value)
    gender = None if text is None else _unquoted(text.strip().lower())
    if gender not in GENDERS:
        raise InputError(f"{path}: gender is {shown_value(value)}, expected one of "
                         f"{', '.join(GENDERS)} ({GENDER_GIVEN})")
    return gender


def _load(path, keys):
    """{key: array} of the members `keys` that the .npz file holds (no other member is
    decompressed); InputError naming it when it cannot be read."""
    try:
        return read_npz(path, keys)
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None


def motion_header(path: str | Path, expected_kind: str | None = None) -> tuple:
    """(model kind or None, frames) of a motion file from its members' headers, nothing
    decompressed but a `surface_model_type` beside pose parts; the kind is None when the
    file's poses tell no one model (`expected_kind` as in `file_kind`; its reader says why),
    the frames 0 when none are declared."""
    shapes = member_shapes(path, ("poses",) + PART_KEYS)
    if not shapes:                  # no poses at all: nothing more to read
        return None, 0
    shape = shapes.get("poses") or next(iter(shapes.values()))
    frames = shape[0] if len(shape) > 1 else 0
    try:
        stated = None if "poses" in shapes else _text(
            read_npz(path, ("surface_model_type",)).get("surface_model_type"))
        return file_kind(path, shapes, stated, expected_kind)[0], frames
    except InputError:              # SkipFile too
        return None, frames


def read_motion(path: str | Path, expected_kind: str | None = None,
                gender: str | None = None, framerate: float | None = None) -> MotionSequence:
    """The checked `MotionSequence` of a motion file of any kind.

    expected_kind: the model the caller was told the file holds (None: the file's own);
        a file of another model is a SkipFile naming both (one line).
    gender: the gender the file is read with, whatever it holds (None: its own, which
        it must hold).
    framerate: the frame rate of a file that holds none (None: the file must hold its own;
        a pose estimator's output is at its video's rate).
    Raises:
        SkipFile: `shape.npz` or another file without poses or pose parts; a file of
            another model than `expected_kind`.
        InputError: missing or unreadable file, zero frames, NaN or infinite values (the
            frames are named), missing or malformed arrays.
    """
    path = Path(path)
    if not path.exists():           # anything else that is not a regular file is named below
        raise InputError(f"{path}: sequence file not found")
    arrays = _load(path, INPUT_KEYS)
    if gender is None:
        arrays.update(_own_gender(path))
    if "poses" not in arrays:       # parts are read only where they are the pose
        arrays.update(_load(path, PART_KEYS))
    shapes = {key: arrays[key].shape for key in ("poses",) + PART_KEYS if key in arrays}
    stated = _text(arrays["surface_model_type"]) if "surface_model_type" in arrays else None
    kind, scheme = file_kind(path, shapes, stated, expected_kind)
    poses = pose_values(path, arrays, kind, scheme)
    trans_key = next((key for key in ("trans", "transl") if key in arrays), None)
    missing = [] if trans_key else ["trans (or transl)"]
    missing += [] if "betas" in arrays else ["betas"]
    missing += [] if "gender" in arrays or gender else [f"gender ({GENDER_GIVEN})"]
    rate_key = next((key for key in INPUT_RATE_KEYS if key in arrays), None)
    own_rate_key = KINDS[kind].motion.rate_key
    missing += [] if rate_key or framerate is not None else [
        f"{own_rate_key} (or " + ", ".join(key for key in INPUT_RATE_KEYS if key != own_rate_key)
        + ": frames per second; or one given for files without it: convert_sequences.py "
        "--source-fps)"]
    if missing:
        raise InputError(f"{path}: a {KINDS[kind].label} motion file has poses, trans, betas, "
                         f"gender and {own_rate_key}; it lacks" + listed(missing))
    for key in (trans_key, "betas"):
        if arrays[key].dtype.kind != "f":
            raise InputError(f"{path}: {key} has type {arrays[key].dtype}, expected floats")
    if gender is None:
        gender = _gender_text(path, arrays["gender"])
    if rate_key is not None:            # the file's own rate, else the one given
        framerate = arrays[rate_key]
        if framerate.size != 1 or framerate.dtype.kind not in "fiu":
            raise InputError(f"{path}: {rate_key} is {shown_value(framerate)}, expected a "
                             "number of frames per second")
        framerate = framerate.reshape(-1)[0]
    return checked_motion(MotionSequence(
        kind=kind, poses=poses, trans=arrays[trans_key], betas=arrays["betas"],
        gender=gender, framerate=framerate, path=path),
        rate_key or "the frame rate given for files without one")


def is_framerate(rate) -> bool:
    """Whether `rate` is a number of frames per second that a capture could have."""
    return (isinstance(rate, numbers.Real) and not isinstance(rate, bool)
            and MIN_FRAMERATE <= float(rate) <= MAX_FRAMERATE)


def checked_motion(sequence: MotionSequence, rate_name: str = "framerate") -> MotionSequence:
    """`sequence` with float64 arrays, or an InputError naming its file (or "motion", one
    made in memory) when its arrays do not fit its kind and one another, or hold NaN,
    infinity or numbers beyond the limits (`formats.limits`; the frames are named).
    rate_name: the frame rate's name in messages (the file's key)."""
    name = sequence.path or "motion"
    if sequence.kind not in KINDS:
        raise InputError(f"{name}: kind is {sequence.kind!r}, expected one of {', '.join(KINDS)}")
    pose_size = KINDS[sequence.kind].pose_size
    arrays = {}
    for key in ("poses", "trans", "betas"):
        try:
            arrays[key] = np.asarray(getattr(sequence, key), dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{name}: {key} is not an array of numbers") from None
    poses, trans, betas = arrays.values()
    num_frames = len(poses) if poses.ndim else 0
    if num_frames == 0:
        raise InputError(f"{name}: has zero frames")
    if poses.shape != (num_frames, pose_size):
        raise InputError(f"{name}: poses has shape {poses.shape}, expected ({num_frames}, "
                         f"{pose_size}) for {KINDS[sequence.kind].label}")
    if trans.shape != (num_frames, 3):
        raise InputError(f"{name}: trans has shape {trans.shape}, expected ({num_frames}, 3)")
    if betas.ndim == 2 and len(betas) == 1:
        betas = betas[0]                               # (1, S): one shape, as a row
    per_frame = betas.ndim == 2 and len(betas) == num_frames
    if betas.shape[-1:] == (0,) or not (betas.ndim == 1 or per_frame):
        raise InputError(f"{name}: betas has shape {betas.shape}, expected (S,) floats, or a "
                         f"shape per frame ({num_frames}, S)")
    for frames, problem in (
            (np.flatnonzero(~(np.isfinite(poses).all(1) & np.isfinite(trans).all(1))),
             "NaN or infinite values"),
            (rows_beyond(poses, MAX_ANGLE_RAD), f"an angle beyond {MAX_ANGLE_RAD:g} rad"),
            (rows_beyond(trans, MAX_TRANSLATION_M),
             f"a translation beyond {MAX_TRANSLATION_M:g} m")):
        if len(frames) == 1:
            raise InputError(f"{name}: frame {frames[0]} holds {problem}")
        if len(frames):
            shown = [f"frame {frame}" for frame in frames[:5]]
            shown += [f"and {len(frames) - 5} more"] if len(frames) > 5 else []
            raise InputError(f"{name}: {len(frames)} frames hold {problem}:" + listed(shown))
    problem = value_problem(betas, MAX_BETA)
    if problem:
        raise InputError(f"{name}: betas {problem}")
    if not isinstance(sequence.gender, str) or sequence.gender not in GENDERS:
        raise InputError(f"{name}: gender is {shown_value(sequence.gender)}, expected one of "
                         f"{', '.join(GENDERS)}")
    rate = sequence.framerate
    if not is_framerate(rate):
        raise InputError(f"{name}: {rate_name} is {shown_value(rate)}, expected a number of "
                         f"frames per second from {MIN_FRAMERATE} to {MAX_FRAMERATE}")
    return replace(sequence, poses=poses, trans=trans, betas=betas, framerate=float(rate))


def output_name(input_name: str, target_kind: str) -> str:
    """The output file name of an input: its stem without a known motion suffix, then the
    target's (`01_01_poses.npz` -> `01_01_stageii.npz` for SMPL-X)."""
    stem = Path(input_name).stem
    for suffix in {kind.motion.suffix for kind in KINDS.values()}:
        if stem.endswith(suffix):
            stem = stem[:-len(suffix)]
            break
    return f"{stem}{KINDS[target_kind].motion.suffix}.npz"


def motion_arrays(sequence: MotionSequence) -> dict:
    """{key: array} of the file of a `MotionSequence`, in its layout's key order."""
    layout, pose_size = KINDS[sequence.kind].motion, KINDS[sequence.kind].pose_size
    poses = np.asarray(sequence.poses, dtype=np.float64)
    num_frames = len(poses)
    poses = poses.reshape(num_frames, -1)
    if poses.shape[1] != pose_size or np.shape(sequence.trans) != (num_frames, 3):
        raise ValueError(f"expected poses (T, {pose_size}) and trans (T, 3), got "
                         f"{poses.shape} and {np.shape(sequence.trans)}")
    if not isinstance(sequence.gender, str) or sequence.gender not in GENDERS:
        raise ValueError(f"gender {sequence.gender!r}")
    betas = np.asarray(sequence.betas, dtype=np.float64)
    if betas.ndim != 1:
        raise ValueError(f"expected betas (S,): a motion file holds one shape, got {betas.shape}")
    rate = float(sequence.framerate)
    arrays = {"poses": poses, "trans": np.asarray(sequence.trans, dtype=np.float64),
              "betas": betas, "num_betas": np.array(len(betas)),
              "gender": np.array(sequence.gender), "surface_model_type": np.array(sequence.kind),
              layout.rate_key: np.array(rate),
              "mocap_time_length": np.array(num_frames / rate),
              "dmpls": np.zeros((num_frames, layout.num_dmpls))}
    arrays.update({name: poses[:, 3 * first:3 * end]
                   for name, (first, end) in layout.parts.items()})
    return {key: np.require(arrays[key], requirements="C") for key in layout.keys()}


def write_motion(path: str | Path, sequence: MotionSequence) -> None:
    """Write a `MotionSequence` in its kind's layout to `path`, atomically; InputError
    naming it, and nothing written, when a value is not finite."""
    arrays = motion_arrays(sequence)
    check_finite(path, arrays)
    with atomic_write(path) as handle:
        np.savez(handle, **arrays)


def read_motion_file(path: str | Path, kind: str) -> dict:
    """{key: array} of a file we write for `kind`, checked: InputError naming the file when
    it is not a complete, consistent file of that layout."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: not found")
    layout, pose_size = KINDS[kind].motion, KINDS[kind].pose_size
    arrays = _load(path, layout.keys())
    missing = [key for key in layout.keys() if key not in arrays and key not in IGNORED_KEYS]
    if missing:
        raise InputError(f"{path}: lacks" + listed(missing))
    poses = arrays["poses"]
    if poses.ndim != 2 or poses.shape[1] != pose_size or len(poses) == 0:
        raise InputError(f"{path}: poses has shape {poses.shape}, expected "
                         f"(T, {pose_size}), T > 0")
    num_frames = len(poses)
    for name, (first, end) in layout.parts.items():
        if not np.array_equal(arrays[name], poses[:, 3 * first:3 * end]):
            raise InputError(f"{path}: {name} does not match poses[:, {3 * first}:{3 * end}]")
    betas = arrays["betas"]
    if arrays["trans"].shape != (num_frames, 3) or betas.ndim != 1 or (
            layout.model_type and int(arrays["num_betas"]) != len(betas)):
        raise InputError(f"{path}: trans {arrays['trans'].shape} and betas {betas.shape} "
                         f"do not fit {num_frames} frames")
    if _text(arrays["gender"]) not in GENDERS or (
            layout.model_type and _text(arrays["surface_model_type"]) != kind):
        raise InputError(f"{path}: gender {shown_value(arrays['gender'])} (or "
                         "surface_model_type), "
                         f"expected a gender of a {KINDS[kind].label} file")
    if not all(np.isfinite(arrays[key]).all() for key in ("poses", "trans", "betas")):
        raise InputError(f"{path}: holds NaN or infinite values")
    rate = float(arrays[layout.rate_key])
    if not rate > 0 or (layout.model_type and not np.isclose(
            float(arrays["mocap_time_length"]), num_frames / rate)):
        raise InputError(f"{path}: {layout.rate_key} {rate} (and mocap_time_length) do not "
                         f"fit {num_frames} frames")
    return arrays
