"""Decoding: CTC greedy and prefix beam search over gloss log-probabilities (numpy, no extra dependency)."""
from __future__ import annotations

import math

import numpy as np

NEG_INF = -math.inf


def _logadd(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b)))


def ctc_greedy(log_probs: np.ndarray, blank: int = 0) -> list[int]:
    """(T, V) log-probabilities -> the best path's labels, repeats merged and blanks removed."""
    best = log_probs.argmax(-1)
    return [int(c) for i, c in enumerate(best) if c != blank and (i == 0 or c != best[i - 1])]


def ctc_beam_search(log_probs: np.ndarray, beam_size: int = 10, blank: int = 0) -> list[int]:
    """(T, V) log-probabilities -> the most probable label sequence by CTC prefix beam search (Hannun et al.
    2014), summing over every path of a prefix; each frame extends the beams with its ``beam_size`` most
    probable labels. ``beam_size`` 1 is greedy decoding."""
    if beam_size <= 1:
        return ctc_greedy(log_probs, blank)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}  # prefix -> (log p ends in blank, not)
    for lp in log_probs:
        candidates = [int(c) for c in np.argpartition(-lp, min(beam_size, len(lp) - 1))[:beam_size] if c != blank]
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (pb, pnb) in beams.items():
            total = _logadd(pb, pnb)
            entry = nxt.setdefault(prefix, [NEG_INF, NEG_INF])
            entry[0] = _logadd(entry[0], total + float(lp[blank]))
            for c in candidates:
                p = float(lp[c])
                extended = nxt.setdefault(prefix + (c,), [NEG_INF, NEG_INF])
                if prefix and prefix[-1] == c:  # a repeat needs a blank between; without one it stays the prefix
                    extended[1] = _logadd(extended[1], pb + p)
                    entry[1] = _logadd(entry[1], pnb + p)
                else:
                    extended[1] = _logadd(extended[1], total + p)
        ranked = sorted(nxt.items(), key=lambda kv: -_logadd(*kv[1]))[:beam_size]
        beams = {k: (v[0], v[1]) for k, v in ranked}
    return list(max(beams.items(), key=lambda kv: _logadd(*kv[1]))[0])
