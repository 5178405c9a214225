"""`signclip prepare phoenix-2014t | csl-daily`: sentence-level datasets with glosses, on small copies of their
published layouts (annotation files in their own formats, the frames as images, MediaPipe poses beside them),
including malformed annotation files."""
from __future__ import annotations

import pickle
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from signclip.cli import app
from signclip.data.manifests import COLUMNS, load_manifest
from signclip.data.prepare import CSL_DAILY_CONVERSION, prepare_csl_daily, prepare_dataset, prepare_phoenix_2014t

from test_prepare import put_pose, put_video, read_back

runner = CliRunner()

# ---------------------------------------------------------------- PHOENIX-2014-T

PHOENIX_HEADER = "name|video|start|end|speaker|orth|translation"
PHOENIX = {  # split -> rows (name, speaker, orth, translation) as in the release: lower-case tokenised German
    "train": [("01April_2010_Thursday_heute-6694", "Signer04", "REGEN SCHNEE REGION VERSCHWINDEN NORD",
               "regen und schnee lassen an den alpen in der nacht nach ."),
              ("01April_2010_Thursday_heute-6697", "Signer04", "SONNE  WOLKE  WECHSELHAFT",
               "im übrigen land wechseln sonne und wolken einander ab ."),
              ("05May_2011_Thursday_tagesschau-3412", "Signer01", "MORGEN TEMPERATUR SIEBEN",
               "morgen sieben grad im norden .")],  # its poses are missing
    "dev": [("11August_2010_Wednesday_tagesschau-3", "Signer08", "WETTER MORGEN MITTWOCH",
             "und nun die wettervorhersage für morgen mittwoch den zwölften august .")],
    "test": [("25October_2010_Monday_tagesschau-22", "Signer05", "NULL", "null grad an der küste .")],
}


def phoenix_line(name: str, speaker: str, orth: str, translation: str) -> str:
    return f"{name}|{name}/1/*.png|-1|-1|{speaker}|{orth}|{translation}\n"


def manual(root: Path) -> Path:
    return root / "PHOENIX-2014-T-release-v3" / "PHOENIX-2014-T" / "annotations" / "manual"


@pytest.fixture
def phoenix(tmp_path, lexicon_paths):
    """phoenix-2014-T.v3.tar.gz unpacked (corpus files, PNG frames) and the holistic poses as
    sign-language-datasets publishes them (holistic/SPLIT/NAME.pose)."""
    root, poses = tmp_path / "download", tmp_path / "poses"
    manual(root).mkdir(parents=True)
    sources = iter(lexicon_paths)
    for split, rows in PHOENIX.items():
        text = PHOENIX_HEADER + "\n" + "".join(phoenix_line(*r) for r in rows)
        (manual(root) / f"PHOENIX-2014-T.{split}.corpus.csv").write_text(text, encoding="utf-8")
        for name, *_ in rows:
            frames = root / "PHOENIX-2014-T-release-v3/PHOENIX-2014-T/features/fullFrame-210x260px" / split / name
            frames.mkdir(parents=True)
            (frames / "images0001.png").write_bytes(b"\x89PNG\r\n\x1a\n")
            if name != "05May_2011_Thursday_tagesschau-3412":
                put_pose(next(sources), poses / "holistic" / split / f"{name}.pose")
    (manual(root) / "PHOENIX-2014-T.train-complex-annotation.corpus.csv").write_text(
        PHOENIX_HEADER + "\n" + phoenix_line("x", "Signer01", "loc-NORD __ON__", "nicht gelesen ."))
    return root, poses


