"""The designed skeleton every synthetic body is built around, and the joint layouts.

SMPL-X numbering throughout (55 joints: 22 body, jaw, two eyes, 2 x 15 finger joints);
SMPL-H and SMPL take subsets of it. Rest pose: T-pose, y up, facing +z, metres.
"""
from dataclasses import dataclass

import numpy as np


BODY_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]
FINGERS = ("index", "middle", "pinky", "ring", "thumb")
SMPLX_JAW, SMPLX_LEFT_EYE, SMPLX_RIGHT_EYE = 22, 23, 24
SMPLX_HAND_START = {"left": 25, "right": 40}     # SMPL-H: 22 and 37
SMPLH_FROM_SMPLX = np.r_[0:22, 25:55]            # SMPL-H joint i is SMPL-X joint [i]
# SMPL's hand joint stands in for the whole hand; in SMPL-X numbering it takes the place
# of the middle finger's knuckle (the skinning and correctives treat it as that joint).
SMPL_FROM_SMPLX = np.r_[0:22, 28, 43]
LEFT, RIGHT = "left", "right"
SIDES = {LEFT: 1.0, RIGHT: -1.0}                  # sign of x


def smplx_parents():
    """(55,) parent of each SMPL-X joint: body, jaw and eyes from the head, then hands."""
    parents = list(BODY_PARENTS) + [15, 15, 15]
    for wrist in (20, 21):
        for finger in range(5):
            first = len(parents)
            parents += [wrist, first, first + 1]
    return np.array(parents, dtype=np.int64)


def smplh_parents():
    """(52,) parent of each SMPL-H joint."""
    parents = smplx_parents()[SMPLH_FROM_SMPLX]
    remap = np.full(55, -1)
    remap[SMPLH_FROM_SMPLX] = np.arange(52)
    return np.where(parents < 0, -1, remap[np.maximum(parents, 0)])


def smpl_parents():
    """(24,) parent of each SMPL joint: the body, then one joint per hand from the wrists."""
    return np.array(BODY_PARENTS + [20, 21], dtype=np.int64)


HAND_JOINTS = tuple(range(25, 55))                 # SMPL-X finger joints


def per_joint(values):
    """(55,) array from {joint ids: value} (later entries win), default 0."""
    result = np.zeros(55)
    for ids, value in values.items():
        result[list(ids) if isinstance(ids, tuple) else ids] = value
    return result


def finger_joint(side, finger, segment):
    """SMPL-X joint id of a finger's segment-th joint (0: knuckle) on one side."""
    return SMPLX_HAND_START[side] + 3 * FINGERS.index(finger) + segment


# Left body joints (x > 0) of the SMPL rest pose; right ones are mirrored. Metres.
_BODY_JOINTS = {
    0: (0.0, -0.225, 0.020), 1: (0.068, -0.318, 0.012), 3: (0.0, -0.112, -0.010),
    4: (0.106, -0.690, 0.008), 6: (0.0, 0.022, -0.006), 7: (0.090, -1.085, -0.035),
    9: (0.0, 0.072, 0.008), 10: (0.115, -1.145, 0.085), 12: (0.0, 0.285, -0.020),
    13: (0.078, 0.192, -0.012), 15: (0.0, 0.358, 0.028), 16: (0.172, 0.222, -0.022),
    18: (0.430, 0.212, -0.040), 20: (0.680, 0.218, -0.042),
    SMPLX_JAW: (0.0, 0.402, 0.006), SMPLX_LEFT_EYE: (0.031, 0.455, 0.082),
}
MIRRORED = {2: 1, 5: 4, 8: 7, 11: 10, 14: 13, 17: 16, 19: 18, 21: 20,
             SMPLX_RIGHT_EYE: SMPLX_LEFT_EYE}

# Left hand, from the wrist (x along the fingers, y up = back of the hand, z forward =
# thumb side): knuckle offset, spread angle in degrees (towards +z), the three segment
# lengths, and the radii at the three joints and at the tip.
_FINGER_DESIGN = {
    "index": ((0.090, 0.000, 0.027), 10.0, (0.040, 0.024, 0.020),
              (0.0096, 0.0087, 0.0079, 0.0070)),
    "middle": ((0.094, 0.000, 0.005), 3.0, (0.044, 0.028, 0.021),
               (0.0098, 0.0089, 0.0081, 0.0071)),
    "pinky": ((0.080, -0.002, -0.034), -15.0, (0.032, 0.019, 0.018),
              (0.0082, 0.0075, 0.0069, 0.0061)),
    "ring": ((0.089, 0.000, -0.015), -5.5, (0.041, 0.026, 0.020),
             (0.0092, 0.0084, 0.0077, 0.0067)),
}
# The thumb points forward and a little down: joint offsets from the previous point.
_THUMB_DESIGN = {"base": (0.024, -0.011, 0.022),
                 "segments": ((0.036, -0.012, 0.030), (0.026, -0.006, 0.020),
                              (0.021, -0.003, 0.014)),
                 "radii": (0.0135, 0.0110, 0.0098, 0.0086)}


@dataclass(frozen=True)
class Skeleton:
    """Designed joint centres in the rest pose (SMPL-X order) and the fingertips.

    joints: (55, 3); tips: {side: (5, 3)} end points of each finger in FINGERS order.
    """
    joints: np.ndarray
    tips: dict

    def smplh_joints(self):
        return self.joints[SMPLH_FROM_SMPLX]

    def smpl_joints(self):
        """(24, 3) the body joints, then each hand's joint amid its four finger knuckles."""
        hands = [self.joints[[finger_joint(side, finger, 0) for finger in FINGERS[:4]]].mean(0)
                 for side in (LEFT, RIGHT)]
        return np.concatenate([self.joints[:22], hands])


def design_skeleton():
    """The SMPL-like skeleton every synthetic body is built around."""
    joints = np.zeros((55, 3))
    for joint, position in _BODY_JOINTS.items():
        joints[joint] = position
    for joint, source in MIRRORED.items():
        joints[joint] = joints[source] * (-1.0, 1.0, 1.0)
    tips = {}
    for side, sign in SIDES.items():
        wrist = joints[20 if side == LEFT else 21]
        side_tips = []
        for finger in FINGERS:
            points = _finger_points(finger)
            for segment in range(3):
                joints[finger_joint(side, finger, segment)] = wrist + points[segment] * (
                    sign, 1.0, 1.0)
            side_tips.append(wrist + points[3] * (sign, 1.0, 1.0))
        tips[side] = np.array(side_tips)
    return Skeleton(joints=joints, tips=tips)


def _finger_points(finger):
    """(4, 3) left-hand joint positions and tip of a finger, relative to the wrist."""
    if finger == "thumb":
        points = [np.array(_THUMB_DESIGN["base"])]
        for step in _THUMB_DESIGN["segments"]:
            points.append(points[-1] + step)
        return np.array(points)
    knuckle, spread, lengths, _ = _FINGER_DESIGN[finger]
    angle = np.radians(spread)
    direction = np.array([np.cos(angle), 0.0, np.sin(angle)])
    offsets = np.cumsum([0.0, *lengths])
    return np.asarray(knuckle) + offsets[:, None] * direction


def finger_radii(finger):
    """(4,) radii of a finger at its three joints and at its tip (metres)."""
    return _THUMB_DESIGN["radii"] if finger == "thumb" else _FINGER_DESIGN[finger][3]

