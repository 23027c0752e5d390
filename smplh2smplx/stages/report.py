"""HTML/PNG report of a finished stage-2 run: how good the conversion is, in numbers and pictures.

`write_report` reads an output folder (errors.csv and the `.pkl` files) and writes a folder
that opens offline: `index.html` (no external CSS or JavaScript) beside the PNG files it
shows:
- summary statistics of v2v_mm over the converted poses and a histogram of it;
- a table of the worst poses;
- for the worst poses and a few random ones (seeded): the source mesh and the fitted
  target mesh overlaid (any pair of the model table), and the fitted mesh coloured by each masked vertex's distance to the
  deformation-transferred target, in front and side views.

A converted pose is a row of errors.csv whose `.pkl` exists (a run killed between the two
leaves rows that the next run replaces). Only the poses shown are posed and rendered, so a
report of 100,000 poses costs the same dozen pictures as one of fifty.

Pictures are drawn by `render.py` with matplotlib (shaded polygons, painter's algorithm),
which needs no GPU, OpenGL context or display: the report runs the same on a laptop, a
headless cluster node and CI, where pyrender or open3d would need a working OpenGL/EGL or
OSMesa stack.
"""
from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import roma
import torch
from tqdm import tqdm

from ..body.deformation import load_pair_transfer
from ..body.lbs import BodyModel
from ..errors import InputError
from ..family import KINDS, STAGE1_MODEL
from ..formats.body_models import load_body_model
from ..formats.errors_csv import ERRORS_CSV, ErrorRow, read_error_rows
from ..formats.files import atomic_write
from ..formats.mesh_folder import MESH_SUFFIXES, list_mesh_inputs, read_mesh_vertices
from ..formats.meshes import read_mesh_faces
from ..formats.param_files import parameter_path, pose_from_parameters, read_parameters
from ..formats.source_params import SOURCE_PARAMS, read_source_params
from ..render import RenderMesh, facing_azimuth, render_views
from ..settings import TransferOptions, is_unset

REPORT_DIR = "report"
INDEX = "index.html"
HISTOGRAM = "v2v_histogram.png"
NOT_CONVERTED = "not_converted.txt"          # pose ids of the mesh folder without a result
PICTURE_NAME = re.compile(r"pose_\d{6,}_(overlay|error)\.png")     # `render_pose`'s names
SOURCE_COLOR, FIT_COLOR = "#3a78c2", "#f08a24"     # blue source, orange fit
OUTSIDE_MASK_COLOR = "#bdbdbd"
UP_AXIS = "z"          # stage 1 keeps AMASS's raw root orientation: its world is z-up


@dataclass(frozen=True)
class RunStatistics:
    """Summary of v2v_mm (millimetres) over the converted poses of a run."""
    poses: int
    mean: float
    median: float
    p95: float
    max: float
    flagged: int
    not_converged: int

    @classmethod
    def from_rows(cls, rows: Sequence[ErrorRow]) -> RunStatistics:
        """Statistics of a non-empty list of `ErrorRow`.

        A row whose error is not finite (an old run's `inf`, a damaged table) is counted
        as not converged and left out of mean, median, p95 and max (NaN when no row is
        finite), so that any table gives a report.
        """
        errors = finite_errors(rows)
        summary = ([float(errors.mean()), float(np.median(errors)),
                    float(np.percentile(errors, 95)), float(errors.max())] if errors.size
                   else [math.nan] * 4)
        return cls(len(rows), *summary, flagged=sum(row.flagged for row in rows),
                   not_converged=sum(not row.converged or not math.isfinite(row.v2v_mean_mm)
                                     for row in rows))


def finite_errors(rows: Iterable[ErrorRow]) -> np.ndarray:
    """(N,) the finite v2v_mean_mm of `rows`."""
    errors = np.array([row.v2v_mean_mm for row in rows], dtype=np.float64)
    return errors[np.isfinite(errors)]


@dataclass(frozen=True)
class PoseView:
    """What the pictures of one pose show.

    source_vertices: (V_source, 3) source mesh; source_faces: (F_source, 3).
    fitted_vertices: (V_target, 3) the target model posed with the .pkl's parameters, its
        translation included; fitted_faces: (F_target, 3).
    vertex_error_mm: (V_target,) distance to the deformation-transferred target, NaN
        outside the mask.
    root_rotation: (3, 3) the fitted global orientation.
    labels: (source label, target label), e.g. ("SMPL-H", "SMPL-X").
    """
    source_vertices: np.ndarray
    source_faces: np.ndarray
    fitted_vertices: np.ndarray
    fitted_faces: np.ndarray
    vertex_error_mm: np.ndarray
    root_rotation: np.ndarray
    labels: tuple = ("source", "target")

    @property
    def mean_error_mm(self) -> float:
        return float(np.nanmean(self.vertex_error_mm))


