"""Motions between every pair of SMPL-family models, read back the way their users do.

One short sequence of each source model (the kit's same motion as SMPL, AMASS SMPL+H and
AMASS SMPL-X files) is converted to both other models, once per module. Each output is then
read as the field's loaders read it, re-written here from their documented behaviour:
- human_body_prior's `BodyModel(num_betas=16)` (the AMASS notebooks): the model `.npz`'s
  `shapedirs[:, :, :16]`, the file's `betas[:16]` on every frame, the pose assembled from
  the part arrays (`root_orient`, `pose_body`, then `pose_jaw`, `pose_eye`, `pose_hand`
  for SMPL-X; `poses[:, 66:]` as the hands of an SMPL+H file), posed by stock smplx's
  `lbs` (which that class calls the same way);
- aitviewer's `SMPLSequence.from_amass` for SMPL+H files (`poses` cut into root, 21 body,
  15 + 15 hand joints) and the part keys for SMPL-X, posed by the stock smplx layer;
- the stock smplx layers for SMPL and SMPL-X (`smplx.create`, flat hands, no PCA).
Each must give the vertices of our own read-back (our LBS on the file's arrays), and lie on
the deformation transfer of the source mesh.
"""
import json
import os
import warnings
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse
import smplx
import smplx.lbs
import torch
from scipy.spatial.transform import Rotation, Slerp

from smplh2smplx.body.lbs import BodyModel
from smplh2smplx.family import KINDS
from smplh2smplx.formats.body_models import load_body_model
from smplh2smplx.formats.deformation_files import OFFICIAL_TRANSFER_FILES
from smplh2smplx.formats.safe_pickle import load_pickle
from smplh2smplx.formats.sequence_files import read_motion, read_motion_file
from smplh2smplx.stages.sequences.convert import SequenceOptions
from smplh2smplx.stages.sequences import report as sequence_report
from smplh2smplx.stages.sequences.report import posed_meshes
from smplh2smplx.fit.fitter import FitSettings
from smplh2smplx.stages.sequences.run import run_sequences
from smplh2smplx.stages.sequences.tree import output_path, quality_path

FRAMES = 10
DIRECTIONS = [(source, target) for source in KINDS for target in KINDS if source != target]


def source_tree(kit, kind):
    """The folder holding the kit's motions as files of `kind`."""
    return {"smpl": kit.smpl_motions, "smplh": kit.amass, "smplx": kit.smplx_motions}[kind]


def source_name(kit, kind):
    """The relative path of the first sequence (male) as a file of `kind`."""
    return kit.sequences[0].replace("_poses.npz", KINDS[kind].motion.suffix + ".npz")


def short_run(kit, input_path, output_dir, **changes) -> SequenceOptions:
    """Options of a short test run: the kit's models and transfers, small chunks and fits."""
    return SequenceOptions(
        input_path=input_path, output_dir=output_dir,
        model_paths={kind: kit.body_models for kind in KINDS},
        deftrafo_path=kit.deftrafo.parent, mask_path=kit.mask, device="cpu", chunk_frames=8,
        shape_frames=3, fit=FitSettings(max_iterations=3, fit_vertices=0), **changes)


def slerped(poses, clock, times):
    """Axis-angle poses (T, 3J) at `clock` (T,) seconds, each joint's rotation at `times`
    by scipy's Slerp."""
    return np.concatenate([Slerp(clock, Rotation.from_rotvec(poses[:, joint:joint + 3]))(
        times).as_rotvec() for joint in range(0, poses.shape[1], 3)], axis=1)


@pytest.fixture(scope="module")
def converted(kit, tmp_path_factory):
    """{(source, target): (source file, output file)} of the six directions."""
    root = tmp_path_factory.mktemp("pairs")
    results = {}
    for source in KINDS:
        relative = source_name(kit, source)
        tree = root / f"{source}_in" / "CMU"
        path = tree / relative.split("/", 1)[1]
        path.parent.mkdir(parents=True)
        with np.load(source_tree(kit, source) / relative) as archive:
            arrays = {key: archive[key] for key in archive.files}
        for key in ("poses", "trans", "dmpls", *KINDS[source].motion.parts):
            if key in arrays:
                arrays[key] = arrays[key][:FRAMES]
        np.savez(path, **arrays)
        for target in KINDS:
            if target == source:
                continue
            output = root / f"{source}2{target}"
            options = short_run(kit, tree, output, target_model=target)
            summary = run_sequences(options, progress=False)
            assert summary.failed == 0 and len(summary.rows) == 1, summary.lines()
            name = summary.rows[0].sequence
            assert name.startswith("CMU/")
            results[(source, target)] = (path, output_path(output, name, target))
    return results


