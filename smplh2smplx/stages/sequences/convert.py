"""One AMASS SMPL-H motion sequence -> a SMPL-X sequence in AMASS's SMPL-X format.

Subject semantics: each file is posed with the SMPL-H model of its own gender (or the one
given), its own betas and translation; the target is the deformation transfer of that posed
mesh onto the SMPL-X topology. One sequence, in order:

1. subsample to the wanted frame rate (every n-th frame; a rate that does not divide the
   source's is refused, naming the file);
2. shape: one SMPL-X shape for the whole sequence, fitted jointly on `shape_frames` frames
   spread over it. With the joint rotations fixed, the LBS vertices are affine in the betas
   and the translation (joints are linear in the betas, pose correctives depend on the
   rotations only), so the joint fit alternates a per-frame pose fit (betas held) with one
   linear least-squares solve for the shared betas and the per-frame translations;
3. frames: pose and translation of every frame, betas held fixed, in chunks of
   `chunk_frames` consecutive frames. A chunk is fitted as one batch, each frame started
   from the solution of the frame just before the chunk (the last fitted frame), corrected
   by the source's own change since then: per joint, R_init(f) = R_src(f) R_src(r)^T R_fit(r)
   with r that frame. Chunks bound the memory whatever the sequence's length;
4. quality: v2v_mm per frame (mean over the masked vertices), and the temporal jitter, the
   mean joint acceleration |second difference| * fps^2 (m/s^2) of the 22 body joints of
   the fitted SMPL-X sequence, next to the same for the source SMPL-H joints.

`dmpls` (AMASS's soft-tissue coefficients) are ignored: SMPL-X has no such blend shapes.
"""
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import roma
import torch

from ...body.lbs import BodyModel, forward_kinematics, skinning_transforms
from ...errors import InputError
from ...family import map_pose
from ...fit.fitter import BodyFitter, FitSettings
from ...formats.body_models import load_smplh, load_smplx
from ...formats.sequence_files import SmplxSequence
from ...formats.sequences_csv import SequenceRow
from ...runtime import torch_threads
NUM_BODY_JOINTS = 22             # root and 21 body joints, the same in SMPL-H and SMPL-X
SHAPE_RIDGE = 1e-6               # Tikhonov weight of the betas' least squares (m^2)
RATE_TOLERANCE = 1e-3            # relative: 59.94 -> 29.97 passes, 100 -> 30 does not
# Per-frame fit: one Levenberg-Marquardt step from the warm start. On the real sequence
# (120 fps and 30 fps) it gives the error of the full 20-step fit to 0.01%, at half the
# cost: the warm start is within a few percent of the minimum, and the tolerance test of
# a second step only confirms it. The step is on the whole mask (no vertex subset): from so
# close a start, a subset's own minimum would be a detour.
FRAME_FIT = FitSettings(max_iterations=1, fit_vertices=0)
# A frame whose error exceeds this times its chunk's median is fitted again in full.
OUTLIER_FACTOR = 1.2


@dataclass(frozen=True)
class SequenceOptions:
    """Everything a sequence run needs.

    input_path: an AMASS SMPL-H root (or any folder below it) or one `*_poses.npz`.
    output_dir: the output root; the tree below the input folder is mirrored there.
    smplh_model: SMPL-H folder holding `{neutral,male,female}/model.npz` (AMASS codebase)
        or `SMPLH_<GENDER>.npz/.pkl`; a model file is accepted with a fixed `gender`.
    smplx_model: SMPL-X folder holding `smplx/SMPLX_<GENDER>.npz` (or a file, likewise).
    gender: "file" (each file's own) or neutral, male or female for every file.
    fps: output frame rate (None: the source's); must divide the source rate.
    shard_size, shard_index: the slice of the sorted file list (shard_size 0: all).
    chunk_frames: frames fitted as one batch; shape_frames, shape_rounds: the joint shape fit.
    fit: settings of the per-frame fits (betas are always held, fit_betas is ignored);
        frames whose error stands out in their chunk are fitted again with the defaults.
    """
    input_path: Path
    output_dir: Path
    smplh_model: Path
    smplx_model: Path
    deftrafo_path: Path
    mask_path: Path
    gender: str = "file"
    fps: float = None
    shard_size: int = 0
    shard_index: int = 0
    overwrite: bool = False
    keep_going: bool = False
    device: str = "auto"
    chunk_frames: int = 256
    shape_frames: int = 8
    shape_rounds: int = 1
    num_betas: int = 10
    fit: FitSettings = FRAME_FIT

    def check(self):
        """Raise InputError for values out of range."""
        if self.gender not in ("file", "neutral", "male", "female"):
            raise InputError(f"gender must be file, neutral, male or female, got {self.gender!r}")
        if self.fps is not None and not self.fps > 0:
            raise InputError(f"fps must be positive, got {self.fps}")
        if self.shard_size < 0 or self.shard_index < 0:
            raise InputError("batch_size and batch_index must be >= 0, got "
                             f"{self.shard_size} and {self.shard_index}")
        if self.chunk_frames < 1 or self.shape_frames < 1 or self.shape_rounds < 1:
            raise InputError("chunk_frames, shape_frames and shape_rounds must be >= 1")
        if self.fit.max_iterations < 0:
            raise InputError(f"max_iterations must be >= 0, got {self.fit.max_iterations}")
        if not Path(self.input_path).exists():
            raise InputError(f"{self.input_path}: input not found")


