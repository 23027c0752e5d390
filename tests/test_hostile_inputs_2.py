"""Issue 16, hostile and broken inputs round 2: one test (or a few) per row and principle.

Each test failed on main before its fix; docs/BAD_INPUTS.md names them. Fits are short
(a few iterations on one or two poses, or sequences of a few frames): they test the
drivers' handling of bad inputs and settings, not the fitter.
"""
import csv
import errno
import io
import json
import os
import pickle
import re
import shutil
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import convert_sequences
import extract_to_obj
import run_transfer
from smplh2smplx.body.lbs import BodyModel
from smplh2smplx.errors import InputError, OutputError
from smplh2smplx.fit.fitter import FitSettings
from smplh2smplx.formats import files as files_module, npz as npz_module
from smplh2smplx.formats.amass import read_smplh_poses
from smplh2smplx.formats.body_models import load_smplh, load_smplx
from smplh2smplx.formats.meshes import read_obj_vertices, write_obj
from smplh2smplx.formats.result_settings import RESULT_SETTINGS
from smplh2smplx.formats.sequence_files import (MotionSequence, read_motion, read_motion_file,
                                                write_motion)
from smplh2smplx.formats.sequences_csv import (SEQUENCES_CSV, merge_sequence_rows,
                                               read_sequence_rows)
from smplh2smplx.formats.param_files import read_parameters
from smplh2smplx.formats.source_params import (SOURCE_PARAMS, read_source_params,
                                               write_source_params)
from smplh2smplx.settings import TransferOptions, load_settings
from smplh2smplx.stages import transfer as transfer_module
from smplh2smplx.stages.sequences.convert import SequenceOptions
from smplh2smplx.stages.sequences.report import plot_sequence, write_sequence_report
from smplh2smplx.stages.sequences import run as sequences_run
from smplh2smplx.stages.sequences.run import run_sequences
from smplh2smplx.stages.sequences.tree import (list_sequence_files, output_path, quality_path,
                                               read_quality)

FAST = FitSettings(max_iterations=3, refine_iterations=1, fit_vertices=500)
SHORT_FIT = FitSettings(max_iterations=2)
QUIET = dict(progress=False, log=lambda _line: None)
OLD = time.time() - 3600


@pytest.fixture(scope="module")
def smplh_mesh(kit, tmp_path_factory):
    """A folder with one SMPL-H mesh (pose id 1) of the kit's model."""
    folder = tmp_path_factory.mktemp("meshes")
    body = BodyModel(load_smplh(kit.body_models / "smplh" / "SMPLH_NEUTRAL.pkl"))
    with torch.no_grad():
        vertices = body(torch.zeros(1, 52, 3))[0][0].numpy()
    write_obj(folder / "000001.obj", vertices, body.faces)
    return folder


def stage2_argv(kit, mesh_dir, output_dir, *extra):
    """run_transfer.py's arguments; `extra` are further --exp-opts settings."""
    return ["--mesh-dir", str(mesh_dir), "--output-dir", str(output_dir),
            "--smplh-model", str(kit.body_models), "--smplx-model", str(kit.body_models),
            "--deformation-transfer", str(kit.deftrafo), "--mask", str(kit.mask),
            "--device", "cpu", "--exp-opts", "fit.max_iterations=3",
            "fit.refine_iterations=1", "fit.fit_vertices=500", *extra]


def sequence_options(kit, input_path, output_dir, **changes):
    base = SequenceOptions(input_path=input_path, output_dir=output_dir,
                           model_paths={"smplh": kit.body_models,
                                        "smplx": kit.body_models},
                           deftrafo_path=kit.deftrafo, mask_path=kit.mask, device="cpu",
                           chunk_frames=8, shape_frames=4, fit=SHORT_FIT)
    return replace(base, **changes)


def short_tree(kit, root, frames=8, names=("a/one_poses.npz",)):
    """A tree of short copies of the kit's first sequence; the file paths."""
    with np.load(kit.amass / kit.sequences[0]) as archive:
        arrays = {key: archive[key] for key in archive.files}
    for key in ("poses", "trans", "dmpls"):
        arrays[key] = arrays[key][:frames]
    paths = []
    for name in names:
        path = Path(root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)
        paths.append(path)
    return paths


# ------------------------------------------------------------------ row 12 and its principle

def test_row12_stage2_refuses_a_folder_of_another_target_model_or_betas(
        kit, smplh_mesh, tmp_path, capsys):
    output = tmp_path / "out"
    smplh = ["--target-model", "smplh"]
    assert run_transfer.main(smplh + stage2_argv(kit, smplh_mesh, output)) == 0
    result = output / "000001.pkl"
    before = result.read_bytes()
    capsys.readouterr()
    for argv, expected in (
            (stage2_argv(kit, smplh_mesh, output), "target_model smplh (this run: smplx)"),
            (smplh + stage2_argv(kit, smplh_mesh, output, "fit.num_betas=16"),
             "num_betas 10 (this run: 16)"),
            (smplh + stage2_argv(kit, smplh_mesh, output, "gender=male"),
             "gender neutral (this run: male)")):
        code = run_transfer.main(argv)
        line = capsys.readouterr().err.strip()
        assert code == 2, line
        assert str(output) in line and expected in line
        assert "--overwrite" in line and "\n" not in line
        assert result.read_bytes() == before
    # --overwrite replaces them explicitly, and records the new settings.
    argv = smplh + stage2_argv(kit, smplh_mesh, output, "fit.num_betas=16")
    assert run_transfer.main(argv + ["--overwrite"]) == 0
    assert read_parameters(result, "smplh")["betas"].shape == (1, 16)
    assert json.loads((output / RESULT_SETTINGS).read_text())["num_betas"] == 16


def test_principle_resuming_an_overwrite_with_new_settings_converts_what_it_left(
        kit, smplh_mesh, tmp_path):
    """An --overwrite run with new settings records them before its first fit; stopped
    before the end (here: it converts one shard), it leaves results of the old settings
    under the new record. Resuming converts those again: none is kept as done."""
    meshes, output = tmp_path / "meshes", tmp_path / "out"
    meshes.mkdir()
    for pose_id in (1, 2):
        shutil.copy(smplh_mesh / "000001.obj", meshes / f"{pose_id:06d}.obj")
    smplh = ["--target-model", "smplh"]
    assert run_transfer.main(smplh + stage2_argv(kit, meshes, output)) == 0
    new = smplh + stage2_argv(kit, meshes, output, "fit.num_betas=16")
    assert run_transfer.main(new + ["--overwrite", "--shard-size", "1"]) == 0
    assert run_transfer.main(new) == 0
    assert [read_parameters(output / f"{pose_id:06d}.pkl", "smplh")["betas"].shape
            for pose_id in (1, 2)] == [(1, 16), (1, 16)]

    tree = tmp_path / "amass"
    short_tree(kit, tree, names=("a/one_poses.npz", "a/two_poses.npz"))
    out = tmp_path / "sequences"
    assert len(run_sequences(sequence_options(kit, tree, out, num_betas=10),
                             **QUIET).rows) == 2
    assert len(run_sequences(sequence_options(kit, tree, out, overwrite=True, shard_size=1),
                             **QUIET).rows) == 1
    resumed = run_sequences(sequence_options(kit, tree, out), **QUIET)
    assert [row.sequence for row in resumed.rows] == ["amass/a/two_poses.npz"]
    assert [len(read_motion_file(output_path(out, f"amass/a/{name}_poses.npz", "smplx"),
                                 "smplx")["betas"]) for name in ("one", "two")] == [16, 16]


def test_row5_stage2_refuses_the_mesh_folder_as_output_folder(kit, smplh_mesh, capsys):
    before = sorted(path.name for path in smplh_mesh.iterdir())
    assert run_transfer.main(stage2_argv(kit, smplh_mesh, smplh_mesh)) == 2
    line = capsys.readouterr().err.strip()
    assert "the output folder is the mesh folder" in line and str(smplh_mesh) in line
    assert sorted(path.name for path in smplh_mesh.iterdir()) == before


