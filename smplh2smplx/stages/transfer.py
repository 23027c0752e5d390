"""Stage 2: meshes of a source model -> one parameter file of a target model per pose.

The pair is any of SMPL, SMPL-H and SMPL-X, both ways (SMPL-H -> SMPL-X by default, the
PoseScript/PoseFix case); `source` and `target` below name the two models.

The run, in order:
1. list the inputs: the `.obj`/`.ply` files of the mesh folder sorted by name, as the
   official MeshFolder does (the pose id is the file stem), or, with `from_params`, the
   pose ids recorded in `source_params.npz` in the same order;
2. keep this run's shard (`shard_size` inputs from `shard_index * shard_size`; taken over the
   whole sorted list, so shards never depend on what earlier runs finished), then drop the
   poses whose `.pkl` is done (`is_done`) unless `overwrite`;
3. load and check the target model, the deformation transfer and its mask (SMPL and SMPL-H
   share one mesh: the identity, every vertex) and, with `from_params`, the SMPL-H model: any
   problem is an `InputError` naming the file, before any fit;
4. per batch of `poses_per_batch` poses: read and check the meshes against the source's vertex
   count (a bad mesh stops the run; with `keep_going` it fails that pose only), map them
   to target vertices with the sparse deformation transfer, fit on the mask ids from the
   source pose mapped onto the target's joints when `source_params.npz` records it (SMPL-H
   sources) or a parameter file of the source's format lies beside the mesh
   (`<pose_id:06d>.pkl`), else from the mesh alone,
   then write the batch's rows into errors.csv and its `.pkl` files (the target's format).

Resuming: every file appears whole or not at all (`atomic_write`), and a pose counts as done
only once its `.pkl` exists. A batch writes its CSV rows before its `.pkl` files, so a run
killed in between leaves rows that the next run replaces when it fits those poses again.
Batches are fixed slices of the shard's list, fitted whole while any of their poses is left,
so every pose is fitted with the same batch mates whatever was done before: a killed run
started again yields files with the same content as an uninterrupted run, to the last bit.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..body.deformation import load_pair_transfer
from ..body.lbs import BodyModel
from ..body.mask import check_mask_describes_body
from ..errors import InputError, unforeseen
from ..family import KINDS, STAGE1_MODEL, map_pose
from ..fit.fitter import BodyFitter, fit_batch
from ..formats.body_models import load_body_model, load_smplh
from ..formats.errors_csv import ERRORS_CSV, ErrorRow, merge_error_rows
from ..formats.files import (blocked_outputs, check_writable_folder, is_regular_file,
                             remove_stale_temporaries)
from ..formats.mesh_folder import (PoseInput, list_mesh_inputs, read_mesh_vertices,
                                   select_shard)
from ..formats.param_files import (parameter_path, pose_from_parameters, read_parameters,
                                   write_parameters)
from ..formats.result_settings import check_result_settings, record_result_settings
from ..formats.source_params import SOURCE_PARAMS, read_source_params
from ..runtime import resolve_device
from ..settings import TransferOptions

@dataclass
class TransferSummary:
    """Outcome of a run: counts, per-pose errors of the poses fitted now, speed."""
    total: int = 0
    skipped: int = 0
    failures: list = field(default_factory=list)     # (input name, message)
    rows: list = field(default_factory=list)         # ErrorRow of every pose fitted now
    seconds: float = 0.0

    @property
    def done(self) -> int:
        return len(self.rows)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def lines(self) -> list:
        """The summary printed at the end of a run."""
        lines = [f"poses: {self.done} done, {self.skipped} skipped (already converted), "
                 f"{self.failed} failed, of {self.total} in this shard"]
        if self.rows:
            errors = np.array([row.v2v_mean_mm for row in self.rows])
            flagged = sum(row.flagged for row in self.rows)
            unconverged = sum(not row.converged for row in self.rows)
            lines.append(f"v2v_mm: mean {errors.mean():.2f}, median {np.median(errors):.2f}, "
                         f"p95 {np.percentile(errors, 95):.2f}, max {errors.max():.2f}")
            lines.append(f"flagged (above threshold): {flagged}; not converged: {unconverged}")
            lines.append(f"speed: {self.done / max(self.seconds, 1e-9):.1f} poses/s "
                         f"({self.seconds:.1f} s)")
        lines.extend(f"failed: {message}" for _name, message in self.failures)
        return lines


def param_inputs(source_params: str | Path) -> list:
    """Inputs of the from_params mode, in the order of the file names stage 1 writes."""
    return [PoseInput(f"{pose_id:06d}", pose_id)
            for pose_id in sorted(source_params, key=lambda pose_id: f"{pose_id:06d}")]


class _Stage2:
    """The loaded models of a run and the per-batch work (targets, fit, writing)."""

    def __init__(self, options, source_params):
        self.options = options
        self.source_params = source_params
        self.device = resolve_device(options.device)
        self.source = KINDS[options.source_model]
        target_data = load_body_model(options.model_path(options.target_model),
                                      options.target_model, options.gender)
        target_data.check_num_betas(options.fit.num_betas, "fit.num_betas")
        self.deformation = load_pair_transfer(options.source_model, options.target_model,
                                              options.deformation_transfer, options.mask)
        if options.mask is not None:
            check_mask_describes_body(self.deformation.mask_ids, target_data.weights,
                                      options.mask)
        self.smplh_body = None
        if options.from_params:
            self.smplh_body = BodyModel(load_smplh(options.smplh_model)).to(self.device)
        self.fitter = BodyFitter(target_data, self.deformation.mask_ids, options.fit)
        self.fitter = self.fitter.to(self.device)
        self.starts = {}          # pose id -> (J_source, 3) pose of a source parameter file

    def read_start(self, item):
        """The source pose of the parameter file beside a mesh (`<pose_id:06d>.pkl` in the
        source model's format, e.g. written by an earlier run with that model as target),
        (J_source, 3); None when there is none. InputError naming a malformed file."""
        path = item.mesh_path.with_suffix(".pkl")
        if not path.is_file():
            return None
        return pose_from_parameters(read_parameters(path, self.source.name), self.source.name)[0]

    def read_vertices(self, inputs):
        """The inputs that can be read, their source vertices (B, V, 3), the failures.

        Vertices come from the mesh files (numpy), or with from_params from posing the
        SMPL-H model on the run's device (torch).
        """
        ok, vertices, failures = [], [], []
        if self.smplh_body is not None:
            poses = np.stack([self.source_params[item.pose_id] for item in inputs])
            pose = torch.as_tensor(poses, device=self.device).view(-1, STAGE1_MODEL.num_joints, 3)
            with torch.no_grad():
                return list(inputs), self.smplh_body(pose)[0], []
        for item in inputs:
            try:
                if item.pose_id is None:
                    raise InputError(f"{item.mesh_path}: the file name is not a pose id "
                                     "(<pose_id:06d>.obj) or repeats another file's pose id")
                mesh = read_mesh_vertices(item.mesh_path, self.source)
                start = (None if item.pose_id in self.source_params
                         else self.read_start(item))
                vertices.append(mesh)
                ok.append(item)
                if start is not None:
                    self.starts[item.pose_id] = start
            except InputError as error:
                failures.append((item.name, str(error)))
        stacked = (np.stack(vertices) if vertices
                   else np.zeros((0, self.source.num_vertices, 3), np.float32))
        return ok, stacked, failures

    def start_pose(self, pose_id):
        """(J_target, 3) start of a pose: its recorded source pose (source_params.npz, or a
        source parameter file) mapped onto the target's joints; None: read off the mesh."""
        if pose_id in self.source_params:
            pose = self.source_params[pose_id]
        elif pose_id in self.starts:
            pose = self.starts.pop(pose_id)
        else:
            return None
        return map_pose(pose[None], self.source.name, self.options.target_model)[0]

    def fit_and_write(self, inputs, source_vertices, new):
        """Fit the batch; write the rows, then the .pkl files, of the poses in `new`.

        The poses of a batch not in `new` (their .pkl exists) are fitted only to keep the
        batch the same as in an uninterrupted run: a fit's last bits depend on its batch
        mates. A pose whose fitted values are not finite fails (nothing written for it).
        Returns the rows written and the failures.
        """
        options = self.options
        targets = torch.as_tensor(
            self.deformation.apply(source_vertices)[:, self.deformation.mask_ids])
        init_poses = [self.start_pose(item.pose_id) for item in inputs]
        result = fit_batch(self.fitter, targets, init_poses)
        written = [i for i, item in enumerate(inputs) if item.pose_id in new]
        finite = [bool(torch.isfinite(result.pose[i]).all()
                       and torch.isfinite(result.betas[i]).all()) for i in range(len(inputs))]
        failures = [(inputs[i].name, f"{parameter_path(options.output_dir, inputs[i].pose_id)}:"
                     " not written: the fit gave NaN or infinite values") for i in written
                    if not finite[i]]
        written = [i for i in written if finite[i]]
        rows = [ErrorRow(pose_id=inputs[i].pose_id,
                         v2v_mean_mm=float(result.v2v_mean_mm[i]),
                         v2v_max_mm=float(result.v2v_max_mm[i]),
                         iterations=int(result.iterations[i]),
                         converged=bool(result.converged[i]),
                         flagged=bool(result.v2v_mean_mm[i] > options.flag_threshold_mm))
                for i in written]
        merge_error_rows(options.output_dir / ERRORS_CSV, rows)
        for i in written:
            write_parameters(parameter_path(options.output_dir, inputs[i].pose_id),
                             options.target_model, result.pose[i], result.betas[i],
                             result.transl[i])
        return rows, failures


def _is_stage2_output(name):
    """Whether `name` is a file stage 2 writes (its stale temporaries are removed)."""
    stem, _, suffix = name.rpartition(".")
    return name == ERRORS_CSV or (suffix == "pkl" and stem.isdigit())


def is_done(path: Path, settings: dict) -> bool:
    """Whether `path` is a finished result of a run of `settings`: a regular file (not a
    link) that passes the reader of the target model's parameter files, with the run's
    number of betas. Anything else (0 bytes, truncated, a planted link, a result that an
    --overwrite run with other settings left when it stopped) is converted again, and the
    new file replaces it."""
    if not is_regular_file(path):
        return False
    try:
        params = read_parameters(path, settings["target_model"])
    except InputError:
        return False
    return params["betas"].shape[1] == settings["num_betas"]


def result_settings(options: TransferOptions) -> dict:
    """The settings that define stage 2's results (recorded in the output folder)."""
    return {"target_model": options.target_model, "num_betas": options.fit.num_betas,
            "gender": options.gender}


def _existing_results(output_dir):
    """Each result `.pkl` in `output_dir` with the target model and number of betas it
    shows (files no format reads are left out: they are redone, as on any resume)."""
    for path in sorted(Path(output_dir).glob("*.pkl")):
        if not (path.stem.isdigit() and is_regular_file(path)):
            continue
        for kind in KINDS:
            try:
                params = read_parameters(path, kind)
            except InputError:
                continue
            yield path, {"target_model": kind, "num_betas": params["betas"].shape[1]}
            break


def _no_inputs_message(options, source_params):
    """Why a run has nothing to convert, and what to do about it."""
    if options.from_params:
        return (f"{Path(options.mesh_dir) / SOURCE_PARAMS}: records no pose; run stage 1 "
                "into this folder first")
    hint = (f"; it holds {SOURCE_PARAMS} with {len(source_params)} poses (stage 1 with "
            "--output-format params?): convert them with --from-params" if source_params
            else "; run stage 1 into this folder first")
    return f"{options.mesh_dir}: no .obj or .ply mesh files in the mesh folder{hint}"


def check_output_folder(options: TransferOptions) -> dict:
    """Raise, before any model is loaded, when a run's results cannot go into its output
    folder (either engine): InputError when it is the mesh folder, holds results of other
    settings (`check_result_settings`) or an errors.csv that cannot take rows; OutputError
    when it cannot be written or locked. Removes the stale temporaries of killed runs.
    Returns the run's result settings."""
    output_dir = Path(options.output_dir)
    if output_dir.resolve() == Path(options.mesh_dir).resolve():
        # A .pkl beside a mesh is read as that pose's source parameters (its start).
        raise InputError(f"{output_dir}: the output folder is the mesh folder; the results "
                         "would be read as source parameters by the next run: give another "
                         "--output-dir")
    check_writable_folder(output_dir)
    settings = result_settings(options)
    check_result_settings(output_dir, settings, options.overwrite,
                          lambda: _existing_results(output_dir))
    merge_error_rows(output_dir / ERRORS_CSV, [])              # it takes rows
    remove_stale_temporaries(output_dir, _is_stage2_output)
    return settings


def run_transfer(options: TransferOptions, progress: bool = True, log=print) -> TransferSummary:
    """Run stage 2 with `options` (a `TransferOptions`); returns a `TransferSummary`.

    Raises InputError, before any pose is fitted, for a missing or wrong model,
    deformation transfer, mask, mesh folder or source_params.npz and an errors.csv that
    cannot take rows (OutputError for an output folder that cannot be written or locked),
    and for the first bad mesh (the poses of earlier batches are written); with
    options.keep_going a bad mesh only fails its pose (listed in the summary) and the other
    poses are converted.

    Batches are fixed slices of the shard's sorted list, whatever is already converted: a
    batch with any pose left to convert is fitted whole, so that a resumed run fits every
    pose with the same batch mates as an uninterrupted one, to the last bit.
    """
    options.check()
    output_dir = Path(options.output_dir)
    settings = check_output_folder(options)
    source_path = Path(options.mesh_dir) / SOURCE_PARAMS
    if options.from_params and not source_path.is_file():
        raise InputError(f"{source_path}: not found (from_params needs the poses recorded by "
                         "stage 1)")
    # source_params.npz records the stage-1 model's poses: a start for that source only.
    source_params = (read_source_params(source_path)
                     if options.source_model == STAGE1_MODEL.name else {})
    inputs = param_inputs(source_params) if options.from_params else list_mesh_inputs(
        options.mesh_dir)
    if not inputs:
        raise InputError(_no_inputs_message(options, source_params))
    if options.shard_size == 0 and options.shard_index != 0:
        log(f"note: shard_index {options.shard_index} is ignored: shard_size is 0, so the "
            "one shard is the whole folder")
    shard = select_shard(inputs, options.shard_size, options.shard_index)
    if options.shard_size and not shard and inputs:
        log(f"shard {options.shard_index} of size {options.shard_size} is empty: the folder "
            f"holds {len(inputs)} inputs ({math.ceil(len(inputs) / options.shard_size)} shards)")

    def is_new(item):
        return (options.overwrite or item.pose_id is None
                or not is_done(parameter_path(output_dir, item.pose_id), settings))

    # A pose whose .pkl cannot be written (a folder in its place) fails before any work, as
    # a bad mesh does.
    blocked = blocked_outputs({item.name: parameter_path(output_dir, item.pose_id)
                               for item in shard if item.pose_id is not None})
    if blocked and not options.keep_going:
        raise InputError(f"{next(iter(blocked.values()))} (stopped; --keep-going converts "
                         "the other poses and lists the bad ones)")
    work = []                                    # (batch, names of its poses to convert)
    for start in range(0, len(shard), options.poses_per_batch):
        batch = shard[start:start + options.poses_per_batch]
        new = {item.name for item in batch if item.name not in blocked and is_new(item)}
        if new:
            work.append((batch, new))
    num_new = sum(len(new) for _, new in work)
    summary = TransferSummary(total=len(shard), skipped=len(shard) - num_new - len(blocked),
                              failures=list(blocked.items()))

    stage = _Stage2(options, source_params)
    output_dir.mkdir(parents=True, exist_ok=True)
    # The settings are recorded for the results the folder holds (found to match them), or
    # else just before the first fit: a run whose every input fails records nothing.
    recorded = summary.skipped > 0
    if recorded:
        record_result_settings(output_dir, settings, options.overwrite)
    start_time = time.perf_counter()
    with tqdm(total=num_new, unit="pose", disable=not progress or not work) as bar, \
            ThreadPoolExecutor(max_workers=1) as reader:
        # Read the next batch's meshes while the current batch is fitted.
        pending = reader.submit(stage.read_vertices, work[0][0]) if work else None
        for index, (_batch, new) in enumerate(work):
            ok, vertices, failures = pending.result()
            if index + 1 < len(work):
                pending = reader.submit(stage.read_vertices, work[index + 1][0])
            failures = [(name, message) for name, message in failures if name in new]
            if failures and not options.keep_going:
                raise InputError(f"{failures[0][1]} (stopped; --keep-going converts the "
                                 "other poses and lists the bad ones)")
            for _name, message in failures:
                bar.write(f"failed: {message}")
            summary.failures.extend(failures)
            new_ids = {item.pose_id for item in ok if item.name in new}
            if new_ids:
                if not recorded:
                    record_result_settings(output_dir, settings, options.overwrite)
                    recorded = True
                try:
                    rows, failures = stage.fit_and_write(ok, vertices, new_ids)
                except Exception as error:
                    # An error no check foresaw (a bug) stops the run; with keep_going it
                    # fails the batch's poses alone, so the run and its resumes go past it.
                    bug = unforeseen(error) if options.keep_going else None
                    if not bug:
                        raise
                    rows = []
                    failures = [(item.name, f"pose {item.pose_id}: the fit of its batch "
                                 f"failed {bug}; please report it with the batch's inputs")
                                for item in ok if item.pose_id in new_ids]
                summary.rows.extend(rows)
                summary.failures.extend(failures)
            bar.update(len(new))
    summary.seconds = time.perf_counter() - start_time
    return summary
