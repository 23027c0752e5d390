"""Stage 2: fit SMPL-X parameters to the SMPL-H meshes of stage 1 (or any SMPL-family pair).

Modes (--mode):
  transfer  (default) fit every mesh of --mesh-dir and write <pose_id:06d>.pkl and
            errors.csv into --output-dir; poses already converted are skipped, so an
            interrupted run is resumed by running the same command again.
  shape     convert the shape --betas of the source model to the target's betas (rest
            pose) and print them; fits no meshes.
  report    write the HTML/PNG report of a finished --output-dir (default
            <output-dir>/report/index.html); fits nothing.

    python run_transfer.py                                   # config.py + my_smplh2smplx.yaml
    python run_transfer.py --shard-size 1000 --shard-index 0 --device cuda
    python run_transfer.py --source-model smplx --target-model smpl --mesh-dir smplx_meshes \\
        --deformation-transfer smplx2smpl_deftrafo_setup.pkl --output-dir smpl_params
    python run_transfer.py --mode shape --betas 0.5,-1,0 --source-model smplx --target-model smpl \\
        --deformation-transfer smplx2smpl_deftrafo_setup.pkl
    python run_transfer.py --mode report --report-poses 24    # --report-dir DIR: elsewhere

Every path defaults to its config.py entry and every other setting to settings.py; a YAML
file (--exp-cfg), --exp-opts key=value and the flags override them, in that order.
Exit status: 0 done, 1 some poses failed (--keep-going; listed at the end), 2 bad input,
3 an output cannot be written (read-only or full disk, a path that is a file; the path is
named).
"""
import argparse
import math
import sys
import time
from pathlib import Path

from smplh2smplx.cli import (RUN_FLAGS, add_config_flags, add_setting_flags,
                             load_command_settings, run_command, settings_yaml)
from smplh2smplx.errors import InputError
from smplh2smplx.formats.errors_csv import ERRORS_CSV, ErrorRow, merge_error_rows
from smplh2smplx.settings import EXPERIMENT_CONFIG, MODES, TransferOptions, parse_value
from smplh2smplx.stages.report import report_from_options
from smplh2smplx.stages.shape import convert_shape
from smplh2smplx.stages.transfer import TransferSummary, run_transfer

PATH_FLAGS = ("mesh_dir", "output_dir", "smpl_model", "smplh_model", "smplx_model",
              "deformation_transfer", "mask")
FLAGS = (PATH_FLAGS + RUN_FLAGS
         + ("source_model", "target_model", "gender", "preset", "poses_per_batch",
            "from_params"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:4]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=MODES, default="transfer",
                        help="transfer (default), shape or report: see above")
    # The spellings before --mode, kept working.
    parser.add_argument("--shape-only", dest="mode", action="store_const", const="shape",
                        help=argparse.SUPPRESS)
    parser.add_argument("--report", dest="mode", action="store_const", const="report",
                        help=argparse.SUPPRESS)
    add_config_flags(parser, str(EXPERIMENT_CONFIG))
    add_setting_flags(parser, TransferOptions, FLAGS)
    parser.add_argument("--engine", choices=("ours", "official"), default="ours",
                        help="our batched fitter (default) or the official transfer_model")
    parser.add_argument("--smplx-repo", metavar="PATH",
                        help="clone of the smplx repository (--engine official)")
    shape = parser.add_argument_group("--mode shape")
    shape.add_argument("--betas", metavar="B0,B1,...",
                       help="the source model's betas, comma-separated")
    report = parser.add_argument_group("--mode report")
    report.add_argument("--report-dir", metavar="DIR",
                        help="folder of the report (default: <output-dir>/report)")
    report.add_argument("--report-poses", type=int, default=12, metavar="N",
                        help="poses drawn: the worst half, the rest at random "
                             "(default: %(default)s)")
    return parser


def parse_args(argv):
    return build_parser().parse_args(argv)


def run_shape_only(options, args):
    """--mode shape: print the target betas of --betas (and the rest-pose fit error)."""
    if not args.betas:
        raise InputError("--mode shape needs --betas B0,B1,... (the source model's betas)")
    betas = [parse_value(text, float, "--betas") for text in args.betas.split(",")]
    result = convert_shape(options, betas)
    print(f"{options.target_model} betas: "
          + ",".join(f"{value:.6f}" for value in result.betas[0]))
    print(f"rest-pose v2v_mm: mean {result.v2v_mean_mm[0]:.3f}, max {result.v2v_max_mm[0]:.3f}")
    return 0


def run_official_engine(options, args):
    """--engine official: the official transfer_model (patched at run time by patches/),
    with the same errors.csv and summary as our engine."""
    if options.from_params:
        raise InputError("--from-params works with --engine ours only")
    try:
        from patches.official import run_official
    except ImportError as error:
        raise InputError(f"--engine official is not available in this checkout "
                         f"(patches.official.run_official: {error})") from None
    csv_path = Path(options.output_dir) / ERRORS_CSV
    summary = TransferSummary()

    def record(results):
        rows = [ErrorRow(r.pose_id, r.v2v_mean_mm, r.v2v_max_mm, r.iterations,
                         r.converged and math.isfinite(r.v2v_mean_mm),
                         r.v2v_mean_mm > options.flag_threshold_mm)
                for r in results if r.error is None]
        merge_error_rows(csv_path, rows)
        summary.rows.extend(rows)
        summary.failures.extend((str(r.pose_id), f"pose {r.pose_id}: {r.error}")
                                for r in results if r.error is not None)

    start = time.perf_counter()
    summary.total = len(run_official(options, smplx_repo=args.smplx_repo, on_batch=record))
    summary.seconds = time.perf_counter() - start
    return summary


def main(argv=None, user_config=None):
    """Run stage 2; `user_config` replaces config.py's entries (None: read config.py)."""
    args = parse_args(argv)

    def work():
        options = load_command_settings(TransferOptions, args, FLAGS, user_config)
        if args.show_settings:
            print(settings_yaml(options), end="")
            return 0
        options.check(args.mode)
        options = options.for_pair()
        if args.mode == "shape":
            return run_shape_only(options, args)
        if args.mode == "report":
            print(f"report: {report_from_options(options, args.report_dir, args.report_poses)}")
            return 0
        if args.engine == "official":
            return run_official_engine(options, args)
        return run_transfer(options)

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
