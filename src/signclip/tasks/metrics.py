"""The downstream tasks' metrics (Zhou et al. §IV-A), from well-kept libraries, all in percent as in the paper:

* ISLR: per-instance and per-class top-1 / top-5 accuracy (scikit-learn's ``top_k_accuracy_score``; per class
  = each class weighted equally, the mean of the per-class accuracies);
* CSLR: word error rate over gloss sequences (``jiwer``), with its substitution / deletion / insertion rates;
* SLT: BLEU-1/2/4 (``sacrebleu``, corpus-level, cumulative n-gram orders) and ROUGE-L F1 (``rouge-score``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def require_metric_libraries() -> None:
    """Import the metric libraries (the ``tasks`` extra) now, so a missing one stops a run before it trains."""
    import jiwer  # noqa: F401
    import rouge_score  # noqa: F401
    import sacrebleu  # noqa: F401


def classification_metrics(probs: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """(N, C) class scores and (N,) true class indices -> ``per_instance/top{k}`` and ``per_class/top{k}``."""
    from sklearn.metrics import top_k_accuracy_score

    labels = np.asarray(labels)
    classes = np.arange(probs.shape[1])
    counts = np.bincount(labels, minlength=len(classes))
    per_class_weight = 1.0 / counts[labels]  # every class present counts once
    out = {}
    for k in ks:
        if k > probs.shape[1]:
            continue
        out[f"per_instance/top{k}"] = 100 * top_k_accuracy_score(labels, probs, k=k, labels=classes)
        out[f"per_class/top{k}"] = 100 * top_k_accuracy_score(labels, probs, k=k, labels=classes,
                                                              sample_weight=per_class_weight)
    return out


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """Space-separated gloss (or letter) sequences -> ``wer`` and its ``sub`` / ``del`` / ``ins`` parts (percent
    of the reference glosses; an empty hypothesis deletes every reference gloss)."""
    import jiwer

    out = jiwer.process_words(list(references), list(hypotheses))
    n = out.hits + out.substitutions + out.deletions
    return {"wer": 100 * out.wer, "sub": 100 * out.substitutions / n, "del": 100 * out.deletions / n,
            "ins": 100 * out.insertions / n}


class _Words:
    """rouge-score's tokenizer interface on sacrebleu's 13a tokenisation (rouge-score's own drops every
    character outside a-z0-9, e.g. all of a Chinese or Arabic sentence)."""

    def __init__(self):
        from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

        self.tokenizer = Tokenizer13a()

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer(text.lower()).split()


def translation_metrics(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """Sentences -> ``bleu1``, ``bleu2``, ``bleu4`` (corpus BLEU with n-gram orders up to 1, 2, 4) and
    ``rougeL`` (mean sentence ROUGE-L F1)."""
    from rouge_score.rouge_scorer import RougeScorer
    from sacrebleu.metrics import BLEU

    refs, hyps = [str(r) for r in references], [str(h) for h in hypotheses]
    out = {f"bleu{n}": BLEU(max_ngram_order=n).corpus_score(hyps, [refs]).score for n in (1, 2, 4)}
    scorer = RougeScorer(["rougeL"], tokenizer=_Words())
    out["rougeL"] = 100 * float(np.mean([scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(refs, hyps)]))
    return out
