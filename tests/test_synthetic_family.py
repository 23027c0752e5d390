"""The synthetic kit's model family: gendered SMPL-H and SMPL-X, SMPL (neutral, male,
female), the six deformation transfers and the AMASS files a sequence converter meets."""
import pickle

import numpy as np
import pytest
import scipy.sparse
import torch

from synthetic_kit import skeleton as kit_skeleton
from synthetic_kit.kit import TRANSFER_FILES

BODY_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]
NUM_VERTICES = {"smpl": 6890, "smplh": 6890, "smplx": 10475}
GENDERS = ("neutral", "male", "female")


def read_npz(path):
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def read_pickle(path):
    with open(path, "rb") as handle:
        return pickle.load(handle)


def gendered(kit, model_type, gender, ext):
    key = model_type if gender == "neutral" else f"{model_type}_{gender}"
    return getattr(kit, f"{key}_{ext}")


def dense(array):
    return array.toarray() if scipy.sparse.issparse(array) else np.asarray(array)


def height(vertices):
    return np.ptp(vertices[:, 1])


# ----------------------------------------------------------------- gendered models


@pytest.mark.parametrize("model_type, ext", [("smplh", "npz"), ("smplh", "pkl"),
                                             ("smplx", "npz"), ("smplx", "pkl"),
                                             ("smpl", "pkl")])
def test_every_gender_has_its_file_with_one_topology(kit, model_type, ext):
    contents = {gender: (read_npz if ext == "npz" else read_pickle)(
        gendered(kit, model_type, gender, ext)) for gender in GENDERS}
    neutral = contents["neutral"]
    assert neutral["v_template"].shape == (NUM_VERTICES[model_type], 3)
    for gender in ("male", "female"):
        np.testing.assert_array_equal(contents[gender]["f"], neutral["f"])
        for key in ("v_template", "weights", "posedirs", "shapedirs", "kintree_table"):
            assert contents[gender][key].shape == neutral[key].shape, (gender, key)
    # Visibly different bodies: about 1.80 m, 1.72 m and 1.64 m tall.
    heights = {gender: height(contents[gender]["v_template"]) for gender in GENDERS}
    assert heights["male"] > heights["neutral"] + 0.05 > heights["female"] + 0.1
    # Proportions, not only size: shoulders against hips, relative to height.
    joints = {gender: dense(contents[gender]["J_regressor"]) @ contents[gender]["v_template"]
              for gender in GENDERS}
    ratio = {gender: np.ptp(joints[gender][[16, 17], 0]) / np.ptp(joints[gender][[1, 2], 0])
             for gender in GENDERS}
    assert ratio["male"] > ratio["neutral"] * 1.05 and ratio["female"] < ratio["neutral"] / 1.05


def test_smplx_creates_every_gender(kit):
    """The stock smplx package loads every gendered file and poses it."""
    import smplx
    for model_type, ext, extra in (("smplh", "pkl", dict(use_pca=False)),
                                   ("smplx", "npz", dict(use_pca=False)),
                                   ("smpl", "pkl", {})):
        heights = {}
        for gender in GENDERS:
            model = smplx.create(str(kit.body_models), model_type=model_type, gender=gender,
                                 ext=ext, num_betas=10, **extra)
            output = model(body_pose=torch.full((1, model.NUM_BODY_JOINTS * 3), 0.1))
            vertices = output.vertices[0].detach().numpy()
            assert vertices.shape == (NUM_VERTICES[model_type], 3)
            assert np.all(np.isfinite(vertices))
            heights[gender] = height(model.v_template.numpy())
        assert heights["male"] > heights["neutral"] > heights["female"], model_type


# ----------------------------------------------------------------- SMPL


def test_smpl_files_have_the_official_keys_and_shapes(kit):
    smpl = read_pickle(kit.smpl_pkl)
    shapes = {"v_template": (6890, 3), "f": (13776, 3), "J_regressor": (24, 6890),
              "kintree_table": (2, 24), "weights": (6890, 24), "posedirs": (6890, 3, 207),
              "shapedirs": (6890, 3, 10)}
    for key, shape in shapes.items():
        assert smpl[key].shape == shape, key
    assert scipy.sparse.issparse(smpl["J_regressor"])
    assert not any(key.startswith("hands_") for key in smpl)
    parents = smpl["kintree_table"][0].astype(np.int64)
    parents[0] = -1
    assert parents.tolist() == BODY_PARENTS + [20, 21]
    np.testing.assert_allclose(smpl["weights"].sum(axis=1), 1.0, atol=1e-9)
    regressor = dense(smpl["J_regressor"])
    assert np.all(regressor >= 0)
    np.testing.assert_allclose(regressor.sum(axis=1), 1.0, atol=1e-9)


