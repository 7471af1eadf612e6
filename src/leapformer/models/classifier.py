"""Sequence classifiers of the Long-Range Arena setting (docs/math.md §5.1).

Token embedding + learned positional embedding, an :class:`~leapformer.nn.Encoder`
whose self-attention mechanism is chosen by name, pooling and a two-layer head.
The LRA configuration (2 layers, width 64, FFN 128, 2 heads, dropout 0.1) is
the default. ``DualEncoderClassifier`` encodes two sequences with shared
weights and classifies ``[u, v, u * v, u - v]`` (the LRA Retrieval setting;
``pair_features="official"``), or, with ``pair_features="normalized"``,
``BatchNorm([u, v, u * v, |u - v|])``: mean-pooled features of two documents
share a large common part and differ by a small one, so the official features
start with almost no signal and a small dual encoder can sit at chance for its
whole budget; centring and scaling them over the batch (and an absolute
difference, symmetric in the two documents) lets it learn at once (the
``lite`` Retrieval profile, docs/lra.md "Tuning the lite profile"). The statistics
are those of each process's share of a batch (plain ``BatchNorm1d``, not synchronised
across data-parallel ranks); training needs at least 2 pairs per process.

Options that reproduce the official LRA harness (docs/lra.md, "Settings"):
``activation="gelu"``, ``init_std=0.02`` (token and position embeddings drawn
from ``N(0, 0.02^2)``; None: PyTorch's ``N(0, 1)``), ``head_hidden=128`` (None:
``d_model``), ``pad_to`` (every input right-padded to this fixed length, as the
official tensors are), ``attention_dropout`` (None: ``dropout``) and ``pooling``:

- ``"mean"`` (default): the mean over the unpadded tokens;
- ``"mean_padded"`` (official): padded rows zeroed, the sum divided by the
  tensor length (``pad_to`` when set; else the batch's longest input, which
  makes an item's features depend on its batch-mates);
- ``"cls"``: a learned vector prepended at position 0 (the official code
  prepends token ``vocab_size - 1``), its output pooled; an input that would
  then exceed ``max_length`` loses its last token, as the official one does.

``positions``: ``"learned"`` (default; the table drawn like the token embeddings)
or ``"sincos2d"`` for images flattened row by row, ``grid_width`` pixels a row:
the same trainable table, started at a 2-D sinusoidal code of (row, column),
``[sin(r f), cos(r f), sin(c f), cos(c f)]`` over ``d_model / 4`` frequencies
``f`` from 0.2 to 2 radians per pixel (geometric), so that attention can express
"near" and "far" from the first step (a randomly drawn table moves little at the
learning rates used; the ``lite`` Pathfinder profile, docs/lra.md). With
``pooling="cls"`` the code is shifted by one position, the CLS vector's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leapformer.nn import AttentionSpec, BlockConfig, Encoder

POOLINGS = ("mean", "mean_padded", "cls")
POSITIONS = ("learned", "sincos2d")


PAIR_FEATURES = ("official", "normalized")


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
    activation: str = "relu"
    pooling: str = "mean"
    head_hidden: int | None = None
    init_std: float | None = None
    pad_to: int | None = None
    attention_dropout: float | None = None
    pair_features: str = "official"
    positions: str = "learned"
    grid_width: int | None = None

    def __post_init__(self):
        for name in ("vocab_size", "num_classes", "max_length", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        AttentionSpec(enc=self.attention)  # validates the mechanism name
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        for name in ("head_hidden", "pad_to"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or a positive int, got {value!r}")
        if self.pad_to is not None and self.pad_to > self.max_length:
            raise ValueError(f"pad_to must be <= max_length={self.max_length}, got {self.pad_to}")
        if self.init_std is not None and not self.init_std > 0:
            raise ValueError(f"init_std must be None or > 0, got {self.init_std!r}")
        if self.attention_dropout is not None and not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError(f"attention_dropout must be None or in [0, 1), got "
                             f"{self.attention_dropout!r}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {self.positions!r}")
        if self.positions == "sincos2d":
            if not isinstance(self.grid_width, int) or self.grid_width < 1:
                raise ValueError(f"positions='sincos2d' needs grid_width (pixels per row) "
                                 f"as a positive int, got {self.grid_width!r}")
            if self.d_model % 4:
                raise ValueError(f"positions='sincos2d' needs d_model divisible by 4, got "
                                 f"{self.d_model}")
        if self.pair_features not in PAIR_FEATURES:
            raise ValueError(f"pair_features must be one of {PAIR_FEATURES}, got "
                             f"{self.pair_features!r}")
        self.block()  # validates the activation

    def block(self) -> BlockConfig:
        return BlockConfig(d_model=self.d_model, nhead=self.nhead,
                           dim_feedforward=self.dim_feedforward, dropout=self.dropout,
                           activation=self.activation)


class SequenceEncoder(nn.Module):
    """Tokens ``[B, L]`` -> pooled features ``[B, d_model]`` (``cfg.pooling``)."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        self.pos = nn.Embedding(cfg.max_length, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = Encoder(cfg.num_layers, cfg.block(), AttentionSpec(enc=cfg.attention),
                               {cfg.attention: cfg.mechanism_options})
        if cfg.pooling == "cls":
            self.cls = nn.Parameter(torch.randn(cfg.d_model) * (cfg.init_std or 1.0))
        if cfg.init_std is not None:
            nn.init.normal_(self.embed.weight, std=cfg.init_std)
            nn.init.normal_(self.pos.weight, std=cfg.init_std)
            with torch.no_grad():
                self.embed.weight[cfg.pad_id].zero_()
        if cfg.attention_dropout is not None:
            for layer in self.encoder.layers:
                layer.self_attn.attention.dropout = cfg.attention_dropout
        if cfg.positions == "sincos2d":
            with torch.no_grad():
                self.pos.weight.copy_(sincos2d_table(cfg.max_length, cfg.d_model, cfg.grid_width,
                                                     offset=int(cfg.pooling == "cls")))

    def forward(self, tokens: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"tokens must be an integer tensor [batch, length], got "
                             f"{tokens.dtype} {list(tokens.shape)}")
        cfg = self.cfg
        B, L = tokens.shape
        limit = cfg.pad_to or cfg.max_length
        if L > limit:
            raise ValueError(f"tokens have length {L} > "
                             f"{'pad_to' if cfg.pad_to else 'max_length'}={limit}")
        if key_padding_mask is None:
            key_padding_mask = tokens == cfg.pad_id
        elif key_padding_mask.shape != tokens.shape:
            raise ValueError(f"key_padding_mask must have shape {list(tokens.shape)}, got "
                             f"{list(key_padding_mask.shape)}")
        if cfg.pad_to is not None and L < cfg.pad_to:
            tokens = F.pad(tokens, (0, cfg.pad_to - L), value=cfg.pad_id)
            key_padding_mask = F.pad(key_padding_mask, (0, cfg.pad_to - L), value=True)
        x = self.embed(tokens)
        if cfg.pooling == "cls":
            keep_len = min(x.shape[1], cfg.max_length - 1)  # the official drops the last token
            x = torch.cat((self.cls.to(x.dtype).expand(B, 1, -1), x[:, :keep_len]), dim=1)
            key_padding_mask = F.pad(key_padding_mask[:, :keep_len], (1, 0), value=False)
        x = x + self.pos.weight[:x.shape[1]]
        x = self.encoder(self.dropout(x), key_padding_mask=key_padding_mask)
        if cfg.pooling == "cls":
            return x[:, 0]
        keep = (~key_padding_mask).unsqueeze(-1).to(x.dtype)
        if cfg.pooling == "mean_padded":
            return (x * keep).mean(1)
        return (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)


