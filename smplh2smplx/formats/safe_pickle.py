"""Loading pickled body-model and deformation-transfer files without running their code.

A pickle can name any importable callable and have it called while loading, so an
ordinary `pickle.load` of a downloaded file runs whatever the file asks for. The
unpickler here resolves only the names needed to rebuild numpy arrays, scipy sparse
matrices and plain containers, and refuses every other name before anything is called.

Files straight from the download sites were written by Python 2 with chumpy objects
inside (chumpy does not install on current Python). Every `chumpy.*` class is replaced by
a stand-in that only records its pickled state; once the file is loaded, each stand-in
is replaced by the numpy array it holds (or computes, for the few chumpy operations
these files use).
"""
from __future__ import annotations

import _compat_pickle
import collections
import functools
import importlib
import io
import math
import pickle
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from ..errors import InputError
from .files import open_regular


def _numpy_core(submodule):
    """`numpy._core.<submodule>` (numpy >= 2) or `numpy.core.<submodule>` (numpy 1.x)."""
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{submodule}")


class _SizeArgumentError(ValueError):
    """bytes(n) or bytearray(n) asked for by a pickle."""


def _no_size_argument(kind):
    """`kind` (bytes or bytearray) callable as in pickles, except with an integer size."""
    def build(*args):
        if args and isinstance(args[0], int):
            raise _SizeArgumentError(f"the pickle asks for {kind.__name__}({args[0]})")
        return kind(*args)
    return build


def _allowed_globals():
    """The (module, name) pairs a pickle may refer to, mapped to the objects they stand for.

    Module paths are listed as the pickles spell them: numpy 1.x wrote `numpy.core`,
    numpy 2 writes `numpy._core`; scipy < 1.8 wrote `scipy.sparse.csc`, later versions
    `scipy.sparse._csc` (and 1.8-1.10 kept the sparse arrays in `scipy.sparse._arrays`).
    """
    multiarray, numeric = _numpy_core("multiarray"), _numpy_core("numeric")
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    for fmt in ("csc", "csr", "coo"):
        for kind in ("matrix", "array"):
            cls = getattr(scipy.sparse, f"{fmt}_{kind}")
            for module in ("scipy.sparse", f"scipy.sparse.{fmt}", f"scipy.sparse._{fmt}",
                           "scipy.sparse._arrays"):
                allowed[(module, cls.__name__)] = cls
    for builtin in (dict, list, tuple, set, frozenset, bytes, bytearray, complex, object):
        allowed[("builtins", builtin.__name__)] = builtin
    # bytes(n) and bytearray(n) would allocate n zero bytes: a memory bomb in 20 bytes of
    # pickle. Protocol 2 writes `bytes()` for b"", so the names stay, without that form.
    allowed[("builtins", "bytes")] = _no_size_argument(bytes)
    allowed[("builtins", "bytearray")] = _no_size_argument(bytearray)
    allowed[("collections", "OrderedDict")] = dict
    allowed[("copyreg", "_reconstructor")] = importlib.import_module("copyreg")._reconstructor
    allowed[("_codecs", "encode")] = importlib.import_module("_codecs").encode
    return allowed


_ALLOWED = _allowed_globals()


class _ChumpyObject:
    """Stand-in for a pickled chumpy object: keeps the pickled state, computes nothing.

    Subclasses made by `_chumpy_stand_in` carry the chumpy class name in `chumpy_name`.
    """

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state


_STAND_INS = {}


