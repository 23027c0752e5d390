"""The quick-start demo: the whole pipeline on the built-in synthetic kit, no downloads.

    python -m synthetic_kit.demo [--output demo_output] [--device auto]

1. writes synthetic body models, a deformation transfer, AMASS sequences and PoseScript /
   PoseFix annotation files in the official formats (kept for the next run);
2. stage 1: the SMPL-H meshes of the PoseFix-H and PoseScript-H poses;
3. stage 2: their SMPL-X parameters, with the error summary;
4. motions: the kit's AMASS sequences, whole, converted to SMPL-X at 30 fps;
5. the HTML report of the stage-2 conversion.
Every step skips what is already written, so a second run only reports.
"""
import argparse
import sys
from pathlib import Path

from smplh2smplx.settings import ExtractOptions, TransferOptions
from smplh2smplx.stages.extract import run_extract
from smplh2smplx.stages.report import write_report
from smplh2smplx.stages.sequences.convert import SequenceOptions
from smplh2smplx.stages.sequences.run import run_sequences
from smplh2smplx.stages.transfer import run_transfer

from .kit import kit_paths, write_synthetic_kit


# The kit files the demo reads: the neutral SMPL-H and SMPL-X models, their transfer and
# mask, AMASS and the annotations (the kit's other models are not written).
DEMO_FILES = ("smplh_npz", "smplx_npz", "deftrafo", "mask", "amass", "posescript_ids",
              "posescript_human", "posefix_human", "posefix_pairs", "posefix_ids")
MOTION_FPS = 30     # below the kit's 60 fps: every 2nd frame, as `--fps 30` takes them


def prepare_kit(root, log=print):
    """The synthetic kit under `root`, written unless one is already there."""
    paths = kit_paths(root)
    if all(Path(paths[name]).exists() for name in DEMO_FILES):
        return paths
    log(f"writing the synthetic kit into {root} (body models, AMASS, annotations) ...")
    kit = write_synthetic_kit(root, genders=("neutral",), model_types=("smplh", "smplx"))
    return kit_paths(kit.root)


def run_demo(output, device="auto", report_poses=12, log=print):
    """Run both stages and the report (drawing `report_poses` poses) under `output`;
    returns the stage-2 summary."""
    output = Path(output)
    kit = prepare_kit(output / "kit", log)
    mesh_dir, params_dir = output / "smplh_meshes", output / "smplx_params"

    log("\nstage 1: SMPL-H meshes of the PoseFix-H and PoseScript-H poses")
    extracted = run_extract(ExtractOptions(
        amass_dir=kit["amass"], posefix_dir=kit["posefix_human"].parent,
        posescript_dir=kit["posescript_human"].parent, smplh_model=kit["smplh_npz"],
        output_dir=mesh_dir))
    log("\n".join(extracted.lines()))

    log("\nstage 2: SMPL-X parameters fitted to those meshes")
    options = TransferOptions(mesh_dir=mesh_dir, output_dir=params_dir,
                              smplx_model=kit["body_models"],
                              deformation_transfer=kit["deftrafo"], mask=kit["mask"],
                              device=device)
    summary = run_transfer(options)
    log("\n".join(summary.lines()))

    # The kit holds only neutral models (a real run takes each file's own gender).
    log(f"\nmotions: the AMASS sequences, whole, to SMPL-X at {MOTION_FPS} fps")
    motions_dir = output / "smplx_motions"
    motions = run_sequences(SequenceOptions(
        input_path=kit["amass"], output_dir=motions_dir,
        model_paths={"smplh": kit["body_models"], "smplx": kit["body_models"]},
        deftrafo_path=kit["deftrafo"], mask_path=kit["mask"], gender="neutral",
        fps=MOTION_FPS, device=device), log=log)
    log("\n".join(motions.lines()))

    report = write_report(options, output / "report", num_poses=report_poses)
    log(f"\nmeshes: {mesh_dir}\nSMPL-X parameters and errors.csv: {params_dir}\n"
        f"SMPL-X motions and sequences.csv: {motions_dir}\nreport: {report}")
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="demo_output", help="folder (default %(default)s)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    summary = run_demo(args.output, args.device)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