def test_row12_a_run_whose_every_input_fails_records_no_settings(kit, tmp_path, capsys):
    """Stage 2 over meshes that all fail: no record, so the next run, of other settings, is
    not refused as if the folder held results (the sequences' case: test_sequence_pairs)."""
    meshes, output = tmp_path / "meshes", tmp_path / "out"
    meshes.mkdir()
    (meshes / "000001.obj").write_text("v 0 0 0\n")
    assert run_transfer.main(stage2_argv(kit, meshes, output) + ["--keep-going"]) == 1
    assert "000001.obj" in capsys.readouterr().out
    assert not (output / RESULT_SETTINGS).exists()


def test_row12_stage2_checks_results_of_a_folder_without_a_record(kit, smplh_mesh, tmp_path,
                                                                   capsys):
    """Results written before settings were recorded are compared file by file."""
    output = tmp_path / "out"
    assert run_transfer.main(stage2_argv(kit, smplh_mesh, output)) == 0
    (output / RESULT_SETTINGS).unlink()
    before = (output / "000001.pkl").read_bytes()
    capsys.readouterr()
    code = run_transfer.main(["--target-model", "smplh"]
                             + stage2_argv(kit, smplh_mesh, output))
    line = capsys.readouterr().err.strip()
    assert code == 2 and "000001.pkl" in line and "target_model smplx (this run: smplh)" in line
    assert (output / "000001.pkl").read_bytes() == before
    # Same settings: the results are taken as done and the record written.
    assert run_transfer.main(stage2_argv(kit, smplh_mesh, output)) == 0
    assert "1 skipped" in capsys.readouterr().out
    assert json.loads((output / RESULT_SETTINGS).read_text())["target_model"] == "smplx"


@pytest.fixture(scope="module")
def one_converted(kit, tmp_path_factory):
    """A tree of one short sequence and its output folder, converted with the defaults."""
    root = tmp_path_factory.mktemp("one_converted")
    short_tree(kit, root / "amass")
    first = run_sequences(sequence_options(kit, root / "amass", root / "out"), progress=False)
    assert len(first.rows) == 1
    return root / "amass", root / "out"


@pytest.mark.parametrize("change", [dict(fps=30.0), dict(gender="neutral"),
                                    dict(num_betas=10)])     # the default: 16
def test_row12_sequences_refuse_outputs_of_other_settings(kit, one_converted, tmp_path,
                                                          change):
    source, output = one_converted[0], tmp_path / "out"
    shutil.copytree(one_converted[1], output)
    written = output_path(output, "amass/a/one_poses.npz", "smplx")
    before = written.read_bytes()
    with pytest.raises(InputError) as error:
        run_sequences(sequence_options(kit, source, output, **change), progress=False)
    message = str(error.value)
    assert str(output) in message and "--overwrite" in message
    assert next(iter(change)) in message
    assert written.read_bytes() == before
    # The same refusal for outputs written before settings were recorded (file by file).
    (output / RESULT_SETTINGS).unlink()
    if "gender" in change or "fps" in change or "num_betas" in change:
        with pytest.raises(InputError, match="one_stageii.npz"):
            run_sequences(sequence_options(kit, source, output, **change), progress=False)
    assert written.read_bytes() == before


def test_row12_sequences_command_line_refuses_another_fps_with_exit_2(kit, tmp_path, capsys):
    source = tmp_path / "amass"
    short_tree(kit, source)
    output = tmp_path / "out"
    config = {"SMPLH_MODEL": str(kit.body_models), "SMPLX_MODEL": str(kit.body_models),
              "DEFTRAFO_PATH": str(kit.deftrafo), "MASK_IDS_PATH": str(kit.mask),
              "SEQUENCE_OUTPUT_DIR": str(output)}
    argv = [str(source), "--device", "cpu", "--max-iterations", "2", "--chunk-frames", "8",
            "--shape-frames", "4"]
    assert convert_sequences.main(argv, user_config=config) == 0
    written = output_path(output, "amass/a/one_poses.npz", "smplx")
    rate = float(read_motion_file(written, "smplx")["mocap_frame_rate"])
    capsys.readouterr()
    assert convert_sequences.main(argv + ["--fps", str(rate / 2)], user_config=config) == 2
    line = capsys.readouterr().err.strip()
    assert "fps source (this run:" in line and "\n" not in line
    assert float(read_motion_file(written, "smplx")["mocap_frame_rate"]) == rate
    assert convert_sequences.main(argv + ["--fps", str(rate / 2), "--overwrite"],
                                  user_config=config) == 0
    assert float(read_motion_file(written, "smplx")["mocap_frame_rate"]) == rate / 2


# ------------------------------------------------------------------ one keep-going tree run

def raw_member_npz(path, source):
    """`source`'s arrays with `poses` stored as raw bytes (no .npy suffix)."""
    with np.load(source) as archive:
        arrays = {key: archive[key] for key in archive.files}
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in arrays.items():
            if key == "poses":
                archive.writestr("poses", value.tobytes())
            else:
                stream = io.BytesIO()
                np.lib.format.write_array(stream, np.asanyarray(value))
                archive.writestr(f"{key}.npy", stream.getvalue())


@pytest.fixture(scope="module")
def tree_run(kit, tmp_path_factory):
    """One --keep-going command-line run over a tree holding two good files (one named
    like a spreadsheet formula), a file whose name is not valid UTF-8 and one whose
    `poses` member is raw bytes: (tree, output, exit code, printed text)."""
    import contextlib
    import io as text_io
    root = tmp_path_factory.mktemp("tree_run")
    tree, output = root / "amass", root / "out"
    good, formula = short_tree(kit, tree, names=("a/ok_poses.npz", "a/=1+2_poses.npz"))
    bad_name = os.path.join(os.fsencode(tree / "a"), b"bad\xff_poses.npz")
    with open(good, "rb") as source, open(bad_name, "wb") as target:
        target.write(source.read())
    raw_member_npz(tree / "a" / "raw_poses.npz", good)
    config = {"SMPLH_MODEL": str(kit.body_models), "SMPLX_MODEL": str(kit.body_models),
              "DEFTRAFO_PATH": str(kit.deftrafo), "MASK_IDS_PATH": str(kit.mask),
              "SEQUENCE_OUTPUT_DIR": str(output)}
    out, err = text_io.StringIO(), text_io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = convert_sequences.main(
            [str(tree), "--keep-going", "--device", "cpu", "--max-iterations", "2",
             "--chunk-frames", "8", "--shape-frames", "4"], user_config=config)
    return tree, output, code, out.getvalue() + err.getvalue()


def test_row1_raw_npz_member_fails_its_file_alone(tree_run):
    tree, output, code, printed = tree_run
    assert code == 1
    lines = [line for line in printed.splitlines() if "raw_poses.npz" in line]
    assert lines and all("member poses is stored as raw bytes" in line for line in lines)
    assert "Traceback" not in printed and "AttributeError" not in printed
    assert output_path(output, "amass/a/ok_poses.npz", "smplx").is_file()


def test_row1_raw_npz_member_in_stage1_and_source_params(kit, tmp_path):
    raw_member_npz(tmp_path / "seq_poses.npz", kit.amass / kit.sequences[0])
    with pytest.raises(InputError, match=r"seq_poses.npz: member poses is stored as raw"):
        read_smplh_poses(tmp_path / "seq_poses.npz")
    with zipfile.ZipFile(tmp_path / SOURCE_PARAMS, "w") as archive:
        archive.writestr("pose_ids", np.arange(2).tobytes())
        archive.writestr("poses.npy", b"")
    with pytest.raises(InputError, match=r"source_params.npz: member pose_ids is stored"):
        read_source_params(tmp_path / SOURCE_PARAMS)


