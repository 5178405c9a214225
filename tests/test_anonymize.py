"""The paper's remaining preprocessing on real lexicon poses: E6 wrist correction (``PoseConfig.correct_wrists``)
and E6.2/E8.1 anonymisation (``PoseConfig.anonymize``, ``signclip pose --anonymize``)."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import modified_pose
from pose_anonymization.appearance import remove_appearance
from typer.testing import CliRunner

import signclip
from signclip.cli import app
from signclip.config import PoseConfig
from signclip.errors import PoseInputError
from signclip.pose.anonymize import APPEARANCE_FILE, anonymize_pose
from signclip.pose.io import read_pose
from signclip.pose.layout import BODY, FACE, LEFT_HAND, RIGHT_HAND, Layout, get_layout
from signclip.pose.preprocess import hands_present, header_indices, preprocess

LAYOUT = get_layout("contour_holistic")
# points that carry a signer's appearance (the hands and the body's wrist points keep their own positions)
APPEARANCE = [i for i, (c, p) in enumerate(LAYOUT.points) if c == FACE or p in (
    "NOSE", "LEFT_EYE", "RIGHT_EYE", "LEFT_EAR", "RIGHT_EAR", "MOUTH_LEFT", "MOUTH_RIGHT", "LEFT_SHOULDER",
    "RIGHT_SHOULDER", "LEFT_ELBOW", "RIGHT_ELBOW", "LEFT_HIP", "RIGHT_HIP")]
SHOULDERS = [APPEARANCE.index(LAYOUT.index(BODY, f"{side}_SHOULDER")) for side in ("LEFT", "RIGHT")]
RAW = PoseConfig(layout="contour_holistic", fps=None, mirror_left_handed=False, require_hands=False)


def proportions(x: np.ndarray) -> np.ndarray:
    """(T, P, 3) preprocessed pose -> the first frame's distances between its appearance points, in shoulder
    widths of that frame: (A, A), independent of position and scale."""
    p = x[0, APPEARANCE]
    assert np.isfinite(p).all()
    return np.linalg.norm(p[:, None] - p[None], axis=-1) / np.linalg.norm(p[SHOULDERS[0]] - p[SHOULDERS[1]])


@pytest.fixture(scope="module")
def two_people(lexicon, tmp_path_factory):
    """A lexicon pose fully seen in frame 0, and the same signing by a person of other proportions: a face a
    third larger, upper arms a quarter longer, hips wider. (The lexicon's fingerspellers were all anonymised
    to one appearance when it was made, so two lexicon poses have equal proportions already.)"""
    path = next(p for p in lexicon["path"] if np.isfinite(preprocess(p, RAW)[0, APPEARANCE]).all())
    pose = read_pose(path)
    face = header_indices(pose, Layout("face", tuple((FACE, str(i)) for i in range(478))))
    body = {p: header_indices(pose, Layout(p, ((BODY, p),)))[0] for p in (
        "NOSE", "LEFT_SHOULDER", "RIGHT_SHOULDER", "LEFT_ELBOW", "RIGHT_ELBOW", "LEFT_HIP", "RIGHT_HIP")}

    def other_person(d, c):
        nose = d[:, :, body["NOSE"]][:, :, None]
        d[:, :, face] = nose + 1.33 * (d[:, :, face] - nose)
        for side in ("LEFT", "RIGHT"):
            shoulder, elbow = body[f"{side}_SHOULDER"], body[f"{side}_ELBOW"]
            d[:, :, elbow] = d[:, :, shoulder] + 1.25 * (d[:, :, elbow] - d[:, :, shoulder])
        hips = d[:, :, [body["LEFT_HIP"], body["RIGHT_HIP"]]]
        d[:, :, [body["LEFT_HIP"], body["RIGHT_HIP"]]] = hips.mean(2, keepdims=True) + 1.4 * (
            hips - hips.mean(2, keepdims=True))
        return d, c

    other = modified_pose(path, tmp_path_factory.mktemp("people") / "other.pose", other_person)
    return [path, other]


def test_anonymised_people_have_equal_body_proportions(two_people):
    a, b = (proportions(preprocess(p, RAW)) for p in two_people)
    assert np.abs(a - b).max() > 0.1  # two people
    anonymous = replace(RAW, anonymize="mean")
    a, b = (proportions(preprocess(p, anonymous)) for p in two_people)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_a_given_appearance_is_taken_over(two_people):
    """Anonymised to the appearance of another pose: the first frame has that person's proportions."""
    given = proportions(preprocess(two_people[1], RAW))
    ours = proportions(preprocess(two_people[0], replace(RAW, anonymize=two_people[1])))
    np.testing.assert_allclose(ours, given, atol=1e-4)


