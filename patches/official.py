"""`run_official`: the official transfer_model's fit, driven by the project's config.

Any pair of SMPL, SMPL-H and SMPL-X: the source and the target are the settings'
`source_model` and `target_model` (the official `config_files/<src>2<dst>.yaml` name the
target `body_model.model_type`; `config.py` translates our settings into that schema).
SMPL and SMPL-H share one mesh: that pair maps by the identity, as in our engine, with no
file to read.

This replaces the official `__main__.main`, keeping its steps (build the target layer,
read the deformation transfer and the mask, then `run_fitting` batch by batch) and
changing only what the published procedure edits by hand, plus what Python 3.11 needs:

- the device comes from our argument: no `use_cuda` prompt (`input()`) can block a run;
- meshes come from `MeshShard` (sorted, sharded, already converted ones skipped);
- each mesh gets its own contract parameter file, written atomically (`writer.py`);
- for SMPL-X targets a missing mask file is an error (the official code warns and fits
  without a mask); SMPL and SMPL-H targets use every vertex, as the official configs do;
- the layer is built with the output file's betas (`fit.num_betas`: 10 for
  the SMPL-X contract; the official call leaves it to the layer's default: 10 in smplx
  0.1.28, 16 in the clone's own smplx package);
- each batch's gradients are dropped after its fit (see `runtime.observed_fitting`): the
  unmodified loop leaks about 5 MB per pose.

The optimisation itself is the official code's, unchanged, including what it does not do:
its translation stage never runs (it looks for a variable `translation`, which is named
`transl`), so translation is fitted only in the final all-parameter stage, together with
the expression (which the contract drops).
"""
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import roma
import smplx
import torch
from omegaconf import OmegaConf

from smplh2smplx.errors import InputError
from smplh2smplx.family import KINDS, same_topology
from smplh2smplx.formats.deformation_files import read_mask_ids
from smplh2smplx.formats.errors_csv import ErrorRow
from smplh2smplx.formats.param_files import parameter_path
from smplh2smplx.formats.result_settings import record_result_settings
from smplh2smplx.runtime import resolve_device
from smplh2smplx.stages.transfer import check_output_folder, is_done

from .config import official_config
from .dataset import MeshShard
from .loader import load_transfer_model
from .runtime import observed_fitting, output_as_dict, quiet_official
from .writer import contract_params, write_params


@dataclass(frozen=True)
class OfficialResult:
    """One mesh's outcome.

    Attributes:
        pose_id: from the mesh file name.
        seconds: wall time of its batch's fit and write, divided by the batch size.
        v2v_mean_mm, v2v_max_mm: mean and max distance over the mask ids between the
            target (the deformation-transferred mesh) and the SMPL-X mesh of the written
            parameters plus the fitted translation, in millimetres.
        v2v_fit_mean_mm: the same mean for the official code's own final mesh, which also
            carries its fitted expression (what its log reports as Vertex-to-Vertex).
        iterations: optimiser steps of all stages of its batch.
        converged: every stage stopped on the official tolerance before `optim.maxiters`.
        error: why the fit failed (nothing was written), or None.
        transl: the fitted translation (x, y, z) in metres, or None for a failure; not part
            of the contract, but needed to measure the written parameters outside.
    """
    pose_id: int
    seconds: float
    v2v_mean_mm: float
    v2v_max_mm: float
    v2v_fit_mean_mm: float
    iterations: int
    converged: bool
    error: str = None
    transl: tuple = None

    def error_row(self, flag_threshold_mm):
        """This mesh's errors.csv row (`formats.errors_csv.ErrorRow`); None for a failure."""
        if self.error is not None:
            return None
        return ErrorRow(self.pose_id, self.v2v_mean_mm, self.v2v_max_mm, self.iterations,
                        self.converged, self.v2v_mean_mm > flag_threshold_mm)


def _existing(path, what, key):
    path = Path(str(path)).expanduser()
    if str(path) in ("", ".") or not path.exists():
        raise InputError(f"{path}: {what} not found (setting {key})")
    return path


def _vertices_of(body_model, kind, params, transl):
    """(B, V, 3) vertices of the `kind` layer for parameter dicts plus a (B, 3) translation."""
    device = transl.device
    stacked = {key: torch.stack([p[key] for p in params]).to(device) for key in params[0]}
    rotations = {key: roma.rotvec_to_rotmat(stacked[key].reshape(len(params), -1, 3))
                 for key in KINDS[kind].joint_slices}
    if KINDS[kind].expression_in_shapedirs:
        rotations["expression"] = transl.new_zeros(len(params), body_model.num_expression_coeffs)
    with torch.no_grad():
        output = body_model(betas=stacked["betas"].reshape(len(params), -1), transl=transl,
                            **rotations)
    return output["vertices"]


