"""A sequence-conversion run over a tree of motion files: listing, shards, resume.

The sorted list of `.npz` files under the input folder (the output folder excluded) is
named relative to the input folder's parent, so the input folder keeps its own name under
the output root (`AMASS/CMU` gives `<output>/CMU/...`; a single file keeps its parent
folder's name: `CMU/01/01_01_poses.npz` gives `<output>/01/01_01_stageii.npz`). It is
sharded like stage 2 (`shard_size` files from `shard_index * shard_size` of the whole list,
so shards never depend on what is done). Finished files (an output that reads back valid)
are skipped; `shape.npz` and SMPL-X files are skipped with a reason; a bad file is one line
naming it, and with `keep_going` the run goes on. Per file, the row of `sequences.csv` and
the per-frame quality file are written first, the output `.npz` last, each atomically.
"""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ...body.deformation import DeformationTransfer
from ...body.mask import check_mask_describes_body
from ...errors import InputError, listed, one_line
from ...family import KINDS
from ...formats.files import (NAME_MAX_BYTES, atomic_write, check_finite,
                              check_writable_folder, is_regular_file, name_problem,
                              name_too_long, remove_stale_temporaries, shown_name,
                              shown_value)
from ...formats.mesh_folder import select_shard
from ...formats.npz import member_shape, read_npz
from ...formats.result_settings import check_result_settings, record_result_settings
from ...formats.sequence_files import (KIND_OF_POSE_SIZE, RATE_KEYS, SkipFile,
                                       motion_arrays, output_name, read_motion,
                                       read_motion_file, write_motion)
from ...formats.sequences_csv import SEQUENCES_CSV, SequenceRow, merge_sequence_rows
from ...runtime import resolve_device
from .batching import FitScheduler
from .convert import (GenderModels, SequenceOptions, SequenceResult, pair_transfer,
                      sequence_row, sequence_steps, unused_betas, unused_betas_note)

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


def converted_kind(poses_shape: tuple, options: SequenceOptions) -> str | None:
    """The model a file whose `poses` member has this shape (`member_shape`) is converted
    from, or None: no readable poses, the target's own model, or another model than
    `source_model` (such files are skipped or fail, and write nothing)."""
    kind = KIND_OF_POSE_SIZE.get(poses_shape[1]) if len(poses_shape) == 2 else None
    if kind == options.target_model or options.source_model not in (None, kind):
        return None
    return kind


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
                     if converted_kind(member_shape(path, "poses"), options)]
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


def check_output_folder(options: SequenceOptions) -> None:
    """Raise, before any work, when the run's outputs cannot go into its output folder:
    InputError when it is the input folder or lies above it (the outputs would be read as
    inputs, or mixed into the input tree), holds results of other settings
    (`check_result_settings`) or a sequences.csv that cannot take rows; OutputError when it
    cannot be written or locked (`check_writable_folder`)."""
    input_path, output_dir = Path(options.input_path), Path(options.output_dir)
    source, target = input_path.resolve(), output_dir.resolve()
    if input_path.is_dir() and (source == target or target in source.parents):
        where = "is" if source == target else "lies inside"
        raise InputError(f"{input_path}: the input folder {where} the output folder "
                         f"{output_dir}; give another --output-dir")
    check_writable_folder(output_dir)
    check_result_settings(output_dir, result_settings(options), options.overwrite,
                          lambda: _existing_outputs(options))
    merge_sequence_rows(output_dir / SEQUENCES_CSV, [])              # it takes rows


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


