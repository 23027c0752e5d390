"""Sequence conversion against its shared-shape floor and the per-pose path, in one run.

    python -m benchmarks.bench_sequences [--kit-seed 1] [--amass FILE]
        [--fps 30 0] [--kit-frames 120] [--directions smplh2smplx smpl2smplx ...]
        [--iterations 1 2 3] [--fit-vertices 0] [--rounds 3] [--tree 8] [--device cuda]

Cases: the real AMASS SMPL+H sequence (../shared/data/amass_sample_smplh.npz) SMPL-H to SMPL-X
at each --fps (0: its own 120 fps), posed with the realistic kit's models of its gender; and
the realistic kit's first motion (its SMPL, SMPL+H and SMPL-X files) in every direction of
--directions, at the kit's 60 fps; and the kit's first --tree motions (SMPL+H, their genders
mixed as AMASS's subjects are) to SMPL-X, one at a time and together as a run over a tree
converts them (their fits batched, `--sequences-per-batch`). The kit is written with
--kit-seed (the defaults were tuned on seed 0: measure on another one). Per case and rate,
on the same frames:

- sequence: `convert_sequence` at its defaults (a row per --iterations steps per frame),
  timed whole (posing the source, the transfer, the shape, the frames, the joints);
- per-pose: every frame fitted on its own from its source pose with free betas, as stage 2
  does (its default setting, the "fast" preset with its learned start), timed the same way
  (a fresh fitter each turn, built before the clock starts, as the sequence path's models);
- floor: the shared-shape floor: every frame fitted with free betas in 100 steps, the one
  shape that best fits all those poses solved on every frame, then every frame fitted again
  in 100 steps with that shape held (one shape per sequence is what the file holds).

Printed: v2v_mm mean and p95 beside the floor's and their ratio; jitter (mean joint
acceleration of the 22 body joints, m/s^2) against the source's, and beside it that of the
source's own joint rotations on the target's body (the conversion's shape, the source's
translation, no fit): the part of the ratio that comes from the bodies' proportions, not
from the fits (with the seed-0 models the real sample's is 1.06x); frames per CPU-second of
the sequence and per-pose paths (torch on one thread: the machine is shared) and the ratio,
each path's the median of `--rounds` turns taken in alternation (the machine's speed drifts).
Goals (issue 18): v2v mean <= 1.02x the floor where there is a deformation transfer; jitter
<= 1.05x the source's; >= 3x the per-pose frames per CPU-second.

With `--device cuda` both paths run on the GPU and are timed by the wall clock (the device
synchronised): the sequence path with each motion's frames in one chunk (one batch per
level), the per-pose path in batches of GPU_BATCH frames, as stage 2 is run on a GPU.
Goal: >= 2,000 frames per second.
"""
import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from smplh2smplx.errors import InputError
from smplh2smplx.family import KINDS, same_topology
from smplh2smplx.fit.fitter import FIT_PRESETS, BodyFitter, FitSettings
from smplh2smplx.formats.sequence_files import read_motion
from smplh2smplx.runtime import resolve_device
from smplh2smplx.stages.sequences.batching import fitted_together
from smplh2smplx.stages.sequences.convert import (CHUNK_FRAMES, FRAME_FIT, SEQUENCES_PER_BATCH,
                                                  GenderModels, SequenceOptions, SequenceResult,
                                                  SourceFrames, body_joints, convert_sequence,
                                                  frame_spacing, load_gender_model, pair_transfer,
                                                  sequence_steps)
from smplh2smplx.stages.sequences.shared_shape import SHAPE_RIDGE, MaskedBody, shape_system
from smplh2smplx.stages.sequences.timeline import mean_acceleration
from synthetic_kit import write_synthetic_kit

