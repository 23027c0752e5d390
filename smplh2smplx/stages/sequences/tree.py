"""Where a sequence run's inputs and outputs are, and which outputs are done.

The sorted list of `.npz` files under the input folder (the output folder excluded) is
named relative to the input folder's parent, so the input folder keeps its own name under
the output root (`AMASS/CMU` gives `<output>/CMU/...`; a single file keeps its parent
folder's name: `CMU/01/01_01_poses.npz` gives `<output>/01/01_01_stageii.npz`). Each input
has an output file (the mirrored tree, the target's file name) and a per-frame quality
file; an output counts as done when it reads back valid and shows the run's settings, which
the output folder records (`result_settings.json`). Nothing is written over an input.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import InputError, listed
from ...formats.files import (atomic_write, check_writable_folder, is_regular_file,
                              remove_stale_temporaries, shown_value)
from ...formats.motion_poses import KIND_OF_POSE_SIZE
from ...formats.npz import read_npz
from ...formats.result_settings import check_result_settings
from ...formats.sequence_files import (RATE_KEYS, motion_header, output_name,
                                       read_motion_file)
from ...formats.sequences_csv import SEQUENCES_CSV, merge_sequence_rows
from .convert import SequenceOptions, SequenceResult

QUALITY_DIR = "quality"          # <output>/quality/<relative folder>/<name>_frames.npz

def list_sequence_files(input_path: str | Path, output_dir: str | Path | None = None) -> list:
    """Sorted (relative name, path) of the `.npz` files to consider.

    Names start with the input folder's own name as given (a file: its parent folder's); a
    folder gives every `.npz` below it, folders reached through symbolic links included
    (hidden names and the output folder, when inside it, left out), sorted by relative path.
    """
    input_path = Path(input_path)
    if input_path.is_file():
        return [(f"{Path(os.path.abspath(input_path)).parent.name}/{input_path.name}",
                 input_path)]
    if not input_path.is_dir():
        raise InputError(f"{input_path}: input not found")
    top = Path(os.path.abspath(input_path)).name
    excluded = Path(output_dir).resolve() if output_dir is not None else None
    found, visited = [], set()
    # Folders reached through symbolic links are listed too (under the link's name); a
    # folder met twice (a link loop, or two links to one folder) is listed once.
    for folder, subfolders, names in os.walk(input_path, followlinks=True):
        real = Path(folder).resolve()
        if real in visited or (excluded is not None
                               and (real == excluded or excluded in real.parents)):
            subfolders[:] = []
            continue
        visited.add(real)
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        relative_folder = Path(folder).relative_to(input_path)
        for name in names:
            if name.endswith(".npz") and not name.startswith("."):
                relative = relative_folder / name
                found.append((f"{top}/{relative.as_posix()}", input_path / relative))
    return sorted(found)


def _is_sequence_output(name):
    """Whether `name` is a file a sequence run writes (its stale temporaries are removed)."""
    return name == SEQUENCES_CSV or name.endswith(".npz")


def remove_stale_sequence_temporaries(output_dir: str | Path, files: Sequence[tuple],
                                      target_kind: str) -> None:
    """Remove what a killed run left of its outputs: the temporaries of the output, quality
    and `sequences.csv` files in the folders of `files` ((relative name, path) pairs)."""
    folders = {Path(output_dir)}
    for relative, _path in files:
        folders.add(output_path(output_dir, relative, target_kind).parent)
        folders.add(quality_path(output_dir, relative, target_kind).parent)
    for folder in sorted(folders):
        remove_stale_temporaries(folder, _is_sequence_output)


def output_path(output_dir: str | Path, relative: str | Path, target_kind: str) -> Path:
    """The output file of the input at `relative` (mirrored tree, the target's file name:
    `_stageii.npz` for SMPL-X, `_poses.npz` for SMPL-H and SMPL)."""
    relative = Path(relative)
    return Path(output_dir) / relative.parent / output_name(relative.name, target_kind)


def quality_path(output_dir: str | Path, relative: str | Path, target_kind: str) -> Path:
    """The per-frame quality file of the input at `relative`."""
    relative = Path(relative)
    name = output_name(relative.name, target_kind).replace(".npz", "_frames.npz")
    return Path(output_dir) / QUALITY_DIR / relative.parent / name


def conversion_header(path: str | Path, options: SequenceOptions) -> tuple:
    """(the model the file at `path` is converted from, or None, its source frames), from
    its members' headers (`motion_header`). None: no poses that tell one model, the target's
    own model, or another model than `source_model` (such files are skipped or fail, and
    write nothing)."""
    kind, frames = motion_header(path, options.source_model)
    return (None if kind == options.target_model else kind), frames


def shared_outputs(files: list, options: SequenceOptions) -> dict:
    """{relative name: message} for the files (relative, path) of the whole list whose output
    another file to be converted would write too: the SMPL+H and SMPL-X files of one take side
    by side (`X_poses.npz`, `X_stageii.npz`) are both `X_poses.npz` in SMPL, and a SMPL file
    `X.npz` beside `X_poses.npz` one `X_stageii.npz` in SMPL-X. Neither is converted (each
    fails, naming the other), in every shard alike; only such pairs' headers are read."""
    writers = {}
    for relative, path in files:
        output = output_path(options.output_dir, relative, options.target_model)
        writers.setdefault(output, []).append((relative, path))
    clashes = {}
    for output, inputs in writers.items():
        if len(inputs) < 2:
            continue
        converted = [(relative, path) for relative, path in inputs
                     if conversion_header(path, options)[0]]
        for relative, path in converted if len(converted) > 1 else ():
            others = ", ".join(str(other) for name, other in converted if name != relative)
            clashes[relative] = (f"{path}: its output {output} would also be written from "
                                 f"{others}; convert one model's files (--source-model) or "
                                 "each into its own output folder")
    return clashes


