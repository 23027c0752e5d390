"""AMASS-style SMPL-H motion sequences: anatomical movements, finger curls, ground
contact and walking, written in the AMASS layout."""
from pathlib import Path

import numpy as np

from .blendshapes import NUM_SMPLH_BETAS
from .files import write_npz
from .seeding import stream_rng
from .skeleton import FINGERS, LEFT, design_skeleton, finger_joint


# Rotation axes of the anatomical movements of left-side and middle joints, in the rest
# pose frame (y up, facing +z); a positive angle is the movement named. Right joints use
# the mirrored axes. Values: (axis, lowest angle, highest angle) in radians.
BODY_DOFS = {
    (1, "flex"): ((-1, 0, 0), -0.5, 2.0), (1, "abduct"): ((0, 0, 1), -0.3, 0.9),
    (1, "twist"): ((0, 1, 0), -0.5, 0.5), (4, "flex"): ((1, 0, 0), 0.0, 2.4),
    (7, "flex"): ((1, 0, 0), -0.6, 0.7), (7, "invert"): ((0, 0, 1), -0.3, 0.3),
    (10, "flex"): ((1, 0, 0), -0.4, 0.3),
    (3, "bend"): ((1, 0, 0), -0.3, 0.8), (3, "side"): ((0, 0, 1), -0.3, 0.3),
    (3, "twist"): ((0, 1, 0), -0.4, 0.4),
    (6, "bend"): ((1, 0, 0), -0.2, 0.4), (6, "side"): ((0, 0, 1), -0.2, 0.2),
    (6, "twist"): ((0, 1, 0), -0.3, 0.3),
    (9, "bend"): ((1, 0, 0), -0.2, 0.4), (9, "side"): ((0, 0, 1), -0.2, 0.2),
    (9, "twist"): ((0, 1, 0), -0.3, 0.3),
    (12, "nod"): ((1, 0, 0), -0.4, 0.5), (12, "turn"): ((0, 1, 0), -0.6, 0.6),
    (15, "nod"): ((1, 0, 0), -0.4, 0.5), (15, "turn"): ((0, 1, 0), -0.6, 0.6),
    (15, "tilt"): ((0, 0, 1), -0.3, 0.3),
    (13, "raise"): ((0, 0, 1), -0.2, 0.4), (13, "forward"): ((0, -1, 0), -0.2, 0.3),
    (16, "down"): ((0, 0, -1), -1.2, 1.5), (16, "forward"): ((0, -1, 0), -0.8, 1.6),
    (16, "twist"): ((1, 0, 0), -0.8, 0.8), (18, "flex"): ((0, -1, 0), 0.0, 2.4),
    (18, "twist"): ((1, 0, 0), -0.5, 0.5),
    (20, "flex"): ((0, 0, -1), -0.7, 0.9), (20, "deviate"): ((0, 1, 0), -0.3, 0.4),
}
_MIDDLE_JOINTS = {3, 6, 9, 12, 15}
RIGHT_OF = {1: 2, 4: 5, 7: 8, 10: 11, 13: 14, 16: 17, 18: 19, 20: 21}


def mirror_rotvecs(rotvecs):
    """Axis-angle rotations mirrored through the x = 0 plane (left <-> right)."""
    return np.asarray(rotvecs) * np.array([1.0, -1.0, -1.0])


def finger_axes(skeleton, finger):
    """(curl axis, spread axis) of a left-hand finger: curling bends it towards the palm."""
    side_joints = [finger_joint(LEFT, finger, s) for s in range(3)]
    points = [*skeleton.joints[side_joints], skeleton.tips[LEFT][FINGERS.index(finger)]]
    direction = points[3] - points[0]
    direction /= np.linalg.norm(direction)
    toward = np.array([0.0, -1.0, -0.6]) if finger == "thumb" else np.array([0.0, -1.0, 0.0])
    curl = np.cross(direction, toward)
    curl /= np.linalg.norm(curl)
    spread = np.cross(curl, direction)
    return curl, spread / np.linalg.norm(spread)


def hand_poses(skeleton, curls, spreads):
    """(N, 15, 3) left-hand axis-angle poses from per-finger curls (N, 5, 3) and spreads
    (N, 5), fingers in FINGERS order."""
    axes = [finger_axes(skeleton, finger) for finger in FINGERS]
    curl_axes = np.array([curl for curl, _ in axes])              # (5, 3)
    spread_axes = np.array([spread for _, spread in axes])
    poses = curls[..., None] * curl_axes[None, :, None]            # (N, 5, 3 joints, 3)
    poses[:, :, 0] += spreads[..., None] * spread_axes[None]
    return poses.reshape(len(curls), 15, 3)


