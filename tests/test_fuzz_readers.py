"""Property-based tests (hypothesis) of the readers of every file the project reads.

For damaged, random and hostile versions of each input kind (.obj/.ply mesh; .npz AMASS
sequence, source_params.npz, body model; .npy mask; .pkl model/deformation setup and
stage-2 result; JSON selection files and id lists; YAML experiment config; errors.csv;
motion files of every model, converted sequences and their per-frame quality files),
a reader either returns a valid value or raises InputError naming the file; it never
raises anything else (no traceback), never runs code from the file (a payload would
create a marker file), never writes anything (no partial output) and returns (no hang:
FIFOs and devices are in test_hostile_inputs.py; here every example must finish).

Examples are derandomized (the same on every run) and sized so that the whole file runs
in well under a minute on two slow cores.
"""
import contextlib
import io
import json
import math
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial.transform import Rotation

from smplh2smplx.errors import InputError
from smplh2smplx.family import SMPLH, SMPLX
from smplh2smplx.formats.amass import read_smplh_poses
from smplh2smplx.formats.annotations import (POSEFIX_HUMAN, POSEFIX_PAIRS, POSESCRIPT_HUMAN,
                                             posefix_human_ids, posescript_human_ids,
                                             read_id_mapping, read_pose_ids_file)
from smplh2smplx.formats.body_models import load_smplh
from smplh2smplx.formats.deformation_files import read_mask_ids
from smplh2smplx.formats.errors_csv import read_error_rows
from smplh2smplx.formats.limits import MAX_COORDINATE_M
from smplh2smplx.formats.mesh_folder import read_mesh_vertices
from smplh2smplx.formats.meshes import format_obj
from smplh2smplx.formats.safe_pickle import load_pickle
from smplh2smplx.formats.param_files import build_parameters, read_parameters
from smplh2smplx.family import KINDS
from smplh2smplx.formats import sequence_files
from smplh2smplx.formats.sequence_files import (MotionSequence, motion_header, read_motion,
                                                read_motion_file)
from smplh2smplx.formats.sequences_csv import read_sequence_rows
from smplh2smplx.formats.source_params import read_source_params
from smplh2smplx.stages.sequences.tree import read_quality
from smplh2smplx.cli import settings_yaml
from smplh2smplx.settings import TransferOptions, load_settings, setting_types

SMPLH_VERTICES, SMPLH_FACES = SMPLH.num_vertices, SMPLH.num_faces


def read_checked_mesh(path):
    return read_mesh_vertices(path, SMPLH)


def read_smplx_mask(path):
    return read_mask_ids(path, SMPLX.num_vertices)


def fuzz(examples):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Payload:
    """Unpickling this runs `touch <marker>`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


MARKER_NAME = "MARKER"     # payloads touch it in the working folder: a test's own folder


@contextlib.contextmanager
def inside(folder):
    """Run the block with `folder` as the working folder."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def read_safely(reader, path, names=None):
    """`reader(path)`: its value, or None when it raised InputError naming the file.

    Asserts the properties: nothing but InputError, the message names the file (or one of
    `names`), no file is created in the folder (no output, no payload marker).
    """
    folder = Path(path).parent
    before = sorted(os.listdir(folder))
    try:
        value = reader(path)
    except InputError as error:
        named = [str(path)] + [str(name) for name in names or ()]
        assert any(name in str(error) for name in named), error
        value = None
    assert sorted(os.listdir(folder)) == before
    assert not (folder / MARKER_NAME).exists()
    return value


