"""Encoder variants: part-wise pose tower (+ hand-skeleton GCN), model configs, save/load,
and the text-side options (frozen backbone, local-directory text model, prompt template)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import signclip
from signclip.batching import pad_poses
from signclip.config import TrainConfig, get_model_config, list_model_configs
from signclip.models.graph import two_hands_adjacency
from signclip.models.partwise import PartwisePoseEncoder
from signclip.training.objectives import Objective


@pytest.fixture(scope="module")
def gcn_model():
    """tiny-partwise with the hand GCN, 1 layer per stream, frozen text backbone (fast backward)."""
    return signclip.create_model("tiny-partwise", pose_layers=1, graph_conv=True, freeze_text=True).eval()


@pytest.fixture(scope="module")
def poses(gcn_model, lexicon):
    rows = lexicon.sample(6, random_state=5)
    return rows, [gcn_model.preprocess_pose(p) for p in rows["path"]]


def test_partwise_configs_are_named():
    assert {"tiny-partwise", "base-partwise"} <= set(list_model_configs())
    assert get_model_config("tiny-partwise").pose_encoder == "partwise"
    assert get_model_config("base-partwise").graph_conv is True


@pytest.mark.parametrize("graph_conv", [False, True])
def test_partwise_shapes_and_streams(graph_conv, lexicon):
    model = signclip.create_model("tiny-partwise", pose_layers=1, graph_conv=graph_conv, freeze_text=True).eval()
    enc = model.pose
    assert isinstance(enc, PartwisePoseEncoder)
    n_feat = enc.feature_mean.numel()  # 178 * 3 keypoints + 42 * 3 hand shapes
    assert n_feat == 178 * 3 + 42 * 3
    manual, non_manual = set(enc.manual_cols.tolist()), set(enc.non_manual_cols.tolist())
    assert not manual & non_manual and manual | non_manual == set(range(n_feat))  # a partition
    assert len(manual) == 42 * 3 * 2 and enc.node_cols.shape == (42, 6)
    assert enc.non_manual_embed.sizes == [8 * 3, 128 * 3]  # body and face embedded separately
    arrays = [model.preprocess_pose(p) for p in lexicon["path"][:3]]
    x, mask = pad_poses(arrays)
    with torch.no_grad():
        assert enc.frame_features(x, mask).shape == (3, x.shape[1], 256)  # (B, T, W)
    assert model.encode_pose(arrays).shape == (3, 256)


def test_split_non_manual_keeps_the_body_share():
    """With split_non_manual the 24 body columns own half of the non-manual frame embedding: changing only
    the body moves that half and leaves the face's half; without it (models saved before the option) one
    layer reads body and face together."""
    enc = signclip.create_model("tiny-partwise", pose_layers=1, freeze_text=True).pose.eval()
    z = torch.randn(2, 5, 408)  # (B, T, body 24 + face 384) standardised non-manual features
    moved = z.clone()
    moved[..., :24] += 3.0
    with torch.no_grad():
        a, b = enc.non_manual_embed(z), enc.non_manual_embed(moved)  # (B, T, 128)
    assert not torch.allclose(a[..., :64], b[..., :64]) and torch.equal(a[..., 64:], b[..., 64:])
    old = signclip.create_model("tiny-partwise", pose_layers=1, freeze_text=True, split_non_manual=False).pose
    assert isinstance(old.non_manual_embed[0], torch.nn.Linear) and old.non_manual_embed[0].in_features == 408
    with pytest.raises(ValueError, match="split_non_manual"):
        signclip.create_model("tiny", split_non_manual=True)


def test_hand_adjacency_is_symmetric_normalised():
    a = two_hands_adjacency()
    assert a.shape == (42, 42) and torch.allclose(a, a.T)
    assert a[:21, 21:].abs().sum() == 0  # the two hands are not connected
    assert torch.linalg.eigvalsh(a).max() == pytest.approx(1.0, abs=1e-5)


def test_partwise_padding_invariance(gcn_model, poses):
    _, arrays = poses
    batched = gcn_model.encode_pose(arrays)
    alone = np.stack([gcn_model.encode_pose(a) for a in arrays])
    np.testing.assert_allclose(batched, alone, atol=1e-5)


@pytest.mark.slow  # trains
def test_partwise_loss_decreases(gcn_model, poses):
    rows, arrays = poses
    x, mask = pad_poses(arrays)
    tok = gcn_model.tokenize(gcn_model.prompts(rows["text"].tolist(), rows["spoken_language"].tolist(),
                                               rows["signed_language"].tolist()))
    model = signclip.create_model("tiny-partwise", pose_layers=1, graph_conv=True, freeze_text=True)
    objective = Objective(model, TrainConfig(mpm_weight=1.0))
    params = [p for p in objective.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)
    backbone = {k: v.clone() for k, v in model.text.backbone.state_dict().items()}
    losses = []
    for _ in range(8):
        torch.manual_seed(0)
        loss, _ = objective(x, mask, tok, torch.arange(len(arrays)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    # frozen text: the backbone never changes, its projection does train
    assert all(torch.equal(v, model.text.backbone.state_dict()[k]) for k, v in backbone.items())
    assert not any(p.requires_grad for p in model.text.backbone.parameters())
    assert model.text.proj.weight.requires_grad


def test_partwise_save_load_round_trip(gcn_model, poses, tmp_path):
    _, arrays = poses
    n = gcn_model.pose.feature_mean.numel()
    gcn_model.fit_preprocessing(statistics=(np.full(n, 0.1, np.float32), np.full(n, 2.0, np.float32)))
    gcn_model.save(tmp_path / "m")
    loaded = signclip.load(tmp_path / "m")
    assert loaded.cfg.pose_encoder == "partwise" and loaded.cfg.graph_conv and loaded.cfg.freeze_text
    np.testing.assert_allclose(loaded.encode_pose(arrays), gcn_model.encode_pose(arrays), atol=1e-5)
    # weights that do not match the config are an error naming the missing ones
    weights = load_file(str(tmp_path / "m" / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if not k.startswith("pose.fuse.")},
              str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(RuntimeError, match="pose.fuse"):
        signclip.load(tmp_path / "m")


def test_unknown_encoder_and_graph_conv_on_global_are_rejected():
    with pytest.raises(ValueError, match="pose_encoder"):
        signclip.create_model("tiny", pose_encoder="nope")
    with pytest.raises(ValueError, match="graph_conv"):
        signclip.create_model("tiny", graph_conv=True)


def test_local_text_model_directory_and_prompt_template(tmp_path, tiny_model):
    """``text_model`` may be a local directory (backbone + tokenizer); the prompt template is saved."""
    local = tmp_path / "minilm"
    tiny_model.text.backbone.save_pretrained(str(local))
    tiny_model.tokenizer.save_pretrained(str(local))
    model = signclip.create_model("tiny", text_model=str(local), prompt_template="{text} ({spoken}/{signed})",
                                  freeze_text=True).eval()
    tok = model.tokenize(["hello world"])
    with torch.no_grad():  # same pretrained weights as the default text model
        ours = model.text.token_features(tok["input_ids"], tok["attention_mask"])
        ref = tiny_model.text.token_features(tok["input_ids"], tok["attention_mask"])
    torch.testing.assert_close(ours, ref)
    assert model.prompts(["house"], "en", "ase") == ["house (en/ase)"]
    model.save(tmp_path / "saved")
    loaded = signclip.load(tmp_path / "saved")
    assert loaded.prompts(["house"], "en", "ase") == ["house (en/ase)"]
    np.testing.assert_allclose(loaded.encode_text("house", "en", "ase"), model.encode_text("house", "en", "ase"),
                               atol=1e-5)
