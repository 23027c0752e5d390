"""The fitter's derivatives and steps against autograd, recovery of known parameters, and
the independence of the poses of a batch."""
from dataclasses import replace

import numpy as np
import pytest
import roma
import torch

from smplh2smplx import family
from smplh2smplx.body.lbs import BodyModel
from smplh2smplx.runtime import torch_threads
from smplh2smplx.fit.fitter import SIGNIFICANCE, BodyFitter, FitSettings, significant_mean
from smplh2smplx.fit.problem import (apply_step, forward, gauss_newton, gradient,
                                     jacobian_product, posed_vertices, skew)
from smplh2smplx.fit.sampling import gauss_newton_sample, stratified_subset
from smplh2smplx.fit.solver import EXACT_FIT_RMS, damped_step
from smplh2smplx.fit.target import TargetModel, subset_size
from smplh2smplx.formats.body_models import BodyModelData

def random_smplx(num_vertices=600, seed=0, dense_correctives=True, blended=True):
    """A small random model with the SMPL-X tree: vertices scattered around the joints,
    each skinned to its joint and (when `blended`) that joint's parent (none to the eyes,
    as in SMPL-X)."""
    rng = np.random.default_rng(seed)
    parents = family.parents("smplx")
    joints = np.zeros((55, 3))
    for joint in range(1, 55):
        joints[joint] = joints[parents[joint]] + rng.normal(size=3) * 0.1
    owner = rng.integers(0, 55, num_vertices)
    owner[np.isin(owner, [23, 24])] = 15
    rows = np.arange(num_vertices)
    weights = np.zeros((num_vertices, 55))
    weights[rows, owner] = 1.0
    if blended:
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


def target_model(data, mask=None, settings=FitSettings(), part_vertices=16):
    """The fit problem's model of `data` on `mask` (default: every vertex), in float64."""
    mask = np.arange(data.num_vertices) if mask is None else mask
    return TargetModel(data, mask, settings.num_betas, settings.fit_betas, settings.fit_vertices,
                       part_vertices, dtype=torch.float64)


