"""Every SMPL-family pair, both ways (issue 13): stage 2 from source meshes to target
parameter files, read back and posed by the stock smplx package, independently of our fitter.

The models and the six deformation transfers are the synthetic kit's (neutral), in the
official formats and file names.
"""
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import run_transfer
from smplh2smplx import family
from smplh2smplx.body.deformation import load_pair_transfer
from smplh2smplx.body.lbs import BodyModel
from smplh2smplx.body.shape import convert_betas, rest_vertices
from smplh2smplx.errors import InputError
from smplh2smplx.fit.fitter import FitSettings
from smplh2smplx.formats.body_models import load_body_model
from smplh2smplx.formats.deformation_files import OFFICIAL_TRANSFER_FILES
from smplh2smplx.formats.errors_csv import read_error_rows
from smplh2smplx.formats.meshes import write_obj
from smplh2smplx.formats.param_files import (build_parameters, parameter_path,
                                             pose_from_parameters, read_parameters,
                                             write_parameters)
from smplh2smplx.settings import TransferOptions
from smplh2smplx.stages.report import PoseMeshes, write_report
from smplh2smplx.stages.transfer import run_transfer as transfer_stage

REPO = Path(__file__).resolve().parents[1]
AMASS_SAMPLE = REPO.parent / "shared" / "data" / "amass_sample_smplh.npz"
KIND_NAMES = ("smpl", "smplh", "smplx")
DIRECTIONS = [(source, target) for source in KIND_NAMES for target in KIND_NAMES
              if source != target]


@pytest.fixture(scope="module")
def pairs(kit):
    """Model folders and transfer files of every kind and direction (the kit's)."""
    root = Path(kit.root)
    return SimpleNamespace(
        models={kind: root / "body_models" for kind in KIND_NAMES},
        transfers={name: root / "transfer" / file_name
                   for name, file_name in OFFICIAL_TRANSFER_FILES.items()},
        mask=root / "transfer" / "smplx_mask_ids.npy")


def amass_poses(count):
    """(count, 156) SMPL-H poses spread over the real AMASS sample, else small random ones."""
    if AMASS_SAMPLE.exists():
        with np.load(AMASS_SAMPLE) as data:
            poses = data["poses"]
        return poses[np.linspace(0, len(poses) - 1, count).astype(int)].astype(np.float32)
    return (np.random.default_rng(0).normal(size=(count, 156)) * 0.2).astype(np.float32)


def pair_options(pairs, source, target, mesh_dir, output_dir, fit=FitSettings(), **changes):
    name = f"{source}2{target}"
    return TransferOptions(
        mesh_dir=mesh_dir, output_dir=output_dir, **{f"{target}_model": pairs.models[target]},
        deformation_transfer=(None if family.same_topology(source, target)
                              else pairs.transfers[name]),
        mask=pairs.mask if target == "smplx" else None, source_model=source,
        target_model=target, poses_per_batch=8, device="cpu", fit=fit, **changes)


def write_source_meshes(pairs, source, folder, pose, betas):
    """The source model's meshes of (N, J, 3) poses and (N, 10) betas as <id>.obj; returns
    the (N, V, 3) vertices."""
    data = load_body_model(pairs.models[source], source)
    with torch.no_grad():
        vertices = BodyModel(data)(pose, betas)[0].numpy()
    folder.mkdir(parents=True, exist_ok=True)
    for pose_id, mesh in enumerate(vertices):
        write_obj(folder / f"{pose_id:06d}.obj", mesh, data.faces)
    return vertices


def stock_smplx_vertices(pairs, kind, params):
    """(N, V, 3) vertices of parameter dicts posed by the smplx package (flat hands, no PCA,
    the files' translation)."""
    import smplx
    cat = {key: torch.stack([p[key] for p in params]) for key in params[0]}
    count, num_betas = len(params), cat["betas"].shape[-1]
    layer = smplx.create(str(pairs.models[kind]), model_type=kind, num_betas=num_betas,
                         use_pca=False, flat_hand_mean=True, batch_size=count,
                         ext="npz" if kind == "smplx" else "pkl")
    values = {key: value.reshape(count, -1) for key, value in cat.items()}
    if kind == "smplx":
        values["expression"] = torch.zeros(count, layer.num_expression_coeffs)
    with torch.no_grad():
        return layer(**values).vertices.numpy()


