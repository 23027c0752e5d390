"""Numbers no body has (a pose of 1e30 rad, a body 1e30 m away, betas of 1e30) are refused
by every reader with a line naming the input, before any fit: they would overflow the fit
into a solver traceback that stops a whole run. And a fit that fails numerically anyway
fails its file alone, with nothing of it written. (Stage 1's AMASS frames and the API's
arguments: `test_extract.py::bad_input_cases`, `test_api.py::test_bad_arguments_are_named`.)
"""
import contextlib
import io
from dataclasses import replace

import numpy as np
import pytest
import torch

import convert_sequences
from patches.dataset import read_mesh
from smplh2smplx.errors import InputError
from smplh2smplx.formats.limits import MAX_ANGLE_RAD, MAX_BETA, MAX_TRANSLATION_M
from smplh2smplx.formats.meshes import format_vertex_lines, write_obj
from smplh2smplx.formats.param_files import (build_parameters, read_parameters,
                                             write_parameter_dict)
from smplh2smplx.formats.sequence_files import read_motion
from smplh2smplx.formats.sequences_csv import SEQUENCES_CSV, read_sequence_rows
from smplh2smplx.formats.source_params import SOURCE_PARAMS, read_source_params
from smplh2smplx.stages.sequences import run as run_module
from smplh2smplx.stages.sequences.tree import output_path, quality_path


def motion_arrays(kit, frames=8):
    with np.load(kit.amass / kit.sequences[0]) as archive:
        arrays = {key: archive[key] for key in archive.files}
    for key in ("poses", "trans", "dmpls"):
        arrays[key] = arrays[key][:frames]
    return arrays


def changed(arrays, key, index, value):
    array = arrays[key].copy()
    array[index] = value
    return {**arrays, key: array}


@pytest.mark.parametrize("key, index, value, message", [
    ("poses", (5, 3), 1e30, "frame 5 holds an angle beyond 1000 rad"),
    ("poses", (slice(None), 0), -2 * MAX_ANGLE_RAD, r"8 frames hold an angle beyond 1000 rad:\n  "
                                                    r"frame 0\n  frame 1\n(  frame \d\n){3}  and 3 more$"),
    ("trans", (2, 1), 1e30, "frame 2 holds a translation beyond 1000 m"),
    ("betas", 0, 1e30, "betas holds 1e\\+30, beyond the limit of 100"),
])
def test_motion_files_beyond_the_limits_are_named(kit, tmp_path, key, index, value, message):
    path = tmp_path / "big_poses.npz"
    np.savez(path, **changed(motion_arrays(kit), key, index, value))
    with pytest.raises(InputError, match="big_poses.npz: " + message):
        read_motion(path)


def test_motion_files_at_the_limits_are_read(kit, tmp_path):
    arrays = motion_arrays(kit)
    arrays = changed(arrays, "poses", (0, 3), MAX_ANGLE_RAD)
    arrays = changed(arrays, "trans", (0, 0), -MAX_TRANSLATION_M)
    arrays = changed(arrays, "betas", 1, MAX_BETA)
    np.savez(tmp_path / "edge_poses.npz", **arrays)
    motion = read_motion(tmp_path / "edge_poses.npz")
    assert motion.poses[0, 3] == MAX_ANGLE_RAD and motion.betas[1] == MAX_BETA