# ----------------------------------------------------------------- choosing what to show

def converted_rows(output_dir: str | Path) -> tuple:
    """The rows of errors.csv whose .pkl exists, sorted by pose id, and how many lack one.

    Raises InputError naming the folder when it is missing or holds no converted pose.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise InputError(f"{output_dir}: output folder not found (run stage 2 first, or give "
                         "the folder with --output-dir PATH)")
    rows = read_error_rows(output_dir / ERRORS_CSV)
    kept = [rows[pose_id] for pose_id in sorted(rows)
            if parameter_path(output_dir, pose_id).exists()]
    if not kept:
        raise InputError(f"{output_dir}: no converted pose to report (needs {ERRORS_CSV} rows "
                         "and their <pose_id:06d>.pkl files; run stage 2 first)")
    return kept, len(rows) - len(kept)


def unconverted_poses(options: TransferOptions, rows: Iterable[ErrorRow]) -> tuple:
    """(how many poses the mesh folder holds, the sorted ids of those without a converted
    result: failed, or not converted yet). (0, []) when the mesh folder is not at hand."""
    if is_unset(options.mesh_dir) or not Path(options.mesh_dir).is_dir():
        return 0, []
    pose_ids = {item.pose_id for item in list_mesh_inputs(options.mesh_dir)
                if item.pose_id is not None}
    return len(pose_ids), sorted(pose_ids - {row.pose_id for row in rows})


def worst_rows(rows: Iterable[ErrorRow], count: int) -> list:
    """The `count` rows of largest v2v_mean_mm, worst first (ties: smaller pose id first);
    an error that is not a number (NaN) counts as the worst."""
    def badness(row):
        error = row.v2v_mean_mm
        return (not math.isnan(error), -error if not math.isnan(error) else 0.0, row.pose_id)
    return sorted(rows, key=badness)[:count]


def choose_poses(rows: Sequence[ErrorRow], count: int, seed: int = 0) -> tuple:
    """The poses to draw: the worst ceil(count / 2), then the rest at random among the others.

    Returns (worst rows, worst first; random rows, by pose id); the random pick depends
    only on `rows` and `seed`.
    """
    worst = worst_rows(rows, math.ceil(count / 2))
    shown = {row.pose_id for row in worst}
    others = [row for row in rows if row.pose_id not in shown]
    picked = np.random.default_rng(seed).choice(len(others), min(count - len(worst), len(others)),
                                                replace=False)
    return worst, sorted((others[i] for i in picked), key=lambda row: row.pose_id)


# ----------------------------------------------------------------- meshes of one pose

class PoseMeshes:
    """Poses the meshes of the pictures: the models and the deformation transfer, loaded once.

    Args:
        options: the run's `TransferOptions` (mesh folder, output folder, the pair, the
            target model, gender, deformation transfer, mask).
        smplh_model: the stage-1 model (SMPL-H) used for poses with no mesh file in the
            mesh folder (posed from source_params.npz); None: such poses are an error.
    """

    def __init__(self, options, smplh_model=None):
        self.options = options
        self.source, self.target = KINDS[options.source_model], KINDS[options.target_model]
        self.body = BodyModel(load_body_model(options.model_path(self.target.name),
                                              self.target.name, options.gender),
                              num_betas=options.fit.num_betas)
        self.faces = self.body.faces.numpy()
        pair = options.for_pair()
        self.deformation = load_pair_transfer(self.source.name, self.target.name,
                                              pair.deformation_transfer, pair.mask)
        self.smplh_model = smplh_model
        self._smplh = None
        self._source_params = None

    def source_mesh(self, pose_id: int) -> tuple:
        """(V, 3) vertices and (F, 3) faces of the pose's source mesh: the mesh file, else
        (stage-1 model sources) that model posed from source_params.npz."""
        mesh_dir = Path(self.options.mesh_dir)
        for suffix in MESH_SUFFIXES:
            path = mesh_dir / f"{pose_id:06d}{suffix}"
            if path.is_file():
                return (read_mesh_vertices(path, self.source),
                        read_mesh_faces(path, self.source.num_vertices))
        if self.source != STAGE1_MODEL:
            raise InputError(f"pose {pose_id}: no {pose_id:06d}.obj or .ply in {mesh_dir}")
        if self._source_params is None:
            self._source_params = read_source_params(mesh_dir / SOURCE_PARAMS)
        if pose_id not in self._source_params:
            raise InputError(f"pose {pose_id}: no {pose_id:06d}.obj in {mesh_dir} and no entry "
                             f"in {mesh_dir / SOURCE_PARAMS}")
        if self.smplh_model is None:
            raise InputError(f"pose {pose_id}: no {pose_id:06d}.obj in {mesh_dir}; posing it "
                             "from source_params.npz needs the SMPL-H model (config.py: "
                             "SMPLH_MODEL, or --smplh-model)")
        if self._smplh is None:
            self._smplh = BodyModel(load_body_model(self.smplh_model, STAGE1_MODEL.name))
        pose = torch.as_tensor(self._source_params[pose_id]).view(1, STAGE1_MODEL.num_joints, 3)
        with torch.no_grad():
            vertices = self._smplh(pose)[0][0].numpy()
        return vertices, self._smplh.faces.numpy()

    def pose_view(self, pose_id: int) -> PoseView:
        """The `PoseView` of one converted pose."""
        source, faces = self.source_mesh(pose_id)
        params = read_parameters(parameter_path(self.options.output_dir, pose_id),
                                 self.target.name)
        pose, betas, transl = pose_from_parameters(params, self.target.name)
        if len(betas) != self.body.num_betas:
            raise InputError(f"{parameter_path(self.options.output_dir, pose_id)}: holds "
                             f"{len(betas)} betas, the run {self.body.num_betas}")
        with torch.no_grad():
            fitted = self.body(pose[None], betas[None], transl[None])[0][0].double().numpy()
        mask = self.deformation.mask_ids
        target = self.deformation.apply(source.astype(np.float64))
        error_mm = np.full(len(fitted), np.nan)
        error_mm[mask] = 1000.0 * np.linalg.norm(fitted[mask] - target[mask], axis=1)
        return PoseView(source, faces, fitted, self.faces, error_mm,
                        roma.rotvec_to_rotmat(pose[0]).double().numpy(),
                        (self.source.label, self.target.label))


# ----------------------------------------------------------------- figures

def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is >= value (> 0)."""
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1.0, 2.0, 2.5, 5.0, 10.0) if step * power >= value)


