"""Reading SMPL-H and SMPL-X model files into plain numpy arrays, with the kind checked.

Both the AMASS-codebase SMPL-H (`smplh/neutral/model.npz`, no hand PCA) and the
smplx-codebase files (`SMPLH_NEUTRAL.pkl`, `SMPLX_NEUTRAL.npz`, ...) are accepted. Hand
PCA keys are ignored: the tool always uses full axis-angle hand poses with no hand mean.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse

from .errors import InputError
from .safe_pickle import load_pickle

SMPLH_NUM_VERTICES, SMPLH_NUM_JOINTS = 6890, 52
SMPLX_NUM_VERTICES, SMPLX_NUM_JOINTS = 10475, 55

_COUNTS = {"smplh": (SMPLH_NUM_VERTICES, SMPLH_NUM_JOINTS),
           "smplx": (SMPLX_NUM_VERTICES, SMPLX_NUM_JOINTS)}

# Vertex and joint counts of the SMPL family, to say what a wrong file is.
_FAMILY = {
    (SMPLH_NUM_VERTICES, SMPLH_NUM_JOINTS): "SMPL-H",
    (SMPLX_NUM_VERTICES, SMPLX_NUM_JOINTS): "SMPL-X",
    (6890, 24): "SMPL",
    (778, 16): "MANO",
    (5023, 5): "FLAME",
}

# File names looked for, in this order, when a folder is given.
_CONVENTIONAL_NAMES = {
    "smplh": ["neutral/model.npz", "SMPLH_NEUTRAL.npz", "SMPLH_NEUTRAL.pkl"],
    "smplx": ["SMPLX_NEUTRAL.npz", "SMPLX_NEUTRAL.pkl"],
}

_REQUIRED_KEYS = ("v_template", "f", "J_regressor", "kintree_table", "weights",
                  "posedirs", "shapedirs")


@dataclass(frozen=True, eq=False)
class BodyModelData:
    """The arrays of one SMPL-H or SMPL-X model file (V vertices, J joints).

    Attributes:
        kind: "smplh" or "smplx".
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
    def num_vertices(self):
        return self.v_template.shape[0]

    @property
    def num_joints(self):
        return self.parents.shape[0]


def load_smplh(path):
    """Read a SMPL-H model: a `.npz`/`.pkl` file, or a folder holding one.

    A folder is searched for `neutral/model.npz` (AMASS codebase), `SMPLH_NEUTRAL.npz`
    and `SMPLH_NEUTRAL.pkl` (smplx codebase), also inside a `smplh/` subfolder.
    Raises InputError when nothing is found or the file is not a SMPL-H model.
    """
    return _load_body_model(path, "smplh")


def load_smplx(path):
    """Read a SMPL-X model: a `.npz`/`.pkl` file, or a folder holding one.

    A folder is searched for `SMPLX_NEUTRAL.npz` and `SMPLX_NEUTRAL.pkl`, also inside a
    `smplx/` subfolder. Raises InputError when nothing is found or the file is not a
    SMPL-X model.
    """
    return _load_body_model(path, "smplx")


def _find_model_file(path, kind):
    """`path` itself if it is a file, else the first conventional model file inside it."""
    path = Path(path)
    if path.is_dir():
        names = _CONVENTIONAL_NAMES[kind]
        candidates = [path / name for name in names] + [path / kind / name for name in names]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        looked_for = ", ".join(str(c.relative_to(path)) for c in candidates)
        raise InputError(f"{path}: no {_FAMILY[_COUNTS[kind]]} model file in this folder; "
                         f"looked for {looked_for}")
    if not path.is_file():
        raise InputError(f"{path}: body model file not found")
    if path.suffix not in (".npz", ".pkl"):
        raise InputError(f"{path}: expected a .npz or .pkl body model file")
    return path


def _read_arrays(path):
    """The required arrays of a model file as a dict (sparse J_regressor made dense)."""
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                contents = {key: archive[key] for key in _REQUIRED_KEYS if key in archive.files}
        except Exception as error:  # zip, header or pickled-object errors of all kinds
            raise InputError(f"{path}: not a readable .npz file: {error!r}") from None
    else:
        contents = load_pickle(path)
        if not isinstance(contents, dict):
            raise InputError(f"{path}: holds a {type(contents).__name__}, expected a dict "
                             "of model arrays")
    missing = [key for key in _REQUIRED_KEYS if key not in contents]
    if missing:
        raise InputError(f"{path}: not a body model file, keys missing: {', '.join(missing)}")
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
    """The one loader behind `load_smplh` and `load_smplx`."""
    path = _find_model_file(path, kind)
    arrays = _read_arrays(path)
    v_template, kintree = arrays["v_template"], arrays["kintree_table"]
    if v_template.ndim != 2 or kintree.ndim != 2 or kintree.shape[0] != 2:
        raise InputError(f"{path}: v_template has shape {v_template.shape} and kintree_table "
                         f"{kintree.shape}, expected (V, 3) and (2, J)")
    counts = (v_template.shape[0], kintree.shape[1])
    if counts != _COUNTS[kind]:
        found = f"{_FAMILY[counts]} model" if counts in _FAMILY else "model"
        num_vertices, num_joints = _COUNTS[kind]
        raise InputError(f"{path}: is a {found} ({counts[0]} vertices, {counts[1]} joints), "
                         f"expected {_FAMILY[_COUNTS[kind]]} ({num_vertices} vertices, "
                         f"{num_joints} joints)")
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
    if kind == "smplh":
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
