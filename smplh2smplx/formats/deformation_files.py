"""The official deformation-transfer files: the setup `.pkl` and the target mask `.npy`.

A setup (`smplh2smplx_deftrafo_setup.pkl`, `smpl2smplx_deftrafo_setup.pkl`, ...) is a dict
whose `mtx` is a scipy sparse matrix of shape (target vertices, 2 * source vertices), vertex
part first (some setups carry a dense `matrix` instead); only the vertex part is used. The
mask (`smplx_mask_ids.npy`) lists the target vertices that have a valid correspondence.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse

from ..errors import InputError
from .files import open_regular
from .safe_pickle import load_pickle

# The official file of each direction ("model transfer" data of the smplx repository).
OFFICIAL_TRANSFER_FILES = {
    "smpl2smplh": "smpl2smplh_def_transfer.pkl", "smpl2smplx": "smpl2smplx_deftrafo_setup.pkl",
    "smplh2smpl": "smplh2smpl_def_transfer.pkl", "smplh2smplx": "smplh2smplx_deftrafo_setup.pkl",
    "smplx2smpl": "smplx2smpl_deftrafo_setup.pkl", "smplx2smplh": "smplx2smplh_deftrafo_setup.pkl",
}


def read_deformation_matrix(path: str | Path, num_target: int, num_source: int
                            ) -> scipy.sparse.csr_matrix:
    """The vertex part (first `num_source` columns) of a setup's matrix, float64 CSR.

    Raises InputError naming the file when it is not a dict with `mtx`/`matrix`, the
    matrix has another shape, or holds non-finite entries. Never densifies a sparse matrix.
    """
    path = Path(path)
    setup = load_pickle(path)
    if not isinstance(setup, dict) or not ({"mtx", "matrix"} & setup.keys()):
        raise InputError(f"{path}: expected a dict with the key 'mtx' (sparse matrix) or "
                         "'matrix' (dense), as in the official deformation-transfer setups")
    matrix = setup["mtx"] if "mtx" in setup else setup["matrix"]
    if scipy.sparse.issparse(matrix):
        matrix = scipy.sparse.csr_matrix(matrix)  # any format; CSR slices columns cheaply
    else:
        matrix = np.asarray(matrix)
        if matrix.ndim != 2 or matrix.dtype.kind not in "biuf":
            raise InputError(f"{path}: the deformation-transfer matrix is a {matrix.ndim}-d "
                             f"{matrix.dtype} array, expected a 2-d matrix of numbers")
    rows, columns = matrix.shape
    if rows != num_target or columns not in (num_source, 2 * num_source):
        raise InputError(f"{path}: the deformation-transfer matrix has shape {matrix.shape}, "
                         f"expected ({num_target}, {2 * num_source}): {num_target} target "
                         f"vertices from {num_source} source vertices")
    vertex_part = scipy.sparse.csr_matrix(matrix[:, :num_source], dtype=np.float64)
    vertex_part.sum_duplicates()
    if not np.all(np.isfinite(vertex_part.data)):
        raise InputError(f"{path}: the deformation-transfer matrix has non-finite entries")
    return vertex_part


def read_mask_ids(path: str | Path, num_vertices: int) -> np.ndarray:
    """(M,) int64 vertex ids of a mask file, checked to be unique and below `num_vertices`."""
    path = Path(path)
    try:
        # SMPL-X's mask is some 80 kB; numpy allocates what a header declares.
        with open_regular(path, max_bytes=16 << 20) as handle:
            ids = np.lib.format.read_array(handle, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{path}: mask file not found") from None
    except InputError:
        raise
    except Exception as error:     # numpy's header parser raises several kinds
        raise InputError(f"{path}: not a readable .npy array: {error!r}"[:500]) from None
    if ids.ndim != 1 or ids.size == 0 or ids.dtype.kind not in "iu":
        raise InputError(f"{path}: expected a non-empty 1-d array of integer vertex ids, got "
                         f"{ids.dtype} values of shape {ids.shape}")
    ids = ids.astype(np.int64)
    if ids.min() < 0 or ids.max() >= num_vertices:
        raise InputError(f"{path}: vertex ids range from {ids.min()} to {ids.max()}, the "
                         f"target model has vertices 0 to {num_vertices - 1}")
    if np.unique(ids).size != ids.size:
        raise InputError(f"{path}: vertex ids repeat ({ids.size - np.unique(ids).size} "
                         "duplicates)")
    return ids


# How far a masked row may stray from convex weights (official rows: barycentric
# coordinates, non-negative and summing to 1 up to rounding).
CONVEX_TOLERANCE = 1e-3


def check_convex_rows(matrix: scipy.sparse.csr_matrix, mask_ids: np.ndarray,
                      path: str | Path) -> None:
    """Raise InputError unless every masked row holds convex weights (non-negative, summing
    to 1): an all-zero or otherwise degenerate matrix maps bodies onto a collapsed target,
    which the fit would match with a better score than a real body."""
    rows = matrix[mask_ids]
    sums = np.asarray(rows.sum(axis=1)).ravel()
    bad_sum = np.flatnonzero(np.abs(sums - 1.0) > CONVEX_TOLERANCE)
    if bad_sum.size:
        first = bad_sum[0]
        raise InputError(f"{path}: {bad_sum.size} of the {len(mask_ids)} masked rows of the "
                         f"deformation-transfer matrix do not sum to 1 (row of target vertex "
                         f"{mask_ids[first]} sums to {sums[first]:.4g}); a real setup holds "
                         "barycentric weights")
    if rows.nnz and rows.data.min() < -CONVEX_TOLERANCE:
        raise InputError(f"{path}: the masked rows of the deformation-transfer matrix hold "
                         f"negative weights (down to {rows.data.min():.4g}); a real setup "
                         "holds barycentric weights")