REPO = Path(__file__).resolve().parents[1]
AMASS_SAMPLE = REPO.parent / "shared" / "data" / "amass_sample_smplh.npz"
FLOOR = FitSettings(max_iterations=100, tolerance=1e-7, fit_vertices=0)
CHUNK = 64           # frames a batch of the per-pose path and the floor on the CPU
GPU_BATCH = 1024     # on a GPU


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kit-seed", type=int, default=1)
    parser.add_argument("--kit-frames", type=int, default=120,
                        help="frames of the kit's motions (at 60 fps)")
    parser.add_argument("--amass", type=Path, default=AMASS_SAMPLE)
    parser.add_argument("--fps", type=float, nargs="+", default=[30.0, 0.0],
                        help="rates of the real sequence, 0 for its own (default: 30 0; "
                             "the jitter of a fit shows most at the source's own rate)")
    parser.add_argument("--directions", nargs="*",
                        default=["smplh2smplx", "smpl2smplx", "smplx2smplh", "smplx2smpl",
                                 "smplh2smpl", "smpl2smplh"])
    parser.add_argument("--iterations", type=int, nargs="+",
                        default=[FRAME_FIT.max_iterations],
                        help="steps per frame of the sequence path, a row each (default: "
                             "the product's)")
    parser.add_argument("--fit-vertices", type=int, default=FRAME_FIT.fit_vertices,
                        help="loss subset of the per-frame fit (0: the whole mask; default: "
                             "the product's)")
    parser.add_argument("--no-real", action="store_true", help="skip the real sequence")
    parser.add_argument("--tree", type=int, default=SEQUENCES_PER_BATCH,
                        help="motions of the kit (its SMPL+H files, mixed genders) converted "
                             "to SMPL-X together, as a run over a tree does them "
                             "(--sequences-per-batch), in one more row; 0: none (default: "
                             "%(default)s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="times the two paths are timed, taking turns; each keeps its "
                             "median (default %(default)s)")
    parser.add_argument("--device", default="cpu",
                        help="cpu (one thread, CPU time) or cuda (wall time; default "
                             "%(default)s)")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    try:
        args.device = resolve_device(args.device)
    except InputError as error:
        parser.error(str(error))
    return args


def timed(function, device: torch.device):
    """(result, seconds) of function(): CPU seconds on the CPU, wall seconds on a GPU."""
    if device.type == "cpu":
        start = time.process_time()
        return function(), time.process_time() - start
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = function()
    torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


def batches(count: int, device: torch.device) -> list:
    """Frame index arrays of the per-pose path's and the floor's batches."""
    size = CHUNK if device.type == "cpu" else GPU_BATCH
    return [np.arange(start, min(start + size, count)) for start in range(0, count, size)]


def per_pose_fitter(models, target_data, settings):
    """A fresh fitter of the per-pose path (nothing learned yet), built outside its timing
    as the sequence path's models are (building one takes about half a second)."""
    return BodyFitter(target_data, models.mask_ids.cpu().numpy(),
                      replace(settings, num_betas=models.target.num_betas)).to(models.device)


def per_pose(fitter, models, source):
    """Every frame fitted on its own (free betas) from its source pose by `fitter`: (pose,
    betas, transl, v2v) over all frames."""
    parts = []
    for frames in batches(len(source), models.device):
        targets, _ = source.targets(frames)
        parts.append(fitter.fit(targets, models.map_pose(source.poses[frames]).float()))
    return [torch.cat([getattr(part, name) for part in parts])
            for name in ("pose", "betas", "transl", "v2v_mean_mm")]


@torch.no_grad()
def shared_shape_floor(models, target_data, source):
    """v2v (T,) of the shared-shape floor (see the module's docstring)."""
    pose, _, _, _ = per_pose(per_pose_fitter(models, target_data, FLOOR), models, source)
    masked = MaskedBody(models.target, models.mask_ids)          # the whole mask
    num_betas = masked.body.num_betas
    normal = torch.zeros(num_betas, num_betas, dtype=torch.float64)
    right = torch.zeros(num_betas, dtype=torch.float64)
    for frames in batches(len(source), models.device):   # normal equations, by batches
        targets, _ = source.targets(frames)
        chunk_normal, chunk_right, _, _ = shape_system(masked, pose[frames].to(models.device),
                                                       targets)
        normal += chunk_normal.cpu()
        right += chunk_right.cpu()
    betas = torch.linalg.solve(normal + SHAPE_RIDGE * torch.eye(num_betas), right).float()
    fitter = BodyFitter(target_data, models.mask_ids.cpu().numpy(),
                        replace(FLOOR, fit_betas=False, num_betas=num_betas)).to(models.device)
    errors = []
    for frames in batches(len(source), models.device):
        targets, _ = source.targets(frames)
        errors.append(fitter.fit(targets, pose[frames], betas.expand(len(frames), -1))
                      .v2v_mean_mm)
    return torch.cat(errors).numpy()