def v2v_mm(fitted, targets):
    """(N,) mean vertex distance in mm."""
    return np.linalg.norm(fitted - targets, axis=2).mean(1) * 1000.0


def convert(pairs, source, target, folder, pose, betas):
    """Run stage 2 on the source meshes; returns (targets on the mask, stock-smplx vertices
    of the written files on the mask, fitter's errors)."""
    source_vertices = write_source_meshes(pairs, source, folder / "meshes", pose, betas)
    options = pair_options(pairs, source, target, folder / "meshes", folder / "out")
    summary = transfer_stage(options, progress=False)
    assert summary.done == len(pose) and not summary.failures
    params = [read_parameters(parameter_path(folder / "out", i), target) for i in range(len(pose))]
    transfer = load_pair_transfer(source, target, options.deformation_transfer, options.mask)
    mask = transfer.mask_ids
    targets = transfer.apply(source_vertices)[:, mask]
    posed = stock_smplx_vertices(pairs, target, params)[:, mask]
    rows = read_error_rows(folder / "out" / "errors.csv")
    return targets, posed, params, np.array([rows[i].v2v_mean_mm for i in range(len(pose))])


# ----------------------------------------------------------------- every direction

# Bounds on the stock-smplx error of the written files, per direction: about 1.4 times the
# figures measured on the kit (mean vertex error of 3 real AMASS poses, default settings):
# smpl2smplh 0.00, smplh2smpl 4.5 (SMPL has no fingers), smpl2smplx 3.4, smplh2smplx 3.4,
# smplx2smplh 3.8, smplx2smpl 7.2 (no fingers).
BOUNDS_MM = {("smpl", "smplh"): 1.0, ("smplh", "smpl"): 6.5,
             ("smplh", "smplx"): 5.0, ("smpl", "smplx"): 5.0,
             ("smplx", "smplh"): 5.5, ("smplx", "smpl"): 10.0}


@pytest.mark.parametrize("source, target", DIRECTIONS, ids=[f"{s}2{t}" for s, t in DIRECTIONS])
def test_every_direction_read_back_by_stock_smplx(pairs, tmp_path, source, target):
    """Real AMASS poses (mapped onto the source's joints) and a random source shape: the
    target files, posed as written by the smplx package, match the transferred source
    meshes, errors.csv says by how much, and the report draws the pair."""
    count = 3
    pose = family.map_pose(amass_poses(count), "smplh", source)
    betas = torch.as_tensor(np.random.default_rng(1).normal(size=(count, 10)) * 0.5,
                            dtype=torch.float32)
    targets, posed, params, fit_errors = convert(pairs, source, target, tmp_path, pose, betas)
    for p in params:                        # the target's keys, float32 CPU tensors
        assert set(p) == set(family.KINDS[target].parameter_shapes)
        assert all(value.dtype == torch.float32 and value.device.type == "cpu"
                   for value in p.values())
    errors = v2v_mm(posed, targets)
    print(f"{source}2{target}: stock smplx v2v_mm {np.round(errors, 3)}, fitter "
          f"{np.round(fit_errors, 3)}")
    assert (errors < BOUNDS_MM[source, target]).all(), errors
    # The fitter's own figures are the independent ones: the files hold their translation.
    assert np.allclose(errors, fit_errors, atol=1e-3), (errors, fit_errors)

    options = pair_options(pairs, source, target, tmp_path / "meshes", tmp_path / "out")
    index = write_report(options, tmp_path / "report", num_poses=1, progress=False)
    text = index.read_text()
    labels = family.KINDS[source].label, family.KINDS[target].label
    assert f"<h1>{labels[0]} to {labels[1]} conversion report</h1>" in text
    worst = int(np.argmax(fit_errors))
    view = PoseMeshes(options).pose_view(worst)        # what the pictures show
    assert abs(view.mean_error_mm - fit_errors[worst]) < 1e-3
    assert (tmp_path / "report" / f"pose_{worst:06d}_overlay.png").is_file()