# ----------------------------------------------------------------- models

def _model_file(folder, kind, gender):
    """The `gender` model file in a model folder, or InputError listing what was looked for."""
    folder = Path(folder)
    if kind == "smplh":
        names = [f"{gender}/model.npz", f"SMPLH_{gender.upper()}.npz", f"SMPLH_{gender.upper()}.pkl"]
    else:
        names = [f"SMPLX_{gender.upper()}.npz", f"SMPLX_{gender.upper()}.pkl"]
    candidates = [folder / name for name in names] + [folder / kind / name for name in names]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(f"{folder}: no {gender} {'SMPL-H' if kind == 'smplh' else 'SMPL-X'} "
                     f"model; looked for {', '.join(str(c.relative_to(folder)) for c in candidates)}")


def model_path(model, kind, gender, fixed_gender):
    """The model file for `gender`: in a folder, the gendered file; a file is accepted only
    when the run's gender is fixed (it cannot stand for every subject's gender)."""
    model = Path(model)
    if model.is_dir():
        return _model_file(model, kind, gender)
    if not fixed_gender:
        raise InputError(f"{model}: a single model file cannot give each file's own gender; "
                         "give the folder holding the neutral, male and female models, or "
                         "--gender neutral")
    return model


class GenderModels:
    """The SMPL-H body, SMPL-X body and fitter of one gender, on the run's device."""

    def __init__(self, options, gender, mask_ids, device):
        fixed = options.gender != "file"
        smplh = load_smplh(model_path(options.smplh_model, "smplh", gender, fixed))
        smplx = load_smplx(model_path(options.smplx_model, "smplx", gender, fixed))
        if options.num_betas > smplx.num_shape_coeffs:
            raise InputError(f"{smplx.path}: has {smplx.num_shape_coeffs} shape coefficients, "
                             f"{options.num_betas} requested")
        self.gender = gender
        self.smplh = BodyModel(smplh, num_betas=smplh.num_shape_coeffs).to(device)
        # float64: the least squares of the shape fit and the joints of the jitter.
        self.smplx = BodyModel(smplx, num_betas=options.num_betas, dtype=torch.float64).to(device)
        settings = replace(options.fit, fit_betas=False, num_betas=options.num_betas)
        self.fitter = BodyFitter(smplx, mask_ids, settings).to(device)      # betas held
        self.refit_fitter = BodyFitter(smplx, mask_ids, FitSettings(
            fit_betas=False, num_betas=options.num_betas)).to(device)     # outliers: full fit
        # The shape's frames are few: they get the default (full) fit, with free betas.
        self.shape_fitter = BodyFitter(smplx, mask_ids, FitSettings(
            num_betas=options.num_betas)).to(device)
        self.mask_ids = torch.as_tensor(mask_ids, device=device)
        self.masked_smplx = MaskedBody(self.smplx, self.mask_ids)
        self.device = device


# ----------------------------------------------------------------- one sequence

def frame_step(source_rate, wanted_rate, path):
    """The subsampling step n (every n-th frame) from `source_rate` to `wanted_rate`."""
    if wanted_rate is None:
        return 1
    ratio = source_rate / wanted_rate
    step = round(ratio)
    if step < 1 or abs(ratio - step) > RATE_TOLERANCE * ratio:
        raise InputError(f"{path}: cannot subsample {source_rate:g} fps to {wanted_rate:g} fps "
                         f"(the source rate must be a whole multiple of the output rate)")
    return step


