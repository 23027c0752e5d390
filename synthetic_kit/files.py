"""Atomic writers for the kit's npz, pickle and json files."""
import json
import pickle

import numpy as np

from smplh2smplx.formats.files import atomic_write

__all__ = ["atomic_write", "write_json", "write_npz", "write_pickle"]


def write_npz(path, arrays):
    with atomic_write(path) as handle:
        np.savez(handle, **arrays)


def write_pickle(path, contents):
    """Protocol 2, plain numpy / scipy objects, as the smplx codebase's model files."""
    with atomic_write(path) as handle:
        pickle.dump(contents, handle, protocol=2)


def write_json(path, contents):
    with atomic_write(path, "w") as handle:
        json.dump(contents, handle, indent=1)
