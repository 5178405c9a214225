"""Manifests from the paper's datasets as they are published: ``signclip prepare DATASET ROOT -o manifest.csv``.

One function per dataset reads a downloaded dataset in the layout its own site or tools give it and returns a
table with the columns of :data:`~signclip.data.manifests.COLUMNS` (paths absolute, as every loader here gives
them; :func:`write_manifest` writes them relative to the manifest's folder), plus a few columns of the source
kept for reference (``raw_text``, the label before the gloss clean-up, and ids such as ``video_id``).

Media are found by file name (without extension) anywhere under ROOT, or under ``poses``: the folder that
``signclip pose ROOT -o POSES`` fills with one ``.pose`` file per video, mirroring the tree. Without
``poses`` the videos themselves are listed (``read_pose`` reads them, converting with MediaPipe at every
read). A row whose file is not found is left out; ``table.attrs["skipped"]`` says which and why.

Datasets (:data:`DATASETS`; each function's docstring gives the layout and the column mapping):
``asl-citizen`` (split CSVs), ``sem-lex`` (metadata CSV), ``wlasl`` (``WLASL_v0.3.json``), ``how2sign``
(re-aligned sentence CSVs), ``phoenix-2014t`` (corpus files), ``csl-daily`` (``video_map.txt`` and
``split_1.txt``), ``spreadthesign`` (``LANGUAGE/WORD/FILE`` folders) and ``kaggle`` (ASL Signs ``train.csv``).
Gloss datasets get the paper's gloss clean-up (:func:`clean_gloss`) unless told otherwise. The sentence datasets
with glosses (PHOENIX-2014-T, CSL-Daily) also fill ``glosses``: the gloss sequence, space-separated.
"""
from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from signclip.data.manifests import load_kaggle_asl_signs, normalise_table
from signclip.files import write_text
from signclip.pose.video import is_video_path

SPLIT_NAMES = {"train": "train", "val": "validation", "validation": "validation", "dev": "validation",
               "test": "test"}
WLASL_DEFAULT_FPS = 25  # the README of WLASL: "frame rate (=25) used to decode the video"

# a variant index at the end of a gloss, right after a letter: HOUSE1, house_2 (not the number sign 7)
_VARIANT_INDEX = re.compile(r"(?<=[^\W\d_])_?\d+$")


def clean_gloss(text: str) -> str:
    """The paper's gloss clean-up: ``HOUSE1`` -> ``house``, ``house_2`` -> ``house``, ``#BACK`` -> ``back``.

    SignCLIP (§5.2) lower-cases the glosses and removes "the gloss index for different variants of a sign"
    before building prompts from them. Its reference code (``SignCLIPMetaProcessor`` in
    ``examples/MMPT/mmpt/processors/dsprocessor_sign.py`` of J22Melody/fairseq) does, for ASL Citizen,
    ``lower()`` then strips trailing digits (``HOUSE1`` -> ``house``) and, for Sem-Lex, removes a final
    ``_<digits>`` then turns underscores into spaces (``oh_i_see`` -> ``oh i see``). This function does both
    for every gloss, and in addition drops ``#`` (the fingerspelled-loan marker, ``#BACK`` -> ``back``),
    strips and collapses whitespace, and keeps the digits of a gloss that is a number (``7`` stays ``7``,
    where stripping trailing digits would leave nothing): a variant index is only removed right after a letter.
    """
    text = text.strip().lower().replace("#", "")
    text = _VARIANT_INDEX.sub("", text)
    return " ".join(text.replace("_", " ").split())