def spread_frames(num_frames, count):
    """`count` frame indices spread evenly over 0..num_frames-1, first and last included."""
    return np.unique(np.linspace(0, num_frames - 1, min(count, num_frames)).round().astype(int))


def mean_acceleration(joints, fps):
    """Per-frame mean joint acceleration (T-2,) in m/s^2 of joints (T, J, 3) (empty if T < 3)."""
    joints = np.asarray(joints, dtype=np.float64)
    if len(joints) < 3:
        return np.zeros(0)
    second = joints[2:] - 2.0 * joints[1:-1] + joints[:-2]
    return np.linalg.norm(second, axis=-1).mean(-1) * fps ** 2


def body_joints(body, pose, betas, transl):
    """(B, 22, 3) posed body joints of a BodyModel: forward kinematics only, no vertices."""
    rotmats = roma.rotvec_to_rotmat(pose)
    rest = body.rest_joints(betas)
    joints = forward_kinematics(rotmats, rest, body.parents, body.levels)[1]
    return (joints + transl[:, None])[:, :NUM_BODY_JOINTS]


def _cpu_single_thread(device):
    """torch on one thread for the work between fits, on the CPU: its threads spin while
    they wait, and on a shared machine the posing and transfer of a chunk then cost three
    times the CPU time (and more wall time) than on one thread. (The fitter runs its own
    pool of single-threaded workers.)"""
    return torch_threads(1) if torch.device(device).type == "cpu" else nullcontext()


class SourceFrames:
    """The subsampled source frames of a sequence, posed chunk by chunk on demand."""

    def __init__(self, sequence, step, models, deformation):
        self.poses = sequence.poses[::step]
        self.trans = sequence.trans[::step]
        self.models = models
        self.deformation = deformation
        count = models.smplh.num_betas
        betas = np.zeros(count)
        betas[:min(count, len(sequence.betas))] = sequence.betas[:count]
        self.betas = torch.as_tensor(betas, dtype=torch.float32, device=models.device)

    def __len__(self):
        return len(self.poses)

    @torch.no_grad()
    def targets(self, frames):
        """(B, M, 3) float32 SMPL-X targets on the mask and (B, 22, 3) source body joints."""
        device = self.models.device
        pose = torch.as_tensor(self.poses[frames], dtype=torch.float32, device=device)
        trans = torch.as_tensor(self.trans[frames], dtype=torch.float32, device=device)
        with _cpu_single_thread(device):
            vertices, joints = self.models.smplh(pose.view(-1, 52, 3),
                                                 self.betas.expand(len(pose), -1), trans)
            targets = self.deformation.apply(vertices)[:, self.models.mask_ids]
        return targets, joints[:, :NUM_BODY_JOINTS]


class MaskedBody:
    """A BodyModel's per-vertex constants on the masked vertices, gathered once.

    body: the BodyModel (its joints and kinematic tree are used whole); mask_ids: (M,).
    """

    def __init__(self, body, mask_ids):
        self.body = body
        mask_ids = torch.as_tensor(mask_ids, device=body.v_template.device)
        num_features = len(body.posedirs)
        self.v_template = body.v_template[mask_ids]
        self.weights = body.weights[mask_ids]                                 # (M, J)
        self.shapedirs = body.shapedirs[mask_ids]                             # (M, 3, nb)
        self.posedirs = body.posedirs.view(num_features, -1, 3)[:, mask_ids].reshape(
            num_features, -1)                                                 # (P, M*3)