def test_row4_a_file_name_not_valid_utf8_fails_alone(tree_run):
    tree, output, code, printed = tree_run
    assert code == 1
    lines = [line for line in printed.splitlines() if "not valid UTF-8" in line]
    assert lines and "amass/a/bad\\xff_poses.npz" in lines[0]
    assert "Traceback" not in printed and "UnicodeEncodeError" not in printed
    rows = read_sequence_rows(output / SEQUENCES_CSV)
    assert sorted(rows) == ["amass/a/=1+2_poses.npz", "amass/a/ok_poses.npz"]


def test_row11_a_name_like_a_formula_is_neutralised_in_sequences_csv(tree_run):
    _tree, output, _code, _printed = tree_run
    with open(output / SEQUENCES_CSV, newline="", encoding="utf-8") as handle:
        cells = [row[0] for row in csv.reader(handle)][1:]
    assert "'amass/a/=1+2_poses.npz" not in cells        # amass/ comes first: no formula
    assert sorted(cells) == ["amass/a/=1+2_poses.npz", "amass/a/ok_poses.npz"]
    # A name that starts with a formula character gets the quote, and reads back as it was.
    row = read_sequence_rows(output / SEQUENCES_CSV)["amass/a/ok_poses.npz"]
    table = output / "other.csv"
    for name in ("=HYPERLINK(\"x\")", "+1", "-1", "@SUM(A1)", "\tx", "'quoted"):
        merge_sequence_rows(table, [replace(row, sequence=name)])
    with open(table, newline="", encoding="utf-8") as handle:
        cells = [row[0] for row in csv.reader(handle)][1:]
    assert all(cell.startswith("'") for cell in cells), cells
    assert sorted(read_sequence_rows(table)) == sorted(
        ["=HYPERLINK(\"x\")", "+1", "-1", "@SUM(A1)", "\tx", "'quoted"])


def quality_damages(quality):
    """Damaged versions of a quality file: (name, writer of the file at a path)."""
    with np.load(quality) as archive:
        arrays = {key: archive[key] for key in archive.files}

    def savez(changes=None, drop=()):
        def write(path):
            kept = {key: value for key, value in arrays.items() if key not in drop}
            np.savez(path, **{**kept, **(changes or {})})
        return write
    return [("object array", savez({"v2v_mm": np.array([None, 1], dtype=object)})),
            ("raw pickle", lambda path: path.write_bytes(pickle.dumps(arrays))),
            ("missing fps", savez(drop=("fps",))),
            ("wrong length", savez({"v2v_mm": arrays["v2v_mm"][:-1]}))]


def test_row7_report_skips_a_damaged_quality_file_with_one_line(kit, tree_run, tmp_path):
    tree, output, _code, _printed = tree_run
    copy = tmp_path / "out"
    shutil.copytree(output, copy)
    damaged = quality_path(copy, "amass/a/ok_poses.npz", "smplx")
    frames = read_sequence_rows(copy / SEQUENCES_CSV)["amass/a/ok_poses.npz"].frames
    damages = quality_damages(damaged)
    for name, write in damages:                     # each damage is named by the reader
        damaged.unlink()
        write(damaged)
        with pytest.raises(InputError, match=str(damaged)):
            read_quality(damaged, frames)
    # The report leaves that sequence out with one line and writes the page (the last
    # damage: a wrong length).
    lines = []
    index = write_sequence_report(sequence_options(kit, tree, copy), num_worst=1,
                                  animation_frames=2, log=lines.append)
    assert index.is_file()
    skipped = [line for line in lines if line.startswith("skipped:")]   # and the files
    assert len(skipped) == 1 and str(damaged) in skipped[0], lines       # that failed
    assert "ok_poses" not in index.read_text() and "=1+2_poses" in index.read_text()


# ------------------------------------------------------------------ rows 2, 3: motion files

@pytest.mark.parametrize("rate", [1e200, 1e-310, 0.5, 1e6])
def test_row2_absurd_mocap_framerate_is_refused_up_front(kit, tmp_path, rate):
    path, = short_tree(kit, tmp_path)
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    np.savez(path, **{**arrays, "mocap_framerate": np.array(rate)})
    with pytest.raises(InputError, match=r"one_poses.npz: mocap_framerate .* from 1 to 10000"):
        read_motion(path)


def test_row3_members_not_read_are_never_decompressed(kit, tmp_path):
    """A member whose compressed data is damaged (decompressing it fails) and that no
    reader needs does not stop the readers: it is never decompressed."""
    path, = short_tree(kit, tmp_path)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("huge_extra.npy", bytes(1 << 20))
    data = bytearray(path.read_bytes())
    start = data.index(b"huge_extra.npy") + len("huge_extra.npy")
    data[start + 100:start + 300] = os.urandom(200)          # inside its deflated data
    path.write_bytes(bytes(data))
    assert read_motion(path).num_frames == 8
    assert read_smplh_poses(path).shape == (8, 156)


def test_row3_a_member_declaring_too_many_bytes_is_refused_before_reading(
        kit, tmp_path, monkeypatch):
    path, = short_tree(kit, tmp_path)
    monkeypatch.setattr(npz_module, "MAX_MEMBER_BYTES", 1000)    # poses: 8 x 156 x 8 bytes
    with pytest.raises(InputError, match=r"member poses declares \d+ bytes, more than"):
        read_motion(path)
    # A .npy header claiming more than its member holds is refused without allocating.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 156)})
    with zipfile.ZipFile(tmp_path / "claim_poses.npz", "w") as archive:
        archive.writestr("poses.npy", header.getvalue() + bytes(64))
    with pytest.raises(InputError, match=r"member poses declares shape \(1000000000, 156\)"):
        read_motion(tmp_path / "claim_poses.npz")


# ------------------------------------------------------------------ rows 5, 6, 8, 9, 10

def sequences_config(kit, output):
    return {"SMPLH_MODEL": str(kit.body_models), "SMPLX_MODEL": str(kit.body_models),
            "DEFTRAFO_PATH": str(kit.deftrafo), "MASK_IDS_PATH": str(kit.mask),
            "SEQUENCE_OUTPUT_DIR": str(output)}


def test_row5_sequences_refuse_output_equal_to_or_above_the_input_and_an_empty_input(
        kit, tmp_path, capsys):
    tree = tmp_path / "amass"
    short_tree(kit, tree)
    (tmp_path / "empty").mkdir()
    for input_path, output, expected in (
            (tree, tree, "the input folder is the output folder"),
            (tree / "a", tree, "the input folder lies inside the output folder"),
            (tmp_path / "empty", tmp_path / "out", "no .npz files to convert")):
        code = convert_sequences.main([str(input_path), "--device", "cpu"],
                                      user_config=sequences_config(kit, output))
        line = capsys.readouterr().err.strip()
        assert code == 2 and expected in line and "\n" not in line, line
    assert sorted(path.name for path in tree.rglob("*")) == ["a", "one_poses.npz"]


def test_principle_a_sequence_run_never_writes_over_its_inputs(kit, tmp_path):
    """Outputs that would land on input files, even with --overwrite, stop the run before
    anything is written: a single file's grandparent folder as the output folder (SMPL to
    SMPL-H: `_poses.npz` both), and an output folder linking back into the input tree, where
    a SMPL+H file's SMPL-X output is the name of a SMPL-X input beside it."""
    smpl_file = tmp_path / "in" / "CMU" / "03" / "take_poses.npz"
    smpl_file.parent.mkdir(parents=True)
    shutil.copy(kit.smpl_motions / kit.sequences[0], smpl_file)
    tree = tmp_path / "amass"
    (one,) = short_tree(kit, tree)
    beside = one.with_name("one_stageii.npz")
    shutil.copy(kit.smplx_motions / kit.sequences[0].replace("_poses", "_stageii"), beside)
    linked = tmp_path / "out"
    linked.mkdir()
    (linked / "amass").symlink_to(tree, target_is_directory=True)
    inputs = [smpl_file, one, beside]
    before = [path.read_bytes() for path in inputs]
    models = {kind: kit.body_models for kind in ("smpl", "smplh", "smplx")}
    for input_path, output, changes, overwritten in (
            (smpl_file, smpl_file.parents[1], dict(target_model="smplh"), smpl_file),
            (tree, linked, {}, beside)):
        options = sequence_options(kit, input_path, output, overwrite=True,
                                   model_paths=models, deftrafo_path=kit.deftrafo.parent,
                                   **changes)
        with pytest.raises(InputError, match=f"^{re.escape(str(overwritten))}: the run would "
                                             "write .* over this input file"):
            run_sequences(options, **QUIET)
    assert [path.read_bytes() for path in inputs] == before
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == sorted(
        path.name for path in inputs)