@dataclass
class SequenceSummary:
    """Outcome of a run (one shard)."""
    total: int = 0
    done_before: int = 0                              # finished in an earlier run
    skipped: list = field(default_factory=list)       # (relative name, reason)
    failures: list = field(default_factory=list)      # (relative name, message)
    rows: list = field(default_factory=list)          # SequenceRow of each file converted now
    notes: list = field(default_factory=list)         # lines about files converted with care
    seconds: float = 0.0
    stopped: bool = False                             # stopped at a failure (no keep_going)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def lines(self) -> list:
        """The summary printed at the end of a run."""
        lines = [f"sequences: {len(self.rows)} converted, {self.done_before} already done, "
                 f"{len(self.skipped)} skipped, {self.failed} failed, of {self.total} files "
                 "in this shard"]
        if self.rows:
            frames = sum(row.frames for row in self.rows)
            means = np.array([row.v2v_mean_mm for row in self.rows])
            worst = max(self.rows, key=lambda row: row.v2v_mean_mm)
            excess = np.array([row.jitter_excess for row in self.rows])
            source = np.array([row.source_jitter for row in self.rows])
            lines.append(f"v2v_mm over sequences: mean {means.mean():.2f}, worst sequence "
                         f"{worst.sequence} (mean {worst.v2v_mean_mm:.2f}, p95 "
                         f"{worst.v2v_p95_mm:.2f}, max {worst.v2v_max_mm:.2f})")
            lines.append(f"jitter: fitted minus source {excess.mean():+.3f} m/s^2 on average "
                         f"(source {source.mean():.3f} m/s^2)")
            lines.append(f"speed: {frames / max(self.seconds, 1e-9):.1f} frames/s "
                         f"({frames} frames, {self.seconds:.1f} s)")
        lines.extend(self.notes)
        lines.extend(f"skipped: {reason}" for _name, reason in self.skipped)
        lines.extend(f"failed: {message}" for _name, message in self.failures)
        if self.stopped:
            lines.append("stopped at the first bad file; --keep-going converts the others")
        return lines


def _remembered(cache: dict, key, load: Callable[[], object]):
    """`cache[key]`, loaded by `load()` on first use; an InputError of the load is remembered
    and raised again, so that every file needing it fails with the same line."""
    if key not in cache:
        try:
            cache[key] = load()
        except InputError as error:
            cache[key] = error
    if isinstance(cache[key], InputError):
        raise cache[key]
    return cache[key]


class SequenceRun:
    """The deformation transfers and models of a run (loaded on first use per source kind
    and gender) and the per-file work."""

    def __init__(self, options, settings: dict, source_kinds=(), clashes=None):
        """settings: the run's result settings, recorded in the output folder just before
        its first output (a run whose every file fails records nothing, so it cannot bar a
        corrected rerun). source_kinds: the source models of the files to convert, whose
        transfers are read now: when none of them can be read, nothing can be converted
        (InputError); otherwise the files of a kind whose transfer failed fail alone, with
        its line. clashes: {relative name: message} of the files that fail for sharing
        their output (`shared_outputs`)."""
        self.options, self.settings, self._recorded = options, settings, False
        self.clashes = clashes or {}
        self.device = resolve_device(options.device)
        self._transfers = {}
        self._models = {}
        # (source kind, gender, betas the model takes) -> [(relative name, betas given)]
        self.unused_betas = {}
        errors = []
        for kind in source_kinds:
            try:
                self.transfer(kind)
            except InputError as error:
                errors.append(error)
        if errors and len(errors) == len(source_kinds):
            raise errors[0]

    def transfer(self, source_kind: str) -> DeformationTransfer:
        """The deformation transfer from `source_kind` to the target (read once; a failure
        is remembered and raised again)."""
        return _remembered(self._transfers, source_kind, lambda: pair_transfer(
            self.options, source_kind, self.options.target_model))

    def models(self, source_kind: str, gender: str) -> GenderModels:
        """GenderModels of a source kind and gender; a failure to load is remembered and
        raised again."""
        def load():
            mask_ids = self.transfer(source_kind).mask_ids
            models = GenderModels(self.options, source_kind, gender, mask_ids, self.device)
            if self.options.mask_path is not None and KINDS[models.target_kind].uses_mask:
                check_mask_describes_body(mask_ids, models.target.weights.cpu().numpy(),
                                          self.options.mask_path)
            return models

        return _remembered(self._models, (source_kind, gender), load)

    def start(self, relative: str, path: Path, on_frames: Callable[[int], None] | None = None):
        """Read and check one file; its conversion as a generator of fits
        (`convert.sequence_steps`)."""
        options = self.options
        if relative in self.clashes:
            raise InputError(self.clashes[relative])
        problem = name_problem(relative)
        if problem:
            raise InputError(f"{shown_name(relative)}: the file name {problem} (it could not "
                             "be written into sequences.csv); rename the file")
        target = options.target_model
        written = (output_path(options.output_dir, relative, target),
                   quality_path(options.output_dir, relative, target))
        if any(name_too_long(output) for output in written):
            raise InputError(f"{path}: the file name is too long: the names of its outputs "
                             f"would be over {NAME_MAX_BYTES} bytes; rename the file")
        sequence = read_motion(path, options.source_model)
        if sequence.kind == target:
            raise SkipFile(f"{path}: already a {KINDS[target].label} sequence")
        gender = sequence.gender if options.gender == "file" else options.gender
        try:
            models = self.models(sequence.kind, gender)
        except InputError as error:
            raise InputError(f"{path}: gender {gender}: {error}") from None
        if unused_betas(sequence, models):
            self.unused_betas.setdefault(
                (sequence.kind, gender, models.source.num_betas), []).append(
                    (relative, sequence.betas.shape[-1]))
        return sequence_steps(sequence, models, self.transfer(sequence.kind), options.fps,
                              options.chunk_frames, options.shape_frames,
                              options.shape_rounds, options.smoothing, on_frames=on_frames)

    def notes(self) -> list:
        """A line per source model that files gave more betas than it takes (not zero)."""
        lines = []
        for (kind, gender, taken), files in self.unused_betas.items():
            first, given = files[0]
            more = f" (and {len(files) - 1} more files)" if len(files) > 1 else ""
            model = f"{KINDS[kind].label} model ({gender})"
            lines.append("note: " + unused_betas_note(
                model, taken, f"{shown_name(first)} gives {given}{more}"))
        return lines

    def finish(self, relative: str, path: Path, outcome, seconds: float) -> SequenceRow:
        """Write a converted file's row, quality file and output (`outcome`: its
        SequenceResult, or the exception its conversion raised); its row."""
        if isinstance(outcome, torch.linalg.LinAlgError):
            # Inputs within the limits never get here; if one did, it must fail alone, not
            # stop a run over thousands of files.
            raise InputError(f"{path}: the fit failed ({one_line(outcome)})")
        if isinstance(outcome, BaseException):
            raise outcome
        options, target = self.options, self.options.target_model
        output = output_path(options.output_dir, relative, target)
        check_finite(output, motion_arrays(outcome.output))   # before its row is recorded
        if not self._recorded:
            record_result_settings(options.output_dir, self.settings, options.overwrite)
            self._recorded = True
        row = sequence_row(relative, outcome, seconds)
        merge_sequence_rows(Path(options.output_dir) / SEQUENCES_CSV, [row])
        write_quality(quality_path(options.output_dir, relative, target), outcome)
        write_motion(output, outcome.output)
        return row