def hand_shape(x: np.ndarray, idx: list[int]) -> np.ndarray:
    """(T, 21, 3) the hand's points from its wrist, in units of its wrist -> middle-finger-base length."""
    v = x[:, idx] - x[:, idx[:1]]
    return v / np.linalg.norm(v[:, 9:10], axis=-1, keepdims=True)


def test_the_signing_is_kept(two_people):
    """Hands keep their shapes; where frame 0 shows every point, this is the library's own remove_appearance."""
    raw, anonymous = (preprocess(two_people[0], cfg) for cfg in (RAW, replace(RAW, anonymize="mean")))
    assert hands_present(raw, LAYOUT) == hands_present(anonymous, LAYOUT)
    for idx in LAYOUT.hand_slices.values():
        seen = np.isfinite(raw[:, idx]).all((1, 2))
        np.testing.assert_allclose(hand_shape(anonymous[seen], idx), hand_shape(raw[seen], idx), atol=1e-4)
    pose = read_pose(two_people[0])
    before = (pose.header.dimensions.width, pose.body.data.copy())
    ours = anonymize_pose(pose).body.data
    assert pose.header.dimensions.width == before[0]  # the caller's pose is left alone
    np.testing.assert_array_equal(pose.body.data.filled(0), before[1].filled(0))
    library = remove_appearance(read_pose(two_people[0])).body.data  # (which changes the header it shares)
    kept = ~np.ma.getmaskarray(library)
    np.testing.assert_allclose(ours.data[kept], library.data[kept], atol=1e-4)


def test_a_late_first_frame_keeps_the_body(right_handed_path, make_pose):
    """A person who appears a frame late: each point's appearance is its first seen position."""
    def empty_first_frame(d, c):
        c[0] = 0
        return d, c

    x = preprocess(make_pose(right_handed_path, empty_first_frame), PoseConfig(anonymize="mean"))
    assert np.isnan(x[0]).all() and np.isfinite(x[1:, get_layout("reduce_holistic").index(BODY, "LEFT_SHOULDER")]).all()


def test_wrists_corrected_to_the_hand_model(right_handed_path):
    layout = get_layout("reduce_holistic")
    raw, corrected = (preprocess(right_handed_path, PoseConfig(correct_wrists=c)) for c in (False, True))
    body, hand = layout.index(BODY, "RIGHT_WRIST"), layout.hand_slices[RIGHT_HAND][0]
    seen = np.isfinite(raw[:, hand]).all(-1)
    assert seen.any() and not np.allclose(raw[seen, body], raw[seen, hand], atol=1e-3)
    np.testing.assert_allclose(corrected[seen, body], corrected[seen, hand], atol=1e-6)
    np.testing.assert_array_equal(corrected[~seen, body], raw[~seen, body])  # no hand: the body's own


def test_bad_appearance_and_inputs(tmp_path, right_handed_path):
    with pytest.raises(PoseInputError, match=r"pose.anonymize: cannot read the appearance file .*nothing.pose"):
        preprocess(right_handed_path, PoseConfig(anonymize=str(tmp_path / "nothing.pose")))
    (tmp_path / "junk.pose").write_bytes(b"not a pose")
    with pytest.raises(PoseInputError, match=r"pose.anonymize: .*junk.pose is not a readable .pose file"):
        preprocess(right_handed_path, PoseConfig(anonymize=str(tmp_path / "junk.pose")))
    hands = read_pose(right_handed_path).get_components([BODY, LEFT_HAND])
    with pytest.raises(PoseInputError, match="hands.pose: correct_wrists needs the body's and both hands' wrists"):
        preprocess(hands, PoseConfig(correct_wrists=True, require_hands=False), name="hands.pose")


def test_saved_model_keeps_its_given_appearance(tmp_path, two_people):
    """A model anonymising to a given appearance copies it beside its weights and still finds it when moved."""
    appearance = tmp_path / "someone.pose"
    shutil.copyfile(two_people[1], appearance)
    model = signclip.create_model("tiny", pose=PoseConfig(anonymize=str(appearance))).eval()
    expected = model.encode_pose(two_people[0])
    model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["pose"]["anonymize"] == APPEARANCE_FILE
    appearance.unlink()
    shutil.move(tmp_path / "m", tmp_path / "moved")
    np.testing.assert_allclose(signclip.load(tmp_path / "moved").encode_pose(two_people[0]), expected, atol=1e-6)


