"""Stage-2 speed and accuracy on both synthetic kits posed with a real AMASS sequence.

    python -m benchmarks.bench_transfer [--kits DIR DIR] [--variants default realistic]
        [--amass FILE] [--frames N] [--batch-sizes 1 64 512] [--device cpu|cuda|all]
        [--threads N] [--no-floor]

Each kit's SMPL-H body is posed with frames of the AMASS sequence and, as a second set, with
the same frames whose 21 body joints get Gaussian noise (new, less usual poses). Each batch
goes through what stage 2 does with a batch of meshes: the sparse deformation transfer,
then `fit_batch` at the default `FitSettings`, the timed part. Cases:

- source pose: the frames and their noisy copies, started from their own SMPL-H pose
  (stage 2 with source_params.npz);
- mesh only: the frames, started from the mesh alone (no source pose known).

The floor of a case is its error after 100 steps at tolerance 1e-8 (what any fit of these
models can reach); each row gives its mean v2v_mm over the floor's mean. Batch size 1 is
measured on 16 poses spread over a case. The CPU seconds column counts every thread: where
other processes share the cores, poses / (CPU s / threads) is what idle cores would give.
Goals (issue 11): on the realistic kit, mean within 1% of the floor, p95 within 2%, at least
20 poses/s on 2 CPU cores.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from smplh2smplx.body.deformation import load_deformation_transfer
from smplh2smplx.body.lbs import BodyModel
from smplh2smplx.family import map_pose
from smplh2smplx.fit.fitter import BodyFitter, FitSettings, fit_batch
from smplh2smplx.formats.body_models import load_smplh, load_smplx
from synthetic_kit import kit_paths, write_synthetic_kit

REPO = Path(__file__).resolve().parents[1]
AMASS_SAMPLE = REPO.parent / "shared" / "data" / "amass_sample_smplh.npz"
NOISE_RAD = 0.2          # standard deviation of the noise on each body joint's axis-angle
SINGLE_POSES = 16        # poses measured at batch size 1
FLOOR = FitSettings(max_iterations=100, tolerance=1e-8, fit_vertices=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=["default", "realistic"],
                        help="kit variants measured (default: %(default)s)")
    parser.add_argument("--kits", type=Path, nargs="+",
                        help="one folder per variant: reused when it holds a kit, else written "
                             "there (default: temporary folders)")
    parser.add_argument("--amass", type=Path, default=AMASS_SAMPLE,
                        help="AMASS SMPL-H sequence (.npz with poses (T, 156)); default: "
                             "../shared/data/amass_sample_smplh.npz next to the repository")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 512])
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="cpu",
                        help="all: the CPU, then CUDA when available")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--frames", type=int,
                        help="use this many frames spread over the sequence (default: all)")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the 100-step floor (it costs about 10 times the fit)")
    parser.add_argument("--seed", type=int, default=0, help="kit and noise seed")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.kits and len(args.kits) != len(args.variants):
        parser.error("--kits needs one folder per --variants entry")
    return args


def kit_files(kit_dir, seed, variant):
    """Paths of the kit in `kit_dir`, written there first unless it already holds one."""
    paths = kit_paths(kit_dir)
    if not paths["mask"].is_file():
        start = time.perf_counter()
        write_synthetic_kit(kit_dir, seed, variant=variant, genders=("neutral",),
                            model_types=("smplh", "smplx"))
        print(f"{variant} kit written to {kit_dir} ({time.perf_counter() - start:.0f} s)")
    else:
        print(f"{variant} kit: reusing {kit_dir}")
    return paths


def read_frames(path):
    """(T, 156) float32 SMPL-H poses of an AMASS sequence, or exit with a message."""
    if not path.is_file():
        sys.exit(f"error: {path}: AMASS sample not found; give an AMASS SMPL-H sequence "
                 "(an .npz with poses (T, 156)) with --amass")
    with np.load(path) as data:
        poses = data["poses"]
    if poses.ndim != 2 or poses.shape[1] != 156:
        sys.exit(f"error: {path}: poses has shape {poses.shape}, a SMPL-H sequence has (T, 156)")
    return poses.astype(np.float32)


def cases(frames, seed):
    """{case: (SMPL-H poses (N, 156), whether the fit starts from them)}."""
    noisy = frames.copy()
    noisy[:, 3:66] += np.random.default_rng(seed).normal(
        scale=NOISE_RAD, size=(len(frames), 63)).astype(np.float32)
    both = np.empty((2 * len(frames), 156), dtype=np.float32)
    both[0::2], both[1::2] = frames, noisy             # every batch holds both kinds
    return {"source pose": (both, True), "mesh only": (frames, False)}


def smplh_meshes(smplh, poses):
    """(N, 6890, 3) SMPL-H vertices of `poses` (N, 156): what stage 1 writes."""
    with torch.no_grad():
        return smplh(torch.as_tensor(poses).view(-1, 52, 3))[0].numpy()


def measure(fitter, deformation, smplh_vertices, poses, from_pose, batch_size, device):
    """Stats of fitting every pose in batches of `batch_size` (transfer + fit timed)."""
    errors, iterations, converged = [], [], []
    wall, cpu = 0.0, 0.0
    for begin in range(0, len(poses), batch_size):
        chunk = slice(begin, begin + batch_size)
        init = (list(map_pose(poses[chunk], "smplh", "smplx")) if from_pose
                else [None] * len(poses[chunk]))
        vertices = torch.as_tensor(smplh_vertices[chunk], device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        targets = deformation.apply(vertices)[:, deformation.mask_ids]
        result = fit_batch(fitter, targets, init)
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall += time.perf_counter() - start_wall
        cpu += time.process_time() - start_cpu
        errors.append(result.v2v_mean_mm.numpy())
        iterations.append(result.iterations.numpy())
        converged.append(result.converged.numpy())
    errors, iterations = np.concatenate(errors), np.concatenate(iterations)
    return dict(poses=len(errors), seconds=wall, cpu=cpu, mean=errors.mean(),
                p95=np.percentile(errors, 95), max=errors.max(), steps=iterations.mean(),
                max_steps=iterations.max(), converged=np.concatenate(converged).mean())


def main():
    args = parse_args()
    frames = read_frames(args.amass)
    if args.frames:
        frames = frames[np.linspace(0, len(frames) - 1, args.frames).astype(int)]
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda: no CUDA device is available here")
    if args.device == "cuda":
        devices = [torch.device("cuda")]
    elif args.device == "all" and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    settings = FitSettings()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, devices: "
          + ", ".join(torch.cuda.get_device_name(d) if d.type == "cuda" else "cpu"
                      for d in devices))
    print(f"AMASS: {args.amass} ({len(frames)} frames); noise {NOISE_RAD} rad on the body "
          f"joints of the copies; {settings}")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for index, variant in enumerate(args.variants):
            folder = args.kits[index] if args.kits else Path(scratch) / variant
            paths = kit_files(folder, args.seed, variant)
            smplh = BodyModel(load_smplh(paths["smplh_npz"]))
            smplx = load_smplx(paths["smplx_npz"])
            deformation = load_deformation_transfer(paths["deftrafo"], paths["mask"])
            for device in devices:
                fitter = BodyFitter(smplx, deformation.mask_ids, settings).to(device)
                floor_fitter = BodyFitter(smplx, deformation.mask_ids, FLOOR).to(device)
                for case, (poses, from_pose) in cases(frames, args.seed).items():
                    vertices = smplh_meshes(smplh, poses)
                    floor = None if args.no_floor else measure(
                        floor_fitter, deformation, vertices, poses, from_pose, 512, device)
                    for batch_size in args.batch_sizes:
                        chosen = (np.arange(len(poses)) if batch_size > 1 else
                                  np.linspace(0, len(poses) - 1, SINGLE_POSES).astype(int))
                        stats = measure(fitter, deformation, vertices[chosen], poses[chosen],
                                        from_pose, batch_size, device)
                        use_floor = floor and batch_size > 1
                        stats["floor"] = floor["mean"] if use_floor else float("nan")
                        stats["floor_p95"] = floor["p95"] if use_floor else float("nan")
                        rows.append((variant, device.type, case, batch_size, stats))
                        print(f"  {variant} {device.type} {case} batch {batch_size}: "
                              f"{stats['poses'] / stats['seconds']:.1f} poses/s", flush=True)
    threads = torch.get_num_threads()
    print(f"\n| kit | device | case | batch | poses | seconds | poses/s | CPU s "
          f"| poses/(CPU s/{threads}) | v2v_mm mean | p95 | max | floor mean | mean / floor "
          "| p95 / floor p95 | steps mean | steps max | converged |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
          "| ---: | ---: | ---: | ---: | ---: | ---: |")
    for variant, device, case, batch_size, s in rows:
        print(f"| {variant} | {device} | {case} | {batch_size} | {s['poses']} "
              f"| {s['seconds']:.1f} | {s['poses'] / s['seconds']:.1f} | {s['cpu']:.1f} "
              f"| {threads * s['poses'] / s['cpu']:.1f} | {s['mean']:.3f} | {s['p95']:.3f} "
              f"| {s['max']:.3f} | {s['floor']:.3f} | {s['mean'] / s['floor']:.4f} "
              f"| {s['p95'] / s['floor_p95']:.4f} "
              f"| {s['steps']:.1f} | {s['max_steps']} | {100 * s['converged']:.0f}% |")


if __name__ == "__main__":
    main()