def run_sequences(options: SequenceOptions, progress: bool = True,
                  log: Callable[[str], None] = print) -> SequenceSummary:
    """Convert this shard's sequences with `options`; returns a `SequenceSummary`.

    Raises, before any fit, InputError for bad options, a missing input or a bad
    deformation transfer, and what `check_output_folder` raises; a bad file fails alone
    (with keep_going the run goes on). The progress bar counts source frames.
    """
    options.check()
    target = options.target_model
    check_output_folder(options)
    settings = result_settings(options)
    files = list_sequence_files(options.input_path, options.output_dir)
    if not files:
        raise InputError(f"{options.input_path}: no .npz files to convert")
    if options.shard_size == 0 and options.shard_index != 0:
        log(f"note: shard index {options.shard_index} is ignored: shard size is 0, so the "
            "one shard is the whole input")
    shard = select_shard(files, options.shard_size, options.shard_index)
    remove_stale_sequence_temporaries(options.output_dir, shard, target)
    if options.shard_size and not shard and files:
        log(f"shard {options.shard_index} of size {options.shard_size} is empty: the input "
            f"holds {len(files)} files ({math.ceil(len(files) / options.shard_size)} shards)")
    summary = SequenceSummary(total=len(shard))
    clashes = shared_outputs(files, options)
    pose_shapes = {relative: member_shape(path, "poses") for relative, path in shard}
    # Done: a file that would be converted and whose output is done (a file that is
    # skipped, or whose output another file wrote, is not).
    todo = [(relative, path) for relative, path in shard
            if relative in clashes or converted_kind(pose_shapes[relative], options) is None
            or not is_done(output_path(options.output_dir, relative, target), options,
                           settings)]
    summary.done_before = len(shard) - len(todo)
    check_outputs_spare_inputs(files, [relative for relative, _path in todo
                                       if converted_kind(pose_shapes[relative], options)],
                               options)
    single_file = Path(options.input_path).is_file()
    kinds = {converted_kind(pose_shapes[relative], options) for relative, _path in todo
             if relative not in clashes}
    run = SequenceRun(options, settings, sorted(kinds - {None}), clashes) if todo else None
    if summary.done_before:         # results found to match the settings: record them now
        record_result_settings(options.output_dir, settings, options.overwrite)
    start = time.perf_counter()
    shapes = [pose_shapes[relative] for relative, _path in todo]
    # Named on the bar: with --fps the frames written are fewer than the source's.
    with tqdm(total=sum(shape[0] if shape else 0 for shape in shapes), desc="source frames",
              unit="frame", disable=not progress or not todo) as bar:
        if todo:                    # a shard whose every file is done has no run
            convert_files(run, list(zip(todo, shapes)), summary, bar, single_file, progress)
            summary.notes = run.notes()
    summary.seconds = time.perf_counter() - start
    return summary