def t(array):
    return torch.as_tensor(np.asarray(array), dtype=torch.float32)


def hbp_vertices(model_npz, arrays, kind, num_betas=16):
    """Vertices as human_body_prior's BodyModel(num_betas=16) gives them for a file."""
    model = np.load(model_npz)
    count = len(arrays["poses"])
    betas = np.repeat(arrays["betas"][:num_betas][None], count, axis=0)
    if kind == "smplx":
        full_pose = np.concatenate([arrays["root_orient"], arrays["pose_body"],
                                    arrays["pose_jaw"], arrays["pose_eye"],
                                    arrays["pose_hand"]], axis=1)
    else:                                       # AMASS notebook: root, body, then hands
        poses = arrays["poses"]
        full_pose = np.concatenate([poses[:, :3], poses[:, 3:66], poses[:, 66:]], axis=1)
    posedirs = model["posedirs"]
    with torch.no_grad():
        vertices, _ = smplx.lbs.lbs(
            t(betas), t(full_pose), t(model["v_template"])[None].expand(count, -1, -1),
            t(model["shapedirs"][:, :, :num_betas]),
            t(posedirs.reshape(posedirs.shape[0] * 3, -1).T), t(model["J_regressor"]),
            torch.as_tensor(model["kintree_table"][0]).long(), t(model["weights"]))
    return (vertices + t(arrays["trans"])[:, None]).numpy()


def layer_vertices(kit, arrays, kind, gender):
    """Vertices from the stock smplx layer, the arrays split as aitviewer splits them."""
    count, poses = len(arrays["poses"]), arrays["poses"]
    num_betas = len(arrays["betas"])
    layer = smplx.create(str(kit.body_models), model_type=kind, gender=gender,
                         ext="npz" if kind == "smplx" else "pkl", num_betas=num_betas,
                         use_pca=False, flat_hand_mean=True, batch_size=count)
    assert layer.num_betas == num_betas
    parts = dict(betas=t(arrays["betas"])[None].expand(count, -1), transl=t(arrays["trans"]),
                 global_orient=t(poses[:, :3]))
    if kind == "smplx":
        parts.update(global_orient=t(arrays["root_orient"]), body_pose=t(arrays["pose_body"]),
                     jaw_pose=t(arrays["pose_jaw"]), leye_pose=t(arrays["pose_eye"][:, :3]),
                     reye_pose=t(arrays["pose_eye"][:, 3:]),
                     left_hand_pose=t(arrays["pose_hand"][:, :45]),
                     right_hand_pose=t(arrays["pose_hand"][:, 45:]),
                     expression=torch.zeros(count, 10))
    else:                                        # SMPL: 23 joints after the root
        parts.update(body_pose=t(poses[:, 3:72]))
    with torch.no_grad():
        return layer(**parts).vertices.numpy()


def own_vertices(kit, arrays, kind, gender):
    """Our read-back: our LBS on the file's arrays."""
    data = load_body_model(kit.body_models, kind, gender)
    body = BodyModel(data, num_betas=len(arrays["betas"]), dtype=torch.float64)
    count = len(arrays["poses"])
    with torch.no_grad():
        return body(torch.as_tensor(arrays["poses"]).view(count, -1, 3),
                    torch.as_tensor(arrays["betas"])[None].expand(count, -1),
                    torch.as_tensor(arrays["trans"]))[0].numpy()


