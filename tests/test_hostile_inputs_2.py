"""Issue 16, hostile and broken inputs round 2: one test (or a few) per row and principle.

Each test failed on main before its fix; docs/BAD_INPUTS.md names them. Fits are short
(a few iterations on one or two poses, or sequences of a few frames): they test the
drivers' handling of bad inputs and settings, not the fitter.
"""
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import convert_sequences
import run_transfer
from smplh2smplx.errors import InputError
from smplh2smplx.fit.fitter import FitSettings
from smplh2smplx.formats.meshes import write_obj
from smplh2smplx.formats.param_files import parameter_path
from smplh2smplx.formats.result_settings import RESULT_SETTINGS
from smplh2smplx.formats.sequence_files import read_smplx_sequence
from smplh2smplx.formats.smplh_params import read_smplh_params
from smplh2smplx.stages.sequences.convert import SequenceOptions
from smplh2smplx.stages.sequences.run import output_path, run_sequences
from smplh2smplx.body.lbs import BodyModel
from smplh2smplx.formats.body_models import load_smplh

FAST = FitSettings(max_iterations=3, refine_iterations=1, fit_vertices=500)
SHORT_FIT = FitSettings(max_iterations=2)
QUIET = dict(progress=False, log=lambda _line: None)
OLD = time.time() - 3600


@pytest.fixture(scope="module")
def smplh_mesh(kit, tmp_path_factory):
    """A folder with one SMPL-H mesh (pose id 1) of the kit's model."""
    import torch
    folder = tmp_path_factory.mktemp("meshes")
    body = BodyModel(load_smplh(kit.body_models / "smplh" / "SMPLH_NEUTRAL.pkl"))
    with torch.no_grad():
        vertices = body(torch.zeros(1, 52, 3))[0][0].numpy()
    write_obj(folder / "000001.obj", vertices, body.faces)
    return folder


def stage2_argv(kit, mesh_dir, output_dir, *extra):
    return ["--exp-opts", f"datasets.mesh_folder.data_folder={mesh_dir}",
            f"output_folder={output_dir}", f"body_model.folder={kit.body_models}",
            f"deformation_transfer_path={kit.deftrafo}", f"mask_ids_fname={kit.mask}",
            "fit.max_iterations=3", "fit.refine_iterations=1", "fit.fit_vertices=500",
            "fit.device=cpu", *extra]


def sequence_options(kit, input_path, output_dir, **changes):
    base = SequenceOptions(input_path=input_path, output_dir=output_dir,
                           smplh_model=kit.body_models, smplx_model=kit.body_models,
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
            (smplh + stage2_argv(kit, smplh_mesh, output, "body_model.smplh.betas.num=16"),
             "num_betas 10 (this run: 16)"),
            (smplh + stage2_argv(kit, smplh_mesh, output, "body_model.gender=male"),
             "gender neutral (this run: male)")):
        code = run_transfer.main(argv)
        line = capsys.readouterr().err.strip()
        assert code == 2, line
        assert str(output) in line and expected in line
        assert "--overwrite" in line and "\n" not in line
        assert result.read_bytes() == before
    # --overwrite replaces them explicitly, and records the new settings.
    argv = smplh + stage2_argv(kit, smplh_mesh, output, "body_model.smplh.betas.num=16")
    assert run_transfer.main(argv + ["--overwrite"]) == 0
    assert read_smplh_params(result)["betas"].shape == (1, 16)
    assert json.loads((output / RESULT_SETTINGS).read_text())["num_betas"] == 16


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


@pytest.mark.parametrize("change", [dict(fps=30.0), dict(gender="neutral"),
                                    dict(num_betas=16)])
def test_row12_sequences_refuse_outputs_of_other_settings(kit, tmp_path, change):
    source = tmp_path / "amass"
    short_tree(kit, source)
    output = tmp_path / "out"
    first = run_sequences(sequence_options(kit, source, output), progress=False)
    assert len(first.rows) == 1
    written = output_path(output, "a/one_poses.npz")
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
    written = output_path(output, "a/one_poses.npz")
    rate = float(read_smplx_sequence(written)["mocap_frame_rate"])
    capsys.readouterr()
    assert convert_sequences.main(argv + ["--fps", str(rate / 2)], user_config=config) == 2
    line = capsys.readouterr().err.strip()
    assert "fps source (this run:" in line and "\n" not in line
    assert float(read_smplx_sequence(written)["mocap_frame_rate"]) == rate
    assert convert_sequences.main(argv + ["--fps", str(rate / 2), "--overwrite"],
                                  user_config=config) == 0
    assert float(read_smplx_sequence(written)["mocap_frame_rate"]) == rate / 2
