"""Our engine next to its peers on the same poses, measured in one run, as one table.

    python -m benchmarks.compare_peers                      # ours (+ smplfitter)
    python -m benchmarks.compare_peers --kit /tmp/w/kit --poses 500 \
        --smplx-repo /path/to/smplx --official-poses 2 --threads 1        # with every peer
    python -m benchmarks.compare_peers --pair smplx2smpl --kit /tmp/w/kit --floor
    python -m benchmarks.compare_peers --variant default realistic --seed 1 --pair all \
        --floor --threads 2 --poses 300 --kit-sequences   # every pair on both kits

The official engine needs minutes per pose (tens of minutes on a busy machine), hence its
few poses. On a machine shared with other jobs, `--threads 1` keeps OpenMP threads from
spin-waiting on each other, which otherwise slows every engine several times over.

Inputs, for each pair (`--pair SRC2DST ...` or all, default smplh2smplx): the models of
the pair, its deformation transfer (the official file name, none for SMPL <-> SMPL-H) and,
for SMPL-X targets, the mask, all from a synthetic kit (`--kit`, or one written with
`--seed` for each `--variant` asked for), and real AMASS poses:
`--poses` frames spread evenly over the frames of the `--amass` files (default
../shared/data/amass_sample_smplh.npz) one after the other, and with `--kit-sequences` of the
kit's own AMASS sequences after them (varied motions, so that a learned start is not judged on
one held pose alone), mapped onto the source's joints (`family.map_pose`: an SMPL source keeps the body joints, its
hand joints at rest). The source model is posed with them (neutral, zero shape and
translation) and written as `.obj` files (with source_params.npz for SMPL-H sources, as
`extract_to_obj.py` does); every engine then fits the target to the same
deformation-transferred targets, read back from those `.obj` files.

Engines (a peer that cannot run is listed under the table with the reason):
- ours, at its default (the `fast` preset of `FIT_PRESETS`) and at the `floor` preset,
  started from the source pose mapped onto the target's joints as `run_transfer.py` does;
  with `--floor` also at `FLOOR` (100 steps, tolerance 1e-8): the error the fit can reach,
  and every row's mean over it ("mean / floor");
- the official `transfer_model` (`--smplx-repo`, a clone of github.com/vchoutas/smplx, run
  unedited through `patches/`, trust-region Newton-CG, 100 iterations per stage, one mesh at
  a time) on `--official-poses` of the poses, which ours also fits on their own so that the
  speed-up compares equal work;
- smplfitter's `BodyFitter` (`pip install smplfitter`), pointed at the kit's SMPL-X file,
  started from the target mesh alone, as its documentation uses it (SMPL-X targets only).

Error: `v2v_mm` of docs/FORMATS.md for every engine alike: the target mesh of the engine's pose,
betas and translation, posed by our `BodyModel`, against the target, averaged over the mask
ids, per pose; the table gives its mean, median, 95th percentile and max over the poses.
Time: the fits only (models loaded and one warm-up batch done before the clock starts; the
official engine: its `run_fitting` and writing per mesh, as `run_official` reports it).
Ours at its default and smplfitter take turns `--rounds` times and each keeps its median
time, so that the machine's drifting speed (2x within minutes on a shared machine) does not
favour whichever ran in a fast moment; the `--floor` fits and the official engine run once.
"""
import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from smplh2smplx.body.deformation import load_pair_transfer
from smplh2smplx.body.lbs import BodyModel
from smplh2smplx.errors import InputError
from smplh2smplx.family import KINDS, map_pose, same_topology
from smplh2smplx.fit.fitter import FIT_PRESETS, BodyFitter, FitSettings, fit_batch
from smplh2smplx.formats.body_models import load_body_model
from smplh2smplx.formats.deformation_files import OFFICIAL_TRANSFER_FILES
from smplh2smplx.formats.meshes import read_obj_vertices, write_obj
from smplh2smplx.formats.param_files import (parameter_path, pose_from_parameters,
                                             read_parameters)
from smplh2smplx.formats.source_params import write_source_params
from smplh2smplx.runtime import is_installed, resolve_device

