"""`signclip prepare`: manifests from the paper's datasets, each on a small copy of its published layout.

Every dataset's fixture writes the dataset's own files (split CSVs, metadata, JSON index, folders) with its
published names; the media are dummy videos and, in a POSES folder mirroring them as `signclip pose` would,
real lexicon `.pose` files, so that the manifests are read back by `load_manifest` and `load_arrays`.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from signclip.cli import app
from signclip.config import PoseConfig
from signclip.data.arrays import load_arrays
from signclip.data.manifests import COLUMNS, load_manifest
from signclip.data.prepare import (
    clean_gloss,
    prepare_asl_citizen,
    prepare_dataset,
    prepare_how2sign,
    prepare_kaggle,
    prepare_sem_lex,
    prepare_spreadthesign,
    prepare_wlasl,
    write_manifest,
)
from signclip.pose.io import crop_pose, read_pose

from test_formats import write_kaggle

runner = CliRunner()


def put_video(path: Path) -> None:
    """A stand-in for a downloaded video: the name is what matters to `prepare`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42 not a real video")


def put_pose(src: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, path)


def put_media(root: Path, poses: Path, videos: list[str], lexicon_paths: list[str]) -> None:
    """Each video under ROOT and its converted .pose (a real lexicon pose) under POSES, mirrored."""
    for rel, src in zip(videos, lexicon_paths):
        put_video(root / rel)
        put_pose(src, (poses / rel).with_suffix(".pose"))


def read_back(table: pd.DataFrame, out: Path) -> pd.DataFrame:
    """Write the manifest, check its paths are relative, and read it with load_manifest and load_arrays."""
    write_manifest(table, out)
    assert not any(os.path.isabs(p) for p in pd.read_csv(out)["path"])
    df = load_manifest(out)
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS
    assert df["path"].tolist() == table["path"].tolist()
    arrays, kept, errors = load_arrays(df, PoseConfig(), progress=False)
    assert not errors and len(arrays) == len(df)
    return df


def test_clean_gloss():
    """The paper's clean-up as its reference code does it (ASL Citizen and Sem-Lex), plus # and whitespace."""
    assert clean_gloss("HOUSE1") == "house"  # ASL Citizen: lower case, variant number
    assert clean_gloss("REMEMBER2") == "remember"
    assert clean_gloss("house_2") == "house"  # Sem-Lex: _<n> variant, snake case
    assert clean_gloss("oh_i_see") == "oh i see"
    assert clean_gloss("30_minute ") == "30 minute"
    assert clean_gloss("#BACK") == "back"  # fingerspelling marker
    assert clean_gloss("  Big   DEAL ") == "big deal"
    assert clean_gloss("7") == "7" and clean_gloss("9OCLOCK") == "9oclock"  # a number gloss keeps its digits
    assert clean_gloss("NONE") == "none"


# ---------------------------------------------------------------- ASL Citizen


@pytest.fixture
def asl_citizen(tmp_path, lexicon_paths):
    """ASL_Citizen/splits/{train,val,test}.csv and ASL_Citizen/videos/, as in ASL_Citizen.zip."""
    root, poses = tmp_path / "download", tmp_path / "poses"
    splits = {
        "train": [("P1", "0001-HOUSE1.mp4", "HOUSE1", "A_01_001"), ("P2", "0002-BACK.mp4", "#BACK", "B_02_002"),
                  ("P1", "0003-HOUSE2.mp4", "HOUSE2", "A_01_003")],
        "val": [("P3", "0004-NONE.mp4", "NONE", "C_03_004")],
        "test": [("P4", "0005-TREE.mp4", "TREE", "D_04_005"), ("P4", "0006-MISSING.mp4", "MISSING", "E_05_006")],
    }
    for name, rows in splits.items():
        (root / "ASL_Citizen" / "splits").mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows, columns=["Participant ID", "Video file", "Gloss", "ASL-LEX Code"]).to_csv(
            root / "ASL_Citizen" / "splits" / f"{name}.csv", index=False)
    videos = [f"ASL_Citizen/videos/000{i}-{g}.mp4" for i, g in enumerate(["HOUSE1", "BACK", "HOUSE2", "NONE",
                                                                          "TREE"], 1)]
    put_media(root, poses, videos, lexicon_paths)  # 0006-MISSING.mp4 was never downloaded
    return root, poses


