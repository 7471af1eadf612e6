"""A small causal model for multi-query associative recall (docs/math.md §5.4).

The model of Zoology's Fig. 2 (Arora et al. 2023, "Zoology: Measuring and
Improving Recall in Efficient Language Models"): a token embedding, learned
absolute positions (``positions="none"`` drops them), ``layers`` pre-norm
residual blocks and a final LayerNorm, with the output projection tied to the
embedding. Each block is

- an optional short causal depthwise convolution (``short_conv``, kernel
  ``conv_kernel`` = 3, Zoology's "hybrid" models: ``x + conv(LN(x))``),
- causal token mixing through :class:`~leapformer.nn.MultiheadAttention`
  with the chosen mechanism (any registered one with a causal form:
  ``softmax``, ``linear``, ``elu``, ``cosformer``, ``leap``, ``performer``;
  one head by default, as in Zoology),
- an optional MLP (``mlp``, :class:`leapformer.nn.blocks.FeedForward`;
  Zoology's Fig. 2 uses none: its state mixer is the identity).

:class:`~leapformer.nn.DecoderLayer` always has a feed-forward sublayer and
no convolution, so the block is assembled from the same parts instead.

``forward(inputs, labels)`` gathers the hidden states of the target positions
(``labels != -100``) *before* the output projection, so the ``vocab``-way
softmax is computed at the ``num_kv`` query positions only, never at every
position.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leapformer.nn import MECHANISMS, BlockConfig, MultiheadAttention
from leapformer.nn.blocks import FeedForward
from leapformer.nn.mechanisms import check_mechanism_name

__all__ = ["MQARConfig", "MQARModel", "ShortConv"]

POSITIONS = ("learned", "none")
IGNORE = -100


@dataclass
class MQARConfig:
    """Sizes and options of an :class:`MQARModel` (see the module docstring).

    ``max_length``: size of the learned position table (the longest input).
    ``mechanism_options`` go to the attention mechanism (e.g. ``{"step_down": 4}``).
    """

    vocab: int
    d_model: int
    attention: str = "softmax"
    layers: int = 2
    heads: int = 1
    max_length: int = 512
    positions: str = "learned"
    short_conv: bool = False
    conv_kernel: int = 3
    mlp: bool = False
    mlp_ratio: int = 4
    dropout: float = 0.0
    mechanism_options: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("vocab", "d_model", "layers", "heads", "max_length", "conv_kernel",
                     "mlp_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of heads "
                             f"({self.heads})")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {self.positions!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        check_mechanism_name(self.attention)
        if not MECHANISMS[self.attention].full:
            causal = sorted(n for n, cls in MECHANISMS.items() if cls.full)
            raise ValueError(f"attention mechanism {self.attention!r} has no causal form; "
                             f"MQAR needs one of {causal}")
        if not isinstance(self.mechanism_options, dict):
            raise ValueError(f"mechanism_options must be a dict, got "
                             f"{type(self.mechanism_options).__name__}")


class ShortConv(nn.Module):
    """Causal depthwise convolution over the sequence: ``y_t = sum_i w_i * x_{t-i}``,
    ``i < kernel`` (position ``t`` sees itself and the ``kernel - 1`` tokens before it)."""

    def __init__(self, d_model: int, kernel: int):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(d_model, d_model, kernel, groups=d_model, padding=kernel - 1)

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[1]
        return self.conv(x.transpose(1, 2))[..., :T].transpose(1, 2)


class MQARBlock(nn.Module):
    """Pre-norm residual block: [short conv], causal attention, [MLP]."""

    def __init__(self, cfg: MQARConfig):
        super().__init__()
        d = cfg.d_model
        self.conv = ShortConv(d, cfg.conv_kernel) if cfg.short_conv else None
        self.norm_conv = nn.LayerNorm(d) if cfg.short_conv else None
        self.attn = MultiheadAttention(d, cfg.heads, cfg.attention, dropout=cfg.dropout,
                                       mechanism_options=dict(cfg.mechanism_options))
        self.norm_attn = nn.LayerNorm(d)
        self.mlp = None
        if cfg.mlp:
            self.mlp = FeedForward(BlockConfig(d_model=d, nhead=cfg.heads,
                                               dim_feedforward=cfg.mlp_ratio * d,
                                               dropout=cfg.dropout, activation="gelu"))
        self.norm_mlp = nn.LayerNorm(d) if cfg.mlp else None
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        if self.conv is not None:
            x = x + self.dropout(self.conv(self.norm_conv(x)))
        x = x + self.dropout(self.attn(self.norm_attn(x), causal=True)[0])
        if self.mlp is not None:
            x = x + self.dropout(self.mlp(self.norm_mlp(x)))
        return x


class MQARModel(nn.Module):
    """``(inputs [B, T], labels [B, T]) -> (loss, logits [n_targets, vocab])``."""

    def __init__(self, cfg: MQARConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.pos = None
        if cfg.positions == "learned":
            self.pos = nn.Embedding(cfg.max_length, cfg.d_model)
            nn.init.normal_(self.pos.weight, std=0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(MQARBlock(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.d_model)

    def hidden_states(self, inputs: Tensor) -> Tensor:
        """Hidden states ``[B, T, d_model]`` after the last block (before the final norm)."""
        if not isinstance(inputs, Tensor) or inputs.dim() != 2 or inputs.dtype not in (
                torch.int64, torch.int32):
            raise ValueError(f"inputs must be an integer tensor [batch, length], got "
                             f"{getattr(inputs, 'dtype', type(inputs).__name__)} "
                             f"{list(getattr(inputs, 'shape', []))}")
        T = inputs.shape[1]
        if self.pos is not None and T > self.cfg.max_length:
            raise ValueError(f"inputs of length {T} are longer than the position table "
                             f"(max_length={self.cfg.max_length})")
        x = self.embed(inputs)
        if self.pos is not None:
            x = x + self.pos.weight[:T]
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return x

    def logits(self, hidden: Tensor) -> Tensor:
        """Final norm and the tied output projection: ``[..., d_model] -> [..., vocab]``."""
        return F.linear(self.norm(hidden), self.embed.weight)

    def forward(self, inputs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Mean cross-entropy over the target positions (``labels != -100``) and their
        logits ``[n_targets, vocab]``, rows in row-major order of the targets (those of
        ``labels[labels != -100]``). Hidden states are gathered at the targets before
        the output projection."""
        if not isinstance(labels, Tensor) or labels.shape != getattr(inputs, "shape", None):
            raise ValueError(f"labels must be a tensor of the inputs' shape "
                             f"{list(getattr(inputs, 'shape', []))}, got "
                             f"{list(getattr(labels, 'shape', []))}")
        h = self.hidden_states(inputs)
        mask = labels != IGNORE
        targets = labels[mask]
        if targets.numel() == 0:
            raise ValueError("labels hold no target (every position is -100)")
        logits = self.logits(h[mask])
        return F.cross_entropy(logits.float(), targets), logits

    def state_bytes(self, seq_len: int) -> int:
        """Decoding state of one layer for one sequence after ``seq_len`` tokens, in bytes:
        what the layer's attention cache holds (:mod:`leapformer.nn.cache`: keys and values
        of every token for softmax; the constant-size running sums ``S``/``z`` for the
        linear family, with the sin and cos halves of cosFormer and LeaP) plus, with
        ``short_conv``, the ``conv_kernel - 1`` previous inputs of the convolution."""
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")
        block = self.blocks[0]
        dtype = self.embed.weight.dtype
        cache = block.attn.new_cache(1, max_length=seq_len, device="meta", dtype=dtype)
        conv = 0
        if block.conv is not None:
            conv = (block.conv.kernel - 1) * self.cfg.d_model * self.embed.weight.element_size()
        return cache.nbytes + conv
