"""The report of a finished stage-2 run: numbers against errors.csv, pictures, bad input.

One short stage 2 (FAST fit, a handful of poses of the kit's AMASS sequences) feeds every
test; only `report` renders pictures (three poses), the other tests reuse it or draw none.
"""
import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import run_transfer
from smplh2smplx.formats.body_models import load_smplh
from smplh2smplx.errors import InputError
from smplh2smplx.fit.fitter import FitSettings
from smplh2smplx.body.lbs import BodyModel
from smplh2smplx.formats.meshes import write_obj
from smplh2smplx.stages.report import PoseMeshes, choose_poses, converted_rows, write_report
from smplh2smplx.settings import TransferOptions
from smplh2smplx.stages.transfer import run_transfer as transfer

POSE_IDS = [5, 42, 123, 777, 2024, 31337]
FAST = FitSettings(max_iterations=3, refine_iterations=1, fit_vertices=500)
DRAWN = 3                                  # the 2 worst poses and 1 random one


@pytest.fixture(scope="module")
def run(kit, tmp_path_factory):
    """Stage 1 (meshes and source_params.npz) and a FAST stage 2 of POSE_IDS."""
    root = tmp_path_factory.mktemp("report_run")
    frames = np.concatenate([np.load(path)["poses"][:, :156]
                             for path in sorted(Path(kit.amass).rglob("*_poses.npz"))])
    poses = frames[np.linspace(0, len(frames) - 1, len(POSE_IDS)).astype(int)].astype(np.float32)
    smplh = load_smplh(kit.smplh_npz)
    with torch.no_grad():
        vertices = BodyModel(smplh)(torch.as_tensor(poses).view(-1, 52, 3))[0].numpy()
    mesh_dir = root / "meshes"
    for pose_id, mesh in zip(POSE_IDS, vertices):
        write_obj(mesh_dir / f"{pose_id:06d}.obj", mesh, smplh.faces)
    np.savez(mesh_dir / "source_params.npz", pose_ids=np.array(POSE_IDS), poses=poses)
    options = TransferOptions(mesh_dir=mesh_dir, output_dir=root / "out",
                              smplx_model=kit.body_models, deformation_transfer=kit.deftrafo,
                              mask=kit.mask, poses_per_batch=len(POSE_IDS), device="cpu",
                              fit=FAST, flag_threshold_mm=2.0)
    summary = transfer(options, progress=False)
    assert summary.done == len(POSE_IDS)
    return options


@pytest.fixture(scope="module")
def report(run):
    index = write_report(run, num_poses=DRAWN, table_rows=4, progress=False)
    return index, index.read_text()


def csv_rows(path):
    """errors.csv read with the csv module alone, as dicts of floats."""
    with open(path, newline="") as handle:
        return [{key: float(value) for key, value in row.items()}
                for row in csv.DictReader(handle)]


def cell(page, key):
    return float(re.search(rf'id="{key}">([0-9.]+)<', page).group(1))


def test_summary_equals_errors_csv(run, report):
    _, page = report
    rows = csv_rows(run.output_dir / "errors.csv")
    errors = np.array([row["v2v_mean_mm"] for row in rows])
    assert cell(page, "poses") == len(rows) == len(POSE_IDS)
    for key, expected in [("v2v-mean", errors.mean()), ("v2v-median", np.median(errors)),
                          ("v2v-p95", np.percentile(errors, 95)), ("v2v-max", errors.max())]:
        assert cell(page, key) == pytest.approx(expected, abs=0.005), key
    assert cell(page, "flagged") == sum(row["flagged"] for row in rows)
    assert cell(page, "not-converged") == sum(1 - row["converged"] for row in rows)


def test_worst_table_lists_the_largest_errors(run, report):
    _, page = report
    table = page[page.index('<table id="worst">'):]
    table = table[:table.index("</table>")]
    listed = [int(match) for match in re.findall(r"<tr><td>\d+</td><td>(?:<a [^>]*>)?(\d+)", table)]
    by_error = sorted(csv_rows(run.output_dir / "errors.csv"),
                      key=lambda row: (-row["v2v_mean_mm"], row["pose_id"]))
    assert listed == [int(row["pose_id"]) for row in by_error[:4]]


def test_page_is_offline_and_its_pictures_exist(report):
    index, page = report
    sources = re.findall(r'(?:src|href)="([^"#]+)"', page)
    assert sources and not [source for source in sources if ":" in source or "/" in source]
    pictures = sorted(path.name for path in index.parent.glob("*.png"))
    assert sorted(set(sources)) == pictures
    assert len(pictures) == 1 + 2 * DRAWN                      # histogram, 2 per drawn pose
    assert "<script" not in page and "<link" not in page


def test_pictures_are_not_blank(report):
    import matplotlib.image
    index, _ = report
    for path in index.parent.glob("*.png"):
        pixels = matplotlib.image.imread(path)[..., :3]
        rgb = (pixels * 255).astype(np.int64).reshape(-1, 3)
        colours = len(np.unique(rgb @ np.array([65536, 256, 1])))
        drawn = (pixels < 0.95).any(axis=-1).mean()
        assert colours > 50, (path.name, colours)
        assert 0.05 < drawn < 0.7, (path.name, drawn)


