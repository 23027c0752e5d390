"""The restricted unpickler: numpy, scipy sparse and chumpy objects load; nothing else runs."""
import builtins
import contextlib
import io
import os
import pickle
import struct
import subprocess
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp

from smplh2smplx.errors import InputError
from smplh2smplx.formats.safe_pickle import load_pickle


@contextlib.contextmanager
def fake_chumpy():
    """Modules `chumpy.ch`, `chumpy.reordering`, `chumpy.ch_ops` with pickle-only classes.

    The classes carry the chumpy names, so their pickles name the same globals as files
    written with the real chumpy; the modules are gone again before anything is loaded.
    """
    names = {"chumpy.ch": ["Ch"], "chumpy.reordering": ["Select"],
             "chumpy.ch_ops": ["add", "power"]}
    modules = {"chumpy": types.ModuleType("chumpy")}
    for module_name, class_names in names.items():
        module = modules[module_name] = types.ModuleType(module_name)
        for class_name in class_names:
            setattr(module, class_name, type(class_name, (), {"__module__": module_name}))
    sys.modules.update(modules)
    try:
        yield {name: getattr(modules[module], name)
               for module, class_names in names.items() for name in class_names}
    finally:
        for name in modules:
            del sys.modules[name]


def chumpy_object(cls, **state):
    """An instance whose pickled state is `state`, as chumpy's `__getstate__` gives it."""
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


def leaf(cls, value):
    """A plain `Ch` holding `value`, with the bookkeeping keys a real one pickles."""
    return chumpy_object(cls, x=value, _dirty_vars={"x"}, _itr=None,
                         _depends_on_deps={}, _make_dense=False, _make_sparse=False)


class Python2Pickler(pickle._Pickler):
    """Writes protocol 2 the way Python 2 did for model files.

    Strings and bytes become Python-2 byte strings (`BINSTRING`, so the raw array data
    needs `encoding="latin1"` to load), numpy names its core `numpy.core`, scipy its
    sparse modules `scipy.sparse.csc` and so on, builtins live in `__builtin__`.
    """

    dispatch = pickle._Pickler.dispatch.copy()
    module_names = [("numpy._core", "numpy.core"), ("scipy.sparse._", "scipy.sparse."),
                    ("builtins", "__builtin__"), ("copyreg", "copy_reg")]

    def save_byte_string(self, obj):
        data = obj if isinstance(obj, bytes) else obj.encode("ascii")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    def save_global(self, obj, name=None):
        module = obj.__module__
        for new, old in self.module_names:
            if module.startswith(new):
                module = old + module[len(new):]
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode("ascii"))
        self.memoize(obj)

    dispatch[bytes] = save_byte_string
    dispatch[str] = save_byte_string
    dispatch[types.FunctionType] = save_global


def python2_pickle(obj):
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


@pytest.mark.parametrize("protocol", [0, 1, 2])
def test_chumpy_objects_become_arrays(tmp_path, protocol):
    rng = np.random.default_rng(0)
    template, offset = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    with fake_chumpy() as ch:
        base = leaf(ch["Ch"], template)
        model = {
            "v_template": base,
            "shapedirs": leaf(ch["Ch"], template[:, :, None] * [1.0, 2.0]),
            "picked": chumpy_object(ch["Select"], a=base, idxs=np.array([4, 0, 7]),
                                    preferred_shape=(3,), _dirty_vars=set()),
            "moved": chumpy_object(ch["add"], a=base, b=leaf(ch["Ch"], offset)),
            "nested": [base, (base,)],
            "kintree_table": np.arange(10).reshape(2, 5),
        }
        (tmp_path / "model.pkl").write_bytes(pickle.dumps(model, protocol=protocol))
    assert "chumpy" not in sys.modules

    loaded = load_pickle(tmp_path / "model.pkl")

    assert "chumpy" not in sys.modules
    assert type(loaded["v_template"]) is np.ndarray
    np.testing.assert_array_equal(loaded["v_template"], template)
    np.testing.assert_array_equal(loaded["shapedirs"], template[:, :, None] * [1.0, 2.0])
    np.testing.assert_array_equal(loaded["picked"], template.ravel()[[4, 0, 7]])
    np.testing.assert_array_equal(loaded["moved"], template + offset)
    np.testing.assert_array_equal(loaded["nested"][1][0], template)
    np.testing.assert_array_equal(loaded["kintree_table"], np.arange(10).reshape(2, 5))


