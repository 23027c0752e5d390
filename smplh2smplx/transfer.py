"""Stage 2: SMPL-H meshes (or recorded SMPL-H poses) -> one SMPL-X parameter file per pose.

The run, in order:
1. list the inputs: the `.obj`/`.ply` files of the mesh folder sorted by name, as the
   official MeshFolder does (the pose id is the file stem), or, with `from_params`, the
   pose ids recorded in `source_params.npz` in the same order;
2. keep this run's shard (`shard_size` inputs from `shard_index * shard_size`; taken over the
   whole sorted list, so shards never depend on what earlier runs finished), then drop the
   poses whose `.pkl` exists unless `overwrite`;
3. load and check the SMPL-X model, the deformation transfer and its mask (and the SMPL-H
   model with `from_params`): any problem is an `InputError` naming the file, before any fit;
4. per batch of `batch_size` poses: read and check the meshes (a bad mesh fails that pose
   only), map them to SMPL-X vertices with the sparse deformation transfer, fit on the mask
   ids from the source pose when `source_params.npz` records it (else from the mesh alone),
   then write the batch's rows into errors.csv and its `.pkl` files.

Resuming: every file appears whole or not at all (`atomic_write`), and a pose counts as done
only once its `.pkl` exists. A batch writes its CSV rows before its `.pkl` files, so a run
killed in between leaves rows that the next run replaces when it fits those poses again.
Batches are fixed slices of the shard's list, fitted whole while any of their poses is left,
so every pose is fitted with the same batch mates whatever was done before: a killed run
started again yields files with the same content as an uninterrupted run, to the last bit.
"""
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import roma
import torch
from tqdm import tqdm

from .body_models import load_smplh, load_smplx
from .deformation import load_deformation_transfer
from .errors import InputError
from .files import (check_writable_folder, is_regular_file, open_regular,
                    remove_stale_temporaries)
from .fitter import FitSettings, SmplxFitter
from .lbs import BodyModel
from .meshes import read_mesh
from .outputs import (ERRORS_CSV, NUM_BETAS, ErrorRow, merge_error_rows, parameter_path,
                      read_smplx_params, write_smplx_params)

MESH_SUFFIXES = (".obj", ".ply")
SOURCE_PARAMS = "source_params.npz"
SMPLH_VERTICES = 6890
SMPLH_FACES = 13776
MAX_COORDINATE_M = 100.0   # |x| of a mesh vertex, metres; AMASS bodies stay within ~10 m
UNSET = "TODO"  # what config.py holds for a path the user has not written yet


# The path entries of the stage-2 config (fit.smplh_model too, with from_params).
PATH_KEYS = ("datasets.mesh_folder.data_folder", "output_folder", "body_model.folder",
             "deformation_transfer_path", "mask_ids_fname")


