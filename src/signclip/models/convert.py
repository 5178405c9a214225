"""Convert a released reference SignCLIP checkpoint (fairseq MMPT, Jiang et al. 2024) into a signclip model.

The checkpoint is a fairseq trainer dict: ``model`` holds ``mmmodel.video_encoder.*`` (VideoTokenMLP + BERT)
and ``mmmodel.text_encoder.*`` (BERT); ``cfg`` / ``args`` hold ``argparse.Namespace`` objects. It is read
with ``torch.load(weights_only=True)`` allowing only ``argparse.Namespace`` besides tensors and containers,
so a checkpoint holding anything else is refused, never executed. The file is memory-mapped: the optimiser
state that released checkpoints carry (2 of their 2.6 GB for E7.2) is never read, and the model's tensors
become the converted model's weights without a copy. Keys are checked strictly (the reference loads with
``strict=False``). The file holds no tokenizer: it comes from ``tokenizer`` (a Hugging
Face id or folder; default the variant's BERT, if it can be loaded offline).

Variants are the named model configs with ``pose_encoder: "reference"``: ``reference`` (E7.2
``baseline_temporal``) and ``reference-hand-dominant`` (E3.2 ``rwthfs_hand_dominant_aug``). The released
checkpoints are told apart by their pose feature size, pose tower depth and text vocabulary; any other
checkpoint needs ``variant``. Widths, depths and vocabularies are read off the weights (attention heads by
BERT's convention of 64 dimensions each).
"""
from __future__ import annotations

import argparse
import pickle
import zipfile
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from signclip.config import ModelConfig, get_model_config, list_model_configs
from signclip.errors import CheckpointError, refused_pickle
from signclip.models.reference import BERT_POSITIONS
from signclip.models.signclip import SignCLIP, text_options
from signclip.models.text_encoder import TextEncoder
from signclip.pose.layout import get_layout

# (pose features per frame, pose tower layers, text vocabulary) of the released checkpoints -> variant
RELEASED = {(609, 12, 28996): "reference", (63, 6, 30522): "reference-hand-dominant"}
# reference parameter name (``mmmodel.`` stripped) prefix -> signclip's
PREFIXES = [("video_encoder.videomlp.linear1.", "pose.frame_mlp.0."),
            ("video_encoder.videomlp.LayerNorm.", "pose.frame_mlp.2."),
            ("video_encoder.videomlp.linear2.", "pose.frame_mlp.3."),
            ("video_encoder.bert.", "pose.bert."), ("text_encoder.", "text.backbone.")]
IGNORED = ("video_encoder.bert.pooler.",)  # in the file, never used by the reference
SPECIAL_ROWS = "pose.bert.embeddings.word_embeddings.weight"  # only the [CLS] and [SEP] rows are kept
OPTIONAL = ("logit_scale", "text.backbone.pooler.")  # ours, not in the file (the text pooler is unused)


def reference_variants() -> list[str]:
    return [n for n in list_model_configs() if get_model_config(n).pose_encoder == "reference"]


def load_reference_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The model weights of a reference checkpoint, ``mmmodel.`` stripped, floating tensors as float32.
    Accepts the fairseq trainer dict, ``{"state_dict": ...}`` or a bare state dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused: {refused_pickle(e)}, and signclip unpickles only tensors, "
                              "containers and argparse.Namespace") from None
    except Exception as e:  # not a torch file at all
        raise CheckpointError(f"{path}: not a reference SignCLIP checkpoint (unreadable by torch.load: "
                              f"{type(e).__name__}: {e})") from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a reference SignCLIP checkpoint (no 'model' dict of tensors)")
    state = {k.removeprefix("mmmodel."): v.float() if v.is_floating_point() else v for k, v in state.items()}
    if not any(k.startswith("video_encoder.") for k in state) or not any(k.startswith("text_encoder.") for k in state):
        raise CheckpointError(f"{path}: not a reference SignCLIP checkpoint (no mmmodel.video_encoder.* and "
                              "mmmodel.text_encoder.* weights)")
    return state


