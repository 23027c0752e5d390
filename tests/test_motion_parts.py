"""Motion files written outside AMASS's releases: the pose split into named parts
(human_body_prior's names, the smplx package's, as video pose estimators save them), no
gender, other spellings of the frame rate. Each must read as the same motion as the
kit's AMASS-layout file, convert to the same output, and be refused, naming the file,
where it tells no one model."""
import zipfile

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from smplh2smplx.errors import InputError
from smplh2smplx.family import KINDS
from smplh2smplx.errors import SkipFile
from smplh2smplx.formats.sequence_files import motion_header, read_motion
from smplh2smplx.stages.sequences.run import run_sequences

from test_sequence_pairs import short_run, source_name, source_tree

# Joints of each part, written out here from human_body_prior's BodyModel and the smplx
# layers' arguments (not from the package's tables): name -> (first joint, end joint).
HBP_PARTS = {
    "smpl": {"root_orient": (0, 1), "pose_body": (1, 22), "pose_hand": (22, 24)},
    "smplh": {"root_orient": (0, 1), "pose_body": (1, 22), "pose_hand": (22, 52)},
    "smplx": {"root_orient": (0, 1), "pose_body": (1, 22), "pose_jaw": (22, 23),
              "pose_eye": (23, 25), "pose_hand": (25, 55)}}
SMPLX_PACKAGE_PARTS = {
    "smpl": {"global_orient": (0, 1), "body_pose": (1, 24)},
    "smplh": {"global_orient": (0, 1), "body_pose": (1, 22), "left_hand_pose": (22, 37),
              "right_hand_pose": (37, 52)},
    "smplx": {"global_orient": (0, 1), "body_pose": (1, 22), "jaw_pose": (22, 23),
              "leye_pose": (23, 24), "reye_pose": (24, 25), "left_hand_pose": (25, 40),
              "right_hand_pose": (40, 55)}}


def kit_motion(kit, kind):
    """The arrays of the kit's first motion as a file of `kind`."""
    with np.load(source_tree(kit, kind) / source_name(kit, kind)) as archive:
        return {key: archive[key] for key in archive.files}


def split(arrays, parts, shaped=False):
    """The motion's poses as `parts`, each (T, values) or, `shaped`, (T, joints, 3)."""
    poses = arrays["poses"]
    return {name: poses[:, 3 * first:3 * end].reshape(
        (len(poses), end - first, 3) if shaped else (len(poses), -1))
        for name, (first, end) in parts.items()}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("scheme", ["hbp", "smplx_package"])
def test_a_pose_split_into_parts_reads_as_its_poses(kit, tmp_path, kind, scheme):
    arrays = kit_motion(kit, kind)
    parts = (HBP_PARTS if scheme == "hbp" else SMPLX_PACKAGE_PARTS)[kind]
    trans_key = "trans" if scheme == "hbp" else "transl"
    path = tmp_path / "estimated.npz"
    np.savez(path, **split(arrays, parts, shaped=scheme != "hbp"),
             **{trans_key: arrays["trans"]}, betas=arrays["betas"], gender=arrays["gender"],
             fps=arrays[KINDS[kind].motion.rate_key])
    original = read_motion(source_tree(kit, kind) / source_name(kit, kind))
    motion = read_motion(path)
    assert motion.kind == kind
    np.testing.assert_array_equal(motion.poses, original.poses)
    np.testing.assert_array_equal(motion.trans, original.trans)
    assert (motion.gender, motion.framerate) == (original.gender, original.framerate)
    assert motion_header(path) == (kind, len(original.poses))


def test_parts_left_out_are_at_rest_and_a_shared_part_set_needs_the_source_model(kit,
                                                                                tmp_path):
    arrays = kit_motion(kit, "smplh")
    path = tmp_path / "body_only.npz"
    body = split(arrays, {"global_orient": (0, 1), "body_pose": (1, 22)})
    np.savez(path, **body, transl=arrays["trans"], betas=arrays["betas"],
             gender=np.array("male"), mocap_framerate=np.array(60.0))
    # Root and body alone fit SMPL-H and SMPL-X alike: the caller must say which.
    with pytest.raises(InputError, match=r"body_only.npz: its pose parts global_orient "
                       r"\(\d+, 3\), body_pose \(\d+, 63\) fit SMPL-H or SMPL-X alike; give "
                       "the source model"):
        read_motion(path)
    assert motion_header(path) == (None, len(arrays["poses"]))
    motion = read_motion(path, "smplx")
    expected = np.zeros((len(arrays["poses"]), 165))
    expected[:, :66] = arrays["poses"][:, :66]
    np.testing.assert_array_equal(motion.poses, expected)
    assert motion_header(path, "smplx") == ("smplx", len(arrays["poses"]))
    with pytest.raises(SkipFile, match="is a SMPL-H or SMPL-X sequence .* not SMPL, the "
                       "source model given"):
        read_motion(path, "smpl")
    # A surface_model_type settles it, as it is checked against `poses`.
    np.savez(path, **body, transl=arrays["trans"], betas=arrays["betas"],
             gender=np.array("male"), mocap_framerate=np.array(60.0),
             surface_model_type=np.array("smplh"))
    assert read_motion(path).kind == "smplh"
    assert motion_header(path) == ("smplh", len(arrays["poses"]))


