"""A deformation transfer: the sparse linear map from one model's mesh to another's.

`target_vertices = M @ source_vertices`, M of shape (target vertices, source vertices),
with the mask of target vertices that have a valid correspondence: the fitting loss and
the error metric use only those. The matrix stays sparse throughout (the SMPL-H to SMPL-X
one would take about 290 MB dense).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from ..errors import InputError
from ..family import KINDS, same_topology
from ..formats.deformation_files import (OFFICIAL_TRANSFER_FILES, check_convex_rows,
                                         read_deformation_matrix, read_mask_ids)


@dataclass(frozen=True, eq=False)
class DeformationTransfer:
    """The vertex part of the deformation-transfer matrix, and the valid-vertex mask.

    Built by `load_deformation_transfer`, which checks the sizes below; `apply` itself
    works for any (target, source) matrix, so it can be tested on small ones.

    Attributes:
        matrix: scipy CSR (target vertices, source vertices) float64.
        mask_ids: (M,) int64 unique target vertex ids with a valid correspondence, in
            the order of the file.
        deftrafo_path, mask_path: the files they were read from.
    """

    matrix: scipy.sparse.csr_matrix
    mask_ids: np.ndarray
    deftrafo_path: Path | None = None
    mask_path: Path | None = None
    _torch_matrices: dict = field(default_factory=dict, init=False, repr=False)

    def torch_matrix(self, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32, masked: bool = False) -> torch.Tensor:
        """The matrix (with `masked`, its rows of the mask alone) as a torch sparse CSR
        tensor, built once per (device, dtype, masked)."""
        key = (torch.device(device), dtype, masked)
        if key not in self._torch_matrices:
            csr = self.matrix[self.mask_ids] if masked else self.matrix
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                tensor = torch.sparse_csr_tensor(
                    torch.from_numpy(csr.indptr.astype(np.int64)),
                    torch.from_numpy(csr.indices.astype(np.int64)),
                    torch.from_numpy(csr.data).to(dtype),
                    size=csr.shape, check_invariants=True)
            self._torch_matrices[key] = tensor.to(key[0])
        return self._torch_matrices[key]

    def apply_masked(self, source_vertices: torch.Tensor) -> torch.Tensor:
        """The masked target vertices (M, 3, B), in mask order, of vertex-major source
        vertices (Vs, 3, B) (`BodyModel.vertex_major`): one sparse product in that layout."""
        num_source, _, batch = source_vertices.shape
        matrix = self.torch_matrix(source_vertices.device, source_vertices.dtype, masked=True)
        return (matrix @ source_vertices.reshape(num_source, 3 * batch)).view(
            len(self.mask_ids), 3, batch)

    def apply(self, source_vertices: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Target-topology vertices deformed like the given source vertices.

        One sparse product for the whole batch: the input is laid out as (6890, B * 3).

        Args:
            source_vertices: (B, Vs, 3) or (Vs, 3) source vertices, numpy array or torch
                tensor (any device, floating type).
        Returns:
            (B, Vt, 3) or (Vt, 3), of the same kind, device and floating dtype
            (integer numpy input gives float64).
        """
        num_target, num_source = self.matrix.shape
        shape = tuple(source_vertices.shape)
        if shape[-2:] != (num_source, 3) or len(shape) not in (2, 3):
            raise ValueError(f"expected source vertices of shape (B, {num_source}, 3) or "
                             f"({num_source}, 3), got {shape}")
        batch = shape[:-2]
        count = batch[0] if batch else 1
        if isinstance(source_vertices, torch.Tensor):
            matrix = self.torch_matrix(source_vertices.device, source_vertices.dtype)
            source = source_vertices.reshape(count, num_source, 3).transpose(0, 1)
            target = matrix @ source.reshape(num_source, count * 3)
            target = target.reshape(num_target, count, 3).transpose(0, 1)
            return target.reshape(*batch, num_target, 3).contiguous()
        vertices = np.asarray(source_vertices)
        dtype = vertices.dtype if vertices.dtype.kind == "f" else np.float64
        source = vertices.reshape(count, num_source, 3).transpose(1, 0, 2)
        target = self.matrix @ source.reshape(num_source, count * 3)
        target = target.reshape(num_target, count, 3).transpose(1, 0, 2)
        return np.ascontiguousarray(target.reshape(*batch, num_target, 3), dtype=dtype)


def load_deformation_transfer(deftrafo_path: str | Path, mask_path: str | Path | None = None,
                              source: str = "smplh", target: str = "smplx"
                              ) -> DeformationTransfer:
    """Read a deformation transfer between two model kinds, and its mask.

    Args:
        deftrafo_path: the official setup (e.g. `smplh2smplx_deftrafo_setup.pkl`).
        mask_path: the target's valid vertex ids (`smplx_mask_ids.npy`); None: every
            target vertex is valid.
        source, target: "smpl", "smplh" or "smplx".
    Raises:
        InputError naming the file when it is missing, unreadable or malformed.
    """
    num_target, num_source = KINDS[target].num_vertices, KINDS[source].num_vertices
    matrix = read_deformation_matrix(deftrafo_path, num_target, num_source)
    mask_ids = (np.arange(num_target) if mask_path is None
                else read_mask_ids(mask_path, num_target))
    check_convex_rows(matrix, mask_ids, deftrafo_path)
    return DeformationTransfer(matrix=matrix, mask_ids=mask_ids,
                               deftrafo_path=Path(deftrafo_path),
                               mask_path=None if mask_path is None else Path(mask_path))


def identity_transfer(num_vertices: int, mask_ids: np.ndarray | None = None
                      ) -> DeformationTransfer:
    """The map between two models of one topology (SMPL and SMPL-H): vertex i is vertex i.

    mask_ids: (M,) valid target ids; None: every vertex.
    """
    mask_ids = np.arange(num_vertices) if mask_ids is None else np.asarray(mask_ids, np.int64)
    return DeformationTransfer(matrix=scipy.sparse.identity(num_vertices, format="csr"),
                               mask_ids=mask_ids)


def load_pair_transfer(source: str, target: str, deftrafo_path: str | Path | None = None,
                       mask_path: str | Path | None = None) -> DeformationTransfer:
    """The deformation transfer of a pair of model kinds.

    Models of one topology (SMPL and SMPL-H) need no file: the identity map, every vertex
    valid unless `mask_path` is given. Other pairs read `deftrafo_path` (the official
    `<source>2<target>` setup, or a folder holding the official files: the pair's is taken
    by its name) and `mask_path` (None: every target vertex is valid).
    Raises InputError for a file named as the official transfer of another pair: SMPL's and
    SMPL-H's transfers map the same 6890 vertices, so the sizes cannot tell them apart.
    """
    if same_topology(source, target):
        num_vertices = KINDS[target].num_vertices
        mask_ids = None if mask_path is None else read_mask_ids(mask_path, num_vertices)
        return identity_transfer(num_vertices, mask_ids)
    pair = OFFICIAL_TRANSFER_FILES[f"{source}2{target}"]
    pair_name = f"{KINDS[source].label} to {KINDS[target].label}"
    if deftrafo_path is None:
        raise InputError(f"{pair_name} needs the deformation transfer {pair} "
                         "(--deformation-transfer)")
    path = Path(deftrafo_path)
    if path.is_dir():
        path = path / pair
    for other, file_name in OFFICIAL_TRANSFER_FILES.items():
        if file_name == path.name and file_name != pair:
            raise InputError(f"{path}: is the {other} transfer; {pair_name} needs {pair} "
                             "(--deformation-transfer: that file, or the folder of the "
                             "official files)")
    return load_deformation_transfer(path, mask_path, source, target)
