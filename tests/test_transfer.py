"""Stage 2 on the synthetic kit: accuracy, the output contract, resume, sharding, bad input.

Most runs use a short fit (FAST) on a handful of poses: they test the driver, not the
fitter's accuracy. The accuracy tests state their bounds next to the figures measured.
"""
import filecmp
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import run_transfer
from smplh2smplx.formats.body_models import load_smplh, load_smplx
from smplh2smplx.body.deformation import load_deformation_transfer
from smplh2smplx.errors import InputError
from smplh2smplx.fit.fitter import FitSettings, BodyFitter
from smplh2smplx.body.lbs import BodyModel
from smplh2smplx.formats.meshes import write_obj
from smplh2smplx.formats.errors_csv import read_error_rows
from smplh2smplx.formats.param_files import (parameter_path, pose_from_parameters,
                                             read_parameters, write_parameters)
from smplh2smplx.family import SMPLH, SMPLX, map_pose
from smplh2smplx.fit.fitter import fit_batch
from smplh2smplx.formats.mesh_folder import list_mesh_inputs, select_shard
from smplh2smplx.runtime import resolve_device
from smplh2smplx.settings import TransferOptions
from smplh2smplx.stages.transfer import run_transfer as transfer

REPO = Path(__file__).resolve().parents[1]
AMASS_SAMPLE = REPO.parent / "shared" / "data" / "amass_sample_smplh.npz"
POSE_IDS = [3, 17, 250, 1001, 4242, 99999]
FAST = FitSettings(max_iterations=3, refine_iterations=1, fit_vertices=500)
BATCH = 4


def source_poses(count, seed=0):
    """(count, 156) SMPL-H poses: frames spread over the real AMASS sample when present,
    else small random rotations."""
    if AMASS_SAMPLE.exists():
        with np.load(AMASS_SAMPLE) as data:
            poses = data["poses"]
        return poses[np.linspace(0, len(poses) - 1, count).astype(int)].astype(np.float32)
    return (np.random.default_rng(seed).normal(size=(count, 156)) * 0.2).astype(np.float32)


@pytest.fixture(scope="module")
def paths(kit):
    root = Path(kit if isinstance(kit, (str, Path)) else kit.root)
    return SimpleNamespace(smplh=root / "body_models" / "smplh" / "neutral" / "model.npz",
                           smplx=root / "body_models",
                           smplx_file=root / "body_models" / "smplx" / "SMPLX_NEUTRAL.npz",
                           deftrafo=root / "transfer" / "smplh2smplx_deftrafo_setup.pkl",
                           mask=root / "transfer" / "smplx_mask_ids.npy")


def write_meshes(folder, paths, pose_ids, poses, with_params=True):
    """Stage-1 output: the SMPL-H meshes of `poses` and source_params.npz."""
    folder.mkdir(parents=True, exist_ok=True)
    smplh = load_smplh(paths.smplh)
    with torch.no_grad():
        vertices = BodyModel(smplh)(torch.as_tensor(poses).view(-1, 52, 3))[0].numpy()
    for pose_id, mesh in zip(pose_ids, vertices):
        write_obj(folder / f"{pose_id:06d}.obj", mesh, smplh.faces)
    if with_params:
        np.savez(folder / "source_params.npz", pose_ids=np.asarray(pose_ids, np.int64),
                 poses=np.asarray(poses, np.float32))
    return vertices


def options(paths, mesh_dir, output_dir, **changes):
    values = dict(mesh_dir=mesh_dir, output_dir=output_dir, smplx_model=paths.smplx,
                  deformation_transfer=paths.deftrafo, mask=paths.mask, poses_per_batch=BATCH,
                  device="cpu", fit=FAST)
    values.update(changes)
    return TransferOptions(**values)


@pytest.fixture(scope="module")
def meshes(paths, tmp_path_factory):
    folder = tmp_path_factory.mktemp("meshes")
    write_meshes(folder, paths, POSE_IDS, source_poses(len(POSE_IDS)))
    return folder


@pytest.fixture(scope="module")
def reference(paths, meshes, tmp_path_factory):
    """An uninterrupted run over all poses: what every other run must reproduce."""
    output = tmp_path_factory.mktemp("reference")
    summary = transfer(options(paths, meshes, output), progress=False)
    assert summary.done == len(POSE_IDS) and not summary.failures
    return output


def load_all(folder):
    return {path.name: read_parameters(path, "smplx") for path in sorted(folder.glob("*.pkl"))}


def assert_same_outputs(folder, reference):
    """Same files, bit-identical tensors, byte-identical errors.csv.

    (Pickled torch tensors embed a per-process memory address, so the .pkl bytes of two
    runs always differ; their content is what must match.)
    """
    produced, expected = load_all(folder), load_all(reference)
    assert produced.keys() == expected.keys()
    for name in expected:
        for key in SMPLX.parameter_shapes:
            assert torch.equal(produced[name][key], expected[name][key]), (name, key)
    assert filecmp.cmp(folder / "errors.csv", reference / "errors.csv", shallow=False)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------- pieces