@pytest.mark.parametrize("parts, message", [
    # PCA hands (the smplx layers' default of 6 components)
    ({"global_orient": (9, 3), "body_pose": (9, 63), "left_hand_pose": (9, 6),
      "right_hand_pose": (9, 6)}, "fit no model; the values per frame each takes"),
    # the two naming schemes mixed
    ({"root_orient": (9, 3), "body_pose": (9, 69)}, "fit no model"),
    # no root
    ({"body_pose": (9, 69)}, "fit no model"),
    # parts of different lengths, or without a frame axis
    ({"global_orient": (9, 3), "body_pose": (8, 69)}, "not arrays of one number of frames"),
    ({"global_orient": (3,), "body_pose": (69,)}, "not arrays of one number of frames"),
])
def test_parts_that_tell_no_model_are_named(tmp_path, parts, message):
    path = tmp_path / "odd.npz"
    np.savez(path, **{name: np.zeros(shape) for name, shape in parts.items()},
             trans=np.zeros((9, 3)), betas=np.zeros(10), gender=np.array("male"),
             fps=np.array(30.0))
    with pytest.raises(InputError, match=message) as error:
        read_motion(path)
    assert str(error.value).startswith(f"{path}: ")
    assert not isinstance(error.value, SkipFile)
    assert motion_header(path)[0] is None
    if "fit no model" in message:       # what each model takes, one line each
        lines = str(error.value).splitlines()[1:]
        assert [line.split(":")[0] for line in lines] == ["  SMPL", "  SMPL-H", "  SMPL-X"]
        assert "left_hand_pose 45" in lines[2]


def test_parts_beside_poses_are_not_read(kit, tmp_path):
    """AMASS's SMPL-X files hold `poses` and the same cut into parts: the parts are then
    never decompressed, so a damaged one (raw bytes, not a .npy array) harms nothing."""
    source = kit.smplx_motions / source_name(kit, "smplx")
    with np.load(source) as archive:
        arrays = {key: archive[key] for key in archive.files}
    path = tmp_path / "damaged_part_stageii.npz"
    np.savez(path, **{key: value for key, value in arrays.items() if key != "pose_body"})
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("pose_body.npy", b"\x93NUMPY not an array")
    np.testing.assert_array_equal(read_motion(path).poses, read_motion(source).poses)
    assert motion_header(path) == ("smplx", len(arrays["poses"]))


def test_integer_parts_and_files_without_any_pose_are_named(tmp_path):
    path = tmp_path / "ints.npz"
    np.savez(path, global_orient=np.zeros((4, 3), int), body_pose=np.zeros((4, 69)),
             transl=np.zeros((4, 3)), betas=np.zeros(10), gender=np.array("male"),
             fps=np.array(30.0))
    with pytest.raises(InputError, match="ints.npz: global_orient has type int64, expected "
                       "floats"):
        read_motion(path)
    np.savez(path, global_orient=np.zeros((4, 3)), body_pose=np.zeros((4, 69)),
             transl=np.zeros((4, 3), int), betas=np.zeros(10), gender=np.array("male"),
             fps=np.array(30.0))
    with pytest.raises(InputError, match="ints.npz: transl has type int64, expected floats"):
        read_motion(path)
    path = tmp_path / "singular.npz"
    np.savez(path, pose=np.zeros((4, 72)), trans=np.zeros((4, 3)), betas=np.zeros(10))
    with pytest.raises(SkipFile, match=r"singular.npz: not a motion file \(no `poses` array "
                       r"nor pose parts; members: pose, trans, betas\)"):
        read_motion(path)
    np.savez(tmp_path / "shape.npz", betas=np.zeros(16), gender=np.array("male"))
    with pytest.raises(SkipFile, match="a subject shape file"):
        read_motion(tmp_path / "shape.npz")


