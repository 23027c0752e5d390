"""Stage 1: selection to meshes and source_params.npz, both body-model modes, bad inputs, CLI."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import extract_to_obj
from smplh2smplx.errors import InputError
from smplh2smplx.settings import ExtractOptions
from smplh2smplx.stages.extract import SmplhPoser, run_extract
from smplh2smplx.formats.meshes import format_obj, format_vertex_lines, read_obj_vertices
from smplh2smplx.formats.annotations import ID_MAPPING
from smplh2smplx.formats.source_params import SOURCE_PARAMS, read_source_params
from smplh2smplx.formats.result_settings import RESULT_SETTINGS

REAL_AMASS = Path(__file__).resolve().parents[2] / "shared" / "data" / "amass_sample_smplh.npz"
QUIET = dict(progress=False, log=lambda _line: None)


def load(path):
    with open(path) as stream:
        return json.load(stream)


def amass_poses(kit, pose_ids, mapping=None):
    """(N, 156) poses of `pose_ids` read straight from the kit's files."""
    mapping = mapping or load(kit.posefix_ids)
    rows = []
    for pose_id in pose_ids:
        _, relative, frame = mapping[str(pose_id)]
        with np.load(kit.amass / relative) as sequence:
            rows.append(sequence["poses"][frame])
    return np.array(rows)


@pytest.fixture(scope="module")
def smplx_layer(kit):
    """The smplx package's SMPL-H, as its own documentation sets it up for AMASS poses."""
    import smplx
    return smplx.create(str(kit.body_models), model_type="smplh", use_pca=False,
                        flat_hand_mean=True)


def reference_vertices(layer, poses):
    """(N, 6890, 3) vertices from the smplx package: zero shape, zero translation."""
    pose = torch.as_tensor(poses, dtype=torch.float32)
    with torch.no_grad():
        return layer(global_orient=pose[:, :3], body_pose=pose[:, 3:66],
                     left_hand_pose=pose[:, 66:111], right_hand_pose=pose[:, 111:],
                     betas=torch.zeros(len(pose), layer.num_betas),
                     transl=torch.zeros(len(pose), 3)).vertices.numpy()


@pytest.fixture(scope="module")
def few_ids(kit):
    """Six mapped pose ids, from every sequence of the kit."""
    by_sequence = {}
    for pose_id, (_, relative, _) in load(kit.posefix_ids).items():
        by_sequence.setdefault(relative, []).append(int(pose_id))
    return sorted(pose_id for ids in by_sequence.values() for pose_id in ids[-2:])[:6]


def options(kit, output_dir, **overrides):
    settings = dict(amass_dir=kit.amass, posefix_dir=kit.posefix_ids.parent,
                    posescript_dir=kit.posescript_ids.parent, smplh_model=kit.smplh_npz,
                    output_dir=output_dir, poses_per_batch=4)
    return ExtractOptions(**{**settings, **overrides})


def obj_files(folder):
    return sorted(path.name for path in Path(folder).glob("*.obj"))


def test_both_body_model_modes_agree_to_float32_precision(kit, few_ids):
    poses = amass_poses(kit, few_ids)
    amass_mode = SmplhPoser(kit.smplh_npz, "amass")(poses)
    smplx_mode = SmplhPoser(kit.smplh_pkl, "smplx")(poses)
    assert amass_mode.shape == (len(poses), 6890, 3) and amass_mode.dtype == np.float32
    assert np.abs(amass_mode - smplx_mode).max() < 2e-6         # metres, bodies ~1.7 m
    assert np.abs(amass_mode).max() > 0.5                        # posed, not degenerate