def read_vocabulary(path: str | Path) -> set[str]:
    """The cleaned glosses of a vocabulary file: one gloss per line, or a manifest CSV (its ``text`` column),
    e.g. the pre-training data's."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"known glosses {path}: no such file")
    if path.suffix.lower() == ".csv":
        texts = _read_table(path, ["text"], "a manifest of known glosses")["text"]
    else:
        texts = path.read_text(encoding="utf-8").splitlines()
    vocabulary = {clean_gloss(t) for t in texts} - {""}
    if not vocabulary:
        raise ValueError(f"known glosses {path}: no gloss in the file")
    return vocabulary


def keep_known_glosses(table: pd.DataFrame, vocabulary: set[str]) -> tuple[pd.DataFrame, int]:
    """The paper's third gloss clean-up (§5.2): test rows whose cleaned gloss is not in ``vocabulary`` (the
    pre-training glosses) left out; other splits kept whole. Returns the table and how many rows were left out."""
    unknown = (table["split"] == "test") & ~table["text"].map(clean_gloss).isin(vocabulary)
    return table[~unknown], int(unknown.sum())


def is_media(path: Path) -> bool:
    """Whether a file is a ``.pose`` file or a video (hidden files, e.g. macOS ``._*`` copies, are not)."""
    return not path.name.startswith(".") and (path.suffix == ".pose" or is_video_path(path))


class MediaIndex:
    """The ``.pose`` files and videos under a folder, by file name without its extension.

    Where one name has several files, a ``.pose`` file wins over a video, else the first in sorted order."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: dict[str, Path] = {}
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath, name)
                if not is_media(path):
                    continue
                known = self.files.get(path.stem)
                if known is None or (path.suffix == ".pose" and known.suffix != ".pose"):
                    self.files[path.stem] = path

    def find(self, name: str) -> Path | None:
        """The file named ``name`` (any extension, or the one ``name`` has), or None."""
        return self.files.get(name) or self.files.get(Path(name).stem)


