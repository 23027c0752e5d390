"""The Python API (`import smplh2smplx`): the Converter against independent computations."""
import numpy as np
import pytest
import torch

import smplh2smplx
from smplh2smplx.body.deformation import load_pair_transfer
from smplh2smplx.body.lbs import BodyModel
from smplh2smplx.errors import InputError
from smplh2smplx.formats.body_models import load_body_model

FAST = smplh2smplx.FitSettings(max_iterations=5, fit_vertices=0)


@pytest.fixture(scope="module")
def converter(kit):
    return smplh2smplx.Converter(
        "smplh", "smplx", target_model=kit.body_models, source_model=kit.body_models,
        deformation_transfer=kit.deftrafo, mask=kit.mask, device="cpu", settings=FAST)


def stock_smplx_vertices(kit, params):
    """(B, 10475, 3) vertices of per-pose dicts posed by the smplx package as written."""
    import smplx
    model = smplx.create(str(kit.body_models), model_type="smplx", ext="npz", use_pca=False,
                         flat_hand_mean=True)
    with torch.no_grad():
        return np.stack([model(**{key: value.reshape(1, -1) for key, value in p.items()})
                         .vertices[0].double().numpy() for p in params])


def test_from_params_matches_the_transferred_source(kit, converter):
    """SMPL-H parameters (pose, betas, translation) in, SMPL-X parameters out: posed by
    stock smplx, they lie where the result's errors say, around the transferred SMPL-H mesh."""
    generator = torch.Generator().manual_seed(0)
    pose = 0.3 * torch.randn(3, 52, 3, generator=generator)
    betas = torch.randn(3, 10, generator=generator)
    transl = torch.tensor([[0.0, 0.0, 0.0], [1.0, -0.5, 0.2], [-2.0, 0.3, 1.5]])
    result = converter.from_params(pose, betas, transl)
    assert result.pose.shape == (3, 55, 3) and result.betas.shape == (3, 10)

    smplh = BodyModel(load_body_model(kit.body_models, "smplh"), num_betas=10,
                      dtype=torch.float64)
    with torch.no_grad():
        source = smplh(pose.double(), betas.double(), transl.double())[0].numpy()
    transfer = load_pair_transfer("smplh", "smplx", kit.deftrafo, kit.mask)
    targets = transfer.apply(source)[:, transfer.mask_ids]
    posed = stock_smplx_vertices(kit, converter.parameter_dicts(result))[:, transfer.mask_ids]
    errors = np.linalg.norm(posed - targets, axis=2).mean(1) * 1000.0
    assert np.allclose(errors, result.v2v_mean_mm.numpy(), atol=1e-3)
    assert (errors < 10.0).all(), errors
    # The translation is carried: the fits lie around their sources' positions.
    assert np.allclose(result.transl[1] - result.transl[0], transl[1], atol=0.02)


