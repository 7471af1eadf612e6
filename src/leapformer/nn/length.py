"""Target-length predictors for length-re-weighted decoders (MLA paper §3.3, docs/math.md §3).

cosFormer-style cross-attention normalises query positions by the target
length ``M``, which is unknown at inference. Three cheap predictors:

- :class:`RatioLength`  ``M = round(r * N)`` -- needs ``src_lengths`` only.
- :class:`LookupLength` ``M = round(damping * sum_j table[x_j])`` over the
  non-pad source tokens -- needs ``src_tokens``.
- :class:`ConvLength`   FastSpeech2-style two-conv network on the encoder
  output, trained with :func:`length_loss` -- needs ``encoder_out``.

All share ``predict(src_lengths [B], *, src_tokens [B,N], encoder_out [B,N,E],
src_key_padding_mask [B,N]) -> LongTensor [B]`` with every length >= 1.
Rounding is ``torch.round`` (half to even). Padding masks follow PyTorch:
True = padding; without a mask, positions ``>= src_lengths`` are padding.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import logging
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

__all__ = ["LengthPredictor", "RatioLength", "LookupLength", "ConvLength", "length_loss",
           "build_length_predictor", "PREDICTORS"]


def _shape(t: Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _is_int(t) -> bool:
    return isinstance(t, Tensor) and not (
        t.dtype == torch.bool or t.is_floating_point() or t.is_complex())


def _as_long_1d(name: str, x) -> Tensor:
    t = x if isinstance(x, Tensor) else torch.as_tensor(x)
    if not _is_int(t):
        raise TypeError(f"{name} must hold integers, got dtype {t.dtype}")
    if t.dim() != 1:
        raise ValueError(f"{name} must have shape [batch], got {_shape(t)}")
    if (t < 0).any():
        raise ValueError(f"{name} must be non-negative, got {t.tolist()}")
    return t.long()


def _check_mask(mask: Tensor, B: int, n: int) -> None:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError("src_key_padding_mask must be a bool tensor (True = padding)")
    if tuple(mask.shape) != (B, n):
        raise ValueError(f"src_key_padding_mask must have shape [{B}, {n}], got {_shape(mask)}")


def _padding_mask(src_lengths: Tensor, n: int, mask: Tensor | None) -> Tensor:
    """Bool ``[B, n]``, True = padding; checked against ``src_lengths [B]``."""
    B = src_lengths.shape[0]
    if mask is None:
        if B and int(src_lengths.max()) > n:
            raise ValueError(f"src_lengths {src_lengths.tolist()} exceed source length {n}")
        return torch.arange(n, device=src_lengths.device) >= src_lengths[:, None]
    _check_mask(mask, B, n)
    if not torch.equal((~mask).sum(1), src_lengths.to(mask.device)):
        raise ValueError("src_key_padding_mask disagrees with src_lengths: "
                         f"{(~mask).sum(1).tolist()} non-pad tokens vs {src_lengths.tolist()}")
    return mask


def _to_length(x: Tensor) -> Tensor:
    return torch.round(x).clamp_min(1).long()


class LengthPredictor(nn.Module, ABC):
    """Base class: ``predict(src_lengths [B], **inputs) -> LongTensor [B]`` (>= 1)."""

    @abstractmethod
    def predict(self, src_lengths: Tensor, *, src_tokens: Tensor | None = None,
                encoder_out: Tensor | None = None,
                src_key_padding_mask: Tensor | None = None) -> Tensor:
        """Predicted target lengths (each subclass states which inputs it needs)."""

    def _require(self, name: str, value):
        if value is None:
            raise ValueError(f"{type(self).__name__}.predict needs {name}")
        return value


class RatioLength(LengthPredictor):
    """``M = max(1, round(ratio * N))``; needs only ``src_lengths [B]``.

    ``ratio`` is a float64 buffer, so it travels with ``state_dict``.
    """

    def __init__(self, ratio: float) -> None:
        super().__init__()
        ratio = float(ratio)
        if not ratio > 0 or ratio == float("inf"):
            raise ValueError(f"ratio must be a finite number > 0, got {ratio}")
        self.register_buffer("ratio", torch.tensor(ratio, dtype=torch.float64))

    @classmethod
    def fit(cls, src_lengths, tgt_lengths) -> RatioLength:
        """Fit ``r = sum(tgt) / sum(src)`` over a training set (lists or tensors ``[K]``).

        The ratio of totals (not the mean of per-pair ratios) weights pairs by
        length, so short, noisy pairs do not dominate, and it makes the predicted
        total length over the training set equal the true total.
        """
        src = _as_long_1d("src_lengths", src_lengths)
        tgt = _as_long_1d("tgt_lengths", tgt_lengths)
        if src.shape != tgt.shape:
            raise ValueError(f"src_lengths {_shape(src)} and tgt_lengths {_shape(tgt)} differ")
        if src.sum() == 0:
            raise ValueError("src_lengths must not all be zero")
        ratio = tgt.sum().item() / src.sum().item()
        logger.debug("RatioLength.fit: r = %.4f over %d pairs", ratio, src.numel())
        return cls(ratio)

    def predict(self, src_lengths, *, src_tokens=None, encoder_out=None,
                src_key_padding_mask=None) -> Tensor:
        src = _as_long_1d("src_lengths", src_lengths)
        return _to_length(self.ratio * src.to(self.ratio))

    forward = predict


class LookupLength(LengthPredictor):
    """``M = max(1, round(damping * sum_j table[x_j]))`` over non-pad tokens ``x_j``.

    Needs ``src_tokens [B, N]``. ``table`` maps token id -> average number of
    target units; a dict (ids absent use ``default``) or a tensor ``[V]``.
    Ids outside ``[0, vocab_size)`` also use ``default`` (the global average).
    Buffers: ``table`` (float64 ``[V]``, unknowns filled with ``default``),
    ``known`` (bool ``[V]``), ``default``, ``damping``.
    """

    def __init__(self, table: Mapping[int, float] | Tensor, default: float,
                 damping: float = 1.0, vocab_size: int | None = None) -> None:
        super().__init__()
        if not damping > 0:
            raise ValueError(f"damping must be > 0, got {damping}")
        if isinstance(table, Tensor):
            if table.dim() != 1 or (vocab_size is not None and table.numel() != vocab_size):
                raise ValueError(f"table must have shape [vocab_size={vocab_size}], "
                                 f"got {_shape(table)}")
            values, known = table.double().clone(), torch.ones(table.numel(), dtype=torch.bool)
        elif isinstance(table, Mapping):
            size = vocab_size if vocab_size is not None else max(table, default=-1) + 1
            if any(not 0 <= int(k) < size for k in table):
                raise ValueError(f"table keys must lie in [0, vocab_size={size})")
            values = torch.full((size,), float(default), dtype=torch.float64)
            known = torch.zeros(size, dtype=torch.bool)
            for k, v in table.items():
                values[int(k)], known[int(k)] = float(v), True
        else:
            raise TypeError(f"table must be a dict or a tensor, got {type(table).__name__}")
        if values.numel() == 0:
            raise ValueError("table must cover at least one token id (vocab_size >= 1)")
        self.register_buffer("table", values)
        self.register_buffer("known", known)
        self.register_buffer("default", torch.tensor(float(default), dtype=torch.float64))
        self.register_buffer("damping", torch.tensor(float(damping), dtype=torch.float64))

    @classmethod
    def fit(cls, sources: Sequence[Sequence[int]],
            durations: Sequence[Sequence[float]] | None = None,
            target_lengths: Sequence[int] | None = None, *,
            vocab_size: int | None = None, damping: float = 1.0) -> LookupLength:
        """Fit the table from ``sources`` (K token lists) and exactly one of:

        - ``durations``: per source token its number of aligned target units
          (same shape as ``sources``); table = per-token mean duration.
        - ``target_lengths`` ``[K]``: no alignment; each pair spreads its target
          length uniformly, ``tgt_len / src_len`` per occurrence; table = mean.

        ``default`` = total target units / total source tokens.
        """
        if (durations is None) == (target_lengths is None):
            raise ValueError("give exactly one of durations or target_lengths")
        toks = [torch.as_tensor(s, dtype=torch.long).reshape(-1) for s in sources]
        if durations is not None:
            if len(durations) != len(toks):
                raise ValueError(f"{len(durations)} durations for {len(toks)} sources")
            units = [torch.as_tensor(d, dtype=torch.float64).reshape(-1) for d in durations]
        else:
            if len(target_lengths) != len(toks):
                raise ValueError(f"{len(target_lengths)} target_lengths for {len(toks)} sources")
            if any(t.numel() == 0 for t in toks):
                raise ValueError("every source needs at least one token to spread its length")
            units = [torch.full(t.shape, float(m) / t.numel(), dtype=torch.float64)
                     for t, m in zip(toks, target_lengths)]
        for i, (t, u) in enumerate(zip(toks, units)):
            if t.shape != u.shape:
                raise ValueError(f"source {i} has {t.numel()} tokens but {u.numel()} durations")
        tok, unit = torch.cat(toks), torch.cat(units)
        if tok.numel() == 0 or (tok < 0).any():
            raise ValueError("sources must hold at least one token, all ids >= 0")
        size = vocab_size if vocab_size is not None else int(tok.max()) + 1
        if int(tok.max()) >= size:
            raise ValueError(f"token id {int(tok.max())} >= vocab_size {size}")
        total = torch.zeros(size, dtype=torch.float64).index_add_(0, tok, unit)
        count = torch.bincount(tok, minlength=size).double()
        default = unit.sum().item() / tok.numel()
        table = {i: (total[i] / count[i]).item() for i in count.nonzero().flatten().tolist()}
        logger.debug("LookupLength.fit: %d known tokens, default %.4f", len(table), default)
        return cls(table, default, damping=damping, vocab_size=size)

    def predict(self, src_lengths, *, src_tokens=None, encoder_out=None,
                src_key_padding_mask=None) -> Tensor:
        src = _as_long_1d("src_lengths", src_lengths)
        tokens = self._require("src_tokens", src_tokens)
        if not _is_int(tokens):
            raise TypeError("src_tokens must be an integer tensor [batch, source_length]")
        if tokens.dim() != 2 or tokens.shape[0] != src.shape[0]:
            raise ValueError(f"src_tokens must be [{src.shape[0]}, N], got {_shape(tokens)}")
        pad = _padding_mask(src, tokens.shape[1], src_key_padding_mask)
        inside = (tokens >= 0) & (tokens < self.table.numel())
        values = self.table[tokens.clamp(0, self.table.numel() - 1)]
        values = torch.where(inside, values, self.default).masked_fill(pad, 0.0)
        return _to_length(self.damping * values.sum(1))

    forward = predict


class ConvLength(LengthPredictor):
    """FastSpeech2-style predictor on the encoder output ``[B, N, E]``.

    Two blocks ``Conv1d(kernel, 'same') -> ReLU -> LayerNorm -> Dropout``, then
    ``Linear(hidden, 1) -> softplus`` gives each source token a non-negative
    share; padded tokens give 0 and the length is the sum. Padded positions
    are zeroed before each conv, so padding never changes a real item's result.
    ``forward`` returns float ``[B]`` for training with :func:`length_loss`;
    ``predict`` rounds it (call ``.eval()`` first to switch dropout off).
    """

    def __init__(self, embed_dim: int, hidden: int = 256, kernel_size: int = 3,
                 dropout: float = 0.1) -> None:
        super().__init__()
        for name, v in (("embed_dim", embed_dim), ("hidden", hidden),
                        ("kernel_size", kernel_size)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.embed_dim = embed_dim
        self.convs = nn.ModuleList([nn.Conv1d(embed_dim, hidden, kernel_size, padding="same"),
                                    nn.Conv1d(hidden, hidden, kernel_size, padding="same")])
        self.norms = nn.ModuleList([nn.LayerNorm(hidden), nn.LayerNorm(hidden)])
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden, 1)

    def forward(self, encoder_out: Tensor, src_key_padding_mask: Tensor | None = None) -> Tensor:
        """Float lengths ``[B]`` from ``encoder_out [B, N, E]`` and mask ``[B, N]``."""
        if not isinstance(encoder_out, Tensor) or not encoder_out.is_floating_point():
            raise TypeError("encoder_out must be a floating-point tensor [batch, length, embed]")
        if encoder_out.dim() != 3 or encoder_out.shape[2] != self.embed_dim:
            raise ValueError(f"encoder_out must have shape [batch, length, {self.embed_dim}], "
                             f"got {_shape(encoder_out)}")
        B, N, _ = encoder_out.shape
        mask = src_key_padding_mask
        if mask is None:
            mask = torch.zeros(B, N, dtype=torch.bool, device=encoder_out.device)
        _check_mask(mask, B, N)
        if N == 0:  # no source tokens, nothing to sum (conv1d rejects empty input)
            return encoder_out.new_zeros(B)
        keep = (~mask).unsqueeze(-1).to(encoder_out.dtype)
        x = encoder_out
        for conv, norm in zip(self.convs, self.norms):
            x = conv((x * keep).transpose(1, 2)).transpose(1, 2)
            x = self.dropout(norm(F.relu(x)))
        share = F.softplus(self.proj(x).squeeze(-1)).masked_fill(mask, 0.0)
        return share.sum(1)

    def predict(self, src_lengths, *, src_tokens=None, encoder_out=None,
                src_key_padding_mask=None) -> Tensor:
        src = _as_long_1d("src_lengths", src_lengths)
        enc = self._require("encoder_out", encoder_out)
        if not isinstance(enc, Tensor) or enc.dim() != 3 or enc.shape[0] != src.shape[0]:
            got = _shape(enc) if isinstance(enc, Tensor) else type(enc).__name__
            raise ValueError(f"encoder_out must be [{src.shape[0]}, N, E], got {got}")
        mask = _padding_mask(src.to(enc.device), enc.shape[1], src_key_padding_mask)
        with torch.no_grad():
            return _to_length(self(enc, mask))


def length_loss(pred: Tensor, target_lengths: Tensor) -> Tensor:
    """MSE between ``log(pred + 1)`` and ``log(target + 1)``, both ``[B]`` (scalar out).

    FastSpeech2 trains its duration predictor in the log domain so that long
    and short sequences weigh alike in relative error.
    """
    if not isinstance(pred, Tensor) or not pred.is_floating_point():
        raise TypeError("pred must be a floating-point tensor [batch]")
    if not isinstance(target_lengths, Tensor):
        raise TypeError("target_lengths must be a tensor [batch]")
    if pred.dim() != 1 or tuple(target_lengths.shape) != tuple(pred.shape):
        raise ValueError(f"pred and target_lengths must both have shape [batch], "
                         f"got {_shape(pred)} and {_shape(target_lengths)}")
    return F.mse_loss(torch.log1p(pred), torch.log1p(target_lengths.to(pred)))


PREDICTORS: dict[str, type[LengthPredictor]] = {
    "ratio": RatioLength, "lookup": LookupLength, "conv": ConvLength}


def build_length_predictor(name: str, **kwargs) -> LengthPredictor:
    """Build a predictor by name (``"ratio"``, ``"lookup"``, ``"conv"``) from kwargs."""
    if name not in PREDICTORS:
        raise ValueError(f"unknown length predictor {name!r}; valid names: {sorted(PREDICTORS)}")
    return PREDICTORS[name](**kwargs)
