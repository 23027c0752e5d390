"""`BodyFitter`: fits a target body model to batches of target vertices.

The fit is Levenberg-Marquardt over the least-squares problem of `problem.py`, solved by
`solver.py`, on the `TargetModel` (any SMPL-family model, given as data). By default the
loss follows a weighted subset of `fit_vertices` vertices of the mask, then takes
`refine_iterations` steps on the whole mask (`fit_vertices` 0: the whole mask throughout).
Errors are reported on the whole mask, or on a vertex set the caller names (`error_set`).
"""
import numbers
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

import numpy as np
import roma
import torch

from ..formats.body_models import BodyModelData
from ..runtime import torch_threads
from .problem import forward, mean_distance
from .sampling import GAUSS_NEWTON_PART_VERTICES
from .solver import solve
from .start import rotmats_from_mesh
from .target import TargetModel

# Poses a fitter with a learned start fits from the given poses alone before it learns the
# systematic correction from them: 16 took 6.75 steps a pose where 32 took 7.02 (150 varied
# poses, realistic kit seed 0, SMPL-H to SMPL-X), at the same error.
LEARNING_POSES = 16
# A first call splits off those poses to learn from them first only when it has at least
# this many poses per CPU thread (a GPU counts as one): fitted alone, in small batches (a
# slice per thread), they cost about what the learned start then saves on the others
# (realistic kit seed 0, SMPL-H to SMPL-X, best of 3, whole against split: 1 thread, 64
# poses 1.17 against 1.12 s, 100 poses 1.89 against 1.67; 2 threads, 50 poses 0.54 against
# 0.69 s, 100 poses 0.98 against 1.05, 150 poses 1.46 against 1.43). A smaller first call
# is fitted whole, and the fitter learns from it.
LEARNING_CALL_POSES = 64
# A joint's learned correction is used only when its mean exceeds this many standard errors:
# between models that agree on a joint (SMPL and SMPL-H bodies) the corrections are noise,
# and a noisy start costs steps.
SIGNIFICANCE = 3.0
# Poses a CPU thread fits at most at once: larger slices spill the CPU caches (at 256 poses
# the fit runs 25% slower than at 64), smaller ones pay more per-operation overhead (450
# poses of the realistic kit on 2 threads, medians of 3: 4 slices of 112 in 8.4 s, 6 of 75
# in 8.7 s, 8 of 56 in 10.2 s).
SLICE_POSES = 128


