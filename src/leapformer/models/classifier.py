"""Sequence classifiers of the Long-Range Arena setting (docs/math.md §5.1).

Token embedding + learned positional embedding, an :class:`~leapformer.nn.Encoder`
whose self-attention mechanism is chosen by name, mean pooling over the
unpadded tokens and a two-layer head. The LRA configuration (2 layers, width
64, FFN 128, 2 heads, dropout 0.1) is the default. ``DualEncoderClassifier``
encodes two sequences with shared weights and classifies
``[u, v, u * v, u - v]`` (the LRA Retrieval setting).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from leapformer.nn import AttentionSpec, BlockConfig, Encoder


@dataclass
class ClassifierConfig:
    """Sizes of a classifier; the defaults are the LRA model of docs/math.md §5.1."""

    vocab_size: int
    num_classes: int
    max_length: int
    attention: str = "softmax"
    d_model: int = 64
    nhead: int = 2
    num_layers: int = 2
    dim_feedforward: int = 128
    dropout: float = 0.1
    pad_id: int = 0
    mechanism_options: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("vocab_size", "num_classes", "max_length", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        AttentionSpec(enc=self.attention)  # validates the mechanism name

    def block(self) -> BlockConfig:
        return BlockConfig(d_model=self.d_model, nhead=self.nhead,
                           dim_feedforward=self.dim_feedforward, dropout=self.dropout)


class SequenceEncoder(nn.Module):
    """Tokens ``[B, L]`` -> pooled features ``[B, d_model]`` (mean over unpadded tokens)."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        self.pos = nn.Embedding(cfg.max_length, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = Encoder(cfg.num_layers, cfg.block(), AttentionSpec(enc=cfg.attention),
                               {cfg.attention: cfg.mechanism_options})

    def forward(self, tokens: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"tokens must be an integer tensor [batch, length], got "
                             f"{tokens.dtype} {list(tokens.shape)}")
        B, L = tokens.shape
        if L > self.cfg.max_length:
            raise ValueError(f"tokens have length {L} > max_length={self.cfg.max_length}")
        if key_padding_mask is None:
            key_padding_mask = tokens == self.cfg.pad_id
        elif key_padding_mask.shape != tokens.shape:
            raise ValueError(f"key_padding_mask must have shape {list(tokens.shape)}, got "
                             f"{list(key_padding_mask.shape)}")
        x = self.embed(tokens) + self.pos.weight[:L]
        x = self.encoder(self.dropout(x), key_padding_mask=key_padding_mask)
        keep = (~key_padding_mask).unsqueeze(-1).to(x.dtype)
        return (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)


def _head(d_in: int, d: int, classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d), nn.ReLU(), nn.Linear(d, classes))


class SequenceClassifier(nn.Module):
    """``tokens [B, L]`` -> logits ``[B, num_classes]``."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = SequenceEncoder(cfg)
        self.head = _head(cfg.d_model, cfg.d_model, cfg.num_classes)

    def forward(self, tokens: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        return self.head(self.encoder(tokens, key_padding_mask))


class DualEncoderClassifier(nn.Module):
    """Two token sequences ``[B, L1]``, ``[B, L2]`` -> logits ``[B, num_classes]``
    from ``[u, v, u * v, u - v]`` of one shared encoder (LRA Retrieval)."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = SequenceEncoder(cfg)
        self.head = _head(4 * cfg.d_model, cfg.d_model, cfg.num_classes)

    def forward(self, tokens1: Tensor, tokens2: Tensor) -> Tensor:
        if tokens1.shape[0] != tokens2.shape[0]:
            raise ValueError(f"the two inputs must share the batch size, got "
                             f"{list(tokens1.shape)} and {list(tokens2.shape)}")
        u, v = self.encoder(tokens1), self.encoder(tokens2)
        return self.head(torch.cat((u, v, u * v, u - v), dim=-1))


def lra_mechanism_options(attention: str, max_length: int) -> dict:
    """Options of the LRA baselines as the Skyformer harness sets them (docs/math.md §5.1):
    Performer 128 random features, Linformer projections sized by the maximum
    length (k = 128, its default); Nystromformer 128 landmarks, Skyformer 128
    features, Reformer 2 hashes, BigBird 3 random blocks of 64 are the mechanisms'
    own defaults."""
    if attention == "performer":
        return {"num_features": 128}
    if attention == "linformer":
        return {"max_length": max_length}
    return {}
