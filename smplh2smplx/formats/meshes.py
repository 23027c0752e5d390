"""Mesh files: a vectorised `.obj` writer and an order-preserving `.obj`/`.ply` reader.

Vertex order is the contract between the stages (docs/FORMATS.md), so neither side lets a
mesh library merge, drop or reorder vertices.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from ..errors import InputError
from .files import atomic_write, open_regular
from .limits import check_coordinates

# A body mesh of 10,475 vertices is about 2 MB as text (with normals and texture
# coordinates, a few times that): a mesh file larger than this is not one.
MAX_MESH_BYTES = 64 * 1000 * 1000


# (3, 1000): the three ASCII digits of 0..999, zero-padded, one number per column.
_DIGITS = np.array([list(f"{number:03d}".encode()) for number in range(1000)], np.uint8).T


def _digit_columns(numbers, count):
    """(count, ...) ASCII digits of the non-negative int64 `numbers`, most significant first,
    zero-padded to `count` (a multiple of 3) digits."""
    groups = [np.take(_DIGITS, numbers // 1000 ** group % 1000, axis=1)
              for group in reversed(range(count // 3))]
    return np.concatenate(groups, axis=0)


def format_vertex_lines(vertices: np.ndarray) -> bytes:
    """The `v x y z` lines of `vertices` (V, 3) as bytes, formatted as "%.6f" does.

    Vectorised: each coordinate becomes a fixed-width row of characters (space, sign,
    integer digits, point, six decimals) and one mask drops the signs of positive values
    and the leading zeros. The decimals come from rint(|x| * 10^6), the same number as
    "%.6f" prints (both round half to even) whenever that product is exact, as it is
    for every float32 value (24 + 14 bits fit in a float64). Needs finite |x| < 10^12
    (ValueError otherwise: the digits would overflow into garbage).
    """
    coords = np.asarray(vertices, dtype=np.float64).T                 # (3, V)
    if not (np.abs(coords) < 1e12).all():
        raise ValueError("vertex coordinates must be finite and below 1e12 in magnitude")
    micro = np.rint(np.abs(coords) * 1e6).astype(np.int64)
    whole, fraction = np.divmod(micro, 1_000_000)
    num_digits = 3 * math.ceil(len(str(int(whole.max(initial=0)))) / 3)
    width = num_digits + 9                                   # " -" digits "." 6 decimals
    chars = np.empty((3, width, coords.shape[1]), np.uint8)
    keep = np.ones(chars.shape, bool)
    chars[:, 0], chars[:, 1] = ord(" "), ord("-")
    keep[:, 1] = np.signbit(coords)                          # "%.6f" % -0.0 == "-0.000000"
    chars[:, 2:2 + num_digits] = _digit_columns(whole, num_digits).transpose(1, 0, 2)
    powers = 10.0 ** np.arange(num_digits - 1, 0, -1)        # the units digit always shows
    keep[:, 2:1 + num_digits] = whole[:, None] >= powers[:, None]
    chars[:, 2 + num_digits] = ord(".")
    chars[:, 3 + num_digits:] = _digit_columns(fraction, 6).transpose(1, 0, 2)
    lines = np.empty((3 * width + 2, coords.shape[1]), np.uint8)   # "v", coords, "\n"
    lines[0], lines[1:-1], lines[-1] = ord("v"), chars.reshape(3 * width, -1), ord("\n")
    keep_lines = np.ones(lines.shape, bool)
    keep_lines[1:-1] = keep.reshape(3 * width, -1)
    return np.compress(keep_lines.T.ravel(), lines.T.ravel()).tobytes()


def format_face_lines(faces: np.ndarray) -> bytes:
    """The `f a b c` lines (1-based) of 0-based `faces` (F, 3), as bytes."""
    faces = np.asarray(faces, dtype=np.int64)
    return (("f %d %d %d\n" * len(faces)) % tuple((faces + 1).ravel().tolist())).encode()


def format_obj(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    """The bytes of a Wavefront `.obj` with `vertices` (V, 3) and 0-based `faces` (F, 3)."""
    return format_vertex_lines(vertices) + format_face_lines(faces)


def write_obj(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write `path` atomically: an interrupt leaves either the whole file or none. InputError
    naming it, and nothing written, when a coordinate is one no reader would accept
    (`limits.check_coordinates`)."""
    check_coordinates(path, np.asarray(vertices))
    text = format_obj(vertices, faces)
    with atomic_write(path) as stream:
        stream.write(text)
    return Path(path)


