"""The error floor of a synthetic kit variant: how well SMPL-X can fit the transferred
SMPL-H mesh, pose by pose, on real AMASS poses.

    python -m benchmarks.bench_kit_floor [--variant default realistic]
        [--frames 60] [--kit-dir DIR]

For each variant: the kit's neutral SMPL-H body is posed with `--frames` frames spread over
the AMASS sequence ("frames") and with the same frames whose 21 body joints get Gaussian
noise of 0.2 rad ("noisy", as in bench_transfer.py); each mesh goes through the kit's
deformation transfer and SMPL-X is fitted from the source pose, once to convergence (100
steps, tolerance 1e-8: the floor) and once at the default FitSettings (the normal fit).
Prints per-pose v2v_mm of the floor (mean, p5, p95, max, spread), the per-vertex maxima,
and the steps of both fits. (The shared sample holds one pose for 5 s: its frames differ
by a few hundredths of a radian in the body and up to ~0.2 rad in the fingers.)
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from smplh2smplx.formats.body_models import load_smplh, load_smplx
from smplh2smplx.body.deformation import load_deformation_transfer
from smplh2smplx.fit.fitter import FitSettings, BodyFitter
from smplh2smplx.body.lbs import BodyModel
from smplh2smplx.family import map_pose
from smplh2smplx.fit.fitter import fit_batch
from synthetic_kit import kit_paths, write_synthetic_kit

NOISE_RAD = 0.2
REPO = Path(__file__).resolve().parents[1]
AMASS_SAMPLE = REPO.parent / "shared" / "data" / "amass_sample_smplh.npz"
FLOOR = FitSettings(max_iterations=100, tolerance=1e-8, fit_vertices=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", nargs="+", default=["default", "realistic"])
    parser.add_argument("--frames", type=int, default=60,
                        help="frames spread over the sequence (default %(default)s)")
    parser.add_argument("--amass", type=Path, default=AMASS_SAMPLE)
    parser.add_argument("--kit-dir", type=Path,
                        help="where to write (or reuse) the kits, one folder per variant")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def fit_all(fitter, deformation, vertices, poses, batch_size=64):
    """Per-pose (mean v2v_mm, max v2v_mm, steps) of fitting every mesh from its pose."""
    means, maxima, steps = [], [], []
    for begin in range(0, len(poses), batch_size):
        chunk = slice(begin, begin + batch_size)
        targets = deformation.apply(torch.as_tensor(vertices[chunk]))[:, deformation.mask_ids]
        result = fit_batch(fitter, targets, list(map_pose(poses[chunk], "smplh", "smplx")))
        means.append(result.v2v_mean_mm.numpy())
        maxima.append(result.v2v_max_mm.numpy())
        steps.append(result.iterations.numpy())
    return np.concatenate(means), np.concatenate(maxima), np.concatenate(steps)


def measure(kit_dir, variant, seed, cases):
    paths = kit_paths(kit_dir)
    if not paths["mask"].is_file():
        start = time.perf_counter()
        write_synthetic_kit(kit_dir, seed, variant=variant)
        print(f"{variant} kit written to {kit_dir} ({time.perf_counter() - start:.0f} s)")
    smplh = BodyModel(load_smplh(paths["smplh_npz"]))
    smplx = load_smplx(paths["smplx_npz"])
    deformation = load_deformation_transfer(paths["deftrafo"], paths["mask"])
    rows = []
    for case, poses in cases.items():
        with torch.no_grad():
            vertices = smplh(torch.as_tensor(poses).view(-1, 52, 3))[0].numpy()
        row = {"variant": variant, "case": case, "poses": len(poses)}
        for name, settings in (("floor", FLOOR), ("default", FitSettings())):
            fitter = BodyFitter(smplx, deformation.mask_ids, settings)
            start = time.perf_counter()
            means, maxima, steps = fit_all(fitter, deformation, vertices, poses)
            row[name] = dict(seconds=time.perf_counter() - start, means=means,
                             maxima=maxima, steps=steps)
        rows.append(row)
    return rows


def main():
    args = parse_args()
    if not args.amass.is_file():
        sys.exit(f"error: {args.amass}: AMASS sample not found (give one with --amass)")
    with np.load(args.amass) as data:
        frames = data["poses"].astype(np.float32)
    poses = frames[np.linspace(0, len(frames) - 1, args.frames).astype(int)]
    noisy = poses.copy()
    noisy[:, 3:66] += np.random.default_rng(args.seed).normal(
        scale=NOISE_RAD, size=(len(poses), 63)).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = args.kit_dir or Path(scratch)
        for variant in args.variant:
            rows += measure(root / variant, variant, args.seed,
                            {"frames": poses, "noisy": noisy})
    print(f"\nAMASS {args.amass.name}: {len(poses)} frames; floor = {FLOOR}")
    print("| variant | poses | floor mean | p5 | p95 | max | std over poses "
          "| mean per-vertex max | floor steps | default fit mean | default steps mean / max |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        floor, fit = row["floor"], row["default"]
        m = floor["means"]
        print(f"| {row['variant']} | {row['case']} | {m.mean():.2f} | {np.percentile(m, 5):.2f} "
              f"| {np.percentile(m, 95):.2f} | {m.max():.2f} | {m.std():.2f} "
              f"| {floor['maxima'].mean():.1f} | {floor['steps'].mean():.1f} "
              f"| {fit['means'].mean():.2f} | {fit['steps'].mean():.1f} / {fit['steps'].max()} |")


if __name__ == "__main__":
    main()