REPO_ROOT = Path(__file__).resolve().parent.parent
AMASS_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "amass_sample_smplh.npz"
FLOOR = FitSettings(max_iterations=100, tolerance=1e-8, fit_vertices=0)
# Our rows: the product's default (the "fast" preset), the "floor" preset, and with --floor
# the 100-step floor every mean is divided by.
OURS = (("default", FIT_PRESETS["fast"]), ("floor preset", FIT_PRESETS["floor"]))
NUM_BETAS = 10
SMPLFITTER_ITERATIONS = 3     # smplfitter's docs: "reasonable values are in the range of 1-4"


# ----------------------------------------------------------------- the table (pure)

@dataclass(frozen=True)
class EngineRun:
    """One engine's fit of a set of poses.

    Attributes:
        engine: who fitted ("ours", "official transfer_model", "smplfitter BodyFitter").
        settings: how, in a few words.
        device: where ("cpu", "cuda:0").
        pose_ids: the poses fitted.
        seconds: wall time of the fits of all of them.
        v2v_mm: per-pose mean vertex error over the mask, in millimetres, in pose_ids order.
        ours: for our rows, the name of the setting ("default", "fast") that heads a
            speed-up column; None for a peer.
    """
    engine: str
    settings: str
    device: str
    pose_ids: tuple
    seconds: float
    v2v_mm: tuple
    ours: str = None

    @property
    def poses_per_second(self):
        return len(self.pose_ids) / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class Skipped:
    """A peer that did not run, and why (shown under the table)."""
    engine: str
    reason: str


def error_stats(v2v_mm):
    """(mean, median, p95, max) of per-pose errors; NaNs when there are none."""
    values = np.asarray(v2v_mm, dtype=np.float64)
    if values.size == 0:
        return (float("nan"),) * 4
    return (float(values.mean()), float(np.median(values)), float(np.percentile(values, 95)),
            float(values.max()))


def speed_up(ours, peer):
    """How many times more poses per second `ours` fits than `peer`, on the same poses."""
    if sorted(ours.pose_ids) != sorted(peer.pose_ids):
        raise ValueError(f"{ours.engine} ({ours.settings}) and {peer.engine} fitted different "
                         f"poses; a speed-up compares equal work")
    return ours.poses_per_second / peer.poses_per_second


def _ours_settings(runs):
    names = []
    for run in runs:
        if run.ours is not None and run.ours not in names:
            names.append(run.ours)
    return names


def _number(value):
    if not np.isfinite(value):
        return "-"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def table_rows(runs):
    """Header and rows (lists of strings) of the comparison table.

    Every run gets a row; a peer row gets, for each setting of ours, our speed-up over it:
    the ratio of poses per second of the run of ours at that setting on the same poses
    ("-" when ours was not run on exactly those poses).
    """
    settings = _ours_settings(runs)
    floors = [run for run in runs if run.ours == "floor"]
    header = ["engine", "settings", "device", "poses", "poses/s", "v2v_mm mean", "median",
              "p95", "max"] + (["mean / floor"] if floors else []) + [
                  f"ours {name}: speed-up" for name in settings]
    rows = []
    for run in runs:
        row = [run.engine, run.settings, run.device, str(len(run.pose_ids)),
               _number(run.poses_per_second)] + [f"{value:.2f}" for value in error_stats(run.v2v_mm)]
        if floors:
            floor = [each for each in floors if sorted(each.pose_ids) == sorted(run.pose_ids)]
            row.append(f"{np.mean(run.v2v_mm) / np.mean(floor[0].v2v_mm):.4f}" if floor else "-")
        for name in settings:
            same = [ours for ours in runs if ours.ours == name
                    and sorted(ours.pose_ids) == sorted(run.pose_ids)]
            if run.ours is not None or not same:
                row.append("-")
            else:
                row.append(f"{_number(speed_up(same[0], run))}x")
        rows.append(row)
    return header, rows


