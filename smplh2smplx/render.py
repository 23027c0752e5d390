"""Headless shaded images of triangle meshes, drawn with matplotlib (no OpenGL needed).

Orthographic views of one or more meshes in one picture: faces are depth-sorted and
painted back to front (painter's algorithm), each shaded by the Lambert cosine of its
normal with a light near the camera. A mesh is drawn in one colour, or coloured by
per-vertex values through a colormap with a colour bar (for example a per-vertex error in
millimetres). Views are named for a body in the SMPL rest-pose convention (y up, facing
+z); a body in AMASS's z-up world can be turned upright with `up="z"`.

    render_views([RenderMesh(vertices, faces, color="tab:blue")], "body.png")
    render_views([RenderMesh(vertices, faces, values=error_mm, vmax=10)], "error.png",
                 colorbar_label="v2v error (mm)")
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

# (azimuth about the up axis, elevation above the horizon) of each named view, in degrees:
# where the camera stands. "side" looks at the body's right side (the body faces right).
NAMED_VIEWS = {"front": (0.0, 0.0), "left": (90.0, 0.0), "back": (180.0, 0.0),
               "right": (-90.0, 0.0), "side": (-90.0, 0.0), "top": (0.0, 90.0)}
# Rotations taking a world with this up axis to the y-up convention of the views.
_UPRIGHT = {"y": np.eye(3), "z": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])}


@dataclass
class RenderMesh:
    """One mesh to draw and how to colour it.

    vertices: (V, 3) positions.
    faces: (F, 3) vertex ids, counter-clockwise seen from outside.
    color: any matplotlib colour, used when `values` is None.
    values: optional (V,) scalars mapped through `cmap` over [vmin, vmax] (their range
        when None); a face takes the mean of its three vertices.
    alpha: opacity, 1 is opaque.
    """
    vertices: np.ndarray
    faces: np.ndarray
    color: object = "#c8c8c8"
    values: np.ndarray = None
    cmap: str = "viridis"
    vmin: float = None
    vmax: float = None
    alpha: float = 1.0

    def value_range(self) -> tuple:
        """(vmin, vmax) used to colour the values."""
        values = np.asarray(self.values, float)
        low = float(np.min(values)) if self.vmin is None else float(self.vmin)
        high = float(np.max(values)) if self.vmax is None else float(self.vmax)
        return low, high


def view_rotation(view: str | float, up: str = "y") -> np.ndarray:
    """(3, 3) rotation taking world coordinates to camera coordinates for a view.

    Args:
        view: a name of NAMED_VIEWS, an azimuth in degrees (a camera walking around the
            body counter-clockwise seen from above, starting in front of it), or a pair
            (azimuth, elevation) in degrees.
        up: the world's up axis, "y" (SMPL rest pose) or "z" (AMASS).
    In camera coordinates x points right, y up and z towards the camera.
    """
    if isinstance(view, str):
        view = NAMED_VIEWS[view]
    azimuth, elevation = (view, 0.0) if np.isscalar(view) else view
    azimuth, elevation = np.radians(float(azimuth)), np.radians(float(elevation))
    cos, sin = np.cos(azimuth), np.sin(azimuth)
    turn = np.array([[cos, 0.0, -sin], [0.0, 1.0, 0.0], [sin, 0.0, cos]])
    cos, sin = np.cos(elevation), np.sin(elevation)
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
    return tilt @ turn @ _UPRIGHT[up]


def shade_faces(vertices: np.ndarray, faces: np.ndarray, light: Sequence[float] = (0.3, 0.5, 1.0),
                ambient: float = 0.3) -> tuple:
    """Lambert brightness in [ambient, 1] and unit normals of each face.

    Args:
        vertices: (V, 3) in camera coordinates; faces: (F, 3).
        light: direction towards the light, in camera coordinates.
    Returns:
        brightness (F,), normals (F, 3).
    """
    corners = vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    light = np.asarray(light, float) / np.linalg.norm(light)
    brightness = ambient + (1.0 - ambient) * np.clip(normals @ light, 0.0, 1.0)
    return brightness, normals


def _base_colors(mesh):
    """(F, 3) RGB of a mesh's faces before shading."""
    import matplotlib
    faces = np.asarray(mesh.faces, np.int64)
    if mesh.values is None:
        return np.tile(matplotlib.colors.to_rgb(mesh.color), (len(faces), 1))
    low, high = mesh.value_range()
    values = np.asarray(mesh.values, float)[faces].mean(axis=1)
    scaled = np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0)
    return matplotlib.colormaps[mesh.cmap](scaled)[:, :3]


