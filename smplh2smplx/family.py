"""The SMPL family: vertex and joint counts, joint layouts and the joints models share.

Joint order (docs/FORMATS.md): every model starts with the root and the 21 body joints
(0-21, the same in all three). Then SMPL has one joint per hand (22 left, 23 right); SMPL-H
fifteen per hand (22-36 left, 37-51 right); SMPL-X the jaw and the eyes (22-24), then fifteen
per hand (25-39 left, 40-54 right). A hand is five fingers of three joints (index, middle,
pinky, ring, thumb), each finger's first joint a child of the wrist (20 left, 21 right).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
import torch

NUM_BODY_JOINTS = 22            # root + 21 body joints, shared by the whole family
BODY_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
HAND_JOINTS = 15                # five fingers of three joints
HEAD = 15


ANY = None      # a size a parameter file may choose (SMPL-H's number of betas)


@dataclass(frozen=True, eq=False)
class MotionLayout:
    """What a motion-sequence file of one model holds, as AMASS writes it.

    suffix: of the file name (`<name><suffix>.npz`); rate_key: the frame-rate key;
    num_betas: betas written by default; parts: pose arrays split out of `poses`, name ->
    (first joint, end joint); model_type: whether `num_betas`, `surface_model_type` and
    `mocap_time_length` are written; num_dmpls: zero `dmpls` (soft-tissue) columns written.
    """
    suffix: str
    rate_key: str
    num_betas: int
    parts: dict = field(default_factory=dict)
    model_type: bool = False
    num_dmpls: int = 0

    def keys(self) -> tuple:
        """The keys of a file we write, in order."""
        return (("poses",) + tuple(self.parts) + ("trans", "betas")
                + (("num_betas",) if self.model_type else ()) + ("gender",)
                + (("surface_model_type",) if self.model_type else ()) + (self.rate_key,)
                + (("mocap_time_length",) if self.model_type else ())
                + (("dmpls",) if self.num_dmpls else ()))


@dataclass(frozen=True, eq=False)
class ModelKind:
    """One member of the family: every fact that differs between the models.

    name: "smpl", "smplh" or "smplx"; label: as people write it.
    num_vertices, num_joints, num_faces: of the model files.
    hands: (first left-hand joint, first right-hand joint) of the 15-joint hands, or None
        (one joint per hand, after the body).
    face_joints: joints between the body and the hands, children of the head (SMPL-X: jaw,
        left eye, right eye).
    pose_keys: (key, first joint, shape) of each pose entry of a per-pose parameter file,
        in file order; the file also holds `betas` (1, B) and `transl` (1, 3).
    betas: (exact count or 0, most) betas a parameter file holds.
    model_files: file names looked for in a model folder ({G}: NEUTRAL, MALE, FEMALE; {g}:
        neutral, male, female; {g1}: n, m, f).
    uses_mask: whether conversions to this model fit on the vertex mask (SMPL-X: its
        eyeballs and the inside of its mouth have no counterpart); else every vertex.
    expression_in_shapedirs: whether the model files' shapedirs hold expression components
        after the shape ones.
    layer_options: keywords of `smplx.create` that read this model's parameter files as
        written (flat hands without PCA).
    motion: the layout of this model's motion-sequence files.
    """
    name: str
    label: str
    num_vertices: int
    num_joints: int
    num_faces: int
    pose_keys: tuple
    betas: tuple
    model_files: tuple
    motion: MotionLayout
    hands: tuple = None
    face_joints: int = 0
    uses_mask: bool = False
    expression_in_shapedirs: bool = False
    layer_options: tuple = ()

    @property
    def pose_size(self) -> int:
        """Axis-angle values of a whole pose (root first)."""
        return 3 * self.num_joints

    @property
    def parameter_shapes(self) -> dict:
        """Key -> shape of every tensor of a parameter file, in file order (ANY: free)."""
        shapes = {key: shape for key, _first, shape in self.pose_keys}
        betas = {"betas": (1, self.betas[0] or ANY)}
        ordered = dict(list(shapes.items())[:2], **betas, **dict(list(shapes.items())[2:]))
        return dict(ordered, transl=(1, 3))

    @property
    def joint_slices(self) -> dict:
        """Pose key -> slice of the model's joints it holds."""
        return {key: slice(first, first + math.prod(shape) // 3)
                for key, first, shape in self.pose_keys}

    def smplx_create_options(self) -> dict:
        """`smplx.create` keywords for this model: model_type and `layer_options`."""
        return dict(model_type=self.name, **dict(self.layer_options))


_FLAT_HANDS = (("use_pca", False), ("flat_hand_mean", True))

SMPL = ModelKind(
    "smpl", "SMPL", 6890, 24, 13776,
    pose_keys=(("global_orient", 0, (1, 3)), ("body_pose", 1, (23, 3))),
    betas=(10, 10),
    model_files=("SMPL_{G}.pkl", "SMPL_{G}.npz", "basicmodel_{g1}_lbs_10_207_0_v1.1.0.pkl",
                 "basicmodel_{g1}_lbs_10_207_0_v1.0.0.pkl"),
    motion=MotionLayout("_poses", "mocap_framerate", num_betas=10))
SMPLH = ModelKind(
    "smplh", "SMPL-H", 6890, 52, 13776,
    pose_keys=(("global_orient", 0, (1, 3)), ("body_pose", 1, (21, 3)),
               ("left_hand_pose", 22, (15, 3)), ("right_hand_pose", 37, (15, 3))),
    betas=(0, 16),
    model_files=("{g}/model.npz", "SMPLH_{G}.npz", "SMPLH_{G}.pkl"),
    motion=MotionLayout("_poses", "mocap_framerate", num_betas=16, num_dmpls=8),
    hands=(22, 37), layer_options=_FLAT_HANDS)
SMPLX = ModelKind(
    "smplx", "SMPL-X", 10475, 55, 20908,
    pose_keys=(("global_orient", 0, (1, 3)), ("body_pose", 1, (21, 3)),
               ("left_hand_pose", 25, (15, 3)), ("right_hand_pose", 40, (15, 3)),
               ("jaw_pose", 22, (1, 3)), ("leye_pose", 23, (1, 1, 3)),
               ("reye_pose", 24, (1, 1, 3))),
    betas=(10, 10),
    model_files=("SMPLX_{G}.npz", "SMPLX_{G}.pkl"),
    motion=MotionLayout("_stageii", "mocap_frame_rate", num_betas=16, model_type=True,
                        parts={"root_orient": (0, 1), "pose_body": (1, 22),
                               "pose_jaw": (22, 23), "pose_eye": (23, 25),
                               "pose_hand": (25, 55)}),
    hands=(25, 40), face_joints=3, uses_mask=True, expression_in_shapedirs=True,
    layer_options=_FLAT_HANDS)
KINDS = {kind.name: kind for kind in (SMPL, SMPLH, SMPLX)}

# The model stage 1 poses from AMASS: source_params.npz records its poses.
STAGE1_MODEL = SMPLH

# Other models a wrong file may be, to say what it is: (vertices, joints) -> label.
OTHER_MODELS = {(778, 16): "MANO", (5023, 5): "FLAME"}


def parents(kind: str) -> np.ndarray:
    """(J,) int64 parent of each joint of `kind` ("smpl", "smplh" or "smplx"), root -1."""
    model = KINDS[kind]
    tree = list(BODY_PARENTS)
    if model.hands is None:
        return np.array(tree + [20, 21], dtype=np.int64)       # one joint per hand
    tree += [HEAD] * model.face_joints
    for wrist in (20, 21):
        for _finger in range(5):
            first = len(tree)
            tree += [wrist, first, first + 1]
    return np.array(tree, dtype=np.int64)


def same_topology(source: str, target: str) -> bool:
    """Whether two model kinds share one mesh (SMPL and SMPL-H; a kind and itself): in
    this family the models of one vertex count share their mesh."""
    return KINDS[source].num_vertices == KINDS[target].num_vertices


def describe_counts(num_vertices: int, num_joints: int) -> Optional[str]:
    """The label of the model with these counts ("SMPL-H", ...), or None."""
    for kind in KINDS.values():
        if (kind.num_vertices, kind.num_joints) == (num_vertices, num_joints):
            return kind.label
    return OTHER_MODELS.get((num_vertices, num_joints))


def shared_joints(source: str, target: str) -> Tuple[np.ndarray, np.ndarray]:
    """Joints that mean the same in two models: (source ids, target ids), int64 arrays.

    The body joints always; the 30 hand joints when both models have 15-joint hands.
    """
    source, target = KINDS[source], KINDS[target]
    pairs = [np.arange(NUM_BODY_JOINTS)] * 2
    if source.hands and target.hands:
        pairs = [np.concatenate([ids, np.arange(left, left + 2 * HAND_JOINTS)])
                 for ids, left in zip(pairs, (source.hands[0], target.hands[0]))]
    return pairs[0], pairs[1]


def map_pose(pose, source: str, target: str) -> torch.Tensor:
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
