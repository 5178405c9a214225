"""The output vocabulary of a task: classes (ISLR), glosses with the CTC blank (CSLR), or words (SLT)."""
from __future__ import annotations

import re
from collections.abc import Iterable

BLANK, PAD, BOS, EOS, UNK = "<blank>", "<pad>", "<bos>", "<eos>", "<unk>"
WORD = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")  # words (with inner apostrophes) and single punctuation marks
NO_SPACE_BEFORE = re.compile(r" ([.,!?;:%)\]}])")


def words(text: str) -> list[str]:
    """A sentence's word tokens: ``"Hello, I'll get a tea."`` -> ``Hello , I'll get a tea .``"""
    return WORD.findall(str(text))


def detokenize(tokens: Iterable[str]) -> str:
    """Word tokens back to a sentence (no space before closing punctuation)."""
    return NO_SPACE_BEFORE.sub(r"\1", " ".join(tokens))


def build_vocab(task: str, targets: Iterable[str]) -> list[str]:
    """The sorted vocabulary of the training targets, special tokens first: ISLR the classes; CSLR ``<blank>``
    (index 0, the CTC blank) + the glosses; SLT ``<pad> <bos> <eos> <unk>`` + the words."""
    targets = [str(t) for t in targets]
    if task == "islr":
        return sorted(set(targets))
    if task == "cslr":
        return [BLANK] + sorted({g for t in targets for g in t.split()})
    return [PAD, BOS, EOS, UNK] + sorted({w for t in targets for w in words(t)})
