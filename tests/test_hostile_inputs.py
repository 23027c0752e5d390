"""Issue 9, hostile and broken inputs: one test (or a few) per numbered item of the issue.

Each test failed before its fix. The bad-input table in docs/BAD_INPUTS.md names them.
Stage-2 fits here are short (FAST) and on one or two poses: they test the driver's
handling of bad files, not the fitter.
"""
import errno
import math
import os
import pickle
import threading
import time
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import extract_to_obj
import run_transfer
from smplh2smplx.formats import source_params as source_params_module
from smplh2smplx.stages import extract, transfer as transfer_module
from smplh2smplx.formats.amass import read_smplh_poses
from smplh2smplx.formats.body_models import load_smplh, load_smplx
from smplh2smplx.body.deformation import load_deformation_transfer
from smplh2smplx.errors import InputError, OutputError
from smplh2smplx.settings import ExtractOptions
from smplh2smplx.stages.extract import read_source_poses, run_extract
from smplh2smplx.fit.fitter import BodyFitter, FitSettings
from smplh2smplx.formats.meshes import write_obj
from smplh2smplx.formats.errors_csv import CSV_COLUMNS, ErrorRow, merge_error_rows, read_error_rows
from smplh2smplx.formats.param_files import parameter_path
from smplh2smplx.formats.param_files import read_parameters, write_parameters
from smplh2smplx.stages.report import write_report
from smplh2smplx.formats.safe_pickle import load_pickle
from smplh2smplx.formats.annotations import Selection, read_id_mapping, read_json
from smplh2smplx.formats.sequence_files import read_motion
from smplh2smplx.settings import load_settings
from smplh2smplx.family import SMPLH
from smplh2smplx.formats.mesh_folder import read_mesh_vertices
from smplh2smplx.formats.source_params import SOURCE_PARAMS, read_source_params
from smplh2smplx.settings import TransferOptions
from smplh2smplx.stages.transfer import run_transfer as transfer

FAST = FitSettings(max_iterations=3, refine_iterations=1, fit_vertices=500)
QUIET = dict(progress=False, log=lambda _line: None)
OLD = time.time() - 3600                   # an hour ago: the mtime of a stale temporary


class Payload:
    """Unpickling this runs `touch <marker>` (a real code-execution payload)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def smplh_mesh(kit, tmp_path_factory):
    """A complete stage-1 mesh file (the SMPL-H template) and its vertices and faces."""
    smplh = load_smplh(kit.smplh_npz)
    path = tmp_path_factory.mktemp("mesh") / "000001.obj"
    write_obj(path, smplh.v_template, smplh.faces)
    return path, smplh.v_template, smplh.faces


def stage2_options(kit, mesh_dir, output_dir, **changes):
    values = dict(mesh_dir=mesh_dir, output_dir=output_dir, smplx_model=kit.body_models,
                  deformation_transfer=kit.deftrafo, mask=kit.mask, poses_per_batch=2,
                  device="cpu", fit=FAST)
    values.update(changes)
    return TransferOptions(**values)


def stage2_cli(kit, mesh_dir, output_dir):
    return ["--mesh-dir", str(mesh_dir), "--output-dir", str(output_dir),
            "--smplx-model", str(kit.body_models), "--deformation-transfer", str(kit.deftrafo),
            "--mask", str(kit.mask), "--exp-opts", "fit.max_iterations=3", "--device", "cpu"]


def stage1_options(kit, output_dir, ids, **changes):
    return ExtractOptions(**{**dict(amass_dir=kit.amass, posefix_dir=kit.posefix_ids.parent,
                                    posescript_dir=kit.posescript_ids.parent,
                                    smplh_model=kit.smplh_npz, output_dir=output_dir,
                                    poses_per_batch=4), "ids": ids, **changes})


@pytest.fixture(scope="module")
def kit_ids(kit):
    """Four pose ids of the kit's id mapping."""
    return sorted(int(pose_id) for pose_id in read_json(kit.posefix_ids))[:4]


def finishes(function, timeout=10.0):
    """Run `function` in a thread; (finished in time, its exception or None)."""
    outcome = {}

    def target():
        try:
            function()
        except BaseException as error:       # noqa: BLE001 - handed back to the test
            outcome["error"] = error
        outcome["done"] = True

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome.get("done", False), outcome.get("error")


# ----------------------------------------------------------------- 1: code in result files

