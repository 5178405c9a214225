"""The regime training detects in its data (few clips per text or many), what that changes, and whether the test
set holds signers / sessions that training never sees.

Measured in ``benchmarks/generalisation.py`` (benchmarks/RESULTS.md, 5 folds x 3 seeds): with few clips per word
the recipe's ``min_steps`` keeps the run long enough (without it, 72-180 steps, the few-shot folds lost 0.09 1-NN),
and mirror flips, the default with all clips (worst fold 0.938 against 0.917 without), lose with few clips (worst
fold 0.856 against 0.881, mean 0.916 against 0.919), so the few-shot regime trains without them unless the config
asks for another ``flip_p``. Masked pose modelling did not beat the recipe on the worst fold and the mean; starting
from a model of the other data set (``--init``) helped one data set's few-shot folds and hurt the other's.
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from signclip.config import AugmentConfig, TrainConfig
from signclip.data.splits import unseen_group

FEW_SHOT_CLIPS = 10  # at most this many training clips per text (median): the few-shot regime


def clips_per_text(df: pd.DataFrame) -> float:
    """How many training rows share a training row's text, the median over training rows (0 without any): weighted
    by rows, so that a source of one clip per text (the lexicon) beside a large one does not make it few-shot."""
    texts = df.loc[df["split"] == "train", "text"]
    return float(texts.map(texts.value_counts()).median()) if len(texts) else 0.0


def apply_regime(df: pd.DataFrame, cfg: TrainConfig) -> tuple[TrainConfig, list[str]]:
    """``cfg`` for the regime of ``df`` (split by :func:`~signclip.data.splits.ensure_split`) and the lines
    training prints about its data. Few-shot: no mirror flips when ``flip_p`` is still AugmentConfig's default."""
    per_text = clips_per_text(df)
    schedule = f"{cfg.steps} steps" if cfg.steps else f"{cfg.epochs} epochs" + (
        f", at least {cfg.min_steps} steps" if cfg.min_steps else "")
    if per_text <= FEW_SHOT_CLIPS:
        lines = [f"regime: few-shot (median {per_text:g} training clips per text, <= {FEW_SHOT_CLIPS}): {schedule}"
                 + (" so that few clips still get a full schedule" if cfg.min_steps and not cfg.steps else "")]
        if cfg.augment.flip_p == AugmentConfig.flip_p:
            cfg = dataclasses.replace(cfg, augment=dataclasses.replace(cfg.augment, flip_p=0.0))
            lines[0] += "; no mirror flips (they cost few-shot folds, they help with all clips)"
    else:
        lines = [f"regime: full data (median {per_text:g} training clips per text, > {FEW_SHOT_CLIPS}): {schedule}"]
    by = unseen_group(df)
    if by and not cfg.split_by:
        lines.append(f"the test {by}s never occur in training: validation holds rows of the training {by}s, "
                     f"so it cannot see how unseen {by}s fare (--split-by {by} --retrain validates on a held-out "
                     f"{by}, then trains again on all rows)")
    return cfg, lines
