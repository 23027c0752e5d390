"""Stage 2: fit SMPL-X parameters to the SMPL-H meshes of stage 1 (or any SMPL-family pair).

    python run_transfer.py                                   # my_smplh2smplx.yaml + config.py
    python run_transfer.py --exp-cfg my_smplh2smplx.yaml \
        --exp-opts datasets.mesh_folder.batch_size=1000 datasets.mesh_folder.batch_index=0
    python run_transfer.py --source-model smplx --target-model smpl \
        --exp-opts deformation_transfer_path=smplx2smpl_deftrafo_setup.pkl body_model.folder=...

    python run_transfer.py --shape-only --betas 0.5,-1,0 --source-model smplx \
        --target-model smpl --source-body-model models/smplx     # prints the target betas

    python run_transfer.py --report [--report-dir DIR] [--report-poses N]

Writes <pose_id:06d>.pkl and errors.csv into output_folder; poses already converted are
skipped, so an interrupted run is resumed by running the same command again. Exit status:
0 all converted, 1 some poses failed (listed at the end), 2 bad input (nothing fitted),
3 an output cannot be written (read-only or full disk, a path that is a file; the path is
named).
--report fits nothing: it writes the HTML/PNG report of output_folder (default
<output_folder>/report/index.html).
"""
import argparse
import math
import sys
import time
from pathlib import Path

from smplh2smplx.cli import run_command
from smplh2smplx.errors import InputError
from smplh2smplx.formats.errors_csv import ERRORS_CSV, ErrorRow, merge_error_rows
from smplh2smplx.settings import (EXPERIMENT_CONFIG, ShapeOptions, TransferOptions,
                                  load_experiment_config, parse_value)
from smplh2smplx.stages.report import report_from_config
from smplh2smplx.stages.shape import convert_shape
from smplh2smplx.stages.transfer import TransferSummary, run_transfer


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exp-cfg", default=str(EXPERIMENT_CONFIG),
                        help="YAML config in the transfer_model schema (default: %(default)s)")
    parser.add_argument("--exp-opts", nargs="*", default=[], metavar="KEY=VALUE",
                        help="dotted overrides of config entries, e.g. output_folder=out")
    parser.add_argument("--engine", choices=("ours", "official"), default="ours",
                        help="our batched fitter (default) or the official transfer_model")
    parser.add_argument("--smplx-repo", metavar="PATH",
                        help="clone of the smplx repository (--engine official)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or auto (config: fit.device)")
    parser.add_argument("--poses-per-batch", type=int, metavar="N",
                        help="poses our engine fits at once (config: fit.poses_per_batch; the "
                             "official engine's own batch is the config entry batch_size)")
    parser.add_argument("--overwrite", action="store_true",
                        help="convert again poses whose .pkl already exists")
    parser.add_argument("--from-params", action="store_true",
                        help="pose SMPL-H from source_params.npz instead of reading meshes")
    parser.add_argument("--smplh-model", metavar="PATH",
                        help="SMPL-H model for --from-params (config.py: SMPLH_MODEL)")
    parser.add_argument("--source-model", choices=("smpl", "smplh", "smplx"),
                        help="model of the input meshes (config: fit.source_model; default "
                             "smplh)")
    parser.add_argument("--target-model", choices=("smpl", "smplh", "smplx"),
                        help="model fitted and written (config: body_model.model_type; "
                             "default smplx)")
    parser.add_argument("--shape-only", action="store_true",
                        help="convert the shape --betas of the source model to the target's "
                             "betas (rest pose) and print them; fits no meshes")
    parser.add_argument("--betas", metavar="B0,B1,...",
                        help="source betas for --shape-only, comma-separated")
    parser.add_argument("--source-body-model", metavar="PATH",
                        help="source model file or folder for --shape-only (default: "
                             "fit.smplh_model for SMPL-H sources)")
    parser.add_argument("--report", action="store_true",
                        help="write the HTML/PNG report of the finished output_folder instead "
                             "of converting (poses without a mesh file are posed from "
                             "source_params.npz with --smplh-model)")
    parser.add_argument("--report-dir", metavar="DIR",
                        help="folder of the report (default: <output_folder>/report)")
    parser.add_argument("--report-poses", type=int, default=12, metavar="N",
                        help="poses drawn in the report: the worst half, the rest at random "
                             "(default: %(default)s)")
    return parser.parse_args(argv)


def flag_overrides(args):
    """The config entries set by dedicated flags (they win over --exp-opts)."""
    flags = {}
    if args.device is not None:
        flags["fit.device"] = args.device
    if args.poses_per_batch is not None:
        flags["fit.poses_per_batch"] = args.poses_per_batch
    if args.overwrite:
        flags["overwrite"] = True
    if args.from_params:
        flags["fit.from_params"] = True
    if args.smplh_model is not None:
        flags["fit.smplh_model"] = args.smplh_model
    if args.source_model is not None:
        flags["fit.source_model"] = args.source_model
    if args.target_model is not None:
        flags["body_model.model_type"] = args.target_model
    return flags


def run_shape_only(config, args):
    """--shape-only: print the target betas of --betas (and the rest-pose fit error)."""
    if not args.betas:
        raise InputError("--shape-only needs --betas B0,B1,... (the source model's betas)")
    betas = [parse_value(text, float, "--betas") for text in args.betas.split(",")]
    options = ShapeOptions.from_config(config, args.source_body_model)
    result = convert_shape(options, betas)
    print(f"{options.target_model} betas: "
          + ",".join(f"{value:.6f}" for value in result.betas[0]))
    print(f"rest-pose v2v_mm: mean {result.v2v_mean_mm[0]:.3f}, max {result.v2v_max_mm[0]:.3f}")
    return 0


def run_official_engine(config, args):
    """--engine official: the official transfer_model (patched at run time by patches/),
    with the same errors.csv and summary as our engine."""
    if args.from_params:
        raise InputError("--from-params works with --engine ours only")
    try:
        from patches.official import run_official
    except ImportError as error:
        raise InputError(f"--engine official is not available in this checkout "
                         f"(patches.official.run_official: {error})") from None
    csv_path = Path(str(config.output_folder)).expanduser() / ERRORS_CSV
    threshold = float(config.fit.flag_threshold_mm)
    summary = TransferSummary()

    def record(results):
        rows = [ErrorRow(r.pose_id, r.v2v_mean_mm, r.v2v_max_mm, r.iterations,
                         r.converged and math.isfinite(r.v2v_mean_mm),
                         r.v2v_mean_mm > threshold) for r in results if r.error is None]
        merge_error_rows(csv_path, rows)
        summary.rows.extend(rows)
        summary.failures.extend((str(r.pose_id), f"pose {r.pose_id}: {r.error}")
                                for r in results if r.error is not None)

    start = time.perf_counter()
    summary.total = len(run_official(config, smplx_repo=args.smplx_repo, on_batch=record))
    summary.seconds = time.perf_counter() - start
    return summary


def main(argv=None):
    args = parse_args(argv)

    def work():
        config = load_experiment_config(args.exp_cfg, args.exp_opts, flag_overrides(args))
        if args.shape_only:
            return run_shape_only(config, args)
        if args.report:
            print(f"report: {report_from_config(config, args.report_dir, args.report_poses)}")
            return 0
        if args.engine == "official":
            return run_official_engine(config, args)
        return run_transfer(TransferOptions.from_config(config))

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