def _distances_mm(vertices, targets, mask_ids):
    """(B, M) distances in mm between two (B, V, 3) vertex sets on the mask ids."""
    return (vertices[:, mask_ids] - targets[:, mask_ids]).norm(dim=-1) * 1000.0


def _layer_options(body, folder):
    """The official body_model entries for `smplx.build_layer`, with the file extension of
    the model file that exists (the official default `npz` has no SMPL-H file in the
    smplx layout, which ships SMPLH_<GENDER>.pkl)."""
    options = OmegaConf.to_container(body, resolve=True)
    kind, gender = body.model_type, str(body.gender).upper()
    for ext in (options.get("ext", "npz"), "pkl", "npz"):
        name = f"{kind.upper()}_{gender}.{ext}"
        if (Path(folder) / kind / name).is_file() or (Path(folder) / name).is_file():
            options["ext"] = ext
            break
    return options


class _OfficialRun:
    """The state shared by the batches of one run: the official modules, model, targets."""

    def __init__(self, modules, exp_cfg, device, source="smplh"):
        self.modules, self.exp_cfg, self.device = modules, exp_cfg, device
        body = exp_cfg.body_model
        self.kind = kind = body.model_type
        if kind not in KINDS:
            raise InputError(f"target_model is {kind!r}; the target must be one of "
                             f"{', '.join(KINDS)}")
        label = KINDS[kind].label
        folder = _existing(body.folder, f"{label} model folder", f"{kind}_model")
        num_betas = body[kind].betas.num
        exact, most = KINDS[kind].betas
        if (exact and num_betas != exact) or not 1 <= num_betas <= most:
            raise InputError(f"fit.num_betas is {num_betas}; the {label} output "
                             f"holds {exact or f'1 to {most}'} betas")
        try:
            # The official config's betas.num is never read by the official code.
            self.body_model = smplx.build_layer(str(folder), num_betas=num_betas,
                                                **_layer_options(body, folder)).to(device)
        except (OSError, ValueError, KeyError, AssertionError) as error:
            raise InputError(f"{folder}: cannot build the {label} model ({error})") from None
        if self.body_model.num_betas != num_betas:
            raise InputError(f"{folder}: the {label} model has {self.body_model.num_betas} "
                             f"shape components, the output {num_betas}")
        output_as_dict(self.body_model)
        num_vertices = self.body_model.get_num_verts()
        if same_topology(source, kind):
            # SMPL and SMPL-H share one mesh: the identity, as in our engine.
            self.def_matrix = torch.eye(num_vertices, device=device)
        else:
            deftrafo = _existing(exp_cfg.deformation_transfer_path, "deformation transfer",
                                 "deformation_transfer")
            self.def_matrix = modules.utils.read_deformation_transfer(str(deftrafo),
                                                                     device=device)
            if self.def_matrix.shape[0] != num_vertices:
                raise InputError(f"{deftrafo}: maps to {self.def_matrix.shape[0]} vertices, "
                                 f"the {label} model has {num_vertices}")
        if KINDS[kind].uses_mask:
            mask = _existing(exp_cfg.mask_ids_fname, "SMPL-X mask ids", "mask")
            self.mask_ids = torch.from_numpy(read_mask_ids(mask, num_vertices)).to(device)
        else:
            self.mask_ids = torch.arange(num_vertices, device=device)

    def batch_inputs(self, items):
        """The official batch dict (tensors on the device) for dataset items."""
        expected = self.def_matrix.shape[1]
        for item in items:
            if len(item["vertices"]) != expected:
                raise InputError(f"{item['paths']}: has {len(item['vertices'])} vertices, "
                                 f"the deformation transfer expects {expected}")
        return {
            "vertices": torch.from_numpy(np.stack([i["vertices"] for i in items])).to(self.device),
            "faces": torch.from_numpy(np.stack([items[0]["faces"]] * len(items))).to(self.device),
            "paths": [item["paths"] for item in items],
            "indices": torch.arange(len(items)),
        }

    def fit(self, items, output_folder):
        """Fit and write one batch; one OfficialResult per item."""
        start = time.perf_counter()
        batch = self.batch_inputs(items)
        with observed_fitting(self.modules) as steps:
            try:
                var_dict = self.modules.fitting.run_fitting(
                    self.exp_cfg, batch, self.body_model, self.def_matrix, self.mask_ids)
            except (RuntimeError, ValueError) as error:   # numerical failure of the optimiser
                seconds = (time.perf_counter() - start) / len(items)
                return [OfficialResult(item["pose_id"], seconds, float("nan"), float("nan"),
                                       float("nan"), steps.total, False,
                                       f"{type(error).__name__}: {error}") for item in items]
        params = contract_params(var_dict, self.kind)
        with torch.no_grad():
            targets = self.modules.utils.apply_deformation_transfer(
                self.def_matrix, batch["vertices"], batch["faces"])
            transl = var_dict.get("transl")
            if transl is None:
                # The SMPL and SMPL-H layers' outputs carry no translation, and the official
                # loop overwrites its variables with them: read it off the fitted vertices.
                zero = targets.new_zeros(len(items), 3)
                transl = (var_dict["vertices"].detach() - _vertices_of(
                    self.body_model, self.kind, params, zero)).mean(1)
            transl = transl.detach().reshape(len(items), 3)
            written = _distances_mm(_vertices_of(self.body_model, self.kind, params, transl),
                                    targets, self.mask_ids)
            fitted = _distances_mm(var_dict["vertices"].detach(), targets, self.mask_ids)
        params = contract_params(var_dict, self.kind, transl)    # the files hold it too
        for item, pose_params in zip(items, params):
            write_params(parameter_path(output_folder, item["pose_id"]), pose_params,
                         self.kind)
        seconds = (time.perf_counter() - start) / len(items)
        converged = steps.all_stopped_before(self.exp_cfg.optim.maxiters)
        return [OfficialResult(item["pose_id"], seconds, float(written[index].mean()),
                               float(written[index].max()), float(fitted[index].mean()),
                               steps.total, converged, transl=tuple(transl[index].tolist()))
                for index, item in enumerate(items)]


