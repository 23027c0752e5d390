"""The SMPL-H -> SMPL-X deformation transfer: a sparse linear map between the two meshes.

`smplh2smplx_deftrafo_setup.pkl` holds a sparse matrix of shape (10475, 2 * 6890); its
first 6890 columns map SMPL-H vertices to SMPL-X vertices, `target = M @ source`.
`smplx_mask_ids.npy` lists the SMPL-X vertices with a valid correspondence; the fitting
loss and the error metric use only those. The matrix stays sparse throughout (dense, it
would take about 290 MB).
"""
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from .body_models import SMPLH_NUM_VERTICES, SMPLX_NUM_VERTICES
from .errors import InputError
from .files import open_regular
from .safe_pickle import load_pickle


@dataclass(frozen=True, eq=False)
class DeformationTransfer:
    """The vertex part of the deformation-transfer matrix, and the valid-vertex mask.

    Built by `load_deformation_transfer`, which checks the sizes below; `apply` itself
    works for any (target, source) matrix, so it can be tested on small ones.

    Attributes:
        matrix: scipy CSR (10475, 6890) float64, SMPL-X vertices from SMPL-H vertices.
        mask_ids: (M,) int64 unique SMPL-X vertex ids with a valid correspondence, in
            the order of the file.
        deftrafo_path, mask_path: the files they were read from.
    """

    matrix: scipy.sparse.csr_matrix
    mask_ids: np.ndarray
    deftrafo_path: Path | None = None
    mask_path: Path | None = None
    _torch_matrices: dict = field(default_factory=dict, init=False, repr=False)

    def torch_matrix(self, device="cpu", dtype=torch.float32):
        """The matrix as a torch sparse CSR tensor, built once per (device, dtype)."""
        key = (torch.device(device), dtype)
        if key not in self._torch_matrices:
            csr = self.matrix
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                tensor = torch.sparse_csr_tensor(
                    torch.from_numpy(csr.indptr.astype(np.int64)),
                    torch.from_numpy(csr.indices.astype(np.int64)),
                    torch.from_numpy(csr.data).to(dtype),
                    size=csr.shape, check_invariants=True)
            self._torch_matrices[key] = tensor.to(key[0])
        return self._torch_matrices[key]

    def apply(self, smplh_vertices):
        """SMPL-X-topology vertices deformed like the given SMPL-H vertices.

        One sparse product for the whole batch: the input is laid out as (6890, B * 3).

        Args:
            smplh_vertices: (B, 6890, 3) or (6890, 3), numpy array or torch tensor (any
                device, floating type).
        Returns:
            (B, 10475, 3) or (10475, 3), of the same kind, device and floating dtype
            (integer numpy input gives float64).
        """
        num_target, num_source = self.matrix.shape
        shape = tuple(smplh_vertices.shape)
        if shape[-2:] != (num_source, 3) or len(shape) not in (2, 3):
            raise ValueError(f"expected SMPL-H vertices of shape (B, {num_source}, 3) or "
                             f"({num_source}, 3), got {shape}")
        batch = shape[:-2]
        count = batch[0] if batch else 1
        if isinstance(smplh_vertices, torch.Tensor):
            matrix = self.torch_matrix(smplh_vertices.device, smplh_vertices.dtype)
            source = smplh_vertices.reshape(count, num_source, 3).transpose(0, 1)
            target = matrix @ source.reshape(num_source, count * 3)
            target = target.reshape(num_target, count, 3).transpose(0, 1)
            return target.reshape(*batch, num_target, 3).contiguous()
        vertices = np.asarray(smplh_vertices)
        dtype = vertices.dtype if vertices.dtype.kind == "f" else np.float64
        source = vertices.reshape(count, num_source, 3).transpose(1, 0, 2)
        target = self.matrix @ source.reshape(num_source, count * 3)
        target = target.reshape(num_target, count, 3).transpose(1, 0, 2)
        return np.ascontiguousarray(target.reshape(*batch, num_target, 3), dtype=dtype)


def load_deformation_transfer(deftrafo_path, mask_path):
    """Read the deformation-transfer matrix and the SMPL-X vertex mask.

    Args:
        deftrafo_path: `smplh2smplx_deftrafo_setup.pkl`, a dict whose `mtx` is a scipy
            sparse (10475, 2 * 6890) matrix (or whose `matrix` is a dense one).
        mask_path: `smplx_mask_ids.npy`, unique SMPL-X vertex ids.
    Raises:
        InputError naming the file when it is missing, unreadable or malformed.
    """
    deftrafo_path, mask_path = Path(deftrafo_path), Path(mask_path)
    matrix, mask_ids = _load_matrix(deftrafo_path), _load_mask_ids(mask_path)
    _check_convex_rows(matrix, mask_ids, deftrafo_path)
    return DeformationTransfer(matrix=matrix, mask_ids=mask_ids,
                               deftrafo_path=deftrafo_path, mask_path=mask_path)


