"""The reference SignCLIP (fairseq MMPT, Jiang et al. 2024) written out for tests and benchmarks: its
checkpoint on disk (a fairseq trainer dict, ``mmmodel.*`` weights, ``argparse.Namespace`` in ``cfg``), its
pose features (demo_sign.py / demo_finger.py with pose-format) and its inference path from its modules and
equations (padded to ``max_video_len`` as ``MMPTModel.forward`` does, additive -10000 attention mask,
[CLS]/[SEP] pooling). Nothing here uses signclip's own model."""
from __future__ import annotations

import argparse
import math
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from pose_format import Pose
from pose_format.utils.generic import pose_normalization_info
from transformers import BertTokenizer, BertTokenizerLegacy

HIDDEN, HEADS, INTERMEDIATE = 128, 2, 256  # heads = hidden / 64, BERT's convention (the converter's too)
MAX_VIDEO_LEN = 256
# demo_sign.py's FACEMESH_CONTOURS_POINTS (sorted ids of mediapipe FACEMESH_CONTOURS)
FACE_CONTOUR = [str(i) for i in (
    0, 7, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70, 78, 80, 81, 82, 84,
    87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149, 150, 152, 153, 154, 155,
    157, 158, 159, 160, 161, 162, 163, 172, 173, 176, 178, 181, 185, 191, 234, 246, 249, 251, 263, 267, 269, 270,
    276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312, 314, 317, 318, 321, 323, 324,
    332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382, 384, 385, 386, 387, 388,
    389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466)]
# a small WordPiece vocabulary ([CLS] = 2 and [SEP] = 3, not bert-base's 101 / 102)
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<", ">", "?", ".", "en", "de", "ase", "gsg", "house", "sun",
         "police", "how", "are", "you", "fingers", "##pell", "the", "letter", "in", "german", "sign", "language",
         "word", "##s", "a", "##n", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", *"bcdefghijklmnopqrstuvwxyz"]


def cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


# ---- the checkpoint on disk --------------------------------------------------------------------
def bert_shapes(prefix: str, vocab: int, hidden: int, layers: int, intermediate: int) -> dict[str, tuple]:
    """Parameter shapes of a transformers-3 BertModel (pooler included), spec section 1.3."""
    s = {f"{prefix}embeddings.word_embeddings.weight": (vocab, hidden),
         f"{prefix}embeddings.position_embeddings.weight": (512, hidden),
         f"{prefix}embeddings.token_type_embeddings.weight": (2, hidden),
         f"{prefix}embeddings.LayerNorm.weight": (hidden,), f"{prefix}embeddings.LayerNorm.bias": (hidden,)}
    for i in range(layers):
        p = f"{prefix}encoder.layer.{i}."
        for name, (out, inp) in {"attention.self.query": (hidden, hidden), "attention.self.key": (hidden, hidden),
                                 "attention.self.value": (hidden, hidden), "attention.output.dense": (hidden, hidden),
                                 "intermediate.dense": (intermediate, hidden),
                                 "output.dense": (hidden, intermediate)}.items():
            s[f"{p}{name}.weight"], s[f"{p}{name}.bias"] = (out, inp), (out,)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            s[f"{p}{name}.weight"], s[f"{p}{name}.bias"] = (hidden,), (hidden,)
    s[f"{prefix}pooler.dense.weight"], s[f"{prefix}pooler.dense.bias"] = (hidden, hidden), (hidden,)
    return s


def reference_shapes(feat: int, vocab: int, video_layers: int, text_layers: int, hidden: int = HIDDEN,
                     intermediate: int = INTERMEDIATE) -> dict[str, tuple]:
    """``MMFusionSeparate`` parameter shapes (``mmmodel.`` stripped): VideoTokenMLP + video BERT + text BERT."""
    s = {"video_encoder.videomlp.linear1.weight": (hidden, feat), "video_encoder.videomlp.linear1.bias": (hidden,),
         "video_encoder.videomlp.LayerNorm.weight": (hidden,), "video_encoder.videomlp.LayerNorm.bias": (hidden,),
         "video_encoder.videomlp.linear2.weight": (hidden, hidden), "video_encoder.videomlp.linear2.bias": (hidden,)}
    s.update(bert_shapes("video_encoder.bert.", vocab, hidden, video_layers, intermediate))
    s.update(bert_shapes("text_encoder.", vocab, hidden, text_layers, intermediate))
    return s


