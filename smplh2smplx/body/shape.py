"""Shape-only conversion: the betas of one model for a body shaped by another's betas.

In the rest pose (identity rotations) linear blend skinning leaves every vertex where the
blend shapes put it, so a model's rest mesh is linear in its betas:
`v = v_template + shapedirs @ betas`. The deformation transfer is linear too, so the
target betas (and a translation, as the two templates need not share an origin) that best
match the transferred source mesh on the mask are one least-squares solve.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ..formats.body_models import BodyModelData
from .deformation import DeformationTransfer


@dataclass
class ShapeResult:
    """betas: (B, S_target) fitted; transl: (B, 3); v2v_mean_mm, v2v_max_mm: (B,) on the mask."""
    betas: np.ndarray
    transl: np.ndarray
    v2v_mean_mm: np.ndarray
    v2v_max_mm: np.ndarray


def rest_vertices(data: BodyModelData, betas: np.ndarray) -> np.ndarray:
    """(B, V, 3) rest-pose vertices of a model for betas (B, S), S <= its shape coefficients."""
    betas = np.atleast_2d(np.asarray(betas, np.float64))
    return data.v_template + np.einsum("vcs,bs->bvc", data.shapedirs[:, :, :betas.shape[1]], betas)


def convert_betas(source_data: BodyModelData, source_betas: np.ndarray,
                  target_data: BodyModelData, transfer: DeformationTransfer,
                  num_betas: int = 10) -> ShapeResult:
    """Target betas whose rest mesh best matches the source's, moved by `transfer`.

    Args:
        source_data, target_data: `BodyModelData` of the two models.
        source_betas: (S,) or (B, S) betas of the source.
        transfer: `DeformationTransfer` from source to target (its mask is used).
        num_betas: target shape coefficients fitted (at most the target's).
    Returns:
        a `ShapeResult`.
    """
    if num_betas > target_data.num_shape_coeffs:
        raise ValueError(f"{target_data.path}: has {target_data.num_shape_coeffs} shape "
                         f"coefficients, {num_betas} requested")
    source_betas = np.atleast_2d(np.asarray(source_betas, np.float64))
    if source_betas.ndim != 2 or source_betas.shape[1] > source_data.num_shape_coeffs:
        raise ValueError(f"{source_data.path}: has {source_data.num_shape_coeffs} shape "
                         f"coefficients, betas of shape {source_betas.shape} given")
    mask = transfer.mask_ids
    targets = transfer.apply(rest_vertices(source_data, source_betas))[:, mask]   # (B, M, 3)
    count = len(mask)
    shapedirs = target_data.shapedirs[mask, :, :num_betas].reshape(3 * count, num_betas)
    # Unknowns [betas | transl]: the translation moves every vertex by the same vector.
    design = np.concatenate([shapedirs, np.tile(np.eye(3), (count, 1))], axis=1)
    residual = (targets - target_data.v_template[mask]).reshape(len(targets), -1).T
    solution = np.linalg.lstsq(design, residual, rcond=None)[0].T                # (B, S + 3)
    fitted = (design @ solution.T).T.reshape(targets.shape) + target_data.v_template[mask]
    errors = np.linalg.norm(fitted - targets, axis=2) * 1000.0
    return ShapeResult(betas=solution[:, :num_betas], transl=solution[:, num_betas:],
                       v2v_mean_mm=errors.mean(1), v2v_max_mm=errors.max(1))
