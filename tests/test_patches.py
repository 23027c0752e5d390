"""patches/: the official transfer_model run from an unedited clone.

The parts that need no clone always run. The end-to-end test needs a clone of
github.com/vchoutas/smplx named by the environment variable SMPLX_REPO, plus torchtrustncg
and loguru installed; it runs on the synthetic kit (fixture `kit`) once that exists, and
on a small stand-in written here until then.
"""
import importlib.util
import os
import pickle
import sys
from collections import namedtuple
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import roma
import scipy.sparse
import torch
from omegaconf import OmegaConf

from patches import config as patch_config
from patches import dataset, loader, runtime, writer
from smplh2smplx import family
from smplh2smplx.errors import InputError
from smplh2smplx.formats import param_files
from smplh2smplx.formats.param_files import read_parameters
from smplh2smplx.settings import EXPERIMENT_CONFIG, OfficialSettings, TransferOptions

PARAMETER_SHAPES = family.SMPLX.parameter_shapes

SMPLX_VERTICES, SMPLH_VERTICES = 10475, 6890
# ----------------------------------------------------------------- no clone needed

def touch_meshes(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")


def test_shard_skips_converted_meshes_after_cutting(tmp_path):
    meshes = tmp_path / "meshes"
    touch_meshes(meshes, [f"{i:06d}.obj" for i in (5, 1, 9, 3, 7)])
    def is_done(pose_id):
        return pose_id == 3

    shard = dataset.MeshShard(meshes, is_done, shard_size=2, shard_index=1)
    # sorted: 1 3 | 5 7 | 9 -> shard 1 is 5, 7 whatever is converted
    assert [pose_id for pose_id, _ in shard.items] == [5, 7]
    first = dataset.MeshShard(meshes, is_done, shard_size=2, shard_index=0)
    assert [pose_id for pose_id, _ in first.items] == [1] and first.skipped == 1
    again = dataset.MeshShard(meshes, None, shard_size=2, shard_index=0)
    assert [pose_id for pose_id, _ in again.items] == [1, 3]
    item = first[0]
    assert item["pose_id"] == 1 and item["vertices"].dtype == np.float32
    assert item["vertices"].shape == (3, 3) and item["faces"].tolist() == [[0, 1, 2]]


def test_mesh_names_must_be_unique_pose_ids(tmp_path):
    touch_meshes(tmp_path / "a", ["000001.obj", "pose.obj"])
    with pytest.raises(InputError, match="pose.obj"):
        dataset.MeshShard(tmp_path / "a")
    touch_meshes(tmp_path / "b", ["000001.obj", "000001.ply"])
    with pytest.raises(InputError, match="000001.ply.*repeats another file's pose id"):
        dataset.MeshShard(tmp_path / "b")
    with pytest.raises(InputError, match="not found"):
        dataset.MeshShard(tmp_path / "missing")


def test_mesh_vertex_order_is_kept(tmp_path):
    """Duplicate and unreferenced vertices survive reading (no merging, no reordering)."""
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 1, 0], [5, 5, 5]], np.float32)
    lines = [f"v {x} {y} {z}" for x, y, z in vertices] + ["f 3 2 4", "f 1 2 4"]
    path = tmp_path / "000001.obj"
    path.write_text("\n".join(lines) + "\n")
    read, faces = dataset.read_mesh(path)
    np.testing.assert_array_equal(read, vertices)
    assert faces.tolist() == [[2, 1, 3], [0, 1, 3]]


def random_pose(batch_size, seed=0):
    """(B, 55, 3) axis-angle, angles below pi so the axis-angle is unique."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, 55, 3, generator=generator, dtype=torch.float64) * 0.6


def official_style_dict(pose, betas, as_rotmats):
    """A dict shaped like run_fitting's result for a (B, 55, 3) pose."""
    batch_size = len(pose)
    layout = {"global_orient": slice(0, 1), "body_pose": slice(1, 22), "jaw_pose": slice(22, 23),
              "leye_pose": slice(23, 24), "reye_pose": slice(24, 25),
              "left_hand_pose": slice(25, 40), "right_hand_pose": slice(40, 55)}
    var_dict = {"betas": betas.clone().requires_grad_(True),
                "transl": torch.zeros(batch_size, 3), "expression": torch.zeros(batch_size, 10),
                "vertices": torch.zeros(batch_size, 7, 3), "faces": np.zeros((2, 3), np.int64)}
    for key, joints in layout.items():
        part = pose[:, joints].float()
        if as_rotmats:
            part = roma.rotvec_to_rotmat(part)
        var_dict[key] = part.requires_grad_(True) * 1.0   # carries autograd history
    return var_dict


