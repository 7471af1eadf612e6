"""Decoder-only language model (docs/math.md §5.2).

``CausalLM``: token embedding (scaled by ``sqrt(d_model)``), positions
(``learned``, ``sinusoidal`` or ``none``), a pre-norm
:class:`~leapformer.nn.Decoder` without cross-attention whose causal
self-attention mechanism is chosen by name (one for every layer, or one per
layer: an MLA hybrid such as softmax + LeaP), the decoder's final LayerNorm,
and an output projection tied to the embedding (``tie_embeddings=False``
unties it)::

    h_0 = dropout(sqrt(d) E[x_t] + pos(p_t)),   logits_t = LN(h_L,t) E^T

Positions are per item and 1-based at the item's first real token: left
padding does not shift them (``p_t`` counts the unpadded tokens up to ``t``).
With ``positions="none"`` only the attention can carry order (the causal mask,
and cosFormer's / LeaP's re-weighting).

Padding (``key_padding_mask [B, T]``, True = padding): each row's real tokens
must be contiguous (left and/or right padding). Padded keys never reach a real
token. Length-dependent attention (cosFormer) uses each item's own target
length (by default its unpadded length); its positions inside the mechanism
are the column indices, shifted by the left padding, which leaves
``cos(pi/2 (i - j) / L)`` unchanged, so left padding is exact for it too
(``length_mode="stepping"`` excepted in the full forward: there the weight
``cos(pi/2 (1 - j/i))`` depends on ``i`` itself; its cached path is exact).

Decoding: ``cache = model.new_cache(B)`` then ``model(tokens, cache=cache)``
for ``T >= 1`` new tokens per call (a prompt, then one token per step). The
cache is an :class:`LMCache` wrapping the decoder's caches (constant-size
running sums for linear mechanisms, keys and values for softmax) with the
per-item token counts. A prefill may be left-padded (``key_padding_mask``),
which the self-attention caches of :mod:`leapformer.nn` take as they are:
padded keys are dropped from the linear running sums (zeroed after the
feature map) and masked out of the softmax keys at every later step, and the
positions inside the mechanisms (cosFormer's, its ``stepping`` mode's too)
count each item's real tokens only, so a padded item decodes as if alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leapformer.nn import MECHANISMS, AttentionSpec, BlockConfig, Decoder, DecoderCache
from leapformer.nn.mechanisms import check_mechanism_name

POSITIONS = ("learned", "sinusoidal", "none")

#: Size presets (override any field with keyword arguments of :meth:`LMConfig.preset`).
#: ``wikitext103``: fairseq's ``transformer_lm_wiki103`` sizes (16 layers, 1024
#: wide, 8 heads, FFN 4096, dropout 0.3, 512-token samples, sinusoidal
#: positions) without its adaptive input and adaptive softmax. Over its
#: 267,744-word vocabulary those shrink the embedding; with a plain tied
#: embedding of ``vocab x 1024`` the parameter count differs from the ~140M of
#: docs/math.md §5.2 (it is ~476M for 267,744 words, ~201M of them in the layers):
#: :func:`count_parameters` gives it for any vocabulary.
#: ``lite``: 2 layers, 128 wide, 2 heads, FFN 512, 256 tokens, dropout 0.1 —
#: 0.4M parameters in the layers plus ``vocab x 128``: a 2000-step run takes
#: about 15 minutes on one CPU thread, so mechanisms can be compared over seeds.
#: ``small``: 4 layers, 256 wide, 4 heads, FFN 1024, 512 tokens, dropout 0.1 —
#: 3.2M parameters in the layers plus ``vocab x 256`` (the model of the LM
#: speed benchmark; a 2000-step run is about 1.5 hours on one thread).
LM_PRESETS: dict[str, dict] = {
    "wikitext103": {"num_layers": 16, "d_model": 1024, "nhead": 8, "dim_feedforward": 4096,
                    "dropout": 0.3, "context_length": 512, "positions": "sinusoidal"},
    "lite": {"num_layers": 2, "d_model": 128, "nhead": 2, "dim_feedforward": 512,
             "dropout": 0.1, "context_length": 256, "positions": "sinusoidal"},
    "small": {"num_layers": 4, "d_model": 256, "nhead": 4, "dim_feedforward": 1024,
              "dropout": 0.1, "context_length": 512, "positions": "sinusoidal"},
}


@dataclass
class LMConfig:
    """Sizes and options of a :class:`CausalLM`.

    ``attention`` names the self-attention mechanism of every layer (any
    registered mechanism with causal support: ``softmax``, ``linear``,
    ``elu``, ``cosformer``, ``leap``, ``performer``, ...), with
    ``mechanism_options`` passed to it (e.g. ``{"step_down": 4}`` for LeaP).
    A list of ``num_layers`` names gives each layer its own mechanism (MLA,
    e.g. a hybrid ``["softmax", "leap", "leap"]``); ``mechanism_options`` is
    then a dict mechanism name -> options (``{"leap": {"step_down": 4}}``).
    ``context_length`` is the training sample length: the size of the learned
    position table and cosFormer's fixed length when generating
    (``cosformer_length="train"``). ``pad_id`` (None: no padding token) has a
    zero embedding row and is what :meth:`CausalLM.loss` treats as padding.
    """

    vocab_size: int
    context_length: int = 512
    attention: str | list[str] = "softmax"
    num_layers: int = 6
    d_model: int = 512
    nhead: int = 8
    dim_feedforward: int = 2048
    dropout: float = 0.1
    activation: str = "relu"
    positions: str = "sinusoidal"
    tie_embeddings: bool = True
    scale_embedding: bool = True
    pad_id: int | None = 0
    mechanism_options: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "num_layers"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {self.positions!r}")
        if isinstance(self.attention, tuple):
            self.attention = list(self.attention)
        if not isinstance(self.attention, (str, list)) or isinstance(self.attention, list) and \
                not all(isinstance(n, str) for n in self.attention):
            raise TypeError(f"attention must be a mechanism name or a list of names, got "
                            f"{self.attention!r}")
        if isinstance(self.attention, list) and len(self.attention) != self.num_layers:
            raise ValueError(f"attention names {len(self.attention)} mechanisms for "
                             f"num_layers={self.num_layers}; give one name, or one per layer")
        for name in self.layer_attention:
            check_mechanism_name(name)
            if not MECHANISMS[name].full:
                causal = sorted(n for n, cls in MECHANISMS.items() if cls.full)
                raise ValueError(f"attention mechanism {name!r} has no causal form; a "
                                 f"causal LM needs one of {causal}")
        if self.pad_id is not None and not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id must be in [0, vocab_size={self.vocab_size}) or None, "
                             f"got {self.pad_id}")
        if not isinstance(self.mechanism_options, dict):
            raise TypeError(f"mechanism_options must be a dict, got "
                            f"{type(self.mechanism_options).__name__}")
        if isinstance(self.attention, list):
            for name, options in self.mechanism_options.items():
                if name not in self.attention or not isinstance(options, dict):
                    raise ValueError(f"with per-layer attention, mechanism_options must map "
                                     f"mechanisms of {sorted(set(self.attention))} to option "
                                     f"dicts, got {name!r}: {options!r}")
        self.block()  # validates d_model / nhead / activation

    @property
    def layer_attention(self) -> list[str]:
        """The mechanism name of each layer."""
        if isinstance(self.attention, list):
            return list(self.attention)
        return [self.attention] * self.num_layers

    def options_by_mechanism(self) -> dict[str, dict]:
        """``mechanism_options`` as mechanism name -> options (the form
        :class:`~leapformer.nn.Decoder` takes)."""
        if isinstance(self.attention, list):
            return {name: dict(options) for name, options in self.mechanism_options.items()}
        return {self.attention: self.mechanism_options}

    @classmethod
    def preset(cls, name: str, vocab_size: int, **overrides) -> LMConfig:
        """The sizes of :data:`LM_PRESETS` ``[name]`` for ``vocab_size`` words, with overrides."""
        if name not in LM_PRESETS:
            raise ValueError(f"unknown LM preset {name!r}; known: {sorted(LM_PRESETS)}")
        return cls(vocab_size=vocab_size, **{**LM_PRESETS[name], **overrides})

    def block(self) -> BlockConfig:
        return BlockConfig(d_model=self.d_model, nhead=self.nhead,
                           dim_feedforward=self.dim_feedforward, dropout=self.dropout,
                           activation=self.activation, norm_first=True)


def count_parameters(cfg: LMConfig) -> int:
    """Number of trainable parameters of ``CausalLM(cfg)`` (a tied embedding counted
    once), counted on the meta device: no memory is allocated, so presets with a
    large vocabulary are cheap to count."""
    with torch.device("meta"):
        model = CausalLM(cfg)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(eq=False)
class LMCache:
    """Decoding state of a :class:`CausalLM`: the decoder's caches plus, per item,
    the real tokens consumed (``lengths [B]``, the position of the last one)."""

    decoder: DecoderCache
    lengths: Tensor

    @property
    def batch_size(self) -> int:
        return self.lengths.shape[0]

    @property
    def length(self) -> int:
        """Slots consumed (padded ones included)."""
        return self.decoder.length

    @property
    def nbytes(self) -> int:
        return self.decoder.nbytes


def sinusoidal_embedding(positions: Tensor, dim: int) -> Tensor:
    """``[sin(p w_0), .., sin(p w_{h-1}), cos(p w_0), .., cos(p w_{h-1})]`` with
    ``w_i = 10000^(-i / (h - 1))``, ``h = dim // 2`` (fairseq's layout; an odd
    ``dim`` gets a zero last channel). ``positions [...]`` -> ``[..., dim]`` float32."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, device=positions.device, dtype=torch.float32)
                     * -(math.log(10000.0) / max(half - 1, 1)))
    angle = positions.to(torch.float32).unsqueeze(-1) * freq
    emb = torch.cat((angle.sin(), angle.cos()), dim=-1)
    return F.pad(emb, (0, dim % 2))


