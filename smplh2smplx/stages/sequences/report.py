"""Report page of a sequence run: per-frame error and jitter of the worst sequences, and an
animation of the worst one (the source mesh and the fitted mesh side by side, each
titled with its model).

Reads `sequences.csv` and the per-frame quality files of an output folder; writes
`<output>/report/index.html` with PNG plots and one GIF, all headless (matplotlib's Agg
backend and `render.project`; Pillow writes the GIF). Only the worst sequence is posed
again, and only the frames of its animation.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import roma
import torch

from ...errors import InputError, one_line
from ...family import KINDS
from ...formats.files import atomic_write, shown_name
from ...formats.sequence_files import read_motion, read_motion_file
from ...formats.sequences_csv import SEQUENCES_CSV, read_sequence_rows
from ...render import facing_azimuth, project, view_rotation
from .convert import GenderModels, SequenceOptions, frame_spacing, pair_transfer
from .timeline import motion_at, shape_at
from .tree import (conversion_header, list_sequence_files, output_path, quality_path,
                   read_quality)

REPORT_DIR = "report"
NOT_CONVERTED = "not_converted.txt"      # the input's motion files without an output
SOURCE_COLOR, FIT_COLOR = "#3a78c2", "#f08a24"     # blue the source, orange the fit


def _figure(width, height):
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def plot_sequence(quality: dict, title: str, path: Path, target_label: str) -> Path:
    """Per-frame v2v_mm and joint acceleration (fitted and source) of one sequence fitted in
    the model `target_label` ("SMPL-X", ...)."""
    figure = _figure(8, 4.5)
    top, bottom = figure.subplots(2, 1, sharex=True)
    fps = quality["fps"]
    times = np.arange(len(quality["v2v_mm"])) / fps
    top.plot(times, quality["v2v_mm"], color=FIT_COLOR, linewidth=1)
    top.set_ylabel("v2v (mm)")
    top.set_title(title, fontsize=9, parse_math=False)      # a file name is data
    middle = times[1:-1]
    bottom.plot(middle, quality["source_acceleration"], color=SOURCE_COLOR, linewidth=1,
                label="source")
    bottom.plot(middle, quality["acceleration"], color=FIT_COLOR, linewidth=1,
                label=f"fitted {target_label}")
    bottom.set_ylabel("joint accel. (m/s²)")
    bottom.set_xlabel("time (s)")
    bottom.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    figure.savefig(path)
    return path


def _mesh_panel(axes, vertices, faces, color, bounds, rotation):
    """Draw one mesh seen through `rotation` (world to camera), in fixed bounds."""
    from matplotlib.collections import PolyCollection
    from ...render import RenderMesh
    triangles, colors = project([RenderMesh(vertices, faces, color=color)], rotation, True)
    # Unsmoothed faces without edges: no seams between them, and half the drawing time of
    # outlined ones (a GIF's palette takes the smoothing's half-tones away anyway).
    axes.add_collection(PolyCollection(triangles, facecolors=colors, edgecolors="none",
                                       linewidths=0, antialiased=False))
    axes.set_xlim(bounds[0][0], bounds[1][0])
    axes.set_ylim(bounds[0][1], bounds[1][1])
    axes.set_aspect("equal")
    axes.set_axis_off()


def animate(source_vertices: np.ndarray, source_faces: np.ndarray, fitted_vertices: np.ndarray,
            fitted_faces: np.ndarray, fps: float, path: Path, titles: tuple,
            azimuth: float = 0.0) -> Path:
    """A GIF of two meshes side by side, frame by frame (vertices (T, V, 3), z up), seen
    from a fixed camera at `azimuth` degrees, titled `titles` (left, right)."""
    from PIL import Image
    rotation = view_rotation(azimuth, "z")
    points = np.concatenate([source_vertices.reshape(-1, 3), fitted_vertices.reshape(-1, 3)])
    projected = points @ rotation.T
    low, high = projected[:, :2].min(0), projected[:, :2].max(0)
    margin = 0.05 * float((high - low).max())
    bounds = (low - margin, high + margin)
    images = []
    for frame in range(len(source_vertices)):
        figure = _figure(6, 4)
        for index, (vertices, faces, color) in enumerate(
                [(source_vertices[frame], source_faces, SOURCE_COLOR),
                 (fitted_vertices[frame], fitted_faces, FIT_COLOR)]):
            axes = figure.add_axes((index * 0.5, 0.0, 0.5, 0.92))
            _mesh_panel(axes, vertices, faces, color, bounds, rotation)
            axes.set_title(titles[index], fontsize=9)
        figure.canvas.draw()
        rgba = np.asarray(figure.canvas.buffer_rgba())
        images.append(Image.fromarray(rgba[..., :3].copy()))
    with atomic_write(path) as handle:
        images[0].save(handle, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(1000 / fps), loop=0)
    return path


class SequenceMeshes(NamedTuple):
    """Frames of a converted sequence, posed: the source's and the fitted target's vertices
    (N, V, 3) and faces, the azimuth the source faces at its first frame, and the source
    model's kind (each file's own when the run does not name one)."""
    source: np.ndarray
    source_faces: np.ndarray
    fitted: np.ndarray
    fitted_faces: np.ndarray
    azimuth: float
    source_kind: str


@torch.no_grad()
def posed_meshes(options: SequenceOptions, relative: str, frames: np.ndarray) -> SequenceMeshes:
    """The `SequenceMeshes` of `frames` of the output's frames of the input at `relative`."""
    input_root = Path(options.input_path)
    # Names start with the input folder's own name (run.list_sequence_files).
    source_path = input_root.resolve().parent / relative if input_root.is_dir() else input_root
    target = options.target_model
    arrays = read_motion_file(output_path(options.output_dir, relative, target), target)
    gender = str(arrays["gender"])
    sequence = read_motion(source_path, options.source_model, gender, options.source_fps)
    models = GenderModels(options, sequence.kind, gender,
                          pair_transfer(options, sequence.kind, target).mask_ids,
                          torch.device("cpu"))
    rate = float(arrays[KINDS[target].motion.rate_key])
    spacing, _ = frame_spacing(sequence.framerate, rate, source_path)
    source_poses, source_trans = motion_at(sequence.poses, sequence.trans, frames * spacing)
    betas = shape_at(sequence.betas, frames * spacing, models.source.num_betas)
    as_float = lambda array: torch.as_tensor(np.asarray(array), dtype=torch.float32)  # noqa
    source = models.source(as_float(source_poses).view(len(frames), -1, 3),
                           as_float(betas).expand(len(frames), -1),
                           as_float(source_trans))[0].numpy()
    body = models.target
    num_betas = min(body.num_betas, len(arrays["betas"]))
    fitted = body(torch.as_tensor(arrays["poses"][frames]).view(len(frames), -1, 3).to(
                      body.v_template),
                  torch.as_tensor(arrays["betas"][:num_betas])[None].expand(
                      len(frames), -1).to(body.v_template),
                  torch.as_tensor(arrays["trans"][frames]).to(body.v_template))[0].numpy()
    azimuth = facing_azimuth(roma.rotvec_to_rotmat(
        torch.as_tensor(source_poses[0, :3])).numpy())
    return SequenceMeshes(source, models.source.faces.numpy(), fitted, body.faces.numpy(),
                          azimuth, sequence.kind)


