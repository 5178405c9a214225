"""The task heads on a pose tower (Zhou et al. §III-C): ISLR "Encoder + MLP", CSLR "Encoder + TCN + BiLSTM"
with CTC, gloss-free SLT "Encoder + MLP projector + transformer decoder".

Every head reads the tower through its public interface only: ``tower(x, mask)`` -> (B, E) pooled embeddings
and ``tower.frame_features(x, mask)`` -> (B, T', W) frame features, ``tower.width`` = W. A tower that shortens
the sequence (T' < T) says which of its output frames are real with ``tower.frame_mask(mask)``; without that
method the real frames are taken to be the same share of T' as of T (:func:`encode_frames`).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from signclip.tasks.config import TaskConfig
from signclip.tasks.decoding import ctc_beam_search
from signclip.tasks.vocab import BOS, EOS, PAD, UNK, detokenize, words


def encode_frames(tower: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, F) keypoints, (B, T) real frames -> (B, T', W) frame features and (B, T') real output frames."""
    h = tower.frame_features(x, mask)  # (B, T', W)
    if hasattr(tower, "frame_mask"):
        return h, tower.frame_mask(mask)
    if h.shape[1] == mask.shape[1]:
        return h, mask
    lengths = torch.ceil(mask.sum(1) * h.shape[1] / mask.shape[1]).long().clamp(1, h.shape[1])  # (B,)
    return h, torch.arange(h.shape[1], device=h.device) < lengths[:, None]