def test_smpl_to_smplh_and_back_below_1mm(pairs, tmp_path):
    """SMPL -> SMPL-H -> SMPL: both steps below 1 mm (one mesh, SMPL's hand is SMPL-H's with
    still fingers), and the round trip returns the SMPL pose's mesh."""
    count = 3
    pose = family.map_pose(amass_poses(count), "smplh", "smpl")
    betas = torch.as_tensor(np.random.default_rng(2).normal(size=(count, 10)) * 0.5,
                            dtype=torch.float32)
    targets, posed, params, _ = convert(pairs, "smpl", "smplh", tmp_path / "there", pose, betas)
    assert (v2v_mm(posed, targets) < 1.0).all()
    back_pose = torch.stack([pose_from_parameters(p, "smplh")[0] for p in params])
    back_betas = torch.stack([pose_from_parameters(p, "smplh")[1] for p in params])
    back_targets, back_posed, _, _ = convert(pairs, "smplh", "smpl", tmp_path / "back",
                                             back_pose, back_betas)
    assert (v2v_mm(back_posed, back_targets) < 1.0).all()
    assert (v2v_mm(back_posed, targets) < 1.0).all()


@pytest.mark.parametrize("target", KIND_NAMES)
def test_from_params_converts_to_every_target(kit, pairs, tmp_path, target):
    """--from-params poses SMPL-H from source_params.npz (no meshes) and converts it to any
    target; the files, posed as written by the smplx package, match the transferred SMPL-H
    meshes as errors.csv says."""
    count = 2
    poses = amass_poses(count)
    (tmp_path / "meshes").mkdir()
    np.savez(tmp_path / "meshes" / "source_params.npz", pose_ids=np.arange(count),
             poses=poses)
    options = replace(pair_options(pairs, "smplh", target, tmp_path / "meshes",
                                   tmp_path / "out"), from_params=True,
                      smplh_model=Path(kit.smplh_npz))
    summary = transfer_stage(options, progress=False)
    assert summary.done == count and not summary.failures
    params = [read_parameters(parameter_path(tmp_path / "out", i), target) for i in range(count)]
    smplh = BodyModel(load_body_model(kit.smplh_npz, "smplh"))
    with torch.no_grad():
        sources = smplh(torch.as_tensor(poses).view(count, -1, 3))[0].double().numpy()
    transfer = load_pair_transfer("smplh", target, options.deformation_transfer, options.mask)
    targets = transfer.apply(sources)[:, transfer.mask_ids]
    errors = v2v_mm(stock_smplx_vertices(pairs, target, params)[:, transfer.mask_ids], targets)
    rows = read_error_rows(tmp_path / "out" / "errors.csv")
    assert np.allclose(errors, [rows[i].v2v_mean_mm for i in range(count)], atol=1e-3)
    assert (errors < BOUNDS_MM.get(("smplh", target), 1.0)).all(), errors


def test_source_mesh_of_the_wrong_model_fails_that_pose(pairs, tmp_path):
    """An SMPL-X source folder holding an SMPL-H mesh: that pose fails, naming its file and
    the vertex counts; nothing is written for it."""
    pose = family.map_pose(amass_poses(1), "smplh", "smplh")
    write_source_meshes(pairs, "smplh", tmp_path / "meshes", pose, None)
    options = pair_options(pairs, "smplx", "smpl", tmp_path / "meshes", tmp_path / "out",
                           keep_going=True)
    summary = transfer_stage(options, progress=False)
    assert summary.done == 0 and len(summary.failures) == 1
    message = summary.failures[0][1]          # the SMPL-X counts: 10475 vertices, 20908 faces
    assert "000000.obj" in message and ("10475" in message or "20908" in message)
    assert not parameter_path(tmp_path / "out", 0).exists()