def test_meshes_and_source_poses_match_an_independent_forward_pass(kit, few_ids, smplx_layer,
                                                                    tmp_path):
    summary = run_extract(options(kit, tmp_path, ids=few_ids, body_model="smplx",
                                  smplh_model=kit.smplh_pkl), **QUIET)
    assert (summary.written, summary.skipped, summary.failed) == (len(few_ids), 0, 0)
    assert obj_files(tmp_path) == [f"{pose_id:06d}.obj" for pose_id in few_ids]
    poses = amass_poses(kit, few_ids)
    expected = reference_vertices(smplx_layer, poses)
    for pose_id, vertices in zip(few_ids, expected):
        path = tmp_path / f"{pose_id:06d}.obj"
        assert np.abs(read_obj_vertices(path) - vertices).max() < 2e-6   # 6 decimals
        faces = [line.split()[1:] for line in path.read_text().splitlines()
                 if line.startswith("f ")]
        np.testing.assert_array_equal(np.array(faces, dtype=np.int64) - 1, smplx_layer.faces)
    recorded = read_source_params(tmp_path / SOURCE_PARAMS)
    assert sorted(recorded) == few_ids
    np.testing.assert_array_equal(np.stack([recorded[i] for i in few_ids]),
                                  poses.astype(np.float32))


def test_obj_text_is_what_printf_formatting_gives(kit, few_ids):
    vertices = SmplhPoser(kit.smplh_npz)(amass_poses(kit, few_ids[:2])).reshape(-1, 3)
    edge_cases = np.array([[-0.0, 0.0, 1e-7], [12.5, -123.000001, 0.0078125],
                           [-5e-7, 5e-7, 999.9999995], [1234567.0, -1000.0, -9.9999996]],
                          np.float32)
    for values in (vertices, edge_cases, np.zeros((0, 3))):
        expected = "".join("v %.6f %.6f %.6f\n" % tuple(row) for row in values.tolist())
        assert format_vertex_lines(values).decode() == expected
    faces = np.array([[0, 1, 2], [6889, 5, 13]])
    assert format_obj(edge_cases, faces).decode() == "".join(
        "v %.6f %.6f %.6f\n" % tuple(row) for row in edge_cases.tolist()) + "f 1 2 3\nf 6890 6 14\n"


def test_existing_outputs_are_skipped_unless_overwrite(kit, few_ids, tmp_path):
    first, rest = few_ids[:2], few_ids[2:]
    run_extract(options(kit, tmp_path, ids=first), **QUIET)
    kept, cut = (tmp_path / f"{pose_id:06d}.obj" for pose_id in first)
    whole, whole_cut = kept.read_bytes(), cut.read_bytes()
    marked = b"v 0 0 0\n" + whole.split(b"\n", 1)[1]     # whole, its first vertex moved
    kept.write_bytes(marked)
    cut.write_bytes(whole_cut[:-100])                     # cut short: written again
    summary = run_extract(options(kit, tmp_path, ids=few_ids), **QUIET)
    assert (summary.written, summary.skipped) == (len(rest) + 1, len(first) - 1)
    assert kept.read_bytes() == marked
    reference = tmp_path / "reference.obj.txt"
    reference.write_bytes(whole_cut)
    assert np.allclose(read_obj_vertices(cut), read_obj_vertices(reference), atol=1e-6)
    assert sorted(read_source_params(tmp_path / SOURCE_PARAMS)) == few_ids
    # a later run of other poses keeps the earlier entries of source_params.npz
    others = sorted(set(map(int, load(kit.posefix_ids))) - set(few_ids))[:2]
    assert run_extract(options(kit, tmp_path, ids=others), **QUIET).written == 2
    assert sorted(read_source_params(tmp_path / SOURCE_PARAMS)) == sorted(few_ids + others)
    summary = run_extract(options(kit, tmp_path, ids=first, overwrite=True), **QUIET)
    assert (summary.written, summary.skipped) == (len(first), 0)
    assert kept.read_bytes() == whole


def test_an_interrupted_run_leaves_whole_files_and_resumes(kit, few_ids, tmp_path,
                                                          monkeypatch):
    from smplh2smplx.stages import extract
    calls = []

    def interrupted_after_three(vertices):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return format_vertex_lines(vertices)

    monkeypatch.setattr(extract, "format_vertex_lines", interrupted_after_three)
    with pytest.raises(KeyboardInterrupt):
        run_extract(options(kit, tmp_path, ids=few_ids), **QUIET)
    assert len(obj_files(tmp_path)) == 3
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [f".{RESULT_SETTINGS}.lock", f".{SOURCE_PARAMS}.lock", RESULT_SETTINGS, SOURCE_PARAMS]
        + obj_files(tmp_path))                                      # no temporary left
    assert all(len(read_obj_vertices(tmp_path / name)) == 6890 for name in obj_files(tmp_path))
    monkeypatch.undo()
    summary = run_extract(options(kit, tmp_path, ids=few_ids), **QUIET)
    assert (summary.written, summary.skipped) == (len(few_ids) - 3, 3)


