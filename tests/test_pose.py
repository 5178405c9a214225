"""Pose reading and preprocessing on real lexicon poses and modified copies of them."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from pose_format import Pose
from pose_format.numpy import NumPyPoseBody

from signclip.config import AugmentConfig, PoseConfig
from signclip.errors import PoseInputError
from signclip.pose.augment import augment
from signclip.pose.io import crop_pose, read_pose
from signclip.pose.layout import BODY, LEFT_HAND, RIGHT_HAND, get_layout
from signclip.pose.preprocess import hands_present, mirror, preprocess, resample_frames, select_points


def header_slice(pose: Pose, component: str) -> slice:
    """Index range of one component in the pose header."""
    offset = 0
    for c in pose.header.components:
        if c.name == component:
            return slice(offset, offset + len(c.points))
        offset += len(c.points)
    raise KeyError(component)


@pytest.fixture(scope="module")
def right_handed(lexicon_paths):
    """A real lexicon pose whose left hand is never seen and right hand is."""
    layout = get_layout("reduce_holistic")
    for p in lexicon_paths:
        if hands_present(preprocess(p, PoseConfig(mirror_left_handed=False)), layout) == (False, True):
            return p
    pytest.fail("no right-handed pose among the fixture poses")


@pytest.mark.parametrize("layout, points", [("reduce_holistic", 178), ("contour_holistic", 203)])
@pytest.mark.parametrize("dims", [2, 3])
def test_preprocess_shapes(lexicon_paths, layout, points, dims):
    path = lexicon_paths[0]
    frames = read_pose(path).body.data.shape[0]
    x = preprocess(path, PoseConfig(layout=layout, dims=dims))
    assert x.shape == (frames, points, dims)
    assert x.dtype == np.float32
    assert len(get_layout(layout)) == points


def test_contour_layout_drops_legs(lexicon_paths):
    layout = get_layout("contour_holistic")
    x = preprocess(lexicon_paths[0], PoseConfig(layout="contour_holistic"))
    assert layout.missing_by_design, "the 33-point body must mark its leg points"
    assert np.isnan(x[:, layout.missing_by_design]).all()
    assert np.isfinite(x[:, layout.index(BODY, "NOSE")]).all()


@pytest.mark.parametrize("layout", ["reduce_holistic", "contour_holistic"])
def test_shoulder_normalisation(lexicon_paths, layout):
    lay = get_layout(layout)
    for path in lexicon_paths[:5]:
        x = preprocess(path, PoseConfig(layout=layout))
        left, right = x[:, lay.index(BODY, "LEFT_SHOULDER")], x[:, lay.index(BODY, "RIGHT_SHOULDER")]
        valid = np.isfinite(left).all(-1) & np.isfinite(right).all(-1)
        mid = ((left + right) / 2)[valid].mean(0)
        width = np.linalg.norm((left - right)[valid][:, :2], axis=-1).mean()
        np.testing.assert_allclose(mid, 0, atol=1e-5)
        assert width == pytest.approx(1.0, abs=1e-5)


def test_normalisation_is_scale_and_shift_invariant(lexicon_paths, make_pose):
    src = lexicon_paths[1]

    def move(d, c):
        d = d * 3.0
        d[..., 0] += 100.0
        d[..., 1] -= 40.0
        return d, c

    a = preprocess(src, PoseConfig())
    b = preprocess(make_pose(src, move), PoseConfig())
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_layout_mirror_is_an_involution():
    for name in ("reduce_holistic", "contour_holistic"):
        m = np.array(get_layout(name).mirror)
        assert sorted(m) == list(range(len(m)))
        np.testing.assert_array_equal(m[m], np.arange(len(m)))


def test_mirror_twice_is_identity(right_handed):
    layout = get_layout("reduce_holistic")
    x = preprocess(right_handed, PoseConfig())
    np.testing.assert_array_equal(mirror(mirror(x, layout), layout), x)


def test_left_handed_pose_is_mirrored(right_handed, make_pose):
    """Move the right hand's data into the left hand's slots (no right hand) and check the pose
    comes back right-handed: hands swapped and x negated."""
    pose = read_pose(right_handed)
    lh, rh = header_slice(pose, LEFT_HAND), header_slice(pose, RIGHT_HAND)

    def make_left_handed(d, c):
        d[:, :, lh], c[:, :, lh] = d[:, :, rh], c[:, :, rh]
        c[:, :, rh] = 0
        return d, c

    path = make_pose(right_handed, make_left_handed)
    layout = get_layout("reduce_holistic")
    raw = preprocess(path, PoseConfig(mirror_left_handed=False))
    assert hands_present(raw, layout) == (True, False)
    fixed = preprocess(path, PoseConfig())
    assert hands_present(fixed, layout) == (False, True)
    np.testing.assert_array_equal(fixed, mirror(raw, layout))
    left, right = layout.hand_slices[LEFT_HAND], layout.hand_slices[RIGHT_HAND]
    np.testing.assert_array_equal(fixed[:, right, 0], -raw[:, left, 0])
    np.testing.assert_array_equal(fixed[:, right, 1:], raw[:, left, 1:])
    # shoulders swap too
    ls, rs = layout.index(BODY, "LEFT_SHOULDER"), layout.index(BODY, "RIGHT_SHOULDER")
    np.testing.assert_array_equal(fixed[:, ls, 0], -raw[:, rs, 0])
    # a right-handed pose is left alone
    np.testing.assert_array_equal(preprocess(right_handed, PoseConfig()),
                                  preprocess(right_handed, PoseConfig(mirror_left_handed=False)))


def test_missing_points_become_nan_then_zero(right_handed, make_pose, tiny_model):
    layout = get_layout("reduce_holistic")
    pose = read_pose(right_handed)
    rh = header_slice(pose, RIGHT_HAND)
    elbow = header_slice(pose, BODY).start + 13  # LEFT_ELBOW

    def drop(d, c):
        c[1, :, rh] = 0  # right hand missing in frame 1 (confidence 0)
        d[2, :, elbow] = np.nan  # a NaN coordinate in frame 2
        return d, c

    x = preprocess(make_pose(right_handed, drop), PoseConfig())
    right = layout.hand_slices[RIGHT_HAND]
    assert np.isnan(x[1, right]).all()
    assert np.isfinite(x[0, right]).all()
    assert np.isnan(x[2, layout.index(BODY, "LEFT_ELBOW")]).all()
    feats = tiny_model.pose.standardize(torch.from_numpy(x.reshape(1, x.shape[0], -1)))
    assert torch.isfinite(feats).all()
    n = x.shape[1] * x.shape[2]
    missing = torch.from_numpy(np.isnan(x.reshape(1, x.shape[0], -1)))
    assert (feats[..., :n][missing] == 0).all()
    emb = tiny_model.encode_pose(x)
    assert np.isfinite(emb).all()


def test_negative_confidence_is_missing_unless_zero_only(right_handed, make_pose):
    """signclip's own rule drops points of confidence <= 0; the reference's (pose-format's) only those of 0."""
    layout = get_layout("reduce_holistic")
    pose = read_pose(right_handed)
    left, right = (header_slice(pose, BODY).start + i for i in (13, 14))  # the elbows

    def lower(d, c):
        c[3:, :, [left, right]] = -0.01  # MediaPipe's visibility of arms leaving the frame
        c[2, :, left] = 0
        return d, c

    path = make_pose(right_handed, lower)
    elbows = [layout.index(BODY, "LEFT_ELBOW"), layout.index(BODY, "RIGHT_ELBOW")]
    own = preprocess(path, PoseConfig())
    assert np.isnan(own[3:, elbows]).all() and np.isnan(own[2, elbows[0]]).all()
    assert np.isfinite(own[:2, elbows]).all()
    reference = preprocess(path, PoseConfig(missing_confidence="zero"))
    assert np.isnan(reference[2, elbows[0]]).all()
    np.testing.assert_array_equal(reference[3:, elbows], preprocess(right_handed, PoseConfig())[3:, elbows])
    with pytest.raises(ValueError, match="pose.missing_confidence: 'below'"):
        PoseConfig(missing_confidence="below")


def test_fps_resampling(lexicon_paths, make_pose):
    src = lexicon_paths[2]
    frames = read_pose(src).body.data.shape[0]
    x50 = preprocess(make_pose(src, fps=50.0), PoseConfig(fps=25.0))
    assert x50.shape[0] == round(frames / 2)
    x25 = preprocess(src, PoseConfig(fps=25.0))
    assert x25.shape[0] == frames
    assert preprocess(src, PoseConfig(fps=50.0)).shape[0] == 2 * frames


def test_resample_frames_is_linear():
    x = np.arange(5, dtype=np.float32).reshape(5, 1, 1)
    np.testing.assert_allclose(resample_frames(x, 9)[:, 0, 0], np.arange(9) / 2)
    np.testing.assert_allclose(resample_frames(x, 3)[:, 0, 0], [0, 2, 4])
    y = x.copy()
    y[2] = np.nan
    out = resample_frames(y, 9)[:, 0, 0]
    assert np.isnan(out[3:6]).all() and np.isfinite(out[[0, 1, 2, 6, 7, 8]]).all()


def test_long_pose_is_resampled_not_a_crash(lexicon_paths, tiny_model):
    """10,000 frames: uniformly resampled down to max_frames, and the model embeds it."""
    pose = read_pose(lexicon_paths[0])
    reps = -(-10_000 // pose.body.data.shape[0])
    data = np.ma.concatenate([pose.body.data] * reps)[:10_000]
    conf = np.concatenate([pose.body.confidence] * reps)[:10_000]
    long = Pose(pose.header, NumPyPoseBody(pose.body.fps, data, conf))
    cfg = tiny_model.cfg.pose
    x = preprocess(long, cfg)
    assert x.shape == (cfg.max_frames, 178, 3)
    emb = tiny_model.encode_pose(long)
    assert emb.shape == (tiny_model.cfg.embed_dim,) and np.isfinite(emb).all()
    # a long preprocessed array is resampled too
    assert tiny_model.preprocess_pose(np.zeros((1000, 178, 3), np.float32)).shape[0] == cfg.max_frames


def test_crop_start_end(lexicon_paths):
    pose = read_pose(lexicon_paths[0])  # 25 fps
    frames = pose.body.data.shape[0]
    assert crop_pose(pose, None, None) is pose
    assert crop_pose(pose, float("nan"), float("nan")) is pose
    cropped = crop_pose(pose, 200, 600)  # frames 5 .. 14
    assert cropped.body.data.shape[0] == 10
    np.testing.assert_array_equal(np.ma.getdata(cropped.body.data), np.ma.getdata(pose.body.data)[5:15])
    assert crop_pose(pose, 200, None).body.data.shape[0] == frames - 5
    assert crop_pose(pose, None, 400).body.data.shape[0] == 10
    with pytest.raises(PoseInputError, match="no frames"):
        crop_pose(pose, 100_000, 200_000, name="x.pose")


def test_select_points_names_non_holistic(lexicon_paths):
    pose = read_pose(lexicon_paths[0])
    hands_only = pose.get_components([LEFT_HAND, RIGHT_HAND])
    with pytest.raises(PoseInputError, match="^hands.pose: not a MediaPipe Holistic pose"):
        select_points(hands_only, get_layout("reduce_holistic"), "hands.pose")


def test_augment_shapes_and_determinism(lexicon_paths):
    layout = get_layout("reduce_holistic")
    x = preprocess(lexicon_paths[0], PoseConfig())
    cfg = AugmentConfig(flip_p=1.0)
    a = augment(x, layout, cfg, np.random.default_rng(0), 128)
    b = augment(x, layout, cfg, np.random.default_rng(0), 128)
    np.testing.assert_array_equal(a, b)
    assert a.shape[1:] == x.shape[1:] and 2 <= a.shape[0] <= 128
    assert a.dtype == np.float32
    off = AugmentConfig(flip_p=0, affine_sigma=0, speed_sigma=0, noise_sigma=0)
    np.testing.assert_array_equal(augment(x, layout, off, np.random.default_rng(0), 128), x)
    # the input is never modified in place
    before = x.copy()
    augment(x, layout, AugmentConfig(), np.random.default_rng(1), 128)
    np.testing.assert_array_equal(x, before)


def test_hand_drop_makes_one_hand_missing_for_a_stretch_of_frames(lexicon_paths):
    layout = get_layout("reduce_holistic")
    x = np.nan_to_num(preprocess(lexicon_paths[0], PoseConfig()))  # (T, P, D), every point seen
    hands = list(layout.hand_slices.values())
    others = [i for i in range(len(layout)) if i not in hands[0] + hands[1]]
    still = AugmentConfig(flip_p=0, affine_sigma=0, speed_sigma=0, noise_sigma=0, hand_drop_p=1.0)
    for seed in range(8):
        y = augment(x, layout, still, np.random.default_rng(seed), 128)
        newly = [np.flatnonzero(np.isnan(y[:, h]).all((1, 2)) & ~np.isnan(x[:, h]).all((1, 2))) for h in hands]
        lost = [(hand, f) for hand, f in zip(hands, newly) if f.size]
        assert len(lost) == 1  # one hand, over a stretch of frames
        hand, frames = lost[0]
        assert np.isnan(y[frames[0]:frames[-1] + 1, hand]).all()
        assert frames[-1] - frames[0] + 1 >= 0.25 * len(x) - 1
        np.testing.assert_array_equal(y[:, others], x[:, others])  # nothing else changes


def test_low_frame_rate_is_capped_before_resampling(lexicon_paths, make_pose):
    """1 fps to the model's 25 would be 25x the frames: one resampling straight to max_frames instead."""
    src = lexicon_paths[0]
    frames = read_pose(src).body.data.shape[0]
    cfg = PoseConfig(fps=25.0, max_frames=64)
    assert frames * 25 > 64
    x = preprocess(make_pose(src, fps=1.0), cfg)
    assert x.shape[0] == 64
    np.testing.assert_allclose(x, resample_frames(preprocess(src, PoseConfig(max_frames=10_000)), 64), atol=1e-6)


def test_a_long_pose_costs_memory_of_its_file_not_of_its_frames_times_the_layout(lexicon_paths):
    """Every frame of a long upload was expanded to the layout's 178 points before resampling: 7x the file at
    peak (a 36.8 MB, 100,000-frame upload raised the server by 0.5 GB). Only the frames resampling reads are
    expanded now, and the result is the same as resampling the whole pose."""
    import tracemalloc

    from serve_utils import long_pose

    data = long_pose(lexicon_paths[0], 10_000)  # body and hands only: 75 points a frame in the file
    cfg = PoseConfig(max_frames=64)
    tracemalloc.start()
    try:
        x = preprocess(data, cfg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert x.shape == (64, 178, 3)
    assert peak < 2.5 * len(data), (peak, len(data))
    whole = preprocess(data, PoseConfig(max_frames=10_000))
    np.testing.assert_allclose(x, resample_frames(whole, 64), atol=1e-6)