def test_asl_citizen(asl_citizen, tmp_path):
    root, poses = asl_citizen
    table = prepare_asl_citizen(root)  # the folder holding ASL_Citizen/
    assert list(table.columns) == COLUMNS + ["raw_text", "asl_lex_code"]
    assert table["text"].tolist() == ["house", "back", "house", "none", "tree"]
    assert table["raw_text"].tolist() == ["HOUSE1", "#BACK", "HOUSE2", "NONE", "TREE"]
    assert table["split"].tolist() == ["train"] * 3 + ["validation", "test"]
    assert table["signer"].tolist() == ["P1", "P2", "P1", "P3", "P4"]
    assert (table["spoken_language"] == "en").all() and (table["signed_language"] == "ase").all()
    assert table["asl_lex_code"][0] == "A_01_001" and table["start_ms"].isna().all()
    assert table["path"][0] == str(root / "ASL_Citizen" / "videos" / "0001-HOUSE1.mp4")  # videos as they are
    assert table.attrs["skipped"] == [f"0006-MISSING.mp4: no file under {root}"]

    converted = prepare_asl_citizen(root / "ASL_Citizen", poses=poses)  # ROOT may be ASL_Citizen itself
    assert converted["path"][0] == str(poses / "ASL_Citizen" / "videos" / "0001-HOUSE1.pose")
    df = read_back(converted, tmp_path / "manifests" / "asl-citizen.csv")
    assert pd.read_csv(tmp_path / "manifests" / "asl-citizen.csv")["path"][0] == \
        os.path.join("..", "poses", "ASL_Citizen", "videos", "0001-HOUSE1.pose")
    assert df["text"][3] == "none" and df["signer"][0] == "P1"  # NONE is a gloss, not a missing value

    raw = prepare_asl_citizen(root, clean_glosses=False)
    assert raw["text"].tolist() == ["HOUSE1", "#BACK", "HOUSE2", "NONE", "TREE"] and "raw_text" not in raw


def test_asl_citizen_layout_errors(asl_citizen, tmp_path):
    root, _ = asl_citizen
    with pytest.raises(FileNotFoundError, match="not the ASL Citizen layout: no splits/train.csv"):
        prepare_asl_citizen(tmp_path / "poses")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="none of its 6 media files is under .*empty .*'0001-HOUSE1.mp4'"):
        prepare_asl_citizen(root, poses=tmp_path / "empty")
    pd.DataFrame({"Participant ID": ["P1"], "Video": ["x.mp4"], "Gloss": ["A"]}).to_csv(
        root / "ASL_Citizen" / "splits" / "val.csv", index=False)
    with pytest.raises(ValueError, match=r"val.csv: not an ASL Citizen split CSV, lacks column\(s\) \['Video file'\]"):
        prepare_asl_citizen(root)


# ---------------------------------------------------------------- Sem-Lex


def test_sem_lex(tmp_path, lexicon_paths):
    """semlex_metadata.csv (pandas index first, as published) and the videos <video_id>.webm per split."""
    root, poses = tmp_path / "semlex", tmp_path / "poses"
    meta = pd.DataFrame({"video_id": ["v1", "v2", "v3", "v1"], "signer_id": ["12", "12", "30", "12"],
                         "duration": [1.2, 2.0, 1.5, 1.2], "split": ["train", "val", "test", "train"],
                         "label_type": ["asllex", "asllex", "freetext", "signbank"],
                         "label": ["house_2", "oh_i_see", "null", "HOUSE"]})
    root.mkdir()
    meta.to_csv(root / "semlex_metadata.csv")  # with the unnamed index column
    put_media(root, poses, ["train/v1.webm", "val/v2.webm", "test/v3.webm"], lexicon_paths)
    table = prepare_sem_lex(root, poses=poses)
    assert list(table.columns) == COLUMNS + ["raw_text", "video_id", "label_type"]
    assert table["text"].tolist() == ["house", "oh i see", "null", "house"]  # a video with two labels: two rows
    assert table["split"].tolist() == ["train", "validation", "test", "train"]
    assert table["signer"].tolist() == ["12", "12", "30", "12"]
    assert table["path"][0] == table["path"][3] == str(poses / "train" / "v1.pose")
    read_back(table, root / "manifest.csv")
    assert prepare_sem_lex(root)["path"][1] == str(root / "val" / "v2.webm")

    meta.drop(columns="signer_id").to_csv(root / "semlex_metadata.csv")
    with pytest.raises(ValueError, match=r"semlex_metadata.csv: not a Sem-Lex metadata CSV, lacks column\(s\) "
                                         r"\['signer_id'\]"):
        prepare_sem_lex(root)
    with pytest.raises(FileNotFoundError, match="not the Sem-Lex layout: no semlex_metadata.csv"):
        prepare_sem_lex(poses)


