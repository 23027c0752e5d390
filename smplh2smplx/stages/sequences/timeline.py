"""A motion's fitted frames over time: which frames a chunk fits first (`level_rows`), the
starts carried from fitted frames (`carried_start`), the low-pass of the fits' corrections
(`low_pass`), the joints' acceleration (`mean_acceleration`), and a motion at another
frame rate (`sampled_positions`, `motion_at`).

A correction is a frame's per-joint rotation R_fit R_src^T (and the translation's offset
trans_fit - trans_src): what the fit changed of the source pose.
"""
from __future__ import annotations

import numpy as np
import roma
import torch

# The frames of a chunk are fitted in levels: every 16th (and the last) from the last
# fitted frame before the chunk, then every 4th, every 2nd and the others, each from the
# interpolation of the fitted frames around it, whose starts are closer (1.2-1.9 steps a
# frame where one start for the whole chunk took 2.7-4.9). On the four 480-frame motions of
# the realistic kit of seed 0 (60 fps), (16, 4, 1) gave 1.9-2.1x the frames per CPU-s at
# the same v2v (0.998-1.000x) and jitter (within 0.004 of the source's ratio), each with its
# low-pass. The level of every 2nd frame pays at 30 fps, where only starts 4 frames apart
# may be kept (KEPT_START_SPAN_SECONDS): it checks half of them between closer neighbours
# (the real sample with the seed-0 models, 0.93 steps a frame against 1.12, 3-5% more frames
# per CPU-s, the same v2v and jitter 1.073x against 1.076x; at 60 and 120 fps within 2%).
LEVEL_STRIDES = (16, 4, 2, 1)


def level_rows(count: int, strides=LEVEL_STRIDES) -> list:
    """The positions of a chunk of `count` frames, fitted level by level: every
    strides[0]-th and the last first, then every strides[1]-th of the others, ..."""
    positions, done, levels = np.arange(count), np.zeros(count, dtype=bool), []
    for level, stride in enumerate(strides):
        wanted = positions % stride == 0
        if level == 0:
            wanted[-1] = True
        rows = np.flatnonzero(wanted & ~done)
        if len(rows):
            levels.append(rows)
            done[rows] = True
    if not done.all():
        levels.append(np.flatnonzero(~done))
    return levels


def known_around(frames: np.ndarray, known: np.ndarray) -> tuple:
    """For each of `frames` (F,), the last known frame at or before it, the first known frame
    after it (the one before when there is none) and its weight (f - a) / (b - a) between
    them, as numpy arrays (F,). Every frame must have a known frame at or before it."""
    known_frames = np.flatnonzero(known)
    before = known_frames[np.searchsorted(known_frames, frames, side="right") - 1]
    after_index = np.searchsorted(known_frames, frames)
    after = np.where(after_index < len(known_frames),
                     known_frames[np.minimum(after_index, len(known_frames) - 1)], before)
    return before, after, (frames - before) / np.maximum(after - before, 1)


def carried_start(frames: np.ndarray, known: np.ndarray, corrections: torch.Tensor,
                  offsets: torch.Tensor) -> tuple:
    """Corrections of `frames` carried from the frames whose corrections are `known`.

    A frame between two known frames a < f < b gets their correction interpolated, per
    joint C_a exp(w log(C_a^T C_b)) with w = (f - a) / (b - a), and the offset likewise;
    a frame with none known after it gets that of the last known frame before it (the
    source's own change since that frame carried over: measured on the real sequence, 64
    frames on, 1.4% above the fitted frame's error, where the source pose alone is 95%);
    a known frame keeps its own. Every frame must have a known frame at or before it.

    Args:
        frames: (F,); known: (T,) bool; corrections: (T, J, 3, 3); offsets: (T, 3).
    Returns:
        the corrections (F, J, 3, 3) and offsets (F, 3) to start the frames from.
    """
    before, after, weight = known_around(frames, known)
    weight = torch.as_tensor(weight)
    shift = offsets[before] + weight[:, None] * (offsets[after] - offsets[before])
    return slerp(corrections[before], corrections[after], weight), shift


