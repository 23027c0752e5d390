"""Sequence conversion against per-pose conversion, on a real AMASS sequence and the kit's models.

    PYTHONPATH=. python benchmarks/bench_sequences.py [--kit DIR] [--amass FILE]
        [--fps 120 30] [--device cpu|cuda] [--threads N]

The synthetic kit's SMPL-H body (the file's gender when the kit has it, else neutral) is
posed with the sequence's poses, betas and translation; its deformation transfer is the
target of every frame. Rows:

- sequence: `sequences.convert_sequence` at its defaults (one shape fitted jointly on 8
  frames, then pose and translation per frame, warm-started chunk by chunk), timed whole
  (posing the source, the transfer, the shape fit, the frames, the joints);
- per-pose: every frame fitted on its own from its source pose with free betas, as stage 2
  does (default settings, batches of 512), timed the same way (posing, transfer, fit);
- per-pose floor: the same with 100 steps and a tolerance of 1e-7 (the error floor).

Jitter: mean joint acceleration (|second difference| * fps^2, m/s^2) of the 22 body joints of
the fitted SMPL-X sequence, next to the source SMPL-H joints'. The CPU seconds count every
thread: on a machine shared with other work, frames / (CPU s / threads) is what idle cores
would give. Goals (issue 12): v2v within 2% of the floor, jitter at most 10% above the
source's, at least 3x the per-pose speed.
"""
import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from smplh2smplx.formats.body_models import load_smplx
from smplh2smplx.body.deformation import load_deformation_transfer
from smplh2smplx.fit.fitter import FitSettings, BodyFitter
from smplh2smplx.formats.sequence_files import read_smplh_sequence
from smplh2smplx.stages.sequences.convert import (GenderModels, SequenceOptions, SourceFrames,
                                                  body_joints, convert_sequence, frame_step,
                                                  mean_acceleration, model_path)
from synthetic_kit import kit_paths, write_synthetic_kit
from smplh2smplx.family import map_pose
from smplh2smplx.runtime import resolve_device

REPO = Path(__file__).resolve().parents[1]
AMASS_SAMPLE = REPO.parent / "shared" / "data" / "amass_sample_smplh.npz"
PER_POSE_BATCH = 512
FLOOR = FitSettings(max_iterations=100, tolerance=1e-7, fit_vertices=0)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kit", type=Path, help="synthetic kit folder: reused when it holds "
                        "a kit, else written there (default: a temporary folder)")
    parser.add_argument("--amass", type=Path, default=AMASS_SAMPLE,
                        help="AMASS SMPL-H *_poses.npz (default: ../shared/data/"
                             "amass_sample_smplh.npz next to the repository)")
    parser.add_argument("--fps", type=float, nargs="+", default=[None, 30.0],
                        help="output rates to measure (default: the source's and 30)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--no-floor", action="store_true", help="skip the 100-step floor")
    return parser.parse_args()


def kit_files(kit_dir):
    paths = kit_paths(kit_dir)
    if not paths["mask"].is_file():
        start = time.perf_counter()
        write_synthetic_kit(kit_dir, 0)
        print(f"synthetic kit written to {kit_dir} ({time.perf_counter() - start:.0f} s)")
    return paths