def test_pair_without_its_transfer_is_refused(pairs, tmp_path):
    """A pair of two meshes needs its deformation transfer, and one of another pair (of other
    vertex counts) is refused naming the file."""
    with pytest.raises(InputError, match="DEFTRAFO_PATH .or --deformation-transfer"):
        TransferOptions(mesh_dir=tmp_path, output_dir=tmp_path,
                        smpl_model=pairs.models["smpl"], source_model="smplx",
                        target_model="smpl").check()
    renamed = tmp_path / "my_transfer.pkl"          # no official name: its shape is checked
    renamed.write_bytes(pairs.transfers["smplh2smplx"].read_bytes())
    with pytest.raises(InputError, match="my_transfer.pkl.*shape"):
        load_pair_transfer("smplx", "smpl", renamed)


def test_each_pair_takes_its_own_transfer_from_the_official_folder(pairs):
    """The folder of the official files gives every pair the file named for it, in stage 2,
    the motions and the API alike (they all read it through load_pair_transfer); a file
    named for another pair is refused, where the sizes cannot tell (SMPL's and SMPL-H's
    transfers both map 6890 vertices) as where they can."""
    import smplh2smplx
    folder = pairs.transfers["smplh2smplx"].parent
    for name, path in pairs.transfers.items():
        source, target = name.split("2")
        if family.same_topology(source, target):
            continue
        from_folder = load_pair_transfer(source, target, folder)
        from_file = load_pair_transfer(source, target, path)
        assert from_folder.deftrafo_path == path
        assert (from_folder.matrix != from_file.matrix).nnz == 0
    for given in ("smplh2smplx", "smplx2smpl"):
        with pytest.raises(InputError, match=f"{given}_deftrafo_setup.pkl: is the {given} "
                           "transfer; SMPL to SMPL-X needs smpl2smplx_deftrafo_setup.pkl"):
            load_pair_transfer("smpl", "smplx", pairs.transfers[given], pairs.mask)
    converter = smplh2smplx.Converter("smpl", "smplx", target_model=pairs.models["smplx"],
                                      deformation_transfer=folder, mask=pairs.mask)
    assert converter.deformation.deftrafo_path == pairs.transfers["smpl2smplx"]


# ----------------------------------------------------------------- shape only

@pytest.mark.parametrize("source, target", DIRECTIONS, ids=[f"{s}2{t}" for s, t in DIRECTIONS])
def test_shape_only_betas_match_the_rest_mesh(pairs, source, target):
    """The converted betas, posed in the rest pose by the stock smplx package, match the
    transferred source rest mesh better than any other betas: the least-squares optimum
    (checked by its normal equations) and, for SMPL <-> SMPL-H, the same mesh."""
    source_data = load_body_model(pairs.models[source], source)
    target_data = load_body_model(pairs.models[target], target)
    transfer = load_pair_transfer(source, target, pairs.transfers[f"{source}2{target}"],
                                  pairs.mask if target == "smplx" else None)
    betas = np.random.default_rng(3).normal(size=(2, 10))
    result = convert_betas(source_data, betas, target_data, transfer, num_betas=10)
    params = [_rest_params(target, b) for b in result.betas]
    posed = stock_smplx_vertices(pairs, target, params)[:, transfer.mask_ids]
    wanted = transfer.apply(rest_vertices(source_data, betas))[:, transfer.mask_ids]
    residual = posed + result.transl[:, None] - wanted                       # (B, M, 3)
    errors = np.linalg.norm(residual, axis=2).mean(1) * 1000
    assert np.allclose(errors, result.v2v_mean_mm, atol=1e-3)
    # Normal equations: the residual is orthogonal to every shape direction and translation.
    directions = target_data.shapedirs[transfer.mask_ids, :, :10]
    assert np.abs(np.einsum("bmc,mcs->bs", residual, directions)).max() < 1e-4
    assert np.abs(residual.sum(1)).max() < 1e-3
    if family.same_topology(source, target):
        assert (result.v2v_mean_mm < 1e-3).all() and np.allclose(result.betas, betas, atol=1e-4)


def _rest_params(kind, betas):
    """A `kind` parameter dict of the rest pose with these betas."""
    return build_parameters(kind, torch.zeros(family.KINDS[kind].num_joints, 3),
                            torch.as_tensor(betas))