def random_weights(shapes: dict[str, tuple], seed: int, std: float = 0.08) -> dict[str, torch.Tensor]:
    """Random weights, fp16-rounded as fairseq's fp16 training leaves them; LayerNorm scales around 1."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in shapes.items():
        w = torch.randn(shape, generator=g) * std
        out[key] = (w + 1.0 if "LayerNorm.weight" in key else w).half().float()
    for prefix in ("video_encoder.bert.", "text_encoder."):  # transformers 3.x persistent buffers
        out[f"{prefix}embeddings.position_ids"] = torch.arange(512)[None]
    return out


def fairseq_checkpoint(weights: dict[str, torch.Tensor], legacy_args: bool = False) -> dict:
    """What fairseq's ``Trainer.save_checkpoint`` writes (``checkpoint_utils.torch_persistent_save``)."""
    namespace = argparse.Namespace(_name="mmtask", taskconfig="projects/retri/signclip_v1_1/baseline_temporal.yaml")
    return {
        "args": argparse.Namespace(arch="mmarch", task="mmtask", fp16=True) if legacy_args else None,
        "cfg": {"_name": None, "common": {"fp16": True, "log_interval": 100}, "task": namespace,
                "model": argparse.Namespace(_name="mmarch", arch="mmarch"),
                "criterion": argparse.Namespace(_name="mmloss"), "optimization": {"lr": [5e-05], "max_epoch": 25},
                "checkpoint": {"save_dir": "runs/retri_v1_1/baseline_temporal", "no_epoch_checkpoints": True}},
        "model": OrderedDict((f"mmmodel.{k}", v) for k, v in weights.items()),
        "criterion": None,
        "optimizer_history": [{"criterion_name": "MMCriterion", "optimizer_name": "FP16Optimizer",
                               "lr_scheduler_state": {"best": 1.25}, "num_updates": 1000}],
        "task_state": {},
        "extra_state": {"metrics": OrderedDict(default=[(0, "loss", "AverageMeter", {"val": 1.5, "sum": 3.0})]),
                        "previous_training_time": 123.4, "val_loss": 1.25, "best": 1.25,
                        "train_iterator": {"version": 2, "epoch": 25, "iterations_in_epoch": 0, "shuffle": True}},
        "last_optimizer_state": {"state": {0: {"step": 1000, "exp_avg": torch.zeros(8), "exp_avg_sq": torch.zeros(8)}},
                                 "param_groups": [{"lr": 5e-05, "betas": (0.9, 0.98), "params": [0]}],
                                 "loss_scale": 128.0},
    }


def vocabulary(lowercase: bool) -> list[str]:
    return list(dict.fromkeys(w.lower() if lowercase and not w.startswith("[") else w for w in WORDS))


def sized_tokenizer(folder, vocab: int):
    """A tokenizer with ``vocab`` tokens (WORDS' special tokens, then placeholders): the size of a released one."""
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(WORDS[:5] + [f"w{i}" for i in range(vocab - 5)]) + "\n")
    return BertTokenizer.from_pretrained(str(folder))


def write_tokenizer(folder, lowercase: bool):
    """A saved Hugging Face tokenizer folder and the reference's slow ``BertTokenizer`` over ``vocabulary``."""
    folder.mkdir()
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(vocabulary(lowercase)) + "\n")
    BertTokenizer.from_pretrained(str(folder), do_lower_case=lowercase).save_pretrained(str(folder / "hf"))
    return str(folder / "hf"), BertTokenizerLegacy(vocab_file=str(vocab), do_lower_case=lowercase)


# ---- the reference's inference path -----------------------------------------------------------------------
def reference_features_e72(path: str) -> torch.Tensor:
    """demo_sign.py ``preprocess_pose``: 203 points, Pose.normalize, hide legs (not hips), nan_to_num -> (T, 609)."""
    pose = Pose.read(open(path, "rb").read())
    pose = pose.get_components(["POSE_LANDMARKS", "FACE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS"],
                               {"FACE_LANDMARKS": FACE_CONTOUR})
    pose = pose.normalize(pose_normalization_info(pose.header))
    legs = [pose.header._get_point_index("POSE_LANDMARKS", f"{side}_{n}")
            for n in ["KNEE", "ANKLE", "HEEL", "FOOT_INDEX"] for side in ["LEFT", "RIGHT"]]
    pose.body.confidence[:, :, legs] = 0
    pose.body.data[:, :, legs, :] = 0
    feat = np.nan_to_num(pose.body.data)
    return torch.from_numpy(np.asarray(feat.reshape(feat.shape[0], -1))).float()


def reference_features_e32(path: str) -> torch.Tensor:
    """demo_finger.py: Pose.normalize on the full pose, then the right hand only -> (T, 63)."""
    pose = Pose.read(open(path, "rb").read())
    pose = pose.normalize(pose_normalization_info(pose.header))
    pose = pose.get_components(["RIGHT_HAND_LANDMARKS"])
    feat = pose.body.data
    return torch.from_numpy(np.asarray(feat.reshape(feat.shape[0], -1))).float()


def linear(sd, name, x):
    return x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]


def layer_norm(sd, name, x, eps):
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], eps)