@torch.no_grad()
def shape_columns(masked, pose):
    """The masked vertices as an affine function of the betas for fixed rotations.

    v_i = sum_j w_ij (R_j x_i + t_j), with x_i = T_i + S_i betas + P_i(rotations) and the
    skinning translations t_j = p_j - R_j J_j, where the joints J and their posed places p
    are linear in the betas: so v = base + columns @ betas, computed here from one forward
    kinematics per unit beta (joints only) and the blended rotations of the mask.

    Args:
        masked: a MaskedBody; pose: (K, J, 3) axis-angle.
    Returns:
        base (K, M, 3) and columns (K, M, 3, nb), in the body's dtype.
    """
    body = masked.body
    dtype, device = body.v_template.dtype, body.v_template.device
    rotmats = roma.rotvec_to_rotmat(pose.to(device, dtype))
    count, num_joints, num_betas = len(pose), body.num_joints, body.num_betas
    units = torch.cat([torch.zeros(1, num_betas), torch.eye(num_betas)]).to(device, dtype)
    rest = body.rest_joints(units).repeat_interleave(count, 0)         # ((nb+1) K, J, 3)
    world_rot, world_joints = forward_kinematics(
        rotmats.repeat(num_betas + 1, 1, 1, 1), rest, body.parents, body.levels)
    trans = skinning_transforms(world_rot, world_joints, rest)[1].view(
        num_betas + 1, count, num_joints, 3)
    blended = torch.einsum("mj,kjab->kmab", masked.weights, world_rot[:count])  # (K, M, 3, 3)
    identity = torch.eye(3, dtype=dtype, device=device)
    features = (rotmats[:, 1:] - identity).reshape(count, -1)
    rest_vertices = masked.v_template + (features @ masked.posedirs).view(count, -1, 3)
    shifts = torch.einsum("mj,nkjc->nkmc", masked.weights, trans)       # (nb+1, K, M, 3)
    base = (blended @ rest_vertices[..., None]).squeeze(-1) + shifts[0]
    columns = (torch.einsum("kmab,mbs->kmas", blended, masked.shapedirs)
               + (shifts[1:] - shifts[:1]).permute(1, 2, 3, 0))
    return base, columns


@torch.no_grad()
def solve_shape(masked, pose, targets, ridge=SHAPE_RIDGE):
    """Shared betas and per-frame translations for fixed rotations, by linear least squares.

    Args:
        masked: the SMPL-X MaskedBody (float64).
        pose: (K, 55, 3) axis-angle; targets: (K, M, 3).
    Returns:
        betas (nb,) and translations (K, 3), in the body's dtype.
    """
    num_betas = masked.body.num_betas
    with _cpu_single_thread(masked.body.v_template.device):
        base, columns = shape_columns(masked, pose)
    residual = targets.to(base) - base                            # (K, M, 3)
    # The best translation of a frame is its mean residual: take it out of both sides.
    centred_columns = columns - columns.mean(1, keepdim=True)     # (K, M, 3, nb)
    centred_residual = residual - residual.mean(1, keepdim=True)
    matrix = centred_columns.reshape(-1, num_betas)
    normal = matrix.T @ matrix + ridge * torch.eye(num_betas, dtype=matrix.dtype,
                                                   device=matrix.device)
    betas = torch.linalg.solve(normal, matrix.T @ centred_residual.reshape(-1))
    transl = (residual - columns @ betas).mean(1)
    return betas, transl


def fit_shape(models, source, frames, rounds):
    """Joint shape fit on `frames`.

    First every frame is fitted on its own with free betas (pose and shape together: an
    alternation started from the zero shape crawls, as the poses first bend to make up
    for the wrong shape); `solve_shape` then gives the betas shared by all frames that best
    fit those poses, and each further round refits the poses with the betas held and
    solves again.

    Returns the betas (nb,) float64, the poses (K, 55, 3) of the last pose fit and the
    translations (K, 3) solved with those betas.
    """
    targets, _ = source.targets(frames)
    result = models.shape_fitter.fit(
        targets, map_pose(source.poses[frames], "smplh", "smplx").float())
    betas, transl = solve_shape(models.masked_smplx, result.pose.to(models.device),
                                targets)
    pose = result.pose
    for _ in range(rounds - 1):
        pose = models.fitter.fit(targets, pose, betas.float().cpu().expand(len(frames), -1),
                                 transl.float().cpu()).pose
        betas, transl = solve_shape(models.masked_smplx, pose.to(models.device),
                                    targets)
    return betas.cpu(), pose, transl.cpu()


def warm_start(source_poses, reference_source, reference_fit):
    """Initial SMPL-X poses (B, 55, 3) of frames from a fitted reference frame.

    Per joint, R_init = R_fit(ref) R_src(ref)^T R_src: the source's own change since the
    reference frame, applied to the reference's fitted rotation. (Measured on the real
    sequence, 64 frames on: 1.4% above the fitted frame's error, where the correction
    applied on the other side gives 4.5% and the source pose alone 95%.)
    """
    src = roma.rotvec_to_rotmat(map_pose(source_poses, "smplh", "smplx").double())
    ref_src = roma.rotvec_to_rotmat(map_pose(reference_source[None], "smplh", "smplx").double())[0]
    ref_fit = roma.rotvec_to_rotmat(torch.as_tensor(reference_fit).double())
    return roma.rotmat_to_rotvec(ref_fit @ ref_src.transpose(-1, -2) @ src).float()


