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
# The 128 face-mesh contour points (mediapipe FACEMESH_CONTOURS, as hard-coded in pose-format's
# reduce_holistic) and, at the same position, the point each becomes when the face is mirrored
# (pose-format's FLIPPED_FACE_POINTS restricted to the contour).
FACE_CONTOUR = [
    0, 7, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70, 78, 80,
    81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149,
    150, 152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 172, 173, 176, 178, 181, 185, 191, 234,
    246, 249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308,
    310, 311, 312, 314, 317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375,
    377, 378, 379, 380, 381, 382, 384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415,
    454, 466,
]
FACE_CONTOUR_MIRRORED = [
    0, 249, 10, 13, 14, 17, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296,
    297, 300, 308, 310, 311, 312, 314, 317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365,
    373, 374, 375, 377, 378, 379, 152, 380, 381, 382, 384, 385, 386, 387, 388, 389, 390, 397, 398, 400,
    402, 405, 409, 415, 454, 466, 7, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70,
    78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148,
    149, 150, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 172, 173, 176, 178, 181, 185, 191, 234,
    246,
]


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


def _mirror_name(component: str, point: str) -> tuple[str, str]:
    if component == LEFT_HAND:
        return RIGHT_HAND, point
    if component == RIGHT_HAND:
        return LEFT_HAND, point
    if component == FACE:
        return FACE, str(FACE_CONTOUR_MIRRORED[FACE_CONTOUR.index(int(point))])
    if point.startswith("LEFT_"):
        return component, "RIGHT_" + point[5:]
    if point.startswith("RIGHT_"):
        return component, "LEFT_" + point[6:]
    if point.startswith("MOUTH_"):
        return component, "MOUTH_RIGHT" if point.endswith("LEFT") else "MOUTH_LEFT"
    return component, point


def _layout(name: str, body: list[str]) -> Layout:
    points = [(BODY, p) for p in body] + [(FACE, str(i)) for i in FACE_CONTOUR]
    points += [(LEFT_HAND, p) for p in HAND_POINTS] + [(RIGHT_HAND, p) for p in HAND_POINTS]
    return Layout(name, tuple(points))


@lru_cache(maxsize=None)
def get_layout(name: str) -> Layout:
    """``reduce_holistic``: 178 points as pose-format's reduce_holistic (8 body, 128 face, 42 hand);
    ``contour_holistic``: the paper's 203 points (33 body with legs missing, 128 face, 42 hand)."""
    if name == "reduce_holistic":
        return _layout(name, REDUCED_BODY_POINTS)
    if name == "contour_holistic":
        return _layout(name, BODY_POINTS)
    raise ValueError(f"unknown pose layout {name!r}; known: reduce_holistic, contour_holistic")
