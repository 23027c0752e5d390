"""Motion sequences to SMPL-X (convert_sequences.py) on the synthetic kit.

One conversion of a synthetic AMASS tree (two shards through the command line, 60 -> 30 fps)
is shared by the tests of the output tree, the round trip and resume. The bad-input and
submitit tests use trees of short sequences and a short fit.
"""
import os
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import roma
import scipy.sparse
import smplx
import torch

import convert_sequences
from smplh2smplx.formats.body_models import load_smplh, load_smplx
from smplh2smplx.errors import InputError, SkipFile
from smplh2smplx.family import KINDS
from smplh2smplx.fit.fitter import FitSettings
from smplh2smplx.body.lbs import BodyModel
from smplh2smplx.formats.safe_pickle import load_pickle
from smplh2smplx.formats.sequence_files import (MotionSequence, read_motion, read_motion_file,
                                                write_motion)
from smplh2smplx.formats.sequences_csv import SEQUENCES_CSV, read_sequence_rows
from smplh2smplx.stages.sequences.convert import SequenceOptions, frame_spacing
from smplh2smplx.stages.sequences.shared_shape import MaskedBody, solve_shape
from smplh2smplx.stages.sequences.timeline import (carried_start, level_rows, low_pass,
                                                   mean_acceleration, motion_at,
                                                   quaternion_left_columns, sampled_positions,
                                                   smoothing_weights, unit_quaternion_log)
from smplh2smplx.stages.sequences.run import run_sequences
from smplh2smplx.stages.sequences.tree import list_sequence_files, output_path, quality_path
from smplh2smplx.stages.sequences.slurm import (ShardError, ShardTask, SlurmOptions,
                                                 shard_outcome, submit_shards)

SHORT_FIT = FitSettings(max_iterations=2)


def user_config(kit, output_dir):
    """config.py entries pointing at the kit."""
    return {"AMASS_DIR": str(kit.amass), "SMPLH_MODEL": str(kit.body_models),
            "SMPLX_MODEL": str(kit.body_models), "DEFTRAFO_PATH": str(kit.deftrafo),
            "MASK_IDS_PATH": str(kit.mask), "SEQUENCE_OUTPUT_DIR": str(output_dir)}


def options(kit, input_path, output_dir, **changes):
    base = SequenceOptions(input_path=input_path, output_dir=output_dir,
                           model_paths={kind: kit.body_models
                                        for kind in ("smpl", "smplh", "smplx")},
                           deftrafo_path=kit.deftrafo, mask_path=kit.mask, device="cpu",
                           chunk_frames=8, shape_frames=4, fit=SHORT_FIT)
    return replace(base, **changes)


def named(tree, relative):
    """The run's name of a file of `tree`: the tree folder's own name first."""
    return f"{Path(tree).name}/{relative}"


def is_finished(path, kind):
    """Whether `path` is an output file of `kind` that reads back valid."""
    try:
        read_motion_file(path, kind)
    except InputError:
        return False
    return True


def short_sequence(kit, relative, frames=10, **changes):
    """Arrays of the kit's sequence `relative` cut to `frames` frames, with changes."""
    with np.load(kit.amass / relative) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["poses"], arrays["trans"] = arrays["poses"][:frames], arrays["trans"][:frames]
    arrays["dmpls"] = arrays["dmpls"][:frames]
    arrays.update(changes)
    return arrays


