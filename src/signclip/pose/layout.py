"""Point layouts: which MediaPipe Holistic points reach the model, in which order, and their mirror.

Points are chosen by (component, point) name, so headers that differ elsewhere (576-point files from
mediapipe 0.10.21 with a 468-point face, 586-point files with the refined 478-point face, world
landmarks or not) give the same layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

BODY = "POSE_LANDMARKS"
FACE = "FACE_LANDMARKS"
LEFT_HAND = "LEFT_HAND_LANDMARKS"
RIGHT_HAND = "RIGHT_HAND_LANDMARKS"

BODY_POINTS = [
    "NOSE", "LEFT_EYE_INNER", "LEFT_EYE", "LEFT_EYE_OUTER", "RIGHT_EYE_INNER", "RIGHT_EYE",
    "RIGHT_EYE_OUTER", "LEFT_EAR", "RIGHT_EAR", "MOUTH_LEFT", "MOUTH_RIGHT", "LEFT_SHOULDER",
    "RIGHT_SHOULDER", "LEFT_ELBOW", "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST", "LEFT_PINKY",
    "RIGHT_PINKY", "LEFT_INDEX", "RIGHT_INDEX", "LEFT_THUMB", "RIGHT_THUMB", "LEFT_HIP", "RIGHT_HIP",
    "LEFT_KNEE", "RIGHT_KNEE", "LEFT_ANKLE", "RIGHT_ANKLE", "LEFT_HEEL", "RIGHT_HEEL",
    "LEFT_FOOT_INDEX", "RIGHT_FOOT_INDEX",
]
LEG_POINTS = {p for p in BODY_POINTS if any(k in p for k in ("KNEE", "ANKLE", "HEEL", "FOOT"))}
# Body points kept by pose-format's reduce_holistic (no face, finger or leg points).
REDUCED_BODY_POINTS = [
    "LEFT_SHOULDER", "RIGHT_SHOULDER", "LEFT_ELBOW", "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST",
    "LEFT_HIP", "RIGHT_HIP",
]
HAND_POINTS = [
    "WRIST", "THUMB_CMC", "THUMB_MCP", "THUMB_IP", "THUMB_TIP", "INDEX_FINGER_MCP", "INDEX_FINGER_PIP",
    "INDEX_FINGER_DIP", "INDEX_FINGER_TIP", "MIDDLE_FINGER_MCP", "MIDDLE_FINGER_PIP", "MIDDLE_FINGER_DIP",
    "MIDDLE_FINGER_TIP", "RING_FINGER_MCP", "RING_FINGER_PIP", "RING_FINGER_DIP", "RING_FINGER_TIP",
    "PINKY_MCP", "PINKY_PIP", "PINKY_DIP", "PINKY_TIP",
]
# MediaPipe hand connections between the 21 points (wrist = 0), in HAND_POINTS order
HAND_EDGES: list[tuple[int, int]] = [
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10), (10, 11), (11, 12),
    (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17), (17, 18), (18, 19), (19, 20),
]
# Body connections drawn for the kept upper body (arms, torso)
BODY_EDGES: list[tuple[str, str]] = [
    ("LEFT_SHOULDER", "RIGHT_SHOULDER"), ("LEFT_SHOULDER", "LEFT_ELBOW"), ("LEFT_ELBOW", "LEFT_WRIST"),
    ("RIGHT_SHOULDER", "RIGHT_ELBOW"), ("RIGHT_ELBOW", "RIGHT_WRIST"), ("LEFT_SHOULDER", "LEFT_HIP"),
    ("RIGHT_SHOULDER", "RIGHT_HIP"), ("LEFT_HIP", "RIGHT_HIP"),
]
# Each face-contour point -> the point it becomes when the face is mirrored: pose-format's
# FLIPPED_FACE_POINTS restricted to the contour (pose-format defines it beside a mediapipe import, so it is
# not importable without the video extra; tests/test_pose.py checks this copy against it)
FACE_CONTOUR_MIRROR: dict[int, int] = {
    0: 0, 7: 249, 10: 10, 13: 13, 14: 14, 17: 17, 21: 251, 33: 263, 37: 267, 39: 269, 40: 270, 46: 276,
    52: 282, 53: 283, 54: 284, 55: 285, 58: 288, 61: 291, 63: 293, 65: 295, 66: 296, 67: 297, 70: 300,
    78: 308, 80: 310, 81: 311, 82: 312, 84: 314, 87: 317, 88: 318, 91: 321, 93: 323, 95: 324, 103: 332,
    105: 334, 107: 336, 109: 338, 127: 356, 132: 361, 133: 362, 136: 365, 144: 373, 145: 374, 146: 375,
    148: 377, 149: 378, 150: 379, 152: 152, 153: 380, 154: 381, 155: 382, 157: 384, 158: 385, 159: 386,
    160: 387, 161: 388, 162: 389, 163: 390, 172: 397, 173: 398, 176: 400, 178: 402, 181: 405, 185: 409,
    191: 415, 234: 454, 246: 466, 249: 7, 251: 21, 263: 33, 267: 37, 269: 39, 270: 40, 276: 46, 282: 52,
    283: 53, 284: 54, 285: 55, 288: 58, 291: 61, 293: 63, 295: 65, 296: 66, 297: 67, 300: 70, 308: 78,
    310: 80, 311: 81, 312: 82, 314: 84, 317: 87, 318: 88, 321: 91, 323: 93, 324: 95, 332: 103, 334: 105,
    336: 107, 338: 109, 356: 127, 361: 132, 362: 133, 365: 136, 373: 144, 374: 145, 375: 146, 377: 148,
    378: 149, 379: 150, 380: 153, 381: 154, 382: 155, 384: 157, 385: 158, 386: 159, 387: 160, 388: 161,
    389: 162, 390: 163, 397: 172, 398: 173, 400: 176, 402: 178, 405: 181, 409: 185, 415: 191, 454: 234,
    466: 246,
}


@lru_cache(maxsize=None)
def face_contour() -> tuple[str, ...]:
    """The 128 face-mesh contour points (mediapipe FACEMESH_CONTOURS) that pose-format's
    ``reduce_holistic`` keeps, in its order, read off a header-only holistic pose."""
    import numpy as np
    from pose_format import Pose
    from pose_format.numpy.pose_body import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions
    from pose_format.utils.generic import reduce_holistic

    comps = [PoseHeaderComponent(BODY, BODY_POINTS, [], [(0, 0, 0)], "XYZC"),
             PoseHeaderComponent(FACE, [str(i) for i in range(468)], [], [(0, 0, 0)], "XYZC")]
    n = len(BODY_POINTS) + 468
    pose = Pose(PoseHeader(0.1, PoseHeaderDimensions(1, 1, 1), comps),
                NumPyPoseBody(25.0, np.zeros((1, 1, n, 3), np.float32), np.zeros((1, 1, n), np.float32)))
    return tuple(next(c.points for c in reduce_holistic(pose).header.components if c.name == FACE))


@dataclass(frozen=True)
class Layout:
    """An ordered list of (component, point) names, plus the permutation that mirrors it."""

    name: str
    points: tuple[tuple[str, str], ...]

    def __len__(self) -> int:
        return len(self.points)

    def count(self, component: str) -> int:
        """Number of points of ``component`` in this layout."""
        return sum(c == component for c, _ in self.points)

    def index(self, component: str, point: str) -> int:
        return self.points.index((component, point))

    @property
    def hand_slices(self) -> dict[str, list[int]]:
        """Indices of the left and right hand points in this layout."""
        return {
            hand: [i for i, (c, _) in enumerate(self.points) if c == hand] for hand in (LEFT_HAND, RIGHT_HAND)
        }

    @property
    def missing_by_design(self) -> list[int]:
        """Indices that are always treated as missing (the legs, dropped as in the paper)."""
        return [i for i, (c, p) in enumerate(self.points) if c == BODY and p in LEG_POINTS]

    @property
    def mirror(self) -> list[int]:
        """``mirrored[:, i] = original[:, mirror[i]]`` (x negated separately)."""
        return [self.index(*_mirror_name(c, p)) for c, p in self.points]

    @property
    def skeleton_edges(self) -> list[tuple[int, int]]:
        """Point pairs to draw: arms, torso and the two 21-point hand skeletons."""
        idx = {key: i for i, key in enumerate(self.points)}
        edges = [(idx[(BODY, a)], idx[(BODY, b)]) for a, b in BODY_EDGES if (BODY, a) in idx and (BODY, b) in idx]
        for ids in self.hand_slices.values():
            edges += [(ids[a], ids[b]) for a, b in HAND_EDGES] if ids else []
        return edges


def _mirror_name(component: str, point: str) -> tuple[str, str]:
    if component == LEFT_HAND:
        return RIGHT_HAND, point
    if component == RIGHT_HAND:
        return LEFT_HAND, point
    if component == FACE:
        return FACE, str(FACE_CONTOUR_MIRROR[int(point)])
    if point.startswith("LEFT_"):
        return component, "RIGHT_" + point[5:]
    if point.startswith("RIGHT_"):
        return component, "LEFT_" + point[6:]
    if point.startswith("MOUTH_"):
        return component, "MOUTH_RIGHT" if point.endswith("LEFT") else "MOUTH_LEFT"
    return component, point


def _layout(name: str, body: list[str]) -> Layout:
    points = [(BODY, p) for p in body] + [(FACE, p) for p in face_contour()]
    points += [(LEFT_HAND, p) for p in HAND_POINTS] + [(RIGHT_HAND, p) for p in HAND_POINTS]
    return Layout(name, tuple(points))


@lru_cache(maxsize=None)
def get_layout(name: str) -> Layout:
    """``reduce_holistic``: 178 points as pose-format's reduce_holistic (8 body, 128 face, 42 hand);
    ``contour_holistic``: the paper's 203 points (33 body with legs missing, 128 face, 42 hand);
    ``right_hand``: the 21 right-hand points (the reference FingerCLIP's "dominant hand")."""
    if name == "reduce_holistic":
        return _layout(name, REDUCED_BODY_POINTS)
    if name == "contour_holistic":
        return _layout(name, BODY_POINTS)
    if name == "right_hand":
        return Layout(name, tuple((RIGHT_HAND, p) for p in HAND_POINTS))
    raise ValueError(f"unknown pose layout {name!r}; known: reduce_holistic, contour_holistic, right_hand")