def test_params_format_writes_no_mesh(kit, few_ids, tmp_path):
    summary = run_extract(options(kit, tmp_path, ids=few_ids, output_format="params"), **QUIET)
    assert summary.written == len(few_ids) and obj_files(tmp_path) == []
    recorded = read_source_params(tmp_path / SOURCE_PARAMS)
    np.testing.assert_array_equal(np.stack([recorded[i] for i in few_ids]),
                                  amass_poses(kit, few_ids).astype(np.float32))
    again = run_extract(options(kit, tmp_path, ids=few_ids, output_format="params"), **QUIET)
    assert (again.written, again.skipped) == (0, len(few_ids))


@pytest.mark.parametrize("mapped, on_disk", [
    ("BioMotionLab_NTroje", "BMLrub"),                  # the mapping's name, today's folder
    ("BMLrub", "BioMotionLab_NTroje"),                  # and the other way round
    ("BioMotionLab_NTroje", "BMLrub/BioMotionLab_NTroje")])   # nested in today's folder
def test_subsets_amass_renamed_are_found_under_either_name(kit, few_ids, tmp_path, mapped,
                                                           on_disk):
    """The PoseScript/PoseFix id mapping names AMASS subsets by the folders of AMASS's older
    release (BioMotionLab_NTroje/); a download of today may hold them under the newer names
    (BMLrub/). Either way the poses are read, the same as under the mapping's own path."""
    bml_ids = [pose_id for pose_id, (_, relative, _) in load(kit.posefix_ids).items()
               if relative.startswith("BMLrub/")][:3]
    changes = {pose_id: ["AMASS", mapped + relative[len("BMLrub"):], frame]
               for pose_id, (_, relative, frame) in load(kit.posefix_ids).items()
               if pose_id in bml_ids}
    posefix = mapping_folder(kit, tmp_path / "fix", changes)
    amass = tmp_path / "amass"
    shutil.copytree(kit.amass, amass)
    (amass / "BMLrub").rename(amass / "moved")
    (amass / on_disk).parent.mkdir(parents=True, exist_ok=True)
    (amass / "moved").rename(amass / on_disk)
    ids = [int(pose_id) for pose_id in bml_ids]
    run_extract(options(kit, tmp_path / "out", ids=ids, amass_dir=amass, posefix_dir=posefix,
                        output_format="params"), **QUIET)
    recorded = read_source_params(tmp_path / "out" / SOURCE_PARAMS)
    np.testing.assert_array_equal(np.stack([recorded[i] for i in ids]),
                                  amass_poses(kit, ids).astype(np.float32))


# ----------------------------------------------------------------- bad inputs

def amass_tree(kit, root, replace):
    """A copy of the kit's AMASS tree with the files named in `replace` rewritten:
    {relative path: arrays (written as .npz) or bytes (written as they are)}."""
    shutil.copytree(kit.amass, root)
    for relative, contents in replace.items():
        if isinstance(contents, bytes):
            (root / relative).write_bytes(contents)
        else:
            np.savez(root / relative, **contents)
    return root


def mapping_folder(kit, root, changes):
    """A PoseFix folder whose id mapping has `changes` {pose_id: entry} applied."""
    folder = shutil.copytree(kit.posefix_ids.parent, root)
    mapping = load(folder / ID_MAPPING)
    mapping.update({str(pose_id): entry for pose_id, entry in changes.items()})
    (folder / ID_MAPPING).write_text(json.dumps(mapping))
    return folder


def location(kit, pose_id):
    return load(kit.posefix_ids)[str(pose_id)][1:]


