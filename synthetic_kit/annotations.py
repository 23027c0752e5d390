"""PoseScript- and PoseFix-like annotation files pointing at frames of the sequences, with
sentences read off the poses."""
import numpy as np

from .files import write_json
from .motions import BODY_DOFS, RIGHT_OF, mirror_rotvecs
from .seeding import stream_rng


def _dof_angle(poses, joint, dof, mirrored=False):
    """Angle (N,) of one movement read back from (N, 22+, 3) axis-angle poses (the
    rotation vector's component along the movement's axis)."""
    axis = np.asarray(BODY_DOFS[(joint, dof)][0], float)
    if mirrored:
        joint, axis = RIGHT_OF[joint], mirror_rotvecs(axis)
    return poses[:, joint] @ axis


def describe_pose(pose):
    """A PoseScript-like sentence about one SMPL-H pose (52, 3)."""
    pose = pose[None]
    parts = []
    knees = [_dof_angle(pose, 4, "flex", m)[0] for m in (False, True)]
    if min(knees) > 1.2:
        parts.append("The person is crouching with both knees deeply bent.")
    elif max(knees) > 0.6:
        side = "left" if knees[0] > knees[1] else "right"
        parts.append(f"The person stands with the {side} knee bent, as if stepping forward.")
    else:
        parts.append("The person is standing with straight legs.")
    for side, mirrored in (("left", False), ("right", True)):
        down = _dof_angle(pose, 16, "down", mirrored)[0]
        elbow = _dof_angle(pose, 18, "flex", mirrored)[0]
        arm = ("raised above the shoulder" if down < 0.2 else
               "held out to the side" if down < 0.9 else "hanging down along the body")
        bend = " with the elbow bent" if elbow > 0.8 else ""
        parts.append(f"The {side} arm is {arm}{bend}.")
    if _dof_angle(pose, 3, "bend")[0] > 0.3:
        parts.append("The torso leans forward.")
    return " ".join(parts)


def describe_change(pose_a, pose_b):
    """A PoseFix-like instruction turning pose A (52, 3) into pose B."""
    pose_a, pose_b = pose_a[None], pose_b[None]
    steps = []
    for side, mirrored in (("left", False), ("right", True)):
        for joint, dof, more, less in ((4, "flex", f"bend your {side} knee more",
                                        f"straighten your {side} leg"),
                                       (18, "flex", f"bend your {side} elbow",
                                        f"straighten your {side} arm"),
                                       (16, "down", f"lower your {side} arm",
                                        f"raise your {side} arm")):
            change = (_dof_angle(pose_b, joint, dof, mirrored)
                      - _dof_angle(pose_a, joint, dof, mirrored))[0]
            if abs(change) > 0.15:
                steps.append((abs(change), more if change > 0 else less))
    change = (_dof_angle(pose_b, 3, "bend") - _dof_angle(pose_a, 3, "bend"))[0]
    if abs(change) > 0.1:
        steps.append((abs(change), "lean forward" if change > 0 else "straighten your back"))
    if not steps:
        return "Move your hands slightly and keep the rest of the pose."
    steps = [text for _, text in sorted(steps, reverse=True)[:3]]
    return (", ".join(steps[:-1]) + " and " + steps[-1] if len(steps) > 1
            else steps[0]).capitalize() + "."


def write_annotations(sequences, paths, seed):
    """PoseScript and PoseFix files pointing at frames of the synthetic sequences.

    About half of all frames get a pose id (random, sparse below 100,000); half of those
    carry a PoseScript-H description; pairs of poses (mostly a few frames apart in one
    sequence, some across sequences) make PoseFix, half of them with an instruction.
    """
    rng = stream_rng(seed, 200)
    frames = [(relative, frame) for relative, poses in sequences
              for frame in range(0, len(poses), 2)]
    ids = np.sort(rng.choice(100_000, len(frames), replace=False))
    location = {int(pose_id): frame for pose_id, frame in zip(ids, frames)}
    pose_of = {relative: poses for relative, poses in sequences}
    mapping = {str(pose_id): ["AMASS", relative, int(frame)]
               for pose_id, (relative, frame) in location.items()}

    def pose(pose_id):
        relative, frame = location[pose_id]
        return pose_of[relative][frame].reshape(52, 3)

    described = rng.choice(ids, len(ids) // 2, replace=False)
    posescript = {str(pose_id): [describe_pose(pose(int(pose_id)))]
                  for pose_id in np.sort(described)}
    by_sequence = {}
    for pose_id, (relative, _) in location.items():
        by_sequence.setdefault(relative, []).append(pose_id)
    pairs = []
    for members in by_sequence.values():
        for first, second in zip(members, members[3:]):
            pairs.append([first, second])
    for _ in range(len(pairs) // 3):
        first, second = rng.choice(ids, 2, replace=False)
        pairs.append([int(first), int(second)])
    order = rng.permutation(len(pairs))
    pairs = [pairs[k] for k in order]
    annotated = np.sort(rng.choice(len(pairs), len(pairs) // 2, replace=False))
    posefix = {str(pair): [describe_change(pose(pairs[pair][0]), pose(pairs[pair][1]))]
               for pair in annotated}
    write_json(paths["posescript_ids"], mapping)
    write_json(paths["posefix_ids"], mapping)
    write_json(paths["posescript_human"], posescript)
    write_json(paths["posefix_human"], posefix)
    write_json(paths["posefix_pairs"], pairs)