@pytest.mark.parametrize("source,target", DIRECTIONS)
def test_every_direction_reads_back_in_the_loaders(converted, kit, source, target):
    source_path, path = converted[(source, target)]
    arrays = read_motion_file(path, target)
    layout = KINDS[target].motion
    with np.load(path, allow_pickle=False) as archive:      # AMASS's keys, types, order
        assert tuple(archive.files) == layout.keys()
    assert arrays["poses"].shape == (FRAMES, KINDS[target].pose_size)
    assert arrays["betas"].shape == (layout.num_betas,) and arrays["betas"].dtype == np.float64
    assert arrays["gender"].dtype.kind == "U" and str(arrays["gender"]) == "male"
    assert float(arrays[layout.rate_key]) == 60.0
    ours = own_vertices(kit, arrays, target, "male")
    if target != "smplh":        # stock smplx's SMPL-H layer takes 10 betas only
        np.testing.assert_allclose(layer_vertices(kit, arrays, target, "male"), ours,
                                   atol=2e-5)
    if target != "smpl":         # human_body_prior reads AMASS's SMPL+H / SMPL-X .npz models
        model_npz = (kit.smplh_male_npz if target == "smplh" else kit.smplx_male_npz)
        np.testing.assert_allclose(hbp_vertices(model_npz, arrays, target), ours, atol=2e-5)
        with pytest.raises(RuntimeError):       # a file with 10 betas breaks that loader
            hbp_vertices(model_npz, dict(arrays, betas=arrays["betas"][:10]), target)
    # The output lies on the deformation transfer of the posed source mesh.
    sequence = read_motion(source_path)
    source_vertices = own_vertices(kit, dict(poses=sequence.poses, betas=sequence.betas,
                                             trans=sequence.trans), source, "male")
    if {source, target} == {"smpl", "smplh"}:
        matrix, mask = scipy.sparse.identity(6890, format="csr"), np.arange(6890)
    else:
        setup = load_pickle(kit.deftrafo.parent / OFFICIAL_TRANSFER_FILES[f"{source}2{target}"])
        matrix = scipy.sparse.csr_matrix(setup["mtx"])[:, :KINDS[source].num_vertices]
        mask = np.load(kit.mask) if target == "smplx" else np.arange(KINDS[target].num_vertices)
    errors = [np.linalg.norm(ours[f, mask] - (matrix @ source_vertices[f])[mask], axis=1).mean()
              for f in range(FRAMES)]
    # Measured on the kit: a few millimetres; a missed pose or translation is centimetres.
    assert max(errors) * 1000 < 12.0, errors


@pytest.mark.parametrize("source,target", [("smplx", "smpl")])
def test_the_report_names_the_runs_own_models(converted, kit, source, target, monkeypatch):
    """The report's animation and plots name the models of the run, not SMPL-H and SMPL-X
    whatever the pair (as they did)."""
    source_path, path = converted[(source, target)]
    figures = []
    real_figure = sequence_report._figure

    def kept_figure(*size):
        figures.append(real_figure(*size))
        return figures[-1]

    monkeypatch.setattr(sequence_report, "_figure", kept_figure)
    output = path.parents[2]                       # <output>/CMU/<subject>/<file>
    options = short_run(kit, source_path.parents[1], output, target_model=target)
    sequence_report.write_sequence_report(options, log=lambda line: None)
    assert (output / "report" / "worst_sequence.gif").stat().st_size > 0
    titles = {axes.get_title() for figure in figures for axes in figure.axes}
    legends = {text.get_text() for figure in figures for axes in figure.axes
               if axes.get_legend() for text in axes.get_legend().get_texts()}
    fitted = f"fitted {KINDS[target].label}"
    assert {f"source {KINDS[source].label}", fitted} <= titles, titles
    assert legends == {"source", fitted}, legends
    others = {KINDS[kind].label for kind in KINDS} - {KINDS[source].label, KINDS[target].label}
    assert not any(text.endswith(f" {label}") for text in titles | legends for label in others)


def transferred_source(kit, source, target, poses, betas, trans):
    """The source meshes of `poses` moved onto the target's mesh, on its mask: (F, M, 3)."""
    vertices = own_vertices(kit, dict(poses=poses, betas=betas, trans=trans), source, "male")
    setup = load_pickle(kit.deftrafo.parent / OFFICIAL_TRANSFER_FILES[f"{source}2{target}"])
    matrix = scipy.sparse.csr_matrix(setup["mtx"])[:, :KINDS[source].num_vertices]
    mask = np.load(kit.mask)
    return np.stack([(matrix @ frame)[mask] for frame in vertices]), mask


