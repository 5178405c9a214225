"""Continuous sequences composed from isolated clips: development data for continuous recognition (CTC) and
translation where no sentence-level poses exist.

Each sequence joins clips of one signer (and one sign language), one clip per gloss of its gloss sequence,
with short linear transitions between the last frame of a clip and the first of the next; the sequence keeps
its gloss sequence (``glosses``) and its sentence (``text``). Composed sequences lack real co-articulation
(signs in running signing change shape, speed and place under their neighbours), so figures measured on them
are an upper bound, not a claim about real continuous signing.

    sentences = ordering_sentences(1200, seed=0)            # or spelled_words(load_lexicon(), 100)
    manifest = compose_dataset(load_manifest("clips.csv"), sentences, "composed/")

writes ``composed/poses/000000.pose`` ... and ``composed/manifest.csv`` (``signclip compose`` on the command line).

Which clips make which sequence: the clips are grouped by (signer, sign language, split). A sentence row may
name a signer, a sign language and a split; it is composed from a random group that has a clip of each of its
glosses and agrees with the names it gives. When some clips are marked ``test`` (a held-out signer), test
sentences come only from them and they make only test sentences, as the test set of training is exactly the
rows marked test.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import numpy.ma as ma
import pandas as pd
from pose_format import Pose
from pose_format.numpy.pose_body import NumPyPoseBody
from tqdm.auto import tqdm

from signclip.data.manifests import optional
from signclip.errors import PoseInputError
from signclip.files import replacing_dir
from signclip.pose.io import crop_pose, read_pose
from signclip.pose.preprocess import resample_frames

TRANSITION_MS = 200.0  # a hand moving from the end of one sign to the start of the next
GROUP_KEYS = ("signer", "signed_language", "split")


# ---- one sequence ------------------------------------------------------------------------------------------
def gloss_of(text: str) -> str:
    """An isolated clip's gloss from its text: upper case, words joined by ``-`` (``thank you`` -> ``THANK-YOU``)."""
    return "-".join(str(text).split()).upper()


def pose_points(pose: Pose) -> np.ndarray:
    """(T, P, D) float32 of the first person, NaN where a point is missing (masked or zero confidence)."""
    data = np.ma.getdata(pose.body.data)[:, 0].astype(np.float32)
    missing = np.ma.getmaskarray(pose.body.data)[:, 0].any(-1) | (np.asarray(pose.body.confidence)[:, 0] <= 0)
    return np.where(missing[..., None], np.nan, data)


