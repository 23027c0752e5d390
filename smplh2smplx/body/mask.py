"""A mask must describe a body: the fit and its error are over the masked vertices only.

A mask of a few vertices, or one missing a whole body part, gives a fit that matches
nothing there and an error that says nothing about it. Each vertex belongs to the joint
that moves it most (the target model's skinning weights); every one of the 22 body joints
shared by the whole family (root to wrists: head, arms, legs, spine) must keep at least
`MIN_PART_FRACTION` of its vertices in the mask. Hands, face, jaw and eyes are not
required (the official SMPL-X mask leaves parts of them out).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, listed

BODY_JOINTS = 22              # root, 21 body joints: the first joints of every model
MIN_PART_FRACTION = 0.25


def check_mask_describes_body(mask_ids: np.ndarray, weights: np.ndarray,
                              mask_path: str | Path) -> None:
    """InputError naming `mask_path` when the mask leaves out most of a body part.

    Args:
        mask_ids: (M,) vertex ids of the mask.
        weights: (V, J) skinning weights of the target model, joints in its order.
        mask_path: the mask file, for the message.
    """
    part_of_vertex = np.asarray(weights).argmax(axis=1)
    in_mask = np.zeros(len(part_of_vertex), bool)
    in_mask[np.asarray(mask_ids, dtype=np.int64)] = True
    short = []
    for joint in range(BODY_JOINTS):
        vertices = part_of_vertex == joint
        if vertices.any() and in_mask[vertices].mean() < MIN_PART_FRACTION:
            short.append(f"joint {joint} ({in_mask[vertices].sum()} of {vertices.sum()})")
    if short:
        raise InputError(f"{mask_path}: the mask does not describe a body (give the official "
                         f"mask): it keeps less than {MIN_PART_FRACTION:.0%} of the vertices of "
                         "the body part of (the joint that moves a vertex most)" + listed(short))