def write_npz(path, arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def smplx_file_arrays(frames=5):
    """An AMASS SMPL-X sequence's arrays."""
    return {"poses": np.zeros((frames, 165)), "trans": np.zeros((frames, 3)),
            "betas": np.zeros(16), "gender": np.array("male"),
            "surface_model_type": np.array("smplx"), "mocap_frame_rate": np.array(60.0)}


# ----------------------------------------------------------------- the shared conversion

def motions(kit):
    """The kit's sequences in the shared conversion: a male and a female one."""
    return kit.sequences[:2]


@pytest.fixture(scope="module")
def converted(kit, tmp_path_factory):
    """Two of the kit's sequences, a shape.npz and a SMPL-X file, converted at 30 fps by the
    command line in two shards of 2 files (each converts one sequence and skips one file);
    returns (tree, output, (exit codes, sequences converted by each shard))."""
    tree = tmp_path_factory.mktemp("amass")
    for relative in motions(kit):
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(kit.amass / relative, tree / relative)
    first, second = map(Path, motions(kit))
    write_npz(tree / first.parent / "shape.npz", {"betas": np.zeros(16),
                                                  "gender": np.array("male")})
    write_npz(tree / second.parent.parent / "x_stageii.npz", smplx_file_arrays())
    output = tmp_path_factory.mktemp("out")
    config = user_config(kit, output)
    codes, converted_by_shard, done = [], [], set()
    for index in (0, 1):
        codes.append(convert_sequences.main(
            [str(tree), "--fps", "30", "--shard-size", "2", "--shard-index", str(index),
             "--device", "cpu", "--chunk-frames", "16", "--shape-frames", "6"],
            user_config=config))
        rows = {name.split("/", 1)[1] for name in read_sequence_rows(output / SEQUENCES_CSV)}
        converted_by_shard.append(sorted(rows - done))
        done = rows
    return tree, output, (codes, converted_by_shard)


def test_tree_is_mirrored_with_skips_named(converted, kit, capsys):
    tree, output, (codes, _) = converted
    assert codes == [0, 0]
    files = [relative for relative, _ in list_sequence_files(tree)]
    assert len(files) == 4 and all(name.startswith(tree.name + "/") for name in files)
    for relative in motions(kit):
        path = output_path(output, named(tree, relative), "smplx")
        assert path.name.endswith("_stageii.npz")
        # The input folder keeps its own name under the output root.
        assert path.relative_to(output).parent == Path(tree.name) / Path(relative).parent
        with np.load(path, allow_pickle=False) as archive:
            assert tuple(archive.files) == KINDS["smplx"].motion.keys()
            arrays = {key: archive[key] for key in archive.files}
        source = read_motion(tree / relative)
        assert arrays["poses"].shape == (30, 165)
        assert float(arrays["mocap_frame_rate"]) == 30.0
        assert float(arrays["mocap_time_length"]) == pytest.approx(1.0)
        assert str(arrays["gender"]) == source.gender
        assert arrays["gender"].dtype.kind == "U" and arrays["betas"].dtype == np.float64
        assert str(arrays["surface_model_type"]) == "smplx"
        assert arrays["betas"].shape == (16,) and int(arrays["num_betas"]) == 16
        np.testing.assert_array_equal(arrays["pose_hand"], arrays["poses"][:, 75:])
        assert quality_path(output, named(tree, relative), "smplx").is_file()
    assert not list(output.rglob("shape*")) and not list(output.rglob("x_stageii*"))
    rows = read_sequence_rows(output / SEQUENCES_CSV)
    assert sorted(rows) == sorted(named(tree, relative) for relative in motions(kit))
    for row in rows.values():
        assert row.frames == 30 and row.fps == 30.0
        assert row.v2v_mean_mm <= row.v2v_p95_mm <= row.v2v_max_mm
        assert row.jitter > 0 and row.source_jitter > 0


def test_skipped_files_are_reported_with_reasons(kit, tmp_path):
    tree = tmp_path / "tree"
    write_npz(tree / "S1" / "shape.npz", {"betas": np.zeros(16), "gender": np.array("male")})
    write_npz(tree / "S1" / "a_stageii.npz", smplx_file_arrays())
    summary = run_sequences(options(kit, tree, tmp_path / "out"), progress=False)
    reasons = dict(summary.skipped)
    assert "shape.npz: not a motion file" in reasons["tree/S1/shape.npz"]
    assert "already a SMPL-X sequence" in reasons["tree/S1/a_stageii.npz"]
    assert summary.failed == 0 and not summary.rows
    assert any("skipped: " in line and "shape.npz" in line for line in summary.lines())


def test_round_trip_with_the_smplx_package(converted, kit):
    """An output file, read back with the smplx package's SMPL-X layer, lies on the
    deformation transfer (applied here with scipy) of the source SMPL-H mesh posed with the
    file's 16 betas and translation. The source is posed by our LBS (`BodyModel`, checked
    against the smplx package in test_extract; the package's SMPL-H layer takes 10 betas
    only); nothing of the fitter is used."""
    tree, output, _ = converted
    relative = kit.sequences[1]
    arrays = read_motion_file(output_path(output, named(tree, relative), "smplx"), "smplx")
    source = read_motion(tree / relative)
    gender = str(arrays["gender"])
    layer_x = smplx.create(str(kit.body_models), model_type="smplx", gender=gender, ext="npz",
                           flat_hand_mean=True, use_pca=False,
                           num_betas=int(arrays["num_betas"]), num_expression_coeffs=10)
    smplh = BodyModel(load_smplh(kit.body_models / "smplh" / gender / "model.npz"),
                      num_betas=16, dtype=torch.float64)
    frames = np.arange(0, 60, 2)                     # 60 fps -> 30 fps: every 2nd frame
    t = lambda array: torch.as_tensor(np.asarray(array), dtype=torch.float32)  # noqa: E731
    poses = arrays["poses"]
    count = len(poses)
    with torch.no_grad():
        fitted = layer_x(
            betas=t(arrays["betas"])[None].expand(count, -1), global_orient=t(arrays["root_orient"]),
            body_pose=t(arrays["pose_body"]), jaw_pose=t(arrays["pose_jaw"]),
            leye_pose=t(arrays["pose_eye"][:, :3]), reye_pose=t(arrays["pose_eye"][:, 3:]),
            left_hand_pose=t(arrays["pose_hand"][:, :45]),
            right_hand_pose=t(arrays["pose_hand"][:, 45:]), transl=t(arrays["trans"]),
            expression=torch.zeros(count, 10)).vertices.numpy()
        src = source.poses[frames]
        smplh_vertices = smplh(torch.as_tensor(src).view(count, 52, 3),
                               torch.as_tensor(source.betas)[None].expand(count, -1),
                               torch.as_tensor(source.trans[frames]))[0].numpy()
    matrix = scipy.sparse.csr_matrix(load_pickle(kit.deftrafo)["mtx"])[:, :6890]
    mask = np.load(kit.mask)
    errors = []
    for frame in range(count):
        target = matrix @ smplh_vertices[frame].astype(np.float64)
        errors.append(np.linalg.norm(fitted[frame, mask] - target[mask], axis=1).mean() * 1000)
    errors = np.array(errors)
    # Measured: about 4 mm per frame on the kit (the SMPL-X body cannot take the SMPL-H
    # shape exactly); a fit that missed the pose or the translation is off by centimetres.
    assert errors.max() < 8.0
    row = read_sequence_rows(output / SEQUENCES_CSV)[named(tree, relative)]
    assert row.v2v_mean_mm == pytest.approx(errors.mean(), abs=0.05)
    assert row.v2v_max_mm == pytest.approx(errors.max(), abs=0.05)


def test_finished_files_are_skipped_and_broken_ones_redone(converted, kit):
    tree, output, _ = converted
    paths = [output_path(output, named(tree, relative), "smplx") for relative in motions(kit)]
    stamps = [path.stat().st_mtime_ns for path in paths]
    run_options = options(kit, tree, output, fps=30.0, keep_going=True)
    summary = run_sequences(run_options, progress=False)
    assert summary.done_before == 2 and not summary.rows
    assert [path.stat().st_mtime_ns for path in paths] == stamps
    paths[1].write_bytes(paths[1].read_bytes()[:100])          # a broken output
    assert not is_finished(paths[1], "smplx")
    summary = run_sequences(run_options, progress=False)
    assert [row.sequence for row in summary.rows] == [named(tree, motions(kit)[1])]
    assert is_finished(paths[1], "smplx")
    assert paths[0].stat().st_mtime_ns == stamps[0]


def test_shards_split_the_sorted_list(converted, kit):
    """The shared conversion ran shard 0 then shard 1 (2 files each of the sorted list)."""
    tree, _output, (_codes, converted_by_shard) = converted
    files = [relative.split("/", 1)[1] for relative, _ in list_sequence_files(tree)]
    assert files == sorted(files)
    wanted = set(motions(kit))
    assert converted_by_shard == [[name for name in files[:2] if name in wanted],
                                  [name for name in files[2:] if name in wanted]]
    assert all(converted_by_shard)


# ----------------------------------------------------------------- bad inputs

def bad_tree(kit, root):
    """A tree with one good file and one of each bad input; returns {name: expected text}."""
    good = kit.sequences[0]                          # a male sequence
    female = kit.sequences[1]
    write_npz(root / "A" / "good_poses.npz", short_sequence(kit, good))
    write_npz(root / "B" / "female_poses.npz", short_sequence(kit, female))
    write_npz(root / "C" / "empty_poses.npz", short_sequence(kit, good, frames=0))
    nan = short_sequence(kit, good)
    nan["poses"] = nan["poses"].copy()
    nan["poses"][[3, 7], 10] = np.nan
    write_npz(root / "D" / "nan_poses.npz", nan)
    write_npz(root / "E" / "wide_poses.npz", short_sequence(
        kit, good, poses=np.zeros((10, 99))))
    (root / "F").mkdir(parents=True)
    (root / "F" / "broken_poses.npz").write_bytes(b"PK\x03\x04 not really a zip")
    write_npz(root / "G" / "smplx_stageii.npz", smplx_file_arrays())
    return {"B/female_poses.npz": "no female SMPL-H model",
            "C/empty_poses.npz": "zero frames",
            "D/nan_poses.npz": "2 frames hold NaN or infinite values:\n  frame 3\n  frame 7",
            "E/wide_poses.npz": "poses has shape (10, 99)",
            "F/broken_poses.npz": "not a readable .npz file"}


@pytest.fixture
def male_only_models(kit, tmp_path):
    """A model folder with neutral and male models only (the female one is missing)."""
    models = tmp_path / "models"
    shutil.copytree(kit.body_models, models)
    shutil.rmtree(models / "smplh" / "female")
    (models / "smplh" / "SMPLH_FEMALE.pkl").unlink()
    return models


def test_bad_inputs_fail_alone_with_keep_going(kit, male_only_models, tmp_path):
    tree, output = tmp_path / "tree", tmp_path / "out"
    expected = bad_tree(kit, tree)
    run_options = options(kit, tree, output, keep_going=True, model_paths={
        "smplh": male_only_models, "smplx": kit.body_models})
    summary = run_sequences(run_options, progress=False)
    assert [row.sequence for row in summary.rows] == ["tree/A/good_poses.npz"]
    failures = {name.split("/", 1)[1]: message for name, message in summary.failures}
    assert sorted(failures) == sorted(expected)
    for name, text in expected.items():
        assert str(tree / name) in failures[name] and text in failures[name], failures[name]
    assert [name for name, _ in summary.skipped] == ["tree/G/smplx_stageii.npz"]
    # Nothing partial: only the good file's output, quality file and the table exist.
    written = sorted(path.relative_to(output).as_posix() for path in output.rglob("*")
                     if path.is_file())
    assert written == [".result_settings.json.lock", ".sequences.csv.lock",
                       "quality/tree/A/good_stageii_frames.npz", "result_settings.json",
                       "sequences.csv", "tree/A/good_stageii.npz"]
    assert list(read_sequence_rows(output / SEQUENCES_CSV)) == ["tree/A/good_poses.npz"]


def test_a_run_whose_every_file_is_done_reports_and_exits_0(kit, tmp_path, capsys):
    """A second run over a single file (or a shard) already converted, or a shard past the
    end of the list: nothing to do, the summary says so (both once ended in an
    AttributeError, there being no conversion)."""
    path = tmp_path / "in" / "take_poses.npz"
    write_npz(path, short_sequence(kit, kit.sequences[0]))
    output = tmp_path / "out"
    arguments = [str(path), "--device", "cpu", "--max-iterations", "2", "--shape-frames", "4"]
    for _ in range(2):
        assert convert_sequences.main(arguments, user_config=user_config(kit, output)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == ("sequences: 0 converted, 1 already done, 0 skipped, 0 failed, of 1 "
                       "files in this shard")
    # A shard past the end of the list: the note and an empty summary, no traceback either.
    shard = ["--shard-size", "1", "--shard-index", "5"]
    assert convert_sequences.main(arguments + shard, user_config=user_config(kit, output)) == 0
    assert capsys.readouterr().out.splitlines() == [
        "shard 5 of size 1 is empty: the input holds 1 files (1 shards)",
        "sequences: 0 converted, 0 already done, 0 skipped, 0 failed, of 0 files in this shard"]


def test_files_that_would_write_one_output_both_fail_in_every_shard(kit, tmp_path):
    """A take's SMPL-H and SMPL-X files side by side are both `take_poses.npz` in SMPL: each
    fails naming the other, in its own shard too, and nothing is written for them; and a
    file of the target's own model beside its take is skipped again, never counted done."""
    tree, output = tmp_path / "tree", tmp_path / "out"
    write_npz(tree / "A" / "take_poses.npz", short_sequence(kit, kit.sequences[0]))
    write_npz(tree / "A" / "take_stageii.npz", smplx_file_arrays())
    write_npz(tree / "B" / "good_poses.npz", short_sequence(kit, kit.sequences[0]))
    summaries = [run_sequences(options(kit, tree, output, target_model="smpl", keep_going=True,
                                       shard_size=1, shard_index=index), progress=False)
                 for index in range(3)]
    shared = output / "tree" / "A" / "take_poses.npz"
    for summary, (mine, other) in zip(summaries, [("take_poses", "take_stageii"),
                                                  ("take_stageii", "take_poses")]):
        ((name, message),) = summary.failures
        assert name == f"tree/A/{mine}.npz" and not summary.rows
        assert message == (f"{tree / 'A' / mine}.npz: its output {shared} would also be "
                           f"written from {tree / 'A' / other}.npz; convert one model's "
                           "files (--source-model) or each into its own output folder")
    assert [row.sequence for row in summaries[2].rows] == ["tree/B/good_poses.npz"]
    assert not shared.exists() and (output / "tree" / "B" / "good_poses.npz").is_file()
    # The way out the line gives: one model's files.
    picked = run_sequences(options(kit, tree / "A", tmp_path / "picked", target_model="smpl",
                                   source_model="smplh"), progress=False)
    assert [row.sequence for row in picked.rows] == ["A/take_poses.npz"] and not picked.failures
    assert [name for name, _ in picked.skipped] == ["A/take_stageii.npz"]

    # To SMPL-X the SMPL-X file is skipped, and stays skipped once its take is converted.
    output = tmp_path / "to_smplx"
    first, second = (run_sequences(options(kit, tree / "A", output), progress=False)
                     for _ in range(2))
    assert [row.sequence for row in first.rows] == ["A/take_poses.npz"]
    assert [name for name, _ in first.skipped] == ["A/take_stageii.npz"]
    assert not second.rows and second.done_before == 1
    assert [name for name, _ in second.skipped] == ["A/take_stageii.npz"]


def test_progress_bar_counts_each_files_source_frames_once(kit, male_only_models, tmp_path,
                                                           monkeypatch):
    """The bar's total is the source frames of the files to convert; a file converted moves
    it chunk by chunk, one that fails or is skipped by its frames at once; it ends full."""
    import smplh2smplx.stages.sequences.run as run_module
    tree, output = tmp_path / "tree", tmp_path / "out"
    bad_tree(kit, tree)
    bars = []

    class RecordingBar:
        def __init__(self, total, desc, unit, disable):
            self.total, self.desc, self.unit, self.updates = total, desc, unit, []
            bars.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *error):
            return False

        def update(self, amount):
            self.updates.append(amount)

        @staticmethod
        def write(text):
            pass

    monkeypatch.setattr(run_module, "tqdm", RecordingBar)
    run_sequences(options(kit, tree, output, keep_going=True, model_paths={
        "smplh": male_only_models, "smplx": kit.body_models}), progress=True)
    frames = []
    for path in tree.rglob("*.npz"):
        try:
            with np.load(path) as archive:
                frames.append(len(archive["poses"]))
        except Exception:                     # the broken file: nothing to count
            frames.append(0)
    (bar,) = bars
    assert (bar.desc, bar.unit) == ("source frames", "frame") and bar.total == sum(frames) == 45
    assert sum(bar.updates) == bar.total
    # The good file's 10 frames in its chunks of 8 and 2; the female, NaN and wide files'
    # 10 and the SMPL-X file's 5 at once; the empty and broken files' none.
    assert sorted(amount for amount in bar.updates if amount) == [2, 5, 8, 10, 10, 10]


def test_command_line_exit_codes_and_lines(kit, male_only_models, tmp_path, capsys):
    tree, output = tmp_path / "tree", tmp_path / "out"
    bad_tree(kit, tree)
    config = dict(user_config(kit, output), SMPLH_MODEL=str(male_only_models))
    arguments = [str(tree), "--device", "cpu", "--max-iterations", "2", "--shape-frames", "4"]
    assert convert_sequences.main(arguments, user_config=config) == 2     # stops at B/
    out = capsys.readouterr().out
    assert "failed: " in out and "female_poses.npz" in out and "stopped at the first" in out
    assert not (output / "tree" / "C").exists()
    assert convert_sequences.main(arguments + ["--keep-going"], user_config=config) == 1
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.startswith("failed: ")]
    for name in ("female", "empty", "nan", "wide", "broken"):
        assert any(f"{name}_poses.npz" in line for line in failed), name
    assert "0 converted, 1 already done, 1 skipped, 5 failed, of 7 files" in out
    config["DEFTRAFO_PATH"] = str(tmp_path / "missing.pkl")
    assert convert_sequences.main(arguments + ["--overwrite"], user_config=config) == 2
    assert "missing.pkl" in capsys.readouterr().err
    config["AMASS_DIR"] = "TODO"
    assert convert_sequences.main(["--device", "cpu"], user_config=config) == 2
    assert "AMASS_DIR" in capsys.readouterr().err