@dataclass(frozen=True)
class TransferOptions:
    """Everything a stage-2 run needs (see my_smplh2smplx.yaml for each entry's meaning).

    mesh_dir: stage-1 folder (meshes and source_params.npz); output_dir: where .pkl go.
    smplx_model: SMPL-X model file, or a folder holding smplx/SMPLX_<GENDER>.npz.
    deftrafo_path, mask_path: deformation transfer setup and SMPL-X mask ids.
    shard_size, shard_index: the slice of the sorted input list (shard_size 0: all).
    batch_size: poses fitted at once; device: "cpu", "cuda", "cuda:N" or "auto".
    flag_threshold_mm: poses whose v2v_mean_mm exceeds it are flagged in errors.csv.
    from_params: pose SMPL-H from source_params.npz instead of reading meshes;
    smplh_model: the SMPL-H model used then.
    """
    mesh_dir: Path
    output_dir: Path
    smplx_model: Path
    deftrafo_path: Path
    mask_path: Path
    gender: str = "neutral"
    shard_size: int = 0
    shard_index: int = 0
    overwrite: bool = False
    batch_size: int = 512
    device: str = "auto"
    fit: FitSettings = field(default_factory=FitSettings)
    flag_threshold_mm: float = 15.0
    from_params: bool = False
    smplh_model: Path = None

    @classmethod
    def from_config(cls, config):
        """Options from a resolved my_smplh2smplx.yaml configuration (an OmegaConf DictConfig)."""
        def value(key, kind):
            node = config
            for part in key.split("."):
                try:
                    node = node[part]
                except Exception:       # a section replaced by a scalar or left empty
                    raise InputError(f"config entry {key} is missing: its section "
                                     f"{key.rpartition('.')[0] or key} is not a mapping "
                                     "of entries") from None
            if node is None:
                raise InputError(f"config entry {key} is empty")
            try:
                if kind is bool:
                    if isinstance(node, str) and node.lower() in ("true", "false"):
                        return node.lower() == "true"
                    if not isinstance(node, bool):
                        raise ValueError
                    return node
                if kind is int and isinstance(node, float) and not node.is_integer():
                    raise ValueError
                return kind(node)
            except (TypeError, ValueError):
                raise InputError(f"config entry {key}: expected {kind.__name__}, "
                                 f"got {node!r}") from None

        def path(key):
            text = value(key, str)
            if text.strip() in ("", UNSET):
                raise InputError(f"config entry {key} is not set: write its path in config.py "
                                 f"or give --exp-opts {key}=PATH")
            return Path(text).expanduser()

        unset = [key for key in PATH_KEYS + (("fit.smplh_model",)
                                              if value("fit.from_params", bool) else ())
                 if str(value(key, str)).strip() in ("", UNSET)]
        if len(unset) == 1:
            raise InputError(f"config entry {unset[0]} is not set: write its path in config.py "
                             f"or give --exp-opts {unset[0]}=PATH")
        if unset:
            raise InputError(f"config entries {', '.join(unset)} are not set: write their "
                             "paths in config.py or give --exp-opts KEY=PATH for each")
        if value("body_model.model_type", str) != "smplx":
            raise InputError("config entry body_model.model_type: only smplx is supported, got "
                             f"{config.body_model.model_type!r}")
        num_betas = value("body_model.smplx.betas.num", int)
        if num_betas != NUM_BETAS:
            raise InputError(f"config entry body_model.smplx.betas.num: the output contract "
                             f"holds {NUM_BETAS} betas, got {num_betas}")
        from_params = value("fit.from_params", bool)
        fit = FitSettings(max_iterations=value("fit.max_iterations", int),
                          refine_iterations=value("fit.refine_iterations", int),
                          tolerance=value("fit.tolerance", float),
                          fit_betas=value("fit.fit_betas", bool), num_betas=num_betas,
                          fit_vertices=value("fit.fit_vertices", int))
        options = cls(
            mesh_dir=path("datasets.mesh_folder.data_folder"),
            output_dir=path("output_folder"),
            smplx_model=path("body_model.folder"),
            deftrafo_path=path("deformation_transfer_path"),
            mask_path=path("mask_ids_fname"),
            gender=value("body_model.gender", str),
            shard_size=value("datasets.mesh_folder.batch_size", int),
            shard_index=value("datasets.mesh_folder.batch_index", int),
            overwrite=value("overwrite", bool),
            batch_size=value("fit.batch_size", int),
            device=value("fit.device", str),
            fit=fit,
            flag_threshold_mm=value("fit.flag_threshold_mm", float),
            from_params=from_params,
            smplh_model=path("fit.smplh_model") if from_params else None)
        options.check()
        return options

    def check(self):
        """Raise InputError for values out of range."""
        if self.shard_size < 0 or self.shard_index < 0:
            raise InputError("datasets.mesh_folder.batch_size and batch_index must be >= 0, got "
                             f"{self.shard_size} and {self.shard_index}")
        if self.batch_size < 1:
            raise InputError(f"fit.batch_size must be >= 1, got {self.batch_size}")
        if self.gender not in ("neutral", "male", "female"):
            raise InputError(f"body_model.gender must be neutral, male or female, got "
                             f"{self.gender!r}")
        if self.from_params and self.smplh_model is None:
            raise InputError("from_params needs the SMPL-H model (--smplh-model or config.py)")
        if self.fit.max_iterations < 0 or self.fit.refine_iterations < 0:
            raise InputError("fit.max_iterations and fit.refine_iterations must be >= 0")
        if not 0.0 < self.fit.tolerance < 1.0:      # a fraction of the loss; NaN fails too
            raise InputError(f"fit.tolerance must be a fraction between 0 and 1 (exclusive), "
                             f"got {self.fit.tolerance}")
        if self.fit.fit_vertices < 0:
            raise InputError(f"fit.fit_vertices must be >= 0 (0: the whole mask), got "
                             f"{self.fit.fit_vertices}")


@dataclass(frozen=True)
class PoseInput:
    """One input of the sorted list: its pose id (None when the name is not one) and file."""
    name: str
    pose_id: int = None
    mesh_path: Path = None