@st.composite
def mutated(draw, original):
    """`original` bytes with 1-4 random edits: truncation, byte changes, insertions, cuts."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "overwrite", "insert", "delete"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "truncate":
            del data[at:]
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at:at + len(chunk)] = chunk
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at:at + draw(st.integers(1, 64))]
    return bytes(data)


def written(folder, name, data):
    path = Path(folder) / name
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------- meshes

RNG = np.random.default_rng(0)
MESH_VERTICES = RNG.uniform(-1.0, 1.0, (SMPLH_VERTICES, 3))
MESH_FACES = RNG.integers(0, SMPLH_VERTICES, (SMPLH_FACES, 3))
VALID_OBJ = format_obj(MESH_VERTICES, MESH_FACES)


def _ply_bytes():
    import trimesh
    mesh = trimesh.Trimesh(MESH_VERTICES, MESH_FACES, process=False)
    return trimesh.exchange.ply.export_ply(mesh, encoding="binary")


VALID_PLY = _ply_bytes()


def check_mesh(value):
    if value is not None:
        assert value.shape == (SMPLH_VERTICES, 3) and value.dtype == np.float32
        assert np.isfinite(value).all() and np.abs(value).max() <= MAX_COORDINATE_M


@fuzz(60)
@given(data=mutated(VALID_OBJ))
def test_obj_reader(data):
    with tempfile.TemporaryDirectory() as folder:
        check_mesh(read_safely(read_checked_mesh, written(folder, "000001.obj", data)))


@fuzz(60)
@given(data=st.one_of(mutated(VALID_PLY), st.binary(max_size=300)))
def test_ply_reader(data):
    with tempfile.TemporaryDirectory() as folder:
        check_mesh(read_safely(read_checked_mesh, written(folder, "000001.ply", data)))


def test_unmutated_meshes_read():
    """The seeds of the two tests above are valid, so the mutations start from real files."""
    with tempfile.TemporaryDirectory() as folder:
        for name, data in [("000001.obj", VALID_OBJ), ("000002.ply", VALID_PLY)]:
            vertices = read_checked_mesh(written(folder, name, data))
            np.testing.assert_allclose(vertices, MESH_VERTICES, atol=1e-6)


# ----------------------------------------------------------------- .npz and .npy

def npz_bytes(arrays):
    stream = io.BytesIO()
    np.savez(stream, **arrays)
    return stream.getvalue()


small_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float64, np.float32, np.int64, np.uint8, np.bool_,
                           np.dtype("U3"), np.complex64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))


@st.composite
def npz_files(draw, keys, valid):
    """A valid .npz mutated, or arrays of random kinds under the expected and other keys
    (object arrays too: they are pickles inside the archive)."""
    if draw(st.booleans()):
        return draw(mutated(npz_bytes(valid)))
    arrays = draw(st.dictionaries(st.sampled_from(keys + ["extra"]), small_arrays, max_size=4))
    if draw(st.booleans()):
        arrays[draw(st.sampled_from(keys))] = np.array([Payload("x"), None], dtype=object)
    return npz_bytes(arrays)


@fuzz(80)
@given(data=npz_files(["poses", "surface_model_type", "trans"],
                      {"poses": RNG.normal(size=(5, 156)), "trans": np.zeros((5, 3))}))
def test_amass_sequence_reader(data):
    with tempfile.TemporaryDirectory() as folder:
        poses = read_safely(read_smplh_poses, written(folder, "seq_poses.npz", data))
        assert poses is None or (poses.ndim == 2 and poses.shape[1] == 156)


@fuzz(80)
@given(data=npz_files(["pose_ids", "poses"],
                      {"pose_ids": np.arange(3), "poses": RNG.normal(size=(3, 156))}))
def test_source_params_reader(data):
    with tempfile.TemporaryDirectory() as folder:
        params = read_safely(read_source_params, written(folder, "source_params.npz", data))
        assert params is None or all(
            isinstance(key, int) and value.shape == (156,) and np.isfinite(value).all()
            for key, value in params.items())


MODEL_KEYS = ["v_template", "f", "J_regressor", "kintree_table", "weights", "posedirs",
              "shapedirs"]


def tiny_model():
    """Arrays under the model keys with the SMPL-H vertex count but few other entries: the
    reader's checks run on them without a 44 MB file per example."""
    return {"v_template": np.zeros((SMPLH_VERTICES, 3)), "f": MESH_FACES[:10],
            "J_regressor": np.zeros((52, 4)), "kintree_table": np.zeros((2, 52), np.int64),
            "weights": np.zeros((4, 52)), "posedirs": np.zeros((2, 3, 459)),
            "shapedirs": np.zeros((2, 3, 16))}


@fuzz(50)
@given(data=npz_files(MODEL_KEYS, tiny_model()))
def test_body_model_npz_reader(data):
    with tempfile.TemporaryDirectory() as folder:
        read_safely(load_smplh, written(folder, "model.npz", data))