def format_table(runs, skipped=()):
    """The table as Markdown, with one line under it per skipped peer."""
    header, rows = table_rows(runs)
    widths = [max(len(line[column]) for line in [header] + rows) for column in range(len(header))]

    def line(cells):
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |"

    lines = [line(header), "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
    lines += [line(row) for row in rows]
    lines += [f"skipped: {skip.engine}: {skip.reason}" for skip in skipped]
    return "\n".join(lines)


def describe(settings):
    """A FitSettings in a few words."""
    vertices = "whole mask" if settings.fit_vertices <= 0 else f"{settings.fit_vertices} vertices"
    learned = ", learned start" if settings.learned_start else ""
    return f"LM {settings.max_iterations}+{settings.refine_iterations} it., {vertices}{learned}"


def official_settings(maxiters=None):
    """The official engine's settings in a few words."""
    return f"trust-ncg, {maxiters or 100} it./stage, batch 1"


# ----------------------------------------------------------------- why a peer cannot run

def official_skip_reason(smplx_repo, installed=is_installed):
    """Why the official engine cannot run here, or None when it can."""
    if not smplx_repo:
        return ("no --smplx-repo given: pass a clone of https://github.com/vchoutas/smplx "
                "to compare with the official transfer_model")
    if not (Path(smplx_repo) / "transfer_model" / "transfer_model.py").is_file():
        return f"{smplx_repo}: not a clone of the smplx repository (no transfer_model/)"
    if not installed("torchtrustncg"):
        return ("torchtrustncg is not installed (not on PyPI): pip install "
                "--no-build-isolation git+https://github.com/vchoutas/torch-trust-ncg")
    if not installed("loguru"):
        return "loguru is not installed: pip install loguru"
    return None


def smplfitter_skip_reason(installed=is_installed):
    """Why smplfitter cannot run here, or None when it can."""
    if not installed("smplfitter"):
        return "smplfitter is not installed: pip install smplfitter"
    return None


# ----------------------------------------------------------------- inputs

@dataclass
class Inputs:
    """The poses and what every engine fits: stage-1 meshes and their targets."""
    pose_ids: list            # frame indices into the sequences read, used as pose ids
    source_poses: np.ndarray  # (N, 156) SMPL-H axis-angle
    mesh_dir: Path            # <pose_id:06d>.obj and source_params.npz
    targets: torch.Tensor     # (N, 10475, 3) float32 deformation-transferred vertices
    mask_ids: np.ndarray
    source: str = "smplh"


def spread(count, total):
    """`count` distinct indices spread evenly over range(total), first and last included."""
    count = min(count, total)
    return np.unique(np.linspace(0, total - 1, count).round().astype(np.int64)).tolist()


def parse_pair(text):
    """"smplx2smpl" -> ("smplx", "smpl"); InputError for anything else."""
    source, _, target = text.partition("2")
    if source not in KINDS or target not in KINDS or source == target:
        raise InputError(f"--pair: expected SRC2DST with two of {', '.join(KINDS)}, got {text!r}")
    return source, target


def pair_files(kit, source, target):
    """(deformation transfer, mask) paths of a pair in a kit: None where the pair needs none."""
    deftrafo = (None if same_topology(source, target)
                else kit / "transfer" / OFFICIAL_TRANSFER_FILES[f"{source}2{target}"])
    mask = kit / "transfer" / "smplx_mask_ids.npy" if target == "smplx" else None
    return deftrafo, mask


def write_inputs(kit, amass, num_poses, mesh_dir, deformation, source="smplh"):
    """The source meshes of `num_poses` frames spread over the AMASS SMPL-H files `amass` (a
    list, read one after the other; mapped onto the source's joints), then the targets read
    back from the .obj files."""
    from smplh2smplx.formats.amass import read_smplh_poses
    sequence = np.concatenate([read_smplh_poses(path) for path in amass])
    pose_ids = spread(num_poses, len(sequence))
    poses = map_pose(sequence[pose_ids], "smplh", source).float()
    data = load_body_model(kit / "body_models", source)
    poser = BodyModel(data)
    mesh_dir.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(pose_ids), 256):
        with torch.no_grad():
            vertices = poser(poses[start:start + 256])[0].numpy()
        for pose_id, mesh in zip(pose_ids[start:start + 256], vertices):
            write_obj(mesh_dir / f"{pose_id:06d}.obj", mesh, data.faces)
    if source == "smplh":
        write_source_params(mesh_dir / "source_params.npz",
                            dict(zip(pose_ids, poses.reshape(len(poses), -1).numpy())))
    source_vertices = np.stack([read_obj_vertices(mesh_dir / f"{pose_id:06d}.obj")
                                for pose_id in pose_ids]).astype(np.float32)
    targets = torch.as_tensor(deformation.apply(source_vertices))
    return Inputs(pose_ids, poses, mesh_dir, targets, deformation.mask_ids, source)