def bad_input_cases(kit, few_ids, tmp):
    """(options overrides, text the error must contain) for each kind of bad input."""
    relative, frame = location(kit, few_ids[0])
    poses = amass_poses(kit, few_ids[:1])
    with np.load(kit.amass / relative) as archive:
        huge = archive["poses"].copy()
    huge[frame, 3] = 1e30
    unmapped = max(map(int, load(kit.posefix_ids))) + 1
    return [
        (dict(amass_dir=tmp / "no_amass"), f"{tmp / 'no_amass'}: AMASS folder not found"),
        (dict(smplh_model=tmp / "no_model.npz"), f"{tmp / 'no_model.npz'}: body model file"),
        (dict(smplh_model=kit.smplx_npz), "is a SMPL-X model"),
        (dict(smplh_model=kit.smplh_npz, body_model="smplx"), "lacks\n  hands_componentsl\n  hands_componentsr"),
        (dict(ids=[*few_ids, unmapped]), f"pose {unmapped}: not in {kit.posefix_ids}"),
        (dict(posefix_dir=mapping_folder(kit, tmp / "fix", {few_ids[1]: [
            "AMASS", relative, 10_000]})), f"pose {few_ids[1]}: frame 10000 is beyond "
                                           f"{kit.amass / relative}"),
        (dict(posefix_dir=mapping_folder(kit, tmp / "dot", {few_ids[1]: ["AMASS", ".", 0]})),
         f"pose {few_ids[1]}: {kit.amass}: AMASS sequence not found"),
        (dict(amass_dir=amass_tree(kit, tmp / "smplx_amass", {relative: dict(
            poses=np.zeros((80, 165)), surface_model_type="smplx")})),
         f"pose {few_ids[0]}: {tmp / 'smplx_amass' / relative}: is an AMASS SMPL-X sequence"),
        (dict(amass_dir=amass_tree(kit, tmp / "broken", {relative: b"PK\x03\x04 broken"})),
         f"{tmp / 'broken' / relative}: not a readable .npz file"),
        (dict(amass_dir=amass_tree(kit, tmp / "short", {relative: dict(poses=poses[:, :60])})),
         f"{tmp / 'short' / relative}: poses has shape (1, 60)"),
        (dict(amass_dir=amass_tree(kit, tmp / "huge", {relative: dict(poses=huge)})),
         f"pose {few_ids[0]}: frame {frame} of {tmp / 'huge' / relative} holds 1e+30 rad, "
         "beyond the limit"),
    ]


def test_every_bad_input_is_named_and_nothing_is_written(kit, few_ids, tmp_path):
    for overrides, message in bad_input_cases(kit, few_ids, tmp_path):
        output_dir = tmp_path / "out"
        settings = {"ids": few_ids, **overrides}
        with pytest.raises(InputError) as error:
            run_extract(options(kit, output_dir, **settings), **QUIET)
        assert message in str(error.value), (overrides, str(error.value))
        assert not output_dir.exists(), overrides


def test_a_broken_source_params_file_stops_the_run(kit, few_ids, tmp_path):
    (tmp_path / SOURCE_PARAMS).write_bytes(b"not an npz")
    with pytest.raises(InputError, match=SOURCE_PARAMS):
        run_extract(options(kit, tmp_path, ids=few_ids), **QUIET)
    assert obj_files(tmp_path) == []


def test_keep_going_lists_bad_ids_and_writes_the_others(kit, few_ids, tmp_path):
    relative, _ = location(kit, few_ids[0])
    broken = [pose_id for pose_id in few_ids if location(kit, pose_id)[0] == relative]
    amass = amass_tree(kit, tmp_path / "amass", {relative: b"garbage"})
    summary = run_extract(options(kit, tmp_path / "out", ids=[*few_ids, 100_000],
                                  amass_dir=amass, keep_going=True), **QUIET)
    assert summary.bad_ids == sorted([*broken, 100_000])
    good = [pose_id for pose_id in few_ids if pose_id not in broken]
    assert obj_files(tmp_path / "out") == [f"{pose_id:06d}.obj" for pose_id in good]
    assert sorted(read_source_params(tmp_path / "out" / SOURCE_PARAMS)) == good
    assert any("bad ids:" in line for line in summary.lines())