def project(meshes: Sequence[RenderMesh], rotation: np.ndarray, cull_back_faces: bool) -> tuple:
    """Depth-sorted 2-d triangles of all meshes in one view.

    Returns triangles (N, 3, 2) in camera x, y, far ones first, and their shaded RGBA
    colours (N, 4).
    """
    triangles, colors, depths = [], [], []
    for mesh in meshes:
        vertices = np.asarray(mesh.vertices, float) @ rotation.T
        faces = np.asarray(mesh.faces, np.int64)
        brightness, normals = shade_faces(vertices, faces)
        rgba = np.empty((len(faces), 4))
        rgba[:, :3] = _base_colors(mesh) * brightness[:, None]
        rgba[:, 3] = mesh.alpha
        if cull_back_faces:
            front = normals[:, 2] > 0.0
            faces, rgba = faces[front], rgba[front]
        corners = vertices[faces]
        triangles.append(corners[:, :, :2])
        depths.append(corners[:, :, 2].mean(axis=1))
        colors.append(rgba)
    order = np.argsort(np.concatenate(depths), kind="stable")
    return np.concatenate(triangles)[order], np.concatenate(colors)[order]


def render_views(meshes: Sequence[RenderMesh], path: str | Path,
                 views: Sequence[str | float] = ("front", "side"), up: str = "y",
                 colorbar_label: str | None = None, title: str | None = None,
                 height_inches: float = 5.0, dpi: int = 110, cull_back_faces: bool = True
                 ) -> Path:
    """Draw meshes from several viewpoints side by side and save the picture.

    Args:
        meshes: RenderMesh objects, or (vertices, faces) / (vertices, faces, color) tuples.
        path: image file to write (a format matplotlib writes, e.g. .png).
        views: names of NAMED_VIEWS, azimuths or (azimuth, elevation) pairs in degrees;
            one panel each, as wide as the view's content.
        up: the meshes' up axis, "y" (SMPL rest pose) or "z" (AMASS world).
        colorbar_label: label of the colour bar, drawn when a mesh is coloured by values
            (the bar shows the first such mesh's colormap and range).
        title: optional title over the panels.
        height_inches, dpi: size of the picture.
        cull_back_faces: skip faces turned away from the camera (right for closed meshes;
            switch off to see inside open ones, at twice the cost).
    Returns:
        the path written, as a Path.
    """
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

    meshes = [mesh if isinstance(mesh, RenderMesh) else RenderMesh(*mesh) for mesh in meshes]
    if not meshes:
        raise ValueError("render_views needs at least one mesh")
    panels = [project(meshes, view_rotation(view, up), cull_back_faces) for view in views]
    bounds = []
    for triangles, _ in panels:
        points = triangles.reshape(-1, 2)
        low, high = points.min(axis=0), points.max(axis=0)
        margin = 0.04 * float(np.max(high - low))
        bounds.append((low - margin, high + margin))
    widths = [float((high - low)[0] / (high - low)[1]) for low, high in bounds]
    coloured = [mesh for mesh in meshes if mesh.values is not None]
    top = 1.0 - (0.35 / height_inches if title else 0.01)
    panel_width = height_inches * (top - 0.01) * sum(widths)
    bar_width = 1.1 if coloured else 0.0
    figure = Figure(figsize=(panel_width + bar_width + 0.1, height_inches), dpi=dpi)
    total = panel_width + bar_width + 0.1
    left = 0.05 / total
    for (triangles, colors), (low, high), width in zip(panels, bounds, widths):
        share = height_inches * (top - 0.01) * width / total
        axes = figure.add_axes((left, 0.01, share, top - 0.01))
        axes.add_collection(PolyCollection(triangles, facecolors=colors, edgecolors=colors,
                                           linewidths=0.2))
        axes.set_xlim(low[0], high[0])
        axes.set_ylim(low[1], high[1])
        axes.set_aspect("equal")
        axes.set_axis_off()
        left += share
    if coloured:
        import matplotlib.cm
        low, high = coloured[0].value_range()
        mappable = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(low, high),
                                                cmap=coloured[0].cmap)
        bar_axes = figure.add_axes((left + 0.15 / total, 0.08, 0.18 / total, top - 0.16))
        bar = figure.colorbar(mappable, cax=bar_axes)
        if colorbar_label:
            bar.set_label(colorbar_label)
    if title:
        figure.suptitle(title, y=1.0 - 0.08 / height_inches, va="top")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, facecolor="white")
    return path


def facing_azimuth(root_rotation: np.ndarray, up: str = "z") -> float:
    """Azimuth in degrees (as `render.view_rotation` takes it) of a camera in front of a
    body whose root rotation is `root_rotation` (3, 3); SMPL bodies face +z at rest.

    A body lying face up or down has no horizontal facing; it is then seen from azimuth 0.
    """
    forward = view_rotation(0.0, up) @ np.asarray(root_rotation) @ np.array([0.0, 0.0, 1.0])
    if math.hypot(forward[0], forward[2]) < 0.2:
        return 0.0
    return math.degrees(math.atan2(forward[0], forward[2]))
