"""Training: batches, objectives and loss, the loop with checkpoints and exact resume, data-parallel runs."""
from signclip.training.fit import fit, fit_shards, prepare_splits
from signclip.training.loop import train

__all__ = ["fit", "fit_shards", "prepare_splits", "train"]