def timed(function):
    """(result, wall seconds, CPU seconds) of function()."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def per_pose(models, deformation, sequence, fps, settings, mask_ids, smplx_data):
    """Every frame fitted on its own (free betas), as stage 2 does; quality arrays."""
    fitter = BodyFitter(smplx_data, mask_ids, replace(settings, num_betas=10)).to(
        models.device)
    source = SourceFrames(sequence, frame_step(sequence.framerate, fps, sequence.path),
                          models, deformation)
    rate = sequence.framerate / frame_step(sequence.framerate, fps, sequence.path)

    def run():
        poses, betas, transl, errors, source_joints = [], [], [], [], []
        for start in range(0, len(source), PER_POSE_BATCH):
            frames = np.arange(start, min(start + PER_POSE_BATCH, len(source)))
            targets, joints = source.targets(frames)
            result = fitter.fit(targets, map_pose(source.poses[frames], "smplh", "smplx").float())
            poses.append(result.pose)
            betas.append(result.betas)
            transl.append(result.transl)
            errors.append(result.v2v_mean_mm)
            source_joints.append(joints.cpu())
        return [torch.cat(items) for items in (poses, betas, transl, errors, source_joints)]

    (pose, betas, transl, errors, source_joints), wall, cpu = timed(run)
    body = models.smplx
    with torch.no_grad():
        joints = body_joints(body, pose.to(body.v_template), betas.to(body.v_template),
                             transl.to(body.v_template)).cpu().numpy()
    return dict(frames=len(errors), wall=wall, cpu=cpu, v2v=errors.numpy(),
                jitter=mean_acceleration(joints, rate).mean(),
                source_jitter=mean_acceleration(source_joints.numpy(), rate).mean())


def sequence_row(models, deformation, sequence, fps):
    result, wall, cpu = timed(lambda: convert_sequence(sequence, models, deformation, fps))
    return dict(frames=len(result.v2v_mm), wall=wall, cpu=cpu, v2v=result.v2v_mm,
                jitter=result.acceleration.mean(),
                source_jitter=result.source_acceleration.mean(),
                iterations=result.iterations.mean())


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.amass.is_file():
        sys.exit(f"error: {args.amass}: AMASS sequence not found (--amass)")
    sequence = read_smplh_sequence(args.amass)
    temporary = tempfile.TemporaryDirectory() if args.kit is None else None
    paths = kit_files(args.kit or Path(temporary.name))
    gender = sequence.gender
    if not (paths["body_models"] / "smplh" / gender / "model.npz").is_file():
        print(f"the kit has no {gender} model: the neutral one stands in")
        gender = "neutral"
    device = resolve_device(args.device)
    options = SequenceOptions(input_path=args.amass, output_dir=Path("unused"),
                              smplh_model=paths["body_models"],
                              smplx_model=paths["body_models"],
                              deftrafo_path=paths["deftrafo"], mask_path=paths["mask"],
                              gender=gender)
    deformation = load_deformation_transfer(paths["deftrafo"], paths["mask"])
    models = GenderModels(options, gender, deformation.mask_ids, device)
    smplx_data = load_smplx(model_path(paths["body_models"], "smplx", gender, True))
    threads = torch.get_num_threads()
    print(f"{args.amass.name}: {sequence.num_frames} frames at {sequence.framerate:g} fps, "
          f"{sequence.gender}; device {device}, {threads} torch threads\n")
    print("| fps | method | frames | frames/s (wall) | frames/s (CPU) | v2v_mm mean | p95 | "
          "max | vs floor | jitter m/s^2 | source | vs source | steps/frame |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for fps in args.fps:
        rows = {"sequence": sequence_row(models, deformation, sequence, fps),
                "per-pose": per_pose(models, deformation, sequence, fps, FitSettings(),
                                     deformation.mask_ids, smplx_data)}
        if not args.no_floor:
            rows["per-pose floor"] = per_pose(models, deformation, sequence, fps, FLOOR,
                                              deformation.mask_ids, smplx_data)
        floor = rows.get("per-pose floor", rows["per-pose"])["v2v"].mean()
        rate = sequence.framerate / frame_step(sequence.framerate, fps, args.amass)
        for name, row in rows.items():
            v2v = row["v2v"]
            steps = f"{row['iterations']:.2f}" if "iterations" in row else ""
            print(f"| {rate:g} | {name} | {row['frames']} | {row['frames'] / row['wall']:.1f} | "
                  f"{row['frames'] / (row['cpu'] / threads):.1f} | {v2v.mean():.3f} | "
                  f"{np.percentile(v2v, 95):.3f} | {v2v.max():.3f} | "
                  f"{100 * (v2v.mean() / floor - 1):+.2f}% | {row['jitter']:.4f} | "
                  f"{row['source_jitter']:.4f} | "
                  f"{100 * (row['jitter'] / row['source_jitter'] - 1):+.1f}% | {steps} |",
                  flush=True)
        speedup = (rows["sequence"]["frames"] / rows["sequence"]["cpu"]) / (
            rows["per-pose"]["frames"] / rows["per-pose"]["cpu"])
        print(f"|  | speed-up of sequence over per-pose (CPU time) | {speedup:.2f}x |"
              + " |" * 10)


if __name__ == "__main__":
    main()
