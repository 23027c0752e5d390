"""The fitter's normal equations against autograd, and recovery of known parameters."""
import numpy as np
import pytest
import roma
import torch

from smplh2smplx.body_models import BodyModelData
from smplh2smplx.fitter import FitSettings, SmplxFitter
from smplh2smplx.lbs import BodyModel

BODY_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]


def smplx_parents():
    parents = BODY_PARENTS + [15, 15, 15]
    for wrist in (20, 21):
        for _finger in range(5):
            first = len(parents)
            parents += [wrist, first, first + 1]
    return np.array(parents)


def random_smplx(num_vertices=600, seed=0, dense_correctives=True):
    """A small random model with the SMPL-X tree: vertices scattered around the joints,
    each skinned to its joint and that joint's parent (none to the eyes, as in SMPL-X)."""
    rng = np.random.default_rng(seed)
    parents = smplx_parents()
    joints = np.zeros((55, 3))
    for joint in range(1, 55):
        joints[joint] = joints[parents[joint]] + rng.normal(size=3) * 0.1
    owner = rng.integers(0, 55, num_vertices)
    owner[np.isin(owner, [23, 24])] = 15
    rows = np.arange(num_vertices)
    weights = np.zeros((num_vertices, 55))
    weights[rows, owner] = 1.0
    weights[rows, np.maximum(parents[owner], 0)] += 0.5
    weights /= weights.sum(1, keepdims=True)
    v_template = joints[owner] + rng.normal(size=(num_vertices, 3)) * 0.03
    distance = ((joints[:, None] - v_template[None]) ** 2).sum(-1)
    j_regressor = np.exp(-distance / 0.002)
    j_regressor /= j_regressor.sum(1, keepdims=True)
    posedirs = rng.normal(size=(num_vertices, 3, 54, 9)) * 0.01
    if not dense_correctives:
        near = (owner[:, None] == np.arange(1, 55)) | (parents[owner][:, None] == np.arange(1, 55))
        posedirs *= near[:, None, :, None]
    return BodyModelData(
        kind="smplx", path="random", v_template=v_template, faces=np.zeros((0, 3), np.int64),
        j_regressor=j_regressor, parents=parents, weights=weights,
        posedirs=posedirs.reshape(num_vertices, 3, 486),
        shapedirs=rng.normal(size=(num_vertices, 3, 20)) * 0.02, num_shape_coeffs=10)


@pytest.mark.parametrize("dense_correctives", [True, False])
def test_normal_equations_match_autograd(dense_correctives):
    data = random_smplx(dense_correctives=dense_correctives)
    fitter = SmplxFitter(data, np.arange(data.num_vertices), FitSettings(fit_vertices=0),
                         dtype=torch.float64)
    batch = 2
    torch.manual_seed(0)
    rotmats = roma.rotvec_to_rotmat(torch.randn(batch, 55, 3, dtype=torch.float64) * 0.5)
    betas = torch.randn(batch, 10, dtype=torch.float64)
    transl = torch.randn(batch, 3, dtype=torch.float64)
    vertices, cache = fitter._pose(fitter.mask_set, rotmats, betas, transl)
    residual = torch.randn_like(vertices) * 0.01
    hessian, gradient = fitter._normal_equations(fitter.mask_set, rotmats, cache, residual)

    def posed(step):
        state = fitter._apply_step(rotmats, betas, transl, step)
        return fitter._pose(fitter.mask_set, *state)[0].reshape(batch, -1)

    full = torch.autograd.functional.jacobian(
        posed, torch.zeros(batch, fitter.num_unknowns, dtype=torch.float64),
        vectorize=True, strategy="forward-mode")
    jac = torch.stack([full[b, :, b] for b in range(batch)])
    expected_hessian = jac.transpose(1, 2) @ jac
    expected_gradient = (jac.transpose(1, 2) @ residual.reshape(batch, -1, 1)).squeeze(-1)
    assert torch.allclose(hessian, expected_hessian, atol=1e-9 * expected_hessian.abs().max())
    assert torch.allclose(gradient, expected_gradient, atol=1e-9 * expected_gradient.abs().max())


def test_pose_matches_body_model():
    """The fitter's own forward pass equals the general LBS module on the mask."""
    data = random_smplx(seed=1)
    mask = np.arange(0, data.num_vertices, 2)
    fitter = SmplxFitter(data, mask, dtype=torch.float64)
    pose = torch.randn(3, 55, 3, dtype=torch.float64) * 0.4
    betas = torch.randn(3, 10, dtype=torch.float64)
    transl = torch.randn(3, 3, dtype=torch.float64)
    ours = fitter.posed_vertices(roma.rotvec_to_rotmat(pose), betas, transl)
    reference = BodyModel(data, num_betas=10, dtype=torch.float64)(pose, betas, transl)[0]
    assert torch.allclose(ours, reference[:, mask], atol=1e-12)


@pytest.mark.parametrize("from_source_pose", [True, False])
def test_recovers_known_parameters(from_source_pose):
    data = random_smplx(num_vertices=3000, seed=2, dense_correctives=False)
    mask = np.arange(data.num_vertices)
    fitter = SmplxFitter(data, mask, FitSettings(fit_vertices=1500), dtype=torch.float64)
    torch.manual_seed(1)
    pose = torch.randn(4, 55, 3, dtype=torch.float64) * 0.3
    pose[:, 23:25] = 0  # eyes move no masked vertex
    betas = torch.randn(4, 10, dtype=torch.float64) * 0.5
    targets = fitter.posed_vertices(roma.rotvec_to_rotmat(pose), betas,
                                    torch.tensor([[0.1, -0.2, 0.3]], dtype=torch.float64))
    init = pose + torch.randn_like(pose) * 0.15 if from_source_pose else None
    if not from_source_pose:
        pose[:, 1:] *= 0.3  # the mesh-only start needs a pose not too far from rest
        targets = fitter.posed_vertices(roma.rotvec_to_rotmat(pose), betas,
                                        torch.tensor([[0.1, -0.2, 0.3]], dtype=torch.float64))
    result = fitter.fit(targets, init)
    assert result.v2v_max_mm.max() < 0.01
    assert torch.allclose(result.betas, betas, atol=1e-4)
    assert result.converged.all()