def random_hand_poses(skeleton, rng, count):
    """(count, 15, 3) plausible left-hand poses: relaxed to fist-like curls, small spreads."""
    base = rng.uniform(-0.1, 1.2, size=(count, 1, 1))
    curls = np.clip(base * np.array([0.9, 1.0, 0.7]) + rng.normal(0, 0.2, (count, 5, 3)),
                    -0.15, 1.6)
    poses = hand_poses(skeleton, curls, rng.normal(0, 0.12, (count, 5)))
    return poses + rng.normal(0, 0.03, poses.shape)


def hand_pca(samples):
    """(components (45, 45), mean (45,)) of hand poses (N, 15, 3), like MANO's hand PCA."""
    flat = samples.reshape(len(samples), -1)
    mean = flat.mean(axis=0)
    _, _, components = np.linalg.svd(flat - mean, full_matrices=False)
    return components, mean


_MOTIONS = ("walk", "wave", "squat", "bend", "dance")


def motion_angles(kind, times, rng):
    """{(joint, dof): angles (T,)} of left/middle joints, and {(joint, dof): angles} of
    right joints (keys use the left joint id), for one kind of motion over `times` (s)."""
    def wave(amplitude, period, phase=0.0, offset=0.0):
        return offset + amplitude * np.sin(2 * np.pi * times / period + phase)

    jitter = rng.uniform(0.85, 1.15)
    period = rng.uniform(0.9, 1.3)
    left, right = {}, {}
    if kind == "walk":
        for angles, phase in ((left, 0.0), (right, np.pi)):
            angles[(1, "flex")] = wave(0.45 * jitter, period, phase, 0.1)
            angles[(4, "flex")] = 0.55 + 0.5 * np.sin(2 * np.pi * times / period + phase - 1.2)
            angles[(7, "flex")] = wave(0.2, period, phase + 0.6)
            angles[(16, "down")] = np.full_like(times, 1.25)
            angles[(16, "forward")] = wave(0.35 * jitter, period, phase + np.pi)
            angles[(18, "flex")] = wave(0.15, period, phase + np.pi, 0.35)
        left[(3, "twist")] = wave(0.08, period)
        left[(15, "nod")] = wave(0.05, period / 2, 0.0, 0.05)
    elif kind == "wave":
        left[(16, "down")] = wave(0.1, 2.0, 0.0, 1.2)
        left[(18, "flex")] = np.full_like(times, 0.25)
        right[(16, "down")] = wave(0.15, 2.0, 0.5, -0.35)
        right[(16, "twist")] = np.full_like(times, -0.6)
        right[(18, "flex")] = wave(0.45 * jitter, period * 0.7, 0.0, 1.1)
        right[(20, "deviate")] = wave(0.2, period * 0.7, 1.0)
        left[(15, "turn")] = wave(0.25, 3.0)
        left[(3, "side")] = wave(0.06, 3.0, 1.0)
        for angles in (left, right):
            angles[(1, "abduct")] = np.full_like(times, 0.08)
    elif kind == "squat":
        depth = 0.5 - 0.5 * np.cos(2 * np.pi * times / (2.2 * period))
        for angles in (left, right):
            angles[(1, "flex")] = 1.3 * jitter * depth
            angles[(1, "abduct")] = 0.05 + 0.15 * depth
            angles[(4, "flex")] = 1.9 * jitter * depth
            angles[(7, "flex")] = -0.5 * depth
            angles[(16, "down")] = 1.2 - 0.9 * depth
            angles[(16, "forward")] = 1.3 * depth
            angles[(18, "flex")] = 0.2 + 0.3 * depth
        left[(3, "bend")] = 0.35 * depth
        left[(15, "nod")] = -0.2 * depth
    elif kind == "bend":
        depth = 0.5 - 0.5 * np.cos(2 * np.pi * times / (2.5 * period))
        left[(3, "bend")] = 0.6 * jitter * depth
        left[(6, "bend")] = 0.25 * depth
        left[(9, "bend")] = 0.2 * depth
        left[(3, "twist")] = wave(0.2, 2.5 * period, 0.5) * depth
        left[(15, "nod")] = 0.3 * depth
        for angles, side in ((left, 1.0), (right, -1.0)):
            angles[(1, "flex")] = 0.3 * depth
            angles[(4, "flex")] = 0.15 * depth
            angles[(16, "down")] = 1.25 - 0.3 * depth
            angles[(16, "forward")] = 0.6 * depth + side * 0.1 * depth
            angles[(18, "flex")] = 0.3 + 0.2 * depth
    else:  # dance: every movement oscillates within part of its range
        for angles in (left, right):
            for key, (_, low, high) in BODY_DOFS.items():
                if key[0] in _MIDDLE_JOINTS and angles is right:
                    continue
                middle, half = (low + high) / 2, (high - low) / 2
                angles[key] = wave(0.35 * half * rng.uniform(0.5, 1.0), rng.uniform(0.8, 2.5),
                                   rng.uniform(0, 2 * np.pi), 0.3 * middle)
                if key == (16, "down"):
                    angles[key] += 0.7
    for angles in (left, right):
        for key, values in angles.items():
            _, low, high = BODY_DOFS[key]
            angles[key] = np.clip(values, low, high)
    return left, right


