"""Downstream tasks on a signclip pose encoder (Zhou et al.'s ISLR, CSLR and gloss-free SLT): task models
(:mod:`~signclip.tasks.model`), their heads, decoding and metrics, and fine-tuning (:mod:`~signclip.tasks.finetune`)."""