# ---------------------------------------------------------------- WLASL


def wlasl_index(path: Path) -> None:
    """WLASL_v0.3.json: glosses with their instances (frame numbers from 1, -1 = to the end, fps 25)."""
    def inst(video_id, url, split, signer, start=1, end=-1, **extra):
        return {"video_id": video_id, "url": url, "split": split, "signer_id": signer, "frame_start": start,
                "frame_end": end, "fps": 25, "bbox": [0, 0, 10, 10], "instance_id": 0, "source": "x",
                "variation_id": 0, **extra}
    data = [
        {"gloss": "book", "instances": [
            inst("00001", "https://aslsignbank.example/BOOK.mp4", "train", 118),
            inst("00002", "https://www.youtube.com/watch?v=abcdefghijk", "val", 90, start=3, end=12),
            inst("00003", "https://www.youtube.com/watch?v=ABCDEFGHIJK", "test", 5, start=4, end=-1)]},
        {"gloss": "drink", "instances": [
            inst("00004", "https://www.youtube.com/watch?v=zzzzzzzzzzz", "train", 118, start=2, end=9),
            inst("00005", "https://signingsavvy.example/DRINK.mp4", "test", 7)]},  # never downloaded
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_wlasl(tmp_path, lexicon_paths):
    """The start kit's clips videos/<video_id>.mp4 are listed whole; an instance whose clip is absent but whose
    downloaded YouTube video is there gets its frame range as start_ms/end_ms."""
    root, poses = tmp_path / "WLASL", tmp_path / "poses"
    wlasl_index(root / "start_kit" / "WLASL_v0.3.json")
    put_media(root, poses, ["start_kit/videos/00001.mp4", "start_kit/videos/00004.mp4",
                            "start_kit/raw_videos/abcdefghijk.mp4", "start_kit/raw_videos/ABCDEFGHIJK.mkv"],
              lexicon_paths)
    table = prepare_wlasl(root, poses=poses)
    assert list(table.columns) == COLUMNS + ["raw_text", "video_id", "variation_id"]
    assert table["video_id"].tolist() == ["00001", "00002", "00003", "00004"]
    assert table["text"].tolist() == ["book", "book", "book", "drink"]
    assert table["split"].tolist() == ["train", "validation", "test", "train"]
    assert table["signer"].tolist() == ["118", "90", "5", "118"]
    assert table["path"][1] == str(poses / "start_kit" / "raw_videos" / "abcdefghijk.pose")
    # frames 3..12 (from 1) at 25 fps: from 80 ms to 480 ms; 4..end: from 120 ms
    assert table["start_ms"][1] == 80 and table["end_ms"][1] == 480
    assert table["start_ms"][2] == 120 and np.isnan(table["end_ms"][2])
    assert np.isnan(table["start_ms"][[0, 3]]).all()  # clips are already cut (00004's range is not applied)
    assert table.attrs["skipped"] == [f"00005: no file under {poses}"]
    df = read_back(table, root / "manifest.csv")
    full = read_pose(df["path"][1])
    cut = crop_pose(full, df["start_ms"][1], df["end_ms"][1])
    np.testing.assert_array_equal(cut.body.data, full.body.data[2:12])  # exactly frames 3..12
    assert crop_pose(read_pose(df["path"][2]), df["start_ms"][2], df["end_ms"][2]).body.data.shape[0] == \
        full_frames(df["path"][2]) - 3

    (root / "start_kit" / "WLASL_v0.3.json").write_text(json.dumps([{"gloss": "book"}]))
    with pytest.raises(ValueError, match=r"WLASL_v0.3.json: entry 0 is not a \{gloss, instances"):
        prepare_wlasl(root)
    with pytest.raises(FileNotFoundError, match="not the WLASL layout: no WLASL_v0.3.json"):
        prepare_wlasl(poses)


def full_frames(path: str) -> int:
    return read_pose(path).body.data.shape[0]


# ---------------------------------------------------------------- How2Sign


def test_how2sign(tmp_path, lexicon_paths):
    """how2sign_realigned_{train,val,test}.csv (tab-separated, seconds) where download_how2sign.sh puts them;
    sentence clips for train/val, only the whole video for test."""
    root, poses = tmp_path / "How2Sign", tmp_path / "poses"
    header = "VIDEO_ID\tVIDEO_NAME\tSENTENCE_ID\tSENTENCE_NAME\tSTART_REALIGNED\tEND_REALIGNED\tSENTENCE\n"
    sentences = {
        "train": [("vidA", "vidA-5-rgb_front", "vidA_0", "vidA_0-5-rgb_front", "0.0", "2.5", "Hi, I'm Amelia."),
                  ("vidA", "vidA-5-rgb_front", "vidA_1", "vidA_1-5-rgb_front", "2.5", "4.84", 'Say "None" twice.')],
        "val": [("vidB", "vidB-1-rgb_front", "vidB_0", "vidB_0-1-rgb_front", "1.0", "3.0", "NULL is a word too.")],
        "test": [("vidC", "vidC-8-rgb_front", "vidC_3", "vidC_3-8-rgb_front", "0.12", "0.6", "Okay.")],
    }
    for split, rows in sentences.items():
        folder = root / "sentence_level" / split / "text" / "en" / "raw_text" / "re_aligned"
        folder.mkdir(parents=True)
        (folder / f"how2sign_realigned_{split}.csv").write_text(header + "".join("\t".join(r) + "\n" for r in rows))
    put_media(root, poses, ["sentence_level/train/rgb_front/raw_videos/vidA_0-5-rgb_front.mp4",
                            "sentence_level/train/rgb_front/raw_videos/vidA_1-5-rgb_front.mp4",
                            "sentence_level/val/rgb_front/raw_videos/vidB_0-1-rgb_front.mp4",
                            "video_level/test/rgb_front/raw_videos/vidC-8-rgb_front.mp4"], lexicon_paths)
    table = prepare_how2sign(root, poses=poses)
    assert list(table.columns) == COLUMNS + ["sentence_name", "video_name"]  # sentences: no clean-up
    assert table["text"].tolist() == ["Hi, I'm Amelia.", 'Say "None" twice.', "NULL is a word too.", "Okay."]
    assert table["split"].tolist() == ["train", "train", "validation", "test"]
    assert table["signer"].isna().all()
    assert np.isnan(table["start_ms"][:3]).all()  # sentence clips are listed whole
    assert table["path"][3] == str(poses / "video_level/test/rgb_front/raw_videos/vidC-8-rgb_front.pose")
    assert table["start_ms"][3] == 120 and table["end_ms"][3] == 600  # seconds -> ms on the whole video
    read_back(table, tmp_path / "how2sign.csv")
    assert prepare_how2sign(root, clean_glosses=True)["text"][0] == "hi, i'm amelia."

    with pytest.raises(FileNotFoundError, match="not the How2Sign layout: no how2sign_realigned_train.csv"):
        prepare_how2sign(poses)
    bad = root / "sentence_level" / "val" / "text" / "en" / "raw_text" / "re_aligned" / "how2sign_realigned_val.csv"
    bad.write_text("VIDEO_NAME,SENTENCE_NAME,SENTENCE\na,b,c\n")
    with pytest.raises(ValueError, match=r"how2sign_realigned_val.csv: not a How2Sign re-aligned translation "
                                         r"\(tab-separated\), lacks column\(s\)"):
        prepare_how2sign(root)


# ---------------------------------------------------------------- Spreadthesign-style folders


def test_spreadthesign(tmp_path, lexicon_paths):
    root = tmp_path / "sts"
    for rel, src in zip(["en.us/house/1.pose", "en.us/House 2/2.pose", "gsg/Haus/3.pose", "gsg/Haus/4.pose"],
                        lexicon_paths):
        put_pose(src, root / rel)
    put_video(root / "gsg" / "Baum" / "5.mp4")
    (root / "gsg" / "Baum" / "notes.txt").write_text("not media")
    table = prepare_spreadthesign(root, languages={"en.us": "ase"})
    assert list(table.columns) == COLUMNS
    assert table["text"].tolist() == ["House 2", "house", "Baum", "Haus", "Haus"]  # words as they are
    assert table["signed_language"].tolist() == ["ase", "ase", "gsg", "gsg", "gsg"]
    assert (table["spoken_language"] == "en").all()
    assert table["split"].isna().all() and table["signer"].isna().all()
    read_back(table[table["path"].str.endswith(".pose")], root / "manifest.csv")
    cleaned = prepare_spreadthesign(root, clean_glosses=True, spoken_language="de")
    assert cleaned["text"].tolist()[:2] == ["house 2", "house"] and cleaned["signed_language"][0] == "en.us"
    assert (cleaned["spoken_language"] == "de").all()
    with pytest.raises(FileNotFoundError, match="not the Spreadthesign layout"):
        prepare_spreadthesign(root / "gsg" / "Baum")


# ---------------------------------------------------------------- Kaggle ASL Signs


def test_kaggle(tmp_path, lexicon_paths):
    root = write_kaggle(tmp_path, lexicon_paths[:2], ["TV", "aunt"], [26734, 28656])
    table = prepare_dataset("kaggle", root)  # the existing loader, then the clean-up
    assert table["text"].tolist() == ["tv", "aunt"] and table["raw_text"].tolist() == ["TV", "aunt"]
    assert table["signer"].tolist() == ["26734", "28656"]
    df = read_back(table, tmp_path / "manifest.csv")
    assert df["sequence_id"].tolist() == [1000, 1001]
    os.remove(table["path"][1])
    assert len(prepare_kaggle(root)) == 1
    with pytest.raises(ValueError, match="kaggle: --poses does not apply"):
        prepare_kaggle(root, poses=tmp_path)
    with pytest.raises(FileNotFoundError, match="not the Kaggle ASL Signs layout: no train.csv"):
        prepare_kaggle(tmp_path / "train_landmark_files")


# ---------------------------------------------------------------- the command


def run(*args):
    return runner.invoke(app, ["prepare", *[str(a) for a in args]])


def test_prepare_command(asl_citizen, tmp_path):
    root, poses = asl_citizen
    out = tmp_path / "m" / "asl-citizen.csv"
    result = run("ASL_Citizen", root, "-o", out)  # videos as they are: the command says how to convert them
    assert result.exit_code == 0, result.output
    assert "wrote 5 rows" in result.output and "train 3, validation 1, test 1" in result.output
    assert "left out 1 rows, e.g. 0006-MISSING.mp4" in result.output
    assert f"signclip pose {root} -o POSES" in result.output
    result = run("asl-citizen", root, "--poses", poses, "-o", out, "--no-clean-glosses")
    assert result.exit_code == 0 and "signclip pose" not in result.output
    assert load_manifest(out)["text"].tolist() == ["HOUSE1", "#BACK", "HOUSE2", "NONE", "TREE"]


def test_prepare_command_spreadthesign_languages(tmp_path, lexicon_paths):
    put_pose(lexicon_paths[0], tmp_path / "sts" / "en.us" / "house" / "1.pose")
    result = run("spreadthesign", tmp_path / "sts", "-o", tmp_path / "m.csv", "--language", "en.us=ase")
    assert result.exit_code == 0, result.output
    assert "--split-by signer" in result.output
    assert load_manifest(tmp_path / "m.csv")["signed_language"].tolist() == ["ase"]


def test_known_glosses_leave_out_unknown_test_rows(asl_citizen, tmp_path):
    """The paper's third clean-up: a test row whose cleaned gloss the pre-training vocabulary lacks is left out."""
    root, poses = asl_citizen
    (tmp_path / "vocab.txt").write_text("HOUSE1\n#back\n\n")  # cleaned like the glosses: house, back
    out = tmp_path / "m.csv"
    result = run("asl-citizen", root, "--poses", poses, "-o", out, "--known-glosses", tmp_path / "vocab.txt")
    assert result.exit_code == 0, result.output
    assert "--known-glosses: left out 1 of 1 test rows whose gloss is not among the 2 of" in result.output
    assert "wrote 4 rows" in result.output and "test" not in set(load_manifest(out)["split"])
    pd.DataFrame({"path": ["x.pose"], "text": ["Tree2"]}).to_csv(tmp_path / "pretraining.csv", index=False)
    result = run("asl-citizen", root, "--poses", poses, "-o", out, "--known-glosses", tmp_path / "pretraining.csv")
    assert "left out 0 of 1 test rows" in result.output and "wrote 5 rows" in result.output
    (tmp_path / "empty.txt").write_text("\n")
    for vocab, message in (("none.txt", "known glosses"), ("empty.txt", "no gloss in the file")):
        result = run("asl-citizen", root, "-o", tmp_path / "e.csv", "--known-glosses", tmp_path / vocab)
        assert result.exit_code == 2 and message in result.output and not (tmp_path / "e.csv").exists()


@pytest.mark.parametrize("args, message", [
    (["wlasl2000", "."], "unknown dataset 'wlasl2000'; choose one of asl-citizen, sem-lex, wlasl, how2sign, "
                         "phoenix-2014t, csl-daily, spreadthesign, kaggle"),
    (["sem-lex", "no-such-folder"], "no-such-folder: no such folder"),
    (["wlasl", "."], "not the WLASL layout: no WLASL_v0.3.json"),
    (["spreadthesign", ".", "--language", "en.us"], "--language 'en.us': expected FOLDER=CODE"),
])
def test_prepare_errors_are_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = run(*args, "-o", tmp_path / "m.csv")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert message in lines[0]
    assert not (tmp_path / "m.csv").exists()
