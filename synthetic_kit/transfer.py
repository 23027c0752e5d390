"""Deformation transfers as the official ones are built: each target vertex as the
barycentric weights of its nearest point on a source triangle."""
import numpy as np
import scipy.sparse
import scipy.spatial
import trimesh


def closest_points_on_triangles(points, a, b, c):
    """(N, 3) barycentric weights of the point of triangle (a, b, c) nearest each point.

    All arguments are (N, 3); trimesh finds the points, then their barycentric weights.
    """
    triangles = np.stack([a, b, c], axis=1)
    closest = trimesh.triangles.closest_point(triangles, points)
    weights = trimesh.triangles.points_to_barycentric(triangles, closest)
    weights = np.clip(weights, 0.0, None)
    return weights / weights.sum(axis=1, keepdims=True)


def nearest_triangles(points, vertices, faces, candidates=24):
    """For each point: the nearest triangle, its barycentric weights and the distance."""
    centers = vertices[faces].mean(axis=1)
    _, near = scipy.spatial.cKDTree(centers).query(points, k=candidates)
    best_face = np.zeros(len(points), np.int64)
    best_weights = np.zeros((len(points), 3))
    best_distance = np.full(len(points), np.inf)
    for column in range(candidates):
        face = faces[near[:, column]]
        weights = closest_points_on_triangles(points, *(vertices[face[:, k]] for k in range(3)))
        closest = np.einsum("nk,nkc->nc", weights, vertices[face])
        distance = np.linalg.norm(points - closest, axis=1)
        better = distance < best_distance
        best_face[better] = near[better, column]
        best_weights[better] = weights[better]
        best_distance[better] = distance[better]
    return best_face, np.clip(best_weights, 0.0, 1.0), best_distance


def deformation_transfer_matrix(target_vertices, source_vertices, source_faces):
    """(len(target), 2 * len(source)) sparse matrix: each target vertex as barycentric
    weights of the nearest source triangle (the second half of the columns stays empty,
    as in smplh2smplx_deftrafo_setup.pkl). Also returns the distances."""
    face, weights, distance = nearest_triangles(target_vertices, source_vertices, source_faces)
    weights /= weights.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(len(target_vertices)), 3)
    matrix = scipy.sparse.csr_matrix(
        (weights.reshape(-1), (rows, source_faces[face].reshape(-1))),
        shape=(len(target_vertices), 2 * len(source_vertices)))
    return matrix, distance