def test_a_rate_that_does_not_divide_the_source_is_resampled(kit, tmp_path, capsys):
    """60 fps to 25 (a rate 60 is no whole multiple of): the frames written are the source
    motion at 0, 1/25, 2/25 ... s, each joint's rotation slerped between its two source
    frames and the translation interpolated (checked against scipy's Slerp and numpy's
    interp), and the quality file measures the output against those in-between meshes; the
    file is written at 25 fps. A rate above the source's is refused, naming the file."""
    frames, rate = 13, 25.0
    relative = source_name(kit, "smplh")
    path = tmp_path / "CMU" / relative.split("/", 1)[1]
    path.parent.mkdir(parents=True)
    with np.load(kit.amass / relative) as archive:
        arrays = {key: archive[key] for key in archive.files}
    for key in ("poses", "trans", "dmpls"):
        arrays[key] = arrays[key][:frames]
    assert float(arrays["mocap_framerate"]) == 60.0
    np.savez(path, **arrays)
    options = short_run(kit, tmp_path / "CMU", tmp_path / "out", fps=rate)
    summary = run_sequences(options, progress=False)
    assert summary.failed == 0 and len(summary.rows) == 1, summary.lines()
    name = summary.rows[0].sequence
    written = read_motion_file(output_path(options.output_dir, name, "smplx"), "smplx")
    times = np.arange(6) / rate                      # 12 frames of 60 fps last 0.2 s
    assert float(written["mocap_frame_rate"]) == rate and len(written["poses"]) == len(times)
    assert summary.rows[0].frames == len(times) and summary.rows[0].fps == rate

    # The source motion at those times, independently: scipy's slerp per joint.
    clock = np.arange(frames) / 60.0
    source_poses = slerped(arrays["poses"], clock, times)
    source_trans = np.stack([np.interp(times, clock, arrays["trans"][:, axis])
                             for axis in range(3)], axis=1)
    targets, mask = transferred_source(kit, "smplh", "smplx", source_poses, arrays["betas"],
                                       source_trans)
    fitted = own_vertices(kit, written, "smplx", "male")[:, mask]
    errors = np.linalg.norm(fitted - targets, axis=2).mean(1) * 1000.0
    with np.load(quality_path(options.output_dir, name, "smplx")) as quality:
        assert float(quality["fps"]) == rate
        np.testing.assert_allclose(quality["v2v_mm"], errors, rtol=1e-3, atol=1e-3)
    # Measured on the kit: a few millimetres; the motion of a wrong time is more.
    assert errors.max() < 12.0, errors
    # The report shows the output beside the same in-between source meshes.
    shown = posed_meshes(options, name, np.arange(len(times)))
    np.testing.assert_allclose(shown[0], own_vertices(kit, dict(
        poses=source_poses, betas=arrays["betas"], trans=source_trans), "smplh", "male"),
        atol=1e-5)

    capsys.readouterr()
    summary = run_sequences(replace(options, fps=120.0, output_dir=tmp_path / "up"),
                            progress=False)
    assert summary.failed == 1 and str(path) in summary.failures[0][1]
    assert "cannot raise 60 fps to 120 fps" in summary.failures[0][1]


def test_num_betas_above_the_model_is_one_line(kit, tmp_path, capsys):
    import convert_sequences
    config = {"SMPLH_MODEL": str(kit.body_models), "SMPLX_MODEL": str(kit.body_models),
              "DEFTRAFO_PATH": str(kit.deftrafo.parent), "MASK_IDS_PATH": str(kit.mask),
              "SEQUENCE_OUTPUT_DIR": str(tmp_path / "out")}
    path = kit.smplx_motions / source_name(kit, "smplx")
    code = convert_sequences.main([str(path), "--target-model", "smplh", "--num-betas", "20",
                                   "--device", "cpu"], user_config=config)
    assert code == 2                    # without --keep-going the bad file stops the run
    out = capsys.readouterr().out
    assert "has 16 shape coefficients, 20 betas asked for" in out


def test_explicit_source_model_that_contradicts_the_file(kit, tmp_path):
    from smplh2smplx.errors import SkipFile
    path = kit.smpl_motions / kit.sequences[0]
    with pytest.raises(SkipFile, match="is a SMPL sequence .* not SMPL-H, the source model given"):
        read_motion(path, "smplh")
    assert read_motion(path).kind == "smpl"


def fake_slurm_tools(folder, sbatch_script, srun=True):
    """A folder of stand-ins for sbatch (running `sbatch_script`) and srun. The tests put it
    alone on PATH (the stand-ins use the shell's builtins only), so that a machine with SLURM
    installed runs them the same."""
    folder.mkdir()
    tools = {"sbatch": sbatch_script, **({"srun": "exit 0"} if srun else {})}
    for name, script in tools.items():
        (folder / name).write_text(f"#!/bin/sh\n{script}\n")
        (folder / name).chmod(0o755)
    return folder


