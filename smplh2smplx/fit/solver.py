"""The solver: batched Levenberg-Marquardt over the problem of `problem.py`.

A step solves the damped system (J^T J + C + lambda D) step = -J^T r by conjugate gradients
on the exact J^T J (its products are J^T (J v)), preconditioned by J^T J built on the
Gauss-Newton sample: a step costs a few passes over the mask plus a fixed cost, and where
the sample stands badly for the mask the fit needs no more steps.

C is the part of the loss's curvature that Gauss-Newton leaves out, the residual's, kept
within each joint's rotation and made positive semi-definite (`positive_part`): where a
large residual meets a short lever (the fingers) it is as large as J^T J, and without it
those rotations converged slowly (on the realistic kit, exact Gauss-Newton on 16 poses was
still 1.0164x the floor after 4 steps, 1.002x with C; the fit takes 6.3 steps a pose, was
7.0, and runs 1.2 to 1.5x faster, at the same error).

Each pose keeps its own damping, accepts or rejects its own steps and stops on its own (on a
small decrease, or before a step predicted to gain little); poses that have stopped leave
the batch, so one badly converging pose neither slows nor spoils the others.
"""
from dataclasses import replace

import torch

from .problem import (apply_step, evaluate, gauss_newton, gradient, jacobian_product,
                      weighted_squares)

# Levenberg-Marquardt damping (a fraction of J^T J's diagonal): the start, the factors on
# an accepted and a rejected step, the damped steps tried per iteration before the
# derivatives are computed again, and the damping beyond which a pose whose steps are all
# rejected is at a minimum. The damping starts nearly at Gauss-Newton and only grows: on
# the realistic kit, lowering it again after accepted steps (x0.2) led to rejected steps
# that cost a whole step each (7.4 steps a pose instead of 6.3, same error).
INITIAL_DAMPING = 1e-4
DAMPING_DOWN, DAMPING_UP = 1.0, 10.0
MAX_ATTEMPTS = 4
MAX_DAMPING = 1e6
# A pose whose root-mean-square vertex error is below this (metres) has converged, whatever
# its steps still gain: a target the model reproduces exactly (SMPL and SMPL-H share a mesh)
# is known to the precision of its .obj file (six decimals: 0.5 um RMS of rounding), and its
# fit otherwise iterates on that rounding (SMPL -> SMPL-H through .obj files, realistic kit:
# 4.8 steps a pose and 28 poses/s; with this stop 2 steps and 106 poses/s on 2 threads).
EXACT_FIT_RMS = 1e-6
# The residual's curvature (see the module's docstring) models the loss near its minimum; a
# pose whose RMS error is above this (metres: far from any minimum, as a start 0.4 rad off
# on every body joint, 150 mm) takes Gauss-Newton steps, which the curvature of so large a
# residual would only shorten (such a pose was still at 3x its minimum after 20 steps).
CURVATURE_RMS = 0.02
# Conjugate-gradient iterations per step: the first scales the sample's step to its best
# length, the second corrects its direction (the fit then takes as few steps as with the
# exact J^T J; with the first alone, up to twice as many on hard starts).
CG_ITERATIONS = 2
# Steps between rebuilds of the sample's Gauss-Newton matrix (the preconditioner): near the
# minimum it changes little, and conjugate gradients on the exact products correct for it.
# Every 3 steps: 1.4 times the poses per second on the realistic kit, 0.2% more error.
GAUSS_NEWTON_EVERY = 3