def tensor_with_payload_in_its_storage(marker):
    """A pickle of a float32 tensor whose storage bytes (read by torch's own
    `_load_from_bytes` with weights_only=False) carry the payload instead of a storage."""
    class Storage:
        def __reduce__(self):
            import torch.storage
            return torch.storage._load_from_bytes, (pickle.dumps(Payload(marker), protocol=2),)

    class Tensor:
        def __reduce__(self):
            import collections
            return torch._utils._rebuild_tensor_v2, (Storage(), 0, (1, 3), (3, 1), False,
                                                     collections.OrderedDict())
    return Tensor()


@pytest.mark.parametrize("where", ["dict value", "tensor storage"])
def test_item1_contract_reader_refuses_code_in_result_pkl(tmp_path, where):
    marker = tmp_path / "marker"
    path = tmp_path / "000001.pkl"
    write_parameters(path, "smplx", torch.zeros(55, 3), torch.zeros(10))
    params = read_parameters(path, "smplx")
    if where == "dict value":
        params["jaw_pose"] = Payload(marker)
    else:
        params["jaw_pose"] = tensor_with_payload_in_its_storage(marker)
    path.write_bytes(pickle.dumps(params, protocol=pickle.HIGHEST_PROTOCOL))
    with open(path, "rb") as handle:       # the payload is real: plain pickle runs it
        try:
            pickle.load(handle)
        except RuntimeError:               # torch.load's "invalid magic number", too late
            pass
    assert marker.exists()
    marker.unlink()

    with pytest.raises(InputError, match="refused to load") as error:
        read_parameters(path, "smplx")
    assert str(path) in str(error.value) and not marker.exists()


def test_item1_written_results_still_load_with_plain_pickle_and_the_safe_reader(tmp_path):
    pose, betas = torch.randn(55, 3), torch.randn(10)
    path = tmp_path / "000002.pkl"
    write_parameters(path, "smplx", pose, betas)
    with open(path, "rb") as handle:
        plain = pickle.load(handle)
    safe = read_parameters(path, "smplx")
    assert plain.keys() == safe.keys()
    for key in plain:
        assert torch.equal(plain[key], safe[key]) and safe[key].dtype == torch.float32


def test_item1_report_refuses_code_in_result_pkl(kit, smplh_mesh, tmp_path):
    mesh_path, _, _ = smplh_mesh
    mesh_dir, output_dir, marker = tmp_path / "meshes", tmp_path / "out", tmp_path / "marker"
    mesh_dir.mkdir()
    (mesh_dir / "000007.obj").write_bytes(mesh_path.read_bytes())
    merge_error_rows(output_dir / "errors.csv", [ErrorRow(7, 1.0, 2.0, 3, True, False)])
    parameter_path(output_dir, 7).write_bytes(pickle.dumps({"global_orient": Payload(marker)}))
    with pytest.raises(InputError, match="000007.pkl: refused to load"):
        write_report(stage2_options(kit, mesh_dir, output_dir), num_poses=1, progress=False)
    assert not marker.exists()


# ----------------------------------------------------------------- 3: lost source_params update

def test_item3_parallel_stage1_runs_keep_each_others_source_params(kit, kit_ids, tmp_path,
                                                                  monkeypatch):
    """Run A reads source_params.npz, run B writes its poses meanwhile, then A writes."""
    first, second = kit_ids[:2], kit_ids[2:]
    original, raced = extract.read_source_poses, []

    def racing(*args, **kwargs):
        result = original(*args, **kwargs)
        if not raced:
            raced.append(True)
            run_extract(stage1_options(kit, tmp_path, second, output_format="params"), **QUIET)
        return result

    monkeypatch.setattr(extract, "read_source_poses", racing)
    run_extract(stage1_options(kit, tmp_path, first, output_format="params"), **QUIET)
    assert raced
    assert sorted(read_source_params(tmp_path / SOURCE_PARAMS)) == sorted(first + second)


# ----------------------------------------------------------------- 4: write-side OS errors

@pytest.mark.parametrize("layout", ["output is a file", "output under a file"])
def test_item4_stage2_unwritable_output_exits_3_before_loading_models(
        kit, smplh_mesh, tmp_path, capsys, monkeypatch, layout):
    mesh_dir = smplh_mesh[0].parent
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    output = blocker if layout == "output is a file" else blocker / "out"

    def no_model(*_args, **_kwargs):
        raise AssertionError("the models must not be loaded before the folder is checked")

    monkeypatch.setattr(transfer_module, "load_body_model", no_model)
    status = run_transfer.main(stage2_cli(kit, mesh_dir, output))
    err = capsys.readouterr().err
    assert status == 3
    assert str(output) in err and len(err.strip().splitlines()) == 1
    assert blocker.read_text() == "a file"