def test_phoenix(phoenix, tmp_path):
    root, poses = phoenix
    table = prepare_phoenix_2014t(root, poses=poses)
    assert set(COLUMNS) <= set(table.columns) and "glosses" in table and "name" in table
    assert table["text"].tolist() == [r[3] for rows in PHOENIX.values() for r in rows if "3412" not in r[0]]
    assert table["glosses"].tolist() == ["REGEN SCHNEE REGION VERSCHWINDEN NORD", "SONNE WOLKE WECHSELHAFT",
                                         "WETTER MORGEN MITTWOCH", "NULL"]  # whitespace collapsed, else as given
    assert table["split"].tolist() == ["train", "train", "validation", "test"]
    assert table["signer"].tolist() == ["Signer04", "Signer04", "Signer08", "Signer05"]
    assert (table["spoken_language"] == "de").all() and (table["signed_language"] == "gsg").all()
    assert table["path"][2] == str(poses / "holistic" / "dev" / "11August_2010_Wednesday_tagesschau-3.pose")
    assert table.attrs["skipped"] == [f"05May_2011_Thursday_tagesschau-3412: no file under {poses}"]
    df = read_back(table, tmp_path / "phoenix.csv")
    assert df["glosses"].tolist()[:3] == table["glosses"].tolist()[:3] and df["split"][2] == "validation"
    assert prepare_dataset("PHOENIX-2014-T", root, poses=poses)["name"].tolist() == table["name"].tolist()


def test_phoenix_videos_made_from_the_frames(phoenix):
    """Without poses the PNG frames are not media; videos NAME.mp4 under ROOT are listed as they are."""
    root, _ = phoenix
    with pytest.raises(FileNotFoundError, match=r"none of its 5 media files .* frames are images, which are not "
                                                r"read: give the poses NAME.pose"):
        prepare_phoenix_2014t(root)
    put_video(root / "videos" / "dev" / "11August_2010_Wednesday_tagesschau-3.mp4")
    table = prepare_phoenix_2014t(root)
    assert table["path"].tolist() == [str(root / "videos/dev/11August_2010_Wednesday_tagesschau-3.mp4")]
    assert len(table.attrs["skipped"]) == 4


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("morgen mittwoch den", "morgen | mittwoch den"),
     r"PHOENIX-2014-T.dev.corpus.csv: line 2: 8 fields, expected 7 \(name\|video\|start\|end\|speaker\|orth\|"
     r"translation\)"),
    (lambda t: t.replace("|-1|-1|Signer08|WETTER MORGEN MITTWOCH|", "|-1|-1|Signer08|WETTER MORGEN MITTWOCH"),
     r"PHOENIX-2014-T.dev.corpus.csv: line 2: 6 fields, expected 7"),
    (lambda t: t.replace("|orth|", "|gloss|"),
     r"PHOENIX-2014-T.dev.corpus.csv: not a PHOENIX-2014-T corpus file, lacks column\(s\) \['orth'\]"),
    (lambda t: t.replace("11August_2010_Wednesday_tagesschau-3|", "|", 1),
     r"PHOENIX-2014-T.dev.corpus.csv: line 2: empty 'name'"),
    (lambda t: "", r"PHOENIX-2014-T.dev.corpus.csv: not a PHOENIX-2014-T corpus file: empty, no header line"),
])
def test_phoenix_malformed(phoenix, edit, message):
    root, poses = phoenix
    path = manual(root) / "PHOENIX-2014-T.dev.corpus.csv"
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        prepare_phoenix_2014t(root, poses=poses)


def test_phoenix_layout_errors(phoenix, tmp_path):
    root, poses = phoenix
    with pytest.raises(FileNotFoundError, match="not the PHOENIX-2014-T layout: no PHOENIX-2014-T.train.corpus.csv"):
        prepare_phoenix_2014t(poses)
    path = manual(root) / "PHOENIX-2014-T.test.corpus.csv"
    path.write_bytes("name|video|start|end|speaker|orth|translation\nä|b|c|d|e|f|g\n".encode("latin-1"))
    with pytest.raises(ValueError, match="PHOENIX-2014-T.test.corpus.csv: not readable as a PHOENIX-2014-T corpus "
                                         "file \\(not UTF-8"):
        prepare_phoenix_2014t(root, poses=poses)


# ---------------------------------------------------------------- CSL-Daily