def test_onnx_export_keeps_its_given_appearance(tmp_path, two_people):
    """The torch-free runtime anonymises as the model does, from the export's own copy of the appearance."""
    from signclip.export.onnx import export_onnx
    from signclip.export.runtime import OnnxSignCLIP

    appearance = tmp_path / "someone.pose"
    shutil.copyfile(two_people[1], appearance)
    model = signclip.create_model("tiny", pose_layers=1, pose=PoseConfig(anonymize=str(appearance))).eval()
    export_onnx(model, tmp_path / "onnx")
    appearance.unlink()
    shutil.move(tmp_path / "onnx", tmp_path / "moved")
    onnx = OnnxSignCLIP(tmp_path / "moved")
    np.testing.assert_array_equal(onnx.preprocess_pose(two_people[0]), model.preprocess_pose(two_people[0]))


def test_pose_command_anonymises_pose_files(tmp_path, two_people):
    src = tmp_path / "poses"
    (src / "sub").mkdir(parents=True)
    for i, path in enumerate(two_people):
        shutil.copyfile(path, src / "sub" / f"p{i}.pose")
    r = CliRunner().invoke(app, ["pose", str(src), "-o", str(tmp_path / "anon"), "--anonymize", "-w", "1"])
    assert r.exit_code == 0, r.output
    assert "converted 2" in r.output
    written = [tmp_path / "anon" / "sub" / f"p{i}.pose" for i in range(2)]
    a, b = (proportions(preprocess(p, RAW)) for p in written)
    np.testing.assert_allclose(a, b, atol=1e-4)
    r = CliRunner().invoke(app, ["pose", str(src), "-o", str(tmp_path / "anon"), "--anonymize"])
    assert "skipped 2" in r.output  # resumable
    for args, message in ((["--appearance", str(tmp_path / "none.pose")], "--appearance: give --anonymize too"),
                          (["--anonymize", "--appearance", str(tmp_path / "none.pose")], "cannot read the appearance"),
                          (["--anonymize", "-o", str(src)], "the output would overwrite the input")):
        r = CliRunner().invoke(app, ["pose", str(src), *(["-o", str(tmp_path / "x")] if "-o" not in args else []),
                                     *args])
        assert r.exit_code == 2 and message in r.output, r.output
    (src / "junk.pose").write_bytes(b"no pose")  # one bad file: reported, the others written, exit status 1
    r = CliRunner().invoke(app, ["pose", str(src), "-o", str(tmp_path / "anon"), "--anonymize"])
    assert r.exit_code == 1 and "failed 1" in r.output and "FAILED" in r.output and "junk.pose" in r.output, r.output


@pytest.mark.slow  # MediaPipe on a real video
def test_a_real_signer_on_video_takes_the_mean_appearance(tmp_path, lexicon):
    """`signclip pose VIDEO --anonymize`: the person of the test video gets the lexicon's proportions (its
    fingerspellers were anonymised to the mean appearance when it was made)."""
    pytest.importorskip("mediapipe", reason="needs the video extra (mediapipe)")
    video = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "test_video.mp4"
    if not video.is_file():
        pytest.skip(f"test video not found at {video}")
    for flags in ([], ["--anonymize"]):
        r = CliRunner().invoke(app, ["pose", str(video), "-o", str(tmp_path / f"out{len(flags)}"), *flags])
        assert r.exit_code == 0, r.output
    raw, anonymous = (preprocess(tmp_path / f"out{i}" / "test_video.pose", RAW) for i in (0, 1))
    mean = proportions(preprocess(lexicon["path"].iloc[0], RAW))
    assert np.abs(proportions(raw) - mean).max() > 0.1
    np.testing.assert_allclose(proportions(anonymous), mean, atol=1e-3)


@pytest.fixture(scope="module")
def right_handed_path(lexicon_paths):
    """A real lexicon pose whose right hand is seen and left hand never."""
    layout = get_layout("reduce_holistic")
    return next(p for p in lexicon_paths if hands_present(preprocess(p, PoseConfig(mirror_left_handed=False)),
                                                           layout) == (False, True))