def _file_identity(path) -> tuple | None:
    """(device, inode) of the file at `path`, following links; None when there is none."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def check_outputs_spare_inputs(files: list, converted: list, options: SequenceOptions) -> None:
    """InputError, before anything is written, when a file the run would write is one of the
    input files (`files`, (relative, path)): an output folder that mirrors the input tree
    onto itself (a single file's grandparent folder as --output-dir, a link into the input
    tree), where SMPL <-> SMPL-H outputs (`_poses.npz` both) or an output beside an input of
    the target's name would replace the inputs. `converted` are the relative names of the
    files to convert; only outputs that exist are compared, so a fresh run stats nothing
    more than its outputs."""
    written = {}
    for relative in converted:
        for path in (output_path(options.output_dir, relative, options.target_model),
                     quality_path(options.output_dir, relative, options.target_model)):
            identity = _file_identity(path)
            if identity is not None:
                written[identity] = path
    if not written:
        return
    for relative, path in files:
        output = written.get(_file_identity(path))
        if output is not None:
            raise InputError(f"{path}: the run would write {output} over this input file "
                             "(the output folder mirrors the input tree onto itself); give "
                             "another --output-dir")


def result_settings(options: SequenceOptions) -> dict:
    """The settings that define a sequence run's outputs (recorded in the output folder)."""
    return {"target_model": options.target_model, "num_betas": options.betas_written,
            "gender": options.gender,
            "fps": "source" if options.fps is None else float(options.fps)}


def _shown_settings(arrays: dict, options: SequenceOptions) -> dict:
    """The settings an output file's arrays show: its model and number of betas, and its
    gender and frame rate where the run fixes them."""
    shown = {"target_model": KIND_OF_POSE_SIZE[arrays["poses"].shape[1]],
             "num_betas": len(arrays["betas"])}
    if options.gender != "file":
        shown["gender"] = str(arrays["gender"])
    if options.fps is not None:
        shown["fps"] = float(next(arrays[key] for key in RATE_KEYS if key in arrays))
    return shown