@dataclass
class TransferSummary:
    """Outcome of a run: counts, per-pose errors of the poses fitted now, speed."""
    total: int = 0
    skipped: int = 0
    failures: list = field(default_factory=list)     # (input name, message)
    rows: list = field(default_factory=list)         # ErrorRow of every pose fitted now
    seconds: float = 0.0

    @property
    def done(self):
        return len(self.rows)

    @property
    def failed(self):
        return len(self.failures)

    def lines(self):
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


# ----------------------------------------------------------------- inputs

def list_mesh_inputs(mesh_dir):
    """The mesh folder's `.obj`/`.ply` files sorted by name, as `PoseInput`s.

    A name whose stem is not a pose id, or that repeats another file's pose id, keeps its
    place in the list (so shards stay the same) with pose_id None; it fails when reached.
    """
    mesh_dir = Path(mesh_dir)
    if not mesh_dir.is_dir():
        raise InputError(f"{mesh_dir}: mesh folder not found")
    names = sorted(path.name for path in mesh_dir.iterdir()
                   if path.suffix.lower() in MESH_SUFFIXES and not path.name.startswith("."))
    inputs, seen = [], set()
    for name in names:
        stem = Path(name).stem
        pose_id = int(stem) if stem.isdigit() else None
        if pose_id in seen:
            pose_id = None
        seen.add(pose_id)
        inputs.append(PoseInput(name, pose_id, mesh_dir / name))
    return inputs


def read_source_params(path):
    """{pose_id: (156,) float32 SMPL-H pose} from a stage-1 source_params.npz; {} if absent."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        with open_regular(path) as handle, np.load(handle, allow_pickle=False) as data:
            pose_ids, poses = data["pose_ids"], data["poses"]
    except InputError:
        raise
    except KeyError as error:
        raise InputError(f"{path}: lacks the array {error}") from None
    except Exception as error:
        raise InputError(f"{path}: not a readable .npz file ({error})"[:500]) from None
    if pose_ids.ndim != 1 or poses.shape != (len(pose_ids), 156):
        raise InputError(f"{path}: expected pose_ids (N,) and poses (N, 156), got "
                         f"{pose_ids.shape} and {poses.shape}")
    if pose_ids.dtype.kind not in "iu" or poses.dtype.kind not in "iuf" or (
            pose_ids.size and pose_ids.min() < 0):
        raise InputError(f"{path}: expected non-negative integer pose_ids and float poses, "
                         f"got {pose_ids.dtype} and {poses.dtype}")
    if not np.isfinite(poses).all():
        raise InputError(f"{path}: poses hold NaN or infinite values")
    return {int(pose_id): pose for pose_id, pose in zip(pose_ids, poses.astype(np.float32))}


def param_inputs(source_params):
    """Inputs of the from_params mode, in the order of the file names stage 1 writes."""
    return [PoseInput(f"{pose_id:06d}", pose_id)
            for pose_id in sorted(source_params, key=lambda pose_id: f"{pose_id:06d}")]


def select_shard(inputs, shard_size, shard_index):
    """The inputs of shard `shard_index` of size `shard_size` (all of them when size is 0)."""
    if shard_size <= 0:
        return list(inputs)
    return list(inputs[shard_index * shard_size:(shard_index + 1) * shard_size])


def smplx_init_pose(smplh_poses):
    """(B, 156) SMPL-H axis-angle poses -> (B, 55, 3) SMPL-X poses (jaw and eyes zero)."""
    smplh = torch.as_tensor(smplh_poses).reshape(-1, 52, 3)
    pose = smplh.new_zeros(len(smplh), 55, 3)
    pose[:, :22] = smplh[:, :22]          # root and 21 body joints
    pose[:, 25:55] = smplh[:, 22:52]      # left hand, right hand
    return pose


def read_checked_mesh(path):
    """(6890, 3) float32 vertices of a complete SMPL-H mesh file (13776 faces), or
    InputError naming the file. Coordinates beyond MAX_COORDINATE_M metres are refused:
    no human body reaches them, and they would overflow the fit into inf or NaN."""
    try:
        vertices = np.asarray(read_mesh(path, SMPLH_FACES), dtype=np.float64)
    except InputError:
        raise
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the mesh ({error})") from None
    if vertices.shape != (SMPLH_VERTICES, 3):
        raise InputError(f"{path}: has {vertices.shape[0]} vertices, a SMPL-H mesh has "
                         f"{SMPLH_VERTICES}")
    if not np.isfinite(vertices).all():
        raise InputError(f"{path}: holds NaN or infinite vertex coordinates")
    largest = float(np.abs(vertices).max())
    if largest > MAX_COORDINATE_M:
        raise InputError(f"{path}: a vertex coordinate is {largest:.3g} m, far outside any "
                         f"human body (the limit is {MAX_COORDINATE_M:g} m)")
    return vertices.astype(np.float32)


def smplx_model_path(model, gender):
    """What to give `load_smplx` for `gender`: `model` itself, except that for a gendered
    body a folder is searched for SMPLX_<GENDER>.npz/.pkl (in model/smplx/, then model/)."""
    model = Path(model)
    if gender == "neutral" or not model.is_dir():
        return model
    candidates = [folder / f"SMPLX_{gender.upper()}.{ext}"
                  for folder in (model / "smplx", model) for ext in ("npz", "pkl")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(f"{model}: no {gender} SMPL-X model in this folder; looked for "
                     f"{', '.join(str(c.relative_to(model)) for c in candidates)}")


def resolve_device(name):
    """torch.device for "cpu", "cuda", "cuda:N" or "auto" (cuda when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"device {name!r}: expected cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r}: no CUDA device is available here")
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"device {name!r}: expected cpu, cuda, cuda:N or auto")
    return device


