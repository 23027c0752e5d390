"""Mesh files: a vectorised `.obj` writer and an order-preserving `.obj`/`.ply` reader.

Vertex order is the contract between the stages (FORMATS.md), so neither side lets a mesh
library merge, drop or reorder vertices.
"""
import io
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import atomic_write


def format_obj(vertices, faces):
    """The text of a Wavefront `.obj` with `vertices` (V, 3) and 0-based `faces` (F, 3)."""
    buffer = io.StringIO()
    np.savetxt(buffer, np.asarray(vertices, dtype=np.float64), fmt="v %.6f %.6f %.6f")
    np.savetxt(buffer, np.asarray(faces, dtype=np.int64) + 1, fmt="f %d %d %d")
    return buffer.getvalue()


def write_obj(path, vertices, faces):
    """Write `path` atomically: an interrupt leaves either the whole file or none."""
    text = format_obj(vertices, faces)
    with atomic_write(path, "w") as stream:
        stream.write(text)
    return Path(path)


def read_obj_vertices(path):
    """(V, 3) float64 vertices of an `.obj`, in file order (faces and normals are ignored)."""
    with open(path, "rb") as stream:
        lines = stream.read().split(b"\n")
    rows = [line[2:] for line in lines if line.startswith(b"v ")]
    try:
        vertices = np.array(b" ".join(rows).split(), dtype=np.float64)
    except ValueError as error:
        raise InputError(f"{path}: unreadable vertex line ({error})") from None
    if vertices.size != 3 * len(rows):
        raise InputError(f"{path}: every vertex line must hold exactly x y z")
    return vertices.reshape(-1, 3)


def read_mesh(path):
    """(V, 3) float64 vertices of an `.obj` or `.ply` file, in file order."""
    path = Path(path)
    if path.suffix.lower() == ".obj":
        return read_obj_vertices(path)
    if path.suffix.lower() == ".ply":
        import trimesh
        try:
            mesh = trimesh.load(path, process=False, maintain_order=True, force="mesh")
        except Exception as error:  # trimesh raises many kinds on a broken file
            raise InputError(f"{path}: unreadable PLY ({error})") from None
        return np.asarray(mesh.vertices, dtype=np.float64)
    raise InputError(f"{path}: not a mesh file (expected .obj or .ply)")