# Source frames of the files in flight at most, beside `sequences_per_batch` (a file alone
# may hold more): a conversion holds about 60 KB a source frame (12,000 SMPL-H frames to
# SMPL-X: 1.84 GB at the peak, 60 frames 1.16 GB) and its chunks' targets, some 100 MB
# (8 files of 601 frames in flight: 1.95 GB, one at a time 1.16 GB).
FRAMES_IN_FLIGHT = 20_000


def convert_files(run: SequenceRun, files: list, summary: SequenceSummary, bar,
                  single_file: bool, progress: bool) -> None:
    """Convert `files` ((relative, path), poses shape) with up to `sequences_per_batch` of
    them (and FRAMES_IN_FLIGHT source frames) in flight, their fits batched together
    (`batching.FitScheduler`); each file is written as soon as it is done. Rows, skips and
    failures go into `summary`; without keep_going a failure starts no other file (those in
    flight are finished)."""
    options, scheduler = run.options, FitScheduler()
    in_flight = {}                             # index -> (relative, path, frames, start)
    counted = {}                               # index -> source frames on the bar
    bar_lock = threading.Lock()                # files report their frames from the pool

    def count(index, frames):
        """Move the bar by a file's source frames, at most its own."""
        def update(amount):
            with bar_lock:
                amount = min(amount, frames - counted[index])
                counted[index] += amount
                bar.update(amount)
        return update

    def failed(relative, error):
        # A file that is not a motion file to convert is skipped in a tree, but fails when
        # it is the one file asked for.
        if isinstance(error, SkipFile) and not single_file:
            summary.skipped.append((relative, str(error)))
            return
        summary.failures.append((relative, str(error)))
        if progress:
            tqdm.write(f"failed: {error}")
        if not options.keep_going:
            summary.stopped = True

    def ended(index, outcome):
        relative, path, frames, started = in_flight.pop(index)
        try:
            summary.rows.append(run.finish(relative, path, outcome,
                                           time.perf_counter() - started))
        except InputError as error:
            failed(relative, error)
        finally:
            # The bar counts the file's source frames whatever the frame rate written.
            count(index, frames)(frames)

    def room_for(frames):
        held = sum(entry[2] for entry in in_flight.values())
        return not in_flight or (len(in_flight) < options.sequences_per_batch
                                 and held + frames <= FRAMES_IN_FLIGHT)

    # (index, relative, path, source frames), the first file last.
    queue = [(index, relative, path, shape[0] if shape else 0)
             for index, ((relative, path), shape) in enumerate(files)][::-1]
    while True:
        while queue and room_for(queue[-1][3]) and not summary.stopped:
            index, relative, path, frames = queue.pop()
            counted[index] = 0
            in_flight[index] = (relative, path, frames, time.perf_counter())
            try:
                outcomes = scheduler.add(index, run.start(relative, path,
                                                          count(index, frames)))
            except InputError as error:
                outcomes = [(index, error)]
            for key, outcome in outcomes:
                ended(key, outcome)
        if not in_flight:                  # nothing in flight, nothing (more) to start
            break
        for key, outcome in scheduler.round():
            ended(key, outcome)