def v2v_mm(body_model, pose, betas, transl, targets, mask_ids, batch_size=128):
    """(B,) mean distance in mm over `mask_ids` between the posed target mesh and `targets`.

    Args:
        body_model: our `BodyModel` of the target model (float32, CPU).
        pose: (B, J, 3) axis-angle; betas: (B, NUM_BETAS); transl: (B, 3).
        targets: (B, V, 3) deformation-transferred vertices.
    """
    mask = torch.as_tensor(mask_ids)
    errors = []
    with torch.no_grad():
        for start in range(0, len(pose), batch_size):
            part = slice(start, start + batch_size)
            vertices = body_model(pose[part].float(), betas[part].float(), transl[part].float())[0]
            distance = (vertices[:, mask] - targets[part][:, mask]).norm(dim=-1)
            errors.append(distance.mean(1) * 1000.0)
    return torch.cat(errors).tolist()


# ----------------------------------------------------------------- the engines

def run_ours(target_data, inputs, indices, settings, device, batch_size):
    """(seconds, pose, betas, transl) of our fitter on the poses at `indices`."""
    fitter = BodyFitter(target_data, inputs.mask_ids, settings).to(device)
    mask = torch.as_tensor(inputs.mask_ids)
    init = map_pose(inputs.source_poses[indices], inputs.source, target_data.kind).float()
    targets = inputs.targets[indices][:, mask]
    # Warm-up, not timed, on a fitter of its own (a learned start learns from the poses timed).
    fit_batch(BodyFitter(target_data, inputs.mask_ids, settings).to(device), targets[:2],
              list(init[:2]))
    results = []
    start = time.perf_counter()
    for first in range(0, len(indices), batch_size):
        part = slice(first, first + batch_size)
        results.append(fit_batch(fitter, targets[part], list(init[part])))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return (seconds, torch.cat([r.pose for r in results]), torch.cat([r.betas for r in results]),
            torch.cat([r.transl for r in results]))