def run_official(options, smplx_repo, device=None, on_batch=None, verbose=False, log=print):
    """Convert the meshes of one shard with the official transfer_model of a clone.

    Args:
        options: the run's `TransferOptions` (paths, pair, gender, shard, overwrite,
            fit.num_betas and the `official` knobs; see `config.official_settings`).
        smplx_repo: path of a clone of github.com/vchoutas/smplx, used unedited.
        device: "cpu", "cuda", "cuda:N" or "auto"; None: options.device.
        on_batch: called with the list of OfficialResult of every batch once its files are
            written (e.g. to merge rows into errors.csv as the run goes).
        verbose: keep the official progress bars, log and periodic summaries.
        log: called with one line per fitted mesh; None for silence.
    Returns:
        list of OfficialResult, one per mesh attempted, in file-name order.
    Raises:
        InputError for a bad clone, missing dependency, config value, file or mesh.
    """
    settings = check_output_folder(options)
    modules = load_transfer_model(smplx_repo)
    exp_cfg = official_config(options, modules.defaults.conf, verbose=verbose)
    device = resolve_device(options.device if device is None else device)

    data_folder = _existing(exp_cfg.datasets.mesh_folder.data_folder, "mesh folder",
                            "mesh_dir")
    output_folder = Path(str(exp_cfg.output_folder)).expanduser()
    dataset = MeshShard(data_folder, None if options.overwrite else (
        lambda pose_id: is_done(parameter_path(output_folder, pose_id), settings)),
        options.shard_size, options.shard_index)
    if dataset.skipped:             # results found to match the settings: record them now
        record_result_settings(output_folder, settings, options.overwrite)
        if log:
            log(f"official: {dataset.skipped} meshes of the shard already converted, skipped")
    if len(dataset) == 0:
        return []
    output_folder.mkdir(parents=True, exist_ok=True)
    batch_size = max(1, int(exp_cfg.batch_size or 1))
    results = []
    with quiet_official(modules, verbose):
        run = _OfficialRun(modules, exp_cfg, device, options.source_model)
        record_result_settings(output_folder, settings, options.overwrite)  # before a fit
        for start in range(0, len(dataset), batch_size):
            stop = min(start + batch_size, len(dataset))
            batch_results = run.fit([dataset[index] for index in range(start, stop)],
                                    output_folder)
            results.extend(batch_results)
            if on_batch is not None:
                on_batch(batch_results)
            if log:
                for result in batch_results:
                    log(_result_line(result))
    return results


def _result_line(result):
    outcome = result.error or (f"v2v {result.v2v_mean_mm:.2f} mm (max {result.v2v_max_mm:.1f}), "
                               f"{result.iterations} steps")
    return f"official: {result.pose_id:06d}: {outcome}, {result.seconds:.1f} s"
