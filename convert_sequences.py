"""Whole motion files of any SMPL-family model to another, in AMASS's file layouts.

    python convert_sequences.py                          # config.py: AMASS_DIR -> SEQUENCE_OUTPUT_DIR
    python convert_sequences.py AMASS/CMU --fps 30 --keep-going      # -> <output>/CMU/...
    python convert_sequences.py AMASS/CMU/01/01_01_poses.npz --output-dir out --gender neutral
    python convert_sequences.py estimates/ --gender neutral --source-fps 30 \\
        --deformation-transfer transfer/                 # a video's SMPL fits
    python convert_sequences.py AMASS_SMPLX/CMU --target-model smplh --output-dir smplh_out \\
        --deformation-transfer transfer/
    python convert_sequences.py --shard-size 200 --shard-index 3     # one shard of the sorted files
    python convert_sequences.py --slurm --shards 50 --partition gpu --time 240 --gpus 1
    python convert_sequences.py --mode report            # plots and animation of a finished run

Each motion file (SMPL (T, 72), AMASS SMPL+H (T, 156) or AMASS SMPL-X (T, 165) poses: the
source model is told by the file) becomes one file of the target model under
<output>/<input folder's name>/<same relative folder>/ (SMPL-X: <name>_stageii.npz; SMPL-H
and SMPL: <name>_poses.npz), with the file's own gender, betas and translation (subject
semantics); sequences.csv gets a row per sequence (v2v_mm mean/p95/max, joint jitter
against the source). Finished files are skipped, so an interrupted run is resumed by
running the same command again; shape.npz and files already in the target model are
skipped with a reason. Every path defaults to its config.py entry; a flag wins.
Exit status: 0 all converted, 1 some files failed (--keep-going; listed at the end), 2 bad
input (without --keep-going the first bad file stops the run), 3 an output that cannot be
written.
"""
import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from smplh2smplx.cli import RUN_FLAGS, add_setting_flags, run_command, setting_flag_values
from smplh2smplx.errors import InputError, listed
from smplh2smplx.family import KINDS, same_topology
from smplh2smplx.stages.sequences.convert import (CHUNK_FRAMES, FRAME_FIT, MODEL_FLAGS,
                                                  SEQUENCES_PER_BATCH, SHAPE_FRAMES,
                                                  SMOOTHING_SECONDS, SequenceOptions)
from smplh2smplx.stages.sequences.run import run_sequences
from smplh2smplx.stages.sequences.slurm import (ShardError, SlurmOptions, shard_outcome,
                                                 submit_shards)
from smplh2smplx.settings import UNSET, USER_CONFIG, TransferOptions, read_user_config


@dataclass(frozen=True)
class PathEntry:
    """A path of the run: its name, config.py entry and flag."""
    name: str
    entry: str
    flag: str


MODEL_PATHS = {kind: PathEntry(f"{kind}_model", f"{kind.upper()}_MODEL", MODEL_FLAGS[kind])
               for kind in KINDS}
INPUT = PathEntry("input_path", "AMASS_DIR", "the input argument")
OUTPUT = PathEntry("output_dir", "SEQUENCE_OUTPUT_DIR", "--output-dir")
DEFTRAFO = PathEntry("deftrafo_path", "DEFTRAFO_PATH", "--deformation-transfer")
MASK = PathEntry("mask_path", "MASK_IDS_PATH", "--mask")
FLAG_PATHS = [*MODEL_PATHS.values(), DEFTRAFO, MASK, OUTPUT]