def test_item4_stage1_unwritable_output_exits_3(kit, kit_ids, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    config = {"AMASS_DIR": str(kit.amass), "POSEFIX_DIR": str(kit.posefix_ids.parent),
              "POSESCRIPT_DIR": str(kit.posescript_ids.parent),
              "SMPLH_MODEL": str(kit.smplh_npz)}
    for output in (blocker, blocker / "out"):
        status = extract_to_obj.main(["--output-dir", str(output), "--ids", str(kit_ids[0])],
                                     dict(config, MESH_DIR=str(output)))
        err = capsys.readouterr().err
        assert status == 3 and str(output) in err and len(err.strip().splitlines()) == 1


def test_item4_full_disk_exits_3_naming_the_file(kit, kit_ids, tmp_path, capsys, monkeypatch):
    def disk_full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", disk_full)
    config = {"AMASS_DIR": str(kit.amass), "POSEFIX_DIR": str(kit.posefix_ids.parent),
              "POSESCRIPT_DIR": "", "SMPLH_MODEL": str(kit.smplh_npz),
              "MESH_DIR": str(tmp_path / "out")}
    status = extract_to_obj.main(["--ids", str(kit_ids[0]), "--format", "params"], config)
    err = capsys.readouterr().err
    assert status == 3 and SOURCE_PARAMS in err and "No space left" in err
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------- 5: huge coordinates, inf

def test_item5_mesh_with_a_huge_coordinate_is_refused(smplh_mesh, tmp_path):
    _, vertices, faces = smplh_mesh
    vertices = vertices.copy()
    vertices[100, 1] = 1e30
    path = tmp_path / "000001.obj"
    path.write_text("".join(f"v {x:.6g} {y:.6g} {z:.6g}\n" for x, y, z in vertices)
                    + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in faces))
    with pytest.raises(InputError, match="far outside any human body") as error:
        read_mesh_vertices(path, SMPLH)
    assert str(path) in str(error.value)


def test_item5_a_pose_whose_error_is_not_finite_is_not_converged(kit):
    data = load_smplx(kit.smplx_npz)
    mask = np.load(kit.mask)
    fitter = BodyFitter(data, mask, FitSettings())
    targets = torch.as_tensor(data.v_template[mask], dtype=torch.float32)[None].repeat(2, 1, 1)
    targets[0, 0, 0] = 1e30
    result = fitter.fit(targets, None)
    assert not math.isfinite(float(result.v2v_mean_mm[0]))
    assert not bool(result.converged[0])
    assert bool(result.converged[1])             # the sane pose still converges