def join_clips(clips: list[np.ndarray], transition_frames: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(T_i, P, D) clips -> one (T, P, D) sequence with ``transition_frames`` linearly interpolated frames
    between the last frame of each clip and the first of the next (a point missing at either end is missing
    in between), and the (start, end) frames of each clip in it."""
    parts, spans, t = [], [], 0
    for i, clip in enumerate(clips):
        if i and transition_frames > 0:
            a, b = clips[i - 1][-1], clip[0]  # (P, D)
            w = (np.arange(1, transition_frames + 1, dtype=np.float32) / (transition_frames + 1))[:, None, None]
            parts.append(a * (1 - w) + b * w)
            t += transition_frames
        parts.append(clip)
        spans.append((t, t + len(clip)))
        t += len(clip)
    return np.concatenate(parts).astype(np.float32), spans


def compose_pose(poses: list[Pose], transition_ms: float = TRANSITION_MS, fps: float | None = None
                 ) -> tuple[Pose, list[tuple[int, int]]]:
    """Join ``poses`` (one signer's clips, one header) into one ``Pose`` at ``fps`` (default: the first
    clip's), each clip resampled to it, with ``transition_ms`` of interpolated frames between clips.
    Returns the pose and the (start, end) frames of each clip in it."""
    if not poses:
        raise ValueError("compose_pose: no clips")
    header = poses[0].header
    points = [(c.name, tuple(c.points)) for c in header.components]
    for pose in poses[1:]:
        if [(c.name, tuple(c.points)) for c in pose.header.components] != points:
            raise PoseInputError("compose_pose: the clips have different points (header components); compose "
                                 "clips of one source")
    fps = float(fps or poses[0].body.fps)
    clips = []
    for pose in poses:
        x = pose_points(pose)
        clips.append(resample_frames(x, max(1, round(len(x) * fps / float(pose.body.fps)))))
    joined, spans = join_clips(clips, round(transition_ms * fps / 1000))
    missing = np.isnan(joined)  # (T, P, D)
    data = ma.masked_array(np.nan_to_num(joined)[:, None], mask=missing[:, None])  # (T, 1, P, D)
    confidence = (~missing.any(-1)).astype(np.float32)[:, None]  # (T, 1, P)
    return Pose(header, NumPyPoseBody(fps, data, confidence)), spans


# ---- many sequences ----------------------------------------------------------------------------------------
def clip_glosses(clips: pd.DataFrame) -> list[str]:
    """Each clip's gloss: its ``glosses`` cell where it has one, else :func:`gloss_of` its text."""
    glosses = clips["glosses"] if "glosses" in clips else pd.Series([None] * len(clips), index=clips.index)
    return [optional(g) or gloss_of(t) for g, t in zip(glosses, clips["text"])]


def _key(row, columns: tuple[str, ...]) -> tuple:
    return tuple(optional(getattr(row, c, None)) or "" for c in columns)


def _matches(sentence: dict, group: dict, test_held_out: bool) -> bool:
    """Whether a sentence row's (optional) signer / sign language / split agree with a clip group's."""
    for key in ("signer", "signed_language"):
        if sentence[key] and sentence[key] != group[key]:
            return False
    want, have = sentence["split"], group["split"]
    if test_held_out and (want == "test") != (have == "test"):
        return False
    return not (want and have and want != have)


def compose_dataset(clips: pd.DataFrame, sentences: pd.DataFrame, out: str | Path,
                    transition_ms: float = TRANSITION_MS, fps: float | None = None, seed: int = 0,
                    progress: bool = True) -> pd.DataFrame:
    """One composed sequence per row of ``sentences`` (columns ``glosses``, ``text``; optionally
    ``spoken_language``, ``signed_language``, ``signer``, ``split``) from the isolated ``clips`` (a manifest
    table, e.g. :func:`~signclip.data.manifests.load_manifest`); see the module docstring for which clips
    make which sequence. Writes ``OUT/poses/NNNNNN.pose`` and ``OUT/manifest.csv`` (crash-safe: the folder is
    replaced whole) and returns the manifest: ``path, text, glosses``, the languages, ``split``, ``signer``,
    ``clips`` (the source of each gloss, ``;``-separated) and ``spans`` (each clip's frames, ``start-end``).

    ``fps``: the frame rate of every sequence (default: the most common of the clips'). Sentences no clip
    group can compose raise a ``ValueError`` naming the first of them."""
    for column in ("glosses", "text"):
        if column not in sentences:
            raise ValueError(f"sentences: no {column!r} column (has {list(sentences.columns)})")
    rng = np.random.default_rng(seed)
    clips = clips.reset_index(drop=True)
    gloss = clip_glosses(clips)
    test_held_out = "split" in clips and (clips["split"] == "test").any()
    groups: dict[tuple, dict] = {}
    for i, row in enumerate(clips.itertuples(index=False)):
        key = _key(row, GROUP_KEYS)
        group = groups.setdefault(key, {**dict(zip(GROUP_KEYS, key)), "clips": {},
                                        "spoken_language": optional(getattr(row, "spoken_language", None))})
        group["clips"].setdefault(gloss[i], []).append(i)
    plan = []  # (sentence row, group, clip indices)
    for s in sentences.itertuples(index=False):
        sentence = {k: optional(getattr(s, k, None)) or "" for k in GROUP_KEYS}
        glosses = str(s.glosses).split()
        fits = [g for g in groups.values() if _matches(sentence, g, test_held_out)
                and all(x in g["clips"] for x in glosses)]
        if not glosses or not fits:
            raise ValueError(f"sentences: no clip group (signer, sign language, split) has every gloss of "
                             f"{s.glosses!r} with {sentence}; glosses of the clips: "
                             f"{sorted({x for g in groups.values() for x in g['clips']})[:40]}")
        group = fits[rng.integers(len(fits))]
        plan.append((s, sentence, group, [int(rng.choice(group["clips"][x])) for x in glosses]))

    cache: dict[int, Pose] = {}

    def clip(i: int) -> Pose:
        if i not in cache:
            row = clips.iloc[i]
            cache[i] = crop_pose(read_pose(row["path"]), row.get("start_ms"), row.get("end_ms"), str(row["path"]))
        return cache[i]

    if fps is None:
        fps = float(pd.Series([float(clip(i).body.fps) for i in {i for *_, idx in plan for i in idx}]).mode()[0])
    rows = []
    with replacing_dir(Path(out)) as tmp:
        (tmp / "poses").mkdir()
        for n, (s, sentence, group, idx) in enumerate(tqdm(plan, desc="composing", unit="sequence",
                                                         disable=not progress)):
            pose, spans = compose_pose([clip(i) for i in idx], transition_ms, fps)
            pose = keep_seen_components(pose)
            path = Path("poses") / f"{n:06d}.pose"
            with open(tmp / path, "wb") as f:
                pose.write(f)
            rows.append({"path": str(path), "text": s.text, "glosses": s.glosses,
                         "spoken_language": optional(getattr(s, "spoken_language", None)) or group["spoken_language"],
                         "signed_language": sentence["signed_language"] or group["signed_language"] or None,
                         "split": sentence["split"] or group["split"] or None, "signer": group["signer"] or None,
                         "clips": ";".join(str(clips.at[i, "path"]) for i in idx),
                         "spans": " ".join(f"{a}-{b}" for a, b in spans)})
        manifest = pd.DataFrame(rows)
        manifest.to_csv(tmp / "manifest.csv", index=False)
    return manifest


def keep_seen_components(pose: Pose) -> Pose:
    """The pose without the header components it never shows (e.g. a face the source did not record), so
    composed files stay small; readers treat absent points as missing."""
    seen = np.asarray(pose.body.confidence)[:, 0].max(0) > 0  # (P,)
    keep, start = [], 0
    for c in pose.header.components:
        if seen[start: start + len(c.points)].any():
            keep.append(c.name)
        start += len(c.points)
    return pose if len(keep) == len(pose.header.components) else pose.get_components(keep)


# ---- development sets --------------------------------------------------------------------------------------
DRINKS = ("coffee", "tea", "water")
SIZES = ("small", "medium", "large")


GREETINGS = ("Hello, ", "Hi, ")  # one gloss, several ways to say it: translation is one-to-many
ASK = ("can I get ", "could I get ", "can I have ")
ORDER = ("I'll get ", "I'd like ", "I'll have ")


def _orders() -> list[tuple[str, list[str]]]:
    """Every gloss sequence of the ordering grammar over traduttore's 14 words, with its English sentences."""
    out = []
    for hello, can, size, drink, please in itertools.product((0, 1), (0, 1), ("",) + SIZES, DRINKS + ("muffin",),
                                                             (0, 1)):
        if drink == "muffin" and size:
            continue
        glosses = ["HELLO"] * hello + ["CAN"] * can + ["I", "GET"] + [size.upper()] * bool(size) + [drink.upper()] \
            + ["PLEASE"] * please
        thing = f"a {size + ' ' if size else ''}{drink}" + (", please" if please else "") + ("?" if can else ".")
        texts = [(greet if hello else "") + verb + thing for greet in GREETINGS for verb in (ASK if can else ORDER)]
        out.append((" ".join(glosses), sorted({t[0].upper() + t[1:] for t in texts})))
    for size, drink in itertools.product(("",) + SIZES, DRINKS):
        thing = f"{size + ' ' if size else ''}{drink}"
        out.append((" ".join(filter(None, [size.upper(), drink.upper(), "PLEASE"])),
                    [f"A {thing}, please.", f"One {thing}, please."]))
        out.append((" ".join(filter(None, ["NO", size.upper(), drink.upper()])),
                    [f"No, a {thing}.", f"No, one {thing}."]))
    out += [("THANK-YOU", ["Thank you.", "Thanks."]), ("NO THANK-YOU", ["No, thank you.", "No, thanks."]),
            ("HELLO", ["Hello.", "Hi."]), ("I GET MUFFIN THANK-YOU", ["I'll get a muffin, thank you."]),
            ("CAN I GET WATER THANK-YOU", ["Can I get a water? Thank you.", "Could I get a water? Thanks."])]
    return out


def ordering_sentences(n: int, seed: int = 0, split: str | None = None) -> pd.DataFrame:
    """``n`` short ordering sentences over traduttore's 14 words, drawn at random from a small grammar
    (``HELLO CAN I GET LARGE COFFEE PLEASE`` -> "Hello, can I get a large coffee, please?" or "Hi, could I get
    ..."; a gloss sequence has up to six sentences, as translation is one-to-many): columns ``glosses`` (the
    signs in order), ``text`` (the English sentence), the languages and ``split``."""
    orders = _orders()
    rng = np.random.default_rng(seed)
    picked = [orders[i] for i in rng.integers(len(orders), size=n)]
    return pd.DataFrame({"glosses": [g for g, _ in picked], "text": [t[rng.integers(len(t))] for _, t in picked],
                         "spoken_language": "en", "signed_language": "ase", "split": split})


def spelled_words(lexicon: pd.DataFrame, n: int, min_letters: int = 3, max_letters: int = 7,
                  test_fraction: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """``n`` random fingerspelled words per sign language of ``lexicon`` (one clip per letter, e.g.
    :func:`~signclip.data.manifests.load_lexicon`): ``glosses`` the letters, ``text`` the word; a
    ``test_fraction`` of each language's distinct words is marked ``test``, the rest ``train`` (no word
    in both). The letters are random, not a dictionary's words."""
    rng = np.random.default_rng(seed)
    rows = []
    for (spoken, signed), df in lexicon.groupby(["spoken_language", "signed_language"], sort=True):
        letters = sorted(set(clip_glosses(df)))
        words = [[letters[i] for i in rng.integers(len(letters), size=rng.integers(min_letters, max_letters + 1))]
                 for _ in range(n)]
        distinct = sorted({" ".join(w) for w in words})
        test = set(rng.permutation(distinct)[: round(len(distinct) * test_fraction)].tolist())
        rows += [{"glosses": " ".join(w), "text": "".join(w).lower(), "spoken_language": spoken,
                  "signed_language": signed, "split": "test" if " ".join(w) in test else "train"} for w in words]
    return pd.DataFrame(rows)