def body_rotvecs(left, right, num_frames):
    """(T, 22, 3) body axis-angle poses from the movement angles of motion_angles."""
    pose = np.zeros((num_frames, 22, 3))
    for angles, mirrored in ((left, False), (right, True)):
        for (joint, dof), values in angles.items():
            axis = np.asarray(BODY_DOFS[(joint, dof)][0], float)
            target = joint
            if mirrored:
                target = RIGHT_OF.get(joint, joint)
                axis = mirror_rotvecs(axis)
            pose[:, target] += values[:, None] * axis
    return pose


def hand_motion(skeleton, times, rng):
    """(T, 15, 3) left-hand poses: each finger curling and uncurling at its own pace."""
    curls = np.zeros((len(times), 5, 3))
    base = rng.uniform(0.0, 0.8)
    for finger in range(5):
        amplitude, period = rng.uniform(0.1, 0.6), rng.uniform(0.8, 2.5)
        curl = base + amplitude * np.sin(2 * np.pi * times / period + rng.uniform(0, 6.3))
        curls[:, finger] = np.clip(curl, -0.1, 1.5)[:, None] * np.array([0.9, 1.0, 0.7])
    spreads = np.broadcast_to(rng.normal(0, 0.08, 5), (len(times), 5))
    return hand_poses(skeleton, curls, spreads)


def root_rotvecs(headings, tilt):
    """(T, 3) AMASS global orientations: the y-up body stood up in AMASS's z-up world,
    turned by `headings` (T,) about z, leaning by `tilt` (T, 3) (body frame axis-angle)."""
    from scipy.spatial.transform import Rotation
    stand_up = Rotation.from_rotvec([np.pi / 2, 0.0, 0.0])
    turn = Rotation.from_rotvec(np.outer(headings, [0.0, 0.0, 1.0]))
    return (turn * stand_up * Rotation.from_rotvec(tilt)).as_rotvec()


def synthetic_sequence(skeleton, kind, num_frames, framerate, rng):
    """(poses (T, 156), heading (T,)) of one AMASS-style SMPL-H motion."""
    times = np.arange(num_frames) / framerate
    left, right = motion_angles(kind, times, rng)
    body = body_rotvecs(left, right, num_frames)
    left_hand = hand_motion(skeleton, times, rng)
    right_hand = mirror_rotvecs(hand_motion(skeleton, times, rng))
    heading = rng.uniform(-np.pi, np.pi) + rng.uniform(-0.3, 0.3) * times / max(times[-1], 1)
    tilt = np.stack([0.03 * np.sin(times * rng.uniform(1, 3)), np.zeros(num_frames),
                     0.02 * np.sin(times * rng.uniform(1, 3))], axis=1)
    body[:, 0] = root_rotvecs(heading, tilt)
    poses = np.concatenate([body.reshape(num_frames, -1), left_hand.reshape(num_frames, -1),
                            right_hand.reshape(num_frames, -1)], axis=1)
    return poses, heading



_SUBSETS = (
    ("CMU", "{subject:02d}", "{subject:02d}_{trial:02d}_poses.npz"),
    ("BMLrub", "rub{subject:03d}", "{trial:04d}_{motion}_poses.npz"),
    ("KIT", "{subject}", "{motion}{trial:02d}_poses.npz"),
    ("MPI_HDM05", "bk", "HDM_bk_{motion}_{trial:02d}_120_poses.npz"),
    ("BMLmovi", "Subject_{subject}_F_MoSh", "Subject_{subject}_F_{trial}_poses.npz"),
)
AMASS_FRAMERATE = 60.0
# Beside the first sequence (CMU/03/03_01_poses.npz): its SMPL-X file and the subject's shape.
SMPLX_SEQUENCE = "CMU/03/03_01_stageii.npz"
SHAPE_FILE = "CMU/03/shape.npz"


