"""How large the numbers of a body model's inputs may be.

Beyond these limits no human pose, shape or position is described, and the float32 fits
overflow: a pose of 1e30 rad or a body 1e30 m away makes the Gauss-Newton matrices
infinite, and the solver would stop the whole run with a traceback. Every reader of poses,
shapes, translations and meshes, and the Python API, refuses such values with an
InputError naming the input.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError

MAX_ANGLE_RAD = 1000.0      # an axis-angle component: files hold angles within a turn or two
MAX_BETA = 100.0            # a shape coefficient, in standard deviations (bodies: within ~5)
MAX_TRANSLATION_M = 1000.0  # a root translation: capture volumes span a few metres
MAX_COORDINATE_M = 100.0    # a mesh vertex (stage 1 meshes sit at the origin)


def parameter_limit(key: str) -> tuple:
    """(limit, unit) of a parameter of a per-pose file (`transl`, `betas`, a joint's pose)."""
    if key == "transl":
        return MAX_TRANSLATION_M, "m"
    if key == "betas":
        return MAX_BETA, ""
    return MAX_ANGLE_RAD, "rad"


def value_problem(values, limit: float, unit: str = "") -> str | None:
    """What is wrong with the numbers of `values` (a numpy array or torch tensor), or None:
    "holds NaN or infinite values", or "holds 2e+30 rad, beyond the limit of 1000 rad"."""
    count = values.numel() if hasattr(values, "numel") else np.size(values)
    largest = float(abs(values).max()) if count else 0.0     # max() propagates NaN
    if not math.isfinite(largest):
        return "holds NaN or infinite values"
    if largest > limit:
        unit = f" {unit}" if unit else ""
        return f"holds {largest:.3g}{unit}, beyond the limit of {limit:g}{unit}"
    return None


def rows_beyond(values: np.ndarray, limit: float, block_rows: int = 65536) -> np.ndarray:
    """Indices of the rows (first axis) of `values` that hold NaN, infinity or a number
    beyond +-limit. Measured `block_rows` at a time: a motion of millions of frames is
    checked without a copy of it."""
    values = np.asarray(values)
    rows = [np.zeros(0, dtype=np.int64)]
    for start in range(0, len(values), block_rows):
        block = np.abs(values[start:start + block_rows])
        within = (block.reshape(len(block), -1) <= limit).all(1)    # NaN compares False
        rows.append(start + np.flatnonzero(~within))
    return np.concatenate(rows)


def check_coordinates(path, vertices: np.ndarray) -> None:
    """InputError naming the mesh file when a vertex coordinate is NaN, infinite or beyond
    MAX_COORDINATE_M metres."""
    if not np.isfinite(vertices).all():
        raise InputError(f"{path}: holds NaN or infinite vertex coordinates")
    largest = float(np.abs(vertices).max())
    if largest > MAX_COORDINATE_M:
        raise InputError(f"{path}: a vertex coordinate is {largest:.3g} m, far outside any "
                         f"human body (the limit is {MAX_COORDINATE_M:g} m)")