def damped_step(model, vset, state, chol, scaled, grad, curvature):
    """The damped step (B, P): (J^T W J + C + lambda D) step = -g, C the residual's
    curvature blocks (`curvature`, (B, slots, 3, 3), on the rotation columns).

    Solved by conjugate gradients on the exact J^T W J (products with it through
    `jacobian_product` and `gradient`), preconditioned by the sample's system whose
    Cholesky factor is `chol` (B, P, P); scaled: (B, P) lambda D. Started from 0, the
    first iterate is the step of the sample's system scaled to its best length; the
    next ones correct what the sample gets wrong.
    """
    def precondition(vector):
        return torch.cholesky_solve(vector[..., None], chol).squeeze(-1)

    step = torch.zeros_like(grad)
    remainder = -grad
    preconditioned = precondition(remainder)
    direction = preconditioned
    product = (remainder * preconditioned).sum(1)
    dtype = state.rest.dtype

    def damped(vector):
        return scaled * vector + block_product(curvature, vector)

    for _ in range(CG_ITERATIONS - 1):
        motion = jacobian_product(model, vset, state, direction.to(dtype))
        image = gradient(model, vset, replace(state, residual=motion)).double() + damped(direction)
        length = product / (direction * image).sum(1)
        step = step + length[:, None] * direction
        remainder = remainder - length[:, None] * image
        preconditioned = precondition(remainder)
        new_product = (remainder * preconditioned).sum(1)
        direction = preconditioned + (new_product / product)[:, None] * direction
        product = new_product
    # The last iterate needs the system only against its own direction, and
    # d^T J^T W J d = (J d)^T W (J d): no pass of J^T (one of a step's passes over the
    # blend shapes).
    motion = jacobian_product(model, vset, state, direction.to(dtype))
    curving = weighted_squares(vset, motion).double() + (direction * damped(direction)).sum(1)
    return step + (product / curving)[:, None] * direction


def block_product(blocks, vector):
    """Blocks (B, K, 3, 3) on the first 3K entries of vectors (B, P), zero elsewhere."""
    count = 3 * blocks.shape[1]
    product = torch.zeros_like(vector)
    product[:, :count] = (blocks @ vector[:, :count].view(len(vector), -1, 3, 1)).flatten(1)
    return product


def positive_part(blocks):
    """Symmetric (..., 3, 3) blocks with their negative eigenvalues set to zero."""
    values, vectors = torch.linalg.eigh(blocks)
    return (vectors * values.clamp(min=0)[..., None, :]) @ vectors.transpose(-1, -2)


def with_blocks(hessian, blocks):
    """hessian (B, P, P) plus the blocks (B, K, 3, 3) on its first 3K diagonal blocks."""
    count = blocks.shape[1]
    total = hessian.clone()
    diagonal = total[:, :3 * count, :3 * count].view(len(total), count, 3, count, 3)
    diagonal.diagonal(dim1=1, dim2=3).add_(blocks.permute(0, 2, 3, 1))
    return total


def damped_factor(hessian, damping):
    """(lambda D, Cholesky factor, info) of the damped matrices H + lambda D, D = diag(H) plus
    a floor of 1e-6 times its mean (so that a column without curvature stays solvable)."""
    diagonal = torch.diagonal(hessian, dim1=1, dim2=2)
    scaled = damping[:, None] * (diagonal + 1e-6 * diagonal.mean(1, keepdim=True))
    damped = hessian.clone()
    damped.diagonal(dim1=1, dim2=2).add_(scaled)
    chol, info = torch.linalg.cholesky_ex(damped)
    return scaled, chol, info