def test_drawn_poses_are_the_worst_then_seeded_random(run, report):
    rows, missing = converted_rows(run.output_dir)
    assert missing == 0
    worst, random_rows = choose_poses(rows, DRAWN, seed=0)
    errors = sorted(row.v2v_mean_mm for row in rows)
    assert [row.v2v_mean_mm for row in worst] == errors[::-1][:2]
    assert choose_poses(rows, DRAWN, seed=0) == (worst, random_rows)
    index, _ = report
    drawn = {int(path.name[5:11]) for path in index.parent.glob("pose_*_error.png")}
    assert drawn == {row.pose_id for row in worst + random_rows}


def test_picture_error_matches_errors_csv(run):
    """The per-vertex error of the pictures (translation aligned by the mean offset) averages
    to the v2v_mm of errors.csv (the fit's own translation is the least-squares one)."""
    meshes = PoseMeshes(run)
    rows, _ = converted_rows(run.output_dir)
    for row in rows[:2]:
        assert meshes.pose_view(row.pose_id).mean_error_mm == pytest.approx(
            row.v2v_mean_mm, rel=0.05, abs=0.05)


def test_source_mesh_from_params_when_the_mesh_file_is_gone(run, kit, tmp_path):
    mesh_dir = tmp_path / "meshes"
    shutil.copytree(run.mesh_dir, mesh_dir)
    from_file = PoseMeshes(run).source_mesh(POSE_IDS[0])
    (mesh_dir / f"{POSE_IDS[0]:06d}.obj").unlink()
    options = TransferOptions(**{**vars(run), "mesh_dir": mesh_dir})
    with pytest.raises(InputError, match="SMPL-H model"):
        PoseMeshes(options).source_mesh(POSE_IDS[0])
    from_params = PoseMeshes(options, smplh_model=kit.smplh_npz).source_mesh(POSE_IDS[0])
    np.testing.assert_allclose(from_params[0], from_file[0], atol=1e-5)
    np.testing.assert_array_equal(from_params[1], from_file[1])


def test_poses_of_the_mesh_folder_without_a_result_are_counted_and_listed(run, tmp_path):
    """After shards on a cluster, which poses have no result (failed, or a shard not run):
    on the page, in not_converted.txt, and in one line where the command was run."""
    mesh_dir = tmp_path / "meshes"
    shutil.copytree(run.mesh_dir, mesh_dir)
    shutil.copy(mesh_dir / f"{POSE_IDS[0]:06d}.obj", mesh_dir / "000009.obj")
    options = TransferOptions(**{**vars(run), "mesh_dir": mesh_dir})
    lines = []
    index = write_report(options, report_dir=tmp_path / "report", num_poses=0,
                         progress=False, log=lines.append)
    assert (f"holds {len(POSE_IDS) + 1} poses: {len(POSE_IDS)} converted, 1 without a result"
            in index.read_text())
    assert (index.parent / "not_converted.txt").read_text() == "000009\n"
    assert lines == [f"1 of the mesh folder's {len(POSE_IDS) + 1} poses have no result (failed, "
                     f"or not converted yet): {index.parent / 'not_converted.txt'}"]
    lines.clear()
    index = write_report(run, report_dir=tmp_path / "report", num_poses=0, progress=False,
                         log=lines.append)
    assert lines == []
    assert f"{len(POSE_IDS)} converted, 0 without" in index.read_text()
    assert (index.parent / "not_converted.txt").read_text() == ""


def test_a_report_removes_only_its_own_earlier_pictures(run, tmp_path):
    """A second report into the folder of a first drops the first's pictures it no longer
    shows, and keeps every other file (`--report-dir` may be a folder of one's own)."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    own = ["pose_1.png", "pose_holiday.png", "pose_000001_overlay.jpg", "notes.txt"]
    for name in own:
        (folder / name).write_bytes(b"mine")
    write_report(run, report_dir=folder, num_poses=DRAWN, table_rows=4, progress=False)
    first = {path.name for path in folder.glob("pose_*_error.png")}
    assert len(first) == DRAWN
    write_report(run, report_dir=folder, num_poses=0, table_rows=4, progress=False)
    assert not list(folder.glob("pose_*_error.png"))          # none shown: none left
    assert all((folder / name).read_bytes() == b"mine" for name in own)


def test_missing_or_empty_output_folder(run, tmp_path):
    for folder in (tmp_path / "nowhere", tmp_path):
        options = TransferOptions(**{**vars(run), "output_dir": folder})
        with pytest.raises(InputError, match=re.escape(str(folder))):
            write_report(options, progress=False)


def test_command_line(run, tmp_path, capsys):
    paths = ["--mesh-dir", str(run.mesh_dir), "--smplx-model", str(run.smplx_model),
             "--deformation-transfer", str(run.deformation_transfer), "--mask", str(run.mask)]
    argv = ["--mode", "report", "--report-poses", "0", "--report-dir", str(tmp_path / "report"),
            "--output-dir", str(run.output_dir), *paths]
    assert run_transfer.main(argv) == 0
    assert (tmp_path / "report" / "index.html").is_file()
    assert str(tmp_path / "report" / "index.html") in capsys.readouterr().out
    argv[argv.index(str(run.output_dir))] = str(tmp_path / "none")
    argv[:2] = ["--report"]                  # the spelling before --mode still works
    assert run_transfer.main(argv) == 2
    assert str(tmp_path / "none") in capsys.readouterr().err