def _folder(root: str | Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    return root


def _media(root: Path, poses: str | Path | None) -> MediaIndex:
    return MediaIndex(_folder(poses) if poses is not None else root)


def _read_table(path: Path, required: Iterable[str], what: str, **kwargs) -> pd.DataFrame:
    """A CSV read as strings (a gloss such as NONE or NULL stays text) with its required columns checked."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not readable as {what} ({type(e).__name__}: {e})") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not {what}, lacks column(s) {missing}; has {list(df.columns)}")
    return df


def _split(value: str, source: Path | str) -> str | None:
    value = str(value).strip().lower()
    if not value:
        return None
    if value not in SPLIT_NAMES:
        raise ValueError(f"{source}: unknown split {value!r}; expected one of {sorted(SPLIT_NAMES)}")
    return SPLIT_NAMES[value]


def _locate(rows: list[dict], media: MediaIndex, source: Path) -> tuple[pd.DataFrame, list[str]]:
    """The ``rows`` (each naming its file in ``media``) whose file is under ``media``, with its path, and a
    message for each row left out."""
    if not rows:
        raise ValueError(f"{source}: no rows")
    found = [media.find(row["media"]) for row in rows]
    if not any(found):
        raise FileNotFoundError(f"{source}: none of its {len(rows)} media files is under {media.folder} "
                                f"(e.g. {rows[0]['media']!r}); give the folder holding them as ROOT, or the "
                                "converted poses as --poses")
    skipped = [f"{row['media']}: no file under {media.folder}" for row, path in zip(rows, found) if path is None]
    kept = [{"path": str(path), **{k: v for k, v in row.items() if k != "media"}}
            for row, path in zip(rows, found) if path is not None]
    return pd.DataFrame(kept), skipped


def _table(df: pd.DataFrame, skipped: list[str], clean_glosses: bool) -> pd.DataFrame:
    """The finished table: texts stripped (and cleaned, the label kept as ``raw_text``), rows without a text
    left out, paths absolute; ``attrs["skipped"]`` lists the rows left out and why."""
    df = df.copy()
    df["text"] = df["text"].astype(str).str.strip()
    if clean_glosses:
        df.insert(df.columns.get_loc("text") + 1, "raw_text", df["text"])
        df["text"] = df["text"].map(clean_gloss)
    empty = df["text"] == ""
    table = normalise_table(df[~empty], Path("."))
    table.attrs["skipped"] = skipped + [f"{p}: empty text" for p in df.loc[empty, "path"]]
    return table


def prepare_asl_citizen(root: str | Path, poses: str | Path | None = None, clean_glosses: bool = True,
                        spoken_language: str = "en", signed_language: str = "ase") -> pd.DataFrame:
    """ASL Citizen (Desai et al. 2023) as unzipped from ``ASL_Citizen.zip``: ``ASL_Citizen/splits/{train,val,
    test}.csv`` with the columns ``Participant ID``, ``Video file``, ``Gloss``, ``ASL-LEX Code``, and the
    videos in ``ASL_Citizen/videos/``. ROOT is the ``ASL_Citizen`` folder or the one holding it.

    text = ``Gloss``, split = the file (val -> validation), signer = ``Participant ID``; ``asl_lex_code`` kept."""
    root = _folder(root)
    folders = [root / "splits", root / "ASL_Citizen" / "splits"]
    splits = next((f for f in folders if all((f / f"{s}.csv").is_file() for s in ("train", "val", "test"))), None)
    if splits is None:
        raise FileNotFoundError(f"{root}: not the ASL Citizen layout: no splits/train.csv, splits/val.csv and "
                                f"splits/test.csv in {root} or {root / 'ASL_Citizen'}")
    rows = []
    for name in ("train", "val", "test"):
        path = splits / f"{name}.csv"
        df = _read_table(path, ["Participant ID", "Video file", "Gloss"], "an ASL Citizen split CSV")
        codes = df["ASL-LEX Code"] if "ASL-LEX Code" in df.columns else [None] * len(df)
        rows += [{"media": video.strip(), "text": gloss, "spoken_language": spoken_language,
                  "signed_language": signed_language, "split": SPLIT_NAMES[name], "signer": signer.strip() or None,
                  "asl_lex_code": code}
                 for signer, video, gloss, code in zip(df["Participant ID"], df["Video file"], df["Gloss"], codes)]
    return _table(*_locate(rows, _media(root, poses), splits), clean_glosses)


SEM_LEX_METADATA = ("semlex_metadata.csv", "sem-lex-metadata.csv")


def prepare_sem_lex(root: str | Path, poses: str | Path | None = None, clean_glosses: bool = True,
                    spoken_language: str = "en", signed_language: str = "ase") -> pd.DataFrame:
    """Sem-Lex (Kezar et al. 2023): its metadata CSV ``semlex_metadata.csv`` (or ``sem-lex-metadata.csv``, as
    sign-language-datasets names its copy) anywhere under ROOT, with the columns ``video_id``, ``signer_id``,
    ``split`` (train/val/test), ``label_type`` and ``label``, and the videos ``<video_id>.<ext>`` anywhere under
    ROOT (as extracted from the split archives).

    text = ``label``, split = ``split``, signer = ``signer_id``; ``video_id`` and ``label_type`` kept. The
    metadata lists some videos more than once (one row per label); every row is kept."""
    root = _folder(root)
    metadata = next((p for name in SEM_LEX_METADATA for p in sorted(root.rglob(name))), None)
    if metadata is None:
        raise FileNotFoundError(f"{root}: not the Sem-Lex layout: no {' or '.join(SEM_LEX_METADATA)} under it")
    df = _read_table(metadata, ["video_id", "label", "signer_id", "split"], "a Sem-Lex metadata CSV")
    types = df["label_type"] if "label_type" in df.columns else [None] * len(df)
    rows = [{"media": video.strip(), "text": label, "spoken_language": spoken_language,
             "signed_language": signed_language, "split": _split(split, metadata), "signer": signer.strip() or None,
             "video_id": video.strip(), "label_type": kind}
            for video, label, signer, split, kind in zip(df["video_id"], df["label"], df["signer_id"], df["split"],
                                                         types)]
    return _table(*_locate(rows, _media(root, poses), metadata), clean_glosses)


def _ms(seconds: float) -> float:
    return round(float(seconds) * 1000, 3)


def _youtube_id(url: str) -> str | None:
    """The file name the WLASL start kit gives a downloaded YouTube video: the URL's last 11 characters."""
    return url[-11:] if "youtube" in url or "youtu.be" in url else None


def prepare_wlasl(root: str | Path, poses: str | Path | None = None, clean_glosses: bool = True,
                  spoken_language: str = "en", signed_language: str = "ase") -> pd.DataFrame:
    """WLASL (Li et al. 2020): ``WLASL_v0.3.json`` (the newest ``WLASL_v*.json`` anywhere under ROOT), a list of
    ``{gloss, instances: [{video_id, url, frame_start, frame_end, fps, signer_id, split, variation_id, ...}]}``,
    one row per instance: text = ``gloss``, split = ``split``, signer = ``signer_id``; ``video_id`` and
    ``variation_id`` kept.

    The start kit (``video_downloader.py`` then ``preprocess.py``) writes one clip per instance,
    ``videos/<video_id>.mp4``, already cut to the instance's frames, so such a clip is listed whole (as the
    dataset's own I3D loader reads it). Where only the downloaded YouTube video ``<YouTube id>.mp4`` (in
    ``raw_videos/`` or ``raw_videos_mp4/``) is there, the row points at it with the instance's segment:
    ``frame_start`` (1-based) and ``frame_end`` (inclusive, -1 = to the end) at the instance's ``fps``
    (default 25) become ``start_ms = (frame_start - 1) / fps * 1000`` and ``end_ms = frame_end / fps * 1000``.
    """
    root = _folder(root)
    found = sorted(root.rglob("WLASL_v*.json"), key=lambda p: p.name)
    if not found:
        raise FileNotFoundError(f"{root}: not the WLASL layout: no WLASL_v0.3.json (WLASL_v*.json) under it")
    index = found[-1]
    try:
        entries = json.loads(index.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{index}: not readable JSON ({e})") from None
    if not isinstance(entries, list):
        raise ValueError(f"{index}: expected a list of {{gloss, instances}}, got {type(entries).__name__}")
    media = _media(root, poses)
    rows = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "gloss" not in entry or not isinstance(entry.get("instances"), list):
            raise ValueError(f"{index}: entry {i} is not a {{gloss, instances: [...]}} object")
        for inst in entry["instances"]:
            if not isinstance(inst, dict) or "video_id" not in inst:
                raise ValueError(f"{index}: an instance of {entry['gloss']!r} lacks 'video_id'")
            video_id = str(inst["video_id"])
            row = {"media": video_id, "text": entry["gloss"], "spoken_language": spoken_language,
                   "signed_language": signed_language, "start_ms": np.nan, "end_ms": np.nan,
                   "split": _split(inst.get("split") or "", index),
                   "signer": None if inst.get("signer_id") is None else str(inst["signer_id"]),
                   "video_id": video_id, "variation_id": inst.get("variation_id")}
            source = _youtube_id(str(inst.get("url", "")))
            if media.find(video_id) is None and source is not None and media.find(source) is not None:
                fps = float(inst.get("fps") or WLASL_DEFAULT_FPS)
                start, end = int(inst.get("frame_start") or 1), int(inst.get("frame_end") or -1)
                row.update(media=source, start_ms=_ms((start - 1) / fps), end_ms=_ms(end / fps) if end > 0 else np.nan)
            rows.append(row)
    return _table(*_locate(rows, media, index), clean_glosses)


HOW2SIGN_COLUMNS = ["VIDEO_NAME", "SENTENCE_NAME", "START_REALIGNED", "END_REALIGNED", "SENTENCE"]


def prepare_how2sign(root: str | Path, poses: str | Path | None = None, clean_glosses: bool = False,
                     spoken_language: str = "en", signed_language: str = "ase") -> pd.DataFrame:
    """How2Sign (Duarte et al. 2021), sentence level: the re-aligned English translations
    ``how2sign_realigned_{train,val,test}.csv`` anywhere under ROOT (tab-separated; ``VIDEO_ID``,
    ``VIDEO_NAME``, ``SENTENCE_ID``, ``SENTENCE_NAME``, ``START_REALIGNED``, ``END_REALIGNED``, ``SENTENCE``;
    times in seconds), one row per sentence: text = ``SENTENCE``, split = the file's (val -> validation), no
    signer column in these files; ``sentence_name`` and ``video_name`` kept.

    The sentence clips (``rgb_front_clips``: ``<SENTENCE_NAME>.mp4``) are listed whole; where only the whole
    video ``<VIDEO_NAME>.mp4`` (``rgb_front_videos``) is there, the row points at it with
    ``start_ms``/``end_ms`` from ``START_REALIGNED``/``END_REALIGNED``. No gloss clean-up by default (sentences).
    """
    root = _folder(root)
    files = {s: sorted(root.rglob(f"how2sign_realigned_{s}.csv")) for s in ("train", "val", "test")}
    if not any(files.values()):
        raise FileNotFoundError(f"{root}: not the How2Sign layout: no how2sign_realigned_train.csv, _val.csv or "
                                "_test.csv under it (the re-aligned English translation)")
    media = _media(root, poses)
    rows = []
    for name, paths in files.items():
        for path in paths[:1]:
            df = _read_table(path, HOW2SIGN_COLUMNS, "a How2Sign re-aligned translation (tab-separated)", sep="\t",
                             quoting=csv.QUOTE_NONE)
            for r in df.itertuples(index=False):
                row = {"media": r.SENTENCE_NAME.strip(), "text": r.SENTENCE, "spoken_language": spoken_language,
                       "signed_language": signed_language, "start_ms": np.nan, "end_ms": np.nan,
                       "split": SPLIT_NAMES[name], "sentence_name": r.SENTENCE_NAME.strip(),
                       "video_name": r.VIDEO_NAME.strip()}
                if media.find(row["media"]) is None and media.find(row["video_name"]) is not None:
                    try:
                        row.update(media=row["video_name"], start_ms=_ms(r.START_REALIGNED),
                                   end_ms=_ms(r.END_REALIGNED))
                    except ValueError:
                        raise ValueError(f"{path}: {r.SENTENCE_NAME}: START_REALIGNED/END_REALIGNED are not "
                                         f"seconds ({r.START_REALIGNED!r}, {r.END_REALIGNED!r})") from None
                rows.append(row)
    return _table(*_locate(rows, media, root), clean_glosses)


def _read_pipe_file(path: Path, required: Iterable[str], what: str) -> list[dict[str, str]]:
    """A ``|``-separated text file with a header line and no quoting (the PHOENIX and CSL-Daily annotations)
    as one dict per row, each row checked to have the header's fields and the ``required`` columns."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not readable as {what} (not UTF-8: {e})") from None
    rows = list(csv.reader(lines, delimiter="|", quoting=csv.QUOTE_NONE))
    if not rows or not rows[0]:
        raise ValueError(f"{path}: not {what}: empty, no header line")
    header = [c.strip() for c in rows[0]]
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"{path}: not {what}, lacks column(s) {missing}; has {header}")
    table = []
    for number, fields in enumerate(rows[1:], start=2):
        if not fields:
            continue  # a blank line
        if len(fields) != len(header):
            raise ValueError(f"{path}: line {number}: {len(fields)} fields, expected {len(header)} "
                             f"({'|'.join(header)})")
        row = {c: v.strip() for c, v in zip(header, fields)}
        empty = [c for c in required if not row[c]]
        if empty:
            raise ValueError(f"{path}: line {number}: empty {empty[0]!r}")
        table.append(row)
    return table


def _find_one(root: Path, names: Iterable[str]) -> dict[str, Path]:
    """The first file under ``root`` (sorted paths) with each of ``names``, for the names found."""
    found = {}
    for name in names:
        paths = sorted(root.rglob(name))
        if paths:
            found[name] = paths[0]
    return found


def _words(text: str) -> str:
    """Whitespace collapsed to single spaces: ``" A  B "`` -> ``"A B"``."""
    return " ".join(text.split())


PHOENIX_COLUMNS = ["name", "video", "start", "end", "speaker", "orth", "translation"]
PHOENIX_SPLITS = ("train", "dev", "test")


def prepare_phoenix_2014t(root: str | Path, poses: str | Path | None = None, clean_glosses: bool = False,
                          spoken_language: str = "de", signed_language: str = "gsg") -> pd.DataFrame:
    """RWTH-PHOENIX-Weather 2014 T (Camgöz et al. 2018) as unpacked from ``phoenix-2014-T.v3.tar.gz``: the
    corpus files ``PHOENIX-2014-T.{train,dev,test}.corpus.csv`` (in ``annotations/manual/``; anywhere under
    ROOT), ``|``-separated without quoting, columns ``name|video|start|end|speaker|orth|translation``, one row
    per sentence: text = ``translation`` (the German sentence, lower case and tokenised as published),
    glosses = ``orth`` (the DGS glosses, space-separated), split = the file's (dev -> validation), signer =
    ``speaker`` (``Signer01`` ...); ``name`` kept. No gloss clean-up by default (sentences).

    The release holds each sentence as PNG frames (``features/fullFrame-210x260px/SPLIT/NAME/``), which are
    not read here: give the MediaPipe poses ``NAME.pose`` as POSES (e.g. the holistic poses that
    sign-language-datasets publishes as ``holistic/SPLIT/NAME.pose``), or put videos ``NAME.mp4`` made from the
    frames under ROOT. The complex training annotation (``train-complex-annotation``) is not read."""
    root = _folder(root)
    files = _find_one(root, [f"PHOENIX-2014-T.{s}.corpus.csv" for s in PHOENIX_SPLITS])
    if not files:
        raise FileNotFoundError(f"{root}: not the PHOENIX-2014-T layout: no PHOENIX-2014-T.train.corpus.csv, "
                                ".dev.corpus.csv or .test.corpus.csv under it (annotations/manual/)")
    rows = []
    for split in PHOENIX_SPLITS:
        path = files.get(f"PHOENIX-2014-T.{split}.corpus.csv")
        if path is None:
            continue
        for r in _read_pipe_file(path, ["name", "speaker", "orth", "translation"], "a PHOENIX-2014-T corpus file"):
            rows.append({"media": r["name"], "text": _words(r["translation"]), "spoken_language": spoken_language,
                         "signed_language": signed_language, "split": SPLIT_NAMES[split], "signer": r["speaker"],
                         "glosses": _words(r["orth"]) or None, "name": r["name"]})
    return _table(*_locate_frames(rows, _media(root, poses), root), clean_glosses)


def _locate_frames(rows: list[dict], media: MediaIndex, source: Path) -> tuple[pd.DataFrame, list[str]]:
    """:func:`_locate` for datasets published as image frames: when no media file is found at all, the error
    says which files are looked for."""
    try:
        return _locate(rows, media, source)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}. The dataset's frames are images, which are not read: give the poses "
                                f"NAME.pose (or videos NAME.mp4) of its sentences, e.g. {rows[0]['media']}.pose") \
            from None


CSL_DAILY_ANNOTATIONS = "video_map.txt"
CSL_DAILY_PICKLE = "csl2020ct_v2.pkl"
CSL_DAILY_SPLITS = "split_1.txt"
# writes video_map.txt's columns from the pickled annotations: run by the user, on a file they trust
CSL_DAILY_CONVERSION = (
    "python -c \"import pickle; info = pickle.load(open('csl2020ct_v2.pkl', 'rb'))['info']; "
    "open('video_map.txt', 'w', encoding='utf-8').writelines(['name|gloss|char|word\\n'] + ['|'.join([r['name']] "
    "+ [' '.join(r[k]) for k in ('label_gloss', 'label_char', 'label_word')]) + '\\n' for r in info])\"")
_CSL_DAILY_SIGNER = re.compile(r"_(P\d+)_")  # S000005_P0004_T00: sentence 5 by signer P0004, take 0


def prepare_csl_daily(root: str | Path, poses: str | Path | None = None, clean_glosses: bool = False,
                      spoken_language: str = "zh", signed_language: str = "csl") -> pd.DataFrame:
    """CSL-Daily (Zhou et al. 2021) as published: in ``sentence_label/`` (anywhere under ROOT) the annotations
    ``video_map.txt``, ``|``-separated with a header, columns ``index|name|length|gloss|char|word|postag``
    (``gloss``: the glosses, ``char`` / ``word``: the Chinese sentence as characters / words, all
    space-separated), and the split ``split_1.txt`` (``name|split``, train/dev/test). One row per sentence:
    text = the sentence (``word``'s words, else ``char``'s characters, joined without spaces), glosses =
    ``gloss``, split = ``split_1.txt``'s (dev -> validation), signer = the ``P`` part of the name
    (``S000005_P0004_T00``: sentence 5 by ``P0004``, take 0); ``name`` kept. A sentence missing from the
    split file is left out. No gloss clean-up by default.

    The same annotations ship pickled as ``csl2020ct_v2.pkl``, which signclip never unpickles (that runs code
    from the file): where only it is there, the error gives the one-line command that writes
    ``video_map.txt`` from it (:data:`CSL_DAILY_CONVERSION`, run in ``sentence_label/`` by the user). The
    frames (``frames_512x512/NAME/*.jpg``) are images, which are not read: give the poses ``NAME.pose`` as
    POSES, or videos ``NAME.mp4`` under ROOT."""
    root = _folder(root)
    files = _find_one(root, [CSL_DAILY_ANNOTATIONS, CSL_DAILY_SPLITS, CSL_DAILY_PICKLE])
    if CSL_DAILY_ANNOTATIONS not in files:
        if CSL_DAILY_PICKLE in files:
            raise FileNotFoundError(
                f"{files[CSL_DAILY_PICKLE]}: CSL-Daily's pickled annotations are not read (unpickling runs code "
                f"from the file); if you trust it, write {CSL_DAILY_ANNOTATIONS} from it, in "
                f"{files[CSL_DAILY_PICKLE].parent}: {CSL_DAILY_CONVERSION}")
        raise FileNotFoundError(f"{root}: not the CSL-Daily layout: no sentence_label/{CSL_DAILY_ANNOTATIONS} "
                                f"(or {CSL_DAILY_PICKLE}) under it")
    if CSL_DAILY_SPLITS not in files:
        raise FileNotFoundError(f"{root}: not the CSL-Daily layout: no sentence_label/{CSL_DAILY_SPLITS} (the "
                                f"split) under it")
    annotations = files[CSL_DAILY_ANNOTATIONS]
    table = _read_pipe_file(annotations, ["name", "gloss"], "CSL-Daily annotations (video_map.txt)")
    sentence = next((c for c in ("word", "char") if c in table[0]), None) if table else "word"
    if sentence is None:
        raise ValueError(f"{annotations}: not CSL-Daily annotations (video_map.txt), lacks column(s) "
                         f"['word' or 'char']; has {list(table[0])}")
    splits = {r["name"]: _split(r["split"], files[CSL_DAILY_SPLITS])
              for r in _read_pipe_file(files[CSL_DAILY_SPLITS], ["name", "split"], "a CSL-Daily split file")}
    rows, skipped = [], []
    for r in table:
        if r["name"] not in splits:
            skipped.append(f"{r['name']}: not in {CSL_DAILY_SPLITS}")
            continue
        signer = _CSL_DAILY_SIGNER.search(r["name"])
        rows.append({"media": r["name"], "text": "".join(r[sentence].split()), "spoken_language": spoken_language,
                     "signed_language": signed_language, "split": splits[r["name"]],
                     "signer": signer.group(1) if signer else None, "glosses": _words(r["gloss"]) or None,
                     "name": r["name"]})
    named = {r["name"] for r in table}
    skipped += [f"{name}: in {CSL_DAILY_SPLITS}, not in {CSL_DAILY_ANNOTATIONS}" for name in splits
                if name not in named]
    df, missing = _locate_frames(rows, _media(root, poses), annotations)
    return _table(df, skipped + missing, clean_glosses)


def prepare_spreadthesign(root: str | Path, poses: str | Path | None = None, clean_glosses: bool = False,
                          spoken_language: str = "en", languages: dict[str, str] | None = None) -> pd.DataFrame:
    """Spreadthesign-style folders ``ROOT/<language>/<word>/<video or .pose>``, one row per file: text = the
    word folder's name, signed_language = the language folder's name, or ``languages[name]`` (e.g.
    ``{"en.us": "ase"}``), spoken_language = ``spoken_language``; no split, no signer.

    Spreadthesign is not public (the paper used it under a licence), so this reads a dictionary laid out as
    above. The texts are words and phrases of the spoken language, which the reference pre-training used as
    they are: no gloss clean-up by default."""
    root = _folder(root)
    media_root = _folder(poses) if poses is not None else root
    languages = languages or {}
    rows = []
    for language in sorted(p for p in media_root.iterdir() if p.is_dir()):
        for word in sorted(p for p in language.iterdir() if p.is_dir()):
            for path in sorted(word.iterdir()):
                if path.is_file() and is_media(path):
                    rows.append({"path": str(path), "text": word.name, "spoken_language": spoken_language,
                                 "signed_language": languages.get(language.name, language.name)})
    if not rows:
        raise FileNotFoundError(f"{media_root}: not the Spreadthesign layout: no LANGUAGE/WORD/FILE (video or "
                                ".pose) under it")
    return _table(pd.DataFrame(rows), [], clean_glosses)


def prepare_kaggle(root: str | Path, poses: str | Path | None = None, clean_glosses: bool = True,
                   spoken_language: str = "en", signed_language: str = "ase") -> pd.DataFrame:
    """Google's Isolated Sign Language Recognition (Kaggle "ASL Signs", the paper's *asl-signs*): ``train.csv``
    and ``train_landmark_files/``, read by :func:`~signclip.data.manifests.load_kaggle_asl_signs` (text =
    ``sign``, signer = ``participant_id``; no split). Rows whose parquet file is missing are left out."""
    root = _folder(root)
    if poses is not None:
        raise ValueError("kaggle: --poses does not apply, the landmark parquet files are read as they are")
    if not (root / "train.csv").is_file():
        raise FileNotFoundError(f"{root}: not the Kaggle ASL Signs layout: no train.csv")
    df = load_kaggle_asl_signs(root / "train.csv", signed_language, spoken_language)
    exists = np.array([os.path.isfile(p) for p in df["path"]], dtype=bool)
    if not exists.any():
        raise FileNotFoundError(f"{root / 'train.csv'}: none of its {len(df)} landmark files is there "
                                f"(e.g. {df['path'][0]})")
    return _table(df[exists], [f"{p}: no such file" for p in df.loc[~exists, "path"]], clean_glosses)


DATASETS: dict[str, Callable[..., pd.DataFrame]] = {
    "asl-citizen": prepare_asl_citizen,
    "sem-lex": prepare_sem_lex,
    "wlasl": prepare_wlasl,
    "how2sign": prepare_how2sign,
    "phoenix-2014t": prepare_phoenix_2014t,
    "csl-daily": prepare_csl_daily,
    "spreadthesign": prepare_spreadthesign,
    "kaggle": prepare_kaggle,
}
ALIASES = {"aslcitizen": "asl-citizen", "semlex": "sem-lex", "asl-signs": "kaggle", "kaggle-asl-signs": "kaggle",
           "phoenix": "phoenix-2014t", "phoenix-2014-t": "phoenix-2014t", "phoenix14t": "phoenix-2014t",
           "rwth-phoenix-2014-t": "phoenix-2014t", "csldaily": "csl-daily"}
# no gloss clean-up by default
SENTENCE_DATASETS = ("how2sign", "spreadthesign", "phoenix-2014t", "csl-daily")


def dataset_name(name: str) -> str:
    """The canonical name of a dataset (``ASL_Citizen`` -> ``asl-citizen``); ValueError for an unknown one."""
    key = name.strip().lower().replace("_", "-")
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return key


def prepare_dataset(name: str, root: str | Path, **kwargs) -> pd.DataFrame:
    """The table of dataset ``name`` (see :data:`DATASETS`) downloaded to ``root``; ``kwargs`` go to its
    function (``poses``, ``clean_glosses``, ``spoken_language``, ``signed_language`` / ``languages``)."""
    return DATASETS[dataset_name(name)](root, **kwargs)


def relative_path(path: str, folder: str) -> str:
    """``path`` relative to ``folder`` where it can be (same drive), else absolute."""
    try:
        return os.path.relpath(path, folder)
    except ValueError:
        return path


def write_manifest(table: pd.DataFrame, out: str | Path) -> Path:
    """Write a table as a manifest CSV (crash-safe), its paths relative to the manifest's folder."""
    out = Path(out)
    folder = os.path.abspath(out.parent)
    table = table.copy()
    table["path"] = [relative_path(os.path.abspath(p), folder) for p in table["path"]]
    return write_text(out, table.to_csv(index=False))