@pytest.mark.parametrize("tools, printed", [
    (None, "sbatch and srun are not on PATH"),
    (("exit 0", False), "srun is not on PATH"),
    (("echo 'sbatch: error: invalid partition specified: gpu' >&2; exit 1", True),
     "sbatch did not take the array job: sbatch: error: invalid partition specified: gpu"),
    (("echo 'Submitted batch job 4242'", True), None),
])
def test_slurm_submits_or_says_why_not_and_never_runs_here(kit, tmp_path, capsys,
                                                          monkeypatch, tools, printed):
    """Without SLURM's tools, or when sbatch refuses the job: one line, exit 2. Submitted:
    the job id. Never the array run on this machine in the guise of a submission (submitit
    picks its local executor when it finds no srun)."""
    import convert_sequences
    path = (fake_slurm_tools(tmp_path / "bin", *tools) if tools else tmp_path)
    monkeypatch.setenv("PATH", str(path))
    config = {"SMPLH_MODEL": str(kit.body_models), "SMPLX_MODEL": str(kit.body_models),
              "DEFTRAFO_PATH": str(kit.deftrafo), "MASK_IDS_PATH": str(kit.mask),
              "SEQUENCE_OUTPUT_DIR": str(tmp_path / "out"), "AMASS_DIR": str(kit.amass)}
    code = convert_sequences.main(["--slurm", "--partition", "gpu"], user_config=config)
    captured = capsys.readouterr()
    if printed:
        assert code == 2 and captured.err.strip() == f"error: --slurm: {printed}" + (
            "" if "sbatch:" in printed else " (no SLURM on this machine); run without --slurm"
            " to convert here, or add --local to try the array on this machine")
        assert "submitted" not in captured.out
    else:
        assert code == 0 and "submitted" in captured.out and "job 4242" in captured.out
    output = tmp_path / "out"        # nothing converted here
    assert not list(output.rglob("*.npz")) and not (output / "sequences.csv").exists()


def test_slurm_checks_the_output_folder_before_submitting(kit, tmp_path, capsys, monkeypatch):
    """An output folder no task could write into, or holding results of other settings, is
    refused at submission, not in every task of the array (logs kept elsewhere)."""
    import convert_sequences
    calls = tmp_path / "sbatch_calls"
    tools = fake_slurm_tools(tmp_path / "bin", f"echo called >> {calls}; "
                                               "echo 'Submitted batch job 4242'")
    monkeypatch.setenv("PATH", str(tools))
    (tmp_path / "file").write_text("")
    other_settings = tmp_path / "other"
    other_settings.mkdir()
    (other_settings / "result_settings.json").write_text('{"target_model": "smplh"}')
    for output, code, named in ((tmp_path / "file" / "out", 3, "not a folder"),
                                (other_settings, 2, "target_model smplh")):
        config = {"SMPLH_MODEL": str(kit.body_models), "SMPLX_MODEL": str(kit.body_models),
                  "DEFTRAFO_PATH": str(kit.deftrafo), "MASK_IDS_PATH": str(kit.mask),
                  "SEQUENCE_OUTPUT_DIR": str(output), "AMASS_DIR": str(kit.amass)}
        assert convert_sequences.main(["--slurm", "--log-dir", str(tmp_path / "logs")],
                                      user_config=config) == code
        printed = capsys.readouterr()
        assert str(output) in printed.err and named in printed.err
        assert "submitted" not in printed.out
    assert not calls.exists()


def test_missing_arrays_are_listed_one_per_line_and_frames_counted(tmp_path):
    from smplh2smplx.errors import InputError
    from smplh2smplx.formats.sequence_files import motion_header
    path = tmp_path / "m_poses.npz"
    np.savez(path, poses=np.zeros((7, 72)), gender=np.array("male"),
             mocap_framerate=np.array(30.0))
    with pytest.raises(InputError) as error:
        read_motion(path)
    lines = str(error.value).splitlines()
    assert str(path) in lines[0] and "SMPL motion file" in lines[0]
    assert lines[1:] == ["  trans (or transl)", "  betas"]
    assert motion_header(path) == ("smpl", 7)    # what the progress bar counts
    (tmp_path / "broken_poses.npz").write_bytes(b"not a zip")
    assert motion_header(tmp_path / "broken_poses.npz") == (None, 0)
    os.mkfifo(tmp_path / "fifo_poses.npz")           # never opened for reading: no hang
    assert motion_header(tmp_path / "fifo_poses.npz") == (None, 0)


