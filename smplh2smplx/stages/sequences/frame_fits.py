"""The fitted frames of one motion: where each frame starts, whether its start is kept,
its fit, the refit of a frame whose error stands out, and the low-pass of the corrections.

A frame's fit is stored as its correction of the source pose, per joint R_fit R_src^T, and
the offset of its translation: those change slowly over a motion, so the frames between
fitted frames start from their interpolation (`timeline.carried_start`), and the written
frames are their source poses turned by the low-passed corrections (`timeline.low_pass`).
"""
import numpy as np
import roma
import torch

from ...fit.fitter import FitResult
from ...fit.problem import forward, mean_distance
from ...fit.solver import EXACT_FIT_RMS
from ...runtime import cpu_single_thread, posing_slices
from .batching import FitRequest
from .timeline import carried_start, known_around, low_pass

# A frame between two fitted frames whose interpolated start is already within this fraction
# of their errors (interpolated likewise, all three on the fit's vertex subset) is kept as
# started, not fitted: measuring a start costs a small part of a step. Tuned on the
# realistic kit of seed 0: on its four 480-frame motions (60 fps) 0.003 gave 1.5-1.7x the
# frames per CPU-s for 0.05-0.26% more v2v and the same jitter (within 0.004 of the
# source's); 0.01 5-13% more speed for about twice the added error. The real sample posed
# with its models kept 2 in 3 of the starts measured at 30 fps, 19 in 20 at 120 fps.
# A start within KEPT_START_MARGIN_MM of that error is kept too: below the fitter's exact-fit
# level (`solver.EXACT_FIT_RMS`, 1 um) a ratio measures rounding, and between SMPL and SMPL-H
# (one mesh, every frame within a micrometre) it sent starts 0.1 um from their neighbours'
# to the fit (seed 0, the kit's SMPL -> SMPL-H motion: 46 of its 120 frames).
KEPT_START_MARGIN = 0.003
KEPT_START_MARGIN_MM = EXACT_FIT_RMS * 1000.0
# ... and only where those two fitted frames are at most this far apart (seconds): the
# errors of the frames between them need not follow the line through theirs, and a frame
# whose own minimum dips below that line keeps a start above its minimum. On the kit of seed
# 0 (60 fps), starts interpolated across 16 frames (0.27 s) left frames of a squat up to 2.8%
# above their own 40-step fits and of a bend 1.7%; across 4 frames (0.07 s) 0.8%, as with
# every frame fitted. The real sample: 1.4% at 30 fps (4 frames, 0.13 s) and 1.3% at 120 fps
# (16 frames), 0.8-0.9% with every frame fitted.
KEPT_START_SPAN_SECONDS = 0.15
# A frame whose fit ran out of steps with an error above this times its level's median, and
# the median by at least OUTLIER_MARGIN_MM, is fitted again in full from where it stopped.
# Below the margin the differences are the targets' rounding and the fit's tolerance: between
# SMPL and SMPL-H (one mesh) every frame is within a micrometre, and a relative threshold
# alone refitted some of them in every level (seed 0, the kit's SMPL -> SMPL-H motion: 17%
# more frames per CPU-s, the same v2v). A frame whose fit converged is at its minimum, and
# more steps from there gain nothing: SMPL-H -> SMPL refitted frames whose hands SMPL cannot
# follow, for 7-18% of the time and the same v2v to 0.1 um.
OUTLIER_FACTOR = 1.2
OUTLIER_MARGIN_MM = 0.1