def test_row5_stage1_empty_ids_is_an_error(kit, tmp_path, capsys):
    config = {"AMASS_DIR": str(kit.amass), "SMPLH_MODEL": str(kit.body_models),
              "POSESCRIPT_DIR": str(kit.posescript_ids.parent),
              "POSEFIX_DIR": str(kit.posefix_ids.parent), "MESH_DIR": str(tmp_path / "out")}
    code = extract_to_obj.main(["--ids", "", "--output-dir", str(tmp_path / "out")],
                               user_config=config)
    line = capsys.readouterr().err.strip()
    assert code == 2 and "--ids: no pose id given" in line
    assert not (tmp_path / "out").exists()


def test_principle_stage1_refuses_a_folder_of_meshes_of_another_model(kit, tmp_path, capsys):
    """Meshes of another SMPL-H model (another file's content, whatever its path) are not
    mixed into a folder: the rerun is refused before anything is written, --overwrite
    replaces them; source_params.npz alone (params format) does not depend on the model."""
    with np.load(kit.smplh_npz) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["v_template"] = arrays["v_template"] * 1.1                  # a taller body
    other = tmp_path / "other" / "SMPLH_NEUTRAL.npz"
    other.parent.mkdir()
    np.savez(other, **arrays)
    output = tmp_path / "out"
    pose_id, second = sorted(int(key) for key in json.loads(kit.posefix_ids.read_text()))[:2]
    config = {"AMASS_DIR": str(kit.amass), "SMPLH_MODEL": str(kit.smplh_npz),
              "POSESCRIPT_DIR": str(kit.posescript_ids.parent),
              "POSEFIX_DIR": str(kit.posefix_ids.parent), "MESH_DIR": str(output)}
    argv = ["--ids", str(pose_id)]
    assert extract_to_obj.main(argv, user_config=config) == 0
    mesh = output / f"{pose_id:06d}.obj"
    before = mesh.read_bytes()
    height = np.ptp(read_obj_vertices(mesh)[:, 1])
    # The same model as a .pkl elsewhere (its arrays in float64): the same model.
    same = ["--smplh-model", str(kit.body_models / "smplh" / "SMPLH_NEUTRAL.pkl")]
    assert extract_to_obj.main(argv + same, user_config=config) == 0
    capsys.readouterr()
    assert extract_to_obj.main(argv + ["--ids", str(second), "--smplh-model", str(other)],
                               user_config=config) == 2
    line = capsys.readouterr().err.strip()
    assert str(output) in line and "smplh_model sha256:" in line and "--overwrite" in line
    assert sorted(path.name for path in output.glob("*.obj")) == [mesh.name]
    assert extract_to_obj.main(argv + ["--smplh-model", str(other), "--output-format",
                                       "params"], user_config=config) == 0
    assert mesh.read_bytes() == before
    assert extract_to_obj.main(argv + ["--smplh-model", str(other), "--overwrite"],
                               user_config=config) == 0
    assert np.ptp(read_obj_vertices(mesh)[:, 1]) > 1.05 * height