def test_init_pose_layout():
    smplh = torch.arange(156, dtype=torch.float32).view(1, 156)
    pose = map_pose(smplh, "smplh", "smplx")[0]
    source = smplh.view(52, 3)
    assert torch.equal(pose[:22], source[:22])                 # root, body
    assert torch.equal(pose[22:25], torch.zeros(3, 3))         # jaw, eyes
    assert torch.equal(pose[25:40], source[22:37])             # left hand
    assert torch.equal(pose[40:55], source[37:52])             # right hand


def test_input_listing_sorted_by_name_and_shards_partition_it(tmp_path):
    for name in ["000010.ply", "000002.obj", "000007.OBJ", "notes.txt", ".000001.obj.x.tmp",
                 "template.obj"]:
        (tmp_path / name).write_text("")
    inputs = list_mesh_inputs(tmp_path)
    assert [item.name for item in inputs] == ["000002.obj", "000007.OBJ", "000010.ply",
                                              "template.obj"]
    assert [item.pose_id for item in inputs] == [2, 7, 10, None]
    shards = [select_shard(inputs, 3, index) for index in range(3)]
    assert shards[0] + shards[1] == inputs and shards[2] == []
    assert select_shard(inputs, 0, 5) == inputs
    with pytest.raises(InputError, match="nothing_here"):
        list_mesh_inputs(tmp_path / "nothing_here")


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="tpu"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA"):
            resolve_device("cuda")


# ----------------------------------------------------------------- accuracy


def test_identity_transfer_recovers_known_smplx_parameters(paths, tmp_path):
    """A SMPL-X mesh posed by our BodyModel is fitted back to within 0.05 mm (measured:
    below 0.001 mm), through the .pkl files: the written parameters re-pose the mesh."""
    smplx = load_smplx(paths.smplx_file)
    mask_ids = load_deformation_transfer(paths.deftrafo, paths.mask).mask_ids
    generator = torch.Generator().manual_seed(1)
    count = 4
    pose = map_pose(torch.as_tensor(source_poses(count, seed=1)), "smplh", "smplx")
    pose[:, 22] = torch.randn(count, 3, generator=generator) * 0.1       # some jaw
    betas = torch.randn(count, 10, generator=generator) * 0.5
    body = BodyModel(smplx)
    with torch.no_grad():
        vertices = body(pose, betas)[0]
    fitter = BodyFitter(smplx, mask_ids, FitSettings())
    noisy = pose + torch.randn(pose.shape, generator=generator) * 0.05
    # Half the batch starts near the truth, half from the mesh alone (init None).
    result = fit_batch(fitter, vertices[:, mask_ids], [noisy[0], None, noisy[2], None])
    for i in range(count):
        write_parameters(tmp_path / f"{i:06d}.pkl", "smplx", result.pose[i], result.betas[i])
    read = [pose_from_parameters(read_parameters(tmp_path / f"{i:06d}.pkl", "smplx"), "smplx")[:2]
            for i in range(count)]
    with torch.no_grad():
        refit = body(torch.stack([p for p, _ in read]), torch.stack([b for _, b in read]),
                     result.transl)[0]
    error_mm = (refit - vertices)[:, mask_ids].norm(dim=-1).mean(1) * 1000
    assert (result.v2v_mean_mm < 0.05).all(), result.v2v_mean_mm
    assert (error_mm < 0.05).all(), error_mm


@pytest.mark.skipif(not AMASS_SAMPLE.exists(), reason="needs ../shared/data/amass_sample_smplh.npz")
def test_real_amass_poses_transfer_below_bound(paths, tmp_path):
    """Default settings on SMPL-H meshes of real AMASS poses: every pose converges below
    BOUND_MM mean vertex error (measured on the kit: see the figures below)."""
    bound_mm = 5.0
    poses = source_poses(8, seed=2)
    ids = list(range(len(poses)))
    write_meshes(tmp_path / "meshes", paths, ids, poses)
    summary = transfer(options(paths, tmp_path / "meshes", tmp_path / "out",
                               fit=FitSettings(), poses_per_batch=8), progress=False)
    assert summary.done == len(ids)
    rows = read_error_rows(tmp_path / "out" / "errors.csv")
    errors = np.array([rows[i].v2v_mean_mm for i in ids])
    assert errors.max() < bound_mm, errors


# ----------------------------------------------------------------- the run