def test_from_vertices_of_one_mesh_is_exact(kit):
    """SMPL-H meshes to SMPL-H (one mesh, no transfer): the source's own parameters fit."""
    converter = smplh2smplx.Converter("smplh", "smplh", target_model=kit.body_models,
                                      device="cpu", settings=FAST)
    smplh = BodyModel(load_body_model(kit.body_models, "smplh"))
    pose = 0.2 * torch.randn(2, 52, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        vertices = smplh(pose)[0]
    result = converter.from_vertices(vertices, source_pose=pose)
    assert (result.v2v_mean_mm < 0.05).all(), result.v2v_mean_mm
    with pytest.raises(InputError, match=r"\(B, 6890, 3\)"):
        converter.from_vertices(torch.zeros(2, 10475, 3))
    with pytest.raises(InputError, match="source model"):
        converter.from_params(pose)


def test_unknown_model_kind_is_refused(kit):
    with pytest.raises(InputError, match="smplxx"):
        smplh2smplx.Converter("smplh", "smplxx", target_model=kit.body_models)


@pytest.mark.parametrize("call, message", [
    (lambda c: c.from_params(torch.zeros(4, 50, 3)), r"pose must be \(B, 52, 3\) or \(B, 156\)"),
    (lambda c: c.from_params(torch.zeros(156)), r"pose must be .* got \(156,\)"),
    (lambda c: c.from_params(torch.zeros(0, 52, 3)), r"pose is empty"),
    (lambda c: c.from_params(torch.full((2, 52, 3), float("nan"))), "pose holds NaN"),
    (lambda c: c.from_params(torch.full((2, 52, 3), 1e30)), "pose holds 1e\\+30 rad, beyond"),
    (lambda c: c.from_params(torch.zeros(2, 52, 3), betas=torch.zeros(2, 400)),
     r"betas must be \(B, S\) with S at most 16"),
    (lambda c: c.from_params(torch.zeros(2, 52, 3), betas=torch.zeros(3, 10)),
     r"betas must be \(2, S\)"),
    (lambda c: c.from_params(torch.zeros(2, 52, 3), betas=torch.full((2, 10), 1e30)),
     "betas holds 1e\\+30, beyond the limit"),
    (lambda c: c.from_params(torch.zeros(2, 52, 3), transl=torch.zeros(2, 2)),
     r"transl must be \(2, 3\)"),
    (lambda c: c.from_params(torch.zeros(2, 52, 3), transl=torch.full((2, 3), 1e30)),
     "transl holds 1e\\+30 m"),
    (lambda c: c.from_params("a pose"), "pose must be an array of numbers"),
    (lambda c: c.from_vertices(torch.full((2, 6890, 3), float("inf"))), "vertices holds NaN"),
    (lambda c: c.from_vertices(torch.full((2, 6890, 3), 1e30)), "vertices holds 1e\\+30 m"),
    (lambda c: c.from_vertices(torch.zeros(2, 6890, 3), torch.zeros(2, 5, 3)),
     r"source_pose must be \(2, 52, 3\) or \(2, 156\)"),
    (lambda c: c.convert_motions("01_01_poses.npz"),
     "motions must be a list of motion files or MotionSequence objects, got str"),
])
def test_bad_arguments_are_named(converter, call, message):
    """Every argument of the API is checked before any work: shape, batch, NaN, and numbers
    beyond anything a body has (which would overflow the fit into a solver traceback)."""
    with pytest.raises(InputError, match=message):
        call(converter)


def test_bad_settings_are_named_before_any_work(kit):
    """The settings are arguments too: each value no fit runs with is listed, as the
    commands list theirs; betas past the model's shape coefficients (its expression
    directions, or none) and per-pose files of another number of betas are refused."""
    def converter(target="smplx", **settings):
        return smplh2smplx.Converter(
            "smplh", target, target_model=kit.body_models, deformation_transfer=kit.deftrafo,
            mask=kit.mask, settings=smplh2smplx.FitSettings(**settings))

    with pytest.raises(InputError) as error:
        converter(max_iterations=-1, refine_iterations=1.5, num_betas=0,
                  tolerance=float("nan"), fit_vertices=-5, learned_start="yes")
    assert str(error.value).splitlines() == [
        "bad settings:", "  settings.max_iterations must be >= 0, got -1",
        "  settings.refine_iterations must be a whole number, got 1.5",
        "  settings.num_betas must be >= 1, got 0",
        "  settings.fit_vertices must be >= 0, got -5",
        "  settings.tolerance must be a fraction between 0 and 1 (exclusive), got nan",
        "  settings.learned_start must be True or False, got 'yes'"]
    numpy_numbers = smplh2smplx.FitSettings(max_iterations=np.int64(2), tolerance=np.float32(0.01))
    assert numpy_numbers.problems("settings.") == []        # numbers read from arrays pass
    coefficients = load_body_model(kit.body_models, "smplx").num_shape_coeffs
    with pytest.raises(InputError, match=f"has {coefficients} shape coefficients, "
                       f"{coefficients + 1} betas asked for .settings.num_betas."):
        converter(num_betas=coefficients + 1)
    with pytest.raises(InputError, match="has 10 shape coefficients, 12 betas asked for"):
        smplh2smplx.Converter("smplh", "smpl", target_model=kit.body_models,
                              settings=smplh2smplx.FitSettings(num_betas=12))
    sixteen = converter(num_betas=16, max_iterations=2)
    result = sixteen.from_vertices(torch.as_tensor(
        BodyModel(load_body_model(kit.body_models, "smplh"))(torch.zeros(1, 52, 3))[0]))
    assert result.betas.shape == (1, 16)            # in memory, any number the model holds
    with pytest.raises(InputError, match="a SMPL-X parameter file holds 10 betas, got 16 "
                       r"\(settings.num_betas\)"):
        sixteen.parameter_dicts(result)


def test_flat_and_joint_poses_give_the_same_fit(converter):
    pose = 0.2 * torch.randn(2, 52, 3, generator=torch.Generator().manual_seed(2))
    by_joint, flat = converter.from_params(pose), converter.from_params(pose.reshape(2, 156))
    assert torch.equal(by_joint.pose, flat.pose)


def test_a_pose_that_requires_grad_is_taken_as_values(converter, recwarn):
    """A network's output (requires_grad) converts as its values, with no autograd warning
    from the argument checks (torch warns once a process: warned always here)."""
    pose = 0.2 * torch.randn(2, 52, 3, generator=torch.Generator().manual_seed(0))
    torch.set_warn_always(True)
    try:
        result = converter.from_params(pose.clone().requires_grad_(True))
    finally:
        torch.set_warn_always(False)
    assert [str(warning.message) for warning in recwarn] == []
    torch.testing.assert_close(result.pose, converter.from_params(pose).pose)


def test_motions_made_in_memory_are_checked(kit, converter):
    from dataclasses import replace
    from smplh2smplx.formats.sequence_files import read_motion
    motion = read_motion(kit.amass / kit.sequences[0])
    poses = motion.poses.copy()
    poses[3, 4] = np.nan
    for bad, message in [(replace(motion, poses=poses), "frame 3 holds NaN or infinite values"),
                         (replace(motion, poses=motion.poses[:, :72]), r"expected \(\d+, 156\)"),
                         (replace(motion, trans=motion.trans * 1e6), "translation beyond"),
                         (replace(motion, gender="x"), "gender is 'x'"),
                         (replace(motion, framerate=0.0), "framerate is 0.0"),
                         (replace(motion, kind="smplx", poses=np.zeros((5, 165)),
                                  trans=np.zeros((5, 3))), "the converter's source is SMPL-H")]:
        with pytest.raises(InputError, match=message):
            converter.convert_motion(bad)
    for fps in (0, -1, "30", float("nan")):
        with pytest.raises(InputError, match="output frame rate must be a positive number"):
            converter.convert_motion(motion, fps=fps)


def test_a_motion_file_without_frame_rate_takes_source_fps(kit, converter, tmp_path):
    """source_fps is the rate of a file that holds none; a file's own rate is kept; a bad
    one is refused whatever the file holds."""
    with np.load(kit.amass / kit.sequences[0]) as archive:
        arrays = {key: archive[key][:8] if key in ("poses", "trans") else archive[key]
                  for key in ("poses", "trans", "betas", "gender", "mocap_framerate")}
    own_rate = float(arrays.pop("mocap_framerate"))
    clip, take, twin = tmp_path / "clip.npz", tmp_path / "take.npz", tmp_path / "twin.npz"
    np.savez(clip, **arrays)
    np.savez(take, **arrays, fps=np.array(own_rate))
    np.savez(twin, **arrays, fps=np.array(25.0))
    with pytest.raises(InputError, match="clip.npz: .*it lacks mocap_framerate .*--source-fps"):
        converter.convert_motion(clip)
    converted = converter.convert_motions([clip, take, twin], source_fps=25)
    assert [result.output.framerate for result in converted] == [25.0, own_rate, 25.0]
    # The clip converts as the same motion holding 25 fps does (the rate sets the filter).
    np.testing.assert_allclose(converted[0].output.poses, converted[2].output.poses, atol=1e-3)
    for bad in (0, "25", float("nan"), True):
        with pytest.raises(InputError, match="source_fps must be a number of frames per second"):
            converter.convert_motion(take, source_fps=bad)


def test_motions_converted_together_are_those_converted_one_by_one(kit, converter):
    """convert_motions: each motion's result in order, as convert_motion gives it (to the
    batched products' rounding); a bad motion among them is named before any fit."""
    from dataclasses import replace
    from smplh2smplx.formats.sequence_files import read_motion
    first = read_motion(kit.amass / kit.sequences[0])
    second = replace(first, poses=first.poses[::-1].copy(), trans=first.trans[::-1].copy())
    shorter = replace(first, poses=first.poses[:25], trans=first.trans[:25])
    together = converter.convert_motions([first, second, shorter], fps=30.0)
    assert [len(result.v2v_mm) for result in together] == [len(first.poses[::2]),
                                                          len(first.poses[::2]), 13]
    for motion, result in zip([first, second, shorter], together):
        alone = converter.convert_motion(motion, fps=30.0)
        np.testing.assert_allclose(result.output.poses, alone.output.poses, atol=1e-3)
        np.testing.assert_allclose(result.output.trans, alone.output.trans, atol=1e-5)
        np.testing.assert_allclose(result.v2v_mm, alone.v2v_mm, rtol=1e-3)
    poses = first.poses.copy()
    poses[2, 0] = np.inf
    with pytest.raises(InputError, match="frame 2 holds NaN or infinite values"):
        converter.convert_motions([first, replace(first, poses=poses)])


def test_a_converted_motion_is_written_as_the_loaders_read_it(kit, converter, tmp_path):
    """`write_motion` of a motion's output: AMASS's SMPL-X layout with 16 betas, read back by
    `read_motion` unchanged and posed by a human_body_prior-style reader (16 betas) at the
    converted body's own vertices (the stock smplx layer)."""
    import smplx
    from test_sequence_pairs import hbp_vertices

    motion = converter.convert_motion(kit.amass / kit.sequences[0], fps=30.0)
    source = smplh2smplx.read_motion(kit.amass / kit.sequences[0])
    assert source.gender != converter.gender == motion.output.gender   # the converter's model
    path = tmp_path / "01_01_stageii.npz"
    smplh2smplx.write_motion(path, motion.output)
    again = smplh2smplx.read_motion(path)
    assert again.kind == "smplx" and again.gender == motion.output.gender
    np.testing.assert_array_equal(again.poses, motion.output.poses)
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    assert arrays["poses"].shape == (len(motion.v2v_mm), 165) and arrays["betas"].shape == (16,)
    read = hbp_vertices(kit.body_models / "smplx" / "SMPLX_NEUTRAL.npz", arrays, "smplx")
    count = len(arrays["poses"])
    layer = smplx.create(str(kit.body_models), model_type="smplx", ext="npz", num_betas=16,
                         use_pca=False, flat_hand_mean=True, batch_size=count)
    output = motion.output
    pose = torch.as_tensor(output.poses, dtype=torch.float32)
    with torch.no_grad():
        posed = layer(betas=torch.as_tensor(output.betas, dtype=torch.float32).expand(count, -1),
                      transl=torch.as_tensor(output.trans, dtype=torch.float32),
                      global_orient=pose[:, :3], body_pose=pose[:, 3:66], jaw_pose=pose[:, 66:69],
                      leye_pose=pose[:, 69:72], reye_pose=pose[:, 72:75],
                      left_hand_pose=pose[:, 75:120], right_hand_pose=pose[:, 120:165],
                      expression=torch.zeros(count, 10)).vertices.numpy()
    np.testing.assert_allclose(read, posed, atol=1e-5)