def test_smpl_shares_the_smplh_body_with_one_joint_per_hand(kit):
    for gender in GENDERS:
        smpl = read_pickle(gendered(kit, "smpl", gender, "pkl"))
        smplh = read_npz(gendered(kit, "smplh", gender, "npz"))
        np.testing.assert_array_equal(smpl["f"], smplh["f"])
        np.testing.assert_array_equal(smpl["v_template"], smplh["v_template"])
        # The body is skinned alike; each SMPL hand joint takes its whole hand's weights.
        np.testing.assert_allclose(smpl["weights"][:, :22], smplh["weights"][:, :22],
                                   atol=1e-12)
        np.testing.assert_allclose(smpl["weights"][:, 22], smplh["weights"][:, 22:37].sum(1),
                                   atol=1e-12)
        np.testing.assert_allclose(smpl["weights"][:, 23], smplh["weights"][:, 37:52].sum(1),
                                   atol=1e-12)
        np.testing.assert_allclose(dense(smpl["J_regressor"])[:22],
                                   smplh["J_regressor"][:22], atol=1e-12)
        np.testing.assert_allclose(smpl["shapedirs"], smplh["shapedirs"][:, :, :10])
    # Each hand joint sits in its hand, past the wrist, among the knuckles.
    smpl = read_pickle(kit.smpl_pkl)
    joints = dense(smpl["J_regressor"]) @ smpl["v_template"]
    design = kit_skeleton.design_skeleton()
    for hand, wrist in ((22, 20), (23, 21)):
        assert 0.06 < np.linalg.norm(joints[hand] - joints[wrist]) < 0.12
        assert np.linalg.norm(joints[hand] - design.smpl_joints()[hand]) < 0.002


def test_smpl_and_smplh_pose_alike_with_still_fingers(kit):
    """SMPL posed like SMPL-H (flat hands, hand joints still) gives the same body: only
    the hand correctives may differ."""
    import smplx
    smpl = smplx.create(str(kit.body_models), model_type="smpl", num_betas=10)
    smplh = smplx.create(str(kit.body_models), model_type="smplh", ext="pkl", use_pca=False,
                         flat_hand_mean=True, num_betas=10)
    rng = np.random.default_rng(0)
    body = torch.as_tensor(rng.normal(0.0, 0.3, (1, 63)), dtype=torch.float32)
    betas = torch.as_tensor(rng.normal(0.0, 1.0, (1, 10)), dtype=torch.float32)
    a = smpl(body_pose=torch.cat([body, torch.zeros(1, 6)], dim=1), betas=betas).vertices
    b = smplh(body_pose=body, betas=betas).vertices
    distance = (a - b).norm(dim=-1)[0].detach().numpy()
    assert distance.max() < 1e-4


# ----------------------------------------------------------------- transfers