class ClassifierHead(nn.Module):
    """ISLR: the pooled pose embedding -> one linear layer -> class logits; cross-entropy with label smoothing."""

    def __init__(self, embed_dim: int, n_classes: int, cfg: TaskConfig):
        super().__init__()
        self.label_smoothing = cfg.label_smoothing
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(embed_dim, n_classes)

    def logits(self, tower: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, F), (B, T) -> (B, C)."""
        return self.fc(self.dropout(tower(x, mask)))

    def loss(self, tower: nn.Module, x: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """labels: (B,) class indices."""
        return F.cross_entropy(self.logits(tower, x, mask), labels, label_smoothing=self.label_smoothing)


class TemporalConv(nn.Module):
    """The CSLR TCN: ``blocks`` x (Conv1d k, batch norm, ReLU, max-pool 2), each halving the frames (K5-P2-K5-P2,
    as VAC / CorrNet). The batch norm counts real frames only; it also takes away what every frame shares (a pose
    tower's frame features vary little from frame to frame next to their common part)."""

    def __init__(self, in_dim: int, width: int, kernel: int, blocks: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(in_dim if i == 0 else width, width, kernel, padding=kernel // 2)
                                   for i in range(blocks))
        self.norms = nn.ModuleList(nn.BatchNorm1d(width) for _ in range(blocks))

    def forward(self, h: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, W) with padded frames zeroed, (B,) lengths -> (B, T / 2^blocks, W), new lengths (at least 1)."""
        z = h.transpose(1, 2)  # (B, W, T)
        for conv, norm in zip(self.convs, self.norms):
            z = conv(z).transpose(1, 2)  # (B, T, W)
            real = torch.arange(z.shape[1], device=z.device) < lengths[:, None]  # (B, T)
            z = z.masked_scatter(real.unsqueeze(-1), norm(z[real]))  # statistics of the real frames
            z = F.max_pool1d(F.relu(z).transpose(1, 2), 2, ceil_mode=True)  # (B, W, T / 2)
            lengths = torch.div(lengths + 1, 2, rounding_mode="floor")
            z = z * (torch.arange(z.shape[-1], device=z.device) < lengths[:, None]).unsqueeze(1)  # padding stays 0
        return z.transpose(1, 2), lengths.clamp(min=1)


class CTCHead(nn.Module):
    """CSLR: frame features -> TCN -> BiLSTM -> gloss logits (blank = 0); CTC loss; CTC beam search."""

    def __init__(self, in_dim: int, n_glosses: int, cfg: TaskConfig):
        super().__init__()
        width = cfg.head_width or in_dim
        self.beam_size = cfg.beam_size
        self.tcn = TemporalConv(in_dim, width, cfg.tcn_kernel, cfg.tcn_blocks)
        self.lstm = nn.LSTM(width, width // 2, cfg.lstm_layers, batch_first=True, bidirectional=True,
                            dropout=cfg.dropout if cfg.lstm_layers > 1 else 0.0)
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(2 * (width // 2), n_glosses)

    def log_probs(self, tower: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F), (B, T) -> (B, T'', V) log-probabilities and (B,) output lengths."""
        h, frames = encode_frames(tower, x, mask)  # (B, T', W), (B, T')
        z, lengths = self.tcn(h * frames.unsqueeze(-1), frames.sum(1))  # (B, T'', W)
        packed = pack_padded_sequence(z, lengths.cpu(), batch_first=True, enforce_sorted=False)
        z, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=z.shape[1])
        return self.classifier(self.dropout(z)).log_softmax(-1), lengths

    def loss(self, tower: nn.Module, x: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor,
             target_lengths: torch.Tensor) -> torch.Tensor:
        """targets: (B, S) gloss indices (padded), target_lengths: (B,). Mean CTC loss per target gloss."""
        log_probs, lengths = self.log_probs(tower, x, mask)
        return F.ctc_loss(log_probs.transpose(0, 1).float(), targets, lengths, target_lengths, blank=0,
                          zero_infinity=True)

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Beam-search each sequence's gloss indices."""
        lp = log_probs.float().cpu().numpy()
        return [ctc_beam_search(lp[i, : int(n)], self.beam_size) for i, n in enumerate(lengths.tolist())]


class TranslationHead(nn.Module):
    """Gloss-free SLT: frame features -> MLP projector -> memory of a transformer decoder over word tokens;
    cross-entropy (teacher forcing), beam search."""

    def __init__(self, in_dim: int, vocab: list[str], cfg: TaskConfig):
        super().__init__()
        width = cfg.head_width or in_dim
        self.vocab, self.index = vocab, {w: i for i, w in enumerate(vocab)}
        self.pad, self.bos, self.eos, self.unk = (self.index[t] for t in (PAD, BOS, EOS, UNK))
        self.max_tokens, self.beam_size, self.length_penalty = cfg.max_text_tokens, cfg.beam_size, cfg.length_penalty
        self.label_smoothing = cfg.label_smoothing
        self.projector = nn.Sequential(nn.Linear(in_dim, width), nn.GELU(), nn.Linear(width, width))
        self.embed = nn.Embedding(len(vocab), width, padding_idx=self.pad)
        self.pos_embedding = nn.Parameter(torch.randn(cfg.max_text_tokens + 1, width) * 0.02)
        layer = nn.TransformerDecoderLayer(width, cfg.decoder_heads, 4 * width, cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, cfg.decoder_layers, norm=nn.LayerNorm(width))
        self.out = nn.Linear(width, len(vocab))

    def encode_text(self, texts: list[str], device: torch.device) -> torch.Tensor:
        """Sentences -> (B, L) token ids ``<bos> w1 .. wn <eos>`` (at most max_text_tokens words), padded."""
        ids = [[self.bos] + [self.index.get(w, self.unk) for w in words(t)][: self.max_tokens - 1] + [self.eos]
               for t in texts]
        out = torch.full((len(ids), max(map(len, ids))), self.pad, dtype=torch.long)
        for i, seq in enumerate(ids):
            out[i, : len(seq)] = torch.tensor(seq)
        return out.to(device)

    def memory(self, tower: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T', D) projected frame features and (B, T') real frames."""
        h, frames = encode_frames(tower, x, mask)
        return self.projector(h), frames

    def step_logits(self, tokens: torch.Tensor, memory: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """(B, L) tokens so far -> (B, L, V) next-token logits (causal)."""
        n = tokens.shape[1]
        h = self.embed(tokens) + self.pos_embedding[:n]
        causal = torch.triu(torch.ones(n, n, dtype=torch.bool, device=tokens.device), 1)
        h = self.decoder(h, memory, tgt_mask=causal, tgt_key_padding_mask=tokens == self.pad,
                         memory_key_padding_mask=~frames, tgt_is_causal=True)
        return self.out(h)

    def loss(self, tower: nn.Module, x: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, L) ``<bos> .. <eos>`` padded; cross-entropy of each next token."""
        memory, frames = self.memory(tower, x, mask)
        logits = self.step_logits(tokens[:, :-1], memory, frames)  # (B, L-1, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten(), ignore_index=self.pad,
                               label_smoothing=self.label_smoothing)

    @torch.no_grad()
    def translate(self, memory: torch.Tensor, frames: torch.Tensor) -> str:
        """Beam search for one pose: memory (1, T', D), frames (1, T') -> the sentence."""
        beams = [(0.0, [self.bos])]  # (sum of log-probs, tokens)
        done: list[tuple[float, list[int]]] = []
        for _ in range(self.max_tokens):
            tokens = torch.tensor([b[1] for b in beams], device=memory.device)  # (K, L)
            k = len(beams)
            lp = self.step_logits(tokens, memory.expand(k, -1, -1), frames.expand(k, -1))[:, -1].float()
            lp = lp.log_softmax(-1)
            lp[:, [self.pad, self.bos, self.unk]] = -np.inf  # never produced
            scores = torch.tensor([b[0] for b in beams], device=lp.device)[:, None] + lp  # (K, V)
            top = scores.flatten().topk(min(self.beam_size, scores.numel()))
            beams = []
            for score, flat in zip(top.values.tolist(), top.indices.tolist()):
                b, token = divmod(flat, lp.shape[1])
                seq = tokens[b].tolist() + [token]
                if token == self.eos:
                    done.append((score / (len(seq) - 1) ** self.length_penalty, seq))
                else:
                    beams.append((score, seq))
            if not beams or len(done) >= self.beam_size:
                break
        if not done:  # no sentence ended within max_tokens: the best unfinished one
            done = [(s / (len(seq) - 1) ** self.length_penalty, seq) for s, seq in beams]
        best = max(done, key=lambda d: d[0])[1]
        return detokenize(self.vocab[i] for i in best[1:] if i != self.eos)