MODES = ("convert", "report")
# The settings whose flags are shared with run_transfer.py (same names, help and defaults).
SHARED_FLAGS = RUN_FLAGS + ("target_model",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", nargs="?", metavar="PATH",
                        help="a folder of motion files (any subfolder of AMASS) or one "
                             "motion .npz (config.py: AMASS_DIR)")
    parser.add_argument("--mode", choices=MODES, default="convert",
                        help="convert: convert the motion files (default); report: write the "
                             "report page (plots, an animation of the worst sequence) of a "
                             "finished output folder, converting nothing")
    parser.add_argument("--report", dest="mode", action="store_const", const="report",
                        help=argparse.SUPPRESS)        # the spelling before --mode
    parser.add_argument("--source-model", choices=tuple(KINDS),
                        help="the model of the input files (default: told by each file)")
    parser.add_argument("--num-betas", type=int,
                        help="betas written (default: 16 for SMPL-X and SMPL-H as in AMASS, "
                             "10 for SMPL); at most what the target model file holds")
    for path in FLAG_PATHS:
        parser.add_argument(path.flag, dest=path.name, metavar="PATH",
                            help=f"(config.py: {path.entry})")
    parser.add_argument("--gender", choices=("file", "neutral", "male", "female"),
                        default="file",
                        help="body model: each file's own gender (default), or this one "
                             "for every file (the files' own gender is then not read)")
    parser.add_argument("--fps", type=float,
                        help="output frame rate, e.g. 30: every 4th frame of 120 fps, the "
                             "motion between frames of 100 fps (slerp); at most the source "
                             "rate (default: the source rate)")
    parser.add_argument("--source-fps", type=float, metavar="FPS",
                        help="frame rate of input files that hold none, e.g. a pose "
                             "estimator's output at its video's rate; a file's own rate is "
                             "kept (default: such files fail)")
    add_setting_flags(parser, TransferOptions, SHARED_FLAGS)
    # The spellings before the shared flags, kept working.
    parser.add_argument("--deftrafo", dest="deftrafo_path", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", dest="shard_size", help=argparse.SUPPRESS)
    parser.add_argument("--batch-index", dest="shard_index", help=argparse.SUPPRESS)
    parser.add_argument("--chunk-frames", type=int, default=CHUNK_FRAMES,
                        help="frames fitted at once (default: %(default)s)")
    parser.add_argument("--sequences-per-batch", type=int, default=SEQUENCES_PER_BATCH,
                        help="files converted at once, their fits batched together "
                             "(default: %(default)s)")
    parser.add_argument("--shape-frames", type=int, default=SHAPE_FRAMES,
                        help="frames the sequence's shape is fitted on (default: %(default)s)")
    parser.add_argument("--smoothing", type=float, default=SMOOTHING_SECONDS, metavar="SECONDS",
                        help="standard deviation of the low-pass over time of the fits' "
                             "corrections of the source motion; 0: every frame as fitted "
                             "(default: %(default)s)")
    parser.add_argument("--max-iterations", type=int, default=FRAME_FIT.max_iterations,
                        help="fitter steps per frame from its warm start; frames whose error "
                             "stands out get the full fit (default: %(default)s)")
    slurm = parser.add_argument_group("SLURM (array job through submitit)")
    slurm.add_argument("--slurm", action="store_true",
                       help="submit the shards as an array job instead of converting here")
    slurm.add_argument("--shards", type=int, default=10, help="array tasks (default: %(default)s)")
    slurm.add_argument("--partition", help="SLURM partition")
    slurm.add_argument("--time", type=int, default=240, metavar="MINUTES",
                       help="time limit of a task (default: %(default)s)")
    slurm.add_argument("--cpus", type=int, default=4, help="CPUs per task (default: %(default)s)")
    slurm.add_argument("--gpus", type=int, default=0, help="GPUs per task (default: %(default)s)")
    slurm.add_argument("--mem-gb", type=int, default=16, help="memory per task (default: %(default)s)")
    slurm.add_argument("--log-dir", metavar="PATH",
                       help="submitit's logs (default: <output-dir>/slurm_logs)")
    slurm.add_argument("--local", action="store_true",
                       help="run the array on this machine with submitit's local executor "
                            "(a trial of the SLURM setup)")
    slurm.add_argument("--wait", action="store_true",
                       help="wait for the tasks and print their summaries")
    return parser


def parse_args(argv):
    return build_parser().parse_args(argv)


def resolve_paths(args, user_config):
    """{field: path or None} from the flags, else config.py; InputError listing, one per
    line, the paths this run needs that are not set.

    Needed: input, output, the target's model, the mask for a SMPL-X target, and with
    --source-model the source's model and the deformation transfer unless the two share a
    mesh. (With the source told by each file, a missing model or transfer is one line
    naming what needs it, before any fit.)
    """
    def value(path):
        given = getattr(args, path.name, None) if path is not INPUT else args.input
        given = given if given is not None else user_config.get(path.entry, UNSET)
        return None if given in (UNSET, None, "") else Path(given).expanduser()

    source, target = args.source_model, args.target_model or TransferOptions.target_model
    needed = [INPUT, OUTPUT, MODEL_PATHS[target]]
    if source is not None:
        needed.append(MODEL_PATHS[source])
        if not same_topology(source, target):
            needed.append(DEFTRAFO)
    if KINDS[target].uses_mask:
        needed.append(MASK)
    unset = [path for path in needed if value(path) is None]
    if unset:
        raise InputError(f"paths not set yet (write them in {USER_CONFIG}, or give the flags):"
                         + listed(f"{path.entry} (or {path.flag})" for path in unset))
    return {path.name: value(path) for path in [INPUT, OUTPUT, DEFTRAFO, MASK]}, {
        kind: value(path) for kind, path in MODEL_PATHS.items() if value(path) is not None}


def options_from_args(args, user_config):
    paths, model_paths = resolve_paths(args, user_config)
    return SequenceOptions(**paths, model_paths=model_paths, source_model=args.source_model,
                           num_betas=args.num_betas, gender=args.gender, fps=args.fps,
                           source_fps=args.source_fps,
                           **setting_flag_values(TransferOptions, args, SHARED_FLAGS),
                           chunk_frames=args.chunk_frames, shape_frames=args.shape_frames,
                           sequences_per_batch=args.sequences_per_batch,
                           smoothing=args.smoothing,
                           fit=replace(FRAME_FIT, max_iterations=args.max_iterations))


def submit(options, args):
    """--slurm: submit the array job; with --wait, the tasks' summaries. Exit status."""
    slurm = SlurmOptions(shards=args.shards, partition=args.partition, minutes=args.time,
                         cpus=args.cpus, gpus=args.gpus, mem_gb=args.mem_gb,
                         log_dir=Path(args.log_dir) if args.log_dir else
                         Path(options.output_dir) / "slurm_logs",
                         cluster="local" if args.local else None)
    jobs = submit_shards(options, slurm)
    print(f"submitted {len(jobs)} tasks: job {jobs[0].job_id.split('_')[0]} "
          f"(logs in {slurm.log_dir})")
    if not args.wait:
        return 0
    code = 0
    for index, job in enumerate(jobs):
        outcome = shard_outcome(job)
        if isinstance(outcome, ShardError):
            print(f"shard {index}: error: {outcome.message}", file=sys.stderr)
            code = max(code, outcome.code)
            continue
        print(f"shard {index}: " + "\n  ".join(outcome.lines()))
        # The status the same run here would give: 2 for a shard stopped at a bad file.
        code = max(code, 2 if outcome.stopped else 1 if outcome.failed else 0)
    return code


def main(argv=None, user_config=None):
    """Run the conversion; `user_config` replaces config.py's entries (None: read config.py)."""
    args = parse_args(argv)

    def work():
        options = options_from_args(
            args, read_user_config() if user_config is None else user_config)
        if args.mode == "report":
            from smplh2smplx.stages.sequences.report import write_sequence_report
            print(f"report: {write_sequence_report(options)}")
            return 0
        if args.slurm:
            return submit(options, args)
        summary = run_sequences(options)
        if summary.stopped:             # the first bad file stopped the run (no --keep-going)
            print("\n".join(summary.lines()))
            return 2
        return summary

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