@pytest.mark.parametrize("name", sorted(TRANSFER_FILES))
def test_deformation_transfers_are_nearest_point_barycentric_rows(kit, name):
    source, target = name.split("2")
    path = kit.deftrafo if name == "smplh2smplx" else getattr(kit, f"{name}_deftrafo")
    assert path.name == TRANSFER_FILES[name]
    matrix = read_pickle(path)["mtx"]
    assert scipy.sparse.issparse(matrix)
    assert matrix.shape == (NUM_VERTICES[target], 2 * NUM_VERTICES[source])
    matrix = scipy.sparse.csr_matrix(matrix)
    assert matrix[:, NUM_VERTICES[source]:].nnz == 0                # vertex part only
    rows = np.arange(NUM_VERTICES[target])
    if target == "smplx":
        rows = np.load(kit.mask)
    assert np.all(np.diff(matrix.indptr)[rows] == 3) and np.all(matrix.data >= 0)
    np.testing.assert_allclose(np.asarray(matrix.sum(axis=1)).ravel()[rows], 1.0, atol=1e-9)
    # The three columns of a row are the corners of one source triangle.
    faces = read_pickle(kit.smplx_pkl if source == "smplx" else kit.smplh_pkl)["f"]
    triangles = {tuple(sorted(face)) for face in faces.tolist()}
    for row in rows[::97]:
        assert tuple(sorted(matrix.indices[matrix.indptr[row]:matrix.indptr[row + 1]])) \
            in triangles
    # Applied to the source template it lands on the target template (same registered
    # body): within about a centimetre, or exactly between SMPL and SMPL-H.
    templates = {"smpl": read_pickle(kit.smpl_pkl)["v_template"],
                 "smplh": read_npz(kit.smplh_npz)["v_template"],
                 "smplx": read_npz(kit.smplx_npz)["v_template"]}
    moved = matrix[:, :NUM_VERTICES[source]] @ templates[source]
    distance = np.linalg.norm(moved - templates[target], axis=1)[rows]
    if {source, target} == {"smpl", "smplh"}:
        assert distance.max() < 1e-9
    else:
        assert np.median(distance) < 0.012 and distance.max() < 0.05


def test_transfers_with_smpl_equal_those_with_smplh(kit):
    """SMPL and SMPL-H share one topology and one registered template."""
    for smpl_name, smplh_name in (("smpl2smplx_deftrafo", "deftrafo"),
                                  ("smplx2smpl_deftrafo", "smplx2smplh_deftrafo")):
        a = read_pickle(getattr(kit, smpl_name))["mtx"]
        b = read_pickle(getattr(kit, smplh_name))["mtx"]
        assert (a != b).nnz == 0


# ----------------------------------------------------------------- AMASS


def test_amass_sequences_carry_gender_and_the_tree_holds_other_files(kit):
    genders = set()
    for relative in kit.sequences:
        data = read_npz(kit.amass / relative)
        genders.add(str(data["gender"]))
        assert data["betas"].shape == (16,) and data["dmpls"].shape[1] == 8
        assert data["trans"].shape == (len(data["poses"]), 3)
    assert genders == {"male", "female", "neutral"}
    smplx_file = read_npz(kit.amass_smplx)
    assert kit.amass_smplx.name.endswith("_stageii.npz")
    assert kit.amass_smplx.is_relative_to(kit.amass)
    frames = len(smplx_file["poses"])
    assert smplx_file["poses"].shape == (frames, 165)
    assert str(smplx_file["surface_model_type"]) == "smplx"
    assert float(smplx_file["mocap_frame_rate"]) > 0 and "mocap_framerate" not in smplx_file
    np.testing.assert_array_equal(
        np.concatenate([smplx_file[key] for key in ("root_orient", "pose_body", "pose_jaw",
                                                    "pose_eye", "pose_hand")], axis=1),
        smplx_file["poses"])
    source = read_npz(kit.amass / kit.sequences[0])
    np.testing.assert_array_equal(smplx_file["pose_hand"], source["poses"][:, 66:])
    shape = read_npz(kit.amass_shape)
    assert kit.amass_shape.name == "shape.npz" and shape["betas"].shape == (16,)
    assert "poses" not in shape
    # The SMPL-H sequences ground their own gender's body: feet on the floor.
    assert all(0.6 < read_npz(kit.amass / r)["trans"][:, 2].min() for r in kit.sequences)


def test_only_the_asked_for_models_are_written(tmp_path):
    from synthetic_kit import write_synthetic_kit
    kit = write_synthetic_kit(tmp_path, seed=0, n_sequences=2, frames_per_sequence=8,
                              genders=("neutral",), model_types=("smplh", "smpl"))
    assert kit.smplh_npz.is_file() and kit.smpl_pkl.is_file()
    assert kit.smpl2smplh_deftrafo.is_file() and kit.smplh2smpl_deftrafo.is_file()
    for absent in (kit.smplx_npz, kit.smplh_male_npz, kit.smpl_female_pkl, kit.deftrafo,
                   kit.mask, kit.smplx2smplh_deftrafo):
        assert not absent.exists(), absent
    assert {str(read_npz(kit.amass / r)["gender"]) for r in kit.sequences} == {"neutral"}
    with pytest.raises(ValueError, match="genders"):
        write_synthetic_kit(tmp_path, genders=("other",))