def render_pose(view: PoseView, folder: Path, pose_id: int, error_max_mm: float) -> tuple:
    """Write the overlay and the error picture of one pose, each in front and side view.

    Args:
        view: the pose's `PoseView`.
        folder: where the PNG files go.
        error_max_mm: top of the error colour scale (larger errors take its colour).
    Returns:
        the file names of the overlay and the error picture.
    """
    front = facing_azimuth(view.root_rotation)
    views = (front, front - 90.0)             # render.py's "side": seen from the body's right
    overlay, error = f"pose_{pose_id:06d}_overlay.png", f"pose_{pose_id:06d}_error.png"
    render_views([RenderMesh(view.source_vertices, view.source_faces, color=SOURCE_COLOR),
                  RenderMesh(view.fitted_vertices, view.fitted_faces, color=FIT_COLOR)],
                 folder / overlay, views=views, up=UP_AXIS,
                 title=f"{pose_id:06d}: {view.labels[0]} blue, {view.labels[1]} orange")
    masked = np.isfinite(view.vertex_error_mm)[view.fitted_faces].all(axis=1)
    render_views([RenderMesh(view.fitted_vertices, view.fitted_faces[masked],
                             values=np.nan_to_num(view.vertex_error_mm), vmin=0.0,
                             vmax=error_max_mm),
                  RenderMesh(view.fitted_vertices, view.fitted_faces[~masked],
                             color=OUTSIDE_MASK_COLOR)],
                 folder / error, views=views, up=UP_AXIS,
                 colorbar_label="distance to the target (mm)",
                 title=f"{pose_id:06d}: {view.labels[1]} vertex error (grey: not masked)")
    return overlay, error


