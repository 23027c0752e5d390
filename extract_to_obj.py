"""Stage 1: write the SMPL-H mesh of every selected PoseScript/PoseFix pose.

    python extract_to_obj.py                      # PoseFix-H + PoseScript-H, config.py paths
    python extract_to_obj.py --posescript-dir ""  # PoseFix-H only
    python extract_to_obj.py --ids 12,345 --format params

Writes <pose_id:06d>.obj and source_params.npz (the SMPL-H poses) into the output folder;
poses already written are skipped, so an interrupted run is resumed by running the same
command again. Every path defaults to its config.py entry; a flag wins over it. Exit status:
0 all written, 1 some poses failed (--keep-going; listed at the end), 2 bad input (nothing
written), 3 an output cannot be written (read-only or full disk, a path that is a file; the
path is named).
"""
import argparse
import sys

from smplh2smplx.cli import run_command
from smplh2smplx.errors import InputError
from smplh2smplx.formats.annotations import parse_pose_ids, read_pose_ids_file
from smplh2smplx.settings import (BODY_MODELS, OUTPUT_FORMATS, UNSET, USER_CONFIG,
                                  ExtractOptions, read_user_config)
from smplh2smplx.stages.extract import run_extract

# (ExtractOptions field, config.py entry, flag)
PATHS = [("amass_dir", "AMASS_DIR", "--amass-dir"),
         ("posefix_dir", "POSEFIX_DIR", "--posefix-dir"),
         ("posescript_dir", "POSESCRIPT_DIR", "--posescript-dir"),
         ("smplh_model", "SMPLH_MODEL", "--smplh-model"),
         ("output_dir", "MESH_DIR", "--output-dir")]
HINTS = {"POSESCRIPT_DIR": '; "" leaves PoseScript-H out'}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for attribute, entry, flag in PATHS:
        parser.add_argument(flag, dest=attribute, metavar="PATH",
                            help=f"(config.py: {entry})")
    selection = parser.add_mutually_exclusive_group()
    selection.add_argument("--ids", nargs="+", metavar="ID",
                           help="convert these pose ids (separated by spaces or commas) "
                                "instead of PoseFix-H + PoseScript-H")
    selection.add_argument("--ids-file", metavar="PATH",
                           help="convert the pose ids listed in this text file")
    selection.add_argument("--all-poses", action="store_true",
                           help="convert every pose of the 100k id mapping")
    parser.add_argument("--format", choices=OUTPUT_FORMATS, default="obj",
                        help="obj: meshes and source_params.npz; params: source_params.npz "
                             "only (default: %(default)s)")
    parser.add_argument("--body-model", choices=BODY_MODELS, default="amass",
                        help="amass: AMASS-codebase semantics (any SMPL-H file); smplx: the "
                             "smplx package on a SMPLH_NEUTRAL.pkl/.npz (default: %(default)s)")
    parser.add_argument("--poses-per-batch", type=int, default=128, metavar="N",
                        help="poses posed at once (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write again poses already written")
    parser.add_argument("--keep-going", action="store_true",
                        help="skip bad pose ids (listed at the end) instead of stopping")
    return parser.parse_args(argv)


def resolve_paths(args, user_config):
    """{field: path} from the flags, else config.py; InputError listing the unset ones.

    POSESCRIPT_DIR "" leaves PoseScript-H out. With an explicit id list or --all-poses only
    one of the PoseFix and PoseScript folders is needed (for the id mapping).
    """
    paths = {attribute: getattr(args, attribute) if getattr(args, attribute) is not None
             else user_config.get(entry, UNSET) for attribute, entry, _flag in PATHS}
    unset = {attribute for attribute, value in paths.items() if value == UNSET}
    explicit = args.ids is not None or args.ids_file is not None or args.all_poses
    folders = {"posefix_dir", "posescript_dir"}
    if explicit and not folders <= unset:       # one folder is enough for the id mapping
        for attribute in unset & folders:
            paths[attribute] = None
        unset -= folders
    if unset:
        lines = [f"  {entry} (or {flag}{HINTS.get(entry, '')})"
                 for attribute, entry, flag in PATHS if attribute in unset]
        raise InputError("these paths are not set yet:\n" + "\n".join(lines)
                         + f"\nwrite them in {USER_CONFIG}, or give the flags")
    return paths


def options_from_args(args, user_config):
    ids = None
    if args.ids is not None:
        ids = parse_pose_ids(args.ids, "--ids")
    elif args.ids_file is not None:
        ids = read_pose_ids_file(args.ids_file)
    return ExtractOptions(**resolve_paths(args, user_config), ids=ids,
                          all_poses=args.all_poses, output_format=args.format,
                          body_model=args.body_model, poses_per_batch=args.poses_per_batch,
                          overwrite=args.overwrite, keep_going=args.keep_going)


def main(argv=None, user_config=None):
    """Run stage 1; `user_config` replaces config.py's entries (None: read config.py)."""
    args = parse_args(argv)
    return run_command(lambda: run_extract(options_from_args(
        args, read_user_config() if user_config is None else user_config)))


if __name__ == "__main__":
    sys.exit(main())