CSL_HEADER = "index|name|length|gloss|char|word|postag"
CSL = [  # name, split, gloss, char, word
    ("S000000_P0000_T00", "train", "你 好", "你 好", "你好"),
    ("S000001_P0003_T00", "dev", "今天 天气 好", "今 天 天 气 很 好", "今天 天气 很 好"),
    ("S000002_P0008_T00", "test", "我 喜欢 吃 苹果", "我 喜 欢 吃 苹 果", "我 喜欢 吃 苹果"),
    ("S000003_P0001_T00", None, "谢谢", "谢 谢", "谢谢"),  # not in the split file
    ("S000004_P0002_T00", "train", "再见", "再 见", "再见"),  # its poses are missing
]


def sentence_label(root: Path) -> Path:
    return root / "CSL-Daily" / "sentence_label"


@pytest.fixture
def csl_daily(tmp_path, lexicon_paths):
    """CSL-Daily's sentence_label/ (video_map.txt, split_1.txt, csl2020ct_v2.pkl), the JPEG frames, and
    MediaPipe poses NAME.pose in a POSES folder."""
    root, poses = tmp_path / "download", tmp_path / "poses"
    sentence_label(root).mkdir(parents=True)
    lines = [CSL_HEADER] + [f"{i}|{name}|{40 + i}|{gloss}|{char}|{word}|{' '.join('n' * len(word.split()))}"
                            for i, (name, _, gloss, char, word) in enumerate(CSL)]
    (sentence_label(root) / "video_map.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    splits = ["name|split"] + [f"{name}|{split}" for name, split, *_ in CSL if split] + ["S000099_P0000_T00|test"]
    (sentence_label(root) / "split_1.txt").write_text("\n".join(splits) + "\n", encoding="utf-8")
    info = [{"name": name, "length": 40 + i, "label_gloss": gloss.split(), "label_char": char.split(),
             "label_word": word.split(), "label_postag": ["n"] * len(word.split())}
            for i, (name, _, gloss, char, word) in enumerate(CSL)]
    (sentence_label(root) / "csl2020ct_v2.pkl").write_bytes(pickle.dumps({"info": info, "gloss_map": []}))
    for (name, *_), src in zip(CSL, lexicon_paths):
        (root / "CSL-Daily" / "sentence" / "frames_512x512" / name).mkdir(parents=True)
        (root / "CSL-Daily" / "sentence" / "frames_512x512" / name / "000000.jpg").write_bytes(b"\xff\xd8\xff")
        if name != "S000004_P0002_T00":
            put_pose(src, poses / f"{name}.pose")
    return root, poses


def test_csl_daily(csl_daily, tmp_path):
    root, poses = csl_daily
    table = prepare_csl_daily(root, poses=poses)
    assert set(COLUMNS) <= set(table.columns) and "glosses" in table and "name" in table
    assert table["text"].tolist() == ["你好", "今天天气很好", "我喜欢吃苹果"]  # the words joined, as written
    assert table["glosses"].tolist() == ["你 好", "今天 天气 好", "我 喜欢 吃 苹果"]
    assert table["split"].tolist() == ["train", "validation", "test"]
    assert table["signer"].tolist() == ["P0000", "P0003", "P0008"]
    assert (table["spoken_language"] == "zh").all() and (table["signed_language"] == "csl").all()
    assert table.attrs["skipped"] == ["S000003_P0001_T00: not in split_1.txt",
                                      "S000099_P0000_T00: in split_1.txt, not in video_map.txt",
                                      f"S000004_P0002_T00: no file under {poses}"]
    df = read_back(table, tmp_path / "csl-daily.csv")
    assert df["glosses"].tolist() == table["glosses"].tolist() and df["text"][1] == "今天天气很好"


def test_csl_daily_pickle_only(csl_daily):
    """Only the pickle: the error gives the command that writes video_map.txt from it (run here on the
    fixture's own pickle); then the table is the same as from the published video_map.txt."""
    root, poses = csl_daily
    expected = prepare_csl_daily(root, poses=poses)
    (sentence_label(root) / "video_map.txt").unlink()
    with pytest.raises(FileNotFoundError) as e:
        prepare_csl_daily(root, poses=poses)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{sentence_label(root) / 'csl2020ct_v2.pkl'}: CSL-Daily's "
                                                      "pickled annotations are not read")
    assert message.endswith(CSL_DAILY_CONVERSION) and f"in {sentence_label(root)}:" in message
    command = shlex.split(CSL_DAILY_CONVERSION)
    assert command[0] == "python"
    subprocess.run([sys.executable, *command[1:]], cwd=sentence_label(root), check=True)
    converted = prepare_csl_daily(root, poses=poses)
    for column in ("text", "glosses", "split", "signer", "path"):
        assert converted[column].tolist() == expected[column].tolist(), column