def random_state(model, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    rotmats = roma.rotvec_to_rotmat(
        torch.randn(batch, 55, 3, generator=generator, dtype=torch.float64) * 0.5)
    betas = torch.randn(batch, model.num_betas, generator=generator, dtype=torch.float64)
    transl = torch.randn(batch, 3, generator=generator, dtype=torch.float64)
    return rotmats, betas, transl


def autograd_jacobian(model, vset, rotmats, betas, transl):
    """(B, S*3, P) derivative of the posed vertices of `vset` (vertex by vertex, xyz)
    with respect to a step of the unknowns, by forward-mode autograd."""
    batch = len(rotmats)

    def posed(step):
        state = apply_step(model, rotmats, betas, transl, step)
        return forward(model, vset, *state)[0].permute(2, 0, 1).reshape(batch, -1)

    full = torch.autograd.functional.jacobian(
        posed, torch.zeros(batch, model.num_unknowns, dtype=torch.float64),
        vectorize=True, strategy="forward-mode")
    return torch.stack([full[b, :, b] for b in range(batch)])


def derivatives(model, vset, seed=0):
    """(our J^T W r, our J^T J, autograd's J^T W r, autograd's J^T J) at a random state
    and residual, on the vertices of `vset` (W: their loss weights)."""
    rotmats, betas, transl = random_state(model, seed=seed)
    vertices, state = forward(model, vset, rotmats, betas, transl)
    residual = torch.randn(vertices.shape, generator=torch.Generator().manual_seed(seed),
                           dtype=torch.float64) * 0.01
    state.residual = residual
    jac = autograd_jacobian(model, vset, rotmats, betas, transl)
    weights = vset.loss_weights.repeat_interleave(3)
    expected_gradient = jac.transpose(1, 2) @ (weights * residual.permute(2, 0, 1).reshape(
        len(rotmats), -1))[..., None]
    return (gradient(model, vset, state), gauss_newton(model, state),
            expected_gradient.squeeze(-1), jac.transpose(1, 2) @ jac)


def assert_close(ours, expected, relative=1e-9):
    assert torch.allclose(ours, expected, rtol=0, atol=relative * expected.abs().max()), (
        (ours - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize("dense_correctives", [True, False])
@pytest.mark.parametrize("fit_betas", [True, False])
def test_gradient_matches_autograd(dense_correctives, fit_betas):
    """J^T r is exact: blended skinning, pose correctives, betas, translation."""
    data = random_smplx(dense_correctives=dense_correctives)
    model = target_model(data, settings=FitSettings(fit_betas=fit_betas))
    ours, _, expected, _ = derivatives(model, model.mask_set)
    assert_close(ours, expected)


def test_subset_gradient_is_weighted():
    """On a vertex subset the gradient is that of the weighted loss, J^T W r."""
    data = random_smplx()
    model = target_model(data, settings=FitSettings(fit_vertices=200))
    assert model.fit_set.weighted and len(model.fit_set.positions) < data.num_vertices
    ours, _, expected, _ = derivatives(model, model.fit_set)
    assert_close(ours, expected)


@pytest.mark.parametrize("fit_betas", [True, False])
def test_jacobian_product_matches_autograd(fit_betas):
    """J v is exact: blended skinning, pose correctives, betas, translation."""
    data = random_smplx()
    model = target_model(data, settings=FitSettings(fit_betas=fit_betas))
    rotmats, betas, transl = random_state(model)
    state = forward(model, model.mask_set, rotmats, betas, transl)[1]
    step = torch.randn(len(rotmats), model.num_unknowns, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(3))
    jac = autograd_jacobian(model, model.mask_set, rotmats, betas, transl)
    expected = (jac @ step[..., None]).view(len(rotmats), -1, 3).permute(1, 2, 0)
    assert_close(jacobian_product(model, model.mask_set, state, step), expected)


def test_step_improves_on_the_sample():
    """With a poor sample (4 vertices per part), the conjugate-gradient step is much closer
    (in the norm of the system) to the exact damped Gauss-Newton step than the step of the
    sample's system alone."""
    data = random_smplx(num_vertices=3000, seed=4)
    model = target_model(data, part_vertices=4)
    rotmats, betas, transl = random_state(model, seed=2)
    vertices, state = forward(model, model.mask_set, rotmats, betas, transl)
    state.residual = vertices * 0.01
    grad = gradient(model, model.mask_set, state)
    sample = gauss_newton(model, state)
    scaled = 1e-3 * torch.diagonal(sample, dim1=1, dim2=2)
    chol = torch.linalg.cholesky(sample + torch.diag_embed(scaled))
    jac = autograd_jacobian(model, model.mask_set, rotmats, betas, transl)
    system = jac.transpose(1, 2) @ jac + torch.diag_embed(scaled)
    exact = torch.cholesky_solve(-grad[..., None], torch.linalg.cholesky(system))  # SPD

    def error(step):                                  # ||step - exact|| in the system's norm
        difference = step[..., None] - exact
        return (difference.transpose(1, 2) @ system @ difference).squeeze()

    no_curvature = grad.new_zeros(len(grad), len(model.joint_slots), 3, 3)
    ours = damped_step(model, model.mask_set, state, chol, scaled, grad, no_curvature)
    sample_step = -torch.cholesky_solve(grad[..., None], chol).squeeze(-1)
    # Measured: 8 and 10% of the sample step's error.
    assert (error(ours) < 0.3 * error(sample_step)).all(), (error(ours), error(sample_step))


def test_step_is_two_conjugate_gradient_iterates_on_the_exact_system():
    """The damped step is the second preconditioned conjugate-gradient iterate on the exact
    weighted system J^T W J + C + lambda D (the last iterate's length taken from (J d)^T W
    (J d)), computed here with autograd's dense J on a weighted subset."""
    data = random_smplx(seed=5)
    model = target_model(data, settings=FitSettings(fit_vertices=200), part_vertices=4)
    vset = model.fit_set
    rotmats, betas, transl = random_state(model, seed=6)
    vertices, state = forward(model, vset, rotmats, betas, transl)
    state.residual = vertices * 0.01
    grad = gradient(model, vset, state)
    generator = torch.Generator().manual_seed(7)
    factors = torch.randn(len(grad), len(model.joint_slots), 3, 3, generator=generator,
                          dtype=torch.float64) * 1e-3
    curvature = factors @ factors.transpose(-1, -2)
    sample = gauss_newton(model, state)
    scaled = 1e-2 * torch.diagonal(sample, dim1=1, dim2=2)
    chol = torch.linalg.cholesky(sample + torch.diag_embed(scaled))
    jac = autograd_jacobian(model, vset, rotmats, betas, transl)
    weights = vset.loss_weights.repeat_interleave(3)
    system = (jac.transpose(1, 2) * weights) @ jac + torch.diag_embed(scaled)
    for block in range(len(model.joint_slots)):
        rows = slice(3 * block, 3 * block + 3)
        system[:, rows, rows] += curvature[:, block]

    def solve_sample(vector):
        return torch.cholesky_solve(vector[..., None], chol).squeeze(-1)

    def times_system(vector):
        return (system @ vector[..., None]).squeeze(-1)

    remainder = -grad
    direction = solve_sample(remainder)
    product = (remainder * direction).sum(1)
    length = product / (direction * times_system(direction)).sum(1)
    expected = length[:, None] * direction
    remainder = remainder - length[:, None] * times_system(direction)
    preconditioned = solve_sample(remainder)
    new_product = (remainder * preconditioned).sum(1)
    direction = preconditioned + (new_product / product)[:, None] * direction
    expected = expected + (new_product / (direction * times_system(direction)).sum(1))[
        :, None] * direction
    assert_close(damped_step(model, vset, state, chol, scaled, grad, curvature), expected)


@pytest.mark.parametrize("corrective_scale, relative", [(0.0, 1e-9), (0.1, 0.05)])
def test_curvature_blocks_match_autograd(corrective_scale, relative):
    """The residual's curvature within each joint's rotation, on a weighted subset: the
    loss's second derivative (autograd) less J^T W J. Exact without pose correctives; with
    correctives of 1 mm per unit of feature, within 5% (measured 3.5%: the correctives'
    turn with the skinning, left out, grows with them: 29% of the largest block at 10 mm)."""
    data = random_smplx()
    data.posedirs[:] *= corrective_scale
    model = target_model(data)
    vset = model.fit_set
    assert vset.weighted
    rotmats, betas, transl = random_state(model)
    vertices, state = forward(model, vset, rotmats, betas, transl)
    state.residual = torch.randn(vertices.shape, generator=torch.Generator().manual_seed(5),
                                 dtype=torch.float64) * 0.01
    targets = vertices - state.residual
    batch, unknowns, slots = len(rotmats), model.num_unknowns, len(model.joint_slots)

    def loss(step):          # apply_step, with an exponential that autograd differentiates twice
        step = step.view(batch, -1)
        turned = rotmats.clone()
        increments = torch.linalg.matrix_exp(skew(step[:, :3 * slots].reshape(batch, -1, 3)))
        turned[:, model.joint_slots] = increments @ rotmats[:, model.joint_slots]
        posed = forward(model, vset, turned, betas + step[:, 3 * slots:-3],
                        transl + step[:, -3:])[0]
        return 0.5 * (vset.loss_weights[:, None, None] * (posed - targets) ** 2).sum()

    full = torch.autograd.functional.hessian(loss, torch.zeros(batch * unknowns,
                                                               dtype=torch.float64))
    jac = autograd_jacobian(model, vset, rotmats, betas, transl)
    weights = vset.loss_weights.repeat_interleave(3)
    expected = torch.stack([
        full.view(batch, unknowns, batch, unknowns)[b, :, b]
        - jac[b].T @ (weights[:, None] * jac[b]) for b in range(batch)])
    expected = torch.stack([expected[:, 3 * k:3 * k + 3, 3 * k:3 * k + 3]
                            for k in range(slots)], 1)
    grad, blocks = gradient(model, vset, state, curvature=True)
    assert_close(grad, gradient(model, vset, state))
    assert_close(blocks, expected, relative)


@pytest.mark.parametrize("kind", ["blended, no correctives", "correctives, one joint each"])
@pytest.mark.parametrize("fit_betas", [True, False])
def test_gauss_newton_matches_autograd(kind, fit_betas):
    """J^T J on every masked vertex is exact for blended skinning, and for pose
    correctives of vertices skinned to one joint (the approximation the fitter makes for
    correctives of blended vertices is exact there)."""
    if kind == "blended, no correctives":
        data = random_smplx()
        data.posedirs[:] = 0.0
    else:
        data = random_smplx(blended=False)
    model = target_model(data, settings=FitSettings(fit_betas=fit_betas), part_vertices=0)
    _, hessian, _, expected = derivatives(model, model.mask_set, seed=1)
    assert_close(hessian, expected)


def test_gauss_newton_close_with_blended_correctives():
    """Blended vertices with pose correctives: J^T J within 0.1% (measured 0.04%)."""
    data = random_smplx()
    model = target_model(data, part_vertices=0)
    _, hessian, _, expected = derivatives(model, model.mask_set)
    assert_close(hessian, expected, relative=1e-3)


def test_samples_stand_for_every_vertex():
    """The weights of the Gauss-Newton sample and of a loss subset sum to the part sizes."""
    data = random_smplx(num_vertices=3000, seed=3)
    mask = np.arange(0, 3000, 2)
    labels = data.weights[mask].argmax(1)
    sample = gauss_newton_sample(data, mask, 8, np.random.default_rng(0))
    for part, positions, weights in sample:
        assert (labels[positions] == part).all()
        assert 0 < len(positions) <= min(8, (labels == part).sum())
        assert weights.sum() == (labels == part).sum()
    positions, weights = stratified_subset(labels, 300, np.random.default_rng(0))
    assert len(np.unique(positions)) == len(positions)
    assert np.isclose(weights.sum(), len(mask))
    for part in np.unique(labels):
        assert np.isclose(weights[labels[positions] == part].sum(), (labels == part).sum())


def test_pose_matches_body_model():
    """The fitter's own forward pass equals the general LBS module on the mask."""
    data = random_smplx(seed=1)
    mask = np.arange(0, data.num_vertices, 2)
    model = target_model(data, mask)
    pose = torch.randn(3, 55, 3, dtype=torch.float64) * 0.4
    betas = torch.randn(3, 10, dtype=torch.float64)
    transl = torch.randn(3, 3, dtype=torch.float64)
    ours = posed_vertices(model, roma.rotvec_to_rotmat(pose), betas, transl)
    reference = BodyModel(data, num_betas=10, dtype=torch.float64)(pose, betas, transl)[0]
    assert torch.allclose(ours, reference[:, mask], atol=1e-12)
    # One shape for the whole batch (its blend shapes added once) poses as repeated per pose.
    body = BodyModel(data, num_betas=10, dtype=torch.float64)
    shared = body(pose, betas[0], transl)
    repeated = body(pose, betas[:1].expand(3, -1), transl)
    for got, expected in zip(shared, repeated):
        assert torch.allclose(got, expected, atol=1e-12)
    assert not torch.allclose(shared[0], reference, atol=1e-6)


def known_targets(fitter, pose, betas):
    return posed_vertices(fitter.model, roma.rotvec_to_rotmat(pose), betas,
                                 torch.tensor([[0.1, -0.2, 0.3]], dtype=torch.float64))


@pytest.mark.parametrize("settings", [FitSettings(fit_vertices=0),
                                      FitSettings(fit_vertices=1000, refine_iterations=1)],
                         ids=["whole mask", "subset then mask"])
@pytest.mark.parametrize("from_source_pose", [True, False])
def test_recovers_known_parameters(from_source_pose, settings):
    data = random_smplx(num_vertices=3000, seed=2, dense_correctives=False)
    mask = np.arange(data.num_vertices)
    fitter = BodyFitter(data, mask, settings, dtype=torch.float64)
    torch.manual_seed(1)
    pose = torch.randn(4, 55, 3, dtype=torch.float64) * 0.3
    pose[:, 23:25] = 0  # eyes move no masked vertex
    betas = torch.randn(4, 10, dtype=torch.float64) * 0.5
    init = pose + torch.randn_like(pose) * 0.15
    if not from_source_pose:
        pose[:, 1:] *= 0.3  # the mesh-only start needs a pose not too far from rest
        init = None
    result = fitter.fit(known_targets(fitter, pose, betas), init)
    # An exact target stops at EXACT_FIT_RMS: every pose's mean error is below it.
    assert result.v2v_mean_mm.max() < EXACT_FIT_RMS * 1000
    assert result.v2v_max_mm.max() < 0.02
    assert torch.allclose(result.betas, betas, atol=1e-4)
    assert result.converged.all()


def test_an_exact_start_stops_at_once():
    """Starts the model already fits to float precision (SMPL -> SMPL-H share a mesh) stop
    before any derivative, no step counted, whatever their batch mates do: their loss can
    only fall by rounding."""
    data = random_smplx(num_vertices=900, seed=3, dense_correctives=False)
    fitter = BodyFitter(data, np.arange(data.num_vertices), FitSettings(fit_vertices=0))
    torch.manual_seed(4)
    pose = torch.randn(3, 55, 3) * 0.3
    betas = torch.randn(3, 10) * 0.5
    transl = torch.tensor([[0.1, -0.2, 0.3]]).expand(3, -1)
    targets = posed_vertices(fitter.model, roma.rotvec_to_rotmat(pose), betas, transl)
    result = fitter.fit(targets, pose, betas, transl)
    assert result.iterations.tolist() == [0, 0, 0]
    assert result.converged.all()
    assert result.v2v_max_mm.max() < 1e-3
    off = pose.clone()
    off[1, 1:22] += 0.05
    with torch_threads(1):                                # one slice: one batch
        mixed = fitter.fit(targets, off, betas, transl)
    assert mixed.iterations[0] == mixed.iterations[2] == 0 and mixed.iterations[1] > 1
    assert mixed.converged[[0, 2]].all()


def test_subset_is_at_most_a_third_of_the_mask():
    assert subset_size(3000, 6890) == 6890 // 3                  # SMPL's mesh: cut
    assert subset_size(3000, 9322) == 3000                       # SMPL-X's mask: kept
    assert subset_size(0, 6890) == 0                             # the whole mask


def test_a_cut_subset_ends_with_a_whole_mask_step():
    """A subset cut to a third of the mask is followed by one whole-mask step even at
    refine_iterations 0 (one more step per pose than a subset asked for at that size);
    the error reported is the whole mask's, recomputed here from the pose returned."""
    data = random_smplx(num_vertices=900, seed=3, dense_correctives=False)
    mask = np.arange(data.num_vertices)
    torch.manual_seed(5)
    pose = torch.randn(2, 55, 3, dtype=torch.float64) * 0.3
    betas = torch.randn(2, 10, dtype=torch.float64) * 0.5
    init = pose + torch.randn_like(pose) * 0.1
    steps = {}
    for asked in (300, 600):
        fitter = BodyFitter(data, mask, FitSettings(max_iterations=1, fit_vertices=asked),
                            dtype=torch.float64)
        assert fitter.model.subset_cut == (asked == 600)
        targets = known_targets(fitter, pose, betas)
        result = fitter.fit(targets, init)
        steps[asked] = result.iterations.tolist()
        posed = posed_vertices(fitter.model, roma.rotvec_to_rotmat(result.pose), result.betas,
                               result.transl)
        expected = (posed - targets).norm(dim=-1).mean(1) * 1000
        assert torch.allclose(result.v2v_mean_mm, expected, rtol=1e-9)
    assert steps == {300: [1, 1], 600: [2, 2]}


def test_errors_on_a_named_vertex_set():
    """`error_set` reports the errors on that set, its loss weights weighing the mean: the
    fit's own subset (its last residual), another fitter's subset (posed again) or, by
    default, the whole mask; each recomputed here with the general LBS module."""
    data = random_smplx(num_vertices=900, seed=6, dense_correctives=False)
    mask = np.arange(data.num_vertices)
    torch.manual_seed(7)
    pose = torch.randn(2, 55, 3, dtype=torch.float64) * 0.3
    betas = torch.randn(2, 10, dtype=torch.float64) * 0.5
    fitter = BodyFitter(data, mask, FitSettings(max_iterations=2, fit_vertices=300),
                        dtype=torch.float64)
    other = BodyFitter(data, mask, FitSettings(fit_vertices=150), dtype=torch.float64)
    targets = known_targets(fitter, pose, betas) + torch.randn(2, 900, 3,
                                                               dtype=torch.float64) * 0.005
    body = BodyModel(data, num_betas=10, dtype=torch.float64)
    for error_set in (fitter.model.fit_set, other.model.fit_set, None):
        result = fitter.fit(targets, pose + 0.05, error_set=error_set)
        posed = body(result.pose, result.betas, result.transl)[0]
        distances = (posed - targets).norm(dim=-1).numpy() * 1000               # (B, M)
        if error_set is None:
            mean, largest = distances.mean(1), distances.max(1)
        else:
            weights = error_set.loss_weights.numpy()
            assert not np.allclose(weights, 1.0)
            chosen = distances[:, error_set.positions]
            mean, largest = chosen @ weights / weights.sum(), chosen.max(1)
        np.testing.assert_allclose(result.v2v_mean_mm.numpy(), mean, rtol=1e-9)
        np.testing.assert_allclose(result.v2v_max_mm.numpy(), largest, rtol=1e-9)


def test_poses_are_independent():
    """A pose that cannot be fitted (a noise target) neither changes its batch mates'
    results nor their step counts, whether the batch runs on one thread or two."""
    data = random_smplx(num_vertices=3000, seed=2, dense_correctives=False)
    fitter = BodyFitter(data, np.arange(data.num_vertices), dtype=torch.float64)
    torch.manual_seed(2)
    pose = torch.randn(3, 55, 3, dtype=torch.float64) * 0.3
    betas = torch.randn(3, 10, dtype=torch.float64) * 0.5
    targets = known_targets(fitter, pose, betas)
    init = pose + torch.randn_like(pose) * 0.1
    noise = torch.randn_like(targets[:1])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = [fitter.fit(targets[i:i + 1], init[i:i + 1]) for i in range(3)]
        torch.set_num_threads(2)
        mixed = fitter.fit(torch.cat([targets[:2], noise, targets[2:]]),
                           torch.cat([init[:2], init[:1], init[2:]]))
    finally:
        torch.set_num_threads(threads)
    for result, row in zip(alone, [0, 1, 3]):
        assert result.iterations[0] == mixed.iterations[row]
        assert torch.allclose(result.pose[0], mixed.pose[row], atol=1e-9)
        assert abs(result.v2v_mean_mm[0] - mixed.v2v_mean_mm[row]) < 1e-6
    assert mixed.v2v_mean_mm[2] > 100.0


def test_held_betas_and_initial_translation():
    """With fit_betas False the betas stay at the betas given and the pose and translation are
    still recovered; the translation given is where it starts (0 steps: where it stays)."""
    data = random_smplx(num_vertices=3000, seed=2, dense_correctives=False)
    mask = np.arange(data.num_vertices)
    torch.manual_seed(3)
    pose = torch.randn(3, 55, 3, dtype=torch.float64) * 0.3
    pose[:, 23:25] = 0
    betas = torch.randn(3, 10, dtype=torch.float64) * 0.5
    held = BodyFitter(data, mask, FitSettings(fit_betas=False), dtype=torch.float64)
    targets = known_targets(held, pose, betas)
    result = held.fit(targets, pose + torch.randn_like(pose) * 0.1, betas=betas)
    assert torch.equal(result.betas, betas)
    assert result.v2v_mean_mm.max() < EXACT_FIT_RMS * 1000        # where an exact fit stops
    assert result.v2v_max_mm.max() < 0.02
    frozen = BodyFitter(data, mask, FitSettings(max_iterations=0), dtype=torch.float64)
    start = torch.tensor([[0.1, -0.2, 0.3]], dtype=torch.float64).expand(3, -1)
    assert torch.equal(frozen.fit(targets, pose, betas, start).transl, start)


def test_learned_start_carries_a_systematic_offset():
    """Given poses that all differ from the true ones by the same per-joint rotation (and
    true betas away from zero), a fitter with a learned start learns that rotation and
    those betas from its first poses (as a check independent of the fit: the mean
    offset it holds against the one applied), then fits held-out poses in fewer steps
    than the plain start, to the same error."""
    data = random_smplx(num_vertices=3000, seed=2, dense_correctives=False)
    mask = np.arange(data.num_vertices)
    settings = FitSettings(fit_vertices=0)
    learning = BodyFitter(data, mask, replace(settings, learned_start=True),
                          dtype=torch.float64)
    plain = BodyFitter(data, mask, settings, dtype=torch.float64)
    torch.manual_seed(4)
    pose = torch.randn(12, 55, 3, dtype=torch.float64) * 0.3
    pose[:, 23:25] = 0                                      # eyes move no masked vertex
    betas = (torch.randn(1, 10, dtype=torch.float64) * 0.5).expand(12, -1)
    offset = torch.randn(55, 3, dtype=torch.float64) * 0.1
    offset[23:25] = 0
    given = roma.rotmat_to_rotvec(roma.rotvec_to_rotmat(-offset)
                                  @ roma.rotvec_to_rotmat(pose))
    targets = known_targets(plain, pose, betas)
    learning.fit(targets[:6], given[:6])
    learned = learning.correction_sum / learning.learned_poses
    assert learning.learned_poses == 6
    assert torch.allclose(learned[:22], offset[:22], atol=1e-4)    # the body joints
    assert torch.allclose(learning.betas_sum / 6, betas[0], atol=1e-4)
    ours, reference = learning.fit(targets[6:], given[6:]), plain.fit(targets[6:], given[6:])
    assert ours.iterations.sum() < reference.iterations.sum()
    for result in (ours, reference):                        # both at an exact fit's stop
        assert result.v2v_mean_mm.max() < EXACT_FIT_RMS * 1000
        assert result.v2v_max_mm.max() < 0.02


def test_significant_mean_keeps_systematic_joints_and_drops_noise():
    """A joint whose corrections share an offset keeps their mean; a joint whose corrections
    are noise around zero (models that agree there) gets none."""
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(40, 4, 3, generator=generator, dtype=torch.float64) * 0.02
    offset = torch.tensor([[0.0, 0.0, 0.0], [0.05, -0.02, 0.01], [0.0, 0.0, 0.0],
                           [0.0, 0.1, 0.0]], dtype=torch.float64)
    corrections = noise + offset
    mean = significant_mean(corrections.sum(0), corrections.square().sum(0), 40)
    direct = corrections.mean(0)
    standard_error = corrections.std(0).norm(dim=-1) / 40 ** 0.5
    kept = direct.norm(dim=-1) > SIGNIFICANCE * standard_error
    assert kept.tolist() == [False, True, False, True]
    assert torch.allclose(mean[kept], direct[kept]) and (mean[~kept] == 0).all()


def test_a_small_first_call_is_fitted_whole(monkeypatch):
    """A fitter with a learned start splits its first call (learning from a few poses
    first) only when the call is large enough for that to pay; otherwise it fits the call
    in one go and learns from all of it."""
    from smplh2smplx.fit import fitter as fitter_module
    monkeypatch.setattr(fitter_module, "LEARNING_POSES", 4)
    monkeypatch.setattr(fitter_module, "LEARNING_CALL_POSES", 5)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)       # 10 poses on 2 threads
    data = random_smplx(num_vertices=1000, seed=2, dense_correctives=False)
    mask = np.arange(data.num_vertices)
    settings = FitSettings(fit_vertices=0, learned_start=True, max_iterations=3)
    pose = torch.randn(12, 55, 3, generator=torch.Generator().manual_seed(1)) * 0.2
    targets = known_targets(BodyFitter(data, mask, settings), pose,
                            torch.zeros(12, 10))
    for count, expected in ((8, [8]), (12, [4, 8])):
        fitter = BodyFitter(data, mask, settings)
        sizes = []
        fit_on_device = fitter._fit_on_device
        fitter._fit_on_device = lambda targets, *rest: (sizes.append(len(targets)),
                                                        fit_on_device(targets, *rest))[1]
        result = fitter.fit(targets[:count], pose[:count])
        assert sizes == expected and len(result.pose) == count
        assert fitter.learned_poses == int(result.converged.sum())
