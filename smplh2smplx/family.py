"""The SMPL family: vertex and joint counts, joint layouts and the joints models share.

Joint order (docs/FORMATS.md): every model starts with the root and the 21 body joints
(0-21, the same in all three). Then SMPL has one joint per hand (22 left, 23 right); SMPL-H
fifteen per hand (22-36 left, 37-51 right); SMPL-X the jaw and the eyes (22-24), then fifteen
per hand (25-39 left, 40-54 right). A hand is five fingers of three joints (index, middle,
pinky, ring, thumb), each finger's first joint a child of the wrist (20 left, 21 right).
"""
from dataclasses import dataclass

import numpy as np
import torch

NUM_BODY_JOINTS = 22            # root + 21 body joints, shared by the whole family
BODY_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
HAND_JOINTS = 15                # five fingers of three joints
HEAD = 15


@dataclass(frozen=True)
class ModelKind:
    """One member of the family.

    name: "smpl", "smplh" or "smplx"; label: as people write it.
    num_vertices, num_joints, num_faces: of the model files.
    hands: (first left-hand joint, first right-hand joint) of the 15-joint hands, or None.
    """
    name: str
    label: str
    num_vertices: int
    num_joints: int
    num_faces: int
    hands: tuple = None

    @property
    def pose_size(self):
        """Axis-angle values of a whole pose (root first)."""
        return 3 * self.num_joints


SMPL = ModelKind("smpl", "SMPL", 6890, 24, 13776)
SMPLH = ModelKind("smplh", "SMPL-H", 6890, 52, 13776, hands=(22, 37))
SMPLX = ModelKind("smplx", "SMPL-X", 10475, 55, 20908, hands=(25, 40))
KINDS = {kind.name: kind for kind in (SMPL, SMPLH, SMPLX)}

# Other models a wrong file may be, to say what it is: (vertices, joints) -> label.
OTHER_MODELS = {(778, 16): "MANO", (5023, 5): "FLAME"}


def parents(kind):
    """(J,) int64 parent of each joint of `kind` ("smpl", "smplh" or "smplx"), root -1."""
    tree = list(BODY_PARENTS)
    if kind == "smpl":
        return np.array(tree + [20, 21], dtype=np.int64)
    if kind == "smplx":
        tree += [HEAD, HEAD, HEAD]                       # jaw, left eye, right eye
    for wrist in (20, 21):
        for _finger in range(5):
            first = len(tree)
            tree += [wrist, first, first + 1]
    return np.array(tree, dtype=np.int64)


def same_topology(source, target):
    """Whether two model kinds share one mesh (SMPL and SMPL-H; a kind and itself)."""
    return source == target or {source, target} == {"smpl", "smplh"}


def describe_counts(num_vertices, num_joints):
    """The label of the model with these counts ("SMPL-H", ...), or None."""
    for kind in KINDS.values():
        if (kind.num_vertices, kind.num_joints) == (num_vertices, num_joints):
            return kind.label
    return OTHER_MODELS.get((num_vertices, num_joints))


def shared_joints(source, target):
    """Joints that mean the same in two models: (source ids, target ids), int64 arrays.

    The body joints always; the 30 hand joints when both models have 15-joint hands.
    """
    source, target = KINDS[source], KINDS[target]
    pairs = [np.arange(NUM_BODY_JOINTS)] * 2
    if source.hands and target.hands:
        pairs = [np.concatenate([ids, np.arange(left, left + 2 * HAND_JOINTS)])
                 for ids, left in zip(pairs, (source.hands[0], target.hands[0]))]
    return pairs[0], pairs[1]


def map_pose(pose, source, target):
    """Axis-angle poses of `source` joints as poses of `target` joints (others zero).

    Args:
        pose: (B, 3 * J_source) or (B, J_source, 3) array or tensor.
    Returns:
        (B, J_target, 3) float tensor.
    """
    pose = torch.as_tensor(pose)
    pose = pose.reshape(len(pose), KINDS[source].num_joints, 3)
    mapped = pose.new_zeros(len(pose), KINDS[target].num_joints, 3)
    source_ids, target_ids = shared_joints(source, target)
    mapped[:, target_ids] = pose[:, source_ids]
    return mapped