def npy_bytes(array):
    stream = io.BytesIO()
    np.save(stream, array)
    return stream.getvalue()


@fuzz(80)
@given(data=st.one_of(mutated(npy_bytes(np.arange(50))), small_arrays.map(npy_bytes)))
def test_mask_reader(data):
    with tempfile.TemporaryDirectory() as folder:
        ids = read_safely(read_smplx_mask, written(folder, "smplx_mask_ids.npy", data))
        assert ids is None or (ids.ndim == 1 and ids.size and ids.dtype == np.int64)


# ----------------------------------------------------------------- pickles

plain_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
    | st.binary(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=12)

MODEL_PICKLE = pickle.dumps({"mtx": sp.random(20, 30, density=0.1, format="csc",
                                                random_state=0),
                             "v_template": np.zeros((4, 3)), "f": np.arange(6).reshape(2, 3),
                             "note": "x"}, protocol=2)


@st.composite
def hostile_pickles(draw, marker):
    """Plain containers (to load as they are), mutated model pickles and mutated payloads."""
    kind = draw(st.sampled_from(["plain", "model", "payload", "bytes"]))
    if kind == "plain":
        return draw(st.integers(0, 5).flatmap(
            lambda protocol: plain_values.map(lambda value: pickle.dumps(value, protocol))))
    if kind == "model":
        return draw(mutated(MODEL_PICKLE))
    if kind == "payload":
        payload = pickle.dumps({"mtx": Payload(marker)}, protocol=draw(st.integers(0, 5)))
        return draw(st.one_of(st.just(payload), mutated(payload)))
    return draw(st.binary(max_size=200))


@fuzz(200)
@given(data=hostile_pickles(MARKER_NAME))
def test_model_pickle_loader(data):
    with tempfile.TemporaryDirectory() as folder, inside(folder):
        read_safely(load_pickle, written(folder, "setup.pkl", data))


def _result_bytes():
    params = build_parameters("smplx", torch.linspace(-1, 1, 165).view(55, 3), torch.ones(10))
    return pickle.dumps(params, protocol=pickle.HIGHEST_PROTOCOL)


VALID_RESULT = _result_bytes()


def _payload_results(marker):
    """{key: a result file whose `key` is the payload}, pickled once: a pickled tensor holds
    a memory address, so pickling inside the strategy would not draw the same data twice."""
    payloads = {}
    for key in sorted(SMPLX.parameter_shapes):
        params = pickle.loads(VALID_RESULT)
        params[key] = Payload(marker)
        payloads[key] = pickle.dumps(params)
    return payloads


PAYLOAD_RESULTS = _payload_results(MARKER_NAME)


@st.composite
def hostile_results(draw):
    kind = draw(st.sampled_from(["mutated", "payload", "plain", "mutated", "mutated"]))
    if kind == "mutated":            # damage anywhere, the tensors' storage bytes included
        return draw(mutated(VALID_RESULT))
    if kind == "payload":
        payload = PAYLOAD_RESULTS[draw(st.sampled_from(sorted(PAYLOAD_RESULTS)))]
        return draw(st.one_of(st.just(payload), mutated(payload)))
    return pickle.dumps(draw(plain_values))


@fuzz(200)
@given(data=hostile_results())
def test_result_pickle_reader(data):
    with tempfile.TemporaryDirectory() as folder, inside(folder):
        params = read_safely(lambda path: read_parameters(path, "smplx"), written(folder, "000001.pkl", data))
        assert params is None or {key: tuple(value.shape) for key, value in params.items()} \
            == SMPLX.parameter_shapes


def test_unmutated_result_reads():
    with tempfile.TemporaryDirectory() as folder:
        params = read_parameters(written(folder, "000001.pkl", VALID_RESULT), "smplx")
    assert torch.equal(params["body_pose"], torch.linspace(-1, 1, 165).view(55, 3)[1:22])


# ----------------------------------------------------------------- JSON and text lists

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False)
    | st.text(alphabet="AMS0123456789./_x", max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(alphabet="0123456789ax", max_size=4), inner, max_size=4),
    max_leaves=15)

