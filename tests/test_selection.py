"""Pose selection: PoseFix-H, PoseScript-H, explicit lists, the id mapping, bad files."""
import json
import shutil

import pytest

from smplh2smplx.errors import InputError
from smplh2smplx.formats.annotations import (ID_MAPPING, POSEFIX_HUMAN, POSEFIX_PAIRS,
                                             parse_pose_ids, read_id_mapping, read_pose_ids_file,
                                             select_pose_ids)


def load(path):
    with open(path) as stream:
        return json.load(stream)


@pytest.fixture
def posefix_copy(kit, tmp_path):
    """A writable copy of the kit's PoseFix folder."""
    return shutil.copytree(kit.posefix_ids.parent, tmp_path / "posefix")


def test_human_selection_is_the_union_of_posefix_h_and_posescript_h(kit):
    pairs = load(kit.posefix_pairs)
    posefix = {pose_id for pair in load(kit.posefix_human) for pose_id in pairs[int(pair)]}
    posescript = {int(pose_id) for pose_id in load(kit.posescript_human)}
    assert posefix - posescript and posescript - posefix      # the union is not trivial

    both = select_pose_ids(kit.posefix_ids.parent, kit.posescript_ids.parent)
    assert both.pose_ids == sorted(posefix | posescript)
    assert both.mapping_path == kit.posefix_ids
    for unset in (None, ""):
        assert select_pose_ids(kit.posefix_ids.parent, unset).pose_ids == sorted(posefix)


def test_explicit_and_all_pose_selections(kit):
    mapping = load(kit.posescript_ids)
    selection = select_pose_ids(kit.posefix_ids.parent, None, all_poses=True)
    assert selection.pose_ids == sorted(int(pose_id) for pose_id in mapping)
    assert selection.mapping == {int(pose_id): (relative, frame)
                                 for pose_id, (_, relative, frame) in mapping.items()}
    # explicit ids are kept even when absent from the mapping: the caller reports them
    explicit = select_pose_ids(None, kit.posescript_ids.parent, ids=[7, 3, 7, 100_001])
    assert explicit.pose_ids == [3, 7, 100_001]
    assert explicit.mapping_path == kit.posescript_ids


def test_id_lists_are_parsed_from_text_and_files(tmp_path):
    assert parse_pose_ids(["12,5", " 7  12\n"], "--ids") == [5, 7, 12]
    with pytest.raises(InputError, match="--ids: '1x' is not a pose id"):
        parse_pose_ids(["3, 1x"], "--ids")
    listing = tmp_path / "ids.txt"
    listing.write_text("40\n2, 9\n")
    assert read_pose_ids_file(listing) == [2, 9, 40]
    with pytest.raises(InputError, match="absent.txt: id list not found"):
        read_pose_ids_file(tmp_path / "absent.txt")


@pytest.mark.parametrize("name, contents, message", [
    (ID_MAPPING, "{not json", "not valid JSON"),
    (ID_MAPPING, '{"12": ["AMASS", "CMU/01/01_01_poses.npz"]}', "entry of pose 12"),
    (ID_MAPPING, '{"x": ["AMASS", "a.npz", 0]}', "'x' is not a pose id"),
    (ID_MAPPING, '{"12": ["AMASS", "/abs/a.npz", 0]}', "entry of pose 12"),
    (POSEFIX_HUMAN, '{"999999": ["an instruction"]}', "pair 999999 is not in"),
    (POSEFIX_PAIRS, '{"0": [1, 2]}', "expected a list"),
])
def test_malformed_annotation_files_name_the_file(kit, posefix_copy, name, contents, message):
    (posefix_copy / name).write_text(contents)
    with pytest.raises(InputError, match=message) as error:
        select_pose_ids(posefix_copy, kit.posescript_ids.parent)
    assert str(posefix_copy / name) in str(error.value)


def test_missing_files_are_named(kit, posefix_copy, tmp_path):
    (posefix_copy / POSEFIX_PAIRS).unlink()
    with pytest.raises(InputError, match=f"{POSEFIX_PAIRS}: not found"):
        select_pose_ids(posefix_copy, None)
    with pytest.raises(InputError, match=f"{ID_MAPPING}: not found; looked for"):
        select_pose_ids(tmp_path / "nowhere", None)
    with pytest.raises(InputError, match="not both"):
        select_pose_ids(kit.posefix_ids.parent, None, ids=[1], all_poses=True)
    assert read_id_mapping(kit.posefix_ids) == read_id_mapping(kit.posescript_ids)