@pytest.mark.parametrize("file, edit, message", [
    ("split_1.txt", lambda t: t.replace("|dev", "|val2"), r"split_1.txt: unknown split 'val2'"),
    ("split_1.txt", lambda t: t.replace("name|split", "name,split"),
     r"split_1.txt: not a CSL-Daily split file, lacks column\(s\) \['name', 'split'\]"),
    ("video_map.txt", lambda t: t.replace("|今天 天气 好|", "|今天 天气 好"),
     r"video_map.txt: line 3: 6 fields, expected 7 \(index\|name\|length\|gloss\|char\|word\|postag\)"),
    ("video_map.txt", lambda t: t.replace("|char|word|", "|c|w|"),
     r"video_map.txt: not CSL-Daily annotations \(video_map.txt\), lacks column\(s\) \['word' or 'char'\]"),
    ("video_map.txt", lambda t: t.replace("|你 好|你 好|你好|", "||你 好|你好|"),
     r"video_map.txt: line 2: empty 'gloss'"),
])
def test_csl_daily_malformed(csl_daily, file, edit, message):
    root, poses = csl_daily
    path = sentence_label(root) / file
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        prepare_csl_daily(root, poses=poses)


def test_csl_daily_layout_errors(csl_daily):
    root, poses = csl_daily
    with pytest.raises(FileNotFoundError, match="not the CSL-Daily layout: no sentence_label/video_map.txt"):
        prepare_csl_daily(poses)
    (sentence_label(root) / "split_1.txt").unlink()
    with pytest.raises(FileNotFoundError, match="not the CSL-Daily layout: no sentence_label/split_1.txt"):
        prepare_csl_daily(root, poses=poses)


# ---------------------------------------------------------------- the command


def run(*args):
    return runner.invoke(app, ["prepare", *[str(a) for a in args]])


def test_prepare_command(phoenix, csl_daily, tmp_path):
    """The dataset's own language codes by default; the summary counts the gloss sequences."""
    (root, poses), (csl_root, csl_poses) = phoenix, csl_daily
    result = run("phoenix-2014t", root, "--poses", poses, "-o", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    assert "wrote 4 rows" in result.output and "train 2, validation 1, test 1" in result.output
    assert "3 signers, 4 gloss sequences" in result.output and "left out 1 rows" in result.output
    df = load_manifest(tmp_path / "p.csv")
    assert set(df["spoken_language"]) == {"de"} and set(df["signed_language"]) == {"gsg"}
    result = run("CSL_Daily", csl_root, "--poses", csl_poses, "-o", tmp_path / "c.csv", "-l", "csl-x")
    assert result.exit_code == 0, result.output
    df = load_manifest(tmp_path / "c.csv")
    assert set(df["spoken_language"]) == {"zh"} and set(df["signed_language"]) == {"csl-x"}


def test_prepare_errors_are_one_line(phoenix, csl_daily, tmp_path):
    (root, poses), (csl_root, csl_poses) = phoenix, csl_daily
    (manual(root) / "PHOENIX-2014-T.train.corpus.csv").write_text(PHOENIX_HEADER + "\na|b\n", encoding="utf-8")
    (sentence_label(csl_root) / "video_map.txt").unlink()
    for args, message in [(["phoenix-2014t", root, "--poses", poses], "line 2: 2 fields, expected 7"),
                          (["csl-daily", csl_root, "--poses", csl_poses], "write video_map.txt from it")]:
        result = run(*args, "-o", tmp_path / "m.csv")
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
        assert message in lines[0]
    assert not (tmp_path / "m.csv").exists()
