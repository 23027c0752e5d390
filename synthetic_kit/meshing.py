"""From the signed distance field to meshes with exact vertex counts: marching cubes,
quadric decimation, longest-edge refinement, Delaunay flips, relaxation onto the surface;
the eyeballs and the mouth opening of SMPL-X. trimesh gives normals, closedness, volumes
and the eyeball sphere."""
import heapq

import numpy as np
import scipy.sparse
import trimesh

from .skeleton import SMPLX_JAW, SMPLX_LEFT_EYE, SMPLX_RIGHT_EYE


def sample_field(field, voxel, coarse_factor=4):
    """The field on a regular grid, exact only near its zero level set.

    A coarse grid (voxel * coarse_factor) finds the cells the surface may cross; the
    fine grid is evaluated in those cells only and elsewhere carries the sign of the
    coarse cell's corners (all equal there), which is all marching cubes needs away from
    the surface.
    Returns (values (nx, ny, nz) float32, origin (3,)).
    """
    step = voxel * coarse_factor
    origin = field.low - step
    coarse_shape = np.ceil((field.high + step - origin) / step).astype(int) + 1
    axes = [origin[d] + step * np.arange(coarse_shape[d]) for d in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    coarse = field(grid).reshape(coarse_shape)
    corners = np.stack([coarse[a:a + coarse_shape[0] - 1, b:b + coarse_shape[1] - 1,
                               c:c + coarse_shape[2] - 1]
                        for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    band = 1.2 * step * np.sqrt(3.0)   # the field changes by at most ~1 per metre
    active = (np.abs(corners).min(axis=0) < band) | (
        (corners.min(axis=0) < 0) & (corners.max(axis=0) > 0))
    # Crop to the cells near the surface (plus one), to keep the fine grid small.
    used = np.nonzero(active)
    first = np.array([max(u.min() - 1, 0) for u in used])
    last = np.array([min(u.max() + 2, n - 1) for u, n in zip(used, active.shape)])
    active = active[first[0]:last[0], first[1]:last[1], first[2]:last[2]]
    signs = np.sign(coarse[first[0]:last[0], first[1]:last[1], first[2]:last[2]])
    origin = origin + step * first

    fine_shape = np.array(active.shape) * coarse_factor + 1
    values = signs.astype(np.float32)
    touched = active
    for axis in range(3):
        values = np.repeat(values, coarse_factor, axis=axis)
        touched = np.repeat(touched, coarse_factor, axis=axis)
    values = np.pad(values, [(0, 1)] * 3, mode="edge")
    # A fine point needs its exact value when any fine cell around it lies in an active
    # coarse cell: dilate the cell mask by one point along each axis in turn.
    touched = np.pad(touched, [(0, 1)] * 3)
    for axis in range(3):
        shifted = np.roll(touched, 1, axis=axis)
        touched |= shifted
    ids = np.nonzero(touched)
    values[ids] = field(origin + voxel * np.stack(ids, axis=1))
    assert values.shape == tuple(fine_shape)
    return values, origin


def marching_cubes_surface(field, voxel):
    """Closed triangle mesh (vertices, faces) of the field's zero level set, outward faces."""
    import mcubes
    values, origin = sample_field(field, voxel)
    vertices, faces = mcubes.marching_cubes(values, 0.0)
    vertices = origin + voxel * vertices
    faces = faces.astype(np.int64)
    return vertices, outward(vertices, faces)


def as_trimesh(vertices, faces):
    """A trimesh view of a mesh, vertices kept as they are (never merged or reordered)."""
    return trimesh.Trimesh(vertices, faces, process=False, validate=False)


def outward(vertices, faces):
    """`faces`, reversed if needed so that the closed mesh has a positive volume."""
    return faces[:, ::-1] if as_trimesh(vertices, faces).volume < 0 else faces


def is_closed_manifold(vertices, faces):
    """True when every edge has two faces, the winding is consistent, no vertex is unused."""
    mesh = as_trimesh(vertices, faces)
    used = np.unique(faces).size == len(vertices)
    return bool(mesh.is_watertight and mesh.is_winding_consistent and used)


def decimate(vertices, faces, num_faces):
    """Quadric-error decimation to `num_faces` faces, keeping a closed manifold.

    The decimation library occasionally glues two sheets along an edge; other
    aggressiveness settings then give a clean result.
    """
    import fast_simplification
    for aggressiveness in (3, 2, 4, 5, 6):
        result = fast_simplification.simplify(vertices.astype(np.float64),
                                              faces.astype(np.int64),
                                              target_count=num_faces, agg=aggressiveness)
        if is_closed_manifold(*result):
            return result[0].astype(np.float64), result[1].astype(np.int64)
    raise RuntimeError("quadric decimation gave no closed manifold mesh")


class _EditableMesh:
    """A closed triangle mesh under edge splits and flips (orientation kept)."""

    def __init__(self, vertices, faces):
        self.vertices = [tuple(v) for v in vertices]
        self.faces = [list(f) for f in faces]
        self.edge_faces = {}
        for index, face in enumerate(self.faces):
            self._attach(index, face)

    def _attach(self, index, face):
        for k in range(3):
            key = _edge_key(face[k], face[(k + 1) % 3])
            self.edge_faces.setdefault(key, []).append(index)

    def _detach(self, index, face):
        for k in range(3):
            key = _edge_key(face[k], face[(k + 1) % 3])
            owners = self.edge_faces[key]
            owners.remove(index)
            if not owners:
                del self.edge_faces[key]

    def _replace(self, index, face):
        self._detach(index, self.faces[index])
        self.faces[index] = face
        self._attach(index, face)

    def _add(self, face):
        self.faces.append(face)
        self._attach(len(self.faces) - 1, face)

    def wings(self, a, b):
        """Faces (a, b, c) and (b, a, d) around edge a-b, as (c, d, face ids)."""
        first, second = self.edge_faces[_edge_key(a, b)]
        if _directed_third(self.faces[first], a, b) is None:
            first, second = second, first
        return (_directed_third(self.faces[first], a, b),
                _directed_third(self.faces[second], b, a), first, second)

    def split(self, a, b, position):
        """Insert a vertex on edge a-b; returns its id."""
        c, d, first, second = self.wings(a, b)
        m = len(self.vertices)
        self.vertices.append(tuple(position))
        self._replace(first, [a, m, c])
        self._replace(second, [b, m, d])
        self._add([m, b, c])
        self._add([m, a, d])
        return m

    def flip(self, a, b):
        """Replace edge a-b by the other diagonal of its two faces."""
        c, d, first, second = self.wings(a, b)
        self._replace(first, [a, d, c])
        self._replace(second, [d, b, c])

    def arrays(self):
        return np.array(self.vertices, float), np.array(self.faces, np.int64)


def _edge_key(a, b):
    return (a, b) if a < b else (b, a)


def _directed_third(face, a, b):
    """The third vertex of `face` when it holds the directed edge a -> b, else None."""
    for k in range(3):
        if face[k] == a and face[(k + 1) % 3] == b:
            return face[(k + 2) % 3]
    return None


def refine_to_count(vertices, faces, spacing, num_vertices):
    """Split the edges longest relative to the wanted spacing until `num_vertices`.

    spacing: (V,) wanted edge length around each vertex (any scale: only ratios count);
    a new vertex takes the mean of its edge's two ends.
    Returns vertices (new ones on the edge midpoints), faces and spacing.
    """
    mesh = _EditableMesh(vertices, faces)
    spacing = list(spacing)
    points = mesh.vertices

    def priority(a, b):
        pa, pb = points[a], points[b]
        length = np.sqrt((pa[0] - pb[0]) ** 2 + (pa[1] - pb[1]) ** 2 + (pa[2] - pb[2]) ** 2)
        return -length / (0.5 * (spacing[a] + spacing[b])), length

    heap = []
    for a, b in mesh.edge_faces:
        score, length = priority(a, b)
        heap.append((score, a, b, length))
    heapq.heapify(heap)
    while len(points) < num_vertices:
        score, a, b, length = heapq.heappop(heap)
        if _edge_key(a, b) not in mesh.edge_faces or priority(a, b)[1] != length:
            continue
        c, d, _, _ = mesh.wings(a, b)
        m = mesh.split(a, b, tuple((np.array(points[a]) + np.array(points[b])) / 2))
        spacing.append(0.5 * (spacing[a] + spacing[b]))
        for other in (a, b, c, d):
            score, length = priority(m, other)
            heapq.heappush(heap, (score, min(m, other), max(m, other), length))
    vertices, faces = mesh.arrays()
    return vertices, faces, np.array(spacing)


def _edge_wings(faces):
    """For every interior edge once: (a, b, c, d, f, g) with faces f = (a, b, c), g = (b, a, d)."""
    num_faces = len(faces)
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    third = faces[:, [2, 0, 1]].reshape(-1)
    face_of = np.repeat(np.arange(num_faces), 3)
    width = int(faces.max()) + 1
    keys = directed[:, 0] * width + directed[:, 1]
    twins = directed[:, 1] * width + directed[:, 0]
    order = np.argsort(keys)
    position = np.searchsorted(keys[order], twins)
    twin = order[np.minimum(position, len(order) - 1)]
    first = np.flatnonzero((directed[:, 0] < directed[:, 1]) & (keys[twin] == twins))
    second = twin[first]
    return (directed[first, 0], directed[first, 1], third[first], third[second],
            face_of[first], face_of[second])


def _face_normals(vertices, faces):
    corners = vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-15)


def vertex_normals(vertices, faces):
    """(V, 3) unit area-weighted vertex normals: trimesh's sum over each vertex's faces of
    their cross products (twice their area times their normal)."""
    cross = trimesh.triangles.cross(vertices[faces])
    return trimesh.geometry.mean_vertex_normals(len(vertices), faces, cross)


def _angle_at(apex, p, q):
    u, v = p - apex, q - apex
    cos = np.einsum("ij,ij->i", u, v) / np.maximum(
        np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1), 1e-15)
    return np.arccos(np.clip(cos, -1.0, 1.0))


def delaunay_flips(vertices, faces, rounds=8, max_bend_degrees=25.0):
    """Flip edges whose opposite angles sum above pi (towards a Delaunay mesh).

    A flip is done only where the surface is nearly flat across the edge (the new faces'
    normals stay within `max_bend_degrees` of the old ones), where both ends of the edge
    keep at least three neighbours and where the new edge does not exist yet.
    """
    faces = faces.copy()
    limit = np.cos(np.radians(max_bend_degrees))
    for _ in range(rounds):
        a, b, c, d, f, g = _edge_wings(faces)
        excess = _angle_at(vertices[c], vertices[a], vertices[b]) + _angle_at(
            vertices[d], vertices[b], vertices[a]) - np.pi
        old = _face_normals(vertices, faces[f]) + _face_normals(vertices, faces[g])
        old /= np.maximum(np.linalg.norm(old, axis=1, keepdims=True), 1e-15)
        new_first = _face_normals(vertices, np.stack([a, d, c], axis=1))
        new_second = _face_normals(vertices, np.stack([d, b, c], axis=1))
        valence = np.bincount(faces.reshape(-1), minlength=len(vertices))
        candidate = ((excess > 1e-6) & (c != d) & (valence[a] > 3) & (valence[b] > 3)
                     & (np.einsum("ij,ij->i", old, new_first) > limit)
                     & (np.einsum("ij,ij->i", old, new_second) > limit))
        if not candidate.any():
            break
        width = len(vertices)
        existing = set((np.minimum(a, b) * width + np.maximum(a, b)).tolist())
        used_faces, chosen = set(), []
        for edge in np.flatnonzero(candidate)[np.argsort(-excess[candidate], kind="stable")]:
            new_key = min(c[edge], d[edge]) * width + max(c[edge], d[edge])
            if f[edge] in used_faces or g[edge] in used_faces or new_key in existing:
                continue
            used_faces.update((f[edge], g[edge]))
            existing.add(new_key)
            chosen.append(edge)
        chosen = np.array(chosen, np.int64)
        faces[f[chosen]] = np.stack([a[chosen], d[chosen], c[chosen]], axis=1)
        faces[g[chosen]] = np.stack([d[chosen], b[chosen], c[chosen]], axis=1)
    return faces


def neighbour_matrix(faces, num_vertices):
    """(V, V) sparse row-normalised adjacency: row i averages vertex i's neighbours."""
    edges = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    adjacency = scipy.sparse.csr_matrix(
        (np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(num_vertices,) * 2)
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    return scipy.sparse.diags(1.0 / degree) @ adjacency


def relax(vertices, faces, field, iterations=4, step=0.5):
    """Tangential smoothing of the vertex positions, each step projected back onto the
    field's zero level set: evens out the triangles without changing the surface."""
    average = neighbour_matrix(faces, len(vertices))
    vertices = vertices.copy()
    for _ in range(iterations):
        normals = vertex_normals(vertices, faces)
        move = average @ vertices - vertices
        move -= np.einsum("ij,ij->i", move, normals)[:, None] * normals
        vertices = field.project(vertices + step * move)
    return vertices


def remesh(field, vertices, faces, part_spacing, num_vertices, coarse_fraction=0.5):
    """A closed genus-0 mesh of the field's surface with exactly `num_vertices` vertices.

    The dense marching-cubes mesh is decimated to about `coarse_fraction` of the count
    (keeping curved parts), refined by longest-edge splits where its edges are longest
    relative to `part_spacing` (a (55,) wanted relative edge length for each joint's part,
    e.g. small on the hands and face), projected onto the surface, then evened out by
    Delaunay flips and tangential relaxation.
    """
    coarse_vertices = int(num_vertices * coarse_fraction)
    vertices, faces = decimate(vertices, faces, 2 * coarse_vertices - 4)
    owners = np.argmin(field.part_distances(vertices), axis=1)
    vertices, faces, _ = refine_to_count(vertices, faces, part_spacing[owners], num_vertices)
    vertices = field.project(vertices)
    faces = delaunay_flips(vertices, faces)
    vertices = relax(vertices, faces, field)
    faces = delaunay_flips(vertices, faces)
    if len(vertices) != num_vertices or not is_closed_manifold(vertices, faces):
        raise RuntimeError("remeshing did not give a closed manifold of the wanted size")
    return vertices, faces


def part_spacing(hands, head, face, feet=0.8):
    """(55,) relative edge lengths per joint part: the body 1, the others as given."""
    spacing = np.ones(55)
    spacing[[20, 21]] = hands
    spacing[25:55] = hands
    spacing[[15, SMPLX_LEFT_EYE, SMPLX_RIGHT_EYE]] = head
    spacing[SMPLX_JAW] = face
    spacing[[7, 8, 10, 11]] = feet
    return spacing


# ----------------------------------------------------------------------------- SMPL-X parts

EYEBALL_RINGS, EYEBALL_SEGMENTS = 17, 32          # 17 * 32 + 2 = 546 vertices each
EYEBALL_RADIUS = 0.0118
MOUTH_CORNERS = ((-0.021, 0.391), (0.021, 0.391))  # (x, y) of the lip line's ends
MOUTH_FACES = 30                                   # faces removed for the mouth opening


def uv_sphere(center, radius, rings=EYEBALL_RINGS, segments=EYEBALL_SEGMENTS):
    """Closed sphere with its poles on the z axis: vertex 0 is the front pole (+z).

    A half circle from the front pole to the back one, revolved about z by trimesh.
    Returns vertices (rings * segments + 2, 3) and outward faces (2 * rings * segments, 3).
    """
    polar = np.linspace(0.0, np.pi, rings + 2)
    profile = np.stack([np.sin(polar), np.cos(polar)], axis=1)
    profile[[0, -1], 0] = 0.0                       # the poles exactly on the axis
    sphere = trimesh.creation.revolve(profile, sections=segments)
    vertices = np.asarray(center) + radius * np.array(sphere.vertices)
    faces = np.array(sphere.faces, np.int64)
    return vertices, outward(vertices, faces)


def open_mouth(vertices, faces, corners=MOUTH_CORNERS, count=MOUTH_FACES):
    """Remove a strip of `count` faces along the lip line, every vertex kept in use.

    The strip grows from the face nearest the first corner, one face at a time through a
    free edge, always adding a face with a vertex new to the strip (so the strip is a
    disc with all its vertices on its rim and none is left without faces), choosing the
    face closest to the lip line. The rim vertices are then moved onto two smooth lip
    curves just above and below the line, so the opening is a thin slit.
    Returns (vertices, faces kept, ids of the opening's rim vertices).
    """
    start, end = (np.array([x, y]) for x, y in corners)
    centers = vertices[faces].mean(axis=1)
    front = centers[:, 2] > 0.05

    def line_distance(points):
        along = np.clip((points[:, :2] - start) @ (end - start) / np.sum((end - start) ** 2),
                        0.0, 1.0)
        return np.linalg.norm(points[:, :2] - (start + along[:, None] * (end - start)), axis=1)

    score = np.where(front, line_distance(centers), np.inf)
    edge_faces = {}
    for index, face in enumerate(faces.tolist()):
        for k in range(3):
            edge_faces.setdefault(_edge_key(face[k], face[(k + 1) % 3]), []).append(index)
    first = int(np.argmin(np.where(front, np.linalg.norm(centers[:, :2] - start, axis=1),
                                   np.inf)))
    strip, strip_vertices = [first], set(faces[first].tolist())
    while len(strip) < count:
        best = None
        for index in strip:
            face = faces[index]
            for k in range(3):
                for other in edge_faces[_edge_key(face[k], face[(k + 1) % 3])]:
                    if other in strip:
                        continue
                    new = set(faces[other].tolist()) - strip_vertices
                    if len(new) == 1 and (best is None or score[other] < score[best]):
                        best = other
        strip.append(best)
        strip_vertices.update(faces[best].tolist())
    keep = np.ones(len(faces), bool)
    keep[strip] = False
    rim = np.array(sorted(strip_vertices), np.int64)
    vertices = vertices.copy()
    half_width = np.abs(end[0] - start[0]) / 2 + 0.004
    centre = (start + end) / 2
    opening = 0.0004 + 0.0011 * np.sqrt(np.clip(
        1 - ((vertices[rim, 0] - centre[0]) / half_width) ** 2, 0.0, 1.0))
    side = np.sign(vertices[rim, 1] - centre[1])
    vertices[rim, 1] = centre[1] + side * opening
    return vertices, faces[keep], rim