def test_an_error_listing_several_items_prints_one_per_line(kit, tmp_path, capsys):
    """Printed as the commands print it, both when the bad file stops the run (exit 2) and
    in the --keep-going failure list; a line break that is not an item's is joined."""
    import convert_sequences
    from smplh2smplx.errors import InputError, error_text
    tree = tmp_path / "tree"
    tree.mkdir()
    np.savez(tree / "m_poses.npz", poses=np.zeros((7, 72)), gender=np.array("male"),
             mocap_framerate=np.array(30.0))
    config = {"SMPL_MODEL": str(kit.body_models), "SMPLX_MODEL": str(kit.body_models),
              "DEFTRAFO_PATH": str(kit.deftrafo.parent), "MASK_IDS_PATH": str(kit.mask),
              "SEQUENCE_OUTPUT_DIR": str(tmp_path / "out")}
    for flags in ([], ["--keep-going"]):
        code = convert_sequences.main([str(tree / "m_poses.npz"), *flags], user_config=config)
        printed = capsys.readouterr()
        lines = (printed.out + printed.err).splitlines()
        first = next(i for i, line in enumerate(lines) if line.startswith("failed: "))
        assert code == (1 if flags else 2)
        assert lines[first].endswith("m_poses.npz: a SMPL motion file has poses, trans, betas, "
                                     "gender and mocap_framerate; it lacks")
        assert lines[first + 1:first + 3] == ["  trans (or transl)", "  betas"]
    assert error_text(InputError("a\nb: c\n  d\n  e")) == "a b: c\n  d\n  e"
    assert error_text(FileNotFoundError(2, "No such file", "/x/y")) == "/x/y: No such file"


def test_a_shape_per_frame_is_read_and_checked(tmp_path):
    """Video pose estimators write betas (T, 10), a shape per frame, or one shape as a row
    (1, 10); any other 2-D shape is refused, naming the file and what was expected."""
    from smplh2smplx.errors import InputError
    path = tmp_path / "video_poses.npz"
    rng = np.random.default_rng(0)

    def written(betas):
        np.savez(path, poses=np.zeros((7, 72)), trans=np.zeros((7, 3)), betas=betas,
                 gender=np.array("male"), mocap_framerate=np.array(30.0))
        return path

    per_frame = rng.normal(size=(7, 10))
    np.testing.assert_array_equal(read_motion(written(per_frame)).betas, per_frame)
    np.testing.assert_array_equal(read_motion(written(per_frame[:1])).betas, per_frame[0])
    for shape in ((2, 10), (7, 10, 1), (7, 0)):
        with pytest.raises(InputError, match=rf"video_poses.npz: betas has shape "
                                             rf"\({shape[0]}, .*expected \(S,\) floats, or "
                                             r"a shape per frame \(7, S\)"):
            read_motion(written(np.zeros(shape)))
    with pytest.raises(InputError, match=r"video_poses.npz: betas holds NaN"):
        read_motion(written(np.where(np.eye(7, 10) > 0, np.nan, per_frame)))