def _chumpy_stand_in(module, name):
    """One stand-in class per chumpy class name, so the operation can be told apart."""
    key = f"{module}.{name}"
    if key not in _STAND_INS:
        _STAND_INS[key] = type(name, (_ChumpyObject,), {"chumpy_name": key})
    return _STAND_INS[key]


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the names in `_ALLOWED` and chumpy classes; refuses everything else."""

    def __init__(self, handle, path):
        super().__init__(handle, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str) -> object:
        # Python 2 names (`__builtin__.set`, `copy_reg._reconstructor`) in Python 3 terms,
        # as the standard unpickler translates them.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module == "chumpy" or module.startswith("chumpy."):
            return _chumpy_stand_in(module, name)
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise InputError(
                f"{self.path}: refused to load: the pickle asks for {module}.{name}; only "
                "numpy arrays, scipy sparse matrices, chumpy arrays and plain containers "
                "are allowed") from None


def _operand(state, key):
    return np.asarray(state[key])


# How each chumpy class that model files contain computes its value from its (already
# converted) pickled terms. A plain `Ch` holds its value under 'x'.
_CHUMPY_VALUES = {
    "Ch": lambda s: s["x"],
    "Select": lambda s: _operand(s, "a").ravel()[np.asarray(s["idxs"])].reshape(
        s.get("preferred_shape", -1)),
    "Reshape": lambda s: _operand(s, "a").reshape(s["newshape"]),
    "transpose": lambda s: np.transpose(_operand(s, "a"), s.get("axes")),
    "add": lambda s: _operand(s, "a") + _operand(s, "b"),
    "subtract": lambda s: _operand(s, "a") - _operand(s, "b"),
    "multiply": lambda s: _operand(s, "a") * _operand(s, "b"),
    "divide": lambda s: _operand(s, "x1") / _operand(s, "x2"),
    "negative": lambda s: -_operand(s, "x"),
    "dot": lambda s: _operand(s, "a").dot(_operand(s, "b")),
}


_IN_PROGRESS = object()      # marks a container whose items are being converted


def _replace_chumpy(obj, path, done):
    """`obj` with every chumpy stand-in inside containers replaced by its numpy value."""
    if id(obj) in done:
        if done[id(obj)] is _IN_PROGRESS:
            raise InputError(f"{path}: refused to load: an object in the pickle contains "
                             "itself")
        return done[id(obj)]
    if isinstance(obj, (_ChumpyObject, dict, list, tuple)):
        done[id(obj)] = _IN_PROGRESS
    if isinstance(obj, _ChumpyObject):
        state = getattr(obj, "state", None)
        name = obj.chumpy_name.rsplit(".", 1)[-1]
        if not isinstance(state, dict) or name not in _CHUMPY_VALUES:
            raise InputError(f"{path}: holds a chumpy object of class {obj.chumpy_name}, "
                             "which this loader cannot turn into an array")
        terms = {key: _replace_chumpy(value, path, done) for key, value in state.items()}
        try:
            result = _CHUMPY_VALUES[name](terms)
        except (KeyError, ValueError, TypeError, IndexError) as error:
            raise InputError(f"{path}: cannot compute the chumpy object of class "
                             f"{obj.chumpy_name}: {error!r}") from None
        if not scipy.sparse.issparse(result):
            result = np.asarray(result)
    elif isinstance(obj, dict):
        result = {key: _replace_chumpy(value, path, done) for key, value in obj.items()}
    elif isinstance(obj, (list, tuple)):
        result = type(obj)(_replace_chumpy(value, path, done) for value in obj)
    else:
        return obj
    done[id(obj)] = result
    return result


def load_pickle(path: str | Path) -> object:
    """Load a pickled model or deformation-transfer file, building only safe objects.

    Args:
        path: the `.pkl` file (Python 2 or Python 3 pickle, any protocol).
    Returns:
        The unpickled object, in which every chumpy object has become a numpy array.
    Raises:
        InputError: the file is missing, is not a (complete) pickle, or asks for a name
            outside numpy arrays, scipy sparse matrices and plain containers; the
            refused name is given and nothing it names is called.
    """
    path = Path(path)
    try:
        with open_regular(path) as handle:
            obj = _RestrictedUnpickler(handle, path).load()
        return _replace_chumpy(obj, path, {})
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, expected a pickle file") from None
    except RecursionError:
        raise InputError(f"{path}: refused to load: the pickle is nested too deeply") from None
    except _SizeArgumentError as error:
        raise InputError(f"{path}: refused to load: {error}") from None
    except Exception as error:
        raise InputError(f"{path}: not a readable pickle (truncated, damaged or another "
                         f"format): {error!r}"[:500]) from None


# ----------------------------------------------------------------- pickled torch tensors
#
# A CPU tensor pickles as `torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
# requires_grad, backward_hooks)`, its storage as `torch.storage._load_from_bytes(data)`,
# where `data` is a whole legacy `torch.save` file. torch's own `_load_from_bytes` runs
# `torch.load(weights_only=False)` on those bytes, i.e. an unrestricted pickle, so neither
# function is called here: the storage bytes are parsed below (only the storage classes
# and their raw numbers are accepted) and the tensor is rebuilt with `as_strided`.

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64,
                   "HalfStorage": np.float16, "LongStorage": np.int64, "IntStorage": np.int32,
                   "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
                   "BoolStorage": np.bool_}
# A result file holds 165 + 10 numbers (about 4 kB pickled); anything far larger is not one.
MAX_TENSOR_PICKLE_BYTES = 1 << 20


class _LegacyStorageUnpickler(pickle.Unpickler):
    """Reads the small pickles of a legacy `torch.save` stream: only storage classes are
    named, and the storage itself is a persistent id that is recorded, not loaded."""

    def __init__(self, handle, path):
        super().__init__(handle)
        self.path = path
        self.storages = {}

    def find_class(self, module: str, name: str) -> object:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise InputError(f"{self.path}: refused to load: a tensor's storage asks for "
                         f"{module}.{name}")

    def persistent_load(self, pid: tuple) -> object:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"
                and pid[1] in _STORAGE_DTYPES.values() and isinstance(pid[2], str)
                and pid[3] == "cpu" and type(pid[4]) is int and 0 <= pid[4]
                and pid[5] is None):
            raise InputError(f"{self.path}: a tensor's storage is not a plain CPU storage")
        self.storages[pid[2]] = (pid[1], pid[4])
        return pid[2]


def _storage_from_bytes(data, path):
    """(N,) tensor of the numbers of a pickled storage (a legacy torch.save stream)."""
    if not isinstance(data, bytes):
        raise InputError(f"{path}: a tensor's storage is not stored as bytes")
    stream = io.BytesIO(data)
    unpickler = _LegacyStorageUnpickler(stream, path)
    header = [unpickler.load() for _ in range(3)]     # magic, protocol, system info
    key = unpickler.load()
    keys = unpickler.load()
    if (header[0] != _LEGACY_MAGIC or header[1] != _LEGACY_PROTOCOL
            or not isinstance(header[2], dict) or header[2].get("little_endian") is not True
            or keys != [key] or key not in unpickler.storages):
        raise InputError(f"{path}: a tensor's storage is not in torch's format")
    dtype, count = unpickler.storages[key]
    stored_count = int.from_bytes(stream.read(8), "little")
    raw = stream.read()
    if stored_count != count or len(raw) != count * np.dtype(dtype).itemsize:
        raise InputError(f"{path}: a tensor's storage is truncated or damaged")
    return torch.from_numpy(np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
                            .astype(dtype))


def _is_int_tuple(value):
    return isinstance(value, tuple) and all(type(item) is int for item in value)


def _rebuild_tensor(path, storage, offset, size, stride, requires_grad, hooks, metadata=None):
    """The tensor `_rebuild_tensor_v2` would give, from checked pieces only."""
    if not (isinstance(storage, torch.Tensor) and type(offset) is int and _is_int_tuple(size)
            and _is_int_tuple(stride) and len(size) == len(stride)
            and isinstance(requires_grad, bool) and isinstance(hooks, dict) and not hooks
            and not metadata):
        raise InputError(f"{path}: a pickled tensor is malformed")
    if offset < 0 or min(size + stride, default=0) < 0 or (
            math.prod(size) and offset + sum((n - 1) * s for n, s in zip(size, stride))
            >= storage.numel()):
        raise InputError(f"{path}: a pickled tensor lies outside its storage")
    tensor = storage.as_strided(size, stride, offset).clone()
    if requires_grad:
        tensor.requires_grad_()
    return tensor


class _TensorUnpickler(pickle.Unpickler):
    """Plain containers and CPU tensors only: every other name is refused."""

    def __init__(self, handle, path):
        super().__init__(handle)
        self.path = path

    def find_class(self, module: str, name: str) -> object:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return functools.partial(_rebuild_tensor, self.path)
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return functools.partial(_storage_from_bytes, path=self.path)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise InputError(f"{self.path}: refused to load: the pickle asks for {module}.{name}; "
                         "only CPU torch tensors and plain containers are allowed")


def load_tensor_pickle(path: str | Path) -> object:
    """Load a pickle of torch tensors and plain containers (a stage-2 result file) safely.

    Nothing named in the file is called: tensors are rebuilt from their checked numbers,
    and any other class or function is refused before it is resolved.

    Raises:
        InputError naming the file: missing, not a regular file, larger than
        MAX_TENSOR_PICKLE_BYTES, not a (complete) pickle, or asking for anything else.
    """
    path = Path(path)
    try:
        with open_regular(path) as handle:
            data = handle.read(MAX_TENSOR_PICKLE_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror or error})") from None
    if len(data) > MAX_TENSOR_PICKLE_BYTES:
        raise InputError(f"{path}: larger than {MAX_TENSOR_PICKLE_BYTES} bytes, too large "
                         "for a file of parameters")
    try:
        return _TensorUnpickler(io.BytesIO(data), path).load()
    except InputError:
        raise
    except RecursionError:
        raise InputError(f"{path}: refused to load: the pickle is nested too deeply") from None
    except Exception as error:
        raise InputError(f"{path}: not a readable pickle (truncated, damaged or another "
                         f"format): {error!r}"[:500]) from None
