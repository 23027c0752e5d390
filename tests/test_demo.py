"""The quick-start demo end to end: stage 1, stage 2 and the report on the synthetic kit."""
import json
import shutil

import numpy as np

from synthetic_kit.demo import run_demo
from smplh2smplx.formats.errors_csv import ERRORS_CSV, read_error_rows
from smplh2smplx.formats.param_files import read_parameters
from smplh2smplx.formats.sequence_files import read_motion
from smplh2smplx.formats.sequences_csv import SEQUENCES_CSV, read_sequence_rows


def human_pose_ids(kit):
    """PoseFix-H and PoseScript-H ids, computed from the annotation files directly."""
    pairs = json.loads(kit.posefix_pairs.read_text())
    posefix = {pose for pair in json.loads(kit.posefix_human.read_text())
               for pose in pairs[int(pair)]}
    return posefix | {int(pose) for pose in json.loads(kit.posescript_human.read_text())}


def test_demo_converts_every_human_pose_and_reports(kit, tmp_path):
    output = tmp_path / "demo"
    # Reuse the session's kit (no rewrite), without the models the demo does not read.
    shutil.copytree(kit.root, output / "kit",
                    ignore=shutil.ignore_patterns("smpl", "male", "female", "*MALE*"))
    lines = []
    summary = run_demo(output, device="cpu", report_poses=2, log=lines.append)

    expected = human_pose_ids(kit)
    meshes = {int(path.stem) for path in (output / "smplh_meshes").glob("*.obj")}
    params = {int(path.stem) for path in (output / "smplx_params").glob("*.pkl")}
    assert meshes == params == expected
    assert summary.done == len(expected) and not summary.failed
    rows = read_error_rows(output / "smplx_params" / ERRORS_CSV)
    assert set(rows) == expected
    errors = np.array([row.v2v_mean_mm for row in rows.values()])
    assert np.isfinite(errors).all() and errors.max() < 10.0
    read_parameters(output / "smplx_params" / f"{min(expected):06d}.pkl", "smplx")
    assert (output / "report" / "index.html").is_file()
    assert any("v2v_mm: mean" in line for line in lines)

    # The kit's AMASS (SMPL-H) sequences, whole, in SMPL-X at 30 fps, one row each.
    motions = output / "smplx_motions"
    sources = {path.relative_to(output / "kit").as_posix(): read_motion(path)
               for path in (output / "kit" / "amass").rglob("*_poses.npz")}
    rows = read_sequence_rows(motions / SEQUENCES_CSV)
    assert sorted(rows) == sorted(sources) and len(rows) >= 2
    for name, source in sources.items():
        written = read_motion(motions / name.replace("_poses.npz", "_stageii.npz"))
        assert written.kind == "smplx" and written.framerate == 30.0
        assert source.framerate == 60.0 and len(written.poses) == len(source.poses[::2])
        assert rows[name].frames == len(written.poses) and rows[name].v2v_mean_mm < 10.0

    # A second run converts nothing again: both stages skip what is written.
    lines = []
    again = run_demo(output, device="cpu", report_poses=1, log=lines.append)
    assert again.done == 0 and again.skipped == len(expected)
    assert any(line.startswith(f"sequences: 0 converted, {len(sources)} already done")
               for line in lines)
