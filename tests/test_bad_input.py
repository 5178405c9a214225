"""Bad input: each case raises a SignCLIPInputError subclass whose message starts with the file or field."""
from __future__ import annotations

import numpy as np
import pytest

from signclip.errors import PoseInputError, SignCLIPInputError, TextInputError
from signclip.pose.io import read_pose
from signclip.pose.layout import LEFT_HAND, RIGHT_HAND


def expect(exc_type, message_start, fn, *args, **kwargs):
    with pytest.raises(exc_type) as e:
        fn(*args, **kwargs)
    assert isinstance(e.value, SignCLIPInputError)
    assert str(e.value).startswith(message_start), str(e.value)
    return str(e.value)


def test_corrupt_bytes(tiny_model, lexicon_paths, tmp_path):
    good = open(lexicon_paths[0], "rb").read()
    bad = tmp_path / "corrupt.pose"
    bad.write_bytes(good[: len(good) // 2])
    msg = expect(PoseInputError, str(bad), tiny_model.encode_pose, str(bad))
    assert "not a readable .pose file" in msg
    garbage = tmp_path / "garbage.pose"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    expect(PoseInputError, str(garbage), tiny_model.encode_pose, [lexicon_paths[0], str(garbage)])
    expect(PoseInputError, "<300 bytes>", tiny_model.encode_pose, good[:300])


def test_empty_file(tiny_model, tmp_path):
    empty = tmp_path / "empty.pose"
    empty.write_bytes(b"")
    assert "empty file" in expect(PoseInputError, str(empty), tiny_model.encode_pose, str(empty))
    expect(PoseInputError, "<0 bytes>", tiny_model.encode_pose, b"")


def test_missing_file(tiny_model, tmp_path):
    expect(PoseInputError, str(tmp_path / "nope.pose"), tiny_model.encode_pose, str(tmp_path / "nope.pose"))


def test_zero_frame_pose(tiny_model, lexicon_paths, make_pose):
    path = make_pose(lexicon_paths[0], lambda d, c: (d[:0], c[:0]), name="zero.pose")
    assert "zero frames" in expect(PoseInputError, path, tiny_model.encode_pose, path)


def _hand_ranges(path):
    pose = read_pose(path)
    out, offset = [], 0
    for comp in pose.header.components:
        if comp.name in (LEFT_HAND, RIGHT_HAND):
            out.append(slice(offset, offset + len(comp.points)))
        offset += len(comp.points)
    return out


def test_pose_with_no_hands(tiny_model, lexicon_paths, make_pose):
    hands = _hand_ranges(lexicon_paths[0])

    def drop_hands(d, c):
        for s in hands:
            c[:, :, s] = 0
        return d, c

    path = make_pose(lexicon_paths[0], drop_hands, name="nohands.pose")
    assert "no hand" in expect(PoseInputError, path, tiny_model.encode_pose, path)


def test_all_nan_coordinates(tiny_model, lexicon_paths, make_pose):
    path = make_pose(lexicon_paths[0], lambda d, c: (np.full_like(d, np.nan), c), name="nan.pose")
    assert "NaN" in expect(PoseInputError, path, tiny_model.encode_pose, path)


def test_all_nan_array(tiny_model):
    x = np.full((10, 178, 3), np.nan, np.float32)
    expect(PoseInputError, "array", tiny_model.encode_pose, x)


def test_infinite_coordinates_in_array_are_missing_not_nan_embeddings(tiny_model, lexicon_paths):
    x = tiny_model.preprocess_pose(lexicon_paths[0]).copy()
    x[0, :5] = np.inf
    emb = tiny_model.encode_pose(x)
    assert np.isfinite(emb).all()
    y = x.copy()
    y[0, :5] = np.nan
    np.testing.assert_allclose(emb, tiny_model.encode_pose(y), atol=1e-6)


@pytest.mark.parametrize("shape", [(10, 178), (10, 203, 3), (10, 178, 2), (0, 178, 3)])
def test_wrong_array_shape(tiny_model, shape):
    msg = expect(PoseInputError, "array", tiny_model.encode_pose, np.zeros(shape, np.float32))
    assert str(shape) in msg


def test_not_a_holistic_pose(tiny_model, lexicon_paths):
    pose = read_pose(lexicon_paths[0]).get_components([LEFT_HAND, RIGHT_HAND])
    expect(PoseInputError, "<Pose>", tiny_model.encode_pose, pose)


def test_unknown_language_code(trained_model_dir):
    import signclip

    model = signclip.load(trained_model_dir)
    expect(TextInputError, "signed_language", model.encode_text, "A", "en", "xx-unknown")
    expect(TextInputError, "spoken_language", model.encode_text, "A", "qq", model.cfg.signed_languages[0])


@pytest.mark.parametrize("texts", ["", "   ", ["A", ""], []])
def test_empty_text(tiny_model, texts):
    expect(TextInputError, "text", tiny_model.encode_text, texts)


@pytest.mark.parametrize("fps", [0.001, 0.0, -25.0, float("nan"), float("inf"), 5000.0])
def test_implausible_frame_rate_in_the_header(tiny_model, lexicon_paths, make_pose, fps):
    """A header claiming fps = 0.001 once made the server resample a 258-frame pose to 6.5 M frames."""
    path = make_pose(lexicon_paths[0], fps=fps)
    assert "frame rate" in expect(PoseInputError, path, tiny_model.encode_pose, path)


def test_too_many_frames(tiny_model, lexicon_paths, monkeypatch):
    import signclip.pose.io

    monkeypatch.setattr(signclip.pose.io, "MAX_FRAMES", 20)  # instead of writing a 100,000-frame file
    assert "too large" in expect(PoseInputError, lexicon_paths[0], tiny_model.encode_pose, lexicon_paths[0])


def test_absurd_coordinates(tiny_model, lexicon_paths, make_pose):
    """Keypoints of 1e20 (shoulder widths) once reached the model and came back as a 500."""
    x = tiny_model.preprocess_pose(lexicon_paths[0]).copy()
    x[0, -1] = 1e20
    assert "shoulder widths" in expect(PoseInputError, "keypoints", tiny_model.preprocess_pose, x, "keypoints")

    from signclip.pose.layout import get_layout
    from signclip.pose.preprocess import header_indices

    wrist = header_indices(read_pose(lexicon_paths[0]), get_layout("reduce_holistic"))[-21]  # right wrist

    def far_point(data, conf):
        data[:, :, wrist] = 1e20
        conf[:, :, wrist] = 1.0
        return data, conf

    path = make_pose(lexicon_paths[0], far_point)
    assert "shoulder widths" in expect(PoseInputError, path, tiny_model.encode_pose, path)


@pytest.mark.parametrize("field", ["text", "spoken_language"])
def test_text_that_is_not_valid_unicode(tiny_model, field):
    """A lone surrogate ("\\ud800", valid in JSON) once reached the tokenizer and came back as a 500."""
    kwargs = {"texts": ["house"], "spoken_language": "en", "signed_language": "ase", field: "\ud800"}
    if field == "text":
        kwargs["texts"] = ["\ud800"]
        del kwargs["text"]
    assert "not valid Unicode" in expect(TextInputError, field, tiny_model.encode_text, **kwargs)


def test_skip_unusable_poses(tiny_model, lexicon_paths, tmp_path):
    bad = tmp_path / "bad.pose"
    bad.write_bytes(b"not a pose")
    usable = tiny_model.encode_usable_poses([lexicon_paths[0], str(bad), lexicon_paths[1]])
    assert usable.embeddings.shape == (2, tiny_model.cfg.embed_dim) and usable.kept == [0, 2]
    assert list(usable.skipped) == [1] and str(bad) in usable.skipped[1]
    np.testing.assert_allclose(usable.embeddings, tiny_model.encode_pose(lexicon_paths[:2]), atol=1e-6)
    with pytest.raises(PoseInputError, match="bad.pose"):  # encode_pose returns an array or raises
        tiny_model.encode_pose([lexicon_paths[0], str(bad)])


@pytest.mark.parametrize("scale", [1e20, 1e-20])
def test_a_pose_at_any_scale_is_the_same_pose(tiny_model, lexicon_paths, make_pose, scale):
    """A pose scaled by 1e20 was refused with "shoulder width is zero": its width overflowed float32."""
    path = make_pose(lexicon_paths[0], lambda data, conf: (data * np.float32(scale), conf))
    np.testing.assert_allclose(tiny_model.preprocess_pose(path), tiny_model.preprocess_pose(lexicon_paths[0]),
                               atol=1e-5)


def test_shoulders_at_one_point(tiny_model, lexicon_paths, make_pose):
    from signclip.pose.preprocess import SHOULDERS, header_indices

    left, right = header_indices(read_pose(lexicon_paths[0]), SHOULDERS)

    def same_shoulders(data, conf):
        data[:, :, right] = data[:, :, left]
        return data, conf

    path = make_pose(lexicon_paths[0], same_shoulders)
    assert "the shoulders coincide (0 apart" in expect(PoseInputError, path, tiny_model.preprocess_pose, path)
