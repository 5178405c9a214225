"""Optimisation: AdamW with parameter groups, the warm-up + cosine schedule, the EMA of the weights,
and gradient checkpointing."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from signclip.config import TrainConfig
from signclip.models.signclip import SignCLIP


def make_optimizer(module: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over ``module`` (a :class:`SignCLIP`, or an objective holding one as ``model``): the pretrained
    text backbone gets ``text_lr``; no decay on biases, norms, positional embeddings and the scale."""
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        name = name.removeprefix("model.")
        lr = cfg.text_lr if name.startswith("text.backbone.") else cfg.lr
        decay = 0.0 if (p.ndim < 2 or "pos_embedding" in name or name == "logit_scale") else cfg.weight_decay
        groups.setdefault((lr, decay), []).append(p)
    return torch.optim.AdamW([{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()],
                             betas=tuple(cfg.betas))


def freeze_parameters(model: SignCLIP, prefixes: list[str]) -> None:
    """Keep the parameters whose names start with one of ``prefixes`` at their current values."""
    names = [name for name, _ in model.named_parameters()]
    unknown = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if unknown:
        parts = sorted({".".join(n.split(".")[:2]) for n in names})
        raise ValueError(f"frozen_parameters: {unknown} match no parameter; the model's parts are {parts}")
    for name, p in model.named_parameters():
        if any(name.startswith(prefix) for prefix in prefixes):
            p.requires_grad_(False)


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up from ``1/warmup`` to 1 over ``warmup`` steps, then cosine to 0 at ``total``.

    transformers' ``get_cosine_schedule_with_warmup`` has the same cosine but starts its warm-up at 0, one
    step behind this one; switching would change every trained model, so the schedule stays this lambda."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def make_ema(model: SignCLIP, decay: float) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights (buffers copied), or None when decay is 0."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema_decay: expected 0 (off) or a value in (0, 1), got {decay}")
    if decay == 0.0:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def enable_gradient_checkpointing(model: SignCLIP) -> None:
    """Recompute activations in backward: the pose transformer layers, and the text backbone if it trains."""
    model.pose.gradient_checkpointing = True
    backbone = model.text.backbone
    if not getattr(model.text, "frozen", False) and getattr(backbone, "supports_gradient_checkpointing", False):
        if hasattr(backbone, "activation_checkpointing_enable"):  # transformers >= 5
            backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