@dataclass(frozen=True)
class FitSettings:
    """Knobs of the fit; the defaults are the product's default setting (the "fast"
    preset of `FIT_PRESETS`) but for `learned_start`, off so that warm starts stay as given.

    max_iterations: steps per pose (Jacobian evaluations) in the first phase.
    refine_iterations: further steps on the whole mask when the first phase follows a
        vertex subset (unused when fit_vertices is 0).
    The default follows a subset of 3000 vertices (every body part represented) alone: on
    the realistic kit a step on the whole mask after it cost as much as the subset's steps
    together, for under 0.3% of error (1.0049x the floor with 2000 + 1, 1.0075x with 3000).
    tolerance: a pose has converged when a step lowers its loss by less than this fraction,
        or when the next step is predicted to (or its error is at float precision).
    fit_betas: fit the shape (the SMPL-H zero shape is not the SMPL-X zero shape); when
        False the betas stay at the values given to `fit` (zero by default).
    num_betas: shape coefficients fitted and written.
    fit_vertices: size of the vertex subset whose loss the first phase follows (0: the
        whole mask). A subset is at most a third of the mask (target.MAX_SUBSET_SHARE);
        one cut to that (on SMPL's and SMPL-H's meshes) is followed by at least one
        step on the whole mask.
    learned_start: start each pose from its given pose corrected by the mean difference
        between the given and the fitted poses (and from the mean fitted betas) of the
        poses this fitter has fitted so far: the systematic difference between two body
        models, learned on the user's own models and poses (a first call fits
        LEARNING_POSES poses before the others when it has LEARNING_CALL_POSES a thread).
        Off for warm starts, such as the previous frame of a motion, which carry no such
        difference.
    """
    max_iterations: int = 20
    refine_iterations: int = 0
    tolerance: float = 1e-3
    fit_betas: bool = True
    num_betas: int = 10
    fit_vertices: int = 3000
    learned_start: bool = False

    def problems(self, prefix: str) -> list:
        """The values no fit runs with, a line each, every field named `prefix` + its name
        (the settings' "fit.", the API's "settings."). The betas a target model holds are
        its own check (`BodyModelData.check_num_betas`)."""
        problems = []
        for name, least in (("max_iterations", 0), ("refine_iterations", 0),
                            ("num_betas", 1), ("fit_vertices", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                problems.append(f"{prefix}{name} must be a whole number, got {value!r}")
            elif value < least:
                problems.append(f"{prefix}{name} must be >= {least}, got {value}")
        tolerance = self.tolerance
        if (isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real)
                or not 0.0 < tolerance < 1.0):      # a fraction of the loss; NaN fails too
            problems.append(f"{prefix}tolerance must be a fraction between 0 and 1 "
                            f"(exclusive), got {tolerance!r}")
        for name in ("fit_betas", "learned_start"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{prefix}{name} must be True or False, got "
                                f"{getattr(self, name)!r}")
        return problems


# Named settings of the fit: "fast", the default, is within 1% of the floor at the most poses
# per second; "floor" iterates on the whole mask until the loss stops moving (the error the
# fit can reach, several times slower).
FIT_PRESETS = {
    "fast": FitSettings(learned_start=True),
    "floor": FitSettings(max_iterations=100, refine_iterations=0, tolerance=1e-6,
                         fit_vertices=0),
}


def rows_of(value, rows):
    """Rows `rows` of an optional per-pose tensor (None stays None)."""
    return None if value is None else value[rows]


def significant_mean(total: torch.Tensor, square_total: torch.Tensor,
                     count: int) -> torch.Tensor:
    """The mean of `count` per-joint rotation vectors from their sums, with the joints whose
    mean is within SIGNIFICANCE standard errors of zero set to zero.

    Args:
        total, square_total: (J, 3) sums of the vectors and of their squares.
    Returns:
        (J, 3) mean rotation vectors.
    """
    mean = total / count
    variance = (square_total / count - mean.square()).clamp(min=0).sum(-1)     # (J,)
    standard_error = (variance / max(count - 1, 1)).sqrt()
    keep = mean.norm(dim=-1) > SIGNIFICANCE * standard_error
    return mean * keep[:, None]


@dataclass
class FitResult:
    """Fitted parameters and errors of a batch of B poses (CPU tensors).

    pose: (B, J, 3) axis-angle local rotations, root first (the target model's joints).
    betas: (B, num_betas); transl: (B, 3).
    v2v_mean_mm, v2v_max_mm: (B,) mean and max vertex error over the mask (or the fit's
        `error_set`), in millimetres.
    iterations: (B,) steps computed (Jacobian evaluations); converged: (B,) bool.
    """
    pose: torch.Tensor
    betas: torch.Tensor
    transl: torch.Tensor
    v2v_mean_mm: torch.Tensor
    v2v_max_mm: torch.Tensor
    iterations: torch.Tensor
    converged: torch.Tensor

    @staticmethod
    def cat(results):
        """The results of consecutive parts of a batch as one."""
        return FitResult(**{field.name: torch.cat([getattr(result, field.name)
                                                   for result in results])
                            for field in fields(FitResult)})


class BodyFitter(torch.nn.Module):
    """Fits a body model to batches of target vertices on its masked vertex ids.

    Args:
        data: the target model's arrays (SMPL, SMPL-H or SMPL-X).
        mask_ids: (M,) target vertex ids with a valid correspondence.
        settings: `FitSettings`.
        dtype: floating type of the model buffers and the Jacobian (steps are solved in
            float64).
        gauss_newton_part_vertices: vertices of each body part on which the Gauss-Newton
            matrix is built (0: every masked vertex).
    Use `.to(device)` to move it; `fit` then runs where the buffers are.
    """

    def __init__(self, data: BodyModelData, mask_ids, settings=FitSettings(), dtype=torch.float32,
                 gauss_newton_part_vertices=GAUSS_NEWTON_PART_VERTICES):
        super().__init__()
        self.settings = settings
        self.model = TargetModel(data, mask_ids, settings.num_betas, settings.fit_betas,
                                 settings.fit_vertices, gauss_newton_part_vertices, dtype)
        # The learned start: sums over the converged poses fitted so far of the rotation
        # vector of R_fit R_given^T per joint, and of the fitted betas.
        self.learned_poses = 0
        self.correction_sum = torch.zeros(self.model.num_joints, 3, dtype=torch.float64)
        self.correction_square_sum = torch.zeros(self.model.num_joints, 3, dtype=torch.float64)
        self.betas_sum = torch.zeros(settings.num_betas, dtype=torch.float64)

    @property
    def device(self):
        return self.model.mask_ids.device

    @property
    def dtype(self):
        return self.model.mask_set.v_template.dtype

    @torch.no_grad()
    def initial_pose(self, targets):
        """(B, J, 3) axis-angle start read off target vertices (B, M, 3) alone."""
        targets = targets.to(self.device, self.dtype)
        return roma.rotmat_to_rotvec(rotmats_from_mesh(self.model, targets))

    @torch.no_grad()
    def fit(self, targets, init_pose=None, betas=None, transl=None, error_set=None):
        """Fit a batch.

        Args:
            targets: (B, M, 3) target vertices on the mask ids (same order as `mask_ids`).
            init_pose: (B, J, 3) axis-angle start (e.g. the source pose mapped onto the
                target's joints), or None to start from the targets alone.
            betas: (B, num_betas) start of the shape (held when settings.fit_betas is
                False); None: zero.
            transl: (B, 3) start of the translation; None: the mean offset between the
                targets and the started body.
            error_set: the `VertexSet` the errors are reported on (a fitter's `fit_set`,
                whose loss weights make its mean an estimate of the mask's), or None: the
                whole mask. The set the fit followed last costs nothing more; the whole
                mask after a subset costs one more posing of the mask.
        Returns:
            a `FitResult` on the CPU.

        On the CPU the batch is cut into slices of at most SLICE_POSES poses (at least one
        per torch thread), which a pool of as many threads as torch has fits with torch
        itself single-threaded: the poses are independent, so the threads never wait for
        one another, where torch's own threads meet at the end of every operation (on a
        loaded 2-core machine that made the fit 3 times slower).
        """
        if not self.settings.learned_start or init_pose is None:
            return self._fit_on_device(targets, init_pose, betas, transl, error_set)
        threads = torch.get_num_threads() if self.device.type == "cpu" else 1
        if self.learned_poses == 0 and len(targets) >= LEARNING_CALL_POSES * threads:
            return FitResult.cat([
                self.fit(targets[rows], init_pose[rows], rows_of(betas, rows),
                         rows_of(transl, rows), error_set)
                for rows in (slice(0, LEARNING_POSES), slice(LEARNING_POSES, None))])
        given = roma.rotvec_to_rotmat(init_pose.double().cpu())
        if self.learned_poses > 0:
            mean = roma.rotvec_to_rotmat(significant_mean(
                self.correction_sum, self.correction_square_sum, self.learned_poses))
            init_pose = roma.rotmat_to_rotvec(mean @ given).to(init_pose.dtype)
            if betas is None and self.settings.fit_betas:
                betas = (self.betas_sum / self.learned_poses).expand(len(targets), -1).float()
        result = self._fit_on_device(targets, init_pose, betas, transl, error_set)
        # Learn from the poses that converged to a finite error.
        learned = result.converged
        fitted = roma.rotvec_to_rotmat(result.pose[learned].double())
        corrections = roma.rotmat_to_rotvec(fitted @ given[learned].transpose(-1, -2))
        self.correction_sum += corrections.sum(0)
        self.correction_square_sum += corrections.square().sum(0)
        self.betas_sum += result.betas[learned].double().sum(0)
        self.learned_poses += int(learned.sum())
        return result

    def _fit_on_device(self, targets, init_pose, betas, transl, error_set):
        """`fit` from the starts given."""
        if self.device.type != "cpu":
            return self._fit(targets, init_pose, betas, transl, error_set)
        batch, threads = targets.shape[0], torch.get_num_threads()
        # Slices of at most SLICE_POSES poses, as many as a multiple of the threads, so that
        # no thread is left with one slice more than the others (300 poses on 2 threads:
        # 4 slices of 75, not 3 of 100, two of which one thread fitted alone).
        needed = -(-batch // SLICE_POSES)
        count = max(1, min(batch, threads * -(-needed // threads)))
        slices = np.array_split(np.arange(batch), count)
        with torch_threads(1), ThreadPoolExecutor(min(threads, count)) as pool:
            results = list(pool.map(lambda rows: self._fit(
                targets[rows], rows_of(init_pose, rows), rows_of(betas, rows),
                rows_of(transl, rows), error_set), slices))
        return FitResult.cat(results)

    @torch.no_grad()
    def _fit(self, targets, init_pose, betas, transl, error_set):
        """`fit` on the calling thread."""
        model, settings = self.model, self.settings
        targets = targets.to(self.device, self.dtype)
        batch = targets.shape[0]
        if init_pose is None:
            rotmats = rotmats_from_mesh(model, targets)
        else:
            rotmats = roma.rotvec_to_rotmat(init_pose.to(targets))
        betas = (targets.new_zeros(batch, settings.num_betas) if betas is None
                 else betas.to(targets))
        mask_targets = targets.permute(1, 2, 0).contiguous()                 # (M, 3, B)
        fit_set = model.fit_set
        fit_targets = (mask_targets if fit_set is model.mask_set
                       else mask_targets[fit_set.positions])
        if transl is None:
            start = forward(model, fit_set, rotmats, betas, targets.new_zeros(batch, 3))[0]
            transl = (fit_targets - start).mean(0).T
        else:
            transl = transl.to(targets)

        rotmats, betas, transl, spent, done, residual = solve(
            model, fit_set, fit_targets, rotmats, betas, transl, settings.max_iterations,
            settings.tolerance)
        last_set = fit_set
        refine = max(settings.refine_iterations, 1 if model.subset_cut else 0)
        if refine > 0 and fit_set is not model.mask_set:
            # A pose has converged when its subset phase stopped on the tolerance; the few
            # refining steps on the whole mask then only polish it.
            rotmats, betas, transl, refine_spent, _, residual = solve(
                model, model.mask_set, mask_targets, rotmats, betas, transl,
                refine, settings.tolerance)
            spent, last_set = spent + refine_spent, model.mask_set

        error_set = model.mask_set if error_set is None else error_set
        if residual is None or last_set is not error_set:
            error_targets = (mask_targets if error_set is model.mask_set
                             else mask_targets[error_set.positions])
            residual = forward(model, error_set, rotmats, betas, transl)[0] - error_targets
        errors = residual.square().sum(1).sqrt() * 1000.0                     # (S, B)
        # A pose whose error is not finite has not converged, whatever its last step did.
        converged = done & torch.isfinite(errors).all(0)
        return FitResult(pose=roma.rotmat_to_rotvec(rotmats).cpu(), betas=betas.cpu(),
                         transl=transl.cpu(), v2v_mean_mm=mean_distance(error_set, errors).cpu(),
                         v2v_max_mm=errors.amax(0).cpu(), iterations=spent.cpu(),
                         converged=converged.cpu())


def fit_batch(fitter, targets, init_poses):
    """Fit one batch whose poses may or may not have a known start.

    Args:
        fitter: a `BodyFitter` (on its device).
        targets: (B, M, 3) target vertices on the mask ids.
        init_poses: list of B (J, 3) axis-angle tensors or None (None: start that pose from
            its target alone).
    Returns:
        the `FitResult` of the batch.
    """
    missing = [i for i, pose in enumerate(init_poses) if pose is None]
    if len(missing) == len(init_poses):
        return fitter.fit(targets, None)
    num_joints = fitter.model.num_joints
    init = torch.stack([torch.zeros(num_joints, 3) if pose is None else torch.as_tensor(pose)
                        for pose in init_poses]).float()
    if missing:
        init[missing] = fitter.initial_pose(targets[missing]).cpu().float()
    return fitter.fit(targets, init)