def test_frame_spacing_keeps_whole_frames_where_it_can(kit):
    """A rate that divides the source's keeps every n-th source frame as it is (59.94 to
    29.97 within the tolerance); another lies between frames (100 to 30); none is above."""
    path = "S/m_poses.npz"
    assert frame_spacing(120.0, 30.0, path) == (4, 30.0)
    assert frame_spacing(59.94, 29.97, path) == (2, 29.97)
    assert frame_spacing(60.0, None, path) == (1, 60.0)
    spacing, rate = frame_spacing(100.0, 30.0, path)
    assert rate == 30.0 and spacing == pytest.approx(10 / 3)
    np.testing.assert_allclose(sampled_positions(11, spacing), [0, 10 / 3, 20 / 3, 10])
    for wanted in (60.0, 0.0):
        with pytest.raises(InputError, match=path):
            frame_spacing(30.0, wanted, path)
    with np.load(kit.amass / kit.sequences[0]) as archive:
        poses, trans = archive["poses"], archive["trans"]
    kept = motion_at(poses, trans, sampled_positions(len(poses), 4))
    assert np.array_equal(kept[0], poses[::4]) and np.array_equal(kept[1], trans[::4])


@pytest.mark.parametrize("source, wanted, spacing", [
    (59.94, 30.0, 2), (29.97, 30.0, 1), (119.88, 30.0, 4), (23.976, 24.0, 1),
    (60000 / 1001, 30.0, 2), (30000 / 1001, 30.0, 1)])
def test_ntsc_rates_asked_at_their_round_rate_keep_whole_frames(source, wanted, spacing):
    """Video's NTSC rates (1000/1001 of the round ones), exact or rounded as files store
    them, are the round rate's clock: `--fps 30` keeps every n-th frame, written at the
    source's rate / n, never refused as a raise nor interpolated."""
    assert frame_spacing(source, wanted, "v.npz") == (spacing, source / spacing)


def test_rates_a_little_further_apart_are_not_one_clock():
    assert frame_spacing(30.1, 30.0, "v.npz") == (pytest.approx(30.1 / 30), 30.0)
    with pytest.raises(InputError, match="cannot raise 29.9 fps to 30 fps"):
        frame_spacing(29.9, 30.0, "v.npz")


def test_smplx_file_given_directly_fails(kit, tmp_path):
    path = tmp_path / "x_stageii.npz"
    write_npz(path, smplx_file_arrays())
    with pytest.raises(SkipFile, match="is a SMPL-X sequence"):
        read_motion(path, "smplh")
    summary = run_sequences(options(kit, path, tmp_path / "out"), progress=False)
    assert not summary.skipped
    assert summary.failures[0][0] == f"{tmp_path.name}/x_stageii.npz"
    assert "already a SMPL-X sequence" in summary.failures[0][1]
    assert str(path) in summary.failures[0][1]


# ----------------------------------------------------------------- pieces


def test_solve_shape_recovers_shared_betas_and_translations(kit):
    """Vertices posed with known betas and translations are solved back exactly."""
    data = load_smplx(kit.smplx_npz)
    body = BodyModel(data, num_betas=10, dtype=torch.float64)
    mask = torch.as_tensor(np.load(kit.mask))
    rng = np.random.default_rng(3)
    pose = torch.as_tensor(rng.normal(0, 0.3, (5, 55, 3)))
    betas = torch.as_tensor(rng.normal(0, 1.0, 10))
    transl = torch.as_tensor(rng.normal(0, 0.5, (5, 3)))
    with torch.no_grad():
        targets = body(pose, betas.expand(5, -1), transl)[0][:, mask]
    solved_betas, solved_transl = solve_shape(MaskedBody(body, mask), pose, targets, ridge=0.0)
    np.testing.assert_allclose(solved_betas.numpy(), betas.numpy(), atol=1e-6)
    np.testing.assert_allclose(solved_transl.numpy(), transl.numpy(), atol=1e-8)


def test_solve_shape_on_weighted_vertices_is_their_weighted_least_squares(kit):
    """On a subset with loss weights, the betas and translations minimise the weighted sum
    of squares: checked against numpy's least squares on columns posed one unit beta and
    one unit translation at a time with the model itself (noisy targets, no exact fit)."""
    data = load_smplx(kit.smplx_npz)
    body = BodyModel(data, num_betas=4, dtype=torch.float64)
    rng = np.random.default_rng(5)
    ids = np.sort(rng.choice(np.load(kit.mask), 400, replace=False))
    weights = rng.uniform(0.5, 4.0, len(ids))
    count, num_betas = 3, 4
    pose = torch.as_tensor(rng.normal(0, 0.3, (count, 55, 3)))
    with torch.no_grad():
        def posed(betas, transl):
            return body(pose, betas.expand(count, -1), transl)[0][:, ids].numpy()
        zero = torch.zeros(num_betas, dtype=torch.float64)
        base = posed(zero, torch.zeros(count, 3, dtype=torch.float64))
        targets = posed(torch.as_tensor(rng.normal(0, 1.0, num_betas)),
                        torch.as_tensor(rng.normal(0, 0.5, (count, 3))))
    targets = targets + rng.normal(0, 0.01, targets.shape)
    # Unknowns [betas | 3 per frame]; rows (frame, vertex, coordinate), scaled by sqrt(w).
    design = np.zeros((count, len(ids), 3, num_betas + 3 * count))
    for beta in range(num_betas):
        unit = torch.zeros(num_betas, dtype=torch.float64)
        unit[beta] = 1.0
        design[..., beta] = posed(unit, torch.zeros(count, 3, dtype=torch.float64)) - base
    for frame in range(count):
        design[frame, :, :, num_betas + 3 * frame:num_betas + 3 * frame + 3] = np.eye(3)
    scale = np.sqrt(weights)[None, :, None]
    expected = np.linalg.lstsq((design * scale[..., None]).reshape(-1, design.shape[-1]),
                               ((targets - base) * scale).ravel(), rcond=None)[0]
    solved_betas, solved_transl = solve_shape(MaskedBody(body, ids, weights), pose,
                                              torch.as_tensor(targets), ridge=0.0)
    np.testing.assert_allclose(solved_betas.numpy(), expected[:num_betas], atol=1e-7)
    np.testing.assert_allclose(solved_transl.numpy().ravel(), expected[num_betas:], atol=1e-8)
    unweighted = solve_shape(MaskedBody(body, ids), pose, torch.as_tensor(targets),
                             ridge=0.0)[0]
    assert np.abs(unweighted.numpy() - expected[:num_betas]).max() > 1e-5