def median_run(runs):
    """The run of median time among repeated runs of one engine (seconds, pose, betas,
    transl each); their fits are the same, only the times differ."""
    return sorted(runs, key=lambda run: run[0])[len(runs) // 2]


def smplfitter_model_root(smplx_npz, folder):
    """A folder smplfitter's `BodyModel("smplx", "neutral", model_root=...)` can load.

    smplfitter looks for exactly `SMPLX_NEUTRAL.npz` and, for every SMPL-family model, a
    `kid_template.npy` beside it (the AGORA kid template, a separate registration). Its own
    downloader writes an all-zero placeholder for users without it (kid fitting off), and so
    does this function; the model file is linked, not copied.
    """
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "SMPLX_NEUTRAL.npz"
    if not link.exists():
        link.symlink_to(Path(smplx_npz).resolve())
    num_vertices = len(np.load(smplx_npz)["v_template"])
    np.save(folder / "kid_template.npy", np.zeros((num_vertices, 3)))
    return folder


def run_smplfitter(model_root, inputs, indices, device, batch_size,
                   iterations=SMPLFITTER_ITERATIONS):
    """(seconds, pose, betas, transl) of smplfitter's BodyFitter on the poses at `indices`.

    BodyFitter gets the same full-mesh targets as the other engines, with weight 1 on the
    mask ids and 0 elsewhere, and no shape regulariser (as its BodyConverter fits). Its
    BodyConverter is not used: it re-poses the source model itself and looks for the
    transfer under its own name (`smpl2smplx_deftrafo_setup.pkl`), with no mask.
    """
    from smplfitter.pt import BodyFitter, BodyModel as PeerBodyModel
    body_model = PeerBodyModel("smplx", "neutral", model_root=str(model_root),
                               num_betas=NUM_BETAS).to(device)
    fitter = BodyFitter(body_model).to(device)
    weights = torch.zeros(body_model.num_vertices, device=device)
    weights[torch.as_tensor(inputs.mask_ids, device=device)] = 1.0
    targets = inputs.targets[indices]

    def fit(part):
        batch = targets[part].to(device)
        return fitter.fit(batch, vertex_weights=weights.expand(len(batch), -1),
                          num_iter=iterations, beta_regularizer=0.0,
                          requested_keys=["pose_rotvecs", "shape_betas"])

    with torch.no_grad():
        fit(slice(0, 2))                                      # warm-up, not timed
        results = []
        start = time.perf_counter()
        for first in range(0, len(indices), batch_size):
            results.append(fit(slice(first, first + batch_size)))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    pose = torch.cat([r["pose_rotvecs"].cpu() for r in results]).reshape(-1, 55, 3)
    return (seconds, pose, torch.cat([r["shape_betas"].cpu() for r in results]),
            torch.cat([r["trans"].cpu() for r in results]))


def run_official_engine(kit, inputs, indices, smplx_repo, device, work_dir, maxiters=None,
                        target="smplx"):
    """(seconds, pose_ids, pose, betas, transl, failures) of the official transfer_model.

    Run through `patches.official.run_official` with the default settings (the
    official optimiser settings: trust-region Newton-CG, `official.max_iterations` 100 per stage
    unless `maxiters` is given). The meshes of `indices` are copied into a folder of their
    own; each is fitted alone (the official batch size, 1) and written as the target's .pkl,
    read back here; the translation comes from `OfficialResult.transl`.
    """
    from patches.official import run_official
    from smplh2smplx.settings import OfficialSettings, TransferOptions
    mesh_dir, output_dir = work_dir / "official_meshes", work_dir / "official_params"
    mesh_dir.mkdir(parents=True, exist_ok=True)
    pose_ids = [inputs.pose_ids[index] for index in indices]
    for pose_id in pose_ids:
        shutil.copyfile(inputs.mesh_dir / f"{pose_id:06d}.obj", mesh_dir / f"{pose_id:06d}.obj")
    deftrafo, _mask = pair_files(kit, inputs.source, target)
    official = OfficialSettings() if maxiters is None else OfficialSettings(
        max_iterations=maxiters)
    models = kit / "body_models"
    options = TransferOptions(
        mesh_dir=mesh_dir, output_dir=output_dir, smpl_model=models, smplh_model=models,
        smplx_model=models, deformation_transfer=deftrafo,
        mask=kit / "transfer" / "smplx_mask_ids.npy", source_model=inputs.source,
        target_model=target, overwrite=True, official=official).for_pair()
    results = run_official(options, smplx_repo=smplx_repo, device=str(device),
                           log=lambda line: print("  " + line, flush=True))
    by_id = {result.pose_id: result for result in results}
    failures = [f"pose {r.pose_id}: {r.error}" for r in results if r.error is not None]
    done = [pose_id for pose_id in pose_ids
            if pose_id in by_id and by_id[pose_id].error is None]
    poses, betas, _transl = zip(*(pose_from_parameters(read_parameters(
        parameter_path(output_dir, pose_id), target), target)
        for pose_id in done)) if done else ((), (), ())
    seconds = sum(result.seconds for result in results)
    transl = torch.tensor([by_id[pose_id].transl for pose_id in done]).reshape(-1, 3)
    return (seconds, done,
            torch.stack(poses) if done else torch.zeros(0, KINDS[target].num_joints, 3),
            torch.stack(betas) if done else torch.zeros(0, NUM_BETAS), transl, failures)


# ----------------------------------------------------------------- the run

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kit", type=Path,
                        help="synthetic kit folder (default: write one per --variant, of "
                             "--seed, into the work dir)")
    parser.add_argument("--variant", nargs="+", default=["default"],
                        choices=("default", "realistic"),
                        help="variants of the kits written when --kit is not given "
                             "(%(default)s); each gets its tables")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the kits written (%(default)s)")
    parser.add_argument("--pair", nargs="+", default=["smplh2smplx"], metavar="SRC2DST",
                        help="source and target models, e.g. smplx2smpl, or all: every "
                             "pair (default %(default)s); one table each")
    parser.add_argument("--floor", action="store_true",
                        help="also run ours at 100 steps, tolerance 1e-8: the error floor")
    parser.add_argument("--amass", type=Path, nargs="+", default=[AMASS_SAMPLE],
                        help="AMASS SMPL-H sequences whose frames are the poses (%(default)s)")
    parser.add_argument("--kit-sequences", action="store_true",
                        help="also draw the poses from the kit's own AMASS sequences (varied "
                             "motions)")
    parser.add_argument("--poses", type=int, default=500,
                        help="poses for ours and smplfitter (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="times ours and smplfitter are timed, taking turns; each "
                             "keeps its median (default %(default)s)")
    parser.add_argument("--official-poses", type=int, default=3,
                        help="poses for the official engine, a few minutes each (%(default)s)")
    parser.add_argument("--smplx-repo", type=Path,
                        help="clone of github.com/vchoutas/smplx (the official engine)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--batch-size", type=int, default=512,
                        help="poses fitted at once by ours and smplfitter (%(default)s)")
    parser.add_argument("--official-maxiters", type=int,
                        help="optimiser iterations per stage of the official engine (default: "
                             "the setting official.max_iterations, 100); fewer "
                             "only to try the script out")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads for every engine (default: torch's choice); 1 "
                             "avoids OpenMP spin-waits on a machine shared with other jobs")
    parser.add_argument("--work-dir", type=Path,
                        help="where meshes and outputs go (default: a temp dir, removed)")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    return args