@pytest.mark.parametrize("as_rotmats", [False, True], ids=["axis-angle", "rotation matrices"])
def test_official_dict_becomes_one_contract_dict_per_pose(as_rotmats):
    pose, betas = random_pose(3), torch.randn(3, 10, dtype=torch.float64)
    per_pose = writer.contract_params(official_style_dict(pose, betas, as_rotmats))
    assert len(per_pose) == 3
    for index, params in enumerate(per_pose):
        assert list(params) == list(PARAMETER_SHAPES)
        for key, shape in PARAMETER_SHAPES.items():
            value = params[key]
            assert value.shape == shape and value.dtype == torch.float32
            assert value.device.type == "cpu" and not value.requires_grad
        full = torch.cat([params[k].reshape(-1, 3) for k in
                          ("global_orient", "body_pose", "jaw_pose", "leye_pose", "reye_pose",
                           "left_hand_pose", "right_hand_pose")])
        torch.testing.assert_close(full.double(), pose[index], atol=2e-6, rtol=0)
        torch.testing.assert_close(params["betas"][0].double(), betas[index], atol=1e-6, rtol=0)


def test_flat_axis_angle_layout_is_read_too():
    pose = random_pose(2)
    var_dict = official_style_dict(pose, torch.zeros(2, 10), as_rotmats=False)
    var_dict["body_pose"] = var_dict["body_pose"].reshape(2, 63)
    params = writer.contract_params(var_dict)
    torch.testing.assert_close(params[1]["body_pose"].double(), pose[1, 1:22], atol=1e-6, rtol=0)


def test_wrong_pose_shape_is_refused():
    var_dict = official_style_dict(random_pose(2), torch.zeros(2, 10), as_rotmats=False)
    var_dict["left_hand_pose"] = torch.zeros(2, 12)
    with pytest.raises(ValueError, match="left_hand_pose"):
        writer.contract_params(var_dict)


