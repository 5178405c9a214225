"""Converting reference SignCLIP checkpoints (fairseq MMPT, Jiang et al. 2024): `signclip convert-reference`.

The checkpoints here are written in the reference's on-disk format with small random weights; every expected
embedding comes from the reference's inference path in ``reference_utils`` (written from its modules and
equations, on features made with pose-format as the reference demos make them), never from signclip's model.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from transformers import BertTokenizer
from typer.testing import CliRunner

import signclip
from signclip.cli import app
from signclip.errors import CheckpointError
from signclip.eval.model_card import model_card
from signclip.models.convert import load_reference_weights, reference_config, reference_model
from signclip.pose.io import read_pose
from signclip.pose.layout import get_layout

from reference_utils import (
    HEADS,
    HIDDEN,
    MAX_VIDEO_LEN,
    WORDS,
    cos_rows,
    fairseq_checkpoint,
    random_weights,
    reference_features_e32,
    reference_features_e72,
    reference_pose_embedding,
    reference_shapes,
    reference_text_embedding,
    sized_tokenizer,
    vocabulary,
    write_tokenizer,
)

PROMPTS = ["A", "house", "how are you?", "", "word " * 80]  # with "<en> <ase> "; the last one is truncated


# ---- fixtures -----------------------------------------------------------------------------------------------
NEGATIVE_CONFIDENCE = "fs-stsc004c81c6a4651fc5cc69151f3c30576.pose"  # gss: from frame 11, left-arm points below 0


@pytest.fixture(scope="module")
def pose_paths(lexicon):
    """Eight lexicon poses of different sign languages and lengths (6 to 31 frames): most without a left hand,
    two missing the right hand in some frames; and one of 105 frames whose left-arm points have slightly
    negative confidence (MediaPipe's visibility as the arm leaves the frame), which the reference keeps."""
    rows = lexicon.drop_duplicates("signed_language").iloc[:8]
    negative = lexicon[lexicon["path"].str.endswith(NEGATIVE_CONFIDENCE)]
    assert len(negative) == 1
    return rows["path"].tolist() + negative["path"].tolist()


@pytest.fixture(scope="module")
def e72(tmp_path_factory):
    """A small E7.2-style checkpoint (609 features), its tokenizers and the converted model directory."""
    tmp = tmp_path_factory.mktemp("e72")
    hf_tok, slow_tok = write_tokenizer(tmp / "tokenizer", lowercase=False)
    weights = random_weights(reference_shapes(609, len(WORDS), 2, 2), seed=0)
    torch.save(fairseq_checkpoint(weights), tmp / "checkpoint_best.pt")
    r = CliRunner().invoke(app, ["convert-reference", str(tmp / "checkpoint_best.pt"), "-o", str(tmp / "model"),
                                 "--tokenizer", hf_tok, "--variant", "reference"])
    assert r.exit_code == 0, r.output
    return {"dir": tmp / "model", "weights": weights, "slow": slow_tok, "hf": hf_tok,
            "ckpt": tmp / "checkpoint_best.pt"}


@pytest.fixture(scope="module")
def e72_model(e72):
    return signclip.load(e72["dir"])


# ---- parity with the reference -------------------------------------------------------------------------------
def test_converted_pose_embeddings_match_the_reference(e72, e72_model, pose_paths):
    sd, slow = e72["weights"], e72["slow"]
    expected = torch.stack([reference_pose_embedding(sd, reference_features_e72(p), slow.cls_token_id,
                                                     slow.sep_token_id) for p in pose_paths]).numpy()
    ours = e72_model.encode_pose(pose_paths, batch_size=len(pose_paths), normalize=False)  # one padded batch
    assert cos_rows(ours, expected).min() >= 0.9999
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    unit = e72_model.encode_pose(pose_paths)  # the default: L2-normalised, same direction
    np.testing.assert_allclose(unit, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-4)
    # the features: signclip's preprocessing (NaN = missing) -> the reference's (missing and legs 0); the last
    # pose's negative confidences are kept as the reference keeps them
    assert (read_pose(pose_paths[-1]).body.confidence[11:, 0, :33] < 0).any()
    for p in pose_paths[:3] + pose_paths[-1:]:
        x = torch.from_numpy(e72_model.preprocess_pose(p).reshape(-1, 609))
        np.testing.assert_allclose(e72_model.pose.standardize(x[None])[0].numpy(), reference_features_e72(p).numpy(),
                                   atol=1e-5)


def test_converted_text_embeddings_match_the_reference(e72, e72_model):
    sd, slow = e72["weights"], e72["slow"]
    prompts = e72_model.prompts(PROMPTS, "en", "ase") + ["house", "Fingerspell the letter A in German Sign Language."]
    expected = torch.stack([reference_text_embedding(sd, slow, p, max_len=64) for p in prompts]).numpy()
    ours = e72_model.encode_text(prompts, normalize=False)
    assert cos_rows(ours, expected).min() >= 0.9999
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert len(e72_model.tokenize(prompts[-3:-2])["input_ids"][0]) == 63  # 61 word pieces + [CLS] + [SEP]


def test_batch_padding_does_not_change_an_embedding(e72_model, pose_paths):
    """The reference's service pads a batch with zero frames it attends to; here a pose in a batch is the pose."""
    batch = e72_model.encode_pose(pose_paths, batch_size=len(pose_paths), normalize=False)
    for p, b in zip(pose_paths[:4], batch):
        assert cos_rows(e72_model.encode_pose(p, normalize=False), b) >= 0.9999


def test_converted_model_directory(e72, e72_model):
    files = {p.name for p in e72["dir"].iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer", "text_config"} <= files
    cfg = json.loads((e72["dir"] / "config.json").read_text())
    assert (cfg["pose_encoder"], cfg["max_video_len"], cfg["text_max_tokens"]) == ("reference", 256, 63)
    pose = cfg["pose"]
    assert (pose["fps"], pose["shoulder_width"], pose["mirror_left_handed"]) == (None, "xyz", False)
    assert (cfg["embed_dim"], cfg["pose_layers"], cfg["pose_heads"]) == (HIDDEN, 2, HEADS)
    card = model_card(e72["dir"], "org/signclip-e72")  # the Hub model card describes it
    assert "frames as stored" in card and "BERT over [CLS] frames [SEP]" in card
    # only the [CLS] / [SEP] rows of the video tower's vocabulary are kept
    cls, sep = e72["slow"].cls_token_id, e72["slow"].sep_token_id
    np.testing.assert_array_equal(e72_model.pose.bert.embeddings.word_embeddings.weight.detach().numpy(),
                                  e72["weights"]["video_encoder.bert.embeddings.word_embeddings.weight"][[cls, sep]])


def test_long_poses_are_resampled_not_a_crash(e72_model, pose_paths):
    """Over max_video_len frames the reference asserts; signclip resamples to max_video_len (documented)."""
    x = e72_model.preprocess_pose(pose_paths[0])
    long = np.concatenate([x] * (300 // len(x) + 1))
    assert e72_model.preprocess_pose(long).shape[0] == MAX_VIDEO_LEN
    assert np.isfinite(e72_model.encode_pose(long)).all()


def test_python_api_and_detection(e72, tmp_path):
    """``signclip.convert_reference`` with a tokenizer object, a bare ``{"state_dict"}`` file, no mmmodel. prefix."""
    bare = {k.removeprefix("mmmodel."): v for k, v in torch.load(e72["ckpt"], weights_only=False)["model"].items()}
    torch.save({"state_dict": bare}, tmp_path / "bare.pt")
    tok = signclip.load(e72["dir"]).tokenizer
    out = signclip.convert_reference(tmp_path / "bare.pt", tmp_path / "m", tokenizer=tok, variant="reference")
    a, b = signclip.load(out), signclip.load(e72["dir"])
    np.testing.assert_allclose(a.encode_text(["house"]), b.encode_text(["house"]), atol=1e-6)
    with pytest.raises(CheckpointError, match=r"unknown variant: 609 pose features per frame, 2 pose layers"):
        signclip.convert_reference(tmp_path / "bare.pt", tmp_path / "m2", tokenizer=tok)


# ---- the released sizes (shapes only, no weights allocated) ------------------------------------------------
@pytest.mark.parametrize("variant, feat, vocab, video_layers, total", [
    ("reference", 609, 28996, 12, 217_681_152), ("reference-hand-dominant", 63, 30522, 6, 177_078_528)])
def test_released_sizes(variant, feat, vocab, video_layers, total, tmp_path):
    shapes = reference_shapes(feat, vocab, video_layers, 12, hidden=768, intermediate=3072)
    assert sum(math.prod(s) for s in shapes.values()) == total  # the paper's 217M for E7.2
    state = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    cfg = reference_config(state, tmp_path / "ckpt.pt")
    assert (cfg.name, cfg.embed_dim, cfg.pose_layers, cfg.pose_heads, int(cfg.pose_width * cfg.pose_mlp_ratio)) == (
        variant, 768, video_layers, 12, 3072)
    assert cfg.text_max_tokens == (63 if variant == "reference" else 95)
    # the whole conversion on the meta device, with a synthetic tokenizer of the right size
    tok = sized_tokenizer(tmp_path / "vocab", vocab)
    with torch.device("meta"):
        model = reference_model(state, tmp_path / "ckpt.pt", tokenizer=tok)
    dropped = (vocab - 2) * 768 + 768 * 768 + 768  # the video tower's unused vocabulary rows and pooler
    assert sum(p.numel() for p in model.parameters()) == total - dropped + 1  # + logit_scale


# ---- the hand-dominant variant (E3.2) ------------------------------------------------------------------------
def test_hand_dominant_variant(tmp_path, lexicon):
    """63 right-hand values normalised by the full body's shoulders, uncased text, fp16 tensors on disk, the
    legacy ``args`` Namespace; max_video_len (the [SEP] position) 256 as demo_finger.py or 128 as its test yaml."""
    hf_tok, slow = write_tokenizer(tmp_path / "tokenizer", lowercase=True)
    weights = random_weights(reference_shapes(63, len(vocabulary(lowercase=True)), 2, 2), seed=1)
    ckpt = fairseq_checkpoint({k: v.half() if v.is_floating_point() else v for k, v in weights.items()}, True)
    torch.save(ckpt, tmp_path / "e32.pt")
    paths = lexicon[lexicon["signed_language"] == "gsg"]["path"].tolist()[:4] or lexicon["path"].tolist()[:4]
    prompts = ["Fingerspell the letter A in German Sign Language.", "Fingerspell the letter a in German Sign Language."]
    for max_video_len in (256, 128):
        out = signclip.convert_reference(tmp_path / "e32.pt", tmp_path / f"m{max_video_len}", tokenizer=hf_tok,
                                         variant="reference-hand-dominant", max_video_len=max_video_len)
        model = signclip.load(out)
        assert (model.cfg.pose.layout, model.cfg.max_video_len, model.cfg.text_max_tokens) == (
            "right_hand", max_video_len, 95)
        assert sorted({i for edge in get_layout("right_hand").skeleton_edges for i in edge}) == list(range(21))
        expected = torch.stack([reference_pose_embedding(weights, reference_features_e32(p), slow.cls_token_id,
                                                         slow.sep_token_id, max_video_len) for p in paths]).numpy()
        ours = model.encode_pose(paths, normalize=False)
        assert cos_rows(ours, expected).min() >= 0.9999
        np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
        texts = model.encode_text(prompts, normalize=False)
        assert cos_rows(texts, np.stack([reference_text_embedding(weights, slow, p, 96).numpy()
                                         for p in prompts])).min() >= 0.9999
        np.testing.assert_allclose(texts[0], texts[1], atol=1e-6)  # uncased
    assert cos_rows(signclip.load(tmp_path / "m128").encode_pose(paths[:1]),
                    signclip.load(tmp_path / "m256").encode_pose(paths[:1])) < 0.99999  # [SEP] at 129, not 257


# ---- bad checkpoints -----------------------------------------------------------------------------------------
def expect_error(match: str, checkpoint, out, **kwargs) -> str:
    with pytest.raises(CheckpointError, match=match) as e:
        signclip.convert_reference(checkpoint, out, **kwargs)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_not_a_reference_checkpoint(tmp_path, e72):
    text = tmp_path / "notes.pt"
    text.write_text("hello, not a checkpoint\n")
    msg = expect_error("not a reference SignCLIP checkpoint", text, tmp_path / "o", tokenizer=e72["hf"])
    assert msg.startswith(str(text))
    torch.save({"model": {"encoder.weight": torch.zeros(2, 2)}}, tmp_path / "other.pt")
    assert expect_error("no mmmodel.video_encoder", tmp_path / "other.pt", tmp_path / "o").startswith(
        str(tmp_path / "other.pt"))
    expect_error("no such checkpoint file", tmp_path / "nope.pt", tmp_path / "o")
    r = CliRunner().invoke(app, ["convert-reference", str(text), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and str(text) in r.output and "not a reference SignCLIP checkpoint" in r.output
    assert not (tmp_path / "o").exists()


def test_unexpected_missing_and_misshapen_keys(tmp_path, e72):
    ckpt = torch.load(e72["ckpt"], weights_only=False)
    weights = dict(ckpt["model"])
    for name, edit, match in [
        ("extra", lambda w: w.update({"mmmodel.video_encoder.videoconv.weight": torch.zeros(3)}),
         r"1 unexpected key\(s\) for the reference architecture: mmmodel.video_encoder.videoconv.weight"),
        ("missing", lambda w: w.pop("mmmodel.text_encoder.encoder.layer.1.output.dense.bias"),
         r"1 missing key\(s\) .*: mmmodel.text_encoder.encoder.layer.1.output.dense.bias"),
        ("shape", lambda w: w.update({"mmmodel.video_encoder.bert.embeddings.LayerNorm.bias": torch.zeros(7)}),
         r"LayerNorm.bias has shape \(7,\)"),
        ("positions", lambda w: w.update({"mmmodel.text_encoder.embeddings.position_ids": torch.zeros(1, 512).long()}),
         r"position_ids is not 0, 1, 2"),
    ]:
        w = dict(weights)
        edit(w)
        torch.save({**ckpt, "model": w}, tmp_path / f"{name}.pt")
        assert expect_error(match, tmp_path / f"{name}.pt", tmp_path / name, tokenizer=e72["hf"],
                            variant="reference").startswith(str(tmp_path / f"{name}.pt"))


def test_unknown_variant_and_wrong_tokenizer(tmp_path, e72):
    expect_error(r"unknown variant: 609 pose features .* pass --variant", e72["ckpt"], tmp_path / "o",
                 tokenizer=e72["hf"])
    expect_error(r"variant: unknown 'base'; known: reference, reference-hand-dominant", e72["ckpt"], tmp_path / "o",
                 tokenizer=e72["hf"], variant="base")
    expect_error("variant reference-hand-dominant reads 63 pose features per frame, the checkpoint's pose tower 609",
                 e72["ckpt"], tmp_path / "o", tokenizer=e72["hf"], variant="reference-hand-dominant")
    expect_error(r"tokenizer: cannot load .*pass --tokenizer", e72["ckpt"], tmp_path / "o",
                 tokenizer=str(tmp_path / "no-such-tokenizer"), variant="reference")
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(WORDS + ["extra"]) + "\n")
    expect_error(rf"has {len(WORDS) + 1} tokens, the checkpoint's text tower {len(WORDS)}", e72["ckpt"],
                 tmp_path / "o", tokenizer=BertTokenizer.from_pretrained(str(folder)), variant="reference")


class Payload:
    """Unpickling this runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_not_executed(tmp_path, e72):
    marker = tmp_path / "pwned"
    ckpt = torch.load(e72["ckpt"], weights_only=False)
    ckpt["extra_state"]["payload"] = Payload(marker)
    torch.save(ckpt, tmp_path / "evil.pt")
    msg = expect_error("refused", tmp_path / "evil.pt", tmp_path / "o", tokenizer=e72["hf"], variant="reference")
    assert msg.startswith(str(tmp_path / "evil.pt")) and "system" in msg and "weights_only" not in msg
    assert not marker.exists() and not (tmp_path / "o").exists()
    with pytest.raises(CheckpointError, match="refused"):
        load_reference_weights(tmp_path / "evil.pt")
    assert not marker.exists()


# ---- everywhere a signclip model goes ------------------------------------------------------------------------
def test_onnx_export_and_int8(e72, e72_model, pose_paths, tmp_path):
    from signclip.export.runtime import OnnxSignCLIP

    r = CliRunner().invoke(app, ["export", "onnx", str(e72["dir"]), str(tmp_path / "onnx"), "--int8"])
    assert r.exit_code == 0, r.output
    fp32, int8 = OnnxSignCLIP(tmp_path / "onnx"), OnnxSignCLIP(tmp_path / "onnx", int8=True)
    prompts = ["A", "house", "how are you?"]
    torch_pose, torch_text = e72_model.encode_pose(pose_paths), e72_model.encode_text(prompts, "en", "ase")
    onnx_pose = fp32.encode_pose(pose_paths, batch_size=3)
    assert cos_rows(onnx_pose, torch_pose).min() >= 0.999
    assert cos_rows(fp32.encode_text(prompts, "en", "ase"), torch_text).min() >= 0.999
    assert cos_rows(int8.encode_pose(pose_paths, batch_size=3), torch_pose).min() >= 0.99
    assert cos_rows(int8.encode_text(prompts, "en", "ase"), torch_text).min() >= 0.99


def test_cli_embed_eval_index_search(e72, lexicon, pose_paths, tmp_path):
    def invoke(*args):
        r = CliRunner().invoke(app, [str(a) for a in args])
        assert r.exit_code == 0, r.output
        return r.output

    rows = lexicon[lexicon["path"].isin(pose_paths)].assign(split="test")
    rows.to_csv(tmp_path / "manifest.csv", index=False)
    invoke("embed", e72["dir"], *pose_paths[:3], "--out", tmp_path / "poses.npy")
    assert np.load(tmp_path / "poses.npy").shape == (3, HIDDEN)
    invoke("eval", e72["dir"], tmp_path / "manifest.csv", "--split", "test", "--out", tmp_path / "metrics.json")
    assert "pose_to_text/R@1" in json.loads((tmp_path / "metrics.json").read_text())
    invoke("index", "build", e72["dir"], tmp_path / "index", "--data", tmp_path / "manifest.csv", "--texts-from-data")
    for query in (["--pose", pose_paths[0]], ["--text", "A", "-s", "en", "-l", "ase"]):
        assert len(json.loads(invoke("search", tmp_path / "index", *query, "-k", "3", "--json"))) == 3


def test_serve_and_web_page(e72, lexicon, pose_paths):
    import httpx

    from serve_utils import live_server

    with live_server(str(e72["dir"]), pose_paths, lexicon) as (url, model, _):
        with httpx.Client(base_url=url, timeout=60) as c:
            assert c.get("/").status_code == 200
            r = c.post("/api/embed/pose", files={"file": ("a.pose", open(pose_paths[0], "rb").read())})
            assert r.status_code == 200, r.text
            assert cos_rows(np.array(r.json()["embedding"]), model.encode_pose(pose_paths[0])) >= 0.9999
            r = c.post("/api/pose/keypoints", files={"file": ("a.pose", open(pose_paths[0], "rb").read())})
            assert r.status_code == 200 and r.json()["edges"] and r.json()["fps"] is None
            r = c.post("/api/search", json={"text": "A", "spoken_language": "en", "signed_language": "ase", "k": 3})
            assert r.status_code == 200, r.text