def test_mean_acceleration_of_a_parabola():
    times = np.arange(10) / 30.0
    joints = np.zeros((10, 2, 3))
    joints[:, :, 2] = 0.5 * 9.81 * times[:, None] ** 2      # free fall
    np.testing.assert_allclose(mean_acceleration(joints, 30.0), 9.81)
    assert len(mean_acceleration(joints[:2], 30.0)) == 0


def weighted_line_at_zero(offsets, values, weights):
    """The value at 0 of the line through (offsets, values) of least weighted squares
    (numpy's polyfit; values (K,) or (K, C))."""
    return np.polyfit(offsets, values, 1, w=np.sqrt(weights))[-1]


def test_quaternion_product_and_log_written_out_agree_with_roma():
    """The low-pass's own quaternion product (as the left factor's matrix) and logarithm
    equal roma's, for either sign of a quaternion, the identity and half turns."""
    rng = np.random.default_rng(8)
    first = roma.random_unitquat(50, dtype=torch.float64)
    second = torch.cat([roma.random_unitquat(46, dtype=torch.float64),
                        torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, -1.0],
                                      [1.0, 0.0, 0.0, 0.0], [0.0, 0.6, 0.8, 0.0]],
                                     dtype=torch.float64)])
    second = second * torch.as_tensor(rng.choice([-1.0, 1.0], (50, 1)))
    columns = quaternion_left_columns(first)
    product = sum(columns[c] * second[:, c:c + 1] for c in range(4))
    torch.testing.assert_close(product, roma.quat_product(first, second), rtol=0, atol=1e-15)
    torch.testing.assert_close(unit_quaternion_log(second[:48]),
                               roma.unitquat_to_rotvec(second[:48]), rtol=0, atol=1e-12)
    # Half turns have two logarithms (angle pi about either direction of the axis): either
    # gives back the rotation.
    for quaternions in (second, product):
        torch.testing.assert_close(roma.rotvec_to_rotmat(unit_quaternion_log(quaternions)),
                                   roma.unitquat_to_rotmat(quaternions), rtol=0, atol=1e-12)


def test_low_pass_of_turns_about_one_axis_filters_their_angles():
    """Rotations about one axis are low-passed as their angles are: inside the sequence, the
    Gaussian-weighted mean of the neighbours' angles (a convolution); near its ends and
    where neighbours are not fitted yet, the value at the frame of the weighted line through
    the neighbours there are (which keeps a trend, where a one-sided mean lags)."""
    rng = np.random.default_rng(4)
    count, rate, seconds = 40, 60.0, 0.03
    angles = np.cumsum(rng.normal(0, 0.05, (count, 2)), axis=0)       # two joints
    axes = np.array([[0.0, 0.6, 0.8], [1.0, 0.0, 0.0]])
    corrections = roma.rotvec_to_rotmat(torch.as_tensor(angles[..., None] * axes))
    offsets = torch.as_tensor(rng.normal(0, 0.01, (count, 3)))
    weights = smoothing_weights(rate, seconds)
    width = seconds * rate
    assert len(weights) == 2 * int(np.ceil(3 * width)) + 1
    frames = np.arange(count)
    filtered, shifted = low_pass(corrections, offsets, weights, frames, count)
    kernel = np.exp(-0.5 * (np.arange(-6, 7) / width) ** 2)
    inside = np.arange(6, count - 6)
    expected_angles = np.stack([np.convolve(angles[:, j], kernel, mode="same")
                                for j in range(2)], axis=1) / kernel.sum()
    np.testing.assert_allclose(roma.rotmat_to_rotvec(filtered).numpy()[inside],
                               expected_angles[inside, :, None] * axes, atol=1e-9)
    expected_offsets = np.stack([np.convolve(offsets[:, c].numpy(), kernel, mode="same")
                                 for c in range(3)], axis=1) / kernel.sum()
    np.testing.assert_allclose(shifted.numpy()[inside], expected_offsets[inside], atol=1e-12)
    for frame in (0, 2, count - 1):
        near = np.arange(max(0, frame - 6), min(count, frame + 7))
        line = weighted_line_at_zero(near - frame, angles[near], kernel[near - frame + 6])
        np.testing.assert_allclose(roma.rotmat_to_rotvec(filtered)[frame].numpy(),
                                   line[:, None] * axes, atol=1e-9)
        np.testing.assert_allclose(shifted[frame].numpy(), weighted_line_at_zero(
            near - frame, offsets[near].numpy(), kernel[near - frame + 6]), atol=1e-12)
    # A trend is kept to the ends: angles on a line come out as they went in.
    ramp = roma.rotvec_to_rotmat(torch.as_tensor(np.linspace(0, 1, count)[:, None, None]
                                                 * axes))
    np.testing.assert_allclose(low_pass(ramp, offsets, weights, frames, count)[0].numpy(),
                               ramp.numpy(), atol=1e-9)
    # Frames whose neighbours are not fitted yet use those that are.
    partial, _ = low_pass(corrections, offsets, weights, np.array([20]), 22)
    near = np.arange(14, 22)
    line = weighted_line_at_zero(near - 20, angles[near], kernel[near - 20 + 6])
    np.testing.assert_allclose(roma.rotmat_to_rotvec(partial)[0].numpy(), line[:, None] * axes,
                               atol=1e-9)
    np.testing.assert_array_equal(smoothing_weights(rate, 0.0), [1.0])