def test_betas_beyond_the_source_model_are_noted(kit, tmp_path):
    """SMPL motion files of 16 betas where the SMPL model takes 10: each is posed with the
    first 10 (as the file with zeros beyond them is), and the run prints one note for the
    model naming a file whose betas beyond are not zero and how many more; the API warns."""
    with np.load(kit.smpl_motions / source_name(kit, "smpl")) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays.update(poses=arrays["poses"][:6], trans=arrays["trans"][:6])
    tree = tmp_path / "in"
    tree.mkdir()
    for name, extra in (("a", 0.5), ("b", 0.3), ("c", 0.0)):
        np.savez(tree / f"{name}.npz", **dict(arrays, betas=np.r_[arrays["betas"],
                                                                 np.full(6, extra)]))
    options = short_run(kit, tree, tmp_path / "out", target_model="smplh")
    summary = run_sequences(options, progress=False)
    assert summary.failed == 0 and len(summary.rows) == 3, summary.lines()
    assert [line for line in summary.lines() if line.startswith("note:")] == [
        "note: the SMPL model (male) takes 10 betas; in/a.npz gives 16 (and 1 more files), "
        "not all zero beyond the 10th: posed without those"]
    outputs = [read_motion_file(output_path(options.output_dir, f"in/{name}.npz", "smplh"),
                                "smplh") for name in "ac"]
    np.testing.assert_allclose(outputs[0]["poses"], outputs[1]["poses"], atol=1e-5)
    np.testing.assert_allclose(outputs[0]["betas"], outputs[1]["betas"], atol=1e-5)

    import smplh2smplx
    converter = smplh2smplx.Converter("smpl", "smplh", target_model=kit.body_models,
                                      source_model=kit.body_models, gender="male",
                                      device="cpu")
    with pytest.warns(UserWarning, match=r"a.npz: the SMPL model takes 10 betas; the motion "
                                         r"gives 16, not all zero beyond the 10th"):
        converter.convert_motion(tree / "a.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # zeros beyond: nothing to say
        converter.convert_motion(tree / "c.npz")


def test_a_shape_per_frame_is_converted_against_each_frames_own_mesh(kit, tmp_path):
    """A SMPL motion with a shape per frame (its first beta swept from -1 to 1), converted
    to SMPL-X at 25 fps from 60: each frame written is measured against the source mesh
    with that frame's own shape (interpolated between two source frames like the pose,
    checked with numpy's interp), not the mean shape; the output holds one shape, and the
    report shows the same source meshes."""
    frames, rate = 13, 25.0
    relative = source_name(kit, "smpl")
    path = tmp_path / "video" / "clip.npz"
    path.parent.mkdir(parents=True)
    with np.load(kit.smpl_motions / relative) as archive:
        arrays = {key: archive[key] for key in archive.files}
    for key in ("poses", "trans"):
        arrays[key] = arrays[key][:frames]
    betas = np.repeat(arrays["betas"][None], frames, axis=0)
    betas[:, 0] += np.linspace(-1.0, 1.0, frames)
    np.savez(path, **dict(arrays, betas=betas))
    options = short_run(kit, path.parent, tmp_path / "out", fps=rate)
    summary = run_sequences(options, progress=False)
    assert summary.failed == 0 and len(summary.rows) == 1, summary.lines()
    name = summary.rows[0].sequence
    written = read_motion_file(output_path(options.output_dir, name, "smplx"), "smplx")
    assert written["betas"].shape == (16,)

    times, clock = np.arange(6) / rate, np.arange(frames) / 60.0
    source_poses = slerped(arrays["poses"], clock, times)
    source_trans, source_betas = (
        np.stack([np.interp(times, clock, values[:, column])
                  for column in range(values.shape[1])], axis=1)
        for values in (arrays["trans"], betas))
    fitted = own_vertices(kit, written, "smplx", "male")

    def errors_against(shapes):
        """v2v (mm) of the written frames against the source meshes of these shapes."""
        result = []
        for frame, shape in enumerate(shapes):
            targets, mask = transferred_source(kit, "smpl", "smplx", source_poses[[frame]],
                                               shape, source_trans[[frame]])
            result.append(np.linalg.norm(fitted[frame, mask] - targets[0], axis=1).mean())
        return np.array(result) * 1000.0

    errors = errors_against(source_betas)
    with np.load(quality_path(options.output_dir, name, "smplx")) as quality:
        np.testing.assert_allclose(quality["v2v_mm"], errors, rtol=1e-3, atol=1e-3)
    mean_shape = errors_against([betas.mean(0)] * len(times))
    assert np.abs(mean_shape - errors).max() > 1.0, (mean_shape, errors)
    shown = posed_meshes(options, name, np.arange(len(times)))
    for frame in (0, len(times) - 1):
        np.testing.assert_allclose(shown[0][frame], own_vertices(kit, dict(
            poses=source_poses[[frame]], betas=source_betas[frame],
            trans=source_trans[[frame]]), "smpl", "male")[0], atol=1e-5)


def test_slurm_resources_no_task_can_have_are_listed(kit, tmp_path, capsys):
    import convert_sequences
    config = {"SMPLH_MODEL": str(kit.body_models), "SMPLX_MODEL": str(kit.body_models),
              "DEFTRAFO_PATH": str(kit.deftrafo), "MASK_IDS_PATH": str(kit.mask),
              "SEQUENCE_OUTPUT_DIR": str(tmp_path / "out"), "AMASS_DIR": str(kit.amass)}
    flags = ["--slurm", "--local", "--time", "0", "--cpus", "0", "--mem-gb", "-1", "--gpus", "-1"]
    assert convert_sequences.main(flags, user_config=config) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: --slurm: resources no task can have:", "  --time must be >= 1, got 0",
        "  --cpus must be >= 1, got 0", "  --gpus must be >= 0, got -1",
        "  --mem-gb must be >= 1, got -1"]
    (tmp_path / "file").write_text("")
    logs = tmp_path / "file" / "logs"
    assert convert_sequences.main(["--slurm", "--local", "--log-dir", str(logs)],
                                  user_config=config) == 3
    assert str(logs) in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_every_bad_option_is_listed_at_once(kit, tmp_path, capsys):
    import convert_sequences
    config = {"SMPLH_MODEL": str(kit.body_models), "SMPLX_MODEL": str(kit.body_models),
              "DEFTRAFO_PATH": str(kit.deftrafo), "MASK_IDS_PATH": str(kit.mask),
              "SEQUENCE_OUTPUT_DIR": str(tmp_path / "out"), "AMASS_DIR": str(kit.amass)}
    flags = ["--shard-size", "1", "--shard-index", "-1", "--fps", "-30", "--chunk-frames", "0",
             "--smoothing", "2", "--source-fps", "0"]
    assert convert_sequences.main(flags, user_config=config) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: bad options:", "  --fps must be positive, got -30.0",
        "  --source-fps must be from 1 to 10000 frames per second, got 0.0",
        "  --shard-index must be >= 0, got -1", "  --chunk-frames must be >= 1, got 0",
        "  --smoothing must be from 0 to 1.0 seconds, got 2.0"]
    assert not (tmp_path / "out").exists()


