"""Evaluation: retrieval metrics, baselines, recognition and analysis."""