# ----------------------------------------------------------------- command line

def cli_config(kit, output_dir):
    return {"AMASS_DIR": str(kit.amass), "POSEFIX_DIR": str(kit.posefix_ids.parent),
            "POSESCRIPT_DIR": str(kit.posescript_ids.parent),
            "SMPLH_MODEL": str(kit.smplh_npz), "MESH_DIR": str(output_dir)}


def test_cli_flags_win_over_config_and_exit_codes(kit, few_ids, tmp_path, capsys):
    config = dict(cli_config(kit, tmp_path / "unused"), AMASS_DIR=str(tmp_path / "wrong"))
    flags = ["--amass-dir", str(kit.amass), "--output-dir", str(tmp_path / "out")]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(map(str, few_ids[:3])))
    assert extract_to_obj.main([*flags, "--ids-file", str(ids_file)], config) == 0
    assert "3 written" in capsys.readouterr().out
    assert len(obj_files(tmp_path / "out")) == 3

    assert extract_to_obj.main([*flags, "--ids", f"{few_ids[4]},{few_ids[5]}", "--format",
                                "params"], config) == 0
    assert len(read_source_params(tmp_path / "out" / SOURCE_PARAMS)) == 5
    assert len(obj_files(tmp_path / "out")) == 3

    assert extract_to_obj.main([*flags, "--ids", "100000"], config) == 2
    assert "pose 100000: not in" in capsys.readouterr().err
    assert extract_to_obj.main([*flags, "--ids", "100000", str(few_ids[3]),
                                "--keep-going"], config) == 1
    assert "bad ids: 100000" in capsys.readouterr().out
    # without the flag, config.py's AMASS_DIR is used
    assert extract_to_obj.main(flags[2:] + ["--ids", str(few_ids[0])], config) == 2
    assert f"{tmp_path / 'wrong'}: AMASS folder not found" in capsys.readouterr().err


def test_cli_lists_the_paths_still_to_set(kit, tmp_path, capsys):
    config = dict(cli_config(kit, tmp_path), AMASS_DIR="TODO", POSESCRIPT_DIR="TODO")
    assert extract_to_obj.main([], config) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [        # one line per path to set
        "error: paths not set yet (write them in "
        f"{Path(extract_to_obj.__file__).parent / 'config.py'}, or give the flags):",
        "  AMASS_DIR (or --amass-dir)", "  POSESCRIPT_DIR (or --posescript-dir)"]
    # an explicit id list needs only one of the annotation folders (for the id mapping)
    assert extract_to_obj.main(["--amass-dir", str(kit.amass), "--ids", "100000"], config) == 2
    assert "POSESCRIPT_DIR" not in capsys.readouterr().err


# ----------------------------------------------------------------- real AMASS data

@pytest.mark.skipif(not REAL_AMASS.is_file(), reason="shared AMASS sample absent")
def test_real_amass_sequence(kit, smplx_layer, tmp_path):
    relative = "Real/subject/sample_poses.npz"
    (tmp_path / "amass" / relative).parent.mkdir(parents=True)
    shutil.copy(REAL_AMASS, tmp_path / "amass" / relative)
    frames = {7: 0, 300: 299, 4242: 600}
    (tmp_path / "posefix").mkdir()
    (tmp_path / "posefix" / ID_MAPPING).write_text(json.dumps(
        {str(pose_id): ["AMASS", relative, frame] for pose_id, frame in frames.items()}))
    summary = run_extract(ExtractOptions(
        amass_dir=tmp_path / "amass", posefix_dir=tmp_path / "posefix",
        smplh_model=kit.smplh_npz, output_dir=tmp_path / "out", all_poses=True), **QUIET)
    assert summary.written == 3
    with np.load(REAL_AMASS) as sequence:
        poses = sequence["poses"][list(frames.values())]
    expected = reference_vertices(smplx_layer, poses)
    for pose_id, vertices in zip(frames, expected):
        written = read_obj_vertices(tmp_path / "out" / f"{pose_id:06d}.obj")
        assert np.abs(written - vertices).max() < 2e-6
