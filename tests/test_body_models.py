"""Loading SMPL-H / SMPL-X model files of every flavour, and the errors for wrong ones."""
import contextlib
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from smplh2smplx.formats.body_models import BodyModelData, load_smplh, load_smplx
from smplh2smplx.errors import InputError

HAND_KEYS = ("hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr")


def model_arrays(num_vertices, num_joints, num_components, seed=0):
    """Random arrays with the keys and shapes of a model file (posedirs left zero)."""
    rng = np.random.default_rng(seed)
    parents = np.concatenate([[-1], rng.integers(0, np.arange(1, num_joints))])
    return {
        "v_template": rng.normal(size=(num_vertices, 3)),
        "f": rng.integers(0, num_vertices, size=(2 * num_vertices, 3)).astype(np.int32),
        "J_regressor": rng.random((num_joints, num_vertices)),
        "kintree_table": np.stack([parents, np.arange(num_joints)]),
        "weights": rng.random((num_vertices, num_joints)),
        "posedirs": np.zeros((num_vertices, 3, 9 * (num_joints - 1)), np.float32),
        "shapedirs": rng.normal(size=(num_vertices, 3, num_components)).astype(np.float32),
    }


@pytest.fixture(scope="module")
def smplh_arrays():
    return model_arrays(6890, 52, 16)


@pytest.fixture(scope="module")
def smplx_arrays():
    return model_arrays(10475, 55, 20, seed=1)


def with_hand_pca(arrays):
    """The extra keys of smplx-codebase files, and the uint32 root of official pickles."""
    arrays = dict(arrays, **{key: np.ones((45, 45) if "components" in key else 45)
                             for key in HAND_KEYS})
    arrays["kintree_table"] = arrays["kintree_table"].astype(np.uint32)
    return arrays


def write_pickle(path, contents):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(contents, protocol=2))
    return path


def write_npz(path, contents):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **contents)
    return path


@contextlib.contextmanager
def chumpy_class():
    """A class pickled as `chumpy.ch.Ch`; the fake module exists only while pickling."""
    module = types.ModuleType("chumpy.ch")
    module.Ch = type("Ch", (), {"__module__": "chumpy.ch"})
    sys.modules.update({"chumpy": types.ModuleType("chumpy"), "chumpy.ch": module})
    try:
        yield module.Ch
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def assert_matches(data, arrays, kind, path, num_shape_coeffs):
    assert isinstance(data, BodyModelData)
    assert data.kind == kind and data.path == path
    assert data.num_shape_coeffs == num_shape_coeffs
    assert data.num_vertices == arrays["v_template"].shape[0]
    assert data.num_joints == arrays["kintree_table"].shape[1]
    for field, key in [("v_template", "v_template"), ("j_regressor", "J_regressor"),
                       ("weights", "weights"), ("posedirs", "posedirs"),
                       ("shapedirs", "shapedirs")]:
        value = getattr(data, field)
        assert value.dtype == np.float64, field
        np.testing.assert_array_equal(value, np.asarray(arrays[key], np.float64), err_msg=field)
    assert data.faces.dtype == np.int64 and data.parents.dtype == np.int64
    np.testing.assert_array_equal(data.faces, arrays["f"])
    assert data.parents[0] == -1
    np.testing.assert_array_equal(data.parents[1:], arrays["kintree_table"][0, 1:])


def test_amass_codebase_smplh_npz(tmp_path, smplh_arrays):
    extras = {"J": np.zeros((52, 3)), "bs_style": np.array("lbs"), "bs_type": np.array("lrotmin")}
    path = write_npz(tmp_path / "smplh" / "neutral" / "model.npz", dict(smplh_arrays, **extras))

    assert_matches(load_smplh(path), smplh_arrays, "smplh", path, 16)
    assert_matches(load_smplh(tmp_path / "smplh"), smplh_arrays, "smplh", path, 16)
    assert_matches(load_smplh(tmp_path), smplh_arrays, "smplh", path, 16)