VALID_MAPPING = json.dumps({"3": ["AMASS", "CMU/01/01_01_poses.npz", 4]}).encode()


@st.composite
def json_files(draw):
    kind = draw(st.sampled_from(["value", "mutated", "bytes", "mapping-like"]))
    if kind == "value":
        return json.dumps(draw(json_values)).encode()
    if kind == "mutated":
        return draw(mutated(VALID_MAPPING))
    if kind == "mapping-like":
        entry = [draw(st.sampled_from(["AMASS", "amass"])), draw(json_values), draw(json_values)]
        return json.dumps({draw(st.text("0123456789", min_size=1, max_size=3)): entry}).encode()
    return draw(st.binary(max_size=100))


@fuzz(150)
@given(data=json_files())
def test_id_mapping_reader(data):
    with tempfile.TemporaryDirectory() as folder:
        mapping = read_safely(read_id_mapping, written(folder, "ids.json", data))
        for pose_id, (relative, frame) in (mapping or {}).items():
            assert pose_id >= 0 and ".." not in Path(relative).parts
            assert not Path(relative).is_absolute() and isinstance(frame, int)


@fuzz(80)
@given(annotations=json_files(), pairs=json_files())
def test_posefix_and_posescript_readers(annotations, pairs):
    with tempfile.TemporaryDirectory() as folder:
        written(folder, POSEFIX_HUMAN, annotations)
        written(folder, POSEFIX_PAIRS, pairs)
        written(folder, POSESCRIPT_HUMAN, annotations)
        names = [Path(folder) / POSEFIX_HUMAN, Path(folder) / POSEFIX_PAIRS]
        for reader in (posefix_human_ids, posescript_human_ids):
            ids = read_safely(lambda _path: reader(folder), Path(folder) / POSEFIX_HUMAN,
                              names + [Path(folder) / POSESCRIPT_HUMAN])
            assert ids is None or all(isinstance(i, int) and i >= 0 for i in ids)


@fuzz(80)
@given(data=st.one_of(st.binary(max_size=80), st.text(max_size=40).map(str.encode)))
def test_id_list_reader(data):
    with tempfile.TemporaryDirectory() as folder:
        ids = read_safely(read_pose_ids_file, written(folder, "ids.txt", data))
        assert ids is None or ids == sorted(set(ids))


# ----------------------------------------------------------------- errors.csv

VALID_CSV = (b"pose_id,v2v_mean_mm,v2v_max_mm,iterations,converged,flagged\n"
             b"1,1.5,2.5,7,1,0\n2,inf,nan,3,0,1\n")


@fuzz(120)
@given(data=st.one_of(mutated(VALID_CSV), st.binary(max_size=120)))
def test_errors_csv_reader(data):
    with tempfile.TemporaryDirectory() as folder:
        read_safely(read_error_rows, written(folder, "errors.csv", data))


VALID_SEQUENCES_CSV = (
    b"sequence,frames,fps,gender,v2v_mean_mm,v2v_p95_mm,v2v_max_mm,jitter_mps2,"
    b"source_jitter_mps2,jitter_excess_mps2,seconds\n"
    b"CMU/01/01_01_poses.npz,120,30,male,4.6,4.9,5.1,6.5,6.4,0.1,2.5\n"
    b"'=HYPERLINK(1),3,60,female,1,2,3,4,5,-1,0.5\n")


@fuzz(120)
@given(data=st.one_of(mutated(VALID_SEQUENCES_CSV), st.binary(max_size=120)))
def test_sequences_csv_reader(data):
    with tempfile.TemporaryDirectory() as folder:
        rows = read_safely(read_sequence_rows, written(folder, "sequences.csv", data))
        assert rows is None or all(name == row.sequence for name, row in rows.items())


# ----------------------------------------------------------------- YAML experiment config

PATHS = {name: f"/nonexistent/{name.lower()}" for name in (
    "MESH_DIR", "SMPLX_OUTPUT_DIR", "SMPL_MODEL", "SMPLH_MODEL", "SMPLX_MODEL",
    "DEFTRAFO_PATH", "MASK_IDS_PATH")}
