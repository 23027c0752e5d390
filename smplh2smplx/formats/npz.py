"""Reading `.npz` inputs member by member, checking each member before it is decompressed.

`np.load` trusts an archive: a member stored without the `.npy` suffix comes back as raw
`bytes` (an AttributeError far from the file), and a member is decompressed whatever its
size. Here only the members asked for are read; each must be a `.npy` member whose
declared size (the zip header, then the `.npy` header's shape and type) is at most
`MAX_MEMBER_BYTES` and consistent, and which holds no Python objects. Anything else is an
InputError naming the file and the member.
"""
import zipfile
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import InputError
from ..runtime import available_memory
from .files import open_regular

# The largest array an input may hold: a SMPL-X model's posedirs is 10475 x 3 x 486
# float64 (122 MB); a four-hour motion at 120 fps, 156 values per frame, 1.4 GB... is not
# a real file. 2 GiB leaves room for every real file and refuses a planted giant.
MAX_MEMBER_BYTES = 2 * 1024 ** 3
# The largest list of members an input may have: a genuine archive lists a few dozen (AMASS's
# SMPL-X files about 30) in a few KB. zipfile makes an object of about 0.6 KB for every member
# listed, before any is read: reading a motion from a 39 MB file that also listed 400,000
# empty members took 6 s and 440 MB more memory, and a file of a GB (ten million members)
# would get a cluster task killed at that file on every resume.
MAX_DIRECTORY_BYTES = 1 << 20


def _header(handle, path, key):
    """(shape, fortran order, dtype) from a member's `.npy` header."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
    else:
        raise InputError(f"{path}: member {key}: .npy format version {version} is not read")
    if dtype.hasobject:
        raise InputError(f"{path}: member {key} holds Python objects, expected plain numbers "
                         "or text")
    return shape, fortran, dtype


def _read_exactly(member, size):
    """`size` bytes of `member` into a writable buffer (short when the member is)."""
    buffer = bytearray(size)
    view, filled = memoryview(buffer), 0
    while filled < size:
        count = member.readinto(view[filled:])
        if not count:
            break
        filled += count
    return buffer, filled


def check_memory_to_read(path: Path, key: str, shape: tuple, dtype: np.dtype) -> None:
    """InputError naming the file when a member, as stored and as the float64 copy its
    reader makes (none of a float64 member), needs more memory than this process can still
    take (`runtime.available_memory`): a few MB of compressed zeros can declare a motion of
    millions of frames, and reading them would swap a laptop or get a cluster task killed,
    losing the work after it."""
    count = int(np.prod(shape, dtype=np.float64))
    needed = count * dtype.itemsize + (0 if dtype == np.float64 else 8 * count)
    available = available_memory()
    if available is not None and needed > available:
        raise InputError(f"{path}: member {key} {tuple(shape)} needs at least "
                         f"{needed / 1e9:.3g} GB of memory to read, and "
                         f"{available / 1e9:.3g} GB is available here; read it where more "
                         "memory is, or split it")


def open_archive(handle, path: Path) -> zipfile.ZipFile:
    """A ZipFile over the open .npz `handle`; InputError naming the file when its list of
    members (its central directory) is over MAX_DIRECTORY_BYTES, checked before zipfile
    reads it. The size is zipfile's own reading of the archive's end records (a private
    function of the standard library since Python 2, in every version this runs on), so
    that no other reading of them can tell it a smaller one."""
    end = zipfile._EndRecData(handle)
    if end is not None and end[zipfile._ECD_SIZE] > MAX_DIRECTORY_BYTES:
        raise InputError(f"{path}: its list of members takes {end[zipfile._ECD_SIZE]} bytes, "
                         f"more than the {MAX_DIRECTORY_BYTES} an input may (a genuine .npz "
                         "lists a few dozen members in a few KB)")
    return zipfile.ZipFile(handle)


def member_shapes(path: Path, keys: Iterable[str]) -> dict:
    """{key: shape} of the members `keys` of the .npz at `path` that it holds, as their `.npy`
    headers declare them, read without decompressing the arrays; {} when the file cannot be
    read, and no entry for a member that cannot (the reader of the file says why, later)."""
    shapes = {}
    try:
        with open_regular(Path(path)) as handle, open_archive(handle, path) as archive:
            names = set(archive.namelist())
            for key in keys:
                if f"{key}.npy" not in names:
                    continue
                try:
                    with archive.open(f"{key}.npy") as member:
                        shapes[key] = tuple(_header(member, path, key)[0])
                except Exception:   # an unreadable member: no shape
                    pass
    except Exception:               # an unreadable file (or a FIFO, a folder): no shapes
        return {}
    return shapes


def member_names(path: Path) -> list:
    """The names of the members of the .npz at `path` (`.npy` suffixes dropped); [] when it
    cannot be read."""
    try:
        with open_regular(Path(path)) as handle, open_archive(handle, path) as archive:
            return [name.removesuffix(".npy") for name in archive.namelist()]
    except Exception:               # unreadable: its reader says why
        return []


def read_npz(path: Path, keys: Iterable[str]) -> dict:
    """{key: array} of the members `keys` of the .npz at `path` that it holds.

    Members not in `keys` are never decompressed. Raises InputError naming the file when it
    is not a readable .npz, and naming the member when one asked for is not a `.npy` array
    (raw bytes), declares more than MAX_MEMBER_BYTES, or does not match its header.
    A missing file raises FileNotFoundError (callers say what it was meant to be).
    """
    path = Path(path)
    arrays = {}
    try:
        with open_regular(path) as handle, open_archive(handle, path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            for key in keys:
                info = members.get(f"{key}.npy")
                if info is None:
                    if key in members:
                        raise InputError(f"{path}: member {key} is stored as raw bytes, not as "
                                         "a .npy array (not written by numpy.savez)")
                    continue
                if info.file_size > MAX_MEMBER_BYTES:
                    raise InputError(f"{path}: member {key} declares {info.file_size} bytes, "
                                     f"more than the {MAX_MEMBER_BYTES} an input may hold")
                with archive.open(info) as member:
                    shape, fortran, dtype = _header(member, path, key)
                    size = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                    if size > info.file_size:
                        raise InputError(f"{path}: member {key} declares shape {shape} of "
                                         f"{dtype} ({size} bytes) in {info.file_size} bytes")
                    check_memory_to_read(path, key, shape, dtype)
                    data, filled = _read_exactly(member, size)
                if filled != size:
                    raise InputError(f"{path}: member {key} is cut short")
                array = np.frombuffer(data, dtype=dtype)
                arrays[key] = (array.reshape(shape[::-1]).T if fortran
                               else array.reshape(shape))
    except (InputError, FileNotFoundError):
        raise
    except Exception as error:  # zip, header and decompression errors of all kinds
        raise InputError(f"{path}: not a readable .npz file ({error!r})"[:500]) from None
    return arrays
