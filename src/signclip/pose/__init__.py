"""Pose input: reading ``.pose`` files and other keypoint formats (and videos), point layouts,
preprocessing and augmentation."""
from signclip.pose.io import read_pose
from signclip.pose.preprocess import pose_to_array, prepare_pose, preprocess

__all__ = ["read_pose", "pose_to_array", "prepare_pose", "preprocess"]
