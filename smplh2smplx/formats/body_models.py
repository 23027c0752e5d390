"""Reading SMPL, SMPL-H and SMPL-X model files into plain numpy arrays, kind checked.

Both the AMASS-codebase SMPL-H (`smplh/neutral/model.npz`, no hand PCA) and the
smplx-codebase files (`SMPLH_NEUTRAL.pkl`, `SMPLX_NEUTRAL.npz`, ...) are accepted. Hand
PCA keys are ignored: the tool always uses full axis-angle hand poses with no hand mean.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse

from ..errors import InputError, listed
from ..family import KINDS, describe_counts
from .npz import read_npz
from .safe_pickle import load_pickle

GENDERS = ("neutral", "male", "female")

_REQUIRED_KEYS = ("v_template", "f", "J_regressor", "kintree_table", "weights",
                  "posedirs", "shapedirs")


@dataclass(frozen=True, eq=False)
class BodyModelData:
    """The arrays of one SMPL-H or SMPL-X model file (V vertices, J joints).

    Attributes:
        kind: "smpl", "smplh" or "smplx".
        path: the file they were read from.
        v_template: (V, 3) float64 rest-pose vertices of the mean shape.
        faces: (F, 3) int64 vertex ids of each triangle.
        j_regressor: (J, V) float64 dense, joint locations as weighted sums of vertices.
        parents: (J,) int64 parent of each joint, parents[0] == -1, parents[j] < j.
        weights: (V, J) float64 skinning weights.
        posedirs: (V, 3, P) float64 pose blend shapes, P = 9 * (J - 1).
        shapedirs: (V, 3, S) float64 shape blend shapes, then expression ones (SMPL-X).
        num_shape_coeffs: how many leading columns of `shapedirs` are shape; the rest
            are expression (SMPL-X 400 -> 300, 20 -> 10; SMPL-H: all of them).
    """

    kind: str
    path: Path
    v_template: np.ndarray
    faces: np.ndarray
    j_regressor: np.ndarray
    parents: np.ndarray
    weights: np.ndarray
    posedirs: np.ndarray
    shapedirs: np.ndarray
    num_shape_coeffs: int

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def num_joints(self) -> int:
        return self.parents.shape[0]

    def check_num_betas(self, num_betas: int, option: str) -> None:
        """InputError when this model holds fewer shape coefficients than the `num_betas`
        that `option` asks for (those past them would be expression directions, or none)."""
        if num_betas > self.num_shape_coeffs:
            raise InputError(f"{self.path}: has {self.num_shape_coeffs} shape coefficients, "
                             f"{num_betas} betas asked for ({option})")

    def joint_shapedirs(self, num_betas: int) -> np.ndarray:
        """(J, 3, num_betas): how the regressed joints move with the first betas (one
        matrix product: numpy's einsum took 0.03 s a call for SMPL-X)."""
        shapedirs = self.shapedirs[:, :, :num_betas]
        return (self.j_regressor @ shapedirs.reshape(self.num_vertices, -1)).reshape(
            self.num_joints, 3, num_betas)


def load_body_model(path: str | Path, kind: str, gender: str = "neutral") -> BodyModelData:
    """Read a body model of `kind` ("smpl", "smplh" or "smplx"): a `.npz`/`.pkl` file, or a
    folder holding one.

    A folder is searched for the conventional file names of that kind and gender (for
    SMPL-H `<gender>/model.npz` of the AMASS codebase, `SMPLH_<GENDER>.npz/.pkl` of the
    smplx codebase), also inside a subfolder named after the kind. Raises InputError when
    nothing is found or the file is not a model of that kind.
    """
    if gender not in GENDERS:
        raise InputError(f"gender must be one of {', '.join(GENDERS)}, got {gender!r}")
    return _load_body_model(_find_model_file(path, kind, gender), kind)


def load_smplh(path: str | Path, gender: str = "neutral") -> BodyModelData:
    """`load_body_model(path, "smplh", gender)`."""
    return load_body_model(path, "smplh", gender)


def load_smplx(path: str | Path, gender: str = "neutral") -> BodyModelData:
    """`load_body_model(path, "smplx", gender)`."""
    return load_body_model(path, "smplx", gender)


def _find_model_file(path, kind, gender):
    """`path` itself if it is a file, else the first conventional model file inside it."""
    path = Path(path)
    label = KINDS[kind].label
    if path.is_dir():
        names = [name.format(G=gender.upper(), g=gender, g1=gender[0])
                 for name in KINDS[kind].model_files]
        candidates = [path / name for name in names] + [path / kind / name for name in names]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise InputError(f"{path}: no {gender} {label} model file in this folder; looked for"
                         + listed(candidate.relative_to(path) for candidate in candidates))
    if not path.is_file():
        raise InputError(f"{path}: body model file not found")
    if path.suffix not in (".npz", ".pkl"):
        raise InputError(f"{path}: expected a .npz or .pkl body model file")
    return path


def _read_arrays(path):
    """The required arrays of a model file as a dict (sparse J_regressor made dense)."""
    if path.suffix == ".npz":
        contents = read_npz(path, _REQUIRED_KEYS)     # the other members stay compressed
    else:
        contents = load_pickle(path)
        if not isinstance(contents, dict):
            raise InputError(f"{path}: holds a {type(contents).__name__}, expected a dict "
                             "of model arrays")
    missing = [key for key in _REQUIRED_KEYS if key not in contents]
    if missing:
        raise InputError(f"{path}: not a body model file, it lacks" + listed(missing))
    arrays = {}
    for key in _REQUIRED_KEYS:
        value = contents[key]
        if scipy.sparse.issparse(value):
            value = value.toarray()
        value = np.asarray(value)
        if value.dtype.kind not in "biuf":
            raise InputError(f"{path}: {key} holds {value.dtype} values, expected numbers")
        arrays[key] = value
    return arrays


def _load_body_model(path, kind):
    """The arrays of the model file `path`, checked to be a model of `kind`."""
    arrays = _read_arrays(path)
    v_template, kintree = arrays["v_template"], arrays["kintree_table"]
    if v_template.ndim != 2 or kintree.ndim != 2 or kintree.shape[0] != 2:
        raise InputError(f"{path}: v_template has shape {v_template.shape} and kintree_table "
                         f"{kintree.shape}, expected (V, 3) and (2, J)")
    counts = (v_template.shape[0], kintree.shape[1])
    expected = KINDS[kind]
    if counts != (expected.num_vertices, expected.num_joints):
        found = describe_counts(*counts)
        raise InputError(f"{path}: is a {found + ' ' if found else ''}model ({counts[0]} "
                         f"vertices, {counts[1]} joints), expected {expected.label} "
                         f"({expected.num_vertices} vertices, {expected.num_joints} joints)")
    num_vertices, num_joints = counts
    expected_shapes = {  # letters: any size
        "v_template": (num_vertices, 3),
        "f": ("F", 3),
        "J_regressor": (num_joints, num_vertices),
        "weights": (num_vertices, num_joints),
        "posedirs": (num_vertices, 3, 9 * (num_joints - 1)),
        "shapedirs": (num_vertices, 3, "S"),
    }
    for key, expected in expected_shapes.items():
        shape = arrays[key].shape
        if len(shape) != len(expected) or any(
                size != wanted for size, wanted in zip(shape, expected) if isinstance(wanted, int)):
            raise InputError(f"{path}: {key} has shape {shape}, expected "
                             f"({', '.join(map(str, expected))})")

    faces = arrays["f"].astype(np.int64)
    if faces.size == 0 or faces.min() < 0 or faces.max() >= num_vertices:
        raise InputError(f"{path}: f (the faces) must be a non-empty list of vertex ids below "
                         f"{num_vertices}")
    parents = kintree[0].astype(np.int64)
    parents[0] = -1  # stored as -1 or as the largest uint32
    if np.any(parents[1:] < 0) or np.any(parents[1:] >= np.arange(1, num_joints)):
        raise InputError(f"{path}: kintree_table is not a joint tree listing every parent "
                         "before its children")
    num_components = arrays["shapedirs"].shape[2]
    if not KINDS[kind].expression_in_shapedirs:
        num_shape_coeffs = num_components
    elif num_components >= 400:
        num_shape_coeffs = 300
    elif num_components >= 20:
        num_shape_coeffs = 10
    else:
        raise InputError(f"{path}: shapedirs has {num_components} components, expected "
                         "300 shape + 100 expression (or 10 + 10 in older files)")
    return BodyModelData(
        kind=kind,
        path=path,
        v_template=np.asarray(v_template, np.float64),
        faces=faces,
        j_regressor=np.asarray(arrays["J_regressor"], np.float64),
        parents=parents,
        weights=np.asarray(arrays["weights"], np.float64),
        posedirs=np.asarray(arrays["posedirs"], np.float64),
        shapedirs=np.asarray(arrays["shapedirs"], np.float64),
        num_shape_coeffs=num_shape_coeffs,
    )
