"""Long poses: frame patches (`ModelConfig.pose_patch_frames`) shorten the sequence before the transformer.

A padded batch still gives the same embedding as each pose alone (the real-frame mask is made into a
real-token mask with the frames), `max_frames` lets long poses through, and models without patches keep
their weights' names (models saved before this option load as they did)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import signclip
from signclip.batching import pad_poses
from signclip.config import get_model_config
from signclip.models.pose_encoder import FramePatches, PoseEncoder


def long_pose(arrays: list[np.ndarray], frames: int) -> np.ndarray:
    """A (frames, P, D) pose: real lexicon poses one after the other, repeated."""
    joined = np.concatenate(arrays)
    return np.concatenate([joined] * (frames // len(joined) + 1))[:frames]


@pytest.fixture(scope="module", params=["tiny", "tiny-long"])
def patched(request):
    """The global tower (tiny) and the part-wise one (tiny-long) with patches of 4 frames, 1 layer, poses up to
    4,096 frames."""
    return signclip.create_model(request.param, pose_layers=1, pose_patch_frames=4, freeze_text=True,
                                 pose={"max_frames": 4096}).eval()


@pytest.fixture(scope="module")
def arrays(lexicon):
    model = signclip.create_model("tiny-long", pose_layers=1, freeze_text=True)
    return [model.preprocess_pose(p) for p in lexicon.sample(8, random_state=3)["path"]]


def test_patches_of_a_padded_batch_equal_those_alone():
    torch.manual_seed(0)
    patches = FramePatches(8, 4, groups=2).eval()
    h = torch.randn(3, 11, 8)  # (B, T, W)
    mask = torch.zeros(3, 11, dtype=torch.bool)
    for i, n in enumerate((11, 5, 1)):
        mask[i, :n] = True
    tokens, real = patches(h, mask)
    assert tokens.shape == (3, 3, 8)  # ceil(11 / 4) tokens
    assert real.tolist() == [[True] * 3, [True, True, False], [True, False, False]]
    for i, n in enumerate((11, 5, 1)):
        alone, _ = patches(h[i:i + 1, :n], mask[i:i + 1, :n])  # the last group is completed with zeros too
        torch.testing.assert_close(tokens[i:i + 1, : alone.shape[1]], alone)
    frames = patches.expand(tokens, 11)  # (B, T, W): token k for frames 4k .. 4k + 3
    assert frames.shape == (3, 11, 8) and torch.equal(frames[:, 4:8], tokens[:, 1:2].expand(3, 4, 8))


def test_batch_equals_alone(patched, arrays):
    """Poses of lengths that are and are not multiples of 4, among a long one, padded into one batch."""
    batch = arrays[:5] + [arrays[5][:4], arrays[6][:9], long_pose(arrays, 1001)]
    together = patched.encode_arrays(batch, batch_size=len(batch))
    alone = np.stack([patched.encode_arrays([a])[0] for a in batch])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_the_transformer_reads_one_token_per_patch(patched, arrays):
    x, mask = pad_poses([long_pose(arrays, 1001)])  # (1, 1001, F)
    seen = []
    layer = patched.pose.transformer.layers[0] if patched.cfg.pose_encoder == "global" else \
        patched.pose.manual.layers[0]
    handle = layer.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    try:
        with torch.no_grad():
            h = patched.pose.frame_features(x, mask)
    finally:
        handle.remove()
    assert seen == [(1, 251, patched.pose.pos_embedding.shape[-1])]  # ceil(1001 / 4) tokens
    assert h.shape == (1, 1001, patched.cfg.pose_width)  # features per frame, as without patches


def test_long_poses_are_not_resampled(arrays):
    """tiny-long takes poses up to 4,096 frames (25 fps: 2:44 min); its learned positions count tokens."""
    cfg = get_model_config("tiny-long")
    assert (cfg.pose_patch_frames, cfg.pose.max_frames, cfg.pose_encoder) == (8, 4096, "partwise")
    model = signclip.create_model("tiny-long", pose_layers=1, freeze_text=True).eval()
    assert model.pose.pos_embedding.shape == (2, 512, 128)  # per stream: 4096 / 8 tokens
    pose = long_pose(arrays, 3000)
    assert model.preprocess_pose(pose).shape[0] == 3000
    assert signclip.create_model("tiny-partwise", freeze_text=True).preprocess_pose(pose).shape[0] == 128
    z = model.encode_arrays([model.preprocess_pose(pose), long_pose(arrays, 4096)])
    assert np.isfinite(z).all() and np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)


def test_save_load_round_trip(patched, arrays, tmp_path):
    patched.save(tmp_path / "m")
    loaded = signclip.load(tmp_path / "m")
    assert loaded.cfg.pose_patch_frames == 4
    np.testing.assert_allclose(loaded.encode_arrays(arrays), patched.encode_arrays(arrays), atol=1e-6)


def test_without_patches_the_weights_are_those_of_before():
    """pose_patch_frames 1 (the default) adds no weights: models saved before the option load unchanged."""
    plain = signclip.create_model("tiny-partwise", freeze_text=True).pose
    assert plain.patches is None and not any("patches" in k for k in plain.state_dict())
    assert plain.pos_embedding.shape == (2, 128, 128)
    assert "patches.conv.weight" in signclip.create_model("tiny-long", freeze_text=True).pose.state_dict()


def test_bad_patch_settings_are_rejected():
    with pytest.raises(ValueError, match="pose_patch_frames: 0"):
        signclip.create_model("tiny", pose_patch_frames=0, freeze_text=True)
    cfg = get_model_config("reference", pose_patch_frames=4)
    with pytest.raises(ValueError, match="pose_patch_frames: only the 'global' and 'partwise'"):
        signclip.models.signclip.POSE_ENCODERS["reference"].from_config(cfg, None)
    assert issubclass(signclip.models.signclip.POSE_ENCODERS["partwise"], PoseEncoder)