def test_smplx_codebase_smplh_pickle_with_sparse_regressor(tmp_path, smplh_arrays):
    arrays = with_hand_pca(smplh_arrays)
    contents = dict(arrays, J_regressor=sp.csc_matrix(arrays["J_regressor"]))
    path = write_pickle(tmp_path / "SMPLH_NEUTRAL.pkl", contents)

    data = load_smplh(tmp_path)

    assert_matches(data, arrays, "smplh", path, 16)
    assert type(data.j_regressor) is np.ndarray


def test_official_pickle_with_chumpy_arrays(tmp_path, smplh_arrays):
    arrays = with_hand_pca(dict(smplh_arrays, shapedirs=smplh_arrays["shapedirs"][:, :, :10]))
    contents = dict(arrays, J_regressor=sp.csc_matrix(arrays["J_regressor"]))
    with chumpy_class() as Ch:
        for key in ("v_template", "shapedirs", "posedirs", "weights"):
            contents[key] = Ch.__new__(Ch)
            contents[key].__dict__.update(x=arrays[key], _dirty_vars=set(), _itr=None)
        path = write_pickle(tmp_path / "smplh" / "SMPLH_NEUTRAL.pkl", contents)

    assert_matches(load_smplh(tmp_path), arrays, "smplh", path, 10)


@pytest.mark.parametrize("num_components, num_shape_coeffs", [(20, 10), (400, 300)])
def test_smplx_npz_shape_and_expression_split(tmp_path, smplx_arrays, num_components,
                                              num_shape_coeffs):
    rng = np.random.default_rng(2)
    shapedirs = rng.normal(size=(10475, 3, num_components)).astype(np.float32)
    arrays = with_hand_pca(dict(smplx_arrays, shapedirs=shapedirs))
    path = write_npz(tmp_path / "SMPLX_NEUTRAL.npz", arrays)

    assert_matches(load_smplx(path), arrays, "smplx", path, num_shape_coeffs)


def test_smplx_folder_resolution(tmp_path, smplx_arrays):
    pkl = write_pickle(tmp_path / "models" / "smplx" / "SMPLX_NEUTRAL.pkl", smplx_arrays)
    assert load_smplx(tmp_path / "models").path == pkl
    assert load_smplx(tmp_path / "models" / "smplx").path == pkl

    npz = write_npz(tmp_path / "models" / "smplx" / "SMPLX_NEUTRAL.npz", smplx_arrays)
    assert load_smplx(tmp_path / "models").path == npz  # .npz preferred: faster to read