# Every key of the schema with its value, as --show-settings prints it: the file mutated.
FULL_YAML = settings_yaml(load_settings(TransferOptions, user_config=PATHS)).encode()
# What an error may name instead of the file: a key, config.py or an unset path.
NAMED = [*setting_types(TransferOptions), "config.py", "setting", "not set yet"]
yaml_scalars = st.sampled_from(["0", "-1", "010", "1e400", ".nan", "yes", "off", "~", "[]",
                                "{}", "'x'", "${config:NOPE}", "${fit}", "&a [*a]", "true",
                                "!!python/object/apply:os.system ['touch MARKER']", "3.5",
                                "TODO", "{a: 1}"])


@st.composite
def yaml_files(draw):
    kind = draw(st.sampled_from(["values", "mutated", "text"]))
    if kind == "mutated":
        return draw(mutated(FULL_YAML))
    if kind == "text":
        return draw(st.text(max_size=60)).encode()
    lines = FULL_YAML.decode().splitlines()
    entries = [index for index, line in enumerate(lines)
               if ":" in line and not line.strip().startswith("#")]
    for _ in range(draw(st.integers(1, 4))):       # values and whole sections replaced
        index = draw(st.sampled_from(entries))
        lines[index] = f"{lines[index].partition(':')[0]}: {draw(yaml_scalars)}"
    return "\n".join(lines).encode()


def read_experiment(path):
    options = load_settings(TransferOptions, path, user_config=PATHS)
    options.check()
    return options


@fuzz(120)
@given(data=yaml_files())
def test_experiment_config_reader(data):
    with tempfile.TemporaryDirectory() as folder, inside(folder):
        options = read_safely(read_experiment, written(folder, "exp.yaml", data),
                              names=NAMED)
        assert options is None or isinstance(options, TransferOptions)


@pytest.mark.parametrize("text", ["fit: []", "fit: 3", "fit:", "official: [1, 2]",
                                  "fit:\n  tolerance: {a: 1}", "official: {x: 1}"])
def test_config_section_replaced_by_another_type_is_named(text):
    with tempfile.TemporaryDirectory() as folder:
        read_safely(read_experiment, written(folder, "exp.yaml", text.encode()),
                    names=["exp.yaml"])


def test_unmutated_yaml_reads():
    with tempfile.TemporaryDirectory() as folder:
        options = read_experiment(written(folder, "exp.yaml", FULL_YAML))
    assert str(options.mesh_dir) == PATHS["MESH_DIR"]


def test_npz_member_claiming_a_huge_array_is_refused(tmp_path):
    """An .npz whose member claims a huge array is refused without allocating it."""
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**12, 156)}
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, header)
    with zipfile.ZipFile(tmp_path / "seq_poses.npz", "w") as archive:
        archive.writestr("poses.npy", stream.getvalue())
    read_safely(read_smplh_poses, tmp_path / "seq_poses.npz")


# ----------------------------------------------------------------- motion files (issue 16)

def motion_arrays(width, model_type):
    """A short motion file of a model: poses (4, width), its type, betas, gender, rate."""
    return {"poses": RNG.normal(size=(4, width)), "trans": np.zeros((4, 3)),
            "betas": np.zeros(16), "gender": np.array("male"),
            "mocap_framerate": np.array(60.0), "surface_model_type": np.array(model_type)}


MOTION_KEYS = ["poses", "trans", "betas", "gender", "mocap_framerate", "surface_model_type"]


@fuzz(60)
@given(data=st.one_of(*[npz_files(MOTION_KEYS, motion_arrays(width, kind)) for width, kind
                        in ((156, "smplh"), (165, "smplx"), (72, "smpl"))]))
def test_motion_file_reader_of_every_model(data):
    """SMPL-H, SMPL-X and SMPL motion files, damaged or random: read as the model their
    poses tell, or refused with a line naming the file (shape files are skipped the same
    way)."""
    with tempfile.TemporaryDirectory() as folder:
        sequence = read_safely(read_motion, written(folder, "seq_poses.npz", data))
        assert sequence is None or (
            sequence.poses.shape[1] == KINDS[sequence.kind].pose_size
            and np.isfinite(sequence.poses).all() and np.isfinite(sequence.trans).all())