def bert_encoder(sd, prefix, h, mask, heads=HEADS):
    """transformers-3 BertEncoder: post-norm layers, extended mask (1 - mask) * -10000, erf GELU."""
    add = (1.0 - mask[:, None, None, :].float()) * -10000.0
    b, n, w = h.shape
    layers = len({k[len(prefix):].split(".")[2] for k in sd if k.startswith(prefix + "encoder.layer.")})
    for i in range(layers):
        p = f"{prefix}encoder.layer.{i}."
        q, k, v = (linear(sd, p + f"attention.self.{m}", h).view(b, n, heads, -1).transpose(1, 2)
                   for m in ("query", "key", "value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(w // heads) + add
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, w)
        h = layer_norm(sd, p + "attention.output.LayerNorm", linear(sd, p + "attention.output.dense", ctx) + h, 1e-12)
        inter = F.gelu(linear(sd, p + "intermediate.dense", h))
        h = layer_norm(sd, p + "output.LayerNorm", linear(sd, p + "output.dense", inter) + h, 1e-12)
    return h


def reference_pose_embedding(sd, feats: torch.Tensor, cls: int, sep: int, max_video_len: int = MAX_VIDEO_LEN):
    """MMPTModel.forward (pad to max_video_len) -> MMFusionSeparate.forward_video -> MMBertForEncoder."""
    t, d = feats.shape
    assert t <= max_video_len
    vfeats = torch.cat([feats, torch.zeros(max_video_len - t, d)])[None]
    vmasks = torch.cat([torch.ones(1, t, dtype=torch.bool), torch.zeros(1, max_video_len - t, dtype=torch.bool)], 1)
    caps, cmasks = torch.tensor([[cls, sep]]), torch.ones(1, 2, dtype=torch.bool)  # caps[:, :2] of any text
    attention_mask = torch.cat([cmasks[:, :1], vmasks, cmasks[:, 1:2]], dim=1)
    token_type_ids = torch.zeros(1, max_video_len + 2, dtype=torch.long)
    # VideoTokenMLP: linear1 -> gelu -> LayerNorm(eps 1e-5) -> linear2
    h = F.gelu(linear(sd, "video_encoder.videomlp.linear1", vfeats))
    video_tokens = linear(sd, "video_encoder.videomlp.linear2", layer_norm(sd, "video_encoder.videomlp.LayerNorm", h,
                                                                           1e-5))
    # MMBertEmbeddings
    e = "video_encoder.bert.embeddings."
    position_ids = sd[e + "position_ids"]
    position_ids = torch.cat([position_ids[:, : max_video_len + 1],
                              position_ids[:, max_video_len + 1: max_video_len + caps.size(1)]], dim=1)
    words = sd[e + "word_embeddings.weight"][caps]
    emb = torch.cat([words[:, :1], video_tokens, words[:, 1:]], dim=1) + sd[e + "position_embeddings.weight"][
        position_ids]
    emb = emb + sd[e + "token_type_embeddings.weight"][token_type_ids]
    emb = layer_norm(sd, e + "LayerNorm", emb, 1e-12)
    out = bert_encoder(sd, "video_encoder.bert.", emb, attention_mask)
    pool = torch.cat([torch.zeros(1, 1), vmasks.float(), torch.ones(1, 1)], dim=1)
    pool = pool / pool.sum(1, keepdim=True)
    return torch.bmm(out.transpose(2, 1), pool.unsqueeze(2)).squeeze(-1)[0]


def reference_text_embedding(sd, tokenizer, text: str, max_len: int):
    """Aligner._build_text_seq -> MMFusionSeparate.forward_text (text BERT, mean without [CLS])."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][: max_len - 3]
    full = [tokenizer.cls_token_id, tokenizer.sep_token_id] + ids + [tokenizer.sep_token_id]
    caps = torch.tensor([full + [tokenizer.pad_token_id] * (max_len - len(full))])
    cmasks = torch.zeros(1, max_len, dtype=torch.bool)
    cmasks[0, : len(full)] = True
    input_ids = torch.cat([caps[:, :1], caps[:, 2:]], dim=1)
    attention_mask = torch.cat([cmasks[:, :1], cmasks[:, 2:]], dim=1)
    e = "text_encoder.embeddings."
    emb = (sd[e + "word_embeddings.weight"][input_ids] + sd[e + "position_embeddings.weight"][:input_ids.shape[1]]
           + sd[e + "token_type_embeddings.weight"][0])
    out = bert_encoder(sd, "text_encoder.", layer_norm(sd, e + "LayerNorm", emb, 1e-12), attention_mask)
    pool = torch.cat([torch.zeros(1, 1), cmasks[:, 2:].float()], dim=1)
    pool = pool / pool.sum(1, keepdim=True)
    return torch.bmm(out.transpose(2, 1), pool.unsqueeze(2)).squeeze(-1)[0]
