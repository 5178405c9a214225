"""Pose input: reading ``.pose`` files, point layouts, preprocessing and augmentation."""
from signclip.pose.io import read_pose
from signclip.pose.preprocess import pose_to_array, preprocess

__all__ = ["read_pose", "pose_to_array", "preprocess"]
