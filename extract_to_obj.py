"""Stage 1: write the SMPL-H mesh of every selected PoseScript/PoseFix pose.

    python extract_to_obj.py                      # PoseFix-H + PoseScript-H, config.py paths
    python extract_to_obj.py --posescript-dir ""  # PoseFix-H only
    python extract_to_obj.py --ids 12,345 --output-format params

Writes <pose_id:06d>.obj and source_params.npz (the SMPL-H poses) into the output folder;
poses already written are skipped, so an interrupted run is resumed by running the same
command again. Every path defaults to its config.py entry and every other setting to
settings.py; --exp-cfg, --exp-opts and the flags override them, in that order. Exit status:
0 all written, 1 some poses failed (--keep-going; listed at the end), 2 bad input (nothing
written), 3 an output cannot be written (read-only or full disk, a path that is a file; the
path is named).
"""
import argparse
import sys

from smplh2smplx.cli import (add_config_flags, add_setting_flags, load_command_settings,
                             run_command, settings_yaml)
from smplh2smplx.formats.annotations import parse_pose_ids, read_pose_ids_file
from smplh2smplx.settings import OUTPUT_FORMATS, ExtractOptions
from smplh2smplx.stages.extract import run_extract

PATH_FLAGS = ("amass_dir", "posefix_dir", "posescript_dir", "smplh_model", "output_dir")
FLAGS = PATH_FLAGS + ("overwrite", "keep_going", "output_format", "body_model",
                      "poses_per_batch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_config_flags(parser)
    add_setting_flags(parser, ExtractOptions, FLAGS)
    selection = parser.add_mutually_exclusive_group()
    selection.add_argument("--ids", nargs="+", metavar="ID",
                           help="convert these pose ids (separated by spaces or commas) "
                                "instead of PoseFix-H + PoseScript-H")
    selection.add_argument("--ids-file", metavar="PATH",
                           help="convert the pose ids listed in this text file")
    selection.add_argument("--all-poses", dest="all_poses", action="store_const",
                           const="true", help="convert every pose of the 100k id mapping")
    # The spelling before --output-format, kept working.
    parser.add_argument("--format", dest="output_format", choices=OUTPUT_FORMATS,
                        help=argparse.SUPPRESS)
    return parser


def parse_args(argv):
    return build_parser().parse_args(argv)


def options_from_args(args, user_config=None) -> ExtractOptions:
    """The stage-1 options of the command line (ids from --ids or --ids-file)."""
    options = load_command_settings(ExtractOptions, args, FLAGS + ("all_poses",), user_config)
    if args.ids is not None:
        options.ids = parse_pose_ids(args.ids, "--ids")
    elif args.ids_file is not None:
        options.ids = read_pose_ids_file(args.ids_file)
    return options


def main(argv=None, user_config=None):
    """Run stage 1; `user_config` replaces config.py's entries (None: read config.py)."""
    args = parse_args(argv)

    def work():
        options = options_from_args(args, user_config)
        if args.show_settings:
            print(settings_yaml(options), end="")
            return 0
        return run_extract(options)

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
