"""A folder of pose meshes (`<pose_id:06d>.obj` or `.ply`): its sorted listing and shards.

Sorted by file name, as the official MeshFolder of the PoseScript/PoseFix instructions is, so
that shards taken over the whole listing never depend on what earlier runs finished.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..family import ModelKind
from .limits import check_coordinates
from .meshes import read_mesh

MESH_SUFFIXES = (".obj", ".ply")


@dataclass(frozen=True)
class PoseInput:
    """One input of the sorted list: its name, pose id (None when the name is not one or
    repeats another file's) and mesh file (None when posed from recorded parameters)."""
    name: str
    pose_id: int = None
    mesh_path: Path = None


def list_mesh_inputs(mesh_dir: str | Path) -> list:
    """The mesh folder's `.obj`/`.ply` files sorted by name, as `PoseInput`s.

    A name whose stem is not a pose id, or that repeats another file's pose id, keeps its
    place in the list (so shards stay the same) with pose_id None; it fails when reached.
    """
    mesh_dir = Path(mesh_dir)
    if not mesh_dir.is_dir():
        raise InputError(f"{mesh_dir}: mesh folder not found")
    names = sorted(path.name for path in mesh_dir.iterdir()
                   if path.suffix.lower() in MESH_SUFFIXES and not path.name.startswith("."))
    inputs, seen = [], set()
    for name in names:
        stem = Path(name).stem
        pose_id = int(stem) if stem.isdigit() else None
        if pose_id in seen:
            pose_id = None
        seen.add(pose_id)
        inputs.append(PoseInput(name, pose_id, mesh_dir / name))
    return inputs


def select_shard(inputs: list, shard_size: int, shard_index: int) -> list:
    """The inputs of shard `shard_index` of size `shard_size` (all of them when size is 0)."""
    if shard_size <= 0:
        return list(inputs)
    return list(inputs[shard_index * shard_size:(shard_index + 1) * shard_size])


def read_mesh_vertices(path: str | Path, kind: ModelKind) -> np.ndarray:
    """(V, 3) float32 vertices of a complete mesh of a model `kind` (a `family.ModelKind`):
    its vertex and face counts, finite coordinates within MAX_COORDINATE_M metres (no human
    body reaches beyond, and such values would overflow the fit). InputError naming the
    file otherwise."""
    try:
        vertices = np.asarray(read_mesh(path, kind.num_faces), dtype=np.float64)
    except InputError:
        raise
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the mesh ({error})") from None
    if vertices.shape != (kind.num_vertices, 3):
        raise InputError(f"{path}: has {vertices.shape[0]} vertices, a {kind.label} mesh has "
                         f"{kind.num_vertices}")
    check_coordinates(path, vertices)
    return vertices.astype(np.float32)