def refit_outliers(models, targets: torch.Tensor, betas: torch.Tensor, result: FitResult,
                   error_set):
    """Fit again, with the full settings, the frames of a chunk whose error stands out.

    The per-frame fit is short (a warm start is a step away from the minimum); a frame
    that used its steps without converging, with an error above OUTLIER_FACTOR times the
    level's median and the median by OUTLIER_MARGIN_MM (a jump in the source, a start that
    was not close), gets the full fit from where it stopped (`models`: the GenderModels;
    targets (F, M, 3); betas (nb,)). `result` (a FitResult, its errors on the VertexSet
    `error_set`) is updated in place. A generator: it yields the refit's `FitRequest`
    (`batching.py`) and returns the number of frames refitted.
    """
    errors = result.v2v_mean_mm
    median = errors.median()
    outliers = torch.nonzero(~result.converged & (errors > OUTLIER_FACTOR * median)
                             & (errors > median + OUTLIER_MARGIN_MM)).squeeze(1)
    if len(outliers) == 0:
        return 0
    again = yield FitRequest(models.refit_fitter, targets[outliers], result.pose[outliers],
                             betas.expand(len(outliers), -1), result.transl[outliers],
                             error_set)
    better = again.v2v_mean_mm < errors[outliers]
    rows = outliers[better]
    for name in ("pose", "transl", "v2v_mean_mm", "v2v_max_mm", "converged"):
        getattr(result, name)[rows] = getattr(again, name)[better]
    result.iterations[outliers] += again.iterations
    return len(outliers)