def slerp(first: torch.Tensor, second: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Rotations (F, J, 3, 3) a fraction `weight` (F,) of the way from `first` to `second`
    (F, J, 3, 3) along the shortest arc, first exp(w log(first^T second))."""
    turn = roma.rotmat_to_rotvec(first.transpose(-1, -2) @ second) * weight[:, None, None]
    return first @ roma.rotvec_to_rotmat(turn)


def sampled_positions(num_frames: int, spacing: float) -> np.ndarray:
    """(F,) where in a motion of `num_frames` frames the frames one every `spacing` source
    frames lie (source frame indices, fractional between two frames): the first at 0, none
    past the last."""
    count = int(np.floor((num_frames - 1) / spacing + 1e-9)) + 1 if num_frames else 0
    return np.arange(count) * spacing


def motion_at(poses: np.ndarray, trans: np.ndarray, positions: np.ndarray) -> tuple:
    """The poses (F, 3J) and translations (F, 3) of a motion (poses (T, 3J) axis-angle,
    trans (T, 3)) at `positions` (F,) (`sampled_positions`): a frame itself at a whole
    position; between two frames, each joint's rotation slerped and the translation
    interpolated linearly (float64)."""
    whole = np.round(positions).astype(np.int64)
    if np.array_equal(whole, positions):
        return poses[whole], trans[whole]
    before, after, weight = frames_around(positions, len(poses))

    def rotations(rows):
        return roma.rotvec_to_rotmat(torch.as_tensor(poses[rows], dtype=torch.float64)
                                     .view(len(rows), -1, 3))

    pose = roma.rotmat_to_rotvec(slerp(rotations(before), rotations(after),
                                       torch.as_tensor(weight)))
    return pose.reshape(len(positions), -1).numpy(), linear_at(trans, positions)


def frames_around(positions: np.ndarray, num_frames: int) -> tuple:
    """The frames (F,) before and after each of `positions` in a motion of `num_frames`
    frames (the last frame for both past it) and the fraction (F,) of the way between them."""
    before = np.minimum(np.floor(positions).astype(np.int64), num_frames - 1)
    return before, np.minimum(before + 1, num_frames - 1), positions - before


def linear_at(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Per-frame `values` (T, ...) at `positions`, linear between two frames (float64)."""
    values = np.asarray(values, dtype=np.float64)
    before, after, weight = frames_around(positions, len(values))
    weight = weight.reshape(-1, *[1] * (values.ndim - 1))
    return values[before] + weight * (values[after] - values[before])


def shape_at(betas: np.ndarray, positions: np.ndarray, count: int) -> np.ndarray:
    """A motion's betas for a model of `count` betas (the file's cut, or zeros added):
    its one shape (count,), or where the file holds a shape per frame (T, S), those at
    `positions` (`sampled_positions`), (F, count), linear between two frames (float64)."""
    if betas.ndim == 2:
        betas = linear_at(betas, positions)
    shape = np.zeros(betas.shape[:-1] + (count,))
    kept = min(count, betas.shape[-1])
    shape[..., :kept] = betas[..., :kept]
    return shape


def smoothing_weights(rate: float, seconds: float) -> np.ndarray:
    """The Gaussian filter (2r+1,) of standard deviation `seconds` at `rate` frames/s, cut at
    three standard deviations ([1] for 0 seconds)."""
    width = seconds * rate
    radius = int(np.ceil(3.0 * width)) if width > 0 else 0
    offsets = np.arange(-radius, radius + 1)
    return np.exp(-0.5 * (offsets / width) ** 2) if radius else np.ones(1)


def low_pass(corrections: torch.Tensor, offsets: torch.Tensor, weights: np.ndarray,
             frames: np.ndarray, available: int) -> tuple:
    """Filtered corrections of the consecutive `frames` from those of frames 0..available-1.

    A rotation is filtered in the tangent space at itself, t_k = log(R^T R_k) for the
    neighbours k frames away: R exp(a), where a + b k is the line through the t_k of least
    weighted squares. Where every neighbour exists the weights are symmetric and a is their
    weighted mean; near the sequence's ends (neighbours on one side only) the line keeps the
    corrections' trend, which a mean of one side's would lag behind. Offsets likewise. The
    logarithms are taken of quaternion products, each rotation made a quaternion once; the
    neighbours k frames away are one slice of the corrections padded on both sides (the
    padding and the frames not available weigh nothing), and the products and logarithms
    are written out for unit quaternions (`quaternion_left_columns`, `unit_quaternion_log`):
    2.3 times the speed of roma's general ones, a tenth of a 120-fps conversion.

    Args:
        corrections: (T, J, 3, 3) per-joint rotations; offsets: (T, 3); weights: (2r+1,);
        frames: (F,) consecutive frame indices.
    Returns:
        the corrections (F, J, 3, 3) and offsets (F, 3) of the F frames.
    """
    radius, start, count = len(weights) // 2, int(frames[0]), len(frames)
    if not np.array_equal(frames, np.arange(start, start + count)):
        raise ValueError("low_pass filters consecutive frames")
    # Row i of the padded window is frame start - radius + i.
    low, high = max(start - radius, 0), min(start + count + radius, available)
    inside = slice(low - start + radius, high - start + radius)
    window = count + 2 * radius
    quaternions = corrections.new_zeros(window, corrections.shape[1], 4)
    quaternions[..., 3] = 1.0
    quaternions[inside] = roma.rotmat_to_unitquat(corrections[low:high])
    shifts = offsets.new_zeros(window, 3)
    shifts[inside] = offsets[low:high]
    present = np.zeros(window)
    present[inside] = 1.0
    turn = quaternion_left_columns(roma.quat_conjugation(quaternions[radius:radius + count]))
    # Weighted sums of 1, k, k^2 and of the values and k times the values.
    moments = np.zeros((3, count))
    tangent = corrections.new_zeros(2, count, corrections.shape[1], 3)
    shift = offsets.new_zeros(2, count, 3)
    for index, (offset, weight) in enumerate(zip(range(-radius, radius + 1), weights)):
        row_weights = weight * present[index:index + count]
        neighbours, neighbour_shifts = quaternions[index:index + count], shifts[index:index + count]
        relative = turn[0] * neighbours[..., :1]
        for column in (1, 2, 3):
            relative.addcmul_(turn[column], neighbours[..., column:column + 1])
        value = unit_quaternion_log(relative)
        row_weights_t = torch.as_tensor(row_weights, dtype=tangent.dtype)
        tangent[0].addcmul_(row_weights_t[:, None, None], value)
        tangent[1].addcmul_(offset * row_weights_t[:, None, None], value)
        shift[0].addcmul_(row_weights_t[:, None], neighbour_shifts)
        shift[1].addcmul_(offset * row_weights_t[:, None], neighbour_shifts)
        moments += np.outer([1.0, offset, offset ** 2], row_weights)
    total, centre, spread = torch.as_tensor(moments, dtype=tangent.dtype)
    determinant = total * spread - centre ** 2
    # The line's value at the frame, a = (spread S - centre K) / determinant with S and K the
    # sums of the values and of k times the values (a single neighbour: its value, S/total).
    line = determinant > 1e-9 * total * spread
    of_sum = torch.where(line, spread / determinant, 1.0 / total)
    of_moment = torch.where(line, -centre / determinant, 0.0)

    def intercept(sums):
        shape = (-1,) + (1,) * (sums.dim() - 2)
        return of_sum.view(shape) * sums[0] + of_moment.view(shape) * sums[1]

    return (corrections[frames] @ roma.rotvec_to_rotmat(intercept(tangent)),
            intercept(shift))


def quaternion_left_columns(first: torch.Tensor) -> torch.Tensor:
    """(4, ..., 4): the columns of the matrix of q -> first q (XYZW quaternions), so that a
    product with one `first` is four multiply-adds of q's components."""
    x, y, z, w = first.unbind(-1)
    return torch.stack([torch.stack([w, z, -y, -x], -1), torch.stack([-z, w, x, -y], -1),
                        torch.stack([y, -x, w, -z], -1), torch.stack([x, y, z, w], -1)])


def unit_quaternion_log(quaternions: torch.Tensor) -> torch.Tensor:
    """(..., 3) rotation vectors (angle at most pi) of unit XYZW quaternions (..., 4)."""
    sign = torch.where(quaternions[..., 3:] < 0, -1.0, 1.0)
    vector = quaternions[..., :3] * sign
    sine = vector.norm(dim=-1, keepdim=True)                       # sin(angle / 2)
    # 2 atan2(s, c) / s: the angle over its half-sine (a zero vector stays zero).
    return vector * (2.0 * torch.atan2(sine, quaternions[..., 3:].abs())
                     / sine.clamp(min=1e-300))


def mean_acceleration(joints: np.ndarray, fps: float) -> np.ndarray:
    """Per-frame mean joint acceleration (T-2,) in m/s^2 of joints (T, J, 3) (empty if T < 3)."""
    joints = np.asarray(joints, dtype=np.float64)
    if len(joints) < 3:
        return np.zeros(0)
    second = joints[2:] - 2.0 * joints[1:-1] + joints[:-2]
    return np.linalg.norm(second, axis=-1).mean(-1) * fps ** 2