def test_item5_report_survives_any_value_in_errors_csv(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    values = ["inf", "nan", "-inf", "1e308", "-1e308", "-5", "0", "3.5"]
    lines = [",".join(CSV_COLUMNS)] + [f"{pose_id},{value},{value},1,1,0"
                                       for pose_id, value in enumerate(values, start=1)]
    (output / "errors.csv").write_text("\n".join(lines) + "\n")
    for pose_id in range(1, len(values) + 1):
        write_parameters(parameter_path(output, pose_id), "smplx", torch.zeros(55, 3), torch.zeros(10))
    options = TransferOptions(mesh_dir=tmp_path, output_dir=output, smplx_model=tmp_path,
                              deformation_transfer=tmp_path, mask=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # e.g. matplotlib's "Tight layout not applied"
        index = write_report(options, num_poses=0, progress=False)
    page = index.read_text()
    assert "000002" in page                       # the NaN row is listed among the worst
    assert (index.parent / "v2v_histogram.png").stat().st_size > 0


# ----------------------------------------------------------------- 6: lock files and links

@pytest.mark.parametrize("lock_of", ["errors.csv", SOURCE_PARAMS])
def test_item6_lock_file_link_is_not_followed(tmp_path, lock_of):
    folder, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / f".{lock_of}.lock").symlink_to(elsewhere / "created_by_the_runner")
    with pytest.raises(OutputError, match="symbolic link") as error:
        if lock_of == "errors.csv":
            merge_error_rows(folder / lock_of, [ErrorRow(1, 1.0, 2.0, 3, True, False)])
        else:
            source_params_module.merge_source_params(folder / lock_of, {1: np.zeros(156, np.float32)})
    assert f".{lock_of}.lock" in str(error.value)
    assert not list(elsewhere.iterdir())
    assert not (folder / lock_of).exists()


# ----------------------------------------------------------------- 7: recursive pickles

def test_item7_self_referential_and_deeply_nested_pickles_are_refused(tmp_path):
    loop = []
    loop.append(loop)
    looping = tmp_path / "loop.pkl"
    looping.write_bytes(pickle.dumps({"mtx": loop}))
    deep = tmp_path / "deep.pkl"                 # 100,000 nested lists, built without recursion
    deep.write_bytes(b"\x80\x04" + b"]" * 100_000 + b"a" * 99_999 + b".")
    for path, message in [(looping, "contains itself"), (deep, "nested too deeply")]:
        with pytest.raises(InputError, match=message) as error:
            load_pickle(path)
        assert str(path) in str(error.value)


def test_item7_memory_bomb_in_a_model_pickle_is_refused(tmp_path):
    path = tmp_path / "bomb.pkl"       # bytes(10**12): a terabyte of zeros in 30 bytes
    path.write_bytes(b"\x80\x02c__builtin__\nbytes\n\x8a\x06\x00\x10\xa5\xd4\xe8\x00\x85R.")
    empty = tmp_path / "empty.pkl"     # protocol 2 writes b"" as bytes(): still loads
    empty.write_bytes(pickle.dumps({"x": b""}, protocol=2))
    assert load_pickle(empty) == {"x": b""}
    with pytest.raises(InputError, match=r"refused to load.*bytes\(1000000000000\)") as error:
        load_pickle(path)
    assert str(path) in str(error.value)


# ----------------------------------------------------------------- 8: stale temporaries

def test_item8_stale_temporaries_of_a_killed_stage1_run_are_removed(kit, kit_ids, tmp_path):
    def temporary(name, mtime=OLD):
        path = tmp_path / name
        path.write_bytes(b"half a file")
        os.utime(path, (mtime, mtime))
        return path

    stale = [temporary(".000001.obj.abcd1234.tmp"), temporary(".source_params.npz.x1y2_3w4.tmp")]
    fresh = temporary(".000002.obj.zzzz9999.tmp", mtime=time.time())   # a live writer's
    foreign = temporary(".notes.txt.abcdefgh.tmp")                      # not ours
    busy = temporary(".000003.obj.busy0000.tmp")                        # locked by its writer
    import fcntl
    with open(busy, "rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        run_extract(stage1_options(kit, tmp_path, kit_ids[:1], output_format="params"), **QUIET)
    assert not any(path.exists() for path in stale)
    assert fresh.exists() and foreign.exists() and busy.exists()


# ----------------------------------------------------------------- 9: resume checks results

def test_item9_resume_redoes_empty_linked_and_damaged_results(kit, smplh_mesh, tmp_path):
    mesh_path, _, _ = smplh_mesh
    mesh_dir, output = tmp_path / "meshes", tmp_path / "out"
    mesh_dir.mkdir()
    for pose_id in (1, 2, 3):
        (mesh_dir / f"{pose_id:06d}.obj").write_bytes(mesh_path.read_bytes())
    summary = transfer(stage2_options(kit, mesh_dir, output), **QUIET)
    assert summary.done == 3

    unrelated = tmp_path / "unrelated.txt"
    unrelated.write_text("not a result")
    parameter_path(output, 1).write_bytes(b"")                       # 0 bytes
    parameter_path(output, 2).unlink()
    parameter_path(output, 2).symlink_to(unrelated)                  # a link elsewhere
    stale = output / ".000003.pkl.abcdefgh.tmp"                       # a killed run's (item 8)
    stale.write_bytes(b"half")
    os.utime(stale, (OLD, OLD))

    summary = transfer(stage2_options(kit, mesh_dir, output), **QUIET)
    assert (summary.done, summary.skipped) == (2, 1)
    for pose_id in (1, 2):
        path = parameter_path(output, pose_id)
        assert not path.is_symlink() and read_parameters(path, "smplx")
    assert unrelated.read_text() == "not a result" and not stale.exists()


# ----------------------------------------------------------------- 10: truncated .obj files

@pytest.mark.parametrize("cut", ["inside the faces", "inside the last vertex line",
                                 "inside the last face line"])
def test_item10_truncated_obj_is_refused(smplh_mesh, tmp_path, cut):
    data = smplh_mesh[0].read_bytes()
    first_face = data.index(b"\nf ") + 1
    where = {"inside the faces": first_face + (len(data) - first_face) // 2,
             "inside the last vertex line": first_face - 5,
             "inside the last face line": len(data) - 2}[cut]
    path = tmp_path / "000001.obj"
    path.write_bytes(data[:where])
    read_mesh_vertices(smplh_mesh[0], SMPLH)                  # the whole file reads
    with pytest.raises(InputError, match="incomplete") as error:
        read_mesh_vertices(path, SMPLH)
    assert str(path) in str(error.value)


def test_obj_with_vertex_colours_as_trimesh_writes_it_reads_its_positions(smplh_mesh, tmp_path):
    """`v x y z r g b` (trimesh, MeshLab, Open3D with colours): the positions, in file order;
    a vertex line of another length is still refused, naming the file."""
    import trimesh
    _, vertices, faces = smplh_mesh
    colours = np.random.default_rng(0).integers(0, 256, (len(vertices), 4), dtype=np.uint8)
    path = tmp_path / "000001.obj"
    trimesh.Trimesh(vertices, faces, vertex_colors=colours, process=False).export(path)
    assert path.read_text().splitlines()[1].count(" ") == 6          # v x y z r g b
    np.testing.assert_allclose(read_mesh_vertices(path, SMPLH), vertices, atol=1e-7)
    lines = path.read_bytes().split(b"\n")
    first = next(index for index, line in enumerate(lines) if line.startswith(b"v "))
    lines[first] = b" ".join(lines[first].split()[:6])                # x y z r g
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(InputError, match="vertex line") as error:
        read_mesh_vertices(path, SMPLH)
    assert str(path) in str(error.value)


# ----------------------------------------------------------------- 11: FIFOs and devices

def read_smplh_mesh(path):
    return read_mesh_vertices(path, SMPLH)


@pytest.mark.parametrize("reader, name", [
    (read_smplh_mesh, "000001.obj"), (read_smplh_mesh, "000001.ply"),
    (read_source_params, SOURCE_PARAMS), (lambda path: read_parameters(path, "smplx"), "000001.pkl"),
    (load_pickle, "setup.pkl"), (read_smplh_poses, "seq_poses.npz"), (read_json, "ids.json"),
    (read_error_rows, "errors.csv"), (read_motion, "clip_poses.npz"),
])
def test_item11_fifo_named_like_an_input_is_refused_without_hanging(tmp_path, reader, name):
    path = tmp_path / name
    os.mkfifo(path)
    done, error = finishes(lambda: reader(path))
    if not done:                                   # release the blocked reader
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    assert done, f"{reader.__name__} hangs on a FIFO"
    assert isinstance(error, InputError) and str(path) in str(error), error


@pytest.mark.parametrize("reader, name", [(read_smplh_mesh, "000001.obj"),
                                          (read_motion, "clip_poses.npz")])
def test_item11_device_is_refused(tmp_path, reader, name):
    link = tmp_path / name
    link.symlink_to("/dev/zero")
    done, error = finishes(lambda: reader(link))
    assert done and isinstance(error, InputError) and "character device" in str(error)


# ----------------------------------------------------------------- 12: NaN in unused frames

def test_item12_only_used_frames_are_checked_and_a_bad_frame_is_named(tmp_path):
    amass = tmp_path / "amass"
    (amass / "S").mkdir(parents=True)
    poses = np.zeros((10, 156))
    poses[5, 7] = np.nan
    np.savez(amass / "S" / "seq_poses.npz", poses=poses)
    mapping = {11: ("S/seq_poses.npz", 2), 12: ("S/seq_poses.npz", 5)}
    selection = Selection([11, 12], mapping, tmp_path / "mapping.json")
    ids, read, failures = read_source_poses([11, 12], selection, amass, progress=False)
    assert ids == [11] and read.shape == (1, 156)
    assert len(failures) == 1 and failures[0][0] == 12
    assert "frame 5" in failures[0][1] and "pose 12" in failures[0][1]
    assert "pose 11" not in failures[0][1]


# ----------------------------------------------------------------- 13: smaller points

def test_item13_empty_mesh_folder_is_an_error_and_hints_from_params(kit, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no .obj or .ply") as error:
        transfer(stage2_options(kit, empty, tmp_path / "out"), **QUIET)
    assert str(empty) in str(error.value)
    params_only = tmp_path / "params_only"
    params_only.mkdir()
    np.savez(params_only / SOURCE_PARAMS, pose_ids=np.array([5]), poses=np.zeros((1, 156)))
    with pytest.raises(InputError, match="--from-params"):
        transfer(stage2_options(kit, params_only, tmp_path / "out"), **QUIET)


def test_item13_shard_index_with_shard_size_0_is_noted(kit, smplh_mesh, tmp_path, monkeypatch):
    class Stop(Exception):
        pass

    def stop(*_args, **_kwargs):
        raise Stop

    monkeypatch.setattr(transfer_module, "_Stage2", stop)      # the notice comes before any model
    lines = []
    with pytest.raises(Stop):
        transfer(stage2_options(kit, smplh_mesh[0].parent, tmp_path / "out",
                                shard_size=0, shard_index=3),
                 progress=False, log=lines.append)
    assert any("shard_index 3 is ignored" in line for line in lines)


def test_item13_stage2_names_every_unset_path():
    unset = {name: "TODO" for name in ("MESH_DIR", "SMPLX_OUTPUT_DIR", "SMPLX_MODEL",
                                       "DEFTRAFO_PATH", "MASK_IDS_PATH", "SMPLH_MODEL")}
    with pytest.raises(InputError) as error:
        load_settings(TransferOptions, user_config=unset).check()
    for name in ("MESH_DIR", "SMPLX_OUTPUT_DIR", "SMPLX_MODEL", "DEFTRAFO_PATH", "MASK_IDS_PATH",
                 "--mesh-dir", "--output-dir", "--smplx-model", "--deformation-transfer",
                 "--mask"):
        assert name in str(error.value)
    assert "SMPLH_MODEL" not in str(error.value)          # only needed with from_params


@pytest.mark.parametrize("fit, message", [
    (FitSettings(tolerance=0.0), "fit.tolerance"), (FitSettings(tolerance=-1e-3), "fit.tolerance"),
    (FitSettings(tolerance=float("nan")), "fit.tolerance"),
    (FitSettings(tolerance=2.0), "fit.tolerance"), (FitSettings(fit_vertices=-1), "fit_vertices"),
])
def test_item13_fit_tolerance_and_fit_vertices_are_range_checked(tmp_path, fit, message):
    options = TransferOptions(mesh_dir=tmp_path, output_dir=tmp_path, smplx_model=tmp_path,
                              deformation_transfer=tmp_path, mask=tmp_path, fit=fit)
    with pytest.raises(InputError, match=message):
        options.check()


@pytest.mark.parametrize("relative", ["../outside/x_poses.npz", "CMU/../../x_poses.npz"])
def test_item13_mapping_path_cannot_leave_the_amass_folder(tmp_path, relative):
    path = tmp_path / "ids_2_dataset_sequence_and_frame_index_100k.json"
    path.write_text('{"7": ["AMASS", "%s", 0]}' % relative)
    with pytest.raises(InputError, match="without ..") as error:
        read_id_mapping(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("damage, message", [
    ("all zero", "do not sum to 1"), ("rows sum to 2", "do not sum to 1"),
    ("negative weights", "negative weights"),
])
def test_item13_degenerate_deformation_matrix_is_refused(kit, tmp_path, damage, message):
    matrix = load_pickle(kit.deftrafo)["mtx"].tocsr().astype(np.float64)
    if damage == "all zero":
        matrix = sp.csr_matrix(matrix.shape)
    elif damage == "rows sum to 2":
        matrix = matrix * 2.0
    else:                            # weights (1.5, -0.5): still sum to 1, not convex
        matrix = matrix.tolil()
        row = int(np.load(kit.mask)[0])
        matrix[row, :] = 0
        matrix[row, 0], matrix[row, 1] = 1.5, -0.5
        matrix = matrix.tocsr()
    path = tmp_path / "setup.pkl"
    path.write_bytes(pickle.dumps({"mtx": matrix}, protocol=2))
    with pytest.raises(InputError, match=message) as error:
        load_deformation_transfer(path, kit.mask)
    assert str(path) in str(error.value)
    load_deformation_transfer(kit.deftrafo, kit.mask)          # the kit's real-like setup loads