# How far a masked row may stray from convex weights (official rows: barycentric
# coordinates, non-negative and summing to 1 up to rounding).
CONVEX_TOLERANCE = 1e-3


def _check_convex_rows(matrix, mask_ids, path):
    """Raise InputError unless every masked row holds convex weights (non-negative, summing
    to 1): an all-zero or otherwise degenerate matrix maps bodies onto a collapsed target,
    which the fit would match with a better score than a real body."""
    rows = matrix[mask_ids]
    sums = np.asarray(rows.sum(axis=1)).ravel()
    bad_sum = np.flatnonzero(np.abs(sums - 1.0) > CONVEX_TOLERANCE)
    if bad_sum.size:
        first = bad_sum[0]
        raise InputError(f"{path}: {bad_sum.size} of the {len(mask_ids)} masked rows of the "
                         f"deformation-transfer matrix do not sum to 1 (row of SMPL-X vertex "
                         f"{mask_ids[first]} sums to {sums[first]:.4g}); a real setup holds "
                         "barycentric weights")
    if rows.nnz and rows.data.min() < -CONVEX_TOLERANCE:
        raise InputError(f"{path}: the masked rows of the deformation-transfer matrix hold "
                         f"negative weights (down to {rows.data.min():.4g}); a real setup "
                         "holds barycentric weights")


def _load_matrix(path):
    """The first 6890 columns of the setup's matrix, as float64 CSR (never densified)."""
    setup = load_pickle(path)
    if not isinstance(setup, dict) or not ({"mtx", "matrix"} & setup.keys()):
        raise InputError(f"{path}: expected a dict with the key 'mtx' (sparse matrix) or "
                         "'matrix' (dense), as in smplh2smplx_deftrafo_setup.pkl")
    matrix = setup["mtx"] if "mtx" in setup else setup["matrix"]
    if scipy.sparse.issparse(matrix):
        matrix = scipy.sparse.csr_matrix(matrix)  # any format; CSR slices columns cheaply
    else:
        matrix = np.asarray(matrix)
        if matrix.ndim != 2 or matrix.dtype.kind not in "biuf":
            raise InputError(f"{path}: the deformation-transfer matrix is a {matrix.ndim}-d "
                             f"{matrix.dtype} array, expected a 2-d matrix of numbers")
    rows, columns = matrix.shape
    if rows != SMPLX_NUM_VERTICES or columns not in (SMPLH_NUM_VERTICES, 2 * SMPLH_NUM_VERTICES):
        raise InputError(f"{path}: the deformation-transfer matrix has shape {matrix.shape}, "
                         f"expected ({SMPLX_NUM_VERTICES}, {2 * SMPLH_NUM_VERTICES}): "
                         "SMPL-X vertices from SMPL-H vertices")
    vertex_part = scipy.sparse.csr_matrix(matrix[:, :SMPLH_NUM_VERTICES], dtype=np.float64)
    vertex_part.sum_duplicates()
    if not np.all(np.isfinite(vertex_part.data)):
        raise InputError(f"{path}: the deformation-transfer matrix has non-finite entries")
    return vertex_part


def _load_mask_ids(path):
    """The SMPL-X vertex ids of the mask, checked to be unique and in range."""
    try:
        with open_regular(path) as handle:
            ids = np.lib.format.read_array(handle, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{path}: mask file not found") from None
    except InputError:
        raise
    except Exception as error:     # numpy's header parser raises several kinds
        raise InputError(f"{path}: not a readable .npy array: {error!r}"[:500]) from None
    if ids.ndim != 1 or ids.size == 0 or ids.dtype.kind not in "iu":
        raise InputError(f"{path}: expected a non-empty 1-d array of integer SMPL-X vertex "
                         f"ids, got {ids.dtype} values of shape {ids.shape}")
    ids = ids.astype(np.int64)
    if ids.min() < 0 or ids.max() >= SMPLX_NUM_VERTICES:
        raise InputError(f"{path}: vertex ids range from {ids.min()} to {ids.max()}, "
                         f"SMPL-X has vertices 0 to {SMPLX_NUM_VERTICES - 1}")
    if np.unique(ids).size != ids.size:
        raise InputError(f"{path}: vertex ids repeat ({ids.size - np.unique(ids).size} "
                         "duplicates)")
    return ids