def test_other_readers_refuse_numbers_beyond_the_limits(kit, tmp_path):
    np.savez(tmp_path / SOURCE_PARAMS, pose_ids=np.arange(2),
             poses=np.full((2, 156), 1e30, np.float32))
    with pytest.raises(InputError, match=f"{SOURCE_PARAMS}: poses holds 1e\\+30 rad"):
        read_source_params(tmp_path / SOURCE_PARAMS)

    params = build_parameters("smplh", torch.zeros(52, 3), torch.zeros(10))
    params["transl"] = torch.tensor([[0.0, 0.0, 1e30]])
    write_parameter_dict(tmp_path / "000001.pkl", params)       # finite, so it is written
    with pytest.raises(InputError, match=r"000001.pkl: transl holds 1e\+30 m, beyond"):
        read_parameters(tmp_path / "000001.pkl", "smplh")

    far = np.array([[0, 0, 0], [1, 0, 0], [0, 1e30, 0]])
    (tmp_path / "000002.obj").write_text("".join(f"v {x} {y} {z}\n" for x, y, z in far)
                                         + "f 1 2 3\n")
    with pytest.raises(InputError, match=r"000002.obj: a vertex coordinate is 1e\+30 m"):
        read_mesh(tmp_path / "000002.obj")         # the official optimiser's patched reader
    with pytest.raises(InputError, match=r"000003.obj: a vertex coordinate is 1e\+30 m"):
        write_obj(tmp_path / "000003.obj", far, np.array([[0, 1, 2]]))
    assert not (tmp_path / "000003.obj").exists()
    with pytest.raises(ValueError, match="below 1e12"):
        format_vertex_lines(np.array([[0.0, 2e12, 0.0]]))


def run_tree(kit, tree, output):
    """convert_sequences.py --keep-going over `tree`: (exit code, printed text)."""
    config = {"SMPLH_MODEL": str(kit.body_models), "SMPLX_MODEL": str(kit.body_models),
              "DEFTRAFO_PATH": str(kit.deftrafo), "MASK_IDS_PATH": str(kit.mask),
              "SEQUENCE_OUTPUT_DIR": str(output)}
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = convert_sequences.main(
            [str(tree), "--keep-going", "--device", "cpu", "--max-iterations", "2",
             "--chunk-frames", "8", "--shape-frames", "4"], user_config=config)
    return code, out.getvalue()


def test_a_failing_fit_fails_its_file_alone_and_writes_nothing_of_it(kit, tmp_path,
                                                                      monkeypatch):
    """A file beyond the limits, one whose fit raises a solver error and one whose fit
    gives NaN: each fails with a line naming it, and none gets an output, a quality file or
    a row of sequences.csv; the good file is converted."""
    tree, output = tmp_path / "amass", tmp_path / "out"
    (tree / "a").mkdir(parents=True)
    arrays = motion_arrays(kit)
    for name in ("good", "solver", "nan"):
        np.savez(tree / "a" / f"{name}_poses.npz", **arrays)
    np.savez(tree / "a" / "far_poses.npz", **changed(arrays, "trans", (3, 0), 1e30))
    real_steps = run_module.sequence_steps

    def steps(sequence, *args, **kwargs):
        conversion = real_steps(sequence, *args, **kwargs)
        if sequence.path.name == "solver_poses.npz":     # its first fit, batched, fails
            yield next(conversion)
            raise torch.linalg.LinAlgError("linalg.eigh: the algorithm failed to converge")
        result = yield from conversion
        if sequence.path.name == "nan_poses.npz":
            poses = result.output.poses.copy()
            poses[2, 5] = np.nan
            result = replace(result, output=replace(result.output, poses=poses))
        return result

    monkeypatch.setattr(run_module, "sequence_steps", steps)
    code, printed = run_tree(kit, tree, output)
    assert code == 1 and "Traceback" not in printed
    failed = {"far": "frame 3 holds a translation beyond 1000 m",
              "solver": "the fit failed (linalg.eigh: the algorithm failed to converge)",
              "nan": "not written: NaN or infinite values in\n  poses\n  pose_body"}
    for name, message in failed.items():
        relative = f"amass/a/{name}_poses.npz"
        named = output_path(output, relative, "smplx") if name == "nan" else tree / relative[6:]
        assert f"{named}: {message}" in printed, printed
        assert not output_path(output, relative, "smplx").exists()
        assert not quality_path(output, relative, "smplx").exists()
    rows = read_sequence_rows(output / SEQUENCES_CSV)
    assert list(rows) == ["amass/a/good_poses.npz"]
    assert output_path(output, "amass/a/good_poses.npz", "smplx").is_file()