def sparse_file(path, size):
    """A file of `size` bytes that takes no room on disk (and cost its maker nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def test_principle_a_huge_file_is_refused_before_it_is_read(kit, smplh_mesh, tmp_path,
                                                            capsys):
    """Readers that take a whole file in memory refuse one larger than any genuine file of
    theirs (a mesh, an id list, a settings file), naming it, before reading a byte; they
    read such files whole into memory (a MemoryError traceback, or a machine swapping)."""
    meshes, output = tmp_path / "meshes", tmp_path / "out"
    shutil.copytree(smplh_mesh, meshes)
    sparse_file(meshes / "000002.obj", 200 * 1000 * 1000)
    assert run_transfer.main(stage2_argv(kit, meshes, output) + ["--keep-going"]) == 1
    printed = capsys.readouterr().out
    assert "000002.obj: 200.0 MB, more than such a file holds (at most 64 MB); not read" \
        in printed
    assert (output / "000001.pkl").exists() and not (output / "000002.pkl").exists()

    ids = sparse_file(tmp_path / "ids.txt", 1100 * 1000 * 1000)
    config = {"AMASS_DIR": str(kit.amass), "SMPLH_MODEL": str(kit.smplh_npz),
              "POSESCRIPT_DIR": str(kit.posescript_ids.parent),
              "POSEFIX_DIR": str(kit.posefix_ids.parent), "MESH_DIR": str(tmp_path / "m")}
    assert extract_to_obj.main(["--ids-file", str(ids)], user_config=config) == 2
    assert f"{ids}: 1,100.0 MB, more than such a file holds" in capsys.readouterr().err

    settings = sparse_file(tmp_path / "settings.yaml", 50 * 1000 * 1000)
    assert run_transfer.main(["--exp-cfg", str(settings)]
                             + stage2_argv(kit, meshes, output)) == 2
    assert f"{settings}: 50.0 MB, more than such a file holds" in capsys.readouterr().err

    mask = tmp_path / "mask.npy"
    with open(kit.mask, "rb") as handle:
        header = handle.read(128)
    mask.write_bytes(header)
    with open(mask, "r+b") as handle:
        handle.truncate(10 ** 9)
    argv = stage2_argv(kit, meshes, tmp_path / "out2")
    argv[argv.index(str(kit.mask))] = str(mask)
    assert run_transfer.main(argv) == 2
    assert f"{mask}: 1,000.0 MB, more than such a file holds" in capsys.readouterr().err


def test_row6_temporaries_of_a_killed_sequence_write_are_removed_on_rerun(kit, tmp_path):
    tree, output = tmp_path / "amass", tmp_path / "out"
    short_tree(kit, tree)
    stale = [output / "amass" / "a" / ".one_stageii.npz.k1ll3d0a.tmp",
             output / "quality" / "amass" / "a" / ".one_stageii_frames.npz.k1ll3d0b.tmp",
             output / ".sequences.csv.k1ll3d0c.tmp"]
    foreign = output / "amass" / "a" / ".notes.txt.k1ll3d0d.tmp"  # not ours: kept
    for path in stale + [foreign]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
        os.utime(path, (OLD, OLD))
    summary = run_sequences(sequence_options(kit, tree, output), progress=False)
    assert len(summary.rows) == 1
    assert [path for path in stale if path.exists()] == [] and foreign.exists()


def test_row8_slurm_local_wait_gives_the_tasks_exit_code_and_line(kit, tmp_path, capsys):
    tree = tmp_path / "amass"
    short_tree(kit, tree)
    # The output folder passes the submission's checks; the lock the task takes to record
    # the run's settings cannot be opened: an output error (exit 3) in the task.
    blocker = tmp_path / "out" / ".result_settings.json.lock"
    blocker.mkdir(parents=True)
    code = convert_sequences.main(
        [str(tree), "--slurm", "--local", "--wait", "--shards", "1", "--device", "cpu",
         "--log-dir", str(tmp_path / "logs")],
        user_config=sequences_config(kit, blocker.parent))
    printed = capsys.readouterr()
    assert code == 3, printed
    assert "shard 0: error:" in printed.err and str(blocker) in printed.err
    assert "Traceback" not in printed.out + printed.err
    assert "FailedJobError" not in printed.out + printed.err


@pytest.mark.parametrize("keep_going, expected_code", [(False, 2), (True, 1)])
def test_slurm_wait_gives_the_exit_status_a_run_here_would(kit, tmp_path, capsys,
                                                            keep_going, expected_code):
    """A task stopped by a bad file is bad input (2), as the same run here; with
    --keep-going the others are converted and the bad file makes it 1."""
    tree = tmp_path / "amass"
    bad, good = short_tree(kit, tree, names=("a/bad_poses.npz", "a/good_poses.npz"))
    with np.load(bad) as archive:
        arrays = {key: archive[key] for key in archive.files}
    np.savez(bad, **{**arrays, "trans": arrays["trans"][:-1]})
    arguments = [str(tree), "--device", "cpu"] + ["--keep-going"] * keep_going
    here = convert_sequences.main(arguments, user_config=sequences_config(kit, tmp_path / "here"))
    code = convert_sequences.main(
        arguments + ["--slurm", "--local", "--wait", "--shards", "1",
                     "--log-dir", str(tmp_path / "logs")],
        user_config=sequences_config(kit, tmp_path / "array"))
    printed = capsys.readouterr()
    assert code == here == expected_code, printed
    assert f"{bad}: trans has shape (7, 3), expected (8, 3)" in printed.out
    converted = output_path(tmp_path / "array", "amass/a/good_poses.npz", "smplx").exists()
    assert converted == keep_going


def test_row9_sequences_refuse_negative_iterations_and_note_a_lone_batch_index(
        kit, tmp_path, capsys):
    tree, output = tmp_path / "amass", tmp_path / "out"
    short_tree(kit, tree)
    code = convert_sequences.main([str(tree), "--max-iterations", "-1", "--device", "cpu"],
                                  user_config=sequences_config(kit, output))
    assert code == 2 and "--max-iterations must be >= 0, got -1" in capsys.readouterr().err
    lines = []
    run_sequences(sequence_options(kit, tree, output, shard_index=3), progress=False,
                  log=lines.append)
    assert any("shard index 3 is ignored" in line for line in lines)


@pytest.mark.parametrize("extra, expected", [
    (["--betas", "1e308"], "--betas: 1e+308 is beyond +-100"),
    (["--betas", "0.5", "--exp-opts", "fit.num_betas=0"],
     "fit.num_betas: the SMPL-H output holds between 1 and 16 betas, got 0"),
    (["--betas", "0.5", "--exp-opts", "fit.num_betas=-3"], "got -3")])
def test_row10_shape_only_refuses_absurd_betas_and_betas_counts(kit, tmp_path, capsys,
                                                                extra, expected):
    argv = ["--mode", "shape", "--source-model", "smplx", "--target-model", "smplh",
            "--smplx-model", str(kit.body_models / "smplx"),
            "--smplh-model", str(kit.body_models),
            "--deformation-transfer", str(kit.smplx2smplh_deftrafo), *extra]
    code = run_transfer.main(argv)
    line = capsys.readouterr().err.strip()
    assert code == 2 and expected in line and len(line) < 300, line


# ------------------------------------------------------------------ principles

def test_principle_nothing_non_finite_is_written_by_stage2(kit, smplh_mesh, tmp_path,
                                                            monkeypatch, capsys):
    real_fit_batch = transfer_module.fit_batch

    def fit_batch_giving_nan(*args, **kwargs):
        result = real_fit_batch(*args, **kwargs)
        result.pose[0, 3, 0] = float("nan")
        return result
    monkeypatch.setattr(transfer_module, "fit_batch", fit_batch_giving_nan)
    output = tmp_path / "out"
    code = run_transfer.main(stage2_argv(kit, smplh_mesh, output))
    printed = capsys.readouterr()
    assert code == 1 and "not written: the fit gave NaN or infinite values" in printed.out
    assert not (output / "000001.pkl").exists()


# What a results table can hold that no row can be merged into: bytes that are not text, a
# cell over the csv module's limit, and the table as a spreadsheet saves it in some locales.
DAMAGED_TABLES = {"not text": b"\xff\xfe\x00\x01 binary",
                  "a huge cell": b'"' + b"x" * 200_000 + b'"\n',
                  "semicolons": b"pose_id;v2v_mean_mm\n1;2.5\n"}


@pytest.mark.parametrize("table", DAMAGED_TABLES.values(), ids=list(DAMAGED_TABLES))
def test_principle_a_table_that_cannot_take_rows_stops_a_run_before_any_fit(
        kit, smplh_mesh, tmp_path, capsys, table):
    """errors.csv and sequences.csv are read before the first fit: a damaged one stops the run
    with one line naming it, not a traceback (or an error) after fits whose results could
    then not be recorded; the table is left as it was."""
    stage2 = tmp_path / "stage2"
    stage2.mkdir()
    (stage2 / "errors.csv").write_bytes(table)
    assert run_transfer.main(stage2_argv(kit, smplh_mesh, stage2)) == 2
    line = capsys.readouterr().err.strip()
    assert str(stage2 / "errors.csv") in line and "\n" not in line
    assert not (stage2 / "000001.pkl").exists() and not (stage2 / RESULT_SETTINGS).exists()
    assert (stage2 / "errors.csv").read_bytes() == table

    source, output = tmp_path / "amass", tmp_path / "out"
    short_tree(kit, source)
    output.mkdir()
    (output / SEQUENCES_CSV).write_bytes(table)
    with pytest.raises(InputError) as error:
        run_sequences(sequence_options(kit, source, output), progress=False)
    assert str(output / SEQUENCES_CSV) in str(error.value)
    assert not output_path(output, "amass/a/one_poses.npz", "smplx").exists()
    assert not (output / RESULT_SETTINGS).exists()
    assert (output / SEQUENCES_CSV).read_bytes() == table


def no_conversion(*_args, **_kwargs):
    raise AssertionError("nothing may be converted before the output folder is checked")


def test_principle_an_unwritable_output_folder_stops_sequences_before_any_fit(
        kit, tmp_path, monkeypatch):
    """As stages 1 and 2 do: before, the first file was converted, then lost."""
    source = tmp_path / "amass"
    short_tree(kit, source)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    monkeypatch.setattr(sequences_run, "convert_files", no_conversion)
    for output in (blocker, blocker / "out"):
        with pytest.raises(OutputError, match="not a folder") as error:
            run_sequences(sequence_options(kit, source, output), progress=False)
        assert str(output) in str(error.value)
    assert blocker.read_text() == "a file"


def test_principle_a_file_system_without_locks_is_refused_before_any_work(
        kit, smplh_mesh, tmp_path, monkeypatch, capsys):
    """Shards sharing a folder merge its tables under a lock: where the file system has none
    (a cluster's mounted without them), each merge failed after its fit, and unlocked merges
    would lose rows. Every stage refuses such a folder up front, naming it."""
    def no_locks(*_args, **_kwargs):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(files_module.fcntl, "flock", no_locks)
    monkeypatch.setattr(sequences_run, "convert_files", no_conversion)
    stage2 = tmp_path / "stage2"
    assert run_transfer.main(stage2_argv(kit, smplh_mesh, stage2)) == 3
    line = capsys.readouterr().err.strip()
    assert str(stage2) in line and "cannot lock files" in line and "\n" not in line
    assert not stage2.exists()
    source = tmp_path / "amass"
    short_tree(kit, source)
    with pytest.raises(OutputError, match="cannot lock files") as error:
        run_sequences(sequence_options(kit, source, tmp_path / "out"), progress=False)
    assert str(tmp_path / "out") in str(error.value) and not (tmp_path / "out").exists()
    # Locks that go away during a run: the lock file is named.
    with pytest.raises(OutputError, match=r"\.table\.csv\.lock: cannot write: "
                       + re.escape(os.strerror(errno.ENOLCK))):
        with files_module.exclusive_lock(tmp_path / "table.csv"):
            pass


def test_principle_a_name_whose_outputs_would_be_too_long_fails_before_its_fit(kit, tmp_path):
    """An input name of 254 bytes fits its file system, but its output (`_stageii.npz`) and
    quality file (`_frames.npz`, and their temporaries) do not: that file fails alone before
    its fit. Before, it was converted, its row recorded, then its quality file failed with
    exit 3, and the files after it were never converted."""
    long_name = "a" * 244 + "_poses.npz"
    tree, output = tmp_path / "amass", tmp_path / "out"
    short_tree(kit, tree, names=(f"s/{long_name}", "s/b_poses.npz"))
    summary = run_sequences(sequence_options(kit, tree, output, keep_going=True),
                            progress=False)
    assert [row.sequence for row in summary.rows] == ["amass/s/b_poses.npz"]
    assert len(summary.failures) == 1
    _name, message = summary.failures[0]
    assert long_name in message and "too long" in message and "255 bytes" in message
    assert list(read_sequence_rows(output / SEQUENCES_CSV)) == ["amass/s/b_poses.npz"]
    assert output_path(output, "amass/s/b_poses.npz", "smplx").exists()


def test_principle_nothing_non_finite_is_written_by_sequences_and_stage1(tmp_path):
    poses = np.zeros((3, 165))
    poses[1, 6] = np.inf
    sequence = MotionSequence(kind="smplx", poses=poses, trans=np.zeros((3, 3)),
                              betas=np.zeros(16), gender="male", framerate=30.0)
    with pytest.raises(InputError, match=r"x_stageii.npz: not written: NaN or infinite values in\n  poses\n  pose_body"):
        write_motion(tmp_path / "x_stageii.npz", sequence)
    with pytest.raises(InputError, match=r"source_params.npz: not written: NaN or infinite values in poses"):
        write_source_params(tmp_path / SOURCE_PARAMS, {1: np.full(156, np.nan)})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["/tmp/${oc.env:HOME}/out", "${config:SMPLX_MODEL}",
                                   "a\\${x}", "${oops", "${output_folder}"])
def test_principle_command_line_values_are_literal(value):
    user_config = {"MESH_DIR": "m", "DEFTRAFO_PATH": "d", "MASK_IDS_PATH": "k",
                   "SMPLX_OUTPUT_DIR": "o", "SMPLX_MODEL": "s", "SMPLH_MODEL": "h"}
    options = load_settings(TransferOptions, None, [f"output_dir={value}", f"mesh_dir={value}"],
                            flags={"smplh_model": value}, user_config=user_config)
    assert str(options.output_dir) == value and str(options.mesh_dir) == value
    assert str(options.smplh_model) == value
    assert str(options.smplx_model) == "s"          # config.py's entry still fills the rest


def test_principle_a_mask_must_describe_a_body(kit, smplh_mesh, tmp_path, capsys):
    smplx = load_smplx(kit.smplx_npz)
    part = smplx.weights.argmax(1)
    mask = np.load(kit.mask)
    upper_body = mask[~np.isin(part[mask], [1, 2, 4, 5, 7, 8, 10, 11])]      # no legs
    np.save(tmp_path / "upper_body.npy", upper_body)
    few = mask[:50]
    np.save(tmp_path / "few.npy", few)
    for name in ("upper_body.npy", "few.npy"):
        output = tmp_path / name.replace(".npy", "")
        code = run_transfer.main(stage2_argv(kit, smplh_mesh, output)
                                 + ["--mask", str(tmp_path / name)])
        line = capsys.readouterr().err.strip()
        assert code == 2 and str(tmp_path / name) in line, line
        assert "does not describe a body" in line and "25%" in line and "joint 1 " in line
        assert not output.exists()


def test_principle_file_names_are_data_in_plots_and_html(kit, tree_run, tmp_path):
    quality = {"v2v_mm": np.ones(6), "acceleration": np.ones(4),
               "source_acceleration": np.ones(4), "fps": 30.0}
    path = plot_sequence(quality, "a/$\\frac{broken$_poses.npz", tmp_path / "plot.png", "SMPL-X")
    assert path.stat().st_size > 0
    tree, output, _code, _printed = tree_run
    copy = tmp_path / "out"
    shutil.copytree(output, copy)
    rows = read_sequence_rows(copy / SEQUENCES_CSV)
    row = rows["amass/a/ok_poses.npz"]
    hostile = "amass/a/<img src=x onerror=alert(1)>$_poses.npz"
    quality_path(copy, hostile, "smplx").parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(quality_path(copy, row.sequence, "smplx"),
                quality_path(copy, hostile, "smplx"))
    shutil.copy(output_path(copy, row.sequence, "smplx"), output_path(copy, hostile, "smplx"))
    shutil.copy(tree.parent / row.sequence, tree.parent / hostile)
    merge_sequence_rows(copy / SEQUENCES_CSV, [replace(row, sequence=hostile,
                                                       v2v_mean_mm=1e6)])
    try:
        index = write_sequence_report(sequence_options(kit, tree, copy), num_worst=3,
                                      animation_frames=2, log=lambda _line: None)
    finally:
        (tree.parent / hostile).unlink()
    text = index.read_text()
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;$_poses.npz" in text


def test_principle_folders_reached_through_links_are_converted(kit, tmp_path):
    real, tree = tmp_path / "elsewhere", tmp_path / "amass"
    short_tree(kit, real, names=("CMU/01/one_poses.npz",))
    short_tree(kit, tree, names=("KIT/two_poses.npz",))
    (tree / "CMU").symlink_to(real / "CMU", target_is_directory=True)
    (real / "CMU" / "01" / "loop").symlink_to(real, target_is_directory=True)   # a loop
    names = [name for name, _path in list_sequence_files(tree)]
    assert names == ["amass/CMU/01/one_poses.npz", "amass/KIT/two_poses.npz"]


def test_row12_a_damaged_settings_record_is_named_and_overwrite_replaces_it(tmp_path):
    from smplh2smplx.formats.result_settings import (check_result_settings,
                                                     record_result_settings)
    settings = {"target_model": "smplx", "num_betas": 10, "gender": "neutral"}
    for damaged in ("{not json", "[" * 100_000 + "]" * 100_000):     # the second: too deep
        (tmp_path / RESULT_SETTINGS).write_text(damaged)
        with pytest.raises(InputError, match=r"result_settings.json: not a readable settings"):
            check_result_settings(tmp_path, settings, overwrite=False)
    # A recorded value is shown shortened, whatever its size.
    (tmp_path / RESULT_SETTINGS).write_text(json.dumps({**settings, "gender": ["x"] * 10_000}))
    with pytest.raises(InputError, match=r"gender \['x', .*\.\.\. \(this run: neutral\)") as error:
        check_result_settings(tmp_path, settings, overwrite=False)
    assert len(str(error.value)) < 500
    record_result_settings(tmp_path, settings, overwrite=True)
    assert json.loads((tmp_path / RESULT_SETTINGS).read_text()) == settings
    check_result_settings(tmp_path, settings, overwrite=False)
    with pytest.raises(InputError, match=r"gender neutral \(this run: male\)"):
        record_result_settings(tmp_path, {**settings, "gender": "male"}, overwrite=False)


def test_principle_a_motion_longer_than_memory_allows_fails_alone(kit, tmp_path, monkeypatch):
    """A motion whose frames would need more memory than the process can still take (a few
    MB of compressed zeros can declare millions of frames) fails alone before its fit,
    naming its frames and the memory; the other files are converted. The frames counted
    are those written: at a lower --fps the same file fits."""
    tree = tmp_path / "tree"
    long, short = short_tree(kit, tree, frames=40, names=("a/long_poses.npz",
                                                           "a/short_poses.npz"))
    with np.load(long) as archive:
        arrays = {key: archive[key] for key in archive.files}
    np.savez(short, **{key: value[:8] if key in ("poses", "trans", "dmpls") else value
                       for key, value in arrays.items()})
    # What a SMPL-H to SMPL-X frame holds at least: 55 target joints' pose and correction,
    # 12 float64 each, 5.3 KB; 100 KB is less than 40 such frames and more than 8 whole.
    room = 100_000
    monkeypatch.setattr(sequences_run, "available_memory", lambda: room)
    output = tmp_path / "out"
    summary = run_sequences(sequence_options(kit, tree, output, keep_going=True), **QUIET)
    assert [row.sequence for row in summary.rows] == ["tree/a/short_poses.npz"]
    ((name, message),) = summary.failures
    assert name == "tree/a/long_poses.npz"
    match = re.fullmatch(re.escape(str(long)) + r": its 40 frames to write need at least "
                         r"(\S+) GB of memory, and 0\.0001 GB is available here; .*--fps.*",
                         message)
    assert match and 40 * 12 * 55 * 8 <= float(match.group(1)) * 1e9 <= 40 * room / 8
    assert not list(output.rglob("long_*"))
    fps = float(arrays["mocap_framerate"]) / 8                       # 5 frames written
    summary = run_sequences(sequence_options(kit, long, tmp_path / "slow", fps=fps), **QUIET)
    assert summary.failed == 0 and [row.frames for row in summary.rows] == [5]
    # Where even its poses could not be read, it fails before they are decompressed, from
    # the shape the member's header declares (the reader's own check, next test).
    monkeypatch.setattr(npz_module, "available_memory", lambda: 40 * 156 * 8 - 1)
    summary = run_sequences(sequence_options(kit, long, tmp_path / "unread"), **QUIET)
    ((_name, message),) = summary.failures
    assert message.startswith(f"{long}: member poses (40, 156) needs at least ")


def test_principle_an_npz_member_that_memory_cannot_hold_is_not_read(kit, monkeypatch):
    """Every .npz input (here stage 1's AMASS sequence) is refused, naming the file and the
    member, when the member as stored and its float64 copy need more memory than the
    process can still take; before a byte of it is decompressed."""
    decompressed = []
    real_read = npz_module._read_exactly
    monkeypatch.setattr(npz_module, "_read_exactly", lambda member, size: (
        decompressed.append(size), real_read(member, size))[1])
    path = kit.amass / kit.sequences[0]
    frames = npz_module.member_shapes(path, ["poses"])["poses"][0]
    poses_bytes = frames * 156 * 8                        # float64: no copy is made
    monkeypatch.setattr(npz_module, "available_memory", lambda: poses_bytes)
    assert read_smplh_poses(path, [0]).shape == (frames, 156)
    assert poses_bytes in decompressed
    decompressed.clear()
    monkeypatch.setattr(npz_module, "available_memory", lambda: poses_bytes - 1)
    gigabytes = f"{poses_bytes / 1e9:.3g} GB"
    with pytest.raises(InputError, match=f"^{re.escape(str(path))}: member poses "
                                         f"\\({frames}, 156\\) needs at least {gigabytes} of "
                                         f"memory to read, and {gigabytes} is available here"):
        read_smplh_poses(path, [0])
    assert poses_bytes not in decompressed


@pytest.mark.parametrize("machine, expected", [
    # cgroup v2 (a SLURM job's step below its job): the job's limit less its memory beside
    # page cache, 4 - (1.5 - 0.5) GB; the step has no limit of its own; the machine has 20.
    ({"proc/meminfo": "MemTotal: 32000000 kB\nMemAvailable: 20000000 kB\n",
      "proc/self/cgroup": "0::/job/step\n",
      "cgroup/job/memory.max": "4000000000\n", "cgroup/job/memory.current": "1500000000\n",
      "cgroup/job/memory.stat": "anon 900000000\nfile 500000000\n",
      "cgroup/job/step/memory.max": "max\n"}, 3_000_000_000),
    # cgroup v1, the memory controller's hierarchy: 2 GB less (0.6 - 0.1) GB.
    ({"proc/meminfo": "MemAvailable: 20000000 kB\n",
      "proc/self/cgroup": "5:cpu,cpuacct:/slurm/job_2\n4:memory:/slurm/job_2\n",
      "cgroup/memory/slurm/job_2/memory.limit_in_bytes": "2000000000\n",
      "cgroup/memory/slurm/job_2/memory.usage_in_bytes": "600000000\n",
      "cgroup/memory/slurm/job_2/memory.stat": "cache 5\ntotal_cache 100000000\n",
      "cgroup/memory/slurm/memory.limit_in_bytes": "9223372036854771712\n"}, 1_500_000_000),
    # A limit above what the machine has left: the machine's.
    ({"proc/meminfo": "MemAvailable: 1000000 kB\n", "proc/self/cgroup": "0::/job\n",
      "cgroup/job/memory.max": "4000000000\n", "cgroup/job/memory.current": "0\n",
      "cgroup/job/memory.stat": "file 0\n"}, 1_024_000_000),
    ({"proc/meminfo": "MemAvailable: 8000000 kB\n"}, 8_192_000_000),   # no cgroups
    ({}, None),                                                      # not Linux
])
def test_available_memory_is_the_least_room_of_the_machine_and_its_cgroups(
        tmp_path, machine, expected):
    from smplh2smplx.runtime import available_memory
    for relative, text in machine.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    assert available_memory(tmp_path / "proc", tmp_path / "cgroup") == expected


# A folder named like an output (a `mkdir` gone wrong, a tool that made one) takes the place
# no file can replace: each command fails that input alone, before its work, naming the
# folder. Before, the work was done, then the write failed naming a temporary file
# (`.x.pkl.ab12cd.tmp: cannot write: Is a directory`) and the run stopped with exit 3,
# --keep-going or not, leaving the inputs after it unconverted.

def test_principle_a_folder_where_a_stage1_mesh_goes_fails_its_pose_alone(kit, tmp_path,
                                                                           capsys):
    output = tmp_path / "out"
    first, second = sorted(int(key) for key in json.loads(kit.posefix_ids.read_text()))[:2]
    (output / f"{first:06d}.obj").mkdir(parents=True)
    config = {"AMASS_DIR": str(kit.amass), "SMPLH_MODEL": str(kit.body_models),
              "POSESCRIPT_DIR": str(kit.posescript_ids.parent),
              "POSEFIX_DIR": str(kit.posefix_ids.parent), "MESH_DIR": str(output)}
    argv = ["--ids", str(first), str(second)]
    assert extract_to_obj.main(argv, user_config=config) == 2
    line = capsys.readouterr().err.strip()
    assert f"pose {first}: {output / f'{first:06d}.obj'}: is a folder" in line
    assert sorted(path.name for path in output.iterdir()
                  if not path.name.startswith(".")) == [f"{first:06d}.obj"]
    assert extract_to_obj.main(argv + ["--keep-going"], user_config=config) == 1
    assert f"failed: pose {first}: " in capsys.readouterr().out
    assert (output / f"{second:06d}.obj").is_file() and (output / f"{first:06d}.obj").is_dir()


def test_principle_a_folder_where_a_stage2_result_goes_fails_its_pose_alone(
        kit, smplh_mesh, tmp_path, capsys, monkeypatch):
    meshes, output = tmp_path / "meshes", tmp_path / "out"
    meshes.mkdir()
    for pose_id in (1, 2):
        shutil.copy(smplh_mesh / "000001.obj", meshes / f"{pose_id:06d}.obj")
    (output / "000001.pkl").mkdir(parents=True)
    fitted = []
    real_fit_batch = transfer_module.fit_batch

    def counted_fit_batch(fitter, targets, *args):
        fitted.append(len(targets))
        return real_fit_batch(fitter, targets, *args)
    monkeypatch.setattr(transfer_module, "fit_batch", counted_fit_batch)
    assert run_transfer.main(stage2_argv(kit, meshes, output)) == 2
    line = capsys.readouterr().err.strip()
    assert f"{output / '000001.pkl'}: is a folder" in line and "--keep-going" in line
    assert fitted == [] and not (output / "000002.pkl").exists()
    assert run_transfer.main(stage2_argv(kit, meshes, output) + ["--keep-going"]) == 1
    printed = capsys.readouterr().out
    assert "1 done, 0 skipped (already converted), 1 failed" in printed
    assert f"failed: {output / '000001.pkl'}: is a folder" in printed
    assert read_parameters(output / "000002.pkl", "smplx")["body_pose"].numel() == 63
    assert (output / "000001.pkl").is_dir()


def test_principle_a_folder_where_a_sequence_output_goes_fails_its_file_before_its_fit(
        kit, tmp_path, monkeypatch):
    tree, output = tmp_path / "amass", tmp_path / "out"
    short_tree(kit, tree, names=("s/a_poses.npz", "s/b_poses.npz"))
    blocked = output_path(output, "amass/s/a_poses.npz", "smplx")
    blocked.mkdir(parents=True)
    fitted = []
    real_steps = sequences_run.sequence_steps

    def counted_steps(sequence, *args, **kwargs):
        fitted.append(Path(sequence.path).name)
        return real_steps(sequence, *args, **kwargs)
    monkeypatch.setattr(sequences_run, "sequence_steps", counted_steps)
    summary = run_sequences(sequence_options(kit, tree, output, keep_going=True),
                            progress=False)
    assert fitted == ["b_poses.npz"]
    assert [row.sequence for row in summary.rows] == ["amass/s/b_poses.npz"]
    (_name, message), = summary.failures
    assert f"a_poses.npz: cannot write its output: {blocked}: is a folder" in message
    assert blocked.is_dir() and list(blocked.iterdir()) == []
    assert not quality_path(output, "amass/s/a_poses.npz", "smplx").exists()


def test_principle_a_write_that_fails_names_the_output_not_its_temporary(tmp_path,
                                                                         monkeypatch):
    sequence = MotionSequence(kind="smplx", poses=np.zeros((2, 165)), trans=np.zeros((2, 3)),
                              betas=np.zeros(16), gender="male", framerate=30.0)
    folder = tmp_path / "x_stageii.npz"
    folder.mkdir()
    with pytest.raises(OutputError, match=re.escape(f"{folder}: is a folder")):
        write_motion(folder, sequence)

    def no_room(source, destination):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), source, None, destination)
    monkeypatch.setattr(files_module.os, "replace", no_room)
    target = tmp_path / "y_stageii.npz"
    with pytest.raises(OutputError) as raised:
        write_motion(target, sequence)
    assert str(raised.value) == f"{target}: cannot write: {os.strerror(errno.ENOSPC)}"
    assert sorted(path.name for path in tmp_path.iterdir()) == [folder.name]


def test_principle_a_file_where_a_folder_of_outputs_goes_fails_the_files_below_it(kit, tmp_path):
    tree, output = tmp_path / "amass", tmp_path / "out"
    short_tree(kit, tree, names=("s/a_poses.npz", "t/b_poses.npz"))
    in_the_way = output / "amass" / "s"
    in_the_way.parent.mkdir(parents=True)
    in_the_way.write_text("not a folder")
    summary = run_sequences(sequence_options(kit, tree, output, keep_going=True),
                            progress=False)
    assert [row.sequence for row in summary.rows] == ["amass/t/b_poses.npz"]
    (_name, message), = summary.failures
    assert message.endswith(f"a_poses.npz: cannot write its output: {in_the_way}: is a file "
                            "where a folder of outputs goes; remove it")
    assert in_the_way.read_text() == "not a folder"


def test_principle_an_npz_listing_more_members_than_any_genuine_one_is_not_opened(kit,
                                                                                tmp_path):
    """zipfile indexes every member an archive lists before one can be read (about 0.6 KB
    each): a file of a GB listing ten million empty members would take over 5 GB to open.
    A list over npz.MAX_DIRECTORY_BYTES fails its file alone, before zipfile reads it; a
    genuine file (AMASS's SMPL-X layout, about 30 members) is read as before."""
    tree, output = tmp_path / "amass", tmp_path / "out"
    bomb, _good = short_tree(kit, tree, names=("s/a_poses.npz", "s/b_poses.npz"))
    with zipfile.ZipFile(bomb, "a") as archive:
        for index in range(npz_module.MAX_DIRECTORY_BYTES // 50):       # 46 bytes + a name
            archive.writestr(f"m{index}.npy", b"")
    with pytest.raises(InputError, match=re.escape(f"{bomb}: its list of members takes ")):
        read_motion(bomb, "smplh")
    summary = run_sequences(sequence_options(kit, tree, output, keep_going=True),
                            progress=False)
    assert [row.sequence for row in summary.rows] == ["amass/s/b_poses.npz"]
    (_name, message), = summary.failures
    assert "more than the 1048576 an input may" in message
    stageii = read_motion(kit.smplx_motions / kit.sequences[0].replace("_poses", "_stageii"),
                          "smplx")
    assert stageii.poses.shape[1] == 165


@pytest.mark.parametrize("keep_going", [True, False])
def test_principle_an_unforeseen_error_fails_its_file_alone_under_keep_going(
        kit, tmp_path, monkeypatch, capsys, keep_going):
    """An error no check foresaw (a bug) in one file's conversion stops a run with its
    traceback; under --keep-going that file fails alone, its traceback printed, and the
    others are converted: a run over thousands of files, and each resume of it, goes past
    it. Before, it stopped the run either way, losing the files in flight. A bad input met
    during a conversion keeps its own line."""
    tree, output = tmp_path / "amass", tmp_path / "out"
    short_tree(kit, tree, names=("s/a_poses.npz", "s/b_poses.npz", "s/c_poses.npz"))
    real_steps = sequences_run.sequence_steps
    errors = {"a_poses.npz": IndexError("index 9 is out of bounds for dimension 0 with size 8"),
              "b_poses.npz": InputError("b_poses.npz: a bad input met in its conversion")}

    def steps_with_errors(sequence, *args, **kwargs):
        if Path(sequence.path).name in errors:
            raise errors[Path(sequence.path).name]
        return (yield from real_steps(sequence, *args, **kwargs))
    monkeypatch.setattr(sequences_run, "sequence_steps", steps_with_errors)
    options = sequence_options(kit, tree, output, keep_going=keep_going)
    if not keep_going:
        with pytest.raises(IndexError, match="index 9"):
            run_sequences(options, progress=False)
        return
    summary = run_sequences(options, progress=False)
    assert [row.sequence for row in summary.rows] == ["amass/s/c_poses.npz"]
    assert [message for _name, message in summary.failures] == [
        f"{tree / 's/a_poses.npz'}: the conversion failed (IndexError: index 9 is out of "
        "bounds for dimension 0 with size 8): an error no check foresaw; please report it "
        "with this file", "b_poses.npz: a bad input met in its conversion"]
    assert capsys.readouterr().err.count("Traceback") == 1
    assert not output_path(output, "amass/s/a_poses.npz", "smplx").exists()


@pytest.mark.parametrize("keep_going", [True, False])
def test_principle_an_unforeseen_error_fails_its_stage2_batch_alone_under_keep_going(
        kit, smplh_mesh, tmp_path, monkeypatch, capsys, keep_going):
    """Stage 2 as the sequences: a bug met in one batch's fit stops the run with its
    traceback; under --keep-going that batch's poses fail alone and the next batch is
    converted."""
    meshes, output = tmp_path / "meshes", tmp_path / "out"
    meshes.mkdir()
    for pose_id in (1, 2):
        shutil.copy(smplh_mesh / "000001.obj", meshes / f"{pose_id:06d}.obj")
    real_fit_batch = transfer_module.fit_batch
    calls = []

    def fit_batch_with_a_bug(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise IndexError("index 9 is out of bounds for dimension 0 with size 8")
        return real_fit_batch(*args, **kwargs)
    monkeypatch.setattr(transfer_module, "fit_batch", fit_batch_with_a_bug)
    argv = stage2_argv(kit, meshes, output) + ["--poses-per-batch", "1"]
    if not keep_going:
        with pytest.raises(IndexError, match="index 9"):
            run_transfer.main(argv)
        return
    assert run_transfer.main(argv + ["--keep-going"]) == 1
    printed = capsys.readouterr()
    assert ("failed: pose 1: the fit of its batch failed (IndexError: index 9 is out of "
            "bounds for dimension 0 with size 8): an error no check foresaw") in printed.out
    assert "1 done, 0 skipped (already converted), 1 failed" in printed.out
    assert "Traceback" in printed.err
    assert not (output / "000001.pkl").exists() and (output / "000002.pkl").is_file()