def parts_arrays(parts, transl="transl"):
    """A short motion file with the pose cut into `parts` (name -> shape of a frame):
    rotation matrices where a frame's shape ends in (3, 3)."""
    arrays = {name: (Rotation.random(4 * math.prod(shape[:-2]), random_state=1).as_matrix()
                     if shape[-2:] == (3, 3) else RNG.normal(size=(4, math.prod(shape))))
              .reshape((4,) + shape) for name, shape in parts.items()}
    return dict(arrays, **{transl: np.zeros((4, 3))}, betas=np.zeros(10),
                gender=np.array("female"), fps=np.array(30.0))


PARTS_FILES = [
    parts_arrays({"global_orient": (1, 3, 3), "body_pose": (21, 3, 3), "jaw_pose": (1, 3, 3),
                  "left_hand_pose": (15, 3, 3), "right_hand_pose": (15, 3, 3)}),
    parts_arrays({"root_orient": (3,), "pose_body": (63,), "pose_hand": (90,)}, "trans"),
    parts_arrays({"global_orient": (3,), "body_pose": (23, 3)})]


@fuzz(60)
@given(data=st.one_of(st.sampled_from([npz_bytes(arrays) for arrays in PARTS_FILES]),
                      *[npz_files(list(arrays), arrays) for arrays in PARTS_FILES]))
def test_motion_file_reader_of_parts_and_rotations(data):
    """Motion files with the pose cut into parts, axis-angle or rotation matrices, damaged
    or random: read, or refused with a line naming the file; the tree listing's header
    (`motion_header`) never fails and tells the model and frames the reader read."""
    with tempfile.TemporaryDirectory() as folder:
        path = written(folder, "estimated.npz", data)
        sequence = read_safely(read_motion, path)
        header = motion_header(path)
        assert sequence is None or (
            header == (sequence.kind, sequence.num_frames)
            and sequence.poses.shape[1] == KINDS[sequence.kind].pose_size
            and np.isfinite(sequence.poses).all())


def smplx_output_arrays():
    """The arrays of a SMPL-X motion file as we write it."""
    return sequence_files.motion_arrays(MotionSequence(
        kind="smplx", poses=RNG.normal(size=(4, 165)), trans=np.zeros((4, 3)),
        betas=np.zeros(16), gender="male", framerate=30.0))


def smplx_output_bytes():
    return npz_bytes(smplx_output_arrays())


@fuzz(60)
@given(data=st.one_of(mutated(smplx_output_bytes()),
                      npz_files(list(smplx_output_arrays()), motion_arrays(165, "smplx"))))
def test_converted_sequence_reader(data):
    with tempfile.TemporaryDirectory() as folder:
        arrays = read_safely(lambda path: read_motion_file(path, "smplx"),
                             written(folder, "seq_stageii.npz", data))
        assert arrays is None or arrays["poses"].shape[1] == 165


QUALITY = {"v2v_mm": np.ones(6), "acceleration": np.ones(4), "source_acceleration": np.ones(4),
           "iterations": np.ones(6, np.int64), "fps": np.array(30.0)}


@fuzz(60)
@given(data=st.one_of(npz_files(list(QUALITY), QUALITY),
                      st.binary(max_size=200), st.just(pickle.dumps(QUALITY))))
def test_sequence_quality_reader(data):
    """The per-frame quality files that convert_sequences.py --report reads."""
    with tempfile.TemporaryDirectory() as folder:
        quality = read_safely(lambda path: read_quality(path, 6),
                              written(folder, "seq_stageii_frames.npz", data))
        assert quality is None or (quality["v2v_mm"].shape == (6,) and quality["fps"] > 0)


def test_unmutated_motion_files_read():
    with tempfile.TemporaryDirectory() as folder:
        for width, kind in ((156, "smplh"), (165, "smplx"), (72, "smpl")):
            sequence = read_motion(written(folder, f"{kind}_poses.npz", npz_bytes(
                motion_arrays(width, kind))))
            assert (sequence.kind, sequence.num_frames) == (kind, 4)
        assert read_motion_file(written(folder, "a_stageii.npz", smplx_output_bytes()),
                                "smplx")["poses"].shape == (4, 165)
        assert read_quality(written(folder, "q.npz", npz_bytes(QUALITY)), 6)["fps"] == 30.0