def sequence_chunk(frames: int, device: torch.device) -> int:
    """Frames of a chunk of the sequence path: the product's default on the CPU, the whole
    motion on a GPU (one batch per level)."""
    return CHUNK_FRAMES if device.type == "cpu" else max(frames, 1)


def measure(label, sequence, source_kind, target_kind, options, fps, iterations, fit_vertices,
            rounds, device=torch.device("cpu")):
    """A printed row per count of steps per frame; the sequence and per-pose paths take
    turns `rounds` times and each keeps its median time (the machine's speed drifts)."""
    gender = sequence.gender
    transfer = pair_transfer(options, source_kind, target_kind)
    options = replace(options, target_model=target_kind)
    target_data = load_gender_model(options, target_kind, gender)
    models = GenderModels(options, source_kind, gender, transfer.mask_ids, device)
    spacing, rate = frame_spacing(sequence.framerate, fps, sequence.path)
    source = SourceFrames(sequence, spacing, models, transfer)
    floor = shared_shape_floor(models, target_data, source)
    chunk = sequence_chunk(len(source), device)
    for count in iterations:
        frame_models = GenderModels(
            replace(options, fit=replace(FRAME_FIT, max_iterations=count,
                                         fit_vertices=fit_vertices)),
            source_kind, gender, transfer.mask_ids, device)
        per_pose_seconds, sequence_seconds = [], []
        for _ in range(rounds):
            fitter = per_pose_fitter(models, target_data, FIT_PRESETS["fast"])
            per_pose_seconds.append(timed(lambda: per_pose(fitter, models, source), device)[1])
            result, seconds = timed(
                lambda: convert_sequence(sequence, frame_models, transfer, fps, chunk), device)
            sequence_seconds.append(seconds)
        print_row(label, source_kind, target_kind, rate, result, np.median(sequence_seconds),
                  np.median(per_pose_seconds), floor,
                  source_on_target_jitter(models, source, result.output.betas, rate))


def measure_tree(label, motions, options, rounds, device=torch.device("cpu")):
    """Two rows for several SMPL-H motions converted to SMPL-X: one at a time, and together
    (their fits batched by `batching.fitted_together`, as `run_sequences` does), each
    against the per-pose path on the same frames and the motions' floors."""
    transfer = pair_transfer(options, "smplh", "smplx")
    options = replace(options, target_model="smplx")
    genders = sorted({motion.gender for motion in motions})
    models = {gender: GenderModels(options, "smplh", gender, transfer.mask_ids, device)
              for gender in genders}
    targets = {gender: load_gender_model(options, "smplx", gender) for gender in genders}
    sources = [SourceFrames(motion, 1, models[motion.gender], transfer) for motion in motions]
    floor = np.concatenate([
        shared_shape_floor(models[motion.gender], targets[motion.gender], source)
        for motion, source in zip(motions, sources)])
    chunks = [sequence_chunk(len(motion.poses), device) for motion in motions]
    ways = {
        "one at a time": lambda: [
            convert_sequence(motion, models[motion.gender], transfer, None, chunk)
            for motion, chunk in zip(motions, chunks)],
        "together": lambda: fitted_together([
            sequence_steps(motion, models[motion.gender], transfer, None, chunk)
            for motion, chunk in zip(motions, chunks)])}

    def per_pose_all():
        for motion, source in zip(motions, sources):
            model = models[motion.gender]
            per_pose(per_pose_fitter(model, targets[motion.gender], FIT_PRESETS["fast"]),
                     model, source)

    per_pose_seconds, seconds_of, results = [], {way: [] for way in ways}, {}
    for _ in range(rounds):
        per_pose_seconds.append(timed(per_pose_all, device)[1])
        for way, convert in ways.items():
            results[way], seconds = timed(convert, device)
            seconds_of[way].append(seconds)
    for way, converted in results.items():
        joined = SequenceResult(output=None, **{
            name: np.concatenate([getattr(result, name) for result in converted])
            for name in ("v2v_mm", "acceleration", "source_acceleration", "iterations")})
        on_target = np.concatenate([
            source_on_target_jitter(models[motion.gender], source, result.output.betas,
                                    motion.framerate)
            for motion, source, result in zip(motions, sources, converted)])
        print_row(f"{label}, {way}", "smplh", "smplx", motions[0].framerate, joined,
                  np.median(seconds_of[way]), np.median(per_pose_seconds), floor, on_target)