# ----------------------------------------------------------------- fitting

def fit_batch(fitter, targets, init_poses):
    """Fit one batch whose poses may or may not have a known initial pose.

    Args:
        fitter: a `SmplxFitter` (on its device).
        targets: (B, M, 3) target vertices on the mask ids.
        init_poses: list of B (55, 3) axis-angle tensors or None (None: initialise that pose
            from its target alone, as `SmplxFitter.fit(init_pose=None)` does).
    Returns:
        the `FitResult` of the batch.
    """
    missing = [i for i, pose in enumerate(init_poses) if pose is None]
    if len(missing) == len(init_poses):
        return fitter.fit(targets, None)
    init = torch.stack([torch.zeros(55, 3) if pose is None else torch.as_tensor(pose)
                        for pose in init_poses]).float()
    if missing:
        device_targets = targets[missing].to(fitter.mask_ids.device,
                                             fitter.mask_set.v_template.dtype)
        init[missing] = roma.rotmat_to_rotvec(
            fitter.initial_rotmats_from_mesh(device_targets)).cpu().float()
    return fitter.fit(targets, init)


class _Stage2:
    """The loaded models of a run and the per-batch work (targets, fit, writing)."""

    def __init__(self, options, source_params):
        self.options = options
        self.source_params = source_params
        self.device = resolve_device(options.device)
        smplx_data = load_smplx(smplx_model_path(options.smplx_model, options.gender))
        self.deformation = load_deformation_transfer(options.deftrafo_path, options.mask_path)
        self.smplh_body = None
        if options.from_params:
            self.smplh_body = BodyModel(load_smplh(options.smplh_model)).to(self.device)
        self.fitter = SmplxFitter(smplx_data, self.deformation.mask_ids, options.fit)
        self.fitter = self.fitter.to(self.device)

    def read_vertices(self, inputs):
        """The inputs that can be read, their SMPL-H vertices (B, 6890, 3), the failures.

        Vertices come from the mesh files (numpy), or with from_params from posing the
        SMPL-H model on the run's device (torch).
        """
        ok, vertices, failures = [], [], []
        if self.smplh_body is not None:
            poses = np.stack([self.source_params[item.pose_id] for item in inputs])
            pose = torch.as_tensor(poses, device=self.device).view(-1, 52, 3)
            with torch.no_grad():
                return list(inputs), self.smplh_body(pose)[0], []
        for item in inputs:
            try:
                if item.pose_id is None:
                    raise InputError(f"{item.mesh_path}: the file name is not a pose id "
                                     "(<pose_id:06d>.obj) or repeats another file's pose id")
                vertices.append(read_checked_mesh(item.mesh_path))
                ok.append(item)
            except InputError as error:
                failures.append((item.name, str(error)))
        stacked = np.stack(vertices) if vertices else np.zeros((0, SMPLH_VERTICES, 3), np.float32)
        return ok, stacked, failures

    def fit_and_write(self, inputs, smplh_vertices, new):
        """Fit the batch; write the rows, then the .pkl files, of the poses in `new`.

        The poses of a batch not in `new` (their .pkl exists) are fitted only to keep the
        batch the same as in an uninterrupted run: a fit's last bits depend on its batch
        mates. Returns the rows written.
        """
        options = self.options
        targets = torch.as_tensor(
            self.deformation.apply(smplh_vertices)[:, self.deformation.mask_ids])
        init_poses = [None if item.pose_id not in self.source_params else
                      smplx_init_pose(self.source_params[item.pose_id])[0] for item in inputs]
        result = fit_batch(self.fitter, targets, init_poses)
        written = [i for i, item in enumerate(inputs) if item.pose_id in new]
        rows = [ErrorRow(pose_id=inputs[i].pose_id,
                         v2v_mean_mm=float(result.v2v_mean_mm[i]),
                         v2v_max_mm=float(result.v2v_max_mm[i]),
                         iterations=int(result.iterations[i]),
                         converged=bool(result.converged[i]),
                         flagged=bool(result.v2v_mean_mm[i] > options.flag_threshold_mm))
                for i in written]
        merge_error_rows(options.output_dir / ERRORS_CSV, rows)
        for i in written:
            write_smplx_params(parameter_path(options.output_dir, inputs[i].pose_id),
                               result.pose[i], result.betas[i])
        return rows