@pytest.mark.parametrize("load, names", [
    (load_smplh, ["neutral/model.npz", "SMPLH_NEUTRAL.pkl", "smplh/neutral/model.npz"]),
    (load_smplx, ["SMPLX_NEUTRAL.npz", "SMPLX_NEUTRAL.pkl", "smplx/SMPLX_NEUTRAL.npz"]),
])
def test_folder_without_model_says_what_was_looked_for(tmp_path, load, names):
    (tmp_path / "SMPLH_MALE.pkl").write_bytes(b"")
    with pytest.raises(InputError, match="looked for") as error:
        load(tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message
    for name in names:
        assert name in message


def test_wrong_kind_is_named(tmp_path, smplh_arrays, smplx_arrays):
    smplx = write_npz(tmp_path / "SMPLX_NEUTRAL.npz", smplx_arrays)
    smplh = write_pickle(tmp_path / "model.pkl", smplh_arrays)

    with pytest.raises(InputError) as error:
        load_smplh(smplx)
    assert str(error.value) == (
        f"{smplx}: is a SMPL-X model (10475 vertices, 55 joints), "
        "expected SMPL-H (6890 vertices, 52 joints)")

    with pytest.raises(InputError) as error:
        load_smplx(smplh)
    assert str(error.value) == (
        f"{smplh}: is a SMPL-H model (6890 vertices, 52 joints), "
        "expected SMPL-X (10475 vertices, 55 joints)")


@pytest.mark.parametrize("counts, described", [
    ((778, 16), "is a MANO model (778 vertices, 16 joints)"),
    ((6890, 24), "is a SMPL model (6890 vertices, 24 joints)"),
    ((100, 7), "is a model (100 vertices, 7 joints)"),
])
def test_other_models_are_named(tmp_path, counts, described):
    path = write_pickle(tmp_path / "MANO_RIGHT.pkl", model_arrays(*counts, 10))
    for load, expected in [(load_smplh, "expected SMPL-H"), (load_smplx, "expected SMPL-X")]:
        with pytest.raises(InputError) as error:
            load(path)
        assert str(error.value).startswith(f"{path}: {described}, {expected}")


def test_missing_keys_are_listed(tmp_path, smplh_arrays):
    contents = {key: value for key, value in smplh_arrays.items()
                if key not in ("posedirs", "weights")}
    path = write_npz(tmp_path / "model.npz", contents)
    with pytest.raises(InputError) as error:
        load_smplh(path)
    assert str(error.value).splitlines() == [f"{path}: not a body model file, it lacks",
                                             "  weights", "  posedirs"]


@pytest.mark.parametrize("key, value, expected", [
    ("weights", np.ones((52, 6890)), r"weights has shape \(52, 6890\), expected \(6890, 52\)"),
    ("posedirs", np.ones((6890, 3, 207)), r"expected \(6890, 3, 459\)"),
    ("shapedirs", np.ones((6890 * 3, 10)), r"expected \(6890, 3, S\)"),
    ("f", np.full((10, 3), 6890), "vertex ids below 6890"),
    ("kintree_table", np.stack([[-1] + list(range(2, 53)), range(52)]), "parent"),
    ("v_template", np.array([["a", "b", "c"]] * 6890), "expected numbers"),
])
def test_malformed_arrays(tmp_path, smplh_arrays, key, value, expected):
    path = write_pickle(tmp_path / "model.pkl", dict(smplh_arrays, **{key: value}))
    with pytest.raises(InputError, match=expected) as error:
        load_smplh(path)
    assert str(path) in str(error.value)


def test_unusable_paths(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_smplh(tmp_path / "absent.npz")
    (tmp_path / "model.obj").write_text("v 0 0 0\n")
    with pytest.raises(InputError, match=r"expected a \.npz or \.pkl"):
        load_smplx(tmp_path / "model.obj")
    (tmp_path / "model.npz").write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="not a readable .npz") as error:
        load_smplh(tmp_path / "model.npz")
    assert "model.npz" in str(error.value)
    write_pickle(tmp_path / "list.pkl", [1, 2, 3])
    with pytest.raises(InputError, match="expected a dict"):
        load_smplh(tmp_path / "list.pkl")


def test_every_kit_model_loads(request):
    """The synthetic kit's models (fixture `kit` of tests/conftest.py) load in every form."""
    pytest.importorskip("synthetic_kit", reason="synthetic kit not written yet")
    kit = request.getfixturevalue("kit")
    models = Path(kit if isinstance(kit, (str, Path)) else kit.root) / "body_models"
    smplh = [models / "smplh" / "neutral" / "model.npz", models / "smplh" / "SMPLH_NEUTRAL.pkl",
             models]
    smplx = [models / "smplx" / "SMPLX_NEUTRAL.npz", models / "smplx" / "SMPLX_NEUTRAL.pkl",
             models]
    for load, paths, kind, counts in [(load_smplh, smplh, "smplh", (6890, 52)),
                                      (load_smplx, smplx, "smplx", (10475, 55))]:
        for path in paths:
            data = load(path)
            assert data.kind == kind and (data.num_vertices, data.num_joints) == counts
            assert data.path.is_file() and data.parents[0] == -1
            for array in (data.v_template, data.j_regressor, data.weights, data.posedirs,
                          data.shapedirs):
                assert array.dtype == np.float64 and np.all(np.isfinite(array))