def compare(args, work_dir, kit, pair):
    """Run every engine that can run on one kit and pair; returns (runs, skipped)."""
    device = resolve_device(args.device)
    source, target = parse_pair(pair)
    smplx_npz = kit / "body_models" / "smplx" / "SMPLX_NEUTRAL.npz"
    target_data = load_body_model(kit / "body_models", target)
    deformation = load_pair_transfer(source, target, *pair_files(kit, source, target))
    sequences = list(args.amass) + (sorted((kit / "amass").rglob("*_poses.npz"))
                                    if args.kit_sequences else [])
    inputs = write_inputs(kit, sequences, args.poses, work_dir / "meshes", deformation, source)
    body_model = BodyModel(target_data, num_betas=NUM_BETAS)
    everything = list(range(len(inputs.pose_ids)))
    few = [everything[i] for i in spread(args.official_poses, len(everything))]
    runs, skipped = [], []

    def record(engine, settings, indices, seconds, pose, betas, transl, ours=None):
        errors = v2v_mm(body_model, pose, betas, transl, inputs.targets[indices],
                        inputs.mask_ids)
        runs.append(EngineRun(engine, settings, str(device),
                              tuple(inputs.pose_ids[i] for i in indices), seconds,
                              tuple(errors), ours))
        print(f"  {engine} ({settings}): {len(indices)} poses in {seconds:.1f} s", flush=True)

    def ours(indices, settings):
        for name, setting in settings:
            record("ours", f"{name}: {describe(setting)}", indices,
                   *run_ours(target_data, inputs, indices, setting, device, args.batch_size),
                   ours=name)

    names = ", ".join(path.name for path in sequences)
    print(f"{source} -> {target}: {len(everything)} poses of {names}, kit {kit}, "
          f"device {device}, {torch.get_num_threads()} threads", flush=True)
    # Ours at its default and smplfitter take turns, `--rounds` times, and each keeps its
    # median time: the machine's speed drifts (by 2x within minutes on a shared machine),
    # and engines timed once, one after the other, would be timed at different speeds.
    default_name, default = OURS[0]
    turns = {"ours": lambda: run_ours(target_data, inputs, everything, default, device,
                                      args.batch_size)}
    reason = smplfitter_skip_reason() if target == "smplx" else "run for SMPL-X targets only"
    if reason is None:
        turns["smplfitter"] = lambda: run_smplfitter(
            smplfitter_model_root(smplx_npz, work_dir / "smplfitter_models" / "smplx"),
            inputs, everything, device, args.batch_size)
    timed = {engine: [] for engine in turns}
    for _ in range(args.rounds):
        for engine in list(turns):
            try:
                timed[engine].append(turns[engine]())
            except Exception as error:           # a peer's failure must not lose the table
                if engine == "ours":
                    raise
                reason = ("could not fit with the kit's SMPL-X model: "
                          f"{type(error).__name__}: {error}")
                del turns[engine]
    for engine, turns_taken in timed.items():
        print(f"  {engine}: {len(turns_taken)} turn{'s' * (len(turns_taken) > 1)} of "
              f"{len(everything)} poses in "
              f"{', '.join(f'{turn[0]:.2f}' for turn in turns_taken)} s", flush=True)
    record("ours", f"{default_name}: {describe(default)}", everything,
           *median_run(timed["ours"]), ours=default_name)
    ours(everything, list(OURS[1:]) + ([("floor", FLOOR)] if args.floor else []))
    if "smplfitter" in turns:
        record("smplfitter BodyFitter", f"{SMPLFITTER_ITERATIONS} it., batch {args.batch_size}",
               everything, *median_run(timed["smplfitter"]))
    if reason is not None:
        skipped.append(Skipped("smplfitter BodyFitter", reason))

    reason = official_skip_reason(args.smplx_repo)
    if reason is None and few:
        ours(few, OURS)
        ours_on_few = runs[-len(OURS):]
        try:
            seconds, done, pose, betas, transl, failures = run_official_engine(
                kit, inputs, few, args.smplx_repo, device, work_dir, args.official_maxiters,
                target)
            indices = [inputs.pose_ids.index(pose_id) for pose_id in done]
            if done:
                record("official transfer_model", official_settings(args.official_maxiters),
                       indices, seconds, pose, betas, transl)
                for line in pose_by_pose(runs[-1], ours_on_few):
                    print("  " + line, flush=True)
            if failures:
                reason = "; ".join(failures)
        except InputError as error:
            reason = str(error)
    if reason is not None:
        skipped.append(Skipped("official transfer_model", reason))
    return runs, skipped


