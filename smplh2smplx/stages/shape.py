"""Shape-only conversion: the betas of one model as betas of another (smplx issue 190).

Loads the two models and their deformation transfer and solves `body.shape.convert_betas`.
"""
from __future__ import annotations

import numpy as np

from ..body.deformation import load_pair_transfer
from ..body.shape import ShapeResult, convert_betas
from ..errors import InputError
from ..formats.body_models import load_body_model
from ..formats.limits import MAX_BETA
from ..settings import TransferOptions


def check_source_betas(source_betas: np.ndarray) -> None:
    """InputError when a source beta is not finite or beyond +-MAX_BETA."""
    values = np.asarray(source_betas, dtype=np.float64).reshape(-1)
    bad = [float(value) for value in values if not abs(value) <= MAX_BETA]
    if bad:
        raise InputError(f"--betas: {bad[0]:g} is beyond +-{MAX_BETA:g} (betas are "
                         "standard deviations of body shape; real bodies lie within a few)")


def convert_shape(options: TransferOptions, source_betas: np.ndarray) -> ShapeResult:
    """Target betas for source betas, in the rest pose.

    Args:
        options: the `TransferOptions` of the pair (the two models, their deformation
            transfer and mask, the gender, fit.num_betas).
        source_betas: (S,) or (B, S) betas of the source model.
    Returns:
        a `body.shape.ShapeResult` (betas (B, num_betas), transl (B, 3), errors in mm).
    """
    check_source_betas(source_betas)
    source = load_body_model(options.model_path(options.source_model), options.source_model,
                             options.gender)
    target = load_body_model(options.model_path(options.target_model), options.target_model,
                             options.gender)
    transfer = load_pair_transfer(options.source_model, options.target_model,
                                  options.deformation_transfer, options.mask)
    try:
        return convert_betas(source, source_betas, target, transfer, options.fit.num_betas)
    except ValueError as error:
        raise InputError(str(error)) from None