def test_reference_run_writes_the_contract(reference):
    for pose_id in POSE_IDS:
        path = parameter_path(reference, pose_id)
        with open(path, "rb") as handle:
            params = pickle.load(handle)                 # plain pickle, as the consumer does
        assert set(params) == set(SMPLX.parameter_shapes)
        for key, shape in SMPLX.parameter_shapes.items():
            assert params[key].shape == shape and params[key].dtype == torch.float32
            assert not params[key].requires_grad
    rows = read_error_rows(reference / "errors.csv")
    assert sorted(rows) == POSE_IDS
    assert all(row.iterations >= 1 and row.v2v_mean_mm <= row.v2v_max_mm for row in rows.values())


class Killed(BaseException):
    """Stands for the process dying: nothing after it runs, no clean-up code either."""


@pytest.mark.parametrize("writes_before_kill", [1, 5])
def test_killed_run_resumes_to_the_same_files(paths, meshes, reference, tmp_path, monkeypatch,
                                              writes_before_kill):
    """Killed in the middle of writing a batch's files (its CSV rows are already written),
    then started again: the outputs equal those of the uninterrupted run."""
    from smplh2smplx.stages import transfer as transfer_module
    written = []

    def write_then_die(path, kind, pose, betas, transl):
        if len(written) == writes_before_kill:
            raise Killed
        write_parameters(path, kind, pose, betas, transl)
        written.append(path)

    monkeypatch.setattr(transfer_module, "write_parameters", write_then_die)
    with pytest.raises(Killed):
        transfer(options(paths, meshes, tmp_path), progress=False)
    assert len(list(tmp_path.glob("*.pkl"))) == writes_before_kill
    monkeypatch.undo()
    summary = transfer(options(paths, meshes, tmp_path), progress=False)
    assert summary.skipped == writes_before_kill
    assert summary.done == len(POSE_IDS) - writes_before_kill
    assert_same_outputs(tmp_path, reference)


def test_rerun_skips_and_overwrite_refits(paths, meshes, reference, tmp_path):
    output = tmp_path / "out"
    shutil.copytree(reference, output)
    stamps = {path.name: path.stat().st_mtime_ns for path in output.glob("*.pkl")}
    summary = transfer(options(paths, meshes, output), progress=False)
    assert (summary.done, summary.skipped) == (0, len(POSE_IDS))
    assert stamps == {path.name: path.stat().st_mtime_ns for path in output.glob("*.pkl")}
    summary = transfer(options(paths, meshes, output, overwrite=True), progress=False)
    assert (summary.done, summary.skipped) == (len(POSE_IDS), 0)
    assert all(stamps[path.name] != path.stat().st_mtime_ns for path in output.glob("*.pkl"))
    assert_same_outputs(output, reference)


def test_two_shards_make_the_whole_set(paths, meshes, reference, tmp_path):
    """Shards of size BATCH into one folder: together the reference, no file twice."""
    counts = []
    for index in range(3):
        summary = transfer(options(paths, meshes, tmp_path, shard_size=BATCH, shard_index=index),
                           progress=False, log=lambda line: None)
        counts.append(summary.done)
    assert counts == [BATCH, len(POSE_IDS) - BATCH, 0]
    assert_same_outputs(tmp_path, reference)


def test_from_params_needs_no_meshes(paths, meshes, reference, tmp_path):
    params_only = tmp_path / "params"
    params_only.mkdir()
    shutil.copy(meshes / "source_params.npz", params_only)
    summary = transfer(options(paths, params_only, tmp_path / "out", from_params=True,
                               smplh_model=paths.smplh), progress=False)
    assert summary.done == len(POSE_IDS) and not summary.failures
    rows, expected = (read_error_rows(folder / "errors.csv")
                      for folder in (tmp_path / "out", reference))
    for pose_id in POSE_IDS:          # the meshes hold rounded coordinates: nearly the same fit
        assert abs(rows[pose_id].v2v_mean_mm - expected[pose_id].v2v_mean_mm) < 0.05


# ----------------------------------------------------------------- bad input


def cli(paths, mesh_dir, output_dir, *extra, **overrides):
    """run_transfer.py's arguments: every path as a flag (`overrides` replace them by flag
    name: smplx_model=... for --smplx-model), the fast fit as --exp-opts."""
    flags = {"mesh_dir": mesh_dir, "output_dir": output_dir, "smplx_model": paths.smplx,
             "deformation_transfer": paths.deftrafo, "mask": paths.mask}
    flags.update(overrides)
    return [*(item for key, value in flags.items()
              for item in (f"--{key.replace('_', '-')}", str(value))),
            "--exp-opts", f"fit.max_iterations={FAST.max_iterations}",
            f"fit.refine_iterations={FAST.refine_iterations}",
            f"fit.fit_vertices={FAST.fit_vertices}",
            "--device", "cpu", "--poses-per-batch", str(BATCH), *extra]


