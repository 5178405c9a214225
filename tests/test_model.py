"""The model API: encode_pose / encode_text, padding invariance, normalisation, save/load."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from pose_format import Pose

import signclip
from signclip.errors import TextInputError
from signclip.pose.io import read_pose


def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def short_and_long(lexicon):
    """The shortest and the longest lexicon pose (6 and 258 frames) and a few in between."""
    paths = lexicon["path"].tolist()
    sizes = [os.path.getsize(p) for p in paths]  # file size grows with the number of frames
    order = np.argsort(sizes)
    return [paths[i] for i in (order[0], order[len(order) // 2], order[-1])]


def test_named_configs():
    assert {"tiny", "base", "base-12"} <= set(signclip.list_models())
    base = signclip.get_model_config("base")
    assert (base.pose_width, base.embed_dim, base.pose_layers, base.pose.max_frames) == (768, 768, 6, 256)
    assert base.pose.layout == "contour_holistic"
    assert signclip.get_model_config("base-12").pose_layers == 12
    assert signclip.get_model_config("tiny", pose_layers=1).pose_layers == 1
    with pytest.raises(ValueError, match="unknown model config"):
        signclip.get_model_config("huge")


def test_batch_equals_alone(tiny_model, lexicon, short_and_long):
    """Poses of very different lengths padded into one batch give the same embedding as alone."""
    paths = short_and_long + lexicon["path"].tolist()[:5]
    batch = tiny_model.encode_pose(paths, batch_size=len(paths))
    for p, b in zip(paths, batch):
        alone = tiny_model.encode_pose(p)
        assert cos(alone, b) >= 0.9999
    lengths = [tiny_model.preprocess_pose(p).shape[0] for p in short_and_long]
    assert max(lengths) >= 10 * min(lengths)


def test_batch_size_does_not_matter(tiny_model, lexicon_paths):
    a = tiny_model.encode_pose(lexicon_paths[:9], batch_size=4)
    b = tiny_model.encode_pose(lexicon_paths[:9], batch_size=9)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_pose_input_kinds_agree(tiny_model, lexicon_paths):
    path = lexicon_paths[3]
    ref = tiny_model.encode_pose(path)
    for source in (open(path, "rb").read(), read_pose(path), tiny_model.preprocess_pose(path)):
        np.testing.assert_allclose(tiny_model.encode_pose(source), ref, atol=1e-6)
    assert isinstance(read_pose(path), Pose)


def test_outputs_are_l2_normalised(tiny_model, lexicon_paths):
    poses = tiny_model.encode_pose(lexicon_paths[:4])
    texts = tiny_model.encode_text(["house", "A", "a longer sentence with words"], "en", "ase")
    assert poses.shape == (4, tiny_model.cfg.embed_dim) and poses.dtype == np.float32
    assert texts.shape == (3, tiny_model.cfg.embed_dim) and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(poses, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    raw = tiny_model.encode_pose(lexicon_paths[:2], normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1, atol=1e-3)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), poses[:2], atol=1e-5)
    single = tiny_model.encode_text("house")
    assert single.shape == (tiny_model.cfg.embed_dim,)


def test_encode_text_never_runs_the_pose_tower(tiny_model):
    def fail(*_):
        raise AssertionError("encode_text ran the pose tower")

    handles = [tiny_model.pose.register_forward_pre_hook(fail),
               tiny_model.pose.frame_mlp.register_forward_pre_hook(fail)]
    try:
        emb = tiny_model.encode_text(["house", "tree"], "en", "ase")
    finally:
        for h in handles:
            h.remove()
    assert emb.shape == (2, tiny_model.cfg.embed_dim)


def test_text_batch_equals_alone(tiny_model):
    texts = ["A", "a much longer query about a house with a red roof and a garden"]
    batch = tiny_model.encode_text(texts, "en", "ase")
    for t, b in zip(texts, batch):
        assert cos(tiny_model.encode_text(t, "en", "ase"), b) >= 0.9999


def test_prompts_change_the_text_embedding(tiny_model):
    a = tiny_model.encode_text("house", "en", "ase")
    b = tiny_model.encode_text("house", "en", "gsg")
    c = tiny_model.encode_text("<en> <ase> house")
    assert cos(a, b) < 0.99999
    np.testing.assert_allclose(a, c, atol=1e-6)


def test_encoding_is_deterministic_in_train_mode(tiny_model, lexicon_paths):
    tiny_model.train()
    try:
        a = tiny_model.encode_pose(lexicon_paths[:3])
        b = tiny_model.encode_pose(lexicon_paths[:3])
        t1, t2 = tiny_model.encode_text(["A", "B"]), tiny_model.encode_text(["A", "B"])
        assert tiny_model.training
    finally:
        tiny_model.eval()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(t1, t2)


def test_save_load_round_trip(trained_model_dir, tmp_path, lexicon_paths):
    model = signclip.load(trained_model_dir)
    assert len(model.cfg.signed_languages) > 5 and "en" in model.cfg.spoken_languages
    assert not torch.all(model.pose.feature_mean == 0), "training statistics must be stored"
    assert not torch.all(model.pose.feature_std == 1)
    saved = model.save(tmp_path / "copy")
    for name in ("config.json", "model.safetensors", "tokenizer", "text_config"):
        assert (saved / name).exists()
    again = signclip.load(saved)
    assert again.cfg == model.cfg
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    lang = model.cfg.signed_languages[0]
    np.testing.assert_array_equal(model.encode_pose(lexicon_paths[:5]), again.encode_pose(lexicon_paths[:5]))
    np.testing.assert_array_equal(model.encode_text(["A", "B"], "en", lang), again.encode_text(["A", "B"], "en", lang))


def test_fresh_model_save_load(tiny_model, tmp_path, lexicon_paths):
    tiny_model.save(tmp_path / "fresh")
    again = signclip.load(tmp_path / "fresh")
    np.testing.assert_array_equal(tiny_model.encode_pose(lexicon_paths[:2]), again.encode_pose(lexicon_paths[:2]))
    np.testing.assert_array_equal(tiny_model.encode_text(["x"]), again.encode_text(["x"]))


def test_load_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved signclip model"):
        signclip.load(tmp_path)


def test_trained_model_rejects_unknown_language(trained_model_dir):
    model = signclip.load(trained_model_dir)
    with pytest.raises(TextInputError, match="^signed_language: unknown language code 'xyz'"):
        model.encode_text("A", "en", "xyz")
