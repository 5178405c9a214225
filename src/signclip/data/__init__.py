"""Datasets: the embedded fingerspelling lexicon, folders with a CSV manifest, splits, batching."""