def _is_stage2_output(name):
    """Whether `name` is a file stage 2 writes (its stale temporaries are removed)."""
    stem, _, suffix = name.rpartition(".")
    return name == ERRORS_CSV or (suffix == "pkl" and stem.isdigit())


def is_complete_result(path):
    """Whether `path` is a finished result: a regular file (not a link) that passes the
    contract reader. Anything else (0 bytes, truncated, a planted link) is converted again,
    and the new file replaces it."""
    if not is_regular_file(path):
        return False
    try:
        read_smplx_params(path)
    except InputError:
        return False
    return True


def _no_inputs_message(options, source_params):
    """Why a run has nothing to convert, and what to do about it."""
    if options.from_params:
        return (f"{Path(options.mesh_dir) / SOURCE_PARAMS}: records no pose; run stage 1 "
                "into this folder first")
    hint = (f"; it holds {SOURCE_PARAMS} with {len(source_params)} poses (stage 1 with "
            "--format params?): convert them with --from-params" if source_params
            else "; run stage 1 into this folder first")
    return f"{options.mesh_dir}: no .obj or .ply mesh files in the mesh folder{hint}"


def run_transfer(options, progress=True, log=print):
    """Run stage 2 with `options` (a `TransferOptions`); returns a `TransferSummary`.

    Raises InputError, before any pose is fitted, for a missing or wrong model,
    deformation transfer, mask, mesh folder or source_params.npz. A bad mesh only fails
    its pose (listed in the summary); the other poses are converted.

    Batches are fixed slices of the shard's sorted list, whatever is already converted: a
    batch with any pose left to convert is fitted whole, so that a resumed run fits every
    pose with the same batch mates as an uninterrupted one, to the last bit.
    """
    options.check()
    output_dir = Path(options.output_dir)
    check_writable_folder(output_dir)            # before the models are loaded, not after
    remove_stale_temporaries(output_dir, _is_stage2_output)
    source_path = Path(options.mesh_dir) / SOURCE_PARAMS
    if options.from_params and not source_path.is_file():
        raise InputError(f"{source_path}: not found (from_params needs the poses recorded by "
                         "stage 1)")
    source_params = read_source_params(source_path)
    inputs = param_inputs(source_params) if options.from_params else list_mesh_inputs(
        options.mesh_dir)
    if not inputs:
        raise InputError(_no_inputs_message(options, source_params))
    if options.shard_size == 0 and options.shard_index != 0:
        log(f"note: batch_index {options.shard_index} is ignored: batch_size is 0, so the "
            "one shard is the whole folder")
    shard = select_shard(inputs, options.shard_size, options.shard_index)
    if options.shard_size and not shard and inputs:
        log(f"shard {options.shard_index} of size {options.shard_size} is empty: the folder "
            f"holds {len(inputs)} inputs ({math.ceil(len(inputs) / options.shard_size)} shards)")

    def is_new(item):
        return (options.overwrite or item.pose_id is None
                or not is_complete_result(parameter_path(output_dir, item.pose_id)))

    work = []                                    # (batch, names of its poses to convert)
    for start in range(0, len(shard), options.batch_size):
        batch = shard[start:start + options.batch_size]
        new = {item.name for item in batch if is_new(item)}
        if new:
            work.append((batch, new))
    num_new = sum(len(new) for _, new in work)
    summary = TransferSummary(total=len(shard), skipped=len(shard) - num_new)

    stage = _Stage2(options, source_params)
    output_dir.mkdir(parents=True, exist_ok=True)
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
            for _name, message in failures:
                bar.write(f"failed: {message}")
            summary.failures.extend(failures)
            new_ids = {item.pose_id for item in ok if item.name in new}
            if new_ids:
                summary.rows.extend(stage.fit_and_write(ok, vertices, new_ids))
            bar.update(len(new))
    summary.seconds = time.perf_counter() - start_time
    return summary