def test_python2_model_file_with_chumpy_and_old_scipy_paths(tmp_path):
    rng = np.random.default_rng(1)
    template = rng.normal(size=(6, 3))
    regressor = sp.random(4, 6, density=0.5, format="csc", random_state=2)
    with fake_chumpy() as ch:
        model = {"v_template": leaf(ch["Ch"], template), "J_regressor": regressor,
                 "f": np.arange(12, dtype=np.uint32).reshape(4, 3), "bs_type": "lrotmin",
                 "weights": rng.random((6, 4)).astype(np.float32)}
        data = python2_pickle(model)
        with pytest.raises(UnicodeDecodeError):
            pickle.loads(data)  # Python 2 byte strings: only latin1 decodes the array data
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in data
    assert b"cscipy.sparse.csc\ncsc_matrix\n" in data
    assert b"cchumpy.ch\nCh\n" in data and b"__builtin__\nset\n" in data
    (tmp_path / "SMPLH_NEUTRAL.pkl").write_bytes(data)

    loaded = load_pickle(tmp_path / "SMPLH_NEUTRAL.pkl")

    np.testing.assert_array_equal(loaded["v_template"], template)
    assert sp.issparse(loaded["J_regressor"]) and loaded["J_regressor"].format == "csc"
    np.testing.assert_array_equal(loaded["J_regressor"].toarray(), regressor.toarray())
    assert loaded["f"].dtype == np.uint32 and loaded["weights"].dtype == np.float32
    np.testing.assert_array_equal(loaded["weights"], model["weights"])
    assert loaded["bs_type"] == "lrotmin"


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("fmt", ["csc", "csr", "coo"])
@pytest.mark.parametrize("kind", ["matrix", "array"])
def test_scipy_sparse_round_trip(tmp_path, protocol, fmt, kind):
    dense = sp.random(7, 9, density=0.3, random_state=3).toarray()
    matrix = getattr(sp, f"{fmt}_{kind}")(dense)
    payload = {"mtx": matrix, "scale": np.float64(2.5), "ids": np.arange(4), "name": b"x",
               "empty": np.zeros((0, 3)), "none": getattr(sp, f"{fmt}_{kind}")((5, 0))}
    (tmp_path / "setup.pkl").write_bytes(pickle.dumps(payload, protocol=protocol))

    loaded = load_pickle(tmp_path / "setup.pkl")

    assert type(loaded["mtx"]) is type(matrix)
    np.testing.assert_array_equal(loaded["mtx"].toarray(), dense)
    assert loaded["scale"] == 2.5 and loaded["name"] == b"x"
    np.testing.assert_array_equal(loaded["ids"], np.arange(4))
    assert loaded["empty"].shape == (0, 3) and loaded["none"].shape == (5, 0)


class RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class Arbitrary:
    pass


class CallsBuiltin:
    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


def test_malicious_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"v_template": np.zeros(3), "x": RunsCommand(f"touch {marker}")}))
    # Control: an ordinary pickle.load would have run the command.
    assert b"system" in path.read_bytes()

    with pytest.raises(InputError) as error:
        load_pickle(path)

    assert not marker.exists()
    assert str(path) in str(error.value)
    assert f"{os.system.__module__}.system" in str(error.value)


@pytest.mark.parametrize("payload, refused", [
    (CallsBuiltin(builtins.eval, "1 + 1"), "builtins.eval"),
    (CallsBuiltin(builtins.getattr, "x"), "builtins.getattr"),
    (CallsBuiltin(subprocess.check_output, ["true"]), "subprocess.check_output"),
    (Arbitrary(), f"{Arbitrary.__module__}.Arbitrary"),
])
def test_other_globals_are_refused(tmp_path, payload, refused):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps([payload], protocol=2))

    with pytest.raises(InputError, match="refused") as error:
        load_pickle(path)

    assert str(path) in str(error.value) and refused in str(error.value)


def test_unknown_chumpy_operation_is_an_input_error(tmp_path):
    with fake_chumpy() as ch:
        data = pickle.dumps({"a": chumpy_object(ch["power"], x=np.ones(2), pow=2)}, protocol=2)
    (tmp_path / "model.pkl").write_bytes(data)

    with pytest.raises(InputError, match="chumpy.ch_ops.power"):
        load_pickle(tmp_path / "model.pkl")


def test_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(InputError, match="not found") as error:
        load_pickle(tmp_path / "absent.pkl")
    assert "absent.pkl" in str(error.value)

    data = pickle.dumps({"v_template": np.zeros((100, 3))}, protocol=2)
    files = {"truncated.pkl": data[: len(data) // 2], "empty.pkl": b"",
             "text.pkl": b"v_template: [0, 0, 0]\n", "archive.pkl": b"PK\x03\x04" + bytes(40)}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError, match="not a readable pickle") as error:
            load_pickle(tmp_path / name)
        assert name in str(error.value)