def unconverted_files(options: SequenceOptions, converted: set) -> tuple[int, list]:
    """(how many motion files of the input a run converts, the relative names of those
    without a converted output: failed, or not converted yet). Only the files' headers are
    read; subject shape files, files of the target's own or of another model, and files
    without readable poses are not counted (a run's summary names each). (0, []) when the
    input is not at hand."""
    if not Path(options.input_path).exists():
        return 0, []
    convertible = [relative for relative, path in list_sequence_files(options.input_path,
                                                                      options.output_dir)
                   if conversion_header(path, options)[0] is not None]
    return len(convertible), [name for name in convertible if name not in converted]


def write_sequence_report(options: SequenceOptions, num_worst: int = 5,
                          animation_frames: int = 40,
                          log: Callable[[str], None] = print) -> Path:
    """Write the report of `options.output_dir`; returns the path of its index.html.

    A sequence whose quality file is damaged is left out with one line (`log`)."""
    output_dir = Path(options.output_dir)
    rows = read_sequence_rows(output_dir / SEQUENCES_CSV)
    rows = {name: row for name, row in rows.items()
            if output_path(output_dir, name, options.target_model).is_file()}
    total, missing = unconverted_files(options, set(rows))
    rows = {name: row for name, row in rows.items()
            if quality_path(output_dir, name, options.target_model).is_file()}
    qualities = {}
    for name, row in list(rows.items()):
        try:
            qualities[name] = read_quality(
                quality_path(output_dir, name, options.target_model), row.frames)
        except InputError as error:
            log(f"skipped: {error}")
            del rows[name]
    if not rows:
        raise InputError(f"{output_dir}: no converted sequences to report on "
                         f"({SEQUENCES_CSV} and the outputs)")
    folder = output_dir / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(folder / NOT_CONVERTED, "w") as handle:
        handle.writelines(f"{shown_name(name)}\n" for name in missing)      # empty: none
    if missing:
        log(f"{len(missing)} of the input's {total} motion files have no output (failed, or "
            f"not converted yet): {folder / NOT_CONVERTED}")
    worst = sorted(rows.values(), key=lambda row: -row.v2v_mean_mm)[:num_worst]
    means = np.array([row.v2v_mean_mm for row in rows.values()])
    excess = np.array([row.jitter_excess for row in rows.values()])
    parts = ["<!doctype html><meta charset='utf-8'><title>Sequence conversion report</title>",
             "<h1>Sequence conversion report</h1>",
             f"<p>{len(rows)} sequences, {sum(r.frames for r in rows.values())} frames. "
             f"v2v_mm (per-sequence mean): mean {means.mean():.2f}, max {means.max():.2f}. "
             f"Jitter, fitted minus source: mean {excess.mean():+.3f} m/s², max "
             f"{excess.max():+.3f} m/s².</p>",
             f"<p>Input {html.escape(shown_name(options.input_path))}: {total} motion files to "
             f"convert, {total - len(missing)} converted, {len(missing)} without an output "
             "(failed, or not converted yet: the run's summary or its tasks' logs say which; "
             f"listed in <a href='{NOT_CONVERTED}'>{NOT_CONVERTED}</a>).</p>"
             if total else "",
             "<table border=1 cellpadding=3><tr><th>sequence</th><th>frames</th><th>fps</th>"
             "<th>v2v mean</th><th>p95</th><th>max</th><th>jitter</th><th>source jitter</th></tr>"]
    for row in worst:
        parts.append(f"<tr><td>{html.escape(row.sequence)}</td><td>{row.frames}</td>"
                     f"<td>{row.fps:g}</td><td>{row.v2v_mean_mm:.2f}</td>"
                     f"<td>{row.v2v_p95_mm:.2f}</td><td>{row.v2v_max_mm:.2f}</td>"
                     f"<td>{row.jitter:.3f}</td><td>{row.source_jitter:.3f}</td></tr>")
    parts.append("</table>")
    worst_row = worst[0]
    quality = qualities[worst_row.sequence]
    frames = np.unique(np.linspace(0, len(quality["v2v_mm"]) - 1,
                                   min(animation_frames, len(quality["v2v_mm"]))).astype(int))
    parts.append(f"<h2>Worst sequence: {html.escape(worst_row.sequence)}</h2>")
    animation = folder / "worst_sequence.gif"
    target_label = KINDS[options.target_model].label
    try:
        meshes = posed_meshes(options, worst_row.sequence, frames)
    except InputError as error:
        # The animation poses the source: an output folder read away from its input (a
        # licensed download), or a source moved since, still gets its page.
        log(f"note: no animation of the worst sequence: {one_line(error)}")
        animation.unlink(missing_ok=True)
        parts.append(f"<p>No animation: {html.escape(shown_name(one_line(error)))}</p>")
    else:
        shown_fps = quality["fps"] * len(frames) / max(len(quality["v2v_mm"]), 1)
        animate(meshes.source, meshes.source_faces, meshes.fitted, meshes.fitted_faces,
                max(shown_fps, 2.0), animation,
                (f"source {KINDS[meshes.source_kind].label}", f"fitted {target_label}"),
                meshes.azimuth)
        parts.append(f"<img src='{animation.name}' alt='source and fitted meshes'>")
    for index, row in enumerate(worst):
        name = f"sequence_{index:02d}.png"
        plot_sequence(qualities[row.sequence], row.sequence, folder / name, target_label)
        parts.append(f"<h3>{html.escape(row.sequence)}</h3><img src='{name}' alt='per-frame "
                     "error and acceleration'>")
    index_path = folder / "index.html"
    with atomic_write(index_path, "w") as handle:
        handle.write("\n".join(parts))
    return index_path