def _shape(state: dict[str, torch.Tensor], key: str, path: Path) -> torch.Size:
    if key not in state:
        raise CheckpointError(f"{path}: missing key mmmodel.{key}")
    return state[key].shape


def _layers(state: dict[str, torch.Tensor], prefix: str) -> int:
    """Number of BERT layers under ``prefix`` (``{prefix}encoder.layer.{i}.``)."""
    prefix += "encoder.layer."
    ids = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
    return max(ids) + 1 if ids else 0


def _rename(key: str, pairs: list[tuple[str, str]]) -> str | None:
    return next((new + key[len(old):] for old, new in pairs if key.startswith(old)), None)


def reference_config(state: dict[str, torch.Tensor], path: Path, variant: str | None = None,
                     max_video_len: int | None = None) -> ModelConfig:
    """The signclip config of a reference checkpoint: the variant's (detected from the weights when None)
    with the sizes of the weights."""
    feat, width = _shape(state, "video_encoder.videomlp.linear1.weight", path)[::-1]
    layers = _layers(state, "video_encoder.bert.")
    vocab = _shape(state, "text_encoder.embeddings.word_embeddings.weight", path)[0]
    if variant is None:
        if (feat, layers, vocab) not in RELEASED:
            known = "; ".join(f"{v}: {f} features, {n} layers, vocabulary {w}" for (f, n, w), v in RELEASED.items())
            raise CheckpointError(f"{path}: unknown variant: {feat} pose features per frame, {layers} pose layers, "
                                  f"vocabulary {vocab} (released: {known}); pass --variant")
        variant = RELEASED[(feat, layers, vocab)]
    if variant not in reference_variants():
        raise CheckpointError(f"variant: unknown {variant!r}; known: {', '.join(reference_variants())}")
    cfg = get_model_config(variant)
    expected = len(get_layout(cfg.pose.layout)) * cfg.pose.dims
    if feat != expected:
        raise CheckpointError(f"{path}: variant {variant} reads {expected} pose features per frame, the checkpoint's "
                              f"pose tower {feat}")
    intermediate = _shape(state, "video_encoder.bert.encoder.layer.0.intermediate.dense.weight", path)[0]
    cfg.embed_dim = cfg.pose_width = width
    cfg.pose_layers, cfg.pose_heads, cfg.pose_mlp_ratio = layers, max(1, width // 64), intermediate / width
    if max_video_len is not None:
        if not 0 < max_video_len < BERT_POSITIONS - 1:
            raise CheckpointError(f"max_video_len: {max_video_len} is not between 1 and {BERT_POSITIONS - 2}")
        cfg.max_video_len = max_video_len
    cfg.pose.max_frames = cfg.max_video_len  # the reference takes no more; longer poses are resampled
    return cfg


def text_tower(state: dict[str, torch.Tensor], cfg: ModelConfig, path: Path) -> TextEncoder:
    """The reference text BERT's architecture, read off its weights."""
    vocab, width = _shape(state, "text_encoder.embeddings.word_embeddings.weight", path)
    if width != cfg.embed_dim:
        raise CheckpointError(f"{path}: text width {width} differs from the pose width {cfg.embed_dim}")
    config = BertConfig(
        vocab_size=vocab, hidden_size=width, num_hidden_layers=_layers(state, "text_encoder."),
        num_attention_heads=max(1, width // 64),
        intermediate_size=_shape(state, "text_encoder.encoder.layer.0.intermediate.dense.weight", path)[0],
        max_position_embeddings=_shape(state, "text_encoder.embeddings.position_embeddings.weight", path)[0],
        type_vocab_size=_shape(state, "text_encoder.embeddings.token_type_embeddings.weight", path)[0])
    return TextEncoder(BertModel(config), cfg.embed_dim, cfg.freeze_text, **text_options(cfg))


def load_reference_tokenizer(tokenizer, default: str, vocab: int):
    """A tokenizer object, a Hugging Face id or a folder (None: ``default``), checked against the vocabulary."""
    name = default if tokenizer is None else tokenizer
    if isinstance(name, (str, Path)):
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(name))
        except (OSError, ValueError) as e:
            raise CheckpointError(f"tokenizer: cannot load {str(name)!r} ({type(e).__name__}); the checkpoint holds "
                                  "no tokenizer: pass --tokenizer with a Hugging Face id or a local folder") from None
    if len(tokenizer) != vocab or tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise CheckpointError(f"tokenizer: {str(name)!r} has {len(tokenizer)} tokens, the checkpoint's text tower "
                              f"{vocab} (bert-base-cased: 28996, bert-base-uncased: 30522), or lacks [CLS]/[SEP]")
    return tokenizer


def reference_model(state: dict[str, torch.Tensor], path: Path, tokenizer=None, variant: str | None = None,
                    max_video_len: int | None = None) -> SignCLIP:
    """A :class:`SignCLIP` holding the weights ``state`` of the reference checkpoint ``path`` (which
    errors name), see :func:`convert_reference`."""
    cfg = reference_config(state, path, variant, max_video_len)
    text = text_tower(state, cfg, path)
    tok = load_reference_tokenizer(tokenizer, cfg.text_model, text.backbone.config.vocab_size)
    if isinstance(tokenizer, (str, Path)):
        cfg.text_model = str(tokenizer)
    model = SignCLIP(cfg, text, tok).eval()
    target = model.state_dict()
    weights, unexpected = {}, []
    for key, value in state.items():
        if key.endswith("embeddings.position_ids"):  # a buffer of transformers 3.x: must be 0, 1, 2, ...
            if not torch.equal(value.flatten(), torch.arange(value.numel())):
                raise CheckpointError(f"{path}: mmmodel.{key} is not 0, 1, 2, ...")
            continue
        if key.startswith(IGNORED):
            continue
        ours = _rename(key, PREFIXES)
        if ours not in target:
            unexpected.append(f"mmmodel.{key}")
            continue
        if ours == SPECIAL_ROWS:
            value = value[[tok.cls_token_id, tok.sep_token_id]]
        if value.shape != target[ours].shape:
            raise CheckpointError(f"{path}: mmmodel.{key} has shape {tuple(value.shape)}, the {cfg.name} "
                                  f"architecture {tuple(target[ours].shape)}")
        weights[ours] = value
    missing = [f"mmmodel.{_rename(k, [(b, a) for a, b in PREFIXES])}" for k in target
               if k not in weights and not k.startswith(OPTIONAL)]
    for problem, keys in (("unexpected", unexpected), ("missing", missing)):
        if keys:
            raise CheckpointError(f"{path}: {len(keys)} {problem} key(s) for the {cfg.name} architecture: "
                                  f"{', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}")
    # assigned, not copied: the checkpoint's tensors (memory-mapped, read as the model is used or saved) become
    # the weights, so converting never holds a second copy (benchmarks/conversion_memory.py)
    model.load_state_dict({**target, **weights}, assign=True)
    return model


def convert_reference(checkpoint: str | Path, out: str | Path, tokenizer=None, variant: str | None = None,
                      max_video_len: int | None = None) -> Path:
    """Convert a reference SignCLIP checkpoint into the signclip model directory ``out`` (config, safetensors
    weights, tokenizer, text config), giving the reference's embeddings for the same pose file and prompt.

    ``tokenizer``: Hugging Face id, folder or tokenizer object (default: the variant's BERT, offline);
    ``variant``: a model config name (default: detected); ``max_video_len``: the length the reference pads
    poses to, which sets its [SEP] position (default 256; 128 reproduces E3.2's test-set evaluation)."""
    path = Path(checkpoint)
    return reference_model(load_reference_weights(path), path, tokenizer, variant, max_video_len).save(out)
