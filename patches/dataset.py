"""The meshes one official run converts: sorted, sharded, without those already converted.

Replaces the official `transfer_model.data.datasets.MeshFolder`, which lists the folder in
`os.listdir` order (arbitrary, so shards of one folder are not reproducible) and converts
everything every time. The PoseScript/PoseFix instructions edit it to sort, shard and skip;
`MeshShard` does that, in this order: sort the whole folder by file name, cut the shard
(stable whatever has been converted), then drop the meshes whose result is done.
"""

import numpy as np
import trimesh
from torch.utils.data import Dataset

from smplh2smplx.errors import InputError
from smplh2smplx.formats.limits import check_coordinates
from smplh2smplx.formats.mesh_folder import list_mesh_inputs, select_shard


def read_mesh(path):
    """(vertices float32 (V, 3), faces int32 (F, 3)) of a mesh file, vertex order kept.

    trimesh with `process=False`, as the official reader loads, merges no vertices; with
    `maintain_order=True` its .obj reader also keeps vertices no face uses (by default it
    drops them, which would shift nothing in a SMPL-H mesh but would hide a broken file).
    """
    try:
        mesh = trimesh.load(path, process=False, maintain_order=True, force="mesh")
    except Exception as error:          # trimesh raises many types on malformed files
        raise InputError(f"{path}: cannot read the mesh ({error})") from None
    vertices = np.asarray(mesh.vertices, dtype=np.float32)
    faces = np.asarray(mesh.faces, dtype=np.int32).reshape(-1, 3)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise InputError(f"{path}: holds no vertices")
    check_coordinates(path, vertices)
    return vertices, faces


class MeshShard(Dataset):
    """The meshes of one shard of a folder that still need converting, in name order.

    Args:
        data_folder: folder of `<pose_id:06d>.obj` (or `.ply`) meshes of one topology.
        is_done: is_done(pose_id), whether that pose's result is done (its mesh is
            dropped); None: none is (an overwriting run).
        shard_size, shard_index: see `formats.mesh_folder.select_shard`.
    Items are dicts like the official dataset's: `vertices` float32 (V, 3), `faces` int32
    (F, 3), `paths` (str), plus `pose_id` (int).
    """

    def __init__(self, data_folder, is_done=None, shard_size=0, shard_index=0):
        inputs = select_shard(list_mesh_inputs(data_folder), shard_size, shard_index)
        seen = {}
        for item in inputs:
            if item.pose_id is None:
                raise InputError(f"{item.mesh_path}: the file name is not a pose id "
                                 "(<pose_id:06d>.obj) or repeats another file's pose id")
            seen[item.pose_id] = item.mesh_path
        self.items = [(pose_id, path) for pose_id, path in seen.items()
                      if is_done is None or not is_done(pose_id)]
        self.skipped = len(inputs) - len(self.items)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        pose_id, path = self.items[index]
        vertices, faces = read_mesh(path)
        return {"vertices": vertices, "faces": faces, "paths": str(path), "pose_id": pose_id}
