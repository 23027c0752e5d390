"""One motion sequence of a SMPL-family model -> the same motion in another model.

Subject semantics: each file is posed with the source model of its own gender (or the one
given), its own betas and translation; the target is the deformation transfer of that posed
mesh onto the target's topology (the identity between SMPL and SMPL-H, which share a mesh).
The source and target kinds are data (`GenderModels`); one sequence, in order:

1. the wanted frame rate: every n-th frame where it divides the source's; otherwise the
   source motion between its frames (joint rotations slerped, translation linear) at the
   wanted rate (`frame_spacing`, `timeline.motion_at`); a rate above the source's is
   refused, naming the file;
2. shape: one target shape for the whole sequence, fitted jointly on `shape_frames` frames
   spread over it. With the joint rotations fixed, the LBS vertices are affine in the betas
   and the translation (joints are linear in the betas, pose correctives depend on the
   rotations only), so the joint fit alternates a per-frame pose fit (betas held) with one
   linear least-squares solve for the shared betas and the per-frame translations
   (`shared_shape.py`);
3. frames: pose and translation of every frame, betas held fixed, in chunks of
   `chunk_frames` consecutive frames, each fitted in levels (`timeline.level_rows`), a batch
   each: every 16th frame first, started from the correction R_fit R_src^T (per joint) of
   the last fitted frame r before the chunk, interpolated toward the next shape frame's own
   fit (`frame_fits.FrameFits.guide`), or where there is none carried with the source's own
   change since r (R_init(f) = R_fit(r) R_src(r)^T R_src(f)); then every 4th, every 2nd and
   the rest, started from the corrections of the fitted frames around them, interpolated;
   such a start that is already as good as those frames on the vertices the fit follows
   (`KEPT_START_MARGIN`), when they are close enough (`KEPT_START_SPAN_SECONDS`), is kept
   without a fit (`frame_fits.py`). Chunks bound the memory whatever the sequence's length;
4. smoothing: the fits' corrections of the source motion, R_fit R_src^T per joint and the
   translation's offset, low-passed over time (`SMOOTHING_SECONDS`, `timeline.low_pass`);
   each frame written is its source pose turned by its filtered correction;
5. quality, of the frames written: v2v_mm per frame (mean over the masked vertices), and the
   temporal jitter, the mean joint acceleration |second difference| * fps^2 (m/s^2) of the
   22 body joints of the fitted sequence, next to the same for the source joints.

`dmpls` (AMASS's soft-tissue coefficients) are ignored: no target has such blend shapes.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import roma
import torch

from ...body.deformation import DeformationTransfer, load_pair_transfer
from ...body.lbs import BodyModel, forward_kinematics
from ...errors import InputError, below_least, listed
from ...family import KINDS, NUM_BODY_JOINTS, map_pose, same_topology
from ...fit.fitter import BodyFitter, FitSettings
from ...fit.problem import forward
from ...fit.target import subset_size
from ...formats.body_models import BodyModelData, load_body_model
from ...formats.sequence_files import (MAX_FRAMERATE, MIN_FRAMERATE, MotionSequence,
                                       is_framerate)
from ...formats.sequences_csv import SequenceRow
from ...runtime import cpu_single_thread, posing_slices
from .batching import FitRequest, fitted_alone
from .frame_fits import KEPT_START_SPAN_SECONDS, FrameFits
from .shared_shape import MaskedBody, solve_shape
from .timeline import (level_rows, mean_acceleration, motion_at, sampled_positions, shape_at,
                       smoothing_weights)

# Two rates this close (relative) are one clock: video's NTSC rates are 1000/1001 of the
# round ones (59.94 asked at 30 fps is every 2nd frame, written at 29.97; 29.97 at 30 is
# every frame), and files store them rounded. Distinct capture rates (24, 25, 30, 50, 60,
# 100, 120, ...) are much further apart.
RATE_TOLERANCE = 2e-3
CHUNK_FRAMES = 256               # consecutive frames fitted in levels, their targets held
SEQUENCES_PER_BATCH = 8          # files in flight at once, their fits batched together
# Per-frame fit: up to 5 steps from the warm start on the per-pose fit's 3000-vertex subset
# (a step there costs about a third of one on the whole mask), the Gauss-Newton matrix
# rebuilt every 3 steps as in per-pose fits. Tuned on the realistic kit of seed 0 (SMPL-H to
# SMPL-X, 120 frames at 60 fps, against the shared-shape floor): the whole mask with 3 steps
# 1.032x the floor at 1.5x the per-pose speed, 10 steps 1.004x at 0.6x; the subset with 5
# steps 1.015x at 1.7x, 8 steps 1.008x at 1.4x. Rebuilding the matrix every step, or sharing
# one between neighbouring frames, did not pay (see docs/SEQUENCE_TUNING.md).
FRAME_FIT = FitSettings(max_iterations=5, fit_vertices=3000)
# The shape is fitted on SHAPE_FRAMES frames spread over the sequence, each first fitted on
# its own with free betas in SHAPE_FIT_STEPS steps from its source pose (those poses only feed
# the solve of the shared betas). On the realistic kit of seed 0, 5 steps (not 20) gave the
# same v2v to 0.02%; then, with the frames' fits cheaper, 4 steps and 6 frames (not 5 and 8)
# 4-12% more frames per CPU-s for 0.03% more v2v on the real sample and within 0.03% on the
# kit's four motions, at the same jitter (3 steps: 0.6% more v2v on the real sample; 4 frames:
# 0.08%).
SHAPE_FRAMES = 6
SHAPE_FIT_STEPS = 4
# The per-frame fits' corrections of the source motion (per joint R_fit R_src^T, and the
# translation's offset) are low-passed over time by a Gaussian of this standard deviation
# (seconds; 0: off). Each frame's fit stops somewhere in a small valley of the loss, and at
# high frame rates those small differences between neighbouring frames are accelerations.
# Tuned with the realistic kit of seed 0: its wave motion (60 fps) moved its joints 1.080
# times as much as the source's unfiltered, 1.043 times with 0.03 s (0.02 s: 1.046); the real
# AMASS sample posed with that kit's models 1.157 -> 1.083 at 30 fps and 1.274 -> 1.068 at
# 120 fps (0.02 s: 1.099 and 1.074), for 0.02-0.1% more v2v. With the kept starts and the
# filter's line at the ends, 0.04 s: the real sample 1.083 -> 1.076 at 30 fps and 1.067 ->
# 1.064 at 120 fps, the kit's motions within 0.001, for up to 0.1% more v2v.
SMOOTHING_SECONDS = 0.04
MAX_SMOOTHING_SECONDS = 1.0     # beyond, the filter would blur the motion's own changes
MODEL_FLAGS = {kind: f"--{kind}-model" for kind in KINDS}


@dataclass(frozen=True)
class SequenceOptions:
    """Everything a sequence run needs.

    input_path: a folder of motion files (any depth) or one motion `.npz`.
    output_dir: the output root; the input folder (or a single file's parent folder) keeps
        its own name there, with the tree below it mirrored.
    source_model: "smpl", "smplh" or "smplx", or None: each file's own (told by its poses
        or their parts).
    target_model: the model written.
    model_paths: {kind: folder or file} of the body models (a folder holding the
        conventional gendered files, e.g. `smplh/{neutral,male,female}/model.npz`,
        `smplx/SMPLX_<GENDER>.npz`, `smpl/SMPL_<GENDER>.pkl`); a model file is accepted
        with a fixed `gender`. Only the kinds a run uses must be there.
    deftrafo_path: the source-to-target deformation transfer, or a folder holding the
        official files (`smplh2smplx_deftrafo_setup.pkl`, ...); not needed between SMPL
        and SMPL-H (one mesh). mask_path: SMPL-X's valid vertices (SMPL-X targets only).
    gender: "file" (each file's own) or neutral, male or female for every file.
    fps: output frame rate (None: the source's), at most the source's (`frame_spacing`).
    source_fps: the frame rate of input files that hold none (a pose estimator's output is
        at its video's rate); None: such files fail. A file's own rate is always kept.
    shard_size, shard_index: the slice of the sorted file list (shard_size 0: all).
    overwrite: convert again files whose output is done; overwrite_since: with it, outputs
        written since this time (seconds since the epoch: the first start of a SLURM task
        that was requeued) are done all the same.
    chunk_frames: frames fitted as one batch; shape_frames, shape_rounds: the joint shape fit.
    sequences_per_batch: files converted at once, their fits batched together (a step of
        the fitter costs a fixed part that a motion's small batches of frames do not fill:
        `batching.py`).
    smoothing: standard deviation (seconds) of the low-pass of the fits' corrections over
        time (0: each frame as fitted).
    num_betas: betas written (None: the target layout's, 16 for SMPL-X and SMPL-H, 10 SMPL).
    fit: settings of the per-frame fits (betas are always held, fit_betas is ignored);
        frames whose error stands out in their level are fitted again with the defaults.
    """
    input_path: Path
    output_dir: Path
    model_paths: dict
    deftrafo_path: Path = None
    mask_path: Path = None
    source_model: str = None
    target_model: str = "smplx"
    gender: str = "file"
    fps: float = None
    source_fps: float = None
    shard_size: int = 0
    shard_index: int = 0
    overwrite: bool = False
    overwrite_since: float = None
    keep_going: bool = False
    device: str = "auto"
    chunk_frames: int = CHUNK_FRAMES
    sequences_per_batch: int = SEQUENCES_PER_BATCH
    shape_frames: int = SHAPE_FRAMES
    shape_rounds: int = 1
    smoothing: float = SMOOTHING_SECONDS
    num_betas: int = None
    fit: FitSettings = FRAME_FIT

    @property
    def betas_written(self) -> int:
        return self.num_betas or KINDS[self.target_model].motion.num_betas

    def check(self) -> None:
        """Raise InputError listing every value out of range (one per line)."""
        problems = []
        if self.gender not in ("file", "neutral", "male", "female"):
            problems.append(f"--gender must be file, neutral, male or female, got "
                            f"{self.gender!r}")
        for name, kind in (("source", self.source_model), ("target", self.target_model)):
            if kind is not None and kind not in KINDS:
                problems.append(f"--{name}-model must be one of {', '.join(KINDS)}, got "
                                f"{kind!r}")
        if self.source_model == self.target_model and self.target_model in KINDS:
            problems.append(f"source and target are both {KINDS[self.target_model].label}: "
                            "nothing to convert")
        if self.fps is not None and not self.fps > 0:
            problems.append(f"--fps must be positive, got {self.fps}")
        if self.source_fps is not None and not is_framerate(self.source_fps):
            problems.append(f"--source-fps must be from {MIN_FRAMERATE} to {MAX_FRAMERATE} "
                            f"frames per second, got {self.source_fps}")
        if self.num_betas is not None and self.num_betas < 1:
            problems.append(f"--num-betas must be >= 1, got {self.num_betas}")
        problems += below_least((("--shard-size", self.shard_size, 0),
                                 ("--shard-index", self.shard_index, 0),
                                 ("--chunk-frames", self.chunk_frames, 1),
                                 ("--sequences-per-batch", self.sequences_per_batch, 1),
                                 ("--shape-frames", self.shape_frames, 1),
                                 ("shape_rounds", self.shape_rounds, 1),      # no flag
                                 ("--max-iterations", self.fit.max_iterations, 0)))
        if not 0 <= self.smoothing <= MAX_SMOOTHING_SECONDS:
            problems.append(f"--smoothing must be from 0 to {MAX_SMOOTHING_SECONDS} seconds, "
                            f"got {self.smoothing}")
        if problems:
            raise InputError("bad options:" + listed(problems))
        if not Path(self.input_path).exists():
            raise InputError(f"{self.input_path}: input not found")


# ----------------------------------------------------------------- models

def model_not_given(kind: str) -> InputError:
    return InputError(f"no {KINDS[kind].label} body model given ({MODEL_FLAGS[kind]})")


def load_gender_model(options: SequenceOptions, kind: str, gender: str) -> BodyModelData:
    """The `gender` body model of `kind` from `options.model_paths`: in a folder, the
    gendered file; a single file only when the run's gender is fixed (it cannot stand for
    every subject's gender)."""
    path = options.model_paths.get(kind)
    if path is None:
        raise model_not_given(kind)
    path = Path(path)
    if path.is_file() and options.gender == "file":
        raise InputError(f"{path}: a single model file cannot give each file's own gender; "
                         "give the folder holding the neutral, male and female models, or "
                         "--gender neutral")
    return load_body_model(path, kind, gender)


def pair_transfer(options: SequenceOptions, source: str, target: str) -> DeformationTransfer:
    """The deformation transfer of a pair (a folder of official files, or the file)."""
    mask = options.mask_path if KINDS[target].uses_mask else None
    return load_pair_transfer(source, target, options.deftrafo_path, mask)


def subset_alone(settings: FitSettings, num_masked: int) -> FitSettings:
    """`settings` with a loss subset of at most a third of a mask of `num_masked` vertices,
    which is not cut, so that the fit takes no step on the whole mask after it."""
    return replace(settings, fit_vertices=subset_size(settings.fit_vertices, num_masked))


class GenderModels:
    """The source body, target body and fitters of one (source kind, gender), on the run's
    device."""

    def __init__(self, options, source_kind, gender, mask_ids, device):
        target_kind, num_betas = options.target_model, options.betas_written
        source_data = load_gender_model(options, source_kind, gender)
        target_data = load_gender_model(options, target_kind, gender)
        target_data.check_num_betas(num_betas, "--num-betas")
        self.source_kind, self.target_kind, self.gender = source_kind, target_kind, gender
        self.source = BodyModel(source_data, num_betas=source_data.num_shape_coeffs).to(device)
        # float64: the least squares of the shape fit and the joints of the jitter.
        self.target = BodyModel(target_data, num_betas=num_betas,
                                dtype=torch.float64).to(device)
        # Where the loss subset is cut to a third of the mask (SMPL's and SMPL-H's meshes), a
        # per-pose fit ends with a step on the whole mask. The frames' and the shape frames'
        # fits follow the subset alone: a frame starts from fitted frames around it, or
        # toward a shape frame's fit, within a few percent of its minimum, and the shape
        # frames' poses only feed the betas' solve. The seed-0 kit's motions, SMPL-X and
        # SMPL-H to SMPL and SMPL-H: first the frames between fitted frames and the shape
        # frames, 4-35% and then 9-26% more frames per CPU-s for -0.6% to +1.3% v2v; then,
        # with the first level's starts guided, its frames too: 10-35% more, +0.1-0.5% v2v.
        self.fitter = BodyFitter(target_data, mask_ids, subset_alone(replace(
            options.fit, fit_betas=False, num_betas=num_betas), len(mask_ids))).to(device)
        self.refit_fitter = BodyFitter(target_data, mask_ids, FitSettings(
            fit_betas=False, num_betas=num_betas)).to(device)     # outliers: full fit
        # The shape's frames are few: the default fit with free betas, shorter (SHAPE_FIT_STEPS).
        self.shape_fitter = BodyFitter(target_data, mask_ids, subset_alone(FitSettings(
            num_betas=num_betas, max_iterations=SHAPE_FIT_STEPS), len(mask_ids))).to(device)
        self.mask_ids = torch.as_tensor(mask_ids, device=device)
        # The shared betas are solved on the frames' loss subset, weighted to estimate the
        # mask (seed 0: 28 ms of 44 spared a sequence, v2v within 0.2% either way).
        subset = self.fitter.model.fit_set
        self.shape_set = torch.as_tensor(subset.positions, device=device)
        self.masked_target = MaskedBody(self.target, self.mask_ids[self.shape_set],
                                        subset.loss_weights)
        self.device = device

    def map_pose(self, poses: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Source poses (B, 3 J_source) as target poses (B, J_target, 3), float64."""
        return map_pose(torch.as_tensor(poses).double(), self.source_kind, self.target_kind)


# ----------------------------------------------------------------- one sequence

def frame_spacing(source_rate: float, wanted_rate: float | None,
                  path: str | Path | None) -> tuple:
    """(source frames per frame written, the rate written) from `source_rate` to
    `wanted_rate` (None: the source's): every n-th frame where the wanted rate divides the
    source's (within RATE_TOLERANCE: 59.94 to 30 keeps every 2nd frame, written at 29.97
    fps); otherwise one frame every source/wanted frames, between source frames (100 to 30
    fps: 3.33), written at the wanted rate. A rate above the source's is refused."""
    if wanted_rate is None:
        return 1, source_rate
    if isinstance(wanted_rate, bool) or not isinstance(wanted_rate, numbers.Real) \
            or not wanted_rate > 0:
        raise InputError(f"{path}: the output frame rate must be a positive number, got "
                         f"{wanted_rate!r}")
    ratio = source_rate / wanted_rate
    step = round(ratio)
    if step >= 1 and abs(ratio - step) <= RATE_TOLERANCE * step:
        return step, source_rate / step
    if ratio < 1:
        raise InputError(f"{path}: cannot raise {source_rate:g} fps to {wanted_rate:g} fps "
                         "(the output rate must be at most the source's)")
    return ratio, float(wanted_rate)


def frames_written(sequence: MotionSequence, fps: float | None) -> int:
    """How many frames a conversion of `sequence` at `fps` (None: the source's) writes."""
    spacing, _rate = frame_spacing(sequence.framerate, fps, sequence.path)
    return len(sampled_positions(len(sequence.poses), spacing))


def memory_per_frame(models: GenderModels) -> int:
    """Bytes a conversion holds per frame written until its end, float64 each: the frame
    written (`sequence_steps`: pose, translation, error, its own and its source's body
    joints), its correction and offset (`FrameFits`), its source pose and translation at the
    rate written (`SourceFrames`). SMPL-H to SMPL-X: 7.7 KB."""
    joints = models.target.num_joints
    written = 3 * joints + 3 + 1 + 2 * 3 * NUM_BODY_JOINTS    # pose, transl, v2v, joints
    fitted = 9 * joints + 3 + 1 + 1                           # correction, offset, error, steps
    source = KINDS[models.source_kind].pose_size + 3          # pose, translation
    return 8 * (written + fitted + source)


def unused_betas(sequence: MotionSequence, models: GenderModels) -> bool:
    """Whether a motion gives betas its source model cannot take, one of them not zero: the
    source body is then posed without them, as the model file allows (e.g. a SMPL model of
    10 shape coefficients and a file of 16)."""
    return bool(sequence.betas[..., models.source.num_betas:].any())


def unused_betas_note(model: str, taken: int, given: str) -> str:
    """The line (the run's note, the API's warning) that says betas beyond the `taken` that
    `model` takes were left out; `given`: which motion gives how many."""
    return (f"the {model} takes {taken} betas; {given}, not all zero beyond the {taken}th: "
            "posed without those")


def spread_frames(num_frames: int, count: int) -> np.ndarray:
    """`count` frame indices spread evenly over 0..num_frames-1, first and last included."""
    return np.unique(np.linspace(0, num_frames - 1, min(count, num_frames)).round().astype(int))


def body_joints(body: BodyModel, pose: torch.Tensor, betas: torch.Tensor,
                transl: torch.Tensor) -> torch.Tensor:
    """(B, 22, 3) posed body joints of a BodyModel: forward kinematics only, no vertices."""
    rotmats = roma.rotvec_to_rotmat(pose)
    rest = body.rest_joints(betas)
    joints = forward_kinematics(rotmats, rest, body.parents, body.levels)[1]
    return (joints + transl[:, None])[:, :NUM_BODY_JOINTS]


class SourceFrames:
    """The source frames of a sequence at the rate written (one every `spacing` source
    frames, `frame_spacing`), posed chunk by chunk on demand."""

    def __init__(self, sequence, spacing, models, deformation):
        positions = sampled_positions(len(sequence.poses), spacing)
        self.poses, self.trans = motion_at(sequence.poses, sequence.trans, positions)
        self.models = models
        self.deformation = deformation
        # (nb,), or (F, nb) where the file holds a shape per frame.
        self.betas = torch.as_tensor(shape_at(sequence.betas, positions, models.source.num_betas),
                                     dtype=torch.float32, device=models.device)

    def betas_of(self, frames: np.ndarray) -> torch.Tensor:
        """The source's shape (nb,), or (F, nb) that of `frames` where it has one per frame."""
        if self.betas.dim() == 1:
            return self.betas
        return self.betas[torch.as_tensor(frames, device=self.betas.device)]

    def __len__(self):
        return len(self.poses)

    @torch.no_grad()
    def targets(self, frames: np.ndarray) -> tuple:
        """(B, M, 3) float32 targets on the target's mask (a view of vertex-major (M, 3, B)
        storage, the fitter's layout) and (B, 22, 3) source body joints."""
        device = self.models.device
        pose = torch.as_tensor(self.poses[frames], dtype=torch.float32, device=device)
        trans = torch.as_tensor(self.trans[frames], dtype=torch.float32, device=device)
        betas = self.betas_of(frames)
        targets, joints = [], []
        with cpu_single_thread(device):
            for rows in posing_slices(len(pose), device):
                vertices, slice_joints = self.models.source.vertex_major(
                    pose[rows].view(len(pose[rows]), -1, 3),
                    betas if betas.dim() == 1 else betas[rows], trans[rows])
                targets.append(self.deformation.apply_masked(vertices))
                joints.append(slice_joints[:, :NUM_BODY_JOINTS])
            targets = torch.cat(targets, dim=-1) if len(targets) > 1 else targets[0]
        return targets.permute(2, 0, 1), torch.cat(joints)


def fit_shape(models: GenderModels, source: SourceFrames, frames: np.ndarray,
              targets: torch.Tensor, rounds: int):
    """Joint shape fit on `frames` (a generator of its fits' `FitRequest`s).

    First every frame is fitted on its own with free betas (pose and shape together: an
    alternation started from the zero shape crawls, as the poses first bend to make up
    for the wrong shape); `solve_shape` then gives the betas shared by all frames that best
    fit those poses, and each further round refits the poses with the betas held and
    solves again.

    targets: (K, M, 3) the frames' targets (`SourceFrames.targets`).
    Returns the betas (nb,) float64, the poses (K, J, 3) of the last pose fit and the
    translations (K, 3) solved with those betas.
    """
    pose = models.map_pose(source.poses[frames]).float()
    # Only the poses are used: the errors are those of the fit's own subset (no posing).
    result = yield FitRequest(models.shape_fitter, targets, pose,
                              shape_start(models, source, frames, targets, pose),
                              error_set=models.shape_fitter.model.fit_set)
    shape_targets = targets[:, models.shape_set]
    betas, transl = solve_shape(models.masked_target, result.pose.to(models.device),
                                shape_targets)
    pose = result.pose
    for _ in range(rounds - 1):
        pose = (yield FitRequest(models.fitter, targets, pose,
                                 betas.float().cpu().expand(len(frames), -1),
                                 transl.float().cpu(), models.fitter.model.fit_set)).pose
        betas, transl = solve_shape(models.masked_target, pose.to(models.device),
                                    shape_targets)
    return betas.cpu(), pose, transl.cpu()


@torch.no_grad()
def shape_start(models: GenderModels, source: SourceFrames, frames: np.ndarray,
                targets: torch.Tensor, pose: torch.Tensor) -> torch.Tensor | None:
    """The betas (K, nb) the shape frames `frames` start from: between the models of one mesh
    (SMPL and SMPL-H) the source's own, when the target takes all of them and they fit the
    frames' targets (K, M, 3) at the source poses (K, J, 3) better than the zero shape, each
    with its best translation; otherwise None, the zero shape. Seed 0, SMPL -> SMPL-H, whose
    frames all start exact: the shape fit's 4 steps were a third of the conversion, now
    30-50% more frames per CPU-s (SMPL-H -> SMPL, its 16 betas cut to SMPL's 10: no faster,
    0.15% more v2v)."""
    model = models.shape_fitter.model
    if (not same_topology(models.source_kind, models.target_kind)
            or bool(source.betas[..., model.num_betas:].any())):
        return None
    vertex_set, count = model.fit_set, len(pose)
    fitted = vertex_set.v_template                               # device and dtype
    own = torch.zeros(count, model.num_betas, dtype=fitted.dtype, device=fitted.device)
    shared = min(model.num_betas, source.betas.shape[-1])
    own[:, :shared] = source.betas_of(frames)[..., :shared]
    rotmats = roma.rotvec_to_rotmat(pose.to(fitted))
    vertex_targets = targets.to(fitted).permute(1, 2, 0)[vertex_set.positions]

    def error(betas):
        residual = forward(model, vertex_set, rotmats, betas.expand(count, -1),
                           fitted.new_zeros(count, 3))[0] - vertex_targets
        return (residual - residual.mean(0)).square().sum()

    return own if error(own) < error(torch.zeros_like(own)) else None



@dataclass
class SequenceResult:
    """A converted sequence: the output and its per-frame quality."""
    output: MotionSequence        # in the target model
    v2v_mm: np.ndarray            # (T,) mean vertex error per frame
    acceleration: np.ndarray      # (T-2,) mean joint acceleration per frame, fitted
    source_acceleration: np.ndarray
    iterations: np.ndarray        # (T,) fitter steps per frame


def convert_sequence(sequence: MotionSequence, models: GenderModels, deformation,
                     fps: float = None, chunk_frames: int = CHUNK_FRAMES,
                     shape_frames: int = SHAPE_FRAMES,
                     shape_rounds: int = 1, smoothing: float = SMOOTHING_SECONDS,
                     on_frames=None) -> SequenceResult:
    """Convert one checked `MotionSequence` with the models of its kind and gender, its
    fits each on its own (`sequence_steps`, whose arguments these are)."""
    return fitted_alone(sequence_steps(sequence, models, deformation, fps, chunk_frames,
                                       shape_frames, shape_rounds, smoothing, on_frames))


def sequence_steps(sequence: MotionSequence, models: GenderModels, deformation,
                   fps: float = None, chunk_frames: int = CHUNK_FRAMES,
                   shape_frames: int = SHAPE_FRAMES,
                   shape_rounds: int = 1, smoothing: float = SMOOTHING_SECONDS,
                   on_frames=None):
    """The conversion of one checked `MotionSequence` with the models of its kind and
    gender, as a generator: it yields each fit it needs as a `FitRequest`, is sent the
    `FitResult`, and returns the `SequenceResult` (`batching.py` fits the requests of
    several sequences as one batch).

    The source and target kinds are those of `models` (`sequence.kind` must be the source);
    `deformation` maps the source mesh onto the target's (the identity between SMPL and
    SMPL-H). smoothing: see SMOOTHING_SECONDS. on_frames: called after each chunk with the
    source frames it covered (a progress bar).

    Each frame is fitted from a start carried from fitted frames (`FrameFits.fit`), a
    chunk in levels (`level_rows`). A chunk's frames are finished (filtered, their errors
    and joints measured against the targets posed for the fit) once the frames the filter
    reaches past them are fitted, so at most a few chunks of targets are held at once.
    """
    if sequence.kind != models.source_kind:
        raise ValueError(f"a {sequence.kind} sequence given to {models.source_kind} models")
    spacing, rate = frame_spacing(sequence.framerate, fps, sequence.path)
    source = SourceFrames(sequence, spacing, models, deformation)
    num_frames = len(source)
    anchors = spread_frames(num_frames, shape_frames)
    chunks = [np.arange(start, min(start + chunk_frames, num_frames))
              for start in range(0, num_frames, chunk_frames)]
    # The first chunk is posed first: a sequence within it takes its shape frames' targets
    # from there (posing 6 frames alone reads the source's blend shapes from memory: SMPL-X
    # to SMPL, 7% of a 120-frame conversion).
    first = source.targets(chunks[0])
    anchor_targets = (first[0][torch.as_tensor(anchors, device=first[0].device)]
                      if anchors[-1] < len(chunks[0]) else source.targets(anchors)[0])
    betas, anchor_poses, anchor_transl = yield from fit_shape(
        models, source, anchors, anchor_targets, shape_rounds)
    fits = FrameFits(models, source, betas, int(KEPT_START_SPAN_SECONDS * rate + 1e-6))
    weights = smoothing_weights(rate, smoothing)
    # The frames written, filled chunk by chunk. Made whole here: a chunk's small arrays
    # kept until the end would settle in the holes its large, short-lived ones leave, and
    # the heap would grow by a chunk's targets every other chunk (60,000 frames: 7.8 GB).
    written = {"pose": np.empty((num_frames, models.target.num_joints, 3)),
               "transl": np.empty((num_frames, 3)), "v2v": np.empty(num_frames),
               "joints": np.empty((num_frames, NUM_BODY_JOINTS, 3)),
               "source_joints": np.empty((num_frames, NUM_BODY_JOINTS, 3))}

    def finish(frames, targets, joints, available):
        rotations, transl = fits.filtered(frames, weights, available)
        pose = roma.rotmat_to_rotvec(rotations)
        written["pose"][frames], written["transl"][frames] = pose.numpy(), transl.numpy()
        written["v2v"][frames] = fits.errors_of(rotations, transl, targets).numpy()
        with cpu_single_thread(models.device):
            target = models.target.v_template
            written["joints"][frames] = body_joints(
                models.target, pose.to(target), betas.to(target).expand(len(frames), -1),
                transl.to(target)).cpu().numpy()
        written["source_joints"][frames] = joints.cpu().numpy()

    # Frame 0 (the first anchor) starts from its fit with the shape; the others guide.
    fits.keep(anchors[:1], anchor_poses[:1], anchor_transl[:1])
    fits.guide(anchors[1:], anchor_poses[1:], anchor_transl[1:])
    waiting, reach, reported = [], len(weights) // 2, 0
    for index, frames in enumerate(chunks):
        if index == 0:
            (targets, joints), first = first, None         # held no longer than its chunk
        else:
            targets, joints = source.targets(frames)
        for rows in level_rows(len(frames)):
            yield from fits.fit(frames[rows],
                                targets[torch.as_tensor(rows, device=targets.device)])
        waiting.append((frames, targets, joints))
        available = frames[-1] + 1
        while waiting and (waiting[0][0][-1] + reach < available or available == num_frames):
            finish(*waiting.pop(0), available)
        if on_frames is not None:          # the source frames covered so far
            covered = (len(sequence.poses) if index == len(chunks) - 1
                       else round((frames[-1] + 1) * spacing))
            on_frames(covered - reported)
            reported = covered

    output = MotionSequence(kind=models.target_kind,
                            poses=written["pose"].reshape(num_frames, -1),
                            trans=written["transl"], betas=betas.numpy(),
                            gender=models.gender, framerate=rate)
    return SequenceResult(
        output=output, v2v_mm=written["v2v"],
        acceleration=mean_acceleration(written["joints"], rate),
        source_acceleration=mean_acceleration(written["source_joints"], rate),
        iterations=fits.iterations.numpy())


def sequence_row(name: str, result: SequenceResult, seconds: float) -> SequenceRow:
    """The sequences.csv row of a converted sequence."""
    errors = result.v2v_mm
    return SequenceRow(
        sequence=name, frames=len(errors), fps=result.output.framerate,
        gender=result.output.gender, v2v_mean_mm=float(errors.mean()),
        v2v_p95_mm=float(np.percentile(errors, 95)), v2v_max_mm=float(errors.max()),
        jitter=float(result.acceleration.mean()) if len(result.acceleration) else 0.0,
        source_jitter=(float(result.source_acceleration.mean())
                       if len(result.source_acceleration) else 0.0),
        seconds=seconds)