@torch.no_grad()
def source_on_target_jitter(models, source, betas, rate):
    """(T-2,) mean joint acceleration per frame of the source's joint rotations (mapped onto
    the target's joints) on the target's body with `betas` and the source's translation."""
    target = models.target.v_template
    pose = models.map_pose(source.poses).view(len(source), -1, 3).to(target)
    joints = body_joints(models.target, pose,
                         torch.as_tensor(betas).to(target).expand(len(source), -1),
                         torch.as_tensor(source.trans).to(target))
    return mean_acceleration(joints.cpu().numpy(), rate)


def print_row(label, source_kind, target_kind, rate, result, sequence_seconds,
              per_pose_seconds, floor, on_target):
    frames, v2v = len(result.v2v_mm), result.v2v_mm
    jitter, source_jitter = result.acceleration.mean(), result.source_acceleration.mean()
    speed, per_pose_speed = frames / sequence_seconds, frames / per_pose_seconds
    transferred = not same_topology(source_kind, target_kind)
    print(f"| {label} | {KINDS[source_kind].label} -> {KINDS[target_kind].label} | {rate:g} | "
          f"{frames} | {v2v.mean():.3f} / {floor.mean():.3f} = "
          f"{v2v.mean() / floor.mean():.3f}x{'' if transferred else ' (one mesh)'} | "
          f"{np.percentile(v2v, 95):.3f} / {np.percentile(floor, 95):.3f} | "
          f"{jitter:.3f} / {source_jitter:.3f} = {jitter / source_jitter:.3f}x | "
          f"{on_target.mean() / source_jitter:.3f}x | "
          f"{speed:.1f} / {per_pose_speed:.1f} = {speed / per_pose_speed:.2f}x | "
          f"{result.iterations.mean():.2f} |", flush=True)


def main(argv=None):
    args = parse_args(argv)
    device = args.device
    if device.type == "cpu":
        torch.set_num_threads(1)
        where, speed = "torch on 1 thread", "frames per CPU-s"
    else:
        where, speed = f"on {torch.cuda.get_device_name(device)}", "frames/s (wall)"
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        kit = write_synthetic_kit(Path(folder), seed=args.kit_seed,
                                  n_sequences=max(1, args.tree),
                                  frames_per_sequence=args.kit_frames, variant="realistic")
        print(f"realistic kit, seed {args.kit_seed}, written in "
              f"{time.perf_counter() - start:.0f} s; {where}\n")
        options = SequenceOptions(
            input_path=Path(folder), output_dir=Path("unused"),
            model_paths={kind: kit.body_models for kind in KINDS},
            deftrafo_path=kit.deftrafo.parent, mask_path=kit.mask, device=str(device))
        print("| case | direction | fps | frames | v2v mean / floor | p95 / floor | "
              "jitter / source (m/s^2) | source's poses on target body / source | "
              f"{speed}: sequence / per-pose | steps/frame |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        if not args.no_real and not args.amass.is_file():
            print(f"| {args.amass}: not found (--amass), the real sequence is not measured |")
        elif not args.no_real:
            real = read_motion(args.amass, "smplh")
            for fps in args.fps:
                measure(args.amass.name, real, "smplh", "smplx", options, fps or None,
                        args.iterations, args.fit_vertices, args.rounds, device)
        trees = {"smpl": kit.smpl_motions, "smplh": kit.amass, "smplx": kit.smplx_motions}
        for direction in args.directions:
            source_kind, target_kind = direction.split("2")
            relative = kit.sequences[0].replace(
                "_poses.npz", KINDS[source_kind].motion.suffix + ".npz")
            sequence = read_motion(trees[source_kind] / relative, source_kind)
            measure(f"kit seed {args.kit_seed} {Path(relative).stem}", sequence,
                    source_kind, target_kind, options, None, args.iterations,
                    args.fit_vertices, args.rounds, device)
        if args.tree:
            motions = [read_motion(kit.amass / relative, "smplh")
                       for relative in kit.sequences[:args.tree]]
            measure_tree(f"kit seed {args.kit_seed}, {len(motions)} motions", motions, options,
                         args.rounds, device)


if __name__ == "__main__":
    main()
