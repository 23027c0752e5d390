"""No behaviour branches on a model name outside the model table (family.py).

Every fact that differs between SMPL, SMPL-H and SMPL-X is data in `family.KINDS`; the rest
of the product asks the table. The source is read with `ast`: a comparison with a model
name ("smpl", "smplh", "smplx"), a dict keyed by model names or a literal joint count or
pose size of a model outside family.py fails. Model names stay allowed as defaults,
arguments and in messages.
"""
import ast
from pathlib import Path

import pytest

from smplh2smplx.family import KINDS

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "smplh2smplx" / "family.py"
MODEL_NAMES = set(KINDS)
MODEL_SIZES = {size for kind in KINDS.values() for size in (kind.num_joints, kind.pose_size)
               if size > 24}        # 24 (SMPL's joints) is too common a number to police


def product_files():
    files = sorted((ROOT / "smplh2smplx").rglob("*.py")) + sorted((ROOT / "patches").rglob("*.py"))
    return [path for path in files if path != TABLE and "__pycache__" not in path.parts]


def names_in(node):
    """Model names among a constant or a tuple/list/set of constants."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return {item.value for item in items
            if isinstance(item, ast.Constant) and item.value in MODEL_NAMES}


def model_branches(source):
    """(line, what) of each comparison with a model name, dict keyed by model names and
    literal model size in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            if any(names_in(operand) for operand in [node.left, *node.comparators]):
                found.append((node.lineno, "compares with a model name"))
        elif isinstance(node, ast.Dict):
            if any(key is not None and names_in(key) for key in node.keys):
                found.append((node.lineno, "a table keyed by model names"))
        elif (isinstance(node, ast.Constant) and type(node.value) is int
              and node.value in MODEL_SIZES):
            found.append((node.lineno, f"the literal model size {node.value}"))
    return found


@pytest.mark.parametrize("path", product_files(), ids=lambda path: path.name)
def test_no_model_name_branches_outside_the_table(path):
    assert model_branches(path.read_text()) == []


def test_the_scan_catches_each_kind_of_branch():
    source = ('if kind == "smplx":\n    pass\n'
              'ok = target in ("smpl", "smplh")\n'
              'NAMES = {"smplh": 1}\n'
              'pose = pose.view(-1, 52, 3)\n'
              'load(path, kind="smplx")\n'
              'message = f"{kind} is not smplx"\n')
    assert model_branches(source) == [
        (1, "compares with a model name"), (3, "compares with a model name"),
        (4, "a table keyed by model names"), (5, "the literal model size 52")]


@pytest.mark.parametrize("kind", KINDS.values(), ids=lambda kind: kind.name)
def test_motion_parts_cut_the_pose_where_the_joint_layout_says(kind):
    """The split-out parts of a motion file follow one another over every joint, and
    the jaw, eyes and hands start where the per-pose keys put them."""
    parts = list(kind.motion.parts.values())
    if not parts:
        return
    assert parts[0][0] == 0 and parts[-1][1] == kind.num_joints
    assert all(end == next_first for (_, end), (next_first, _) in zip(parts, parts[1:]))
    slices = kind.joint_slices
    assert kind.motion.parts["pose_jaw"][0] == slices["jaw_pose"].start
    assert kind.motion.parts["pose_eye"] == (slices["leye_pose"].start,
                                             slices["reye_pose"].stop)
    assert kind.motion.parts["pose_hand"] == (kind.hands[0], slices["right_hand_pose"].stop)