def pose_by_pose(peer, ours_runs):
    """Lines comparing each of ours runs with a peer's run on the peer's poses, pose by
    pose: the v2v_mm of both and on how many poses ours is at or below the peer."""
    lines = []
    for run in ours_runs:
        ours_by_id = dict(zip(run.pose_ids, run.v2v_mm))
        pairs = [(peer_error, ours_by_id[pose_id])
                 for pose_id, peer_error in zip(peer.pose_ids, peer.v2v_mm)]
        at_or_below = sum(ours <= peer_error for peer_error, ours in pairs)
        lines.append(f"{peer.engine} / ours {run.ours}, v2v_mm per pose: "
                     + ", ".join(f"{peer_error:.3f} / {ours:.3f}" for peer_error, ours in pairs)
                     + f" (ours at or below on {at_or_below} of {len(pairs)})")
    return lines


def pairs_of(names):
    """The pairs asked for: every SRC2DST named, or all of them for "all"."""
    if "all" in names:
        return [f"{source}2{target}" for source in KINDS for target in KINDS
                if source != target]
    return list(names)


def compare_all(args, work_dir):
    """The tables of every kit and pair asked for, printed as each is done."""
    if args.threads:
        torch.set_num_threads(args.threads)
    kits = [(str(args.kit), args.kit)] if args.kit is not None else []
    for variant in ([] if args.kit is not None else args.variant):
        from synthetic_kit import write_synthetic_kit
        print(f"writing a synthetic kit (seed {args.seed}, {variant}) ...", flush=True)
        kits.append((f"{variant} kit, seed {args.seed}", write_synthetic_kit(
            work_dir / f"kit_{variant}", seed=args.seed, variant=variant).root))
    tables = []
    for name, kit in kits:
        for pair in pairs_of(args.pair):
            parse_pair(pair)
            runs, skipped = compare(args, work_dir / name.replace(" ", "_").replace(",", "")
                                    / pair, Path(kit), pair)
            tables.append(f"### {pair}, {name}\n\n{format_table(runs, skipped)}")
            print("\n" + tables[-1] + "\n", flush=True)
    return tables


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.work_dir is not None:
            args.work_dir.mkdir(parents=True, exist_ok=True)
            tables = compare_all(args, args.work_dir)
        else:
            with tempfile.TemporaryDirectory(prefix="compare_peers_") as work_dir:
                tables = compare_all(args, Path(work_dir))
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n\n".join(["# All tables"] + tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