def test_a_file_without_gender_takes_the_one_given(kit, tmp_path):
    arrays = kit_motion(kit, "smpl")
    path = tmp_path / "no_gender.npz"
    np.savez(path, poses=arrays["poses"], trans=arrays["trans"], betas=arrays["betas"],
             frame_rate=np.array(25))
    with pytest.raises(InputError) as error:
        read_motion(path)
    assert str(error.value) == (
        f"{path}: a SMPL motion file has poses, trans, betas, gender and mocap_framerate; it "
        "lacks gender (or one given for every file: convert_sequences.py --gender)")
    motion = read_motion(path, gender="female")
    assert (motion.gender, motion.framerate) == ("female", 25.0)
    np.savez(path, poses=arrays["poses"], trans=arrays["trans"], betas=arrays["betas"])
    with pytest.raises(InputError) as error:
        read_motion(path, gender="female")
    assert str(error.value).endswith(
        "it lacks mocap_framerate (or mocap_frame_rate, fps, frame_rate, framerate: frames "
        "per second; or one given for files without it: convert_sequences.py --source-fps)")


@pytest.mark.parametrize("held", [np.array("male"), np.array("woman"), np.array(1),
                                  np.array("female", dtype=object)])
def test_a_gender_given_is_every_files_and_theirs_is_not_read(kit, tmp_path, held):
    """--gender names the model of every file, so a file's own gender, whatever it holds,
    neither changes the model nor stops the conversion; read alone, a bad one is refused
    with the way out."""
    arrays = kit_motion(kit, "smpl")
    tree = tmp_path / "in"
    tree.mkdir()
    path = tree / "take_poses.npz"
    np.savez(path, poses=arrays["poses"][:10], trans=arrays["trans"][:10],
             betas=arrays["betas"], gender=held, mocap_framerate=np.array(60.0))
    assert read_motion(path, gender="female").gender == "female"
    if str(held) != "male":
        with pytest.raises(InputError) as error:
            read_motion(path)
        assert str(error.value).startswith(f"{path}: ")
        assert str(error.value).endswith(
            "(or one given for every file: convert_sequences.py --gender)")
    options = short_run(kit, tree, tmp_path / "out", gender="female")
    summary = run_sequences(options, progress=False)
    assert (summary.failed, len(summary.rows)) == (0, 1), summary.lines()
    with np.load(options.output_dir / "in" / "take_stageii.npz") as written:
        assert str(written["gender"]) == "female"


