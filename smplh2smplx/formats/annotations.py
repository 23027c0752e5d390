"""Which pose ids to convert, and where each one lies in AMASS.

The PoseScript and PoseFix releases both ship the id mapping
`ids_2_dataset_sequence_and_frame_index_100k.json` (pose id -> AMASS file and frame). The
default selection is the human-annotated poses: PoseFix-H (both poses of every pair in
`posefix_human_6157.json`) and, when the PoseScript folder is given, PoseScript-H (the keys
of `posescript_human_6293.json`), deduplicated. An explicit id list or every id of the
mapping can be asked for instead.
"""
from __future__ import annotations

import json
import re
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import InputError, listed
from .files import open_regular

# The largest release file (PoseScript's automatic captions of 100k poses) is some tens of
# MB; the id mapping and id lists are smaller.
MAX_TEXT_BYTES = 1000 * 1000 * 1000

ID_MAPPING = "ids_2_dataset_sequence_and_frame_index_100k.json"
POSEFIX_HUMAN = "posefix_human_6157.json"
POSEFIX_PAIRS = "pair_id_2_pose_ids.json"
POSESCRIPT_HUMAN = "posescript_human_6293.json"


@dataclass(frozen=True)
class Selection:
    """The pose ids to convert (sorted, distinct) and the id mapping they are looked up in.

    mapping: {pose_id: (AMASS path relative to the SMPL-H root, frame index)}.
    """
    pose_ids: list
    mapping: dict
    mapping_path: Path


def read_json(path: str | Path) -> object:
    """The parsed contents of a JSON file; InputError naming the file if it cannot be."""
    path = Path(path)
    try:
        with open_regular(path, "r", max_bytes=MAX_TEXT_BYTES, encoding="utf-8") as stream:
            return json.load(stream)
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply") from None
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror})") from None


def _pose_id(text, path, what="pose id"):
    """int of a JSON key or value that must be a non-negative integer id."""
    if isinstance(text, str) and text.isdigit():
        return int(text)
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    raise InputError(f"{path}: {reprlib.repr(text)} is not a {what}")


def read_id_mapping(path: str | Path) -> dict:
    """{pose_id: (relative AMASS path, frame)} from the 100k id mapping file."""
    path = Path(path)
    contents = read_json(path)
    if not isinstance(contents, dict):
        raise InputError(f"{path}: expected an object {{pose_id: [dataset, file, frame]}}")
    mapping = {}
    for key, entry in contents.items():
        pose_id = _pose_id(key, path)
        if not (isinstance(entry, list) and len(entry) == 3 and entry[0] == "AMASS"
                and isinstance(entry[1], str) and entry[1] and "\0" not in entry[1]
                and not Path(entry[1]).is_absolute() and ".." not in Path(entry[1]).parts
                and isinstance(entry[2], int) and not isinstance(entry[2], bool)):
            raise InputError(f"{path}: entry of pose {pose_id} is {reprlib.repr(entry)}"
                             ', expected ["AMASS", "<path relative to the AMASS folder, '
                             'without ..>", <frame>]')
        mapping[pose_id] = (entry[1], entry[2])
    return mapping


def find_id_mapping(folders: Iterable[str | Path | None]) -> Path | None:
    """Path of the id mapping in the first of `folders` (None ones skipped) that has it."""
    candidates = [Path(folder) / ID_MAPPING for folder in folders if folder]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if not candidates:
        raise InputError(f"{ID_MAPPING}: no PoseFix or PoseScript folder given to find it in")
    raise InputError(f"{ID_MAPPING}: not found; looked for" + listed(candidates))


def posefix_human_ids(posefix_dir: str | Path) -> set:
    """PoseFix-H: the set of both pose ids of every annotated pair."""
    annotations_path = Path(posefix_dir) / POSEFIX_HUMAN
    pairs_path = Path(posefix_dir) / POSEFIX_PAIRS
    annotations, pairs = read_json(annotations_path), read_json(pairs_path)
    if not isinstance(annotations, dict):
        raise InputError(f"{annotations_path}: expected an object {{pair_id: annotations}}")
    if not isinstance(pairs, list):
        raise InputError(f"{pairs_path}: expected a list of [pose_A_id, pose_B_id]")
    pose_ids = set()
    for key in annotations:
        pair_id = _pose_id(key, annotations_path, "pair id")
        if pair_id >= len(pairs):
            raise InputError(f"{annotations_path}: pair {pair_id} is not in {pairs_path} "
                             f"({len(pairs)} pairs)")
        pair = pairs[pair_id]
        if not isinstance(pair, list) or len(pair) != 2:
            raise InputError(f"{pairs_path}: entry {pair_id} is {reprlib.repr(pair)}, expected "
                             "[pose_A_id, pose_B_id]")
        pose_ids.update(_pose_id(pose_id, pairs_path) for pose_id in pair)
    return pose_ids


def posescript_human_ids(posescript_dir: str | Path) -> set:
    """PoseScript-H: the set of annotated pose ids."""
    path = Path(posescript_dir) / POSESCRIPT_HUMAN
    annotations = read_json(path)
    if not isinstance(annotations, dict):
        raise InputError(f"{path}: expected an object {{pose_id: annotations}}")
    return {_pose_id(key, path) for key in annotations}


def parse_pose_ids(tokens: Iterable[str], origin: str) -> list:
    """Sorted distinct ids from strings like "12,345 678" (at least one); `origin` names
    them in errors."""
    pose_ids = set()
    for token in tokens:
        for word in re.split(r"[\s,]+", token.strip()):
            if not word:
                continue
            if not word.isdigit():
                raise InputError(f"{origin}: {word!r} is not a pose id")
            pose_ids.add(int(word))
    if not pose_ids:
        raise InputError(f"{origin}: no pose id given (an empty selection would convert "
                         "nothing)")
    return sorted(pose_ids)


def read_pose_ids_file(path: str | Path) -> list:
    """Ids listed in a text file (separated by spaces, commas or new lines)."""
    path = Path(path)
    try:
        with open_regular(path, "r", max_bytes=MAX_TEXT_BYTES, encoding="utf-8") as stream:
            text = stream.read()
    except FileNotFoundError:
        raise InputError(f"{path}: id list not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot be read ({error})") from None
    return parse_pose_ids([text], path)


def select_pose_ids(posefix_dir: str | Path, posescript_dir: str | Path | None = None,
                    ids: Iterable[int] | None = None, all_poses: bool = False) -> Selection:
    """The poses to convert.

    Args:
        posefix_dir: PoseFix release folder; needed for the default selection.
        posescript_dir: PoseScript release folder, or None / "" to leave PoseScript-H out.
        ids: explicit pose ids (any iterable of int), instead of the human-annotated sets.
        all_poses: every id of the mapping instead.
    The mapping is read from the PoseFix folder, else the PoseScript one. Ids absent from
    it are kept here: the caller reports them (each one, with --keep-going).
    """
    if ids is not None and all_poses:
        raise InputError("give either an explicit id list or all_poses, not both")
    mapping_path = find_id_mapping([posefix_dir, posescript_dir])
    mapping = read_id_mapping(mapping_path)
    if all_poses:
        pose_ids = set(mapping)
    elif ids is not None:
        pose_ids = set(ids)
    else:
        if not posefix_dir:
            raise InputError("the PoseFix folder is needed to select the PoseFix-H poses")
        pose_ids = posefix_human_ids(posefix_dir)
        if posescript_dir:
            pose_ids |= posescript_human_ids(posescript_dir)
    return Selection(sorted(pose_ids), mapping, mapping_path)