class FrameFits:
    """The fitted frames of one sequence: each frame's correction of its source pose (per
    joint R_fit R_src^T, and the translation's offset trans_fit - trans_src), whether it is
    known yet, its error as fitted on the fit's vertex subset (`check_set`, v2v mean in mm,
    its loss weights estimating the mask's mean) and its steps.

    Besides, the shape frames' own fits (their betas free) guide the starts of the frames
    with no known frame after them (`guide`).

    models: the GenderModels; source: the SourceFrames; betas: the shared betas (nb,);
    kept_span: the most frames between two fitted frames whose interpolation may be kept.
    """

    def __init__(self, models, source, betas: torch.Tensor, kept_span: int):
        self.models, self.source, self.betas = models, source, betas.float()
        self.kept_span = kept_span
        count, num_joints = len(source), models.fitter.model.num_joints
        self.source_trans = torch.as_tensor(source.trans)
        self.corrections = torch.empty(count, num_joints, 3, 3, dtype=torch.float64)
        self.offsets = torch.empty(count, 3, dtype=torch.float64)
        self.known = np.zeros(count, dtype=bool)
        self.guides = np.zeros(count, dtype=bool)
        self.errors = torch.full((count,), float("nan"), dtype=torch.float64)
        self.iterations = torch.zeros(count, dtype=torch.int64)
        # A kept start is checked against the fitted frames around it on the vertices the
        # fit follows: a third of the mask's cost (at 120 fps nearly every frame is checked),
        # and a fitted frame's error there is the fit's last residual, free.
        self.check_set = models.fitter.model.fit_set

    def source_rotations(self, frames: np.ndarray) -> torch.Tensor:
        """(F, J, 3, 3) float64 source rotations of `frames` on the target's joints."""
        return roma.rotvec_to_rotmat(self.models.map_pose(self.source.poses[frames]))

    def errors_of(self, rotations: torch.Tensor, transl: torch.Tensor, targets: torch.Tensor,
                  vertex_set=None) -> torch.Tensor:
        """(B,) v2v mean (mm, CPU) of frames posed with the shared betas, on the mask or on
        `vertex_set` (a fit's VertexSet, its loss weights weighing the mean)."""
        model = self.models.fitter.model
        vertex_set = model.mask_set if vertex_set is None else vertex_set
        fitted = vertex_set.v_template                           # device and dtype
        # Vertex-major (S, 3, B), as the fitter measures its errors.
        vertex_targets = targets.to(fitted).permute(1, 2, 0)
        if vertex_set is not model.mask_set:
            vertex_targets = vertex_targets[vertex_set.positions]
        betas, errors = self.betas.to(fitted), []
        with cpu_single_thread(self.models.device):
            for rows in posing_slices(len(transl), self.models.device):
                residual = forward(model, vertex_set, rotations[rows].to(fitted),
                                   betas.expand(len(transl[rows]), -1),
                                   transl[rows].to(fitted))[0] - vertex_targets[..., rows]
                errors.append(mean_distance(vertex_set, residual.square().sum(1).sqrt()))
        return (torch.cat(errors) * 1000.0).cpu()

    def keep(self, frames: np.ndarray, pose: torch.Tensor, transl: torch.Tensor) -> None:
        """Frames `frames` are known with this pose (F, J, 3) and translation (F, 3)."""
        self.corrections[frames] = (roma.rotvec_to_rotmat(pose.double())
                                    @ self.source_rotations(frames).transpose(-1, -2))
        self.offsets[frames] = transl.double() - self.source_trans[frames]
        self.known[frames] = True

    def guide(self, frames: np.ndarray, pose: torch.Tensor, transl: torch.Tensor) -> None:
        """The shape frames' own fits, pose (F, J, 3) and translation (F, 3), as guides: the
        starts of frames with no known frame after them (a chunk's first level) are
        interpolated toward them, not only carried from the last known frame. They are not
        known: never kept, never a neighbour of a kept start, fitted in their own level.
        Seed 0, the kit's motions: the first level took 3.1-3.2 steps a frame, was 4.1-4.7
        (at most 4, was 5), 3-10% more frames per CPU-s, v2v within 0.03%; the real sample's
        steps 0.93 -> 0.88 a frame, its speed within the noise."""
        self.keep(frames, pose, transl)
        self.known[frames] = False
        self.guides[frames] = True

    def starts(self, frames: np.ndarray) -> tuple:
        """Corrections (F, J, 3, 3) and offsets (F, 3) to start `frames` from: interpolated
        between the known frames around them, or the last known one before and a guide after
        (`timeline.carried_start`)."""
        known = self.known
        ahead = self.guides & (np.arange(len(known)) > np.flatnonzero(known).max())
        return carried_start(frames, known | ahead, self.corrections, self.offsets)

    def fit(self, frames: np.ndarray, targets: torch.Tensor):
        """Fit `frames` (targets (F, M, 3)) from their `starts`; a start as good as the
        fitted frames around it is kept as it is. A generator of the fits' `FitRequest`s."""
        correction, offset = self.starts(frames)
        rows = self.keep_good_starts(frames, correction, offset, targets)
        if len(rows) == 0:
            return
        frames, targets = frames[rows], targets[torch.as_tensor(rows, device=targets.device)]
        rotations = correction[rows] @ self.source_rotations(frames)
        transl = offset[rows] + self.source_trans[frames]
        result = yield FitRequest(self.models.fitter, targets,
                                  roma.rotmat_to_rotvec(rotations).float(),
                                  self.betas.expand(len(frames), -1), transl.float(),
                                  self.check_set)
        yield from refit_outliers(self.models, targets, self.betas, result, self.check_set)
        self.keep(frames, result.pose, result.transl)
        self.iterations[frames] = result.iterations
        self.errors[frames] = result.v2v_mean_mm.double()

    def keep_good_starts(self, frames, correction, offset, targets) -> np.ndarray:
        """Keep the frames between two known frames at most `kept_span` apart whose start,
        their interpolated `correction` and `offset`, is within KEPT_START_MARGIN (or
        KEPT_START_MARGIN_MM) of their errors (interpolated likewise); returns the positions
        in `frames` of the others."""
        before, after, weight = known_around(frames, self.known)
        rows = np.flatnonzero((after > before) & (after - before <= self.kept_span))
        if len(rows) == 0:
            return np.arange(len(frames))
        errors = self.errors
        before, after, weight = before[rows], after[rows], torch.as_tensor(weight[rows])
        reference = errors[before] + weight * (errors[after] - errors[before])
        measured = frames[rows]
        started = self.errors_of(correction[rows] @ self.source_rotations(measured),
                                 offset[rows] + self.source_trans[measured],
                                 targets[torch.as_tensor(rows, device=targets.device)],
                                 self.check_set).double()
        good = ((started <= (1.0 + KEPT_START_MARGIN) * reference)
                | (started <= reference + KEPT_START_MARGIN_MM)).numpy()
        kept = rows[good]
        self.corrections[frames[kept]], self.offsets[frames[kept]] = correction[kept], offset[kept]
        self.known[frames[kept]] = True
        errors[frames[kept]] = started[good]
        return np.setdiff1d(np.arange(len(frames)), kept)

    def filtered(self, frames: np.ndarray, weights: np.ndarray, available: int) -> tuple:
        """The rotations (F, J, 3, 3) and translations (F, 3) written for `frames`: their
        source poses turned by the corrections low-passed with `weights` over the known
        frames 0..available-1."""
        correction, offset = low_pass(self.corrections, self.offsets, weights, frames,
                                      available)
        return correction @ self.source_rotations(frames), offset + self.source_trans[frames]