def sequence_path(index, motion):
    """Relative AMASS path of the index-th synthetic sequence."""
    subset, subject, name = _SUBSETS[index % len(_SUBSETS)]
    values = dict(subject=3 + 7 * index, trial=1 + index // len(_SUBSETS), motion=motion)
    return f"{subset}/{subject.format(**values)}/{name.format(**values)}"


def ground_translations(smplh, poses, betas, headings, moving, framerate):
    """(T, 3) AMASS translations: feet on the ground (z = 0), walking along the heading."""
    import torch
    from smplh2smplx.formats.body_models import BodyModelData
    from smplh2smplx.body.lbs import BodyModel
    data = BodyModelData(kind="smplh", path=Path("synthetic"), v_template=smplh.v_template,
                         faces=smplh.faces.astype(np.int64), j_regressor=smplh.j_regressor,
                         parents=smplh.parents, weights=smplh.weights,
                         posedirs=smplh.posedirs, shapedirs=smplh.shapedirs,
                         num_shape_coeffs=NUM_SMPLH_BETAS)
    model = BodyModel(data, num_betas=NUM_SMPLH_BETAS, dtype=torch.float64)
    with torch.no_grad():
        vertices, _ = model(torch.as_tensor(poses).view(len(poses), 52, 3),
                            torch.as_tensor(betas)[None].expand(len(poses), -1))
    lowest = vertices[..., 2].min(dim=1).values.numpy()
    forward = np.stack([np.sin(headings), -np.cos(headings)], axis=1)   # the body faces -y
    speed = 1.2 if moving else 0.0
    path = np.cumsum(forward * speed / framerate, axis=0)
    return np.c_[path, -lowest + 0.002]


def write_amass(models, paths, seed, n_sequences, frames_per_sequence,
                genders=("neutral", "male", "female")):
    """Synthetic AMASS SMPL-H sequences (genders cycling through male, female, neutral,
    those of `genders`), each grounded with its gender's SMPL-H body; then, beside the
    first one, its SMPL-X counterpart (AMASS SMPL-X layout) and its subject's shape.npz.
    Returns [(relative path, poses (T, 156))] of the SMPL-H sequences."""
    skeleton = design_skeleton()
    cycle = [gender for gender in ("male", "female", "neutral") if gender in genders]
    written = []
    for index in range(n_sequences):
        rng = stream_rng(seed, 100, index)
        motion = _MOTIONS[index % len(_MOTIONS)]
        gender = cycle[index % len(cycle)]
        poses, headings = synthetic_sequence(skeleton, motion, frames_per_sequence,
                                             AMASS_FRAMERATE, rng)
        betas = rng.normal(0.0, 0.7, NUM_SMPLH_BETAS)
        trans = ground_translations(models.smplh[gender], poses, betas, headings,
                                    motion == "walk", AMASS_FRAMERATE)
        trans[:, :2] += rng.uniform(-1.0, 1.0, 2)
        dmpls = np.cumsum(rng.normal(0, 0.05, (frames_per_sequence, 8)), axis=0)
        relative = sequence_path(index, motion)
        sequence = {"poses": poses.astype(np.float64), "trans": trans.astype(np.float64),
                    "betas": betas, "gender": np.array(gender),
                    "mocap_framerate": np.array(AMASS_FRAMERATE), "dmpls": dmpls}
        write_npz(paths["amass"] / relative, sequence)
        write_npz(paths["smpl_motions"] / relative, smpl_counterpart(sequence))
        write_npz(paths["smplx_motions"] / relative.replace("_poses.npz", "_stageii.npz"),
                  smplx_counterpart(sequence))
        if index == 0:
            write_npz(paths["amass_smplx"], smplx_counterpart(sequence))
            write_npz(paths["amass_shape"], {"betas": betas, "gender": np.array(gender)})
        written.append((relative, poses))
    return written


def smpl_counterpart(sequence):
    """A SMPL motion file of an SMPL-H sequence's motion: poses (T, 72) (the body's 22
    joints, SMPL's two hand joints at rest), the first 10 betas, trans, gender, frame rate."""
    poses = sequence["poses"]
    smpl_poses = np.concatenate([poses[:, :66], np.zeros((len(poses), 6))], axis=1)
    return {"poses": smpl_poses, "trans": sequence["trans"], "betas": sequence["betas"][:10],
            "gender": sequence["gender"], "mocap_framerate": sequence["mocap_framerate"]}


def smplx_counterpart(sequence):
    """An AMASS SMPL-X ("stageii") file holding an SMPL-H sequence's motion: poses (T, 165)
    with jaw and eyes at rest, split out as AMASS does, and its metadata."""
    poses = sequence["poses"]
    frames = len(poses)
    rest = np.zeros((frames, 9))                                   # jaw, left eye, right eye
    smplx_poses = np.concatenate([poses[:, :66], rest, poses[:, 66:]], axis=1)
    framerate = float(sequence["mocap_framerate"])
    return {"poses": smplx_poses, "trans": sequence["trans"], "betas": sequence["betas"],
            "num_betas": np.array(len(sequence["betas"])), "gender": sequence["gender"],
            "surface_model_type": np.array("smplx"), "mocap_frame_rate": np.array(framerate),
            "mocap_time_length": np.array(frames / framerate),
            "root_orient": smplx_poses[:, :3], "pose_body": smplx_poses[:, 3:66],
            "pose_jaw": smplx_poses[:, 66:69], "pose_eye": smplx_poses[:, 69:75],
            "pose_hand": smplx_poses[:, 75:165]}