def solve(model, vset, targets, rotmats, betas, transl, iterations, tolerance):
    """Levenberg-Marquardt following the loss on `vset`; targets (S, 3, B) in its order.

    Works on the poses still iterating only; returns the new rotations, betas and
    translations, the steps spent, whether each pose converged and the residual (S, 3, B)
    at the returned parameters (None when no step was taken), so that the caller need not
    pose the vertices again to measure the fit.
    """
    batch = rotmats.shape[0]
    device = rotmats.device
    rotmats, betas, transl = rotmats.clone(), betas.clone(), transl.clone()
    spent = torch.zeros(batch, dtype=torch.int64, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    if iterations <= 0 or batch == 0:
        return rotmats, betas, transl, spent, done, None
    residual = torch.empty_like(targets)
    active = torch.arange(batch, device=device)            # the poses still iterating
    state = evaluate(model, vset, targets, rotmats.clone(), betas.clone(), transl.clone())
    damping = torch.full((batch,), INITIAL_DAMPING, dtype=torch.float64, device=device)
    hessian = None
    total_weight = float(vset.loss_weights.sum())
    exact_loss = EXACT_FIT_RMS ** 2 * total_weight
    finished = torch.zeros(batch, dtype=torch.bool, device=device)   # in the last step
    for iteration in range(iterations):
        # Poses that stopped leave the batch, and so do those that reproduce their target
        # to the exact-fit level before taking derivatives (a motion between SMPL and SMPL-H
        # starts its frames from exact neighbours).
        leaving = finished | (state.loss < exact_loss)
        if leaving.any():
            done[active[leaving]] = True
            residual[..., active[leaving]] = state.residual[..., leaving]
            keep = torch.nonzero(~leaving).squeeze(1)
            if len(keep) == 0:
                return rotmats, betas, transl, spent, done, residual
            active, damping = active[keep], damping[keep]
            hessian = None if hessian is None else hessian[keep]
            targets, state = targets[..., keep], state.rows(keep)
        spent[active] += 1
        grad, curvature = gradient(model, vset, state, curvature=True)
        grad, curvature = grad.double(), positive_part(curvature.double())
        far = state.loss > CURVATURE_RMS ** 2 * total_weight
        curvature[far] = 0.0
        if hessian is None:
            hessian = gauss_newton(model, state).double()
        count = len(active)
        accepted = torch.zeros(count, dtype=torch.bool, device=device)
        small = torch.zeros(count, dtype=torch.bool, device=device)
        system = with_blocks(hessian, curvature)
        scaled, chol, info = damped_factor(system, damping)
        # A pose whose next step the sample's model predicts to gain less than the tolerance,
        # g^T (H + lambda D)^-1 g / 2 < tolerance * loss, stops before the step: the step that
        # would only confirm convergence costs a gradient instead of a whole step (8% fewer
        # steps on the realistic kit, 0.01% more error).
        predicted = 0.5 * (grad * torch.cholesky_solve(grad[..., None], chol).squeeze(-1)).sum(1)
        quiet = (info == 0) & (predicted < tolerance * state.loss.double())
        small[quiet] = True
        pending = torch.nonzero(~quiet).squeeze(1)
        rows_state = state if len(pending) == count else state.rows(pending)
        if len(pending) and iteration % GAUSS_NEWTON_EVERY == 0 and iteration > 0:
            # The matrix is rebuilt for the poses that go on only: a stale one predicts
            # well enough which poses stop.
            hessian[pending] = gauss_newton(model, rows_state).double()
            system[pending] = with_blocks(hessian[pending], curvature[pending])
            scaled[pending], chol[pending], info[pending] = damped_factor(system[pending],
                                                                          damping[pending])
        # Retry rejected steps with more damping, reusing the same derivatives.
        for attempt in range(MAX_ATTEMPTS if len(pending) else 0):
            if attempt > 0:
                rows_state = state if len(pending) == count else state.rows(pending)
                scaled, chol, info = damped_factor(system[pending], damping[pending])
            elif len(pending) < count:
                scaled, chol, info = scaled[pending], chol[pending], info[pending]
            step = damped_step(model, vset, rows_state, chol, scaled, grad[pending],
                               curvature[pending])
            solvable = (info == 0) & torch.isfinite(step).all(1)
            step = torch.where(solvable[:, None], step, torch.zeros_like(step))
            trial = evaluate(model, vset, targets[..., pending], *apply_step(
                model, state.rotmats[pending], state.betas[pending], state.transl[pending],
                step.to(rotmats.dtype)))
            old_loss = state.loss[pending]
            better = (trial.loss < old_loss) & solvable
            small[pending] = better & ((old_loss - trial.loss < tolerance * old_loss)
                                       | (step.abs().amax(1) < 1e-6))
            kept = torch.nonzero(better).squeeze(1)
            rows = pending[kept]
            if len(kept) == count:
                state = trial                      # every pose took its first step
            else:
                state.assign(rows, trial, kept)
            accepted[rows] = True
            damping[rows] = (damping[rows] * DAMPING_DOWN).clamp(min=1e-9)
            pending = pending[~better]
            damping[pending] *= DAMPING_UP
            if len(pending) == 0:
                break
        # A pose stops on a small decrease, or when not even a step damped down to a
        # tiny gradient step lowers its loss: a minimum, to the loss's precision.
        finished = small | (~accepted & (damping >= MAX_DAMPING))
        rotmats[active], betas[active] = state.rotmats, state.betas
        transl[active] = state.transl
    done[active[finished | (state.loss < exact_loss)]] = True
    residual[..., active] = state.residual
    return rotmats, betas, transl, spent, done, residual