def test_bad_meshes_stop_the_run_or_fail_alone_with_keep_going(paths, meshes, tmp_path,
                                                             capsys):
    folder = tmp_path / "meshes"
    folder.mkdir()
    for pose_id in POSE_IDS[:3]:
        shutil.copy(meshes / f"{pose_id:06d}.obj", folder)
    good = meshes / f"{POSE_IDS[3]:06d}.obj"
    lines = good.read_text().splitlines(keepends=True)
    vertex_lines = [i for i, line in enumerate(lines) if line.startswith("v ")]
    (folder / "000101.obj").write_text("".join(lines[:vertex_lines[-1]] + lines[vertex_lines[-1] + 1:]))
    (folder / "000102.obj").write_bytes(b"\x00\xff garbage \x00" * 100)
    nan_lines = list(lines)
    nan_lines[vertex_lines[5]] = "v nan 0 0\n"
    (folder / "000103.obj").write_text("".join(nan_lines))
    (folder / "template.obj").write_text(good.read_text())
    output = tmp_path / "out"

    status = run_transfer.main(cli(paths, folder, output))
    printed = capsys.readouterr()
    error_lines = [line for line in printed.err.splitlines() if line.startswith("error:")]
    assert status == 2 and len(error_lines) == 1 and "--keep-going" in error_lines[0]
    assert any(name in error_lines[0] for name in ["000101.obj", "000102.obj", "000103.obj",
                                                   "template.obj"])

    status = run_transfer.main(cli(paths, folder, output, "--keep-going"))
    printed = capsys.readouterr()
    assert status == 1
    for name in ["000101.obj", "000102.obj", "000103.obj", "template.obj"]:
        assert name in printed.out + printed.err
    assert sorted(p.name for p in output.iterdir() if not p.name.startswith(".")) == sorted(
        [f"{pose_id:06d}.pkl" for pose_id in POSE_IDS[:3]] + ["errors.csv",
                                                              "result_settings.json"])
    assert sorted(read_error_rows(output / "errors.csv")) == POSE_IDS[:3]
    assert not [p for p in output.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("broken", ["deftrafo", "mask", "model", "smplh_as_smplx"])
def test_missing_or_wrong_files_stop_before_any_work(paths, meshes, tmp_path, capsys, broken):
    overrides = {"deftrafo": {"deformation_transfer": tmp_path / "nope_deftrafo.pkl"},
                 "mask": {"mask": tmp_path / "nope_mask.npy"},
                 "model": {"smplx_model": tmp_path / "nope_models"},
                 "smplh_as_smplx": {"smplx_model": paths.smplh}}[broken]
    named = str(next(iter(overrides.values())))
    output = tmp_path / "out"
    status = run_transfer.main(cli(paths, meshes, output, **overrides))
    printed = capsys.readouterr()
    assert status == 2
    assert named in printed.err and len(printed.err.strip().splitlines()) == 1
    assert not output.exists() or not list(output.glob("*.pkl"))


def test_command_line_error_is_one_line(paths, meshes, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "run_transfer.py"),
         *cli(paths, meshes, tmp_path / "out", mask=tmp_path / "absent.npy")],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:") and "absent.npy" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_official_engine_needs_a_clone(paths, meshes, tmp_path, capsys):
    status = run_transfer.main(cli(paths, meshes, tmp_path / "out", "--engine", "official"))
    printed = capsys.readouterr()
    assert status == 2 and "--smplx-repo" in printed.err
    assert len(printed.err.strip().splitlines()) == 1


def test_a_file_posed_as_written_with_stock_smplx_reproduces_errors_csv(paths, meshes, reference):
    """The .pkl holds the translation its error was computed with: the stock smplx package,
    given the file as it is, puts the mesh where errors.csv measured it (to 1e-3 mm)."""
    import smplx
    from smplh2smplx.formats.errors_csv import ERRORS_CSV
    from smplh2smplx.formats.mesh_folder import read_mesh_vertices

    model = smplx.create(str(paths.smplx), model_type="smplx", ext="npz", use_pca=False,
                         flat_hand_mean=True)
    deformation = load_deformation_transfer(paths.deftrafo, paths.mask)
    rows = read_error_rows(reference / ERRORS_CSV)
    for pose_id in POSE_IDS:
        params = pickle.loads((reference / f"{pose_id:06d}.pkl").read_bytes())
        with torch.no_grad():
            posed = model(**{key: value.reshape(1, -1) for key, value in params.items()})
        fitted = posed.vertices[0].double().numpy()[deformation.mask_ids]
        source = read_mesh_vertices(meshes / f"{pose_id:06d}.obj", SMPLH)
        target = deformation.apply(source.astype(np.float64))[deformation.mask_ids]
        error_mm = 1000.0 * np.linalg.norm(fitted - target, axis=1).mean()
        assert abs(error_mm - rows[pose_id].v2v_mean_mm) < 1e-3, pose_id
        assert np.abs(params["transl"].numpy()).max() > 0.0       # a real offset, not zero