def test_written_file_is_the_contract(tmp_path):
    params = writer.contract_params(
        official_style_dict(random_pose(1), torch.zeros(1, 10), as_rotmats=True))[0]
    path = tmp_path / "out" / "000042.pkl"
    writer.write_params(path, params)
    loaded = read_parameters(path, "smplx")
    for key in PARAMETER_SHAPES:
        torch.testing.assert_close(loaded[key], params[key])
    assert sorted(p.name for p in path.parent.iterdir()) == ["000042.pkl"]


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    params = writer.contract_params(
        official_style_dict(random_pose(1), torch.zeros(1, 10), as_rotmats=False))[0]

    def dump_half_then_fail(obj, handle, protocol=None):
        handle.write(b"\x80\x05partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(param_files.pickle, "dump", dump_half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        writer.write_params(tmp_path / "000001.pkl", params)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="keys"):
        writer.write_params(tmp_path / "000002.pkl", {"body_pose": params["body_pose"]})
    assert list(tmp_path.iterdir()) == []


def test_model_output_of_any_smplx_version_becomes_a_dict():
    Output = namedtuple("Output", ["vertices", "transl"])

    @dataclass
    class DataclassOutput:
        vertices: object = None
        transl: object = None

    for output in (Output(1, 2), DataclassOutput(1, 2), {"vertices": 1, "transl": 2}):
        assert runtime.model_output_to_dict(output) == {"vertices": 1, "transl": 2}
    with pytest.raises(TypeError):
        runtime.model_output_to_dict((1, 2))

    class Model(torch.nn.Module):
        def forward(self, x):
            return Output(x, x + 1)

    model = Model()
    runtime.output_as_dict(model)
    assert set(model(torch.zeros(1))) == {"vertices", "transl"}


def test_steps_are_counted_per_stage_and_gradients_dropped():
    class Optimizer:
        def step(self, closure):
            return closure()

    fitting = SimpleNamespace(build_optimizer=lambda params, cfg: {"optimizer": Optimizer()})
    modules = SimpleNamespace(fitting=fitting)
    original = fitting.build_optimizer
    variable = torch.zeros(3, requires_grad=True)
    with runtime.observed_fitting(modules) as counts:
        for steps in (3, 5):
            optimizer = fitting.build_optimizer(iter([variable]), {})["optimizer"]
            for _ in range(steps):
                optimizer.step(lambda: 0.0)
        # what the official closures do: a gradient whose graph leads back to the variable
        grad, = torch.autograd.grad((variable ** 2).sum(), [variable], create_graph=True)
        variable.grad = grad
    assert counts.per_stage == [3, 5] and counts.total == 8
    assert counts.all_stopped_before(6) and not counts.all_stopped_before(5)
    assert fitting.build_optimizer is original and variable.grad is None


def test_quiet_official_restores_progress_bars():
    modules = SimpleNamespace(fitting=SimpleNamespace(tqdm="bar"),
                              minimize=SimpleNamespace(tqdm="bar"))
    with runtime.quiet_official(modules):
        assert modules.fitting.tqdm(range(2)).disable
        assert modules.minimize.tqdm(range(2)).disable
    assert modules.fitting.tqdm == modules.minimize.tqdm == "bar"
    with runtime.quiet_official(modules, verbose=True):
        assert modules.fitting.tqdm == "bar"


def test_result_gives_the_error_table_row():
    from patches.official import OfficialResult
    fitted = OfficialResult(5, 2.0, 7.5, 30.0, 7.4, 200, False)
    row = fitted.error_row(flag_threshold_mm=7.0)
    assert (row.pose_id, row.v2v_mean_mm, row.v2v_max_mm, row.iterations) == (5, 7.5, 30.0, 200)
    assert row.flagged and not row.converged
    assert not fitted.error_row(flag_threshold_mm=15.0).flagged
    failed = OfficialResult(6, 1.0, float("nan"), float("nan"), float("nan"), 3, False, "boom")
    assert failed.error_row(flag_threshold_mm=15.0) is None


def test_dataclass_instance_defaults_become_factories():
    source = (
        "from dataclasses import dataclass\n"
        "from typing import Tuple\n"
        "@dataclass\n"
        "class Inner:\n"
        "    x: int = 1\n"
        "shared = {'a': 1}\n"
        "@dataclass\n"
        "class Outer:\n"
        "    inner: Inner = Inner()\n"
        "    table: dict = shared\n"
        "    size: Tuple[float] = (90,)\n"
        "    name: str = 'n'\n"
        "class Plain:\n"
        "    inner = Inner()\n"
    )
    namespace = {}
    exec(loader.defaults_to_factories(source), namespace)
    outer, other = namespace["Outer"](), namespace["Outer"]()
    assert outer.inner == namespace["Inner"](1) and outer.inner is not other.inner
    assert outer.table == {"a": 1} and outer.size == (90,) and outer.name == "n"
    assert isinstance(namespace["Plain"].inner, namespace["Inner"])


def test_stubs_lent_only_for_missing_modules():
    stubs = {"patches_test_missing": {"utility": ("Vector3dVector",)},
             "patches_test_missing_pkg": {}, "patches_test_missing_pkg.mesh": {"Mesh": None},
             "json": {"nothing": None}}
    with loader.stub_missing_modules(stubs) as lent:
        assert sorted(lent) == ["patches_test_missing", "patches_test_missing_pkg",
                                "patches_test_missing_pkg.mesh"]
        from patches_test_missing_pkg.mesh import Mesh
        stub = sys.modules["patches_test_missing"]
        with pytest.raises(RuntimeError, match="not installed"):
            stub.utility.Vector3dVector([0, 0, 0])
        with pytest.raises(RuntimeError, match="not installed"):
            Mesh()
        assert not hasattr(sys.modules["json"], "nothing")
    assert "patches_test_missing" not in sys.modules
    assert "patches_test_missing_pkg.mesh" not in sys.modules


FAKE_CLONE = {
    "__init__.py": "",
    "config/__init__.py": "",
    "config/defaults.py": (
        "from dataclasses import dataclass\n"
        "from omegaconf import OmegaConf\n"
        "@dataclass\n"
        "class Inner:\n"
        "    x: int = 1\n"
        "@dataclass\n"
        "class Config:\n"
        "    inner: Inner = Inner()\n"
        "conf = OmegaConf.structured(Config)\n"),
    "data/__init__.py": "from psbody.mesh import Mesh\n",
    "utils/__init__.py": "import open3d as o3d\nVector3d = o3d.utility.Vector3dVector\n",
    "optimizers/__init__.py": "",
    "optimizers/minimize.py": "from transfer_model.utils import Vector3d\n",
    "transfer_model.py": ("from .optimizers import minimize\n"
                          "def run_fitting():\n"
                          "    return __file__\n"),
}


def write_fake_clone(root, files=FAKE_CLONE):
    """A clone-shaped folder whose transfer_model has the official import-time problems."""
    for name, text in files.items():
        path = root / "transfer_model" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def fake_clone(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "require_official_dependencies", lambda: None)
    yield write_fake_clone(tmp_path / "smplx")
    loader._forget_transfer_model()


def test_clone_imports_unedited_with_its_problems_patched(fake_clone, tmp_path):
    before = sorted(fake_clone.rglob("*"))
    modules = loader.load_transfer_model(fake_clone)
    assert modules.defaults.conf.inner.x == 1
    fitted_file = Path(modules.fitting.run_fitting())
    assert fitted_file == fake_clone / "transfer_model" / "transfer_model.py"
    assert sorted(fake_clone.rglob("*")) == before            # no __pycache__, no edits
    for name in ("open3d", "psbody.mesh"):
        if not loader.is_installed(name):
            assert name not in sys.modules                    # the stub was only lent
    again = loader.load_transfer_model(fake_clone)
    assert again.fitting is modules.fitting                  # imported once per clone
    other = loader.load_transfer_model(write_fake_clone(tmp_path / "other"))
    assert other.fitting is not modules.fitting
    assert Path(other.fitting.__file__).is_relative_to(tmp_path / "other")


def test_clone_needing_an_uninstalled_module_says_so(fake_clone):
    (fake_clone / "transfer_model" / "utils" / "__init__.py").write_text(
        "import patches_test_not_installed\n")
    with pytest.raises(InputError, match="pip install patches_test_not_installed"):
        loader.load_transfer_model(fake_clone)
    assert "transfer_model" not in sys.modules


def test_missing_torchtrustncg_says_how_to_install(monkeypatch):
    real = loader.is_installed
    monkeypatch.setattr(loader, "is_installed", lambda name: name != "torchtrustncg"
                        and real(name))
    with pytest.raises(InputError, match="pip install --no-build-isolation "
                                         "git\\+https://github.com/vchoutas/torch-trust-ncg"):
        loader.require_official_dependencies()


def test_clone_path_is_checked(tmp_path):
    with pytest.raises(InputError, match="--smplx-repo"):
        loader.check_clone(None)
    with pytest.raises(InputError, match="not a clone"):
        loader.check_clone(tmp_path)


def test_official_config_is_translated_from_our_settings(tmp_path):
    """The official schema's entries come from TransferOptions, under the official names,
    merged into the official defaults (a stand-in of its structured config: no clone)."""
    @dataclass
    class Optim:
        type: str = "adam"
        maxiters: int = 100
        gtol: float = 1e-8

    @dataclass
    class Betas:
        num: int = 16

    @dataclass
    class Kind:
        betas: Betas = field(default_factory=Betas)

    @dataclass
    class BodyModel:
        model_type: str = "smplx"
        gender: str = "neutral"
        folder: str = "models"
        use_face_contour: bool = False
        smpl: Kind = field(default_factory=Kind)
        smplh: Kind = field(default_factory=Kind)
        smplx: Kind = field(default_factory=Kind)

    @dataclass
    class MeshFolder:
        data_folder: str = "meshes"

    @dataclass
    class Datasets:
        mesh_folder: MeshFolder = field(default_factory=MeshFolder)

    @dataclass
    class EdgeFitting:
        per_part: bool = True

    @dataclass
    class Defaults:
        datasets: Datasets = field(default_factory=Datasets)
        output_folder: str = "output"
        deformation_transfer_path: str = ""
        mask_ids_fname: str = ""
        interactive: bool = True
        summary_steps: int = 5
        batch_size: int = 1
        optim: Optim = field(default_factory=Optim)
        edge_fitting: EdgeFitting = field(default_factory=EdgeFitting)
        body_model: BodyModel = field(default_factory=BodyModel)

    defaults = OmegaConf.structured(Defaults)
    options = TransferOptions(
        mesh_dir=tmp_path / "m", output_dir=tmp_path / "o", smpl_model=tmp_path / "smpl",
        smplx_model=tmp_path / "smplx", deformation_transfer=tmp_path / "d.pkl",
        mask=tmp_path / "mask.npy", source_model="smplx", target_model="smpl", gender="male",
        shard_size=100, shard_index=3, overwrite=True,
        official=OfficialSettings(max_iterations=7, meshes_per_batch=2, per_part_edges=True))
    merged = patch_config.official_config(options, defaults)
    assert merged.datasets.mesh_folder.data_folder == str(tmp_path / "m")
    assert merged.output_folder == str(tmp_path / "o")
    assert merged.deformation_transfer_path == str(tmp_path / "d.pkl")
    assert merged.mask_ids_fname == str(tmp_path / "mask.npy")
    assert merged.body_model.folder == str(tmp_path / "smpl")       # the target's model
    assert (merged.body_model.model_type, merged.body_model.gender) == ("smpl", "male")
    assert merged.body_model.smpl.betas.num == options.fit.num_betas == 10
    assert merged.body_model.smplx.betas.num == 16                  # other kinds: official
    assert merged.body_model.use_face_contour is True
    assert (merged.optim.type, merged.optim.maxiters, merged.optim.gtol) == (
        "trust-ncg", 7, 1e-6)
    assert merged.batch_size == 2 and merged.edge_fitting.per_part is True
    assert merged.summary_steps == 5 and merged.interactive is False
    assert defaults.optim.maxiters == 100                            # defaults untouched
    assert patch_config.official_config(options, defaults, verbose=True).interactive is True
    # A value the official schema's type refuses is named.
    with pytest.raises(InputError, match="official transfer_model schema"):
        patch_config.official_config(replace(options, official=OfficialSettings(
            optimizer=["not", "text"])), defaults)


# ----------------------------------------------------------------- end to end, needs a clone

def write_obj(path, vertices, faces):
    lines = [f"v {x:.8f} {y:.8f} {z:.8f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def write_standin_kit(root, seed=0):
    """A small body in the official SMPL-X format, an exact deformation transfer and a mask.

    Not a human body: joints on a random tree with SMPL-X's parents, vertices scattered
    around them. SMPL-X vertices from 6890 on repeat the first ones (template, skinning,
    blend shapes), so the deformation transfer (SMPL-X vertex i <- SMPL-H vertex i mod 6890)
    of the first 6890 vertices of a posed SMPL-X mesh is that mesh itself: the fit's
    optimum is exact. Returns the paths and a function posing SMPL-H meshes.
    """
    rng = np.random.default_rng(seed)
    parents = family.parents("smplx")
    joints = np.zeros((55, 3))
    for joint in range(1, 55):
        joints[joint] = joints[parents[joint]] + rng.normal(0.0, 0.1, 3)
    source = np.r_[np.arange(SMPLH_VERTICES), np.arange(SMPLX_VERTICES - SMPLH_VERTICES)]
    owner = (np.arange(SMPLH_VERTICES) % 55)[source]
    template = (joints[np.arange(SMPLH_VERTICES) % 55]
                + rng.normal(0.0, 0.04, (SMPLH_VERTICES, 3)))[source]
    weights = np.zeros((SMPLX_VERTICES, 55))
    weights[np.arange(SMPLX_VERTICES), owner] += 0.75
    weights[np.arange(SMPLX_VERTICES), np.maximum(parents[owner], 0)] += 0.25
    regressor = np.zeros((55, SMPLX_VERTICES))
    first = np.arange(SMPLH_VERTICES)
    regressor[owner[first], first] = 1.0
    regressor /= regressor.sum(1, keepdims=True)
    members = [np.flatnonzero(owner == joint) for joint in range(55)]
    faces = np.stack([rng.choice(members[joint], 3, replace=False)
                      for joint in owner[rng.integers(0, SMPLX_VERTICES, 20908)]])
    shapedirs = rng.normal(0.0, 0.01, (SMPLH_VERTICES, 3, 20))[source]
    num_faces = len(faces)
    models = root / "body_models" / "smplx"
    models.mkdir(parents=True)
    np.savez(models / "SMPLX_NEUTRAL.npz", v_template=template, f=faces.astype(np.int64),
             J_regressor=regressor, kintree_table=np.stack([parents, np.arange(55)]),
             weights=weights, posedirs=np.zeros((SMPLX_VERTICES, 3, 486), np.float32),
             shapedirs=shapedirs, hands_componentsl=np.eye(45), hands_componentsr=np.eye(45),
             hands_meanl=np.zeros(45), hands_meanr=np.zeros(45),
             lmk_faces_idx=rng.integers(0, num_faces, 51),
             lmk_bary_coords=np.full((51, 3), 1 / 3),
             dynamic_lmk_faces_idx=rng.integers(0, num_faces, (79, 17)),
             dynamic_lmk_bary_coords=np.full((79, 17, 3), 1 / 3))
    transfer = root / "transfer"
    transfer.mkdir()
    mtx = scipy.sparse.csr_matrix(
        (np.ones(SMPLX_VERTICES), (np.arange(SMPLX_VERTICES), source)),
        shape=(SMPLX_VERTICES, 2 * SMPLH_VERTICES))
    with open(transfer / "smplh2smplx_deftrafo_setup.pkl", "wb") as handle:
        pickle.dump({"mtx": mtx}, handle)
    np.save(transfer / "smplx_mask_ids.npy", np.flatnonzero(np.arange(SMPLX_VERTICES) % 9 != 4))
    smplh_faces = faces[(faces < SMPLH_VERTICES).all(1)]

    def write_meshes(folder, pose_ids, scale=0.3, seed=1):
        """SMPL-H meshes: the first 6890 vertices of randomly posed stand-in SMPL-X bodies."""
        import smplx
        model = smplx.build_layer(str(root / "body_models"), model_type="smplx", num_betas=10)
        generator = torch.Generator().manual_seed(seed)
        count = len(pose_ids)
        rotations = roma.rotvec_to_rotmat(torch.randn(count, 55, 3, generator=generator) * scale)
        rotations[:, 22:25] = torch.eye(3)             # SMPL-H has no jaw and eyes
        with torch.no_grad():
            vertices = model(global_orient=rotations[:, :1], body_pose=rotations[:, 1:22],
                             left_hand_pose=rotations[:, 25:40],
                             right_hand_pose=rotations[:, 40:55],
                             betas=torch.randn(count, 10, generator=generator),
                             transl=torch.randn(count, 3, generator=generator) * 0.1
                             ).vertices[:, :SMPLH_VERTICES]
        folder.mkdir(parents=True, exist_ok=True)
        for pose_id, mesh in zip(pose_ids, vertices.numpy()):
            write_obj(folder / f"{pose_id:06d}.obj", mesh, smplh_faces)

    return SimpleNamespace(smplx=root / "body_models",
                           deftrafo=transfer / "smplh2smplx_deftrafo_setup.pkl",
                           mask=transfer / "smplx_mask_ids.npy", write_meshes=write_meshes)


def kit_paths(kit):
    """The synthetic kit's paths, with a mesh writer posing its SMPL-H model."""
    from smplh2smplx.formats.body_models import load_smplh
    from smplh2smplx.body.lbs import BodyModel
    root = Path(kit if isinstance(kit, (str, Path)) else kit.root)

    def write_meshes(folder, pose_ids, scale=0.3, seed=1):
        smplh = load_smplh(root / "body_models" / "smplh" / "neutral" / "model.npz")
        generator = torch.Generator().manual_seed(seed)
        poses = torch.randn(len(pose_ids), 52, 3, generator=generator) * scale
        with torch.no_grad():
            vertices = BodyModel(smplh)(poses)[0].numpy()
        folder.mkdir(parents=True, exist_ok=True)
        for pose_id, mesh in zip(pose_ids, vertices):
            write_obj(folder / f"{pose_id:06d}.obj", mesh, smplh.faces)

    transfer = root / "transfer"
    return SimpleNamespace(smplx=root / "body_models",
                           deftrafo=transfer / "smplh2smplx_deftrafo_setup.pkl",
                           mask=transfer / "smplx_mask_ids.npy", write_meshes=write_meshes)


@pytest.fixture(scope="module")
def clone():
    """The clone named by SMPLX_REPO; skips the test when there is none."""
    repo = os.environ.get("SMPLX_REPO")
    if not repo:
        pytest.skip("end-to-end run of the official transfer_model: set SMPLX_REPO to a clone "
                    "of https://github.com/vchoutas/smplx to run it")
    for module in ("torchtrustncg", "loguru"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"the official transfer_model needs {module}, not installed")
    return Path(repo)


@pytest.fixture(scope="module")
def models(clone, request, tmp_path_factory):
    """The synthetic kit when it exists, else the stand-in above."""
    if importlib.util.find_spec("synthetic_kit") is not None:
        try:
            return kit_paths(request.getfixturevalue("kit"))
        except pytest.FixtureLookupError:
            pass
    return write_standin_kit(tmp_path_factory.mktemp("standin"))


def clone_files(repo):
    """{path: (size, mtime)} of the clone's transfer_model package."""
    return {path: (path.stat().st_size, path.stat().st_mtime_ns)
            for path in (Path(repo) / "transfer_model").rglob("*")}


def official_test_config(models, meshes, output, *options):
    """The shipped my_smplh2smplx.yaml with the test's paths, 3 iterations, batches of 2."""
    from smplh2smplx.settings import load_settings
    paths = {"MESH_DIR": str(meshes), "SMPLX_OUTPUT_DIR": str(output),
             "SMPLX_MODEL": str(models.smplx), "DEFTRAFO_PATH": str(models.deftrafo),
             "MASK_IDS_PATH": str(models.mask), "SMPLH_MODEL": "unused"}
    return load_settings(TransferOptions, EXPERIMENT_CONFIG,
                         ["official.max_iterations=3", "official.meshes_per_batch=2", *options],
                         user_config=paths)


def test_official_run_converts_two_meshes(clone, models, tmp_path):
    from patches.official import run_official
    repo = clone
    before = clone_files(repo)
    meshes, output = tmp_path / "meshes", tmp_path / "out"
    models.write_meshes(meshes, [7, 12])
    config = official_test_config(models, meshes, output)
    batches = []
    results = run_official(config, smplx_repo=repo, device="cpu", on_batch=batches.append,
                           log=None)
    assert [r.pose_id for r in results] == [7, 12] and len(batches) == 1
    for result in results:
        assert result.error is None and result.iterations > 0 and result.seconds > 0
        assert np.isfinite(result.v2v_mean_mm) and result.v2v_max_mm >= result.v2v_mean_mm
        row = result.error_row(flag_threshold_mm=1e9)
        assert row.pose_id == result.pose_id and not row.flagged
    assert sorted(p.name for p in output.glob("*.pkl")) == ["000007.pkl", "000012.pkl"]
    first, second = (read_parameters(output / name, "smplx") for name in ("000007.pkl", "000012.pkl"))
    # one file per mesh: a batch of two must not write the same parameters twice
    assert not torch.equal(first["body_pose"], second["body_pose"])
    # a second run finds everything converted and fits nothing; one of other settings is
    # refused (as our engine's), before any fit
    assert run_official(config, smplx_repo=repo, device="cpu", log=None) == []
    other = official_test_config(models, meshes, output, "fit.num_betas=16")
    with pytest.raises(InputError, match=r"made with other settings.*num_betas 10 \(this run: 16\)"):
        run_official(other, smplx_repo=repo, device="cpu", log=None)
    # the clone is left as it was: no edits, no bytecode of the rewritten modules
    assert clone_files(repo) == before


def test_official_run_needs_the_mask(clone, models, tmp_path):
    from patches.official import run_official
    repo = clone
    models.write_meshes(tmp_path / "meshes", [1])
    config = official_test_config(models, tmp_path / "meshes", tmp_path / "out",
                                  f"mask={tmp_path / 'missing.npy'}")
    with pytest.raises(InputError, match="missing.npy.*setting mask"):
        run_official(config, smplx_repo=repo, device="cpu", log=None)
