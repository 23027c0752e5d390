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