def test_smoothing_filters_the_fitted_corrections_of_the_source(kit):
    """With smoothing, each frame's pose is the source's rotation turned by the low-passed
    corrections R_fit R_src^T of the unsmoothed conversion (and likewise the translation):
    at each frame, the weighted line (numpy's) through the neighbours' rotation vectors
    (scipy's) about it; the errors reported are those of the frames written."""
    from scipy.spatial.transform import Rotation

    from smplh2smplx.body.deformation import load_deformation_transfer
    from smplh2smplx.family import map_pose
    from smplh2smplx.stages.sequences.convert import GenderModels, convert_sequence
    deformation = load_deformation_transfer(kit.deftrafo, kit.mask)
    models = GenderModels(options(kit, kit.amass, Path("unused")), "smplh", "neutral",
                          deformation.mask_ids, torch.device("cpu"))
    sequence = read_motion(kit.amass / kit.sequences[0])
    seconds, rate = 0.05, sequence.framerate
    raw, smoothed = (convert_sequence(sequence, models, deformation, chunk_frames=8,
                                      shape_frames=4, smoothing=value)
                     for value in (0.0, seconds))
    count = len(sequence.poses)
    source = map_pose(sequence.poses, "smplh", "smplx").numpy()
    fitted = raw.output.poses.reshape(count, -1, 3)
    width = seconds * rate
    radius = int(np.ceil(3 * width))
    expected = np.empty_like(fitted)
    for joint in range(fitted.shape[1]):
        corrections = (Rotation.from_rotvec(fitted[:, joint])
                       * Rotation.from_rotvec(source[:, joint]).inv())
        for frame in range(count):
            near = np.arange(max(0, frame - radius), min(count, frame + radius + 1))
            weights = np.exp(-0.5 * ((near - frame) / width) ** 2)
            tangent = (corrections[frame].inv() * corrections[near]).as_rotvec()
            mean = weighted_line_at_zero(near - frame, tangent, weights)
            expected[frame, joint] = (corrections[frame] * Rotation.from_rotvec(mean)
                                      * Rotation.from_rotvec(source[frame, joint])).as_rotvec()
    got = Rotation.from_rotvec(smoothed.output.poses.reshape(-1, 3))
    angle = (got * Rotation.from_rotvec(expected.reshape(-1, 3)).inv()).magnitude()
    assert angle.max() < 1e-5
    offsets = raw.output.trans - sequence.trans
    for frame in (0, count // 2, count - 1):
        near = np.arange(max(0, frame - radius), min(count, frame + radius + 1))
        weights = np.exp(-0.5 * ((near - frame) / width) ** 2)
        np.testing.assert_allclose(
            smoothed.output.trans[frame],
            sequence.trans[frame] + weighted_line_at_zero(near - frame, offsets[near], weights),
            atol=1e-6)
    assert not np.allclose(smoothed.output.poses, raw.output.poses, atol=1e-4)
    np.testing.assert_allclose(smoothed.output.betas, raw.output.betas)
    # The errors are those of the smoothed frames: the unsmoothed fit's, plus a little.
    assert abs(smoothed.v2v_mm.mean() / raw.v2v_mm.mean() - 1.0) < 0.02
    assert not np.allclose(smoothed.v2v_mm, raw.v2v_mm)


def test_level_rows_cover_a_chunk_once_coarse_first():
    levels = level_rows(40, (16, 4, 1))
    np.testing.assert_array_equal(levels[0], [0, 16, 32, 39])
    np.testing.assert_array_equal(levels[1], [4, 8, 12, 20, 24, 28, 36])
    rows = np.concatenate(levels)
    assert sorted(rows) == list(range(40)) and len(rows) == 40
    assert [list(level) for level in level_rows(1, (16, 4, 1))] == [[0]]
    assert [list(level) for level in level_rows(5, (16, 4))] == [[0, 4], [1, 2, 3]]


def test_carried_start_interpolates_the_known_corrections():
    """Between two known frames the correction is their slerp (scipy's, here) and the
    offset their linear interpolation; past the last known frame, that frame's; a known
    frame keeps its own."""
    from scipy.spatial.transform import Rotation, Slerp
    rng = np.random.default_rng(5)
    count, joints = 12, 3
    corrections = roma.rotvec_to_rotmat(torch.as_tensor(rng.normal(0, 0.6, (count, joints, 3))))
    offsets = torch.as_tensor(rng.normal(0, 0.1, (count, 3)))
    known = np.zeros(count, dtype=bool)
    known[[0, 4, 9]] = True
    frames = np.array([1, 3, 4, 6, 10, 11])
    start, shift = carried_start(frames, known, corrections, offsets)
    rotvecs = roma.rotmat_to_rotvec(corrections).numpy()
    for row, frame in enumerate(frames):
        before = max(k for k in (0, 4, 9) if k <= frame)
        after = min((k for k in (0, 4, 9) if k >= frame), default=before)
        for joint in range(joints):
            if after == before:
                expected = Rotation.from_rotvec(rotvecs[before, joint])
            else:
                expected = Slerp([before, after], Rotation.from_rotvec(
                    rotvecs[[before, after], joint]))([frame])[0]
            got = Rotation.from_matrix(start[row, joint].numpy())
            assert (got * expected.inv()).magnitude() < 1e-9
        weight = 0.0 if after == before else (frame - before) / (after - before)
        np.testing.assert_allclose(shift[row].numpy(), (1 - weight) * offsets[before].numpy()
                                   + weight * offsets[after].numpy(), atol=1e-12)


def test_kept_starts_are_interpolated_and_as_good_as_the_frames_around_them(kit):
    """Unsmoothed, a frame kept as started (no step) lies between frames of the coarser
    levels at most KEPT_START_SPAN_SECONDS apart, is the slerp (scipy's) of their
    corrections, and its error on the vertices the fit follows (its loss subset, weighted)
    is within KEPT_START_MARGIN of theirs, interpolated."""
    from scipy.spatial.transform import Rotation, Slerp

    from smplh2smplx.body.deformation import load_deformation_transfer
    from smplh2smplx.family import map_pose
    from smplh2smplx.stages.sequences.convert import (FRAME_FIT, GenderModels, SourceFrames,
                                                      convert_sequence, load_gender_model)
    from smplh2smplx.stages.sequences.frame_fits import (KEPT_START_MARGIN,
                                                         KEPT_START_SPAN_SECONDS)
    deformation = load_deformation_transfer(kit.deftrafo, kit.mask)
    run_options = options(kit, kit.amass, Path("unused"), fit=FRAME_FIT)
    models = GenderModels(run_options, "smplh", "neutral", deformation.mask_ids,
                          torch.device("cpu"))
    sequence = read_motion(kit.amass / kit.sequences[0])
    chunk = 40
    result = convert_sequence(sequence, models, deformation, chunk_frames=chunk,
                              smoothing=0.0)
    kept = np.flatnonzero(result.iterations == 0)
    assert 0 < len(kept) < len(result.iterations)
    source = Rotation.from_rotvec(map_pose(sequence.poses, "smplh", "smplx").numpy()
                                  .reshape(-1, 3))
    fitted = Rotation.from_rotvec(result.output.poses.reshape(-1, 3))
    count = len(sequence.poses)
    corrections = (fitted * source.inv()).as_rotvec().reshape(count, -1, 3)
    # The written frames' errors on the fit's subset, posed here in float64.
    subset = models.fitter.model.fit_set
    assert 0 < len(subset.positions) < len(deformation.mask_ids)
    targets, _ = SourceFrames(sequence, 1, models, deformation).targets(np.arange(count))
    body = BodyModel(load_gender_model(run_options, "smplx", "neutral"), num_betas=16,
                     dtype=torch.float64)
    output = result.output
    with torch.no_grad():
        vertices = body(torch.as_tensor(output.poses).view(count, -1, 3),
                        torch.as_tensor(output.betas)[None].expand(count, -1),
                        torch.as_tensor(output.trans))[0]
    distances = (vertices[:, deformation.mask_ids[subset.positions]]
                 - targets[:, subset.positions].double()).norm(dim=-1)
    weights = subset.loss_weights.double()
    errors = (distances @ weights / weights.sum() * 1000.0).numpy()
    for start in range(0, len(errors), chunk):
        levels = level_rows(min(chunk, len(errors) - start))
        for level, rows in enumerate(levels[1:], 1):
            coarser = np.concatenate(levels[:level]) + start
            for frame in set(rows + start) & set(kept):
                before, after = coarser[coarser < frame].max(), coarser[coarser > frame].min()
                assert after - before <= KEPT_START_SPAN_SECONDS * sequence.framerate
                weight = (frame - before) / (after - before)
                reference = (1 - weight) * errors[before] + weight * errors[after]
                assert errors[frame] <= (1 + KEPT_START_MARGIN) * reference + 2e-4
                for joint in range(corrections.shape[1]):
                    expected = Slerp([before, after], Rotation.from_rotvec(
                        corrections[[before, after], joint]))([frame])[0]
                    turn = Rotation.from_rotvec(corrections[frame, joint]) * expected.inv()
                    assert turn.magnitude() < 1e-5


def test_sequence_frames_reach_their_own_long_fits(kit):
    """With the default frame fit, levels, kept starts and filter, every frame's error in
    each of the kit's motions is that of a long fit of the frame alone (from its source
    pose, same betas) within 2%."""
    from smplh2smplx.body.deformation import load_deformation_transfer
    from smplh2smplx.fit.fitter import BodyFitter
    from smplh2smplx.stages.sequences.convert import (FRAME_FIT, GenderModels, SourceFrames,
                                                      convert_sequence, load_gender_model)
    deformation = load_deformation_transfer(kit.deftrafo, kit.mask)
    run_options = options(kit, kit.amass, Path("unused"), fit=FRAME_FIT)
    models = GenderModels(run_options, "smplh", "neutral", deformation.mask_ids,
                          torch.device("cpu"))
    long_fit = BodyFitter(load_gender_model(run_options, "smplx", "neutral"),
                          deformation.mask_ids,
                          FitSettings(max_iterations=40, tolerance=1e-7, fit_vertices=0,
                                      fit_betas=False, num_betas=16))
    for name in kit.sequences:
        sequence = read_motion(kit.amass / name)
        result = convert_sequence(sequence, models, deformation, chunk_frames=40)
        frames = np.arange(len(sequence.poses))
        targets, _ = SourceFrames(sequence, 1, models, deformation).targets(frames)
        betas = torch.as_tensor(result.output.betas).float().expand(len(frames), -1)
        alone = long_fit.fit(targets, models.map_pose(sequence.poses).float(),
                             betas).v2v_mean_mm
        ratio = result.v2v_mm / alone.numpy()
        assert ratio.max() < 1.02, (name, ratio.max())
        assert result.iterations.mean() < 4


@pytest.mark.parametrize("seconds", ["-0.01", "5", "nan"])
def test_smoothing_out_of_range_is_one_line_and_exit_2(kit, tmp_path, capsys, seconds):
    code = convert_sequences.main([str(kit.amass), "--smoothing", seconds, "--device", "cpu"],
                                  user_config=user_config(kit, tmp_path / "out"))
    printed = capsys.readouterr()
    assert code == 2 and "smoothing must be from 0 to 1.0 seconds" in printed.err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.npz"))


def test_output_file_reads_back_and_rejects_inconsistency(tmp_path):
    rng = np.random.default_rng(0)
    pose = rng.normal(size=(7, 55, 3))
    sequence = MotionSequence(kind="smplx", poses=pose.reshape(7, 165),
                              trans=rng.normal(size=(7, 3)), betas=rng.normal(size=10),
                              gender="female", framerate=30.0)
    path = tmp_path / "a_stageii.npz"
    write_motion(path, sequence)
    arrays = read_motion_file(path, "smplx")
    np.testing.assert_array_equal(arrays["poses"], pose.reshape(7, 165))
    np.testing.assert_array_equal(arrays["pose_eye"], pose[:, 23:25].reshape(7, 6))
    assert float(arrays["mocap_time_length"]) == pytest.approx(7 / 30)
    assert [p.name for p in tmp_path.iterdir()] == ["a_stageii.npz"]     # no temporary left
    arrays = dict(arrays, pose_jaw=np.zeros((7, 3)))
    np.savez(path, **arrays)
    with pytest.raises(InputError, match="pose_jaw does not match"):
        read_motion_file(path, "smplx")
    assert not is_finished(path, "smplx")


@pytest.mark.parametrize("written, read", [("Female", "female"), (b"MALE ", "male"),
                                           (" neutral\n", "neutral"),
                                           ("b'female'", "female"), ('b"Male"', "male")])
def test_gender_is_read_in_any_case_and_without_spaces(tmp_path, written, read):
    """As AMASS's files spell it; its SSM_synced files hold the text of a bytes object."""
    path = tmp_path / "a_stageii.npz"
    write_npz(path, dict(smplx_file_arrays(), gender=np.array(written)))
    assert read_motion(path).gender == read


@pytest.mark.parametrize("gender", [np.array("woman"), np.array(1), np.array(["male", "male"]),
                                    np.array("b'woman'"), np.array("b'male")])
def test_an_unknown_gender_is_named_with_its_file(tmp_path, gender):
    path = tmp_path / "a_stageii.npz"
    write_npz(path, dict(smplx_file_arrays(), gender=gender))
    with pytest.raises(InputError, match=r"a_stageii\.npz: gender is .*expected one of neutral"):
        read_motion(path)


# ----------------------------------------------------------------- submitit


def test_submitit_local_executor_runs_the_shards(kit, tmp_path):
    tree, output = tmp_path / "tree", tmp_path / "out"
    names = [f"S{i}/m{i}_poses.npz" for i in range(2)]
    for name in names:
        write_npz(tree / name, short_sequence(kit, kit.sequences[0], 8))
    run_options = options(kit, tree, output)
    jobs = submit_shards(run_options, SlurmOptions(shards=2, log_dir=tmp_path / "logs",
                                                   cluster="local", minutes=10, cpus=1))
    assert len(jobs) == 2
    summaries = [job.result() for job in jobs]
    names = [named(tree, name) for name in names]
    assert [[row.sequence for row in summary.rows] for summary in summaries] == [
        names[:1], names[1:]]
    assert all(is_finished(output_path(output, name, "smplx"), "smplx") for name in names)


def task_process(job):
    """The process id of a local job's one task: the child of submitit's controller
    (found in /proc once the controller has started it)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except OSError:                                  # the process ended meanwhile
                continue
            if parent == job._process.pid:
                return int(stat.parent.name)
        time.sleep(0.05)
    raise AssertionError("the local job started no task")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_a_task_signalled_at_its_time_limit_is_requeued_and_resumes(kit, tmp_path):
    """SLURM signals a task (USR2) before its time limit: the task is requeued, not ended,
    and run again converts only the files not yet done; with --overwrite, the files it has
    not yet converted again."""
    tree, output = tmp_path / "tree", tmp_path / "out"
    names = [f"S/m{i:02d}_poses.npz" for i in range(24)]
    for name in names:
        write_npz(tree / name, short_sequence(kit, kit.sequences[0], 8))
    outputs = [output_path(output, named(tree, name), "smplx") for name in names]
    for overwrite in (False, True):
        submitted = time.time()
        # One minute: the task counts as timed out at any signal (submitit's rule), the
        # case a plain function is not requeued in.
        job, = submit_shards(options(kit, tree, output, overwrite=overwrite), SlurmOptions(
            shards=1, log_dir=tmp_path / f"logs{overwrite}", cluster="local", minutes=1,
            cpus=1))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(
                path.exists() and path.stat().st_mtime >= submitted for path in outputs):
            time.sleep(0.05)
        os.kill(task_process(job), signal.SIGUSR2)
        summary = shard_outcome(job)
        assert not isinstance(summary, ShardError), summary.message
        assert "Requeued" in job.stdout()
        assert summary.done_before >= 1
        assert summary.done_before + len(summary.rows) == len(names)
        assert all(is_finished(path, "smplx") for path in outputs)
        assert all(path.stat().st_mtime >= submitted for path in outputs)


def test_a_task_that_ends_without_a_result_is_one_line_naming_its_log(kit, tmp_path, capsys):
    tree, output = tmp_path / "tree", tmp_path / "out"
    write_npz(tree / "S/m_poses.npz", short_sequence(kit, kit.sequences[0], 8))
    job, = submit_shards(options(kit, tree, output), SlurmOptions(
        shards=1, log_dir=tmp_path / "logs", cluster="local", minutes=10, cpus=1))
    os.kill(task_process(job), signal.SIGKILL)       # as the out-of-memory killer does
    outcome = shard_outcome(job)
    assert isinstance(outcome, ShardError) and outcome.code == 1
    assert "the task ended without a result" in outcome.message
    assert str(job.paths.stderr) in outcome.message and "\n" not in outcome.message


def test_a_task_runs_on_at_most_the_cpus_it_asked_for(monkeypatch):
    """On a node that shows a task more cores than it was given, torch would start a thread
    per core."""
    import smplh2smplx.stages.sequences.slurm as slurm_module
    seen = []
    monkeypatch.setattr(slurm_module, "run_sequences",
                        lambda options, progress: seen.append(torch.get_num_threads()))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ShardTask(1)(None)
        ShardTask(8)(None)
        assert seen == [1, 2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_a_slurm_task_is_waited_for_by_its_result_and_the_queue_not_accounting(
        tmp_path, monkeypatch):
    """On a cluster without accounting (sacct refuses), a task killed without a result is
    reported once it has left the queue (squeue), not waited for forever; one still queued,
    or whose queue squeue cannot read, is waited for until its result comes."""
    import threading
    import submitit
    import smplh2smplx.stages.sequences.slurm as slurm_module
    from submitit.core.utils import cloudpickle_dump
    queue, reachable = tmp_path / "queue", tmp_path / "reachable"
    tools = tmp_path / "bin"
    tools.mkdir()
    # Shell builtins only, the stand-ins alone on PATH: a machine with SLURM runs it the same.
    for name, script in (("squeue", f"test -e {reachable} || exit 1; "
                                    f"while read -r task; do echo $task; done < {queue}"),
                         ("sacct", "echo 'Slurm accounting storage is disabled' >&2; exit 1")):
        (tools / name).write_text(f"#!/bin/sh\n{script}\n")
        (tools / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tools))
    monkeypatch.setattr(slurm_module, "RESULT_POLL_SECONDS", 0.01)
    monkeypatch.setattr(slurm_module, "QUEUE_POLL_SECONDS", 0.05)
    (tmp_path / "logs").mkdir()

    def waiting(job_id):
        job = submitit.SlurmJob(tmp_path / "logs", job_id)
        outcome = []
        thread = threading.Thread(target=lambda: outcome.append(shard_outcome(job)),
                                  daemon=True)
        thread.start()
        return job, thread, outcome

    queue.write_text("7_0\n7_1\n")
    job, thread, outcome = waiting("7_1")
    time.sleep(0.5)                          # squeue does not answer: still waiting
    reachable.touch()
    time.sleep(0.5)                          # listed: still waiting
    assert thread.is_alive()
    cloudpickle_dump(("success", "its summary"), job.paths.result_pickle)
    thread.join(10)
    assert outcome == ["its summary"]

    queue.write_text("7_1\n")               # 7_2 killed: gone, and no result
    job, thread, outcome = waiting("7_2")
    thread.join(10)
    assert not thread.is_alive(), "still waiting for a task that left the queue"
    assert outcome == [ShardError(1, "the task ended without a result (killed, or out of "
                                     f"memory?); its log: {job.paths.stderr}; rerun the "
                                     "command to resume it")]


def test_a_task_that_crashes_is_one_line_with_its_error_and_log(tmp_path):
    import submitit
    executor = submitit.LocalExecutor(tmp_path / "logs")
    executor.update_parameters(timeout_min=1)
    job = executor.submit(int, "x")                   # raises in the task, as a bug would
    outcome = shard_outcome(job)
    assert isinstance(outcome, ShardError) and outcome.code == 1
    assert outcome.message.startswith(
        "the task failed (ValueError: invalid literal for int() with base 10: 'x'); its log: "
        f"{job.paths.stderr}")
    assert "\n" not in outcome.message


# ----------------------------------------------------------------- report


def test_report_page_plots_and_animation(converted, kit):
    from PIL import Image
    from smplh2smplx.stages.sequences.report import write_sequence_report
    tree, output, _ = converted
    index = write_sequence_report(options(kit, tree, output, fps=30.0),
                                  num_worst=2, animation_frames=3)
    page = index.read_text()
    rows = read_sequence_rows(output / SEQUENCES_CSV)
    worst = max(rows.values(), key=lambda row: row.v2v_mean_mm)
    assert f"Worst sequence: {worst.sequence}" in page
    with Image.open(index.parent / "worst_sequence.gif") as animation:
        assert animation.n_frames == 3
        width, height = animation.size
    assert width > height > 100
    for name in ("sequence_00.png", "sequence_01.png"):
        assert name in page and (index.parent / name).stat().st_size > 1000


def test_report_counts_the_input_files_without_an_output(converted, kit, tmp_path, capsys):
    """After a cluster run, which motion files are not converted (failed, a shard not run, a
    task that ended): the report counts and lists them; the shape file and the SMPL-X file
    that the run skips are not counted."""
    from smplh2smplx.stages.sequences.report import write_sequence_report
    source, converted_output, _ = converted
    tree, output = tmp_path / source.name, tmp_path / "out"
    shutil.copytree(source, tree)
    shutil.copytree(converted_output, output)
    new = named(tree, "extra/late_poses.npz")
    write_npz(tree / "extra" / "late_poses.npz", short_sequence(kit, kit.sequences[0], 8))
    index = write_sequence_report(options(kit, tree, output, fps=30.0), num_worst=1,
                                  animation_frames=2)
    assert "3 motion files to convert, 2 converted, 1 without an output" in index.read_text()
    assert (index.parent / "not_converted.txt").read_text() == f"{new}\n"
    assert "1 of the input's 3 motion files have no output" in capsys.readouterr().out
    convert_sequences.main([str(tree), "--fps", "30", "--device", "cpu", "--chunk-frames",
                            "16", "--shape-frames", "6"], user_config=user_config(kit, output))
    index = write_sequence_report(options(kit, tree, output, fps=30.0), num_worst=1,
                                  animation_frames=2)
    assert "3 motion files to convert, 3 converted, 0 without" in index.read_text()
    assert (index.parent / "not_converted.txt").read_text() == ""


def test_report_without_the_input_at_hand_says_why_it_has_no_animation(converted, kit,
                                                                         tmp_path, capsys):
    """The report of an output folder copied away from its input (the AMASS tree is a
    licensed download, often not on the machine that reads the results), or whose worst
    sequence's source was moved since: the page, its table and plots are written, and in
    place of the animation one line says why (before, the report failed whole); an
    animation of an earlier report is removed, not left beside a page that does not show it."""
    from smplh2smplx.stages.sequences.report import write_sequence_report
    tree, output, _ = converted
    copy = tmp_path / "out"
    shutil.copytree(output, copy)
    (copy / "report").mkdir(exist_ok=True)
    (copy / "report" / "worst_sequence.gif").write_bytes(b"GIF89a old")
    gone = tmp_path / "elsewhere" / tree.name
    index = write_sequence_report(options(kit, gone, copy, fps=30.0), num_worst=2,
                                  animation_frames=2)
    page = index.read_text()
    worst = max(read_sequence_rows(copy / SEQUENCES_CSV).values(),
                key=lambda row: row.v2v_mean_mm)
    assert f"Worst sequence: {worst.sequence}" in page
    assert "No animation:" in page and "sequence file not found" in page
    assert "worst_sequence.gif" not in page
    assert not (index.parent / "worst_sequence.gif").exists()
    assert all((index.parent / f"sequence_{i:02d}.png").stat().st_size > 1000 for i in (0, 1))
    assert "no animation of the worst sequence" in capsys.readouterr().out
    # The input at hand but the worst sequence's source moved away since its conversion.
    moved = tmp_path / "moved" / tree.name
    shutil.copytree(tree, moved)
    (moved / worst.sequence.split("/", 1)[1]).unlink()
    page = write_sequence_report(options(kit, moved, copy, fps=30.0), num_worst=1,
                                 animation_frames=2).read_text()
    assert "No animation:" in page and "1 without an output" not in page


def test_frames_follow_the_subset_alone(kit):
    """On SMPL-H's mesh the per-pose loss subset is cut to a third of the mask, and a per-pose
    fit ends with a step on the whole mask; a sequence's frame and shape fitters follow a
    subset of that size uncut, with no such step. On SMPL-X's mask nothing is cut. Between
    one mesh every start of levels 3 and 4 is kept."""
    from smplh2smplx.fit.fitter import BodyFitter
    from smplh2smplx.stages.sequences.convert import (GenderModels, convert_sequence,
                                                      load_gender_model, pair_transfer)
    run_options = options(kit, kit.smpl_motions, Path("unused"), target_model="smplh",
                          fit=FitSettings(max_iterations=2), chunk_frames=16)
    transfer = pair_transfer(run_options, "smpl", "smplh")
    models = GenderModels(run_options, "smpl", "neutral", transfer.mask_ids,
                          torch.device("cpu"))
    per_pose = BodyFitter(load_gender_model(run_options, "smplh", "neutral"),
                          transfer.mask_ids, FitSettings(max_iterations=2))
    assert per_pose.model.subset_cut
    assert not models.fitter.model.subset_cut and not models.shape_fitter.model.subset_cut
    assert (len(models.fitter.model.fit_set.positions)
            == len(models.shape_fitter.model.fit_set.positions)
            == len(per_pose.model.fit_set.positions))
    calls = []
    fit = models.fitter.fit
    models.fitter.fit = lambda targets, *rest, **keywords: (calls.append(len(targets)),
                                                             fit(targets, *rest, **keywords))[1]
    sequence = read_motion(kit.smpl_motions / kit.sequences[0], "smpl")
    result = convert_sequence(sequence, models, transfer, chunk_frames=16, shape_frames=3)
    assert np.isfinite(result.v2v_mm).all()
    # One mesh: every start is within a micrometre of its neighbours' errors (a ratio of
    # them is rounding), so the frames of levels 3 and 4, between fitted frames 4 apart or
    # closer, are kept: only the first two levels' frames reach the fitter.
    chunks = -(-len(result.v2v_mm) // 16)
    first_two_levels = sum(len(rows) for rows in level_rows(16)[:2])
    assert 0 < sum(calls) <= chunks * first_two_levels, calls
    smplx_options = replace(run_options, target_model="smplx",
                            deftrafo_path=kit.deftrafo.parent)
    smplx_models = GenderModels(smplx_options, "smpl", "neutral",
                                pair_transfer(smplx_options, "smpl", "smplx").mask_ids,
                                torch.device("cpu"))
    assert not smplx_models.fitter.model.subset_cut            # ~3000 (rounded per part)
    assert abs(len(smplx_models.fitter.model.fit_set.positions) - 3000) < 50


def test_outlier_frames_of_a_chunk_get_the_full_fit(kit):
    """A frame started far from its minimum is left high by the one-step frame fit, then
    repaired by the full refit; the good frames are left alone."""
    from smplh2smplx.body.deformation import load_deformation_transfer
    from smplh2smplx.family import map_pose
    from smplh2smplx.stages.sequences.convert import (GenderModels, SourceFrames, fit_shape,
                                                      spread_frames)
    from smplh2smplx.stages.sequences.batching import fitted_alone
    from smplh2smplx.stages.sequences.frame_fits import refit_outliers
    run_options = options(kit, kit.amass, Path("unused"), fit=FitSettings(max_iterations=1))
    deformation = load_deformation_transfer(kit.deftrafo, kit.mask)
    models = GenderModels(run_options, "smplh", "neutral", deformation.mask_ids,
                          torch.device("cpu"))
    source = SourceFrames(read_motion(kit.amass / kit.sequences[0]), 1, models,
                          deformation)
    anchors = spread_frames(len(source), 4)
    betas, _, _ = fitted_alone(fit_shape(models, source, anchors,
                                         source.targets(anchors)[0], 1))
    frames = np.arange(10, 16)
    targets, _ = source.targets(frames)
    init = map_pose(source.poses[frames], "smplh", "smplx").float()
    init[2, 1:22] += torch.as_tensor(np.random.default_rng(0).normal(0, 0.4, (21, 3))).float()
    check_set = models.fitter.model.fit_set          # as the sequence's frames measure
    result = models.fitter.fit(targets, init, betas.float().expand(6, -1), error_set=check_set)
    before = result.v2v_mean_mm.clone()
    assert before[2] > 1.5 * before.median()
    assert fitted_alone(refit_outliers(models, targets, betas.float(), result,
                                       check_set)) >= 1
    assert result.v2v_mean_mm[2] < 1.2 * before.median()
    good = [i for i in range(6) if before[i] <= 1.2 * before.median()]
    torch.testing.assert_close(result.v2v_mean_mm[good], before[good])


@pytest.mark.parametrize("errors, converged", [
    ([0.0010, 0.0011, 0.0030, 0.0010], False),      # one mesh: the targets' rounding
    ([0.40, 0.41, 0.49, 0.40], False),              # 0.09 mm above the median only
    ([4.0, 4.1, 6.0, 4.0], True)],                  # at its minimum: more steps gain nothing
    ids=["micrometres", "under the margin", "converged"])
def test_frames_that_do_not_stand_out_or_converged_are_not_refitted(errors, converged):
    """A frame above OUTLIER_FACTOR times the median is refitted only when it is also
    OUTLIER_MARGIN_MM above it and its fit ran out of steps: the refit fitter is never
    reached here."""
    from types import SimpleNamespace
    from smplh2smplx.fit.fitter import FitResult
    from smplh2smplx.stages.sequences.batching import fitted_alone
    from smplh2smplx.stages.sequences.frame_fits import (OUTLIER_FACTOR, OUTLIER_MARGIN_MM,
                                                         refit_outliers)
    errors = torch.tensor(errors)
    assert errors.max() > OUTLIER_FACTOR * errors.median()
    assert converged or errors.max() < errors.median() + OUTLIER_MARGIN_MM
    count = len(errors)
    result = FitResult(pose=torch.zeros(count, 55, 3), betas=torch.zeros(count, 16),
                       transl=torch.zeros(count, 3), v2v_mean_mm=errors.clone(),
                       v2v_max_mm=errors.clone(), iterations=torch.ones(count, dtype=torch.int64),
                       converged=torch.full((count,), converged))
    no_refit = SimpleNamespace(refit_fitter=None)          # reaching it raises
    assert fitted_alone(refit_outliers(no_refit, torch.zeros(count, 10, 3),
                                       torch.zeros(16), result, None)) == 0
    torch.testing.assert_close(result.v2v_mean_mm, errors)


def test_frames_with_no_known_frame_after_them_start_toward_the_next_guide():
    """A first level's frame starts from the interpolation between the last known frame and
    the next shape frame's own fit (a guide); a guide behind the last known frame is not
    used, and a guide is neither known nor a kept start's neighbour."""
    from types import SimpleNamespace
    from smplh2smplx.stages.sequences.frame_fits import FrameFits

    class Source:
        poses = np.zeros((20, 2 * 3))                          # identity source rotations
        trans = np.zeros((20, 3))

        def __len__(self):
            return 20

    models = SimpleNamespace(
        fitter=SimpleNamespace(model=SimpleNamespace(num_joints=2, fit_set=None)),
        map_pose=lambda poses: torch.as_tensor(poses).double().view(len(poses), -1, 3))
    fits = FrameFits(models, Source(), torch.zeros(10), kept_span=4)

    def about_z(angle, frames=1):
        return torch.tensor([0.0, 0.0, angle]).expand(frames, 2, 3)

    fits.keep(np.array([0]), about_z(0.0), torch.zeros(1, 3))
    fits.guide(np.array([16]), about_z(0.8), torch.tensor([[0.0, 0.0, 1.6]]))
    assert not fits.known[16]
    correction, offset = fits.starts(np.array([4, 8]))
    np.testing.assert_allclose(roma.rotmat_to_rotvec(correction)[:, :, 2].numpy(),
                               [[0.2, 0.2], [0.4, 0.4]], atol=1e-12)
    np.testing.assert_allclose(offset[:, 2].numpy(), [0.4, 0.8], atol=1e-12)
    # Once a frame beyond the guide is known, the frames before it interpolate known frames.
    fits.keep(np.array([18]), about_z(0.0), torch.zeros(1, 3))
    correction, _ = fits.starts(np.array([8]))
    np.testing.assert_allclose(roma.rotmat_to_rotvec(correction).numpy(), 0.0, atol=1e-12)


def test_shape_fits_between_one_mesh_start_from_the_source_betas(kit):
    """SMPL -> SMPL-H (one mesh): the shape frames start from the source's own betas, which
    fit the frames better than the zero shape (here: exactly); not when they fit worse, not
    when the target cannot take them all, never across meshes."""
    from smplh2smplx.stages.sequences.convert import (GenderModels, SourceFrames, pair_transfer,
                                                      shape_start, spread_frames)
    run_options = options(kit, kit.smpl_motions, Path("unused"), target_model="smplh")
    transfer = pair_transfer(run_options, "smpl", "smplh")
    models = GenderModels(run_options, "smpl", "neutral", transfer.mask_ids,
                          torch.device("cpu"))
    sequence = read_motion(kit.smpl_motions / kit.sequences[0], "smpl")
    source = SourceFrames(sequence, 1, models, transfer)
    frames = spread_frames(len(source), 3)
    targets, _ = source.targets(frames)
    pose = models.map_pose(source.poses[frames]).float()
    start = shape_start(models, source, frames, targets, pose)
    assert start.shape == (3, models.shape_fitter.model.num_betas)
    count = len(source.betas)
    assert source.betas.abs().max() > 0.1
    torch.testing.assert_close(start[:, :count], source.betas.expand(3, -1))
    assert not start[:, count:].any()
    shape = source.betas
    # A file with a shape per frame: each shape frame starts from its own.
    source.betas = shape + 0.002 * torch.arange(len(source))[:, None]
    start = shape_start(models, source, frames, targets, pose)
    torch.testing.assert_close(start[:, :count], source.betas[frames])
    assert not torch.equal(start[0], start[-1])
    source.betas = shape + 3.0                                  # far from the subject's shape
    assert shape_start(models, source, frames, targets, pose) is None
    source.betas = torch.ones(models.shape_fitter.model.num_betas + 1)
    assert shape_start(models, source, frames, targets, pose) is None  # more than it takes
    smplx_options = replace(run_options, target_model="smplx",
                            deftrafo_path=kit.deftrafo.parent)
    smplx_transfer = pair_transfer(smplx_options, "smpl", "smplx")
    smplx_models = GenderModels(smplx_options, "smpl", "neutral", smplx_transfer.mask_ids,
                                torch.device("cpu"))
    smplx_source = SourceFrames(sequence, 1, smplx_models, smplx_transfer)
    smplx_targets, _ = smplx_source.targets(frames)
    assert shape_start(smplx_models, smplx_source, frames, smplx_targets,
                       smplx_models.map_pose(smplx_source.poses[frames]).float()) is None


def test_files_converted_together_give_what_each_gives_alone(kit, tmp_path, monkeypatch):
    """Four files (three of one gender) in flight at once, their fits batched by fitter:
    the same outputs and rows as one file at a time (each pose is fitted on its own: only
    the batched products' rounding differs), written as each file is done; the frames of
    one gender went to the fitters in fewer, larger batches. The source frames in flight
    are bounded too (FRAMES_IN_FLIGHT): a budget below two files' converts one at a time."""
    import smplh2smplx.stages.sequences.batching as batching
    import smplh2smplx.stages.sequences.run as run_module
    tree = tmp_path / "tree"
    genders = {relative: read_motion(kit.amass / relative).gender
               for relative in kit.sequences}
    male = next(relative for relative, gender in genders.items() if gender == "male")
    other = next(relative for relative, gender in genders.items() if gender != "male")
    # Of several lengths, so that the files reach their levels in different rounds.
    for index, (relative, frames) in enumerate([(male, 24), (male, 17), (male, 30),
                                                (other, 24)]):
        write_npz(tree / f"S{index}" / Path(relative).name,
                  short_sequence(kit, relative, frames))
    calls = {}
    real_joined = batching.joined

    def counted(requests):
        calls.setdefault(len(requests) > 1, []).append(len(requests))
        return real_joined(requests)

    monkeypatch.setattr(batching, "joined", counted)
    outputs = {}
    # One at a time; four at once; four allowed but at most 30 source frames in flight.
    for at_once, frames_in_flight in ((1, 20_000), (4, 20_000), (4, 30)):
        calls.clear()
        monkeypatch.setattr(run_module, "FRAMES_IN_FLIGHT", frames_in_flight)
        output = tmp_path / f"out{at_once}_{frames_in_flight}"
        summary = run_sequences(options(kit, tree, output, sequences_per_batch=at_once),
                                progress=False)
        assert summary.failed == 0 and len(summary.rows) == 4
        outputs[at_once, frames_in_flight] = {row.sequence: (row, read_motion_file(
            output_path(output, row.sequence, "smplx"), "smplx")) for row in summary.rows}
        batched = at_once > 1 and frames_in_flight > 30
        assert (True in calls) == batched                # several sequences in one batch
    alone = outputs.pop((1, 20_000))
    for together in outputs.values():
        assert together.keys() == alone.keys()
        compare_outputs(alone, together)


def compare_outputs(alone, together):
    for name, (row, arrays) in alone.items():
        together_row, converted = together[name]
        # Where a rounding difference moves a pose's stop by a step: 1e-3 rad of a finger
        # joint moves its vertices by tens of micrometres.
        np.testing.assert_allclose(converted["poses"], arrays["poses"], atol=1e-3)
        np.testing.assert_allclose(converted["trans"], arrays["trans"], atol=1e-5)
        np.testing.assert_allclose(converted["betas"], arrays["betas"], atol=1e-4)
        assert together_row.v2v_mean_mm == pytest.approx(row.v2v_mean_mm, rel=1e-4)


def test_frames_posed_in_slices_are_those_posed_alone(kit, monkeypatch):
    """A motion's source frames and the errors of its frames written are computed in slices
    of POSING_SLICE_FRAMES on the CPU (here 16, the kit's motion having 60 frames): a chunk
    of more frames than that gives each frame's targets, joints and errors as posing it
    alone does."""
    import smplh2smplx.runtime as runtime
    from smplh2smplx.body.deformation import load_deformation_transfer
    from smplh2smplx.stages.sequences.convert import GenderModels, SourceFrames
    from smplh2smplx.stages.sequences.frame_fits import FrameFits
    monkeypatch.setattr(runtime, "POSING_SLICE_FRAMES", 16)
    assert runtime.posing_slices(40, "cpu") == [slice(0, 16), slice(16, 32), slice(32, 40)]
    assert runtime.posing_slices(40, "cuda") == [slice(0, 40)]
    deformation = load_deformation_transfer(kit.deftrafo, kit.mask)
    models = GenderModels(options(kit, kit.amass, Path("unused")), "smplh", "male",
                          deformation.mask_ids, torch.device("cpu"))
    sequence = read_motion(kit.amass / kit.sequences[0])
    source = SourceFrames(sequence, 1, models, deformation)
    frames = np.arange(len(source))
    assert len(frames) > 32
    targets, joints = source.targets(frames)
    assert targets.permute(1, 2, 0).is_contiguous()             # the fitter's layout
    for frame in (0, 15, 16, len(frames) - 1):
        alone, alone_joints = source.targets(frames[frame:frame + 1])
        torch.testing.assert_close(targets[frame], alone[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(joints[frame], alone_joints[0], rtol=0, atol=1e-6)
    fits = FrameFits(models, source, torch.zeros(models.target.num_betas), kept_span=4)
    rotations = fits.source_rotations(frames)
    transl = torch.as_tensor(source.trans[frames])
    errors = fits.errors_of(rotations, transl, targets)
    alone = torch.cat([fits.errors_of(rotations[[frame]], transl[[frame]],
                                      targets[[frame]]) for frame in frames[::7]])
    torch.testing.assert_close(errors[::7], alone, rtol=1e-5, atol=1e-6)


def test_a_batch_that_fails_is_fitted_again_request_by_request():
    """The FitScheduler fits the requests of one fitter as one batch; when that batch
    raises (a solver error on one file's poses), each request is fitted again alone, so
    that only the file whose poses fail gets the error and the others their results."""
    from types import SimpleNamespace
    from smplh2smplx.fit.fitter import FitResult
    from smplh2smplx.stages.sequences.batching import FitRequest, FitScheduler

    calls = []

    def fit(targets, init_pose, betas, transl, error_set):
        calls.append(len(targets))
        if bool(torch.isnan(targets).any()):
            raise torch.linalg.LinAlgError("linalg.eigh: the algorithm failed to converge")
        count = len(targets)
        return FitResult(pose=init_pose + 1, betas=torch.zeros(count, 2),
                         transl=torch.zeros(count, 3), v2v_mean_mm=targets[:, 0, 0],
                         v2v_max_mm=targets[:, 0, 0],
                         iterations=torch.ones(count, dtype=torch.int64),
                         converged=torch.ones(count, dtype=torch.bool))

    fitter = SimpleNamespace(fit=fit, device=torch.device("cpu"))

    def conversion(value, frames):
        result = yield FitRequest(fitter, torch.full((frames, 4, 3), value),
                                  torch.zeros(frames, 2, 3))
        return float(result.v2v_mean_mm.sum()), result.pose.shape

    scheduler, outcomes = FitScheduler(), {}
    for key, (value, frames) in {"a": (1.0, 2), "bad": (float("nan"), 3), "b": (2.0, 1)}.items():
        outcomes.update(scheduler.add(key, conversion(value, frames)))
    assert not outcomes and len(scheduler) == 3
    outcomes.update(scheduler.round())
    assert calls == [6, 2, 3, 1]                  # the batch, then each request alone
    assert outcomes["a"] == (2.0, (2, 2, 3)) and outcomes["b"] == (2.0, (1, 2, 3))
    assert isinstance(outcomes["bad"], torch.linalg.LinAlgError) and len(scheduler) == 0