def read_obj_vertices(path: str | Path, num_faces: int | None = None) -> np.ndarray:
    """(V, 3) float64 vertices of an `.obj`, in file order (faces, normals and vertex
    colours are ignored).

    With `num_faces`, the file must be complete: it ends with a new line and holds exactly
    `num_faces` face lines (a file cut in its faces, or in its vertices, which come first,
    then lacks faces; a cut inside a number cannot be seen otherwise). Only regular files
    are read (a FIFO would hang the reader).
    """
    with open_regular(path, max_bytes=MAX_MESH_BYTES) as stream:
        data = stream.read()
    lines = data.split(b"\n")
    rows = [line[2:] for line in lines if line.startswith(b"v ")]
    try:
        vertices = np.array(b" ".join(rows).split(), dtype=np.float64)
    except ValueError as error:
        raise InputError(f"{path}: unreadable vertex line ({str(error)[:200]})") from None
    if vertices.size == 6 * len(rows) and all(len(row.split()) == 6 for row in rows):
        vertices = vertices.reshape(-1, 6)[:, :3]        # x y z r g b: a colour per vertex
    elif vertices.size != 3 * len(rows):
        raise InputError(f"{path}: every vertex line must hold x y z (or x y z r g b)")
    if num_faces is not None:
        if not data.endswith(b"\n"):
            raise InputError(f"{path}: incomplete file (the last line is cut: no new line "
                             "at the end)")
        found = sum(line.startswith(b"f ") for line in lines)
        if found != num_faces:
            raise InputError(f"{path}: incomplete or foreign mesh: {found} face lines, "
                             f"expected {num_faces}")
    return vertices.reshape(-1, 3)


def read_mesh(path: str | Path, num_faces: int | None = None) -> np.ndarray:
    """(V, 3) float64 vertices of an `.obj` or `.ply` file, in file order; with `num_faces`
    the file must hold exactly that many faces (see read_obj_vertices)."""
    path = Path(path)
    if path.suffix.lower() == ".obj":
        return read_obj_vertices(path, num_faces)
    if path.suffix.lower() == ".ply":
        import trimesh
        with open_regular(path, max_bytes=MAX_MESH_BYTES) as stream:
            data = stream.read()
        try:
            mesh = trimesh.load(io.BytesIO(data), file_type="ply", process=False,
                                maintain_order=True, force="mesh")
            vertices = np.asarray(mesh.vertices, dtype=np.float64)
            faces = len(mesh.faces)
        except Exception as error:  # trimesh raises many kinds on a broken file
            raise InputError(f"{path}: unreadable PLY ({str(error)[:200]})") from None
        if num_faces is not None and faces != num_faces:
            raise InputError(f"{path}: incomplete or foreign mesh: {faces} faces, expected "
                             f"{num_faces}")
        return vertices
    raise InputError(f"{path}: not a mesh file (expected .obj or .ply)")


def read_mesh_faces(path: str | Path, num_vertices: int) -> np.ndarray:
    """(F, 3) int64 0-based triangles of an `.obj` (its `f` lines) or `.ply` mesh whose
    faces must index `num_vertices` vertices."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".ply":
            import trimesh
            with open_regular(path, max_bytes=MAX_MESH_BYTES) as stream:
                data = io.BytesIO(stream.read())
            faces = trimesh.load(data, file_type="ply", process=False, maintain_order=True,
                                 force="mesh").faces
        else:
            with open_regular(path, max_bytes=MAX_MESH_BYTES) as stream:
                lines = [line.split()[1:] for line in stream.read().split(b"\n")
                         if line.startswith(b"f ")]
            # "f 1/1/1 2/2/2 3/3/3" keeps the vertex index before the first slash.
            faces = [[int(corner.split(b"/")[0]) - 1 for corner in line] for line in lines]
        faces = np.asarray(faces, np.int64)
    except Exception as error:     # trimesh raises many kinds on a broken file
        raise InputError(f"{path}: cannot read the mesh faces ({error})") from None
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise InputError(f"{path}: expected triangle faces, got an array of shape {faces.shape}")
    if faces.min() < 0 or faces.max() >= num_vertices:
        raise InputError(f"{path}: faces index vertices {faces.min()} to {faces.max()}, the "
                         f"mesh has vertices 0 to {num_vertices - 1}")
    return faces