def plot_histogram(errors: np.ndarray, statistics: RunStatistics, path: Path,
                   flag_threshold_mm: float) -> Path:
    """Histogram of per-pose v2v_mm (N,) with the mean, median, 95th percentile and the
    flag threshold marked; written to `path`."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9.0, 3.8), dpi=100)
    axes = figure.add_subplot()
    # A damaged table may hold any finite number; their range must not overflow.
    errors = np.clip(errors, -1e12, 1e12)
    edges = np.histogram_bin_edges(errors, bins="auto")
    if len(edges) > 61:
        edges = np.histogram_bin_edges(errors, bins=60)
    axes.hist(errors, bins=edges, color=SOURCE_COLOR, edgecolor="white", linewidth=0.5)
    marks = [(statistics.mean, "mean", "black", "-"), (statistics.median, "median", "black", ":"),
             (statistics.p95, "95th percentile", "#555555", "--"),
             (flag_threshold_mm, "flag threshold", "#c0392b", "-.")]
    margin = 0.05 * (edges[-1] - edges[0])
    low, high = edges[0] - margin, edges[-1] + margin
    for value, name, color, style in marks:
        if not math.isfinite(value):          # no finite error at all: nothing to mark
            continue
        # A threshold far above every pose would squeeze the bars into one edge: it is
        # left off the axis and its legend entry says so.
        where = "" if low <= value <= high else " (off the axis)"
        # A damaged table's 1e308 in fixed point is a 300-digit label, which no layout fits.
        shown = f"{value:.2f}" if abs(value) < 1e6 else f"{value:.3g}"
        axes.axvline(value, color=color, linestyle=style, linewidth=1.2,
                     label=f"{name}: {shown} mm{where}")
    axes.set_xlim(low, high)
    axes.set_xlabel("v2v_mm of a pose: mean distance of the fitted mesh's masked vertices "
                    "to the target (mm)")
    axes.set_ylabel("number of poses")
    axes.set_title(f"Per-pose vertex error over {statistics.poses} converted poses")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path, facecolor="white")
    return Path(path)


# ----------------------------------------------------------------- the page

PAGE_STYLE = """
body { font-family: sans-serif; max-width: 1250px; margin: 1.5em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
th { background: #f2f2f2; } td.name { text-align: left; }
figure { margin: 0.4em 0 1.4em; } figcaption { color: #444; font-size: 0.92em; }
img { max-width: 100%; border: 1px solid #ddd; }
.pair figure { flex: 1 1 0; min-width: 320px; margin: 0; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; vertical-align: middle;
          border: 1px solid #888; }
.pair { display: flex; flex-wrap: wrap; gap: 0.8em; align-items: flex-start; }
"""


def _swatch(color):
    return f'<span class="swatch" style="background:{color}"></span>'


def _yes_no(value):
    return "yes" if value else "no"


def summary_table(statistics: RunStatistics, flag_threshold_mm: float) -> str:
    """HTML table of `RunStatistics`; each value cell has an id (v2v-mean, ...) for tools."""
    flagged = (f"flagged in {ERRORS_CSV} (v2v_mm above flag_threshold_mm, "
               f"{flag_threshold_mm:g} mm in this config)")
    cells = [("poses", "converted poses", f"{statistics.poses}"),
             ("v2v-mean", "v2v_mm mean", f"{statistics.mean:.2f}"),
             ("v2v-median", "v2v_mm median", f"{statistics.median:.2f}"),
             ("v2v-p95", "v2v_mm 95th percentile", f"{statistics.p95:.2f}"),
             ("v2v-max", "v2v_mm max", f"{statistics.max:.2f}"),
             ("flagged", flagged, f"{statistics.flagged}"),
             ("not-converged", "not converged (stopped at the iteration limit)",
              f"{statistics.not_converged}")]
    lines = [f'<tr><td class="name">{html.escape(name)}</td><td id="{key}">{value}</td></tr>'
             for key, name, value in cells]
    return '<table id="summary">\n' + "\n".join(lines) + "\n</table>"


def worst_table(rows: Sequence[ErrorRow], shown_ids: Iterable[int]) -> str:
    """HTML table of the worst rows; a pose with pictures links to them."""
    header = ("<tr><th>rank</th><th>pose id</th><th>v2v_mm mean</th><th>v2v_mm max</th>"
              "<th>iterations</th><th>converged</th><th>flagged</th></tr>")
    lines = []
    for rank, row in enumerate(rows, start=1):
        name = f"{row.pose_id:06d}"
        if row.pose_id in shown_ids:
            name = f'<a href="#pose-{name}">{name}</a>'
        lines.append(f"<tr><td>{rank}</td><td>{name}</td><td>{row.v2v_mean_mm:.2f}</td>"
                     f"<td>{row.v2v_max_mm:.2f}</td><td>{row.iterations}</td>"
                     f"<td>{_yes_no(row.converged)}</td><td>{_yes_no(row.flagged)}</td></tr>")
    return '<table id="worst">\n' + header + "\n" + "\n".join(lines) + "\n</table>"


def pose_section(row: ErrorRow, label: str, view: PoseView, files: Sequence[Path]) -> str:
    """HTML of one pose's pictures; `label` says why it is shown (e.g. "worst #1")."""
    name = f"{row.pose_id:06d}"
    overlay, error = (html.escape(file) for file in files)
    return f"""<h3 id="pose-{name}">pose {name} ({html.escape(label)})</h3>
<p>errors.csv: v2v_mm mean {row.v2v_mean_mm:.2f} mm, max {row.v2v_max_mm:.2f} mm,
{row.iterations} iterations, converged: {_yes_no(row.converged)},
flagged: {_yes_no(row.flagged)}. In these pictures:
mean {view.mean_error_mm:.2f} mm, max {np.nanmax(view.vertex_error_mm):.2f} mm.</p>
<div class="pair">
<figure><a href="{overlay}"><img src="{overlay}" alt="pose {name}, source and fit overlaid"></a>
<figcaption>{_swatch(SOURCE_COLOR)} source {view.labels[0]} mesh, {_swatch(FIT_COLOR)} fitted
{view.labels[1]} mesh; left: front view, right: seen from the body's right.</figcaption></figure>
<figure><a href="{error}"><img src="{error}" alt="pose {name}, vertex error"></a>
<figcaption>Fitted {view.labels[1]} coloured by distance to the target;
{_swatch(OUTSIDE_MASK_COLOR)} vertices outside the mask.</figcaption></figure>
</div>"""


def page(output_dir: Path, statistics: RunStatistics, flag_threshold_mm: float,
         worst: Sequence[ErrorRow], shown: Sequence[ErrorRow], views: dict, files: dict,
         without_pkl: int, error_max_mm: float, labels: tuple,
         unconverted: tuple = (0, [])) -> str:
    """The text of index.html.

    Args:
        worst: rows of the worst-pose table; shown: [(row, label)] of the poses drawn;
        views, files: {pose_id: PoseView} and {pose_id: (overlay, error) file names}.
        without_pkl: rows of errors.csv left out because their .pkl is missing.
        labels: (source label, target label).
        unconverted: `unconverted_poses` of the run.
    """
    source, target = labels
    note = ""
    if without_pkl:
        note = (f"<p>{without_pkl} rows of {ERRORS_CSV} have no .pkl file (a batch that was "
                "interrupted; the next run fits them again) and are left out.</p>")
    total, missing = unconverted
    if total:
        note += (f"<p>The mesh folder holds {total} poses: {total - len(missing)} converted, "
                 f"{len(missing)} without a result (failed, or not converted yet: the run's "
                 f"summary says which; listed in <a href='{NOT_CONVERTED}'>{NOT_CONVERTED}"
                 "</a>).</p>")
    sections = "\n".join(pose_section(row, label, views[row.pose_id], files[row.pose_id])
                         for row, label in shown)
    pictures = "<p>No poses drawn (0 asked for).</p>"
    if shown:
        pictures = f"""<p>{_swatch(SOURCE_COLOR)} blue: the source {source} mesh;
{_swatch(FIT_COLOR)} orange: the fitted {target} mesh, posed with the parameters of its .pkl
(its translation included).
Where the two surfaces coincide their colours mix in patches; a patch of one colour is where
that mesh lies outside the other.
The target is the source mesh mapped onto
{target} by the deformation transfer (the identity between models of one mesh); the error pictures colour each masked vertex by its
distance to it, on one scale for every pose (0 to {error_max_mm:g} mm; larger distances take
the top colour), and grey vertices lie outside the mask (not fitted, not measured).</p>
{sections}"""
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{source} to {target} conversion report</title>
<style>{PAGE_STYLE}</style></head>
<body>
<h1>{source} to {target} conversion report</h1>
<p>Output folder: <code>{html.escape(str(output_dir))}</code>. v2v_mm is the mean distance
between the fitted {target} mesh and the deformation-transferred target over the masked
{target} vertices, in millimetres, one value per pose (the v2v_mean_mm column of
{ERRORS_CSV}).</p>
{note}
<h2>Summary</h2>
{summary_table(statistics, flag_threshold_mm)}
<figure><img src="{HISTOGRAM}" alt="histogram of per-pose v2v_mm"></figure>
<h2>Worst poses</h2>
{worst_table(worst, set(files))}
<h2>Pictures</h2>
{pictures}
</body>
</html>
"""


# ----------------------------------------------------------------- entry points

def write_report(options: TransferOptions, report_dir: Optional[Path] = None,
                 num_poses: int = 12, smplh_model: Optional[Path] = None, table_rows: int = 20,
                 seed: int = 0, progress: bool = True,
                 log: Callable[[str], None] = print) -> Path:
    """Write the report of a finished stage-2 run; returns the path of its index.html.

    Args:
        options: the run's `TransferOptions` (its output folder is reported; its mesh
            folder, models, deformation transfer and mask pose the pictures).
        report_dir: where to write; default `<output folder>/report`.
        num_poses: poses drawn: the worst ceil(num_poses / 2), the others at random.
        smplh_model: the stage-1 model (SMPL-H) for poses with no mesh file (posed from
            source_params.npz); default options.smplh_model.
        table_rows: rows of the worst-pose table.
        seed: seed of the random pick.
        progress: show a progress bar while rendering.
        log: where the line counting the poses without a result goes (when there are).
    Raises:
        InputError naming the folder when it holds no converted pose, or the file or pose
        a picture cannot be made from.
    """
    if num_poses < 0 or table_rows < 0:
        raise InputError(f"report: the numbers of poses to draw and to list must be >= 0, "
                         f"got {num_poses} and {table_rows}")
    output_dir = Path(options.output_dir)
    rows, without_pkl = converted_rows(output_dir)
    report_dir = output_dir / REPORT_DIR if report_dir is None else Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    statistics = RunStatistics.from_rows(rows)
    plot_histogram(finite_errors(rows), statistics, report_dir / HISTOGRAM,
                   options.flag_threshold_mm)

    worst, random_rows = choose_poses(rows, num_poses, seed)
    shown = ([(row, f"worst #{rank}") for rank, row in enumerate(worst, start=1)]
             + [(row, "random pick") for row in random_rows])
    views, files, error_max_mm = {}, {}, 1.0
    if shown:
        if smplh_model is None and not is_unset(options.smplh_model):
            smplh_model = options.smplh_model
        meshes = PoseMeshes(options, smplh_model)
        views = {row.pose_id: meshes.pose_view(row.pose_id) for row, _ in shown}
        # One colour scale for every picture, so that colours compare across poses.
        pooled = np.concatenate([view.vertex_error_mm for view in views.values()])
        top = float(np.nanpercentile(pooled, 99)) if np.isfinite(pooled).any() else 1.0
        error_max_mm = nice_ceiling(min(max(top, 1e-3), 1e9) if math.isfinite(top) else 1e9)
    for row, _label in tqdm(shown, desc="rendering", unit="pose", disable=not progress):
        files[row.pose_id] = render_pose(views[row.pose_id], report_dir, row.pose_id,
                                         error_max_mm)
    # Pictures of an earlier report of this folder that this one does not show: only names
    # a report gives (`--report-dir` may be a folder that holds other pictures).
    written = {name for pair in files.values() for name in pair}
    for path in report_dir.glob("pose_*.png"):
        if PICTURE_NAME.fullmatch(path.name) and path.name not in written:
            path.unlink()
    unconverted = unconverted_poses(options, rows)
    with atomic_write(report_dir / NOT_CONVERTED, "w") as handle:       # empty: none
        handle.writelines(f"{pose_id:06d}\n" for pose_id in unconverted[1])
    if unconverted[1]:
        log(f"{len(unconverted[1])} of the mesh folder's {unconverted[0]} poses have no result "
            f"(failed, or not converted yet): {report_dir / NOT_CONVERTED}")
    index = report_dir / INDEX
    with atomic_write(index, "w") as handle:
        handle.write(page(output_dir, statistics, options.flag_threshold_mm,
                          worst_rows(rows, table_rows), shown, views, files, without_pkl,
                          error_max_mm,
                          (KINDS[options.source_model].label, KINDS[options.target_model].label),
                          unconverted))
    return index


def report_from_options(options: TransferOptions, report_dir: str | Path | None = None,
                        num_poses: int = 12, progress: bool = True) -> Path:
    """`write_report` for the run `options` (a `TransferOptions`) describes.

    The SMPL-H model (smplh_model) is used only for poses without a mesh file, so an unset
    one is no error here.
    """
    return write_report(options, report_dir, num_poses, progress=progress)