def test_a_first_run_names_every_path_its_files_need_at_once(kit, tmp_path, capsys):
    """config.py with only the target's paths written: the SMPL-H files need the SMPL-H
    model and the transfer, and one message lists both, before anything is written or
    submitted (one at a time, the model's came as a failure of each file, or of each SLURM
    task, after the transfer's)."""
    import convert_sequences
    config = {"SMPLX_MODEL": str(kit.body_models), "MASK_IDS_PATH": str(kit.mask),
              "SEQUENCE_OUTPUT_DIR": str(tmp_path / "out"), "AMASS_DIR": str(kit.amass)}
    for flags in ([], ["--keep-going"], ["--slurm", "--local", "--shards", "2"]):
        assert convert_sequences.main(flags, user_config=config) == 2
        assert capsys.readouterr().err.splitlines() == [
            "error: no file can be converted:",
            "  no SMPL-H body model given (--smplh-model)",
            "  SMPL-H to SMPL-X needs the deformation transfer smplh2smplx_deftrafo_setup.pkl "
            "(--deformation-transfer)"]
        assert not (tmp_path / "out").exists()
    config["SMPLH_MODEL"] = str(kit.body_models)         # one missing: its line alone
    assert convert_sequences.main([], user_config=config) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: SMPL-H to SMPL-X needs the deformation transfer "
        "smplh2smplx_deftrafo_setup.pkl (--deformation-transfer)"]


def test_an_array_where_a_value_belongs_is_described_not_dumped(tmp_path):
    """A per-frame gender or frame rate: its shape and type, on one line (its repr would run
    to hundreds of lines)."""
    from smplh2smplx.errors import InputError
    base = dict(poses=np.zeros((600, 72)), trans=np.zeros((600, 3)), betas=np.zeros(10),
                gender=np.array("male"), mocap_framerate=np.array(30.0))
    for key, value, shown in [("gender", np.array(["male"] * 600), "an array of shape (600,)"),
                              ("mocap_framerate", np.full(600, 30.0),
                               "an array of shape (600,) and type float64")]:
        np.savez(tmp_path / "m_poses.npz", **{**base, key: value})
        with pytest.raises(InputError) as error:
            read_motion(tmp_path / "m_poses.npz")
        assert f"{key} is {shown}" in str(error.value) and "\n" not in str(error.value)


def test_a_run_whose_every_file_fails_leaves_no_settings_record(kit, tmp_path, capsys):
    """More betas than the model files hold fails each file; the folder must not then
    claim results of those settings, which would refuse the corrected rerun."""
    import convert_sequences
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    with np.load(kit.amass / kit.sequences[0]) as archive:
        np.savez(tree / "a" / "one_poses.npz", **{key: archive[key][:6] if key in (
            "poses", "trans", "dmpls") else archive[key] for key in archive.files})
    config = {"SMPLH_MODEL": str(kit.body_models), "SMPLX_MODEL": str(kit.body_models),
              "DEFTRAFO_PATH": str(kit.deftrafo), "MASK_IDS_PATH": str(kit.mask),
              "SEQUENCE_OUTPUT_DIR": str(tmp_path / "out")}
    fast = ["--max-iterations", "1", "--chunk-frames", "8", "--shape-frames", "2"]
    assert convert_sequences.main([str(tree), "--keep-going", "--num-betas", "400", *fast],
                                  user_config=config) == 1
    assert "400 betas asked for" in capsys.readouterr().out
    assert not (tmp_path / "out" / "result_settings.json").exists()
    assert convert_sequences.main([str(tree), *fast], user_config=config) == 0
    assert json.loads((tmp_path / "out" / "result_settings.json").read_text())["num_betas"] == 16