def _check_tokens(tokens: Tensor) -> None:
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.dtype not in (
            torch.int64, torch.int32):
        raise ValueError(f"tokens must be an integer tensor [batch, length], got "
                         f"{getattr(tokens, 'dtype', type(tokens).__name__)} "
                         f"{list(getattr(tokens, 'shape', []))}")
    if tokens.shape[1] < 1:
        raise ValueError(f"tokens must hold at least one position, got {list(tokens.shape)}")


def _check_mask(mask: Tensor | None, tokens: Tensor) -> None:
    if mask is None:
        return
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError("key_padding_mask must be a bool tensor (True = padding), got "
                        f"{getattr(mask, 'dtype', type(mask).__name__)}")
    if mask.shape != tokens.shape:
        raise ValueError(f"key_padding_mask must have the shape of tokens {list(tokens.shape)}, "
                         f"got {list(mask.shape)}")


class CausalLM(nn.Module):
    """``tokens [B, T]`` -> next-token logits ``[B, T, vocab_size]`` (see the module docstring)."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d, padding_idx=cfg.pad_id)
        nn.init.normal_(self.embed.weight, std=d ** -0.5)  # fairseq's init, fit for tying
        if cfg.pad_id is not None:
            with torch.no_grad():
                self.embed.weight[cfg.pad_id].zero_()
        self.embed_scale = math.sqrt(d) if cfg.scale_embedding else 1.0
        self.pos = nn.Embedding(cfg.context_length, d) if cfg.positions == "learned" else None
        self.dropout = nn.Dropout(cfg.dropout)
        names = cfg.layer_attention
        spec = AttentionSpec(dec=names[0], layers={("dec", i): n for i, n in enumerate(names)
                                                   if n != names[0]})
        self.decoder = Decoder(cfg.num_layers, cfg.block(), spec, cfg.options_by_mechanism(),
                               cross=False)
        self.output = None
        if not cfg.tie_embeddings:
            self.output = nn.Linear(d, cfg.vocab_size, bias=False)
            nn.init.normal_(self.output.weight, std=d ** -0.5)

    # -- pieces ------------------------------------------------------------------
    def embed_tokens(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """``sqrt(d) E[tokens] + pos(positions)`` (1-based positions ``[B, T]``), before dropout."""
        x = self.embed(tokens) * self.embed_scale
        if self.cfg.positions == "learned":
            x = x + self.pos(positions - 1)
        elif self.cfg.positions == "sinusoidal":
            x = x + sinusoidal_embedding(positions, self.cfg.d_model).to(x.dtype)
        return x

    def project(self, hidden: Tensor) -> Tensor:
        """Final hidden states ``[..., d_model]`` -> logits ``[..., vocab_size]``."""
        if self.output is None:
            return F.linear(hidden, self.embed.weight)
        return self.output(hidden)

    def new_cache(self, batch_size: int, *, max_length: int | None = None) -> LMCache:
        """An empty decoding cache for ``batch_size`` sequences (``max_length``: slots
        to preallocate for softmax, and the most a cache may take)."""
        decoder = self.decoder.new_cache(batch_size, max_length=max_length)
        zeros = torch.zeros(batch_size, dtype=torch.long, device=self.embed.weight.device)
        return LMCache(decoder, zeros)

    # -- forward -----------------------------------------------------------------
    def _positions(self, mask: Tensor | None, T: int, start: Tensor | None, device) -> Tensor:
        """1-based per-item positions ``[B, T]`` (padded slots get the last real position, >= 1)."""
        if mask is None:
            pos = torch.arange(1, T + 1, device=device).unsqueeze(0)
        else:
            pos = (~mask).long().cumsum(1)
        if start is not None:
            pos = pos + start.unsqueeze(1)
        return pos.clamp_min(1)

    def _check_position_range(self, pos_max: int) -> None:
        if self.cfg.positions == "learned" and pos_max > self.cfg.context_length:
            raise ValueError(f"position {pos_max} is past the learned position table "
                             f"(context_length={self.cfg.context_length})")

    def hidden_states(self, tokens: Tensor, *, key_padding_mask: Tensor | None = None,
                      target_length: Tensor | int | None = None,
                      cache: LMCache | None = None) -> Tensor:
        """Final (normalised) hidden states ``[B, T, d_model]``; arguments as :meth:`forward`."""
        _check_tokens(tokens)
        _check_mask(key_padding_mask, tokens)
        T = tokens.shape[1]
        if cache is None:
            if key_padding_mask is not None:
                real = ~key_padding_mask
                starts = real[:, :1].long() + (real[:, 1:] & ~real[:, :-1]).sum(1, keepdim=True)
                if bool((starts > 1).any()):
                    raise ValueError("the real tokens of each row must be contiguous (left "
                                     "and/or right padding only); if pad_id is also a real "
                                     "token, pass key_padding_mask or set pad_id=None")
            if self.cfg.positions == "learned" and T > self.cfg.context_length:
                self._check_position_range(T if key_padding_mask is None else
                                           int((~key_padding_mask).sum(1).max()))
            pos = self._positions(key_padding_mask, T, None, tokens.device)
            x = self.dropout(self.embed_tokens(tokens, pos))
            return self.decoder(x, tgt_key_padding_mask=key_padding_mask,
                                target_length=target_length)
        return self._decode(tokens, key_padding_mask, target_length, cache)

    def forward(self, tokens: Tensor, *, key_padding_mask: Tensor | None = None,
                target_length: Tensor | int | None = None,
                cache: LMCache | None = None) -> Tensor:
        """``tokens [B, T]`` -> logits ``[B, T, vocab_size]``; logits ``t`` predict token ``t + 1``.

        ``key_padding_mask [B, T]`` (True = padding; never inferred from the
        token ids here) marks left and/or right padding. ``target_length``
        (int or ``[B]``) is cosFormer's length ``L`` (default: each item's
        unpadded length; needed with a cache). With ``cache`` the tokens
        continue the cached sequences; ``key_padding_mask`` is then allowed
        only before an item's first real token (left padding of a prompt).
        """
        return self.project(self.hidden_states(tokens, key_padding_mask=key_padding_mask,
                                               target_length=target_length, cache=cache))

    def loss(self, tokens: Tensor, *, key_padding_mask: Tensor | None = None,
             target_length: Tensor | int | None = None, reduction: str = "mean") -> Tensor:
        """Next-token cross-entropy of ``tokens [B, T]`` (see :func:`next_token_loss`);
        ``key_padding_mask`` defaults to ``tokens == pad_id``."""
        if key_padding_mask is None and self.cfg.pad_id is not None:
            _check_tokens(tokens)
            key_padding_mask = tokens == self.cfg.pad_id
            if not bool(key_padding_mask.any()):
                key_padding_mask = None
        logits = self(tokens, key_padding_mask=key_padding_mask, target_length=target_length)
        return next_token_loss(logits, tokens, key_padding_mask, reduction=reduction)

    # -- decoding ----------------------------------------------------------------
    def _decode(self, tokens: Tensor, mask: Tensor | None, target_length, cache: LMCache) -> Tensor:
        if not isinstance(cache, LMCache):
            raise TypeError(f"cache must be an LMCache (CausalLM.new_cache), got "
                            f"{type(cache).__name__}")
        B, T = tokens.shape
        if cache.batch_size != B:
            raise ValueError(f"cache was made for batch size {cache.batch_size}, got a batch "
                             f"of {B}")
        if mask is not None and not bool(mask.any()):
            mask = None
        if mask is not None:
            pad_after_real = mask[:, 1:] & ~mask[:, :-1]
            if bool(pad_after_real.any()) or bool((mask.any(1) & (cache.lengths > 0)).any()):
                raise ValueError("with a cache, padding may only come before an item's first "
                                 "real token (left padding)")
        if self.cfg.positions == "learned" and cache.length + T > self.cfg.context_length:
            real_new = T if mask is None else (~mask).sum(1)
            self._check_position_range(int((cache.lengths + real_new).max()))
        pos = self._positions(mask, T, cache.lengths, tokens.device)
        x = self.dropout(self.embed_tokens(tokens, pos))
        h = self.decoder(x, cache=cache.decoder, tgt_key_padding_mask=mask,
                         target_length=target_length)
        cache.lengths = cache.lengths + (T if mask is None else (~mask).sum(1))
        return h


def next_token_loss(logits: Tensor, tokens: Tensor, key_padding_mask: Tensor | None = None, *,
                    reduction: str = "mean") -> Tensor:
    """Cross-entropy of ``logits [B, T, V]`` (position ``t`` predicting ``tokens [B, T]``
    at ``t + 1``), skipping pairs where the input or the target is padding.

    ``reduction``: ``"mean"`` over the counted targets, ``"sum"``, or ``"none"``
    (``[B, T - 1]``, zeros where skipped).
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if logits.dim() != 3 or logits.shape[:2] != tokens.shape:
        raise ValueError(f"logits must be [batch, length, vocab] matching tokens "
                         f"{list(tokens.shape)}, got {list(logits.shape)}")
    if key_padding_mask is not None and key_padding_mask.shape != tokens.shape:
        raise ValueError(f"key_padding_mask must have the shape of tokens {list(tokens.shape)}, "
                         f"got {list(key_padding_mask.shape)}")
    pred, target = logits[:, :-1], tokens[:, 1:]
    if pred.dtype not in (torch.float32, torch.float64):
        pred = pred.float()  # half-precision logits: the softmax in float32
    nll = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1),
                          reduction="none").view(target.shape)
    if key_padding_mask is None:
        keep = torch.ones_like(target, dtype=torch.bool)
    else:
        keep = ~(key_padding_mask[:, :-1] | key_padding_mask[:, 1:])
        nll = nll.masked_fill(~keep, 0.0)
    if reduction == "none":
        return nll
    if reduction == "sum":
        return nll.sum()
    return nll.sum() / keep.sum().clamp_min(1)
