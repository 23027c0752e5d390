"""Stage 1: pose the selected PoseScript/PoseFix poses with SMPL-H and write them out.

The run, in order:
1. load and check the SMPL-H model (a folder of meshes of another model is refused,
   `result_settings`), the selection (see selection.py) and any earlier
   `source_params.npz`; drop the poses already done (unless `overwrite`);
2. read each AMASS sequence once for all of its selected frames, checking every id, file
   and frame: a bad input is an InputError naming it, raised before anything is written
   (with `keep_going`, bad ids are set aside and listed in the summary instead);
3. record the source pose of every pose read into `source_params.npz` (merged with the
   earlier entries), so that stage 2 can start from it or pose SMPL-H from it directly;
4. with the "obj" output format, pose the bodies in batches and write `<pose_id:06d>.obj`,
   a writer thread formatting and writing one batch while the next one is posed.

The source poses are recorded before the meshes because they come straight from AMASS:
a run interrupted while writing meshes leaves a complete `source_params.npz` and whole
`.obj` files only (`atomic_write`), and running it again writes the missing meshes.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..body.lbs import BodyModel
from ..errors import InputError, listed
from ..family import STAGE1_MODEL
from ..formats.amass import (SMPLH_POSE_SIZE, check_frame, check_frame_values, read_smplh_poses,
                             sequence_path)
from ..formats.annotations import Selection, select_pose_ids
from ..formats.body_models import load_smplh
from ..formats.files import (atomic_write, blocked_outputs, check_finite,
                             check_writable_folder, is_regular_file, open_regular,
                             remove_stale_temporaries)
from ..formats.meshes import format_face_lines, format_vertex_lines
from ..formats.result_settings import check_result_settings, record_result_settings
from ..formats.safe_pickle import load_pickle
from ..formats.source_params import SOURCE_PARAMS, merge_source_params, read_source_params
from ..runtime import torch_threads
from ..settings import ExtractOptions

AMASS_NUM_BETAS = 16          # the AMASS body model's shape space (all zero here)
_HAND_KEYS = ("hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr")


@dataclass
class ExtractSummary:
    """Outcome of a run: how many poses were written, skipped (done before) or failed."""
    output_dir: Path
    output_format: str = "obj"
    selected: int = 0
    written: int = 0
    failures: list = field(default_factory=list)     # (pose_id, message)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def skipped(self) -> int:
        return self.selected - self.written - self.failed

    @property
    def bad_ids(self) -> list:
        return [pose_id for pose_id, _ in self.failures]

    def lines(self) -> list:
        """The summary printed at the end of a run."""
        what = "meshes" if self.output_format == "obj" else "source poses"
        lines = [f"poses: {self.written} written, {self.skipped} skipped (already written), "
                 f"{self.failed} failed, of {self.selected} selected",
                 f"{what} in {self.output_dir} (source poses: {SOURCE_PARAMS})",
                 f"speed: {self.written / max(self.seconds, 1e-9):.1f} poses/s "
                 f"({self.seconds:.1f} s)"]
        lines.extend(f"failed: {message}" for _pose_id, message in self.failures)
        if self.failures:
            lines.append(f"bad ids: {' '.join(map(str, self.bad_ids))}")
        return lines


# ----------------------------------------------------------------- posing SMPL-H

class SmplhPoser:
    """Posed SMPL-H vertices of AMASS poses: neutral body, zero shape and translation.

    Args:
        smplh_model: model file or folder (see body_models.load_smplh).
        body_model: "amass": our BodyModel with AMASS-codebase semantics (any SMPL-H file);
            "smplx": the smplx package's SMPLH (use_pca=False, flat_hand_mean=True), which
            needs a smplx-codebase file (with the hand PCA keys).
    """

    def __init__(self, smplh_model, body_model="amass"):
        self.data = load_smplh(smplh_model)
        self.body_model = body_model
        if body_model == "amass":
            self.model = BodyModel(self.data, min(AMASS_NUM_BETAS, self.data.num_shape_coeffs))
        else:
            self.model = _smplx_codebase_smplh(self.data)

    @property
    def faces(self) -> np.ndarray:
        """(F, 3) int64 triangles, as in the model file."""
        return self.data.faces

    @torch.no_grad()
    def __call__(self, poses):
        """(B, 6890, 3) float32 vertices of poses (B, 156): root, body, left and right hand."""
        pose = torch.as_tensor(np.asarray(poses), dtype=torch.float32)
        if self.body_model == "amass":
            return self.model(pose.view(len(pose), -1, 3))[0].numpy()
        zeros = pose.new_zeros
        joints = pose.view(len(pose), -1, 3)
        output = self.model(**{key: joints[:, ids].reshape(len(pose), -1)
                               for key, ids in STAGE1_MODEL.joint_slices.items()},
                            betas=zeros(len(pose), self.model.num_betas),
                            transl=zeros(len(pose), 3))
        return output.vertices.numpy()


def _smplx_codebase_smplh(data):
    """smplx.create(...) with the stage-1 model's options (SMPL-H: use_pca=False,
    flat_hand_mean=True) on the file behind `data`, read by our safe loaders (downloaded .pkl files hold chumpy objects,
    which plain pickle cannot load, and a pickle may run code)."""
    import smplx
    from smplx.utils import Struct

    if data.path.suffix == ".pkl":
        contents = load_pickle(data.path)
    else:
        with np.load(data.path, allow_pickle=False) as archive:
            contents = {key: archive[key] for key in archive.files}
    missing = [key for key in _HAND_KEYS if key not in contents]
    if missing:
        raise InputError(f"{data.path}: the smplx body-model mode needs a smplx-codebase "
                         f"SMPL-H file (SMPLH_NEUTRAL.pkl/.npz), or the amass body-model mode; "
                         f"this one lacks" + listed(missing))
    # A folder path keeps smplx.create from guessing the model type from the file name;
    # with data_struct given, nothing is read from it. Its printed warning about the
    # number of shape coefficients does not matter here: every beta is zero.
    with contextlib.redirect_stdout(io.StringIO()):
        return smplx.create(str(data.path.parent), data_struct=Struct(**contents),
                            num_betas=min(10, data.num_shape_coeffs),
                            **STAGE1_MODEL.smplx_create_options())


# ----------------------------------------------------------------- reading the poses

def read_source_poses(pose_ids: Sequence[int], selection: Selection, amass_dir: str | Path,
                      progress: bool = True) -> tuple:
    """Source poses of `pose_ids`, reading each AMASS sequence once.

    Returns (ids, poses, failures): the ids read (sorted), their (N, 156) float32 poses,
    and (pose_id, message) for each id that is absent from the mapping or whose file or
    frame is bad.
    """
    failures, by_sequence = [], {}
    for pose_id in pose_ids:
        if pose_id not in selection.mapping:
            failures.append((pose_id, f"pose {pose_id}: not in {selection.mapping_path}"))
        else:
            relative, frame = selection.mapping[pose_id]
            by_sequence.setdefault(relative, []).append((pose_id, frame))
    found = {}
    for relative in tqdm(sorted(by_sequence), desc="reading AMASS", unit="sequence",
                         disable=not progress or not by_sequence):
        path = sequence_path(amass_dir, relative)
        try:
            sequence = read_smplh_poses(path, frames=())     # each frame checked below
        except InputError as error:
            failures.extend((pose_id, f"pose {pose_id}: {error}")
                            for pose_id, _ in by_sequence[relative])
            continue
        for pose_id, frame in by_sequence[relative]:
            try:
                check_frame(pose_id, frame, len(sequence), path)
                check_frame_values(pose_id, frame, sequence, path)
            except InputError as error:
                failures.append((pose_id, str(error)))
                continue
            found[pose_id] = sequence[frame]
    ids = sorted(found)
    poses = np.array([found[pose_id] for pose_id in ids], np.float32).reshape(-1, SMPLH_POSE_SIZE)
    return ids, poses, sorted(failures)


# ----------------------------------------------------------------- writing meshes

def obj_path(output_dir: str | Path, pose_id: int) -> Path:
    return Path(output_dir) / f"{pose_id:06d}.obj"


def _write_batch(face_lines, output_dir, pose_ids, vertices):
    for pose_id, mesh in zip(pose_ids, vertices):
        check_finite(obj_path(output_dir, pose_id), {"vertices": mesh})
        with atomic_write(obj_path(output_dir, pose_id)) as stream:
            stream.write(format_vertex_lines(mesh) + face_lines)


def write_meshes(poser: SmplhPoser, pose_ids: Sequence[int], poses: np.ndarray,
                 output_dir: str | Path, poses_per_batch: int, bar: object) -> None:
    """Pose `poses` (N, 156) in batches and write one `.obj` per id.

    One writer thread formats and writes a batch while the next is posed (torch releases
    the GIL), with at most one batch waiting, so memory stays bounded. Posing runs on one
    torch thread: on a 2-core machine torch's pool competing with the writer spent three
    times the CPU time on the same forward passes, and one thread poses faster than the
    writer writes.
    """
    face_lines = format_face_lines(poser.faces)    # two thirds of a file: formatted once
    pending = deque()
    with torch_threads(1), ThreadPoolExecutor(max_workers=1) as writer:
        for begin in range(0, len(pose_ids), poses_per_batch):
            batch_ids = pose_ids[begin:begin + poses_per_batch]
            vertices = poser(poses[begin:begin + poses_per_batch])
            pending.append((len(batch_ids), writer.submit(
                _write_batch, face_lines, output_dir, batch_ids, vertices)))
            while len(pending) > 1:
                count, done = pending.popleft()
                done.result()
                bar.update(count)
        for count, done in pending:
            done.result()
            bar.update(count)


# ----------------------------------------------------------------- the run

def _is_stage1_output(name):
    """Whether `name` is a file stage 1 writes (its stale temporaries are removed)."""
    stem, _, suffix = name.rpartition(".")
    return name == SOURCE_PARAMS or (suffix == "obj" and stem.isdigit())


def result_settings(poser: SmplhPoser) -> dict:
    """The settings that define stage 1's meshes (recorded beside them): the model's
    arrays that pose a zero-shape body, as a digest (its path may change, its content
    not; the shape blend shapes play no part at zero betas). Numbers are taken in float32,
    as the meshes are posed, so one model saved as float32 or float64 is one model."""
    data = poser.data
    digest = hashlib.sha256()
    for array in (data.faces, data.parents):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    for array in (data.v_template, data.j_regressor, data.weights, data.posedirs):
        digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    return {"smplh_model": f"sha256:{digest.hexdigest()[:16]}"}


def mesh_is_done(path: Path, last_line: bytes) -> bool:
    """Whether `path` is a whole mesh: a regular file (not a link) that ends with the
    model's last face line, as ours do. A file cut short (a copy that stopped, a disk that
    filled up under another tool), a link or a folder is written again."""
    if not is_regular_file(path):
        return False
    try:
        with open_regular(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - len(last_line)))
            return handle.read() == last_line
    except OSError:
        return False


def _to_do(pose_ids, recorded, output_dir, options, last_line):
    """(ids whose poses must be read, ids whose meshes must be written) given what exists."""
    if options.overwrite:
        return list(pose_ids), (list(pose_ids) if options.output_format == "obj" else [])
    meshes = ([pose_id for pose_id in pose_ids
               if not mesh_is_done(obj_path(output_dir, pose_id), last_line)]
              if options.output_format == "obj" else [])
    missing_meshes = set(meshes)
    read = [pose_id for pose_id in pose_ids
            if pose_id not in recorded or pose_id in missing_meshes]
    return read, meshes


def _stop_message(failures):
    first = failures[0][1]
    if len(failures) == 1:
        return first
    return (f"{first} (and {len(failures) - 1} more bad pose ids; --keep-going writes the "
            "others and lists them all)")


def run_extract(options: ExtractOptions, progress: bool = True,
                log: Callable[[str], None] = print) -> ExtractSummary:
    """Run stage 1 with `options` (an ExtractOptions); returns an ExtractSummary.

    Raises InputError, before writing anything, for a bad model, folder, annotation file
    or earlier source_params.npz, and (unless options.keep_going) for a bad pose id,
    AMASS file or frame.
    """
    start = time.perf_counter()
    options.check()
    check_writable_folder(options.output_dir)        # before any work, not after it
    remove_stale_temporaries(options.output_dir, _is_stage1_output)
    poser = SmplhPoser(options.smplh_model, options.body_model)
    meshes = options.output_format == "obj"
    if meshes:             # source_params.npz alone does not depend on the model
        settings = result_settings(poser)
        check_result_settings(options.output_dir, settings, options.overwrite)
    selection = select_pose_ids(options.posefix_dir, options.posescript_dir, options.ids,
                                options.all_poses)
    output_dir = options.output_dir
    params_path = output_dir / SOURCE_PARAMS
    recorded = read_source_params(params_path)
    read_ids, mesh_ids = _to_do(selection.pose_ids, recorded, output_dir, options,
                                format_face_lines(poser.faces[-1:]))
    # A pose whose mesh cannot be written (a folder in its place) fails before any work, as
    # a bad id does.
    blocked = blocked_outputs({pose_id: obj_path(output_dir, pose_id) for pose_id in mesh_ids})
    blocked = {pose_id: f"pose {pose_id}: {problem}" for pose_id, problem in blocked.items()}
    if blocked and not options.keep_going:
        raise InputError(_stop_message(list(blocked.items())))
    read_ids = [pose_id for pose_id in read_ids if pose_id not in blocked]
    log(f"{len(selection.pose_ids)} poses selected, {len(read_ids)} to read from AMASS")
    read_ids, poses, failures = read_source_poses(read_ids, selection, options.amass_dir,
                                                  progress)
    failures = sorted(failures + list(blocked.items()))
    if failures and not options.keep_going:
        raise InputError(_stop_message(failures))

    summary = ExtractSummary(output_dir, options.output_format, len(selection.pose_ids),
                             failures=failures)
    output_dir.mkdir(parents=True, exist_ok=True)
    if read_ids:
        merge_source_params(params_path, dict(zip(read_ids, poses)))
    if not meshes:
        summary.written = len(read_ids)         # read = not recorded yet, or overwrite
    else:
        row_of = {pose_id: row for row, pose_id in enumerate(read_ids)}
        mesh_ids = [pose_id for pose_id in mesh_ids if pose_id in row_of]
        if mesh_ids:                            # just before the first mesh
            record_result_settings(output_dir, settings, options.overwrite)
        with tqdm(total=len(mesh_ids), unit="pose", desc="writing meshes",
                  disable=not progress or not mesh_ids) as bar:
            rows = np.array([row_of[pose_id] for pose_id in mesh_ids], dtype=np.int64)
            write_meshes(poser, mesh_ids, poses[rows], output_dir, options.poses_per_batch, bar)
        summary.written = len(mesh_ids)
    summary.seconds = time.perf_counter() - start
    return summary