def sincos2d_table(length: int, d_model: int, width: int, offset: int = 0) -> Tensor:
    """``[length, d_model]``: row ``offset + i`` codes pixel ``i`` of an image ``width``
    pixels wide (row ``i // width``, column ``i % width``) as ``[sin(r f), cos(r f),
    sin(c f), cos(c f)]`` with ``d_model / 4`` geometric frequencies ``f`` in [0.2, 2];
    the first ``offset`` rows are zero."""
    n = d_model // 4
    freqs = torch.exp(torch.linspace(torch.log(torch.tensor(0.2)), torch.log(torch.tensor(2.0)),
                                     n, dtype=torch.float64))
    i = torch.arange(max(0, length - offset), dtype=torch.float64)
    r, c = (i // width)[:, None] * freqs, (i % width)[:, None] * freqs
    table = torch.zeros(length, d_model, dtype=torch.float64)
    table[offset:] = torch.cat([r.sin(), r.cos(), c.sin(), c.cos()], dim=1)
    return table.float()


def _head(d_in: int, d: int, classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d), nn.ReLU(), nn.Linear(d, classes))


def _head_width(cfg: ClassifierConfig) -> int:
    return cfg.head_hidden or cfg.d_model


class SequenceClassifier(nn.Module):
    """``tokens [B, L]`` -> logits ``[B, num_classes]``."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = SequenceEncoder(cfg)
        self.head = _head(cfg.d_model, _head_width(cfg), cfg.num_classes)

    def forward(self, tokens: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        return self.head(self.encoder(tokens, key_padding_mask))


class DualEncoderClassifier(nn.Module):
    """Two token sequences ``[B, L1]``, ``[B, L2]`` -> logits ``[B, num_classes]``
    from ``[u, v, u * v, u - v]`` of one shared encoder (LRA Retrieval)."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = SequenceEncoder(cfg)
        self.norm = (nn.BatchNorm1d(4 * cfg.d_model) if cfg.pair_features == "normalized"
                     else nn.Identity())
        self.head = _head(4 * cfg.d_model, _head_width(cfg), cfg.num_classes)

    def forward(self, tokens1: Tensor, tokens2: Tensor) -> Tensor:
        if tokens1.shape[0] != tokens2.shape[0]:
            raise ValueError(f"the two inputs must share the batch size, got "
                             f"{list(tokens1.shape)} and {list(tokens2.shape)}")
        if self.training and self.cfg.pair_features == "normalized" and tokens1.shape[0] < 2:
            raise ValueError("pair_features='normalized' batch-normalises over the pairs of a "
                             "batch: training needs at least 2 pairs per batch (per process), "
                             f"got {tokens1.shape[0]}")
        u, v = self.encoder(tokens1), self.encoder(tokens2)
        diff = (u - v).abs() if self.cfg.pair_features == "normalized" else u - v
        return self.head(self.norm(torch.cat((u, v, u * v, diff), dim=-1)))


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