def refit_outliers(models, targets, betas, result):
    """Fit again, with the full settings, the frames of a chunk whose error stands out.

    The per-frame fit is short (a warm start is a step away from the minimum); a frame
    whose error exceeds OUTLIER_FACTOR times the chunk's median (a jump in the source, a
    start that was not close) gets the full fit from where it stopped. `result` (a
    FitResult) is updated in place; returns the number of frames refitted.
    """
    errors = result.v2v_mean_mm
    outliers = torch.nonzero(errors > OUTLIER_FACTOR * errors.median()).squeeze(1)
    if len(outliers) == 0:
        return 0
    again = models.refit_fitter.fit(targets[outliers], result.pose[outliers],
                                    betas.expand(len(outliers), -1), result.transl[outliers])
    better = again.v2v_mean_mm < errors[outliers]
    rows = outliers[better]
    for name in ("pose", "transl", "v2v_mean_mm", "v2v_max_mm", "converged"):
        getattr(result, name)[rows] = getattr(again, name)[better]
    result.iterations[outliers] += again.iterations
    return len(outliers)


@dataclass
class SequenceResult:
    """A converted sequence: the output and its per-frame quality."""
    output: SmplxSequence
    v2v_mm: np.ndarray            # (T,) mean vertex error per frame
    acceleration: np.ndarray      # (T-2,) mean joint acceleration per frame, fitted
    source_acceleration: np.ndarray
    iterations: np.ndarray        # (T,) fitter steps per frame


def convert_sequence(sequence, models, deformation, fps=None, chunk_frames=256,
                     shape_frames=8, shape_rounds=1, warm=True):
    """Convert one checked `SmplhSequence` with the models of its gender.

    warm: start each chunk from the previous chunk's last frame (False: every frame from
    its own source pose, as per-pose conversion does; kept for the benchmark).
    Returns a `SequenceResult`.
    """
    step = frame_step(sequence.framerate, fps, sequence.path)
    rate = sequence.framerate / step
    source = SourceFrames(sequence, step, models, deformation)
    num_frames = len(source)
    anchors = spread_frames(num_frames, shape_frames)
    betas, anchor_poses, anchor_transl = fit_shape(models, source, anchors, shape_rounds)
    fixed_betas = betas.float()

    poses, transls, errors, iterations, source_joints = [], [], [], [], []
    last = anchors[0]                                       # frame 0, fitted with the shape
    reference = (anchor_poses[0], anchor_transl[0].float())
    for start in range(0, num_frames, chunk_frames):
        frames = np.arange(start, min(start + chunk_frames, num_frames))
        targets, joints = source.targets(frames)
        if warm:
            # The last fitted frame's pose correction and translation, carried over with
            # the source's own change since that frame.
            init = warm_start(source.poses[frames], source.poses[last], reference[0])
            moved = torch.as_tensor(source.trans[frames] - source.trans[last]).float()
            init_transl = reference[1] + moved
        else:
            init, init_transl = map_pose(source.poses[frames], "smplh", "smplx").float(), None
        result = models.fitter.fit(targets, init, fixed_betas.expand(len(frames), -1),
                                   init_transl)
        refit_outliers(models, targets, fixed_betas, result)
        poses.append(result.pose)
        transls.append(result.transl)
        errors.append(result.v2v_mean_mm)
        iterations.append(result.iterations)
        source_joints.append(joints.cpu())
        last, reference = frames[-1], (result.pose[-1], result.transl[-1])
    pose, transl = torch.cat(poses), torch.cat(transls)

    fitted_joints = []
    for start in range(0, num_frames, chunk_frames):
        rows = slice(start, start + chunk_frames)
        count = len(pose[rows])
        with _cpu_single_thread(models.device):
            fitted_joints.append(body_joints(
                models.smplx, pose[rows].to(models.smplx.v_template),
                betas.to(models.smplx.v_template).expand(count, -1),
                transl[rows].to(models.smplx.v_template)).cpu())
    output = SmplxSequence(pose=pose.double().numpy(), trans=transl.double().numpy(),
                           betas=betas.numpy(), gender=models.gender, framerate=rate)
    return SequenceResult(
        output=output, v2v_mm=torch.cat(errors).numpy().astype(np.float64),
        acceleration=mean_acceleration(torch.cat(fitted_joints).numpy(), rate),
        source_acceleration=mean_acceleration(torch.cat(source_joints).numpy(), rate),
        iterations=torch.cat(iterations).numpy())


def sequence_row(name, result, seconds):
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