def _existing_outputs(options):
    """Each motion file under the output folder with the settings it shows."""
    output_dir = Path(options.output_dir)
    for path in sorted(output_dir.rglob("*.npz")):
        if QUALITY_DIR in path.relative_to(output_dir).parts[:1] or not is_regular_file(path):
            continue
        try:
            arrays = read_npz(path, ("poses", "betas", "gender") + RATE_KEYS)
            shown = _shown_settings(arrays, options)
        except Exception:   # not one of our outputs, or unreadable: converted again
            continue
        yield path, shown


def is_done(path: Path, options: SequenceOptions, settings: dict) -> bool:
    """Whether `path` is a finished output (it reads back valid) of this run's settings;
    with `overwrite`, only one written since `overwrite_since`.

    An output of other settings in a folder whose record matches the run is what an
    --overwrite run with new settings left when it stopped before the end: it is not done,
    so resuming converts it again rather than keep it under the new record.
    """
    try:
        if options.overwrite and (options.overwrite_since is None
                                  or path.stat().st_mtime < options.overwrite_since):
            return False
        arrays = read_motion_file(path, options.target_model)
    except (InputError, OSError):
        return False
    return all(settings.get(name) == value
               for name, value in _shown_settings(arrays, options).items())


def check_output_folder(options: SequenceOptions) -> dict:
    """Raise, before any work, when the run's outputs cannot go into its output folder:
    InputError when it is the input folder or lies above it (the outputs would be read as
    inputs, or mixed into the input tree), holds results of other settings
    (`check_result_settings`) or a sequences.csv that cannot take rows; OutputError when it
    cannot be written or locked (`check_writable_folder`). Returns the run's result
    settings."""
    input_path, output_dir = Path(options.input_path), Path(options.output_dir)
    source, target = input_path.resolve(), output_dir.resolve()
    if input_path.is_dir() and (source == target or target in source.parents):
        where = "is" if source == target else "lies inside"
        raise InputError(f"{input_path}: the input folder {where} the output folder "
                         f"{output_dir}; give another --output-dir")
    check_writable_folder(output_dir)
    settings = result_settings(options)
    check_result_settings(output_dir, settings, options.overwrite,
                          lambda: _existing_outputs(options))
    merge_sequence_rows(output_dir / SEQUENCES_CSV, [])              # it takes rows
    return settings


def write_quality(path: str | Path, result: SequenceResult) -> None:
    """Per-frame v2v_mm, accelerations and fitter steps of a sequence (for the report)."""
    with atomic_write(path) as handle:
        np.savez(handle, v2v_mm=result.v2v_mm, acceleration=result.acceleration,
                 source_acceleration=result.source_acceleration,
                 iterations=result.iterations, fps=np.array(result.output.framerate))


QUALITY_KEYS = ("v2v_mm", "acceleration", "source_acceleration", "iterations", "fps")


def read_quality(path: str | Path, frames: int) -> dict:
    """{key: array} of the quality file of a sequence of `frames` output frames, checked:
    InputError naming the file when it is unreadable or does not fit (the report skips it)."""
    try:
        arrays = read_npz(path, QUALITY_KEYS)
    except FileNotFoundError:
        raise InputError(f"{path}: quality file not found") from None
    missing = [key for key in QUALITY_KEYS if key not in arrays]
    if missing:
        raise InputError(f"{path}: lacks" + listed(missing))
    accelerations = max(frames - 2, 0)
    for key, length in (("v2v_mm", frames), ("acceleration", accelerations),
                        ("source_acceleration", accelerations), ("iterations", frames)):
        value = arrays[key]
        if value.shape != (length,) or value.dtype.kind not in "fiu":
            raise InputError(f"{path}: {key} has shape {value.shape} and type {value.dtype}, "
                             f"expected ({length},) numbers for {frames} frames")
    fps = arrays["fps"]
    if fps.size != 1 or fps.dtype.kind not in "fiu" or not 0 < float(fps.reshape(-1)[0]) < 1e5:
        raise InputError(f"{path}: fps is {shown_value(fps)}, expected a positive frame rate")
    arrays["fps"] = float(fps.reshape(-1)[0])
    return arrays
