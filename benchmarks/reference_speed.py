"""A converted reference SignCLIP (E7.2 sizes) against the reference's own inference path, and its ONNX int8
export against fp32: poses embedded per second, side by side in one run, on the same lexicon poses.

    python benchmarks/reference_speed.py --threads 2 --poses 32 --repeats 3 [--frames 128]

The checkpoint holds random weights at the released E7.2 sizes (``baseline_temporal``: 609 features, 12 + 12
BERT-base layers, vocabulary 28,996; 217,681,152 parameters), written in the reference's format and converted
with ``signclip.convert_reference``. The reference path follows ``demo_sign.py`` and ``MMPTModel.forward``
: pose-format preprocessing, then each pose padded to ``max_video_len`` = 256 frames, through the VideoTokenMLP
and a transformers ``BertModel`` (pooler included, as the reference computes it) with ``[CLS] frames [SEP]`` at
positions ``0..256, 257``, mean over frames and [SEP]; one pose at a time (the earlier demo's loop, the
parity target) and in batches of 32 (the HEAD demo's batched form, here with a correct mask per pose).
Timings alternate between the paths (median of ``--repeats`` rounds), so load from other processes hits them
alike. ``--frames N`` loops each pose to N frames (the reference takes at most 256).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

MAX_VIDEO_LEN = 256


class ReferencePath(nn.Module):
    """MMPTModel.forward -> MMFusionSeparate.forward_video -> MMBertForEncoder, one pose per call."""

    def __init__(self, weights: dict[str, torch.Tensor], cls: int, sep: int, attention: str = "sdpa"):
        super().__init__()
        from transformers import BertConfig, BertModel

        video = {k[len("video_encoder."):]: v for k, v in weights.items() if k.startswith("video_encoder.")}
        self.videomlp = nn.ModuleDict({"linear1": nn.Linear(609, 768), "LayerNorm": nn.LayerNorm(768, eps=1e-5),
                                       "linear2": nn.Linear(768, 768)})
        self.bert = BertModel(BertConfig(vocab_size=28996, attn_implementation=attention))
        self.load_state_dict({k: v for k, v in video.items() if not k.endswith("position_ids")})
        self.cls, self.sep = cls, sep

    @torch.no_grad()
    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """(T_i, 609) poses -> (B, 768), all in one batch, each padded to 256 frames with its own mask."""
        b = len(feats)
        vfeats = torch.zeros(b, MAX_VIDEO_LEN, feats[0].shape[1])
        vmasks = torch.zeros(b, MAX_VIDEO_LEN, dtype=torch.long)
        for i, f in enumerate(feats):
            vfeats[i, : len(f)], vmasks[i, : len(f)] = f, 1
        m = self.videomlp
        tokens = m["linear2"](m["LayerNorm"](nn.functional.gelu(m["linear1"](vfeats))))
        words = self.bert.embeddings.word_embeddings(torch.tensor([[self.cls, self.sep]])).expand(b, -1, -1)
        ones = torch.ones(b, 1, dtype=torch.long)
        positions = torch.cat([torch.arange(MAX_VIDEO_LEN + 1), torch.tensor([MAX_VIDEO_LEN + 1])])[None]
        out = self.bert(inputs_embeds=torch.cat([words[:, :1], tokens, words[:, 1:]], dim=1),
                        attention_mask=torch.cat([ones, vmasks, ones], dim=1), position_ids=positions,
                        token_type_ids=torch.zeros(b, MAX_VIDEO_LEN + 2, dtype=torch.long), output_hidden_states=True)
        pool = torch.cat([0 * ones, vmasks, ones], dim=1).float()  # frames and [SEP], not [CLS]
        return torch.bmm(out.last_hidden_state.transpose(2, 1), (pool / pool.sum(1, keepdim=True))[..., None])[..., 0]


def looped(x: np.ndarray, frames: int | None) -> np.ndarray:
    return x if not frames else np.concatenate([x] * (frames // len(x) + 1))[:frames]


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def uncalibrated(onnx_dir: Path, threads: int):
    """The int8 runtime of an export with the pose graph quantised without calibration poses
    (``signclip.export.onnx.quantize_int8``: BERT's feed-forward output layers kept in fp32)."""
    import onnxruntime as ort

    from signclip.export.onnx import quantize_int8
    from signclip.export.runtime import OnnxSignCLIP

    dst = quantize_int8(onnx_dir / "pose_encoder.onnx", onnx_dir / "pose_encoder.uncalibrated-int8.onnx")
    runtime = OnnxSignCLIP(onnx_dir, int8=True, threads=threads)
    runtime.pose_session = ort.InferenceSession(str(dst), runtime.pose_session.get_session_options(),
                                                providers=["CPUExecutionProvider"])
    return runtime


def trained_layers_model():
    """A reference pose tower whose BERT layers are trained ones: MiniLM's (the default text model: 384 wide,
    6 layers), input MLP random. Random weights have none of the activation outliers of trained BERT
    feed-forward layers, so they cannot show what quantising those layers (or bf16) costs."""
    import signclip

    torch.manual_seed(0)
    model = signclip.create_model("reference", embed_dim=384, pose_width=384, pose_layers=6, text_model="default",
                                  text_max_tokens=64).eval()
    mini, bert = model.text.backbone, model.pose.bert
    bert.load_state_dict({k: v for k, v in mini.state_dict().items() if not k.startswith(("pooler", "embeddings.w"))},
                         strict=False)
    ids = [model.tokenizer.cls_token_id, model.tokenizer.sep_token_id]
    bert.embeddings.word_embeddings.weight.data = mini.embeddings.word_embeddings.weight.data[ids].clone()
    return model


def converted_e72(tmp: Path):
    """The E7.2-sized reference checkpoint (random weights) written to ``tmp`` and converted: (the converted
    SignCLIP, the reference weights, the tokenizer)."""
    import signclip

    from reference_utils import fairseq_checkpoint, random_weights, reference_shapes, sized_tokenizer

    weights = random_weights(reference_shapes(609, 28996, 12, 12, hidden=768, intermediate=3072), 0, std=0.02)
    torch.save(fairseq_checkpoint(weights), tmp / "checkpoint_best.pt")
    tok = sized_tokenizer(tmp / "vocab", 28996)
    model = signclip.load(signclip.convert_reference(tmp / "checkpoint_best.pt", tmp / "model", tokenizer=tok))
    return model, weights, tok


def trained_layers_proxy(paths: list[str], calibration: list[str], threads: int) -> dict[str, float]:
    """int8 against fp32 (min cosine over ``paths``) for :func:`trained_layers_model`, calibrated on the
    poses ``calibration`` and not."""
    from signclip.export.onnx import export_onnx
    from signclip.export.runtime import OnnxSignCLIP

    from reference_utils import cos_rows

    model = trained_layers_model()
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, Path(tmp), int8=True, calibration=[model.preprocess_pose(p) for p in calibration])
        fp32 = OnnxSignCLIP(tmp, threads=threads).encode_pose(paths)
        return {"calibrated int8": float(cos_rows(OnnxSignCLIP(tmp, int8=True, threads=threads).encode_pose(paths),
                                                  fp32).min()),
                "uncalibrated int8": float(cos_rows(uncalibrated(Path(tmp), threads).encode_pose(paths), fp32).min())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--poses", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--frames", type=int, default=None, help="loop each pose to this many frames (<= 256)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import signclip
    from signclip.data.manifests import load_lexicon
    from signclip.export.onnx import export_onnx
    from signclip.export.runtime import OnnxSignCLIP

    from reference_utils import cos_rows, reference_features_e72

    load_before = os.getloadavg()
    drawn = load_lexicon().sample(args.poses + 64, random_state=0)["path"].tolist()
    paths, calibration = drawn[:args.poses], drawn[args.poses:]  # int8 calibration poses: others
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        model, weights, tok = converted_e72(tmp)
        t_convert = time.perf_counter() - t0
        reference = {attn: ReferencePath(weights, tok.cls_token_id, tok.sep_token_id, attn).eval()
                     for attn in ("sdpa", "eager")}
        del weights
        t0 = time.perf_counter()
        export_onnx(model, tmp / "onnx", int8=True, calibration=[model.preprocess_pose(p) for p in calibration])
        t_export = time.perf_counter() - t0
        fp32 = OnnxSignCLIP(tmp / "onnx", threads=args.threads)
        int8 = OnnxSignCLIP(tmp / "onnx", int8=True, threads=args.threads)
        int8_plain = uncalibrated(tmp / "onnx", args.threads)
        bf16 = signclip.load(tmp / "model")
        bf16.set_precision("bf16")  # bf16 weights + autocast; fast where the CPU has bf16 instructions

        feats = [torch.from_numpy(looped(reference_features_e72(p).numpy(), args.frames)) for p in paths]
        arrays = [looped(model.preprocess_pose(p), args.frames) for p in paths]

        def one_at_a_time(path: ReferencePath) -> np.ndarray:
            return np.concatenate([path([f]).numpy() for f in feats])

        runs = {
            "reference path, one pose at a time padded to 256 (BertModel, sdpa attention)":
                lambda: one_at_a_time(reference["sdpa"]),
            "reference path, same with eager attention (as transformers 3.x)":
                lambda: one_at_a_time(reference["eager"]),
            "reference path, batched form: 32 poses a batch, each padded to 256":
                lambda: np.concatenate([reference["sdpa"](feats[i: i + 32]).numpy() for i in range(0, len(feats), 32)]),
            "signclip torch, one pose at a time (no padding)":
                lambda: model.encode_arrays(arrays, batch_size=1, normalize=False, progress=False),
            "signclip torch, `encode_pose` default: batches of 32 sorted by length":
                lambda: model.encode_arrays(arrays, batch_size=32, normalize=False, progress=False),
            "signclip torch bf16 (`set_precision`), batches of 32":
                lambda: bf16.encode_arrays(arrays, batch_size=32, normalize=False, progress=False),
            "signclip ONNX fp32, batches of 32": lambda: fp32.encode_arrays(arrays, 32),
            "signclip ONNX int8, calibrated on 64 other poses (as exported), batches of 32":
                lambda: int8.encode_arrays(arrays, 32),
            "signclip ONNX int8, uncalibrated (feed-forward outputs in fp32), batches of 32":
                lambda: int8_plain.encode_arrays(arrays, 32),
        }
        out = {name: fn() for name, fn in runs.items()}  # warm-up, and the embeddings compared
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):  # the paths alternate, so load from other processes hits them alike
            for name, fn in runs.items():
                times[name].append(timed(fn))
        # end to end from .pose files (read + preprocess + embed), best of 2
        e2e = {"reference": lambda: [reference["sdpa"]([reference_features_e72(p)]) for p in paths],
               "signclip": lambda: model.encode_pose(paths, batch_size=32, progress=False)}
        e2e_times = {name: min(timed(fn) for _ in range(2)) for name, fn in e2e.items()}
    proxy = trained_layers_proxy(paths, calibration, args.threads)
    load_after = os.getloadavg()

    lengths = [len(a) for a in arrays]
    names = list(runs)
    rate = {name: args.poses / np.median(times[name]) for name in runs}
    print(f"E7.2-sized model (random weights), {args.poses} lexicon poses of {min(lengths)}-{max(lengths)} frames "
          f"(mean {np.mean(lengths):.0f}); torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs; "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; median of {args.repeats} rounds; "
          f"conversion {t_convert:.0f} s, ONNX export + int8 {t_export:.0f} s\n")
    print("| path | poses/s | ms per pose | × reference, one at a time | × reference, batched | "
          "cosine to reference (min) | cosine to ONNX fp32 (min) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    onnx = out["signclip ONNX fp32, batches of 32"]
    for name in names:
        to_onnx = f"{cos_rows(out[name], onnx).min():.5f}" if "ONNX" in name else "–"
        print(f"| {name} | {rate[name]:.2f} | {1000 / rate[name]:.0f} | {rate[name] / rate[names[0]]:.2f} | "
              f"{rate[name] / rate[names[2]]:.2f} | {cos_rows(out[name], out[names[0]]).min():.5f} | {to_onnx} |")
    onnx32, torch32 = rate["signclip ONNX fp32, batches of 32"], rate[names[4]]
    print(f"\nONNX int8 / fp32: {rate[names[-2]] / onnx32:.2f}× calibrated (as exported), "
          f"{rate[names[-1]] / onnx32:.2f}× uncalibrated; torch bf16 / fp32 "
          f"{rate[names[5]] / torch32:.2f}× (min cosine {cos_rows(out[names[5]], out[names[4]]).min():.5f})")
    print("trained BERT layers (MiniLM's in the same tower), int8 against fp32, min cosine over the poses: "
          + ", ".join(f"{k} {v:.4f}" for k, v in proxy.items()))
    print(f"from .pose files (read + preprocess + embed, best of 2): reference path one at a time "
          f"{args.poses / e2e_times['reference']:.2f} poses/s, signclip {args.poses / e2e_times['signclip']:.2f} "
          f"poses/s ({e2e_times['reference'] / e2e_times['signclip']:.1f}×)")


if __name__ == "__main__":
    main()