def test_an_estimator_style_file_converts_as_its_amass_twin_and_resumes(kit, tmp_path):
    """The tree listing (`motion_header`) sees a parts file's model and frames: it converts,
    to the same arrays as the AMASS-layout file of the same motion, and a rerun finds it
    done. A file without gender converts under --gender."""
    arrays = kit_motion(kit, "smpl")
    frames = slice(0, 10)
    twin, estimated = tmp_path / "twin" / "CMU", tmp_path / "estimated" / "CMU"
    twin.mkdir(parents=True)
    estimated.mkdir(parents=True)
    np.savez(twin / "walk_poses.npz", poses=arrays["poses"][frames],
             trans=arrays["trans"][frames], betas=arrays["betas"], gender=np.array("female"),
             mocap_framerate=arrays["mocap_framerate"])
    np.savez(estimated / "walk.npz",
             **split({"poses": arrays["poses"][frames]}, SMPLX_PACKAGE_PARTS["smpl"]),
             transl=arrays["trans"][frames], betas=arrays["betas"][None],
             fps=arrays["mocap_framerate"])
    outputs = {}
    for tree in (twin, estimated):
        options = short_run(kit, tree, tmp_path / f"out_{tree.parent.name}", gender="female")
        summary = run_sequences(options, progress=False)
        assert (summary.failed, len(summary.rows)) == (0, 1), summary.lines()
        outputs[tree] = options.output_dir / "CMU" / "walk_stageii.npz"
        again = run_sequences(options, progress=False)
        assert (again.done_before, len(again.rows)) == (1, 0), again.lines()
    with np.load(outputs[twin]) as expected, np.load(outputs[estimated]) as got:
        assert expected.files == got.files
        for key in expected.files:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_a_file_without_frame_rate_takes_the_one_given_and_the_report_reads_it(kit, tmp_path):
    """A video pose estimator's output holds no frame rate: --source-fps gives it to such
    files alone (a file's own rate is kept), in the conversion and in the report."""
    from smplh2smplx.stages.sequences.report import posed_meshes
    arrays = kit_motion(kit, "smpl")
    frames = slice(0, 10)
    tree = tmp_path / "video"
    tree.mkdir()
    clip = split({"poses": arrays["poses"][frames]}, SMPLX_PACKAGE_PARTS["smpl"])
    np.savez(tree / "clip.npz", **clip, transl=arrays["trans"][frames], betas=arrays["betas"])
    np.savez(tree / "take_poses.npz", poses=arrays["poses"][frames],
             trans=arrays["trans"][frames], betas=arrays["betas"], gender=np.array("male"),
             mocap_framerate=np.array(60.0))
    assert read_motion(tree / "clip.npz", gender="male", framerate=24).framerate == 24.0
    assert read_motion(tree / "take_poses.npz", framerate=24).framerate == 60.0

    options = short_run(kit, tree, tmp_path / "out", gender="male", keep_going=True)
    summary = run_sequences(options, progress=False)
    assert (summary.failed, len(summary.rows)) == (1, 1), summary.lines()
    assert any("clip.npz" in line and "--source-fps" in line for line in summary.lines())
    options = short_run(kit, tree, tmp_path / "out", gender="male", source_fps=24.0)
    summary = run_sequences(options, progress=False)
    assert (summary.failed, summary.done_before, len(summary.rows)) == (0, 1, 1), \
        summary.lines()
    for name, rate in (("clip_stageii.npz", 24.0), ("take_stageii.npz", 60.0)):
        with np.load(tmp_path / "out" / "video" / name) as output:
            assert float(output["mocap_frame_rate"]) == rate
            assert float(output["mocap_time_length"]) == pytest.approx(10 / rate)

    shown = posed_meshes(options, "video/clip.npz", np.array([0, 9]))
    assert shown.source.shape[0] == shown.fitted.shape[0] == 2 and shown.source_kind == "smpl"
    with pytest.raises(InputError, match=r"clip.npz: .* --source-fps"):
        posed_meshes(short_run(kit, tree, tmp_path / "out", gender="male"), "video/clip.npz",
                     np.array([0]))


@pytest.mark.parametrize("layout", ["parts", "poses"])
def test_rotation_matrices_read_as_the_rotations_they_are(kit, tmp_path, layout):
    """Estimators often keep rotation matrices, (T, joints, 3, 3): read as the axis-angle of
    the same rotations (scipy's, here), in `poses` or in parts; a matrix that is not a
    rotation is refused, naming the file, the array and the frame."""
    arrays = kit_motion(kit, "smpl")
    num_frames = len(arrays["poses"])
    matrices = Rotation.from_rotvec(arrays["poses"].reshape(-1, 3)).as_matrix().reshape(
        num_frames, 24, 3, 3)
    pose = ({"global_orient": matrices[:, :1], "body_pose": matrices[:, 1:]}
            if layout == "parts" else {"poses": matrices})
    path = tmp_path / "rotations.npz"
    rest = dict(trans=arrays["trans"], betas=arrays["betas"], gender=arrays["gender"],
                fps=np.array(30.0))
    np.savez(path, **pose, **rest)
    motion = read_motion(path)
    assert motion.kind == "smpl" and motion_header(path) == ("smpl", num_frames)
    np.testing.assert_allclose(
        Rotation.from_rotvec(motion.poses.reshape(-1, 3)).as_matrix(),
        matrices.reshape(-1, 3, 3), atol=1e-9)
    # Half-precision matrices (some exports save them so) are rotations to their precision.
    np.savez(path, **{name: array.astype(np.float16) for name, array in pose.items()}, **rest)
    np.testing.assert_allclose(
        Rotation.from_rotvec(read_motion(path).poses.reshape(-1, 3)).as_matrix(),
        matrices.reshape(-1, 3, 3), atol=2e-3)
    key = "body_pose" if layout == "parts" else "poses"
    for frame, broken in ((7, 2.0 * np.eye(3)), (11, np.diag([1.0, 1.0, -1.0])),
                          (3, np.full((3, 3), np.nan))):
        bad = {name: array.copy() for name, array in pose.items()}
        bad[key][frame, 5] = broken
        np.savez(path, **bad, **rest)
        with pytest.raises(InputError, match=f"rotations.npz: {key} holds rotation matrices, "
                           f"and frame {frame}'s are not all rotations"):
            read_motion(path)