def test_shape_only_command_prints_the_betas(pairs, capsys):
    """run_transfer.py --mode shape prints the target betas of --betas."""
    argv = ["--mode", "shape", "--betas", "0.5,-1,0.25", "--source-model", "smplh",
            "--target-model", "smpl", "--smplh-model", str(pairs.models["smplh"]),
            "--smpl-model", str(pairs.models["smpl"])]
    assert run_transfer.main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    betas = np.array(printed[0].split(": ")[1].split(","), dtype=float)
    assert printed[0].startswith("smpl betas: ") and betas.shape == (10,)
    assert np.allclose(betas, [0.5, -1, 0.25] + [0] * 7, atol=1e-4)
    assert run_transfer.main(["--shape-only", "--source-model", "smplh"]) == 2  # no --betas


# ----------------------------------------------------------------- the official engine

@pytest.fixture(scope="module")
def clone():
    """The smplx clone named by SMPLX_REPO (with torchtrustncg and loguru); else skip."""
    import importlib.util
    import os
    repo = os.environ.get("SMPLX_REPO")
    if not repo:
        pytest.skip("the official transfer_model: set SMPLX_REPO to a clone of "
                    "https://github.com/vchoutas/smplx to run it")
    for module in ("torchtrustncg", "loguru"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"the official transfer_model needs {module}, not installed")
    return Path(repo)


@pytest.mark.parametrize("source, target", [("smplx", "smpl"), ("smpl", "smplh")],
                         ids=["smplx2smpl", "smpl2smplh"])
def test_official_engine_runs_other_pairs(clone, pairs, tmp_path, source, target):
    """--engine official for a pair other than SMPL-H -> SMPL-X (3 iterations per stage):
    the target's parameter files, whose errors it reports as our v2v_mm."""
    from patches.official import run_official
    from smplh2smplx.settings import OfficialSettings
    pose = family.map_pose(amass_poses(2), "smplh", source)
    write_source_meshes(pairs, source, tmp_path / "meshes", pose, None)
    options = pair_options(pairs, source, target, tmp_path / "meshes", tmp_path / "out",
                           official=OfficialSettings(max_iterations=3, meshes_per_batch=2))
    results = run_official(options, smplx_repo=clone, device="cpu", log=None)
    assert [r.pose_id for r in results] == [0, 1]
    assert all(r.error is None and np.isfinite(r.v2v_mean_mm) for r in results)
    for pose_id in (0, 1):
        params = read_parameters(parameter_path(tmp_path / "out", pose_id), target)
        assert set(params) == set(family.KINDS[target].parameter_shapes)


def test_source_parameter_files_start_the_fit(pairs, tmp_path, monkeypatch):
    """A parameter file of the source's format beside a mesh (as an earlier run with that
    model as target writes it) starts that pose's fit from its pose mapped onto the target's
    joints; a pose without one starts from its mesh; a malformed one fails its pose."""
    import smplh2smplx.stages.transfer as stage
    pose = family.map_pose(amass_poses(3), "smplh", "smplx")
    write_source_meshes(pairs, "smplx", tmp_path / "meshes", pose, None)
    write_parameters(tmp_path / "meshes" / "000000.pkl", "smplx", pose[0], torch.zeros(10))
    (tmp_path / "meshes" / "000002.pkl").write_bytes(b"not a pickle")
    starts = []

    def spy(fitter, targets, init_poses):
        starts.extend(init_poses)
        return fit_batch(fitter, targets, init_poses)

    from smplh2smplx.fit.fitter import fit_batch
    monkeypatch.setattr(stage, "fit_batch", spy)
    options = pair_options(pairs, "smplx", "smpl", tmp_path / "meshes", tmp_path / "out",
                           fit=FitSettings(max_iterations=3), keep_going=True)
    summary = transfer_stage(options, progress=False)
    assert summary.done == 2 and len(summary.failures) == 1
    assert "000002.pkl" in summary.failures[0][1]
    assert len(starts) == 2 and starts[1] is None
    torch.testing.assert_close(starts[0], family.map_pose(pose[:1], "smplx", "smpl")[0])
