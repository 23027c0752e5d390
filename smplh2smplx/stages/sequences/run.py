"""A sequence-conversion run over a tree of motion files: shards, files in flight, resume.

The files (`tree.list_sequence_files`) are sharded like stage 2 (`shard_size` files from
`shard_index * shard_size` of the whole sorted list, so shards never depend on what is
done). Finished files (`tree.is_done`) are skipped; `shape.npz` and files already in the
target model are skipped with a reason; a bad file is one line naming it, and with
`keep_going` the run goes on. Per file, the row of `sequences.csv` and the per-frame quality
file are written first, the output `.npz` last, each atomically.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ...body.deformation import DeformationTransfer
from ...body.mask import check_mask_describes_body
from ...errors import InputError, SkipFile, listed, one_line, unforeseen
from ...family import KINDS
from ...formats.files import (NAME_MAX_BYTES, check_finite, name_problem, name_too_long,
                              output_blocked, shown_name)
from ...formats.mesh_folder import select_shard
from ...formats.result_settings import record_result_settings
from ...formats.sequence_files import motion_arrays, read_motion, write_motion
from ...formats.sequences_csv import SEQUENCES_CSV, SequenceRow, merge_sequence_rows
from ...runtime import available_memory, resolve_device
from .batching import FitScheduler
from .convert import (GenderModels, SequenceOptions, frames_written, memory_per_frame,
                      model_not_given, pair_transfer, sequence_row, sequence_steps,
                      unused_betas, unused_betas_note)
from .tree import (check_output_folder, check_outputs_spare_inputs, conversion_header, is_done,
                   list_sequence_files, output_path, quality_path,
                   remove_stale_sequence_temporaries, shared_outputs, write_quality)

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


def check_source_models(options: SequenceOptions, source_kinds, transfer: Callable) -> None:
    """InputError when no source model of the files to convert (`source_kinds`) has both
    its model path and its deformation transfer (`transfer(kind)` reads it), listing every
    one missing, so that a first run names all the paths to set at once. Where some have
    them, the files of the others fail alone, each with its line."""
    problems, kinds_without = [], 0
    for kind in source_kinds:
        missing = [str(model_not_given(kind))] if options.model_paths.get(kind) is None else []
        try:
            transfer(kind)
        except InputError as error:
            missing.append(str(error))
        problems += missing
        kinds_without += bool(missing)
    if source_kinds and kinds_without == len(source_kinds):
        raise InputError(problems[0] if len(problems) == 1
                         else "no file can be converted:" + listed(problems))


class SequenceRun:
    """The deformation transfers and models of a run (loaded on first use per source kind
    and gender) and the per-file work."""

    def __init__(self, options, settings: dict, source_kinds=(), clashes=None):
        """settings: the run's result settings, recorded in the output folder just before
        its first output (a run whose every file fails records nothing, so it cannot bar a
        corrected rerun). source_kinds: the source models of the files to convert, whose
        transfers are read now (`check_source_models`). clashes: {relative name: message}
        of the files that fail for sharing their output (`shared_outputs`)."""
        self.options, self.settings, self._recorded = options, settings, False
        self.clashes = clashes or {}
        self.device = resolve_device(options.device)
        self._transfers = {}
        self._models = {}
        # (source kind, gender, betas the model takes) -> [(relative name, betas given)]
        self.unused_betas = {}
        check_source_models(options, source_kinds, self.transfer)

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
        for output in written:                     # before the fit, not after it
            problem = output_blocked(output)
            if problem:
                raise InputError(f"{path}: cannot write its output: {problem}")
        sequence = read_motion(path, options.source_model,
                               None if options.gender == "file" else options.gender,
                               options.source_fps)
        if sequence.kind == target:
            raise SkipFile(f"{path}: already a {KINDS[target].label} sequence")
        try:
            models = self.models(sequence.kind, sequence.gender)
        except InputError as error:
            raise InputError(f"{path}: gender {sequence.gender}: {error}") from None
        check_memory(path, frames_written(sequence, options.fps), models)
        if unused_betas(sequence, models):
            self.unused_betas.setdefault(
                (sequence.kind, sequence.gender, models.source.num_betas), []).append(
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
        # An error no check foresaw (a bug) stops a run, loud; with --keep-going it fails
        # its file alone, so that a run over thousands of files (and every resume of it)
        # goes on past that file.
        bug = unforeseen(outcome) if self.options.keep_going else None
        if bug:
            raise InputError(f"{path}: the conversion failed {bug}; please report it with "
                             "this file")
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


def check_memory(path: Path, frames: int, models: GenderModels) -> None:
    """InputError naming the file when the arrays its conversion keeps for its `frames` to
    write (`memory_per_frame`) need more memory than this process can still take
    (`available_memory`): a file of millions of frames costs its maker a few MB of
    compressed zeros, and converting them would swap a laptop or get a cluster task killed,
    losing the files after it. (The reader refuses poses that could not even be read:
    `npz.check_memory_to_read`; a file of over FRAMES_IN_FLIGHT source frames is converted
    alone.)"""
    needed, available = frames * memory_per_frame(models), available_memory()
    if available is not None and needed > available:
        raise InputError(f"{path}: its {frames:,} frames to write need at least "
                         f"{needed / 1e9:.3g} GB of memory, and {available / 1e9:.3g} GB is "
                         "available here; convert it with more memory (with --slurm: "
                         "--mem-gb), at a lower --fps, or split it")


def run_sequences(options: SequenceOptions, progress: bool = True,
                  log: Callable[[str], None] = print) -> SequenceSummary:
    """Convert this shard's sequences with `options`; returns a `SequenceSummary`.

    Raises, before any fit, InputError for bad options, a missing input or a bad
    deformation transfer, and what `check_output_folder` raises; a bad file fails alone
    (with keep_going the run goes on). The progress bar counts source frames.
    """
    options.check()
    target = options.target_model
    settings = check_output_folder(options)
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
    headers = {relative: conversion_header(path, options) for relative, path in shard}
    kind_of = {relative: kind for relative, (kind, _frames) in headers.items()}
    # Done: a file that would be converted and whose output is done (a file that is
    # skipped, or whose output another file wrote, is not).
    todo = [(relative, path) for relative, path in shard
            if relative in clashes or kind_of[relative] is None
            or not is_done(output_path(options.output_dir, relative, target), options,
                           settings)]
    summary.done_before = len(shard) - len(todo)
    check_outputs_spare_inputs(files, [relative for relative, _path in todo
                                       if kind_of[relative]], options)
    single_file = Path(options.input_path).is_file()
    kinds = {kind_of[relative] for relative, _path in todo if relative not in clashes}
    run = SequenceRun(options, settings, sorted(kinds - {None}), clashes) if todo else None
    if summary.done_before:         # results found to match the settings: record them now
        record_result_settings(options.output_dir, settings, options.overwrite)
    start = time.perf_counter()
    frames = [headers[relative][1] for relative, _path in todo]
    # Named on the bar: with --fps the frames written are fewer than the source's.
    with tqdm(total=sum(frames), desc="source frames",
              unit="frame", disable=not progress or not todo) as bar:
        if todo:                    # a shard whose every file is done has no run
            convert_files(run, list(zip(todo, frames)), summary, bar, single_file, progress)
            summary.notes = run.notes()
    summary.seconds = time.perf_counter() - start
    return summary


# Source frames of the files in flight at most, beside `sequences_per_batch` (a file alone
# may hold more): a conversion holds about 8 KB a frame written (SMPL-X targets) and its
# chunks' targets, some 100 MB (8 files of 601 frames in flight: 1.95 GB, one at a time
# 1.16 GB).
FRAMES_IN_FLIGHT = 20_000


def convert_files(run: SequenceRun, files: list, summary: SequenceSummary, bar,
                  single_file: bool, progress: bool) -> None:
    """Convert `files` ((relative, path), source frames) with up to `sequences_per_batch` of
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
    queue = [(index, relative, path, frames)
             for index, ((relative, path), frames) in enumerate(files)][::-1]
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
