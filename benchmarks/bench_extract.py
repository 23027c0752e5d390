"""Stage-1 speed on a synthetic kit: poses per second with and without `.obj` writing.

    python -m benchmarks.bench_extract [--sequences 8 --frames 600] [--kit-dir DIR]

Writes a kit whose id mapping covers every other frame (8 x 600 frames: 2,400 poses), then
times on all of its poses: run_extract with --format params (AMASS reading and
source_params.npz only), the batched SMPL-H forward pass alone, and the full run_extract
writing one .obj per pose. The goal is >= 100 poses/s for the full run on a 2-core machine.
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from smplh2smplx.settings import ExtractOptions
from smplh2smplx.stages.extract import SmplhPoser, run_extract
from smplh2smplx.runtime import torch_threads
from synthetic_kit import SyntheticKit, kit_paths, write_synthetic_kit


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequences", type=int, default=8, help="AMASS sequences in the kit")
    parser.add_argument("--frames", type=int, default=600, help="frames per sequence")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kit-dir", type=Path,
                        help="write the kit here, or reuse the one already there (it takes "
                             "a minute or two to write); default: a temporary folder")
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def synthetic_kit(kit_dir, args):
    """The kit in `kit_dir`, written there first unless a previous run left it."""
    paths = kit_paths(kit_dir)
    if paths["posefix_ids"].is_file():
        print(f"synthetic kit: reusing {kit_dir}")
        return SyntheticKit(**paths, sequences=())
    start = time.perf_counter()
    kit = write_synthetic_kit(kit_dir, args.seed, args.sequences, args.frames)
    print(f"synthetic kit: {args.sequences} sequences x {args.frames} frames "
          f"({time.perf_counter() - start:.0f} s to write)")
    return kit


def timed(function):
    """(result, wall seconds, CPU seconds of all threads) of function()."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def timed_run(kit, output_dir, output_format, batch_size):
    """(poses written, wall s, CPU s) of a full run_extract over every pose of the kit."""
    options = ExtractOptions(amass_dir=kit.amass, posefix_dir=kit.posefix_ids.parent,
                             posescript_dir=kit.posescript_ids.parent,
                             smplh_model=kit.smplh_npz, output_dir=output_dir, all_poses=True,
                             output_format=output_format, poses_per_batch=batch_size)
    summary, wall, cpu = timed(lambda: run_extract(options, progress=False,
                                                   log=lambda _line: None))
    return summary.written, wall, cpu


def timed_posing(kit, poses, batch_size):
    """(poses, wall s, CPU s) of the batched forward pass alone on `poses` (N, 156)."""
    poser = SmplhPoser(kit.smplh_npz)
    with torch_threads(1):                     # as run_extract poses
        _, wall, cpu = timed(lambda: [poser(poses[begin:begin + batch_size])
                                      for begin in range(0, len(poses), batch_size)])
    return len(poses), wall, cpu


def main():
    args = parse_args()
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        kit = synthetic_kit(args.kit_dir or root / "kit", args)
        rows = [("params only (read AMASS, source_params.npz)",
                 *timed_run(kit, root / "params", "params", args.batch_size))]
        with np.load(root / "params" / "source_params.npz") as recorded:
            poses = recorded["poses"]
        rows.append(("SMPL-H forward pass only (1 torch thread)",
                     *timed_posing(kit, poses, args.batch_size)))
        rows.append(("full run with .obj writing",
                     *timed_run(kit, root / "obj", "obj", args.batch_size)))
    # CPU seconds (all threads) depend less than wall time on other processes sharing
    # the cores: poses / (CPU s / 2) is the most two idle cores could do.
    print(f"\n| {'run':44} | poses | seconds | poses/s | CPU s | poses/(CPU s/2) |")
    print(f"| {'-' * 44} | ----- | ------- | ------- | ----- | --------------- |")
    for name, count, wall, cpu in rows:
        print(f"| {name:44} | {count:5d} | {wall:7.2f} | {count / wall:7.1f} | {cpu:5.1f} "
              f"| {2 * count / cpu:15.1f} |")


if __name__ == "__main__":
    main()
