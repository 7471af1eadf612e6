"""Encoder-decoder translation model with a mechanism per attention block (MLA, docs/math.md §2-§4).

``Seq2Seq``: source and target token embeddings (scaled by ``sqrt(d_model)``,
plus sinusoidal or learned positions, 1-based per item), an
:class:`~leapformer.nn.Encoder` and a :class:`~leapformer.nn.Decoder` whose
encoder self- (``enc``), decoder self- (``dec``) and cross-attention
(``cross``) blocks each take the mechanism an :class:`~leapformer.nn.AttentionSpec`
names (``"enc=leap,dec=linear,cross=cosformer,dec.0=softmax"``), and an
output projection tied to the target embedding (``tie_target_embeddings``)::

    memory = Encoder(sqrt(d) E_src[x] + pos)
    logits = LN(Decoder(sqrt(d) E_tgt[y_in] + pos, memory)) E_tgt^T

Token conventions (those of :mod:`leapformer.data.spm`): ``pad_id=0``,
``bos_id=2``, ``eos_id=3``. A source is its tokens followed by EOS; the
decoder input is ``[BOS, y_1 .. y_n]`` and the output to predict
``[y_1 .. y_n, EOS]``. Masks are bool, True = padding (right padding).

**Target length** (docs/math.md §1.2, §3). cosFormer in the decoder (``dec`` or
``cross``) weighs query ``i`` by ``i / M``: ``M`` is the number of decoder
positions (target tokens + 1), the true one in training (each item's
unpadded ``tgt_in`` length) and a prediction when decoding, from the
``length_predictor``: ``"ratio"`` (``M = r N``), ``"lookup"`` (per source
token table) -- both fitted from training statistics with
:meth:`Seq2Seq.fit_length_predictor` -- or ``"conv"``, a network on the
encoder output trained jointly: :meth:`Seq2Seq.loss` adds
``length_loss_weight * length_loss`` (log-domain MSE against the true ``M``).
Without a predictor a cosFormer decoder must be given ``target_length`` when
decoding. Other mechanisms ignore the length (LeaP learns its proportions).

**Incremental decoding**: ``enc = model.encode(src, src_mask)``,
``cache = model.new_decoder_cache(enc)`` (cross-attention sums over the
memory computed once; the target length predicted here), then
``model.decode_step(tokens, cache)`` for ``T >= 1`` new decoder inputs per
call. :meth:`Seq2SeqCache.reorder` selects/repeats batch rows (beam search).

The pieces live in their own modules and are re-exported here:
:mod:`~leapformer.models.target_length` (the length predictor plumbing),
:mod:`~leapformer.models.seq2seq_cache` (:class:`EncoderOutput`,
:class:`Seq2SeqCache`, :func:`reorder_decoder_cache`) and
:mod:`~leapformer.models.loss` (:func:`label_smoothed_nll`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leapformer.models.lm import sinusoidal_embedding
from leapformer.models.loss import label_smoothed_nll
from leapformer.models.seq2seq_cache import EncoderOutput, Seq2SeqCache, reorder_decoder_cache
from leapformer.models.target_length import (
    LENGTH_PREDICTORS,
    build_length_predictor,
    fit_length_predictor,
    needs_target_length,
    predict_target_length,
    resolve_target_length,
)
from leapformer.nn import (
    MECHANISMS,
    AttentionSpec,
    BlockConfig,
    Decoder,
    Encoder,
    length_loss,
)
from leapformer.nn.length import ConvLength, LengthPredictor
logger = logging.getLogger(__name__)

__all__ = ["LENGTH_PREDICTORS", "SEQ2SEQ_PRESETS", "EncoderOutput", "Seq2Seq", "Seq2SeqCache",
           "Seq2SeqConfig", "label_smoothed_nll", "reorder_decoder_cache"]

POSITIONS = ("sinusoidal", "learned")

#: Size presets for :meth:`Seq2SeqConfig.preset` (any field can be overridden).
#: ``paper``: Transformer base (Vaswani et al. 2017), the usual text-NMT setting:
#: 6+6 layers, 512 wide, 8 heads, FFN 2048, dropout 0.1, label smoothing 0.1,
#: sinusoidal positions. (docs/math.md §5.3-§5.4 give the MLA/LeaPformer speech models:
#: 6+6 layers, 256 wide, 8 heads, FFN 1024 -- use ``d_model=256,
#: dim_feedforward=1024`` for those; no text-NMT sizes are published there.)
#: ``lite``: 3+3 layers, 256 wide, 4 heads, FFN 1024 (trains on a 2-core CPU).
SEQ2SEQ_PRESETS: dict[str, dict] = {
    "paper": {"d_model": 512, "nhead": 8, "num_encoder_layers": 6, "num_decoder_layers": 6,
              "dim_feedforward": 2048, "dropout": 0.1, "label_smoothing": 0.1,
              "max_positions": 1024},
    "lite": {"d_model": 256, "nhead": 4, "num_encoder_layers": 3, "num_decoder_layers": 3,
             "dim_feedforward": 1024, "dropout": 0.1, "label_smoothing": 0.1,
             "max_positions": 512},
}


@dataclass
class Seq2SeqConfig:
    """Sizes and options of a :class:`Seq2Seq` (separate source/target vocabularies).

    ``max_positions``: size of the learned position tables (``positions =
    "learned"``); sinusoidal positions have no limit. ``mechanism_options``:
    mechanism name -> options (e.g. ``{"leap": {"step_down": 4}}``).
    ``length_hidden``: width of the ``conv`` length predictor.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 512
    nhead: int = 8
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1
    activation: str = "relu"
    positions: str = "sinusoidal"
    max_positions: int = 1024
    tie_target_embeddings: bool = True
    scale_embedding: bool = True
    label_smoothing: float = 0.1
    length_loss_weight: float = 1.0
    length_hidden: int = 256
    pad_id: int = 0
    bos_id: int = 2
    eos_id: int = 3
    mechanism_options: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("src_vocab_size", "tgt_vocab_size", "num_encoder_layers",
                     "num_decoder_layers", "max_positions", "length_hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {self.positions!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.length_loss_weight < 0:
            raise ValueError(f"length_loss_weight must be >= 0, got {self.length_loss_weight}")
        for name in ("pad_id", "bos_id", "eos_id"):
            v = getattr(self, name)
            if not 0 <= v < min(self.src_vocab_size, self.tgt_vocab_size):
                raise ValueError(f"{name}={v} is outside both vocabularies (sizes "
                                 f"{self.src_vocab_size}, {self.tgt_vocab_size})")
        if len({self.pad_id, self.bos_id, self.eos_id}) != 3:
            raise ValueError(f"pad_id, bos_id and eos_id must differ, got "
                             f"{self.pad_id}, {self.bos_id}, {self.eos_id}")
        if not isinstance(self.mechanism_options, dict):
            raise TypeError(f"mechanism_options must be a dict, got "
                            f"{type(self.mechanism_options).__name__}")
        self.block()  # validates d_model / nhead / activation

    @classmethod
    def preset(cls, name: str, src_vocab_size: int, tgt_vocab_size: int,
               **overrides) -> Seq2SeqConfig:
        """The sizes of :data:`SEQ2SEQ_PRESETS` ``[name]`` with ``overrides``."""
        if name not in SEQ2SEQ_PRESETS:
            raise ValueError(f"unknown seq2seq preset {name!r}; known: {sorted(SEQ2SEQ_PRESETS)}")
        return cls(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size,
                   **{**SEQ2SEQ_PRESETS[name], **overrides})

    def block(self) -> BlockConfig:
        return BlockConfig(d_model=self.d_model, nhead=self.nhead,
                           dim_feedforward=self.dim_feedforward, dropout=self.dropout,
                           activation=self.activation, norm_first=True)


# ------------------------------------------------------------------------------- helpers


def _shape(t) -> list:
    return list(getattr(t, "shape", []))


def _check_tokens(name: str, tokens: Tensor, vocab: int) -> None:
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.dtype not in (
            torch.int64, torch.int32):
        raise ValueError(f"{name} must be an integer tensor [batch, length], got "
                         f"{getattr(tokens, 'dtype', type(tokens).__name__)} {_shape(tokens)}")
    if tokens.shape[1] < 1:
        raise ValueError(f"{name} must hold at least one position, got {_shape(tokens)}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab):
        raise ValueError(f"{name} holds ids outside [0, {vocab}): min {int(tokens.min())}, "
                         f"max {int(tokens.max())}")


def _check_mask(name: str, mask: Tensor | None, tokens: Tensor) -> None:
    if mask is None:
        return
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor (True = padding), got "
                        f"{getattr(mask, 'dtype', type(mask).__name__)}")
    if mask.shape != tokens.shape:
        raise ValueError(f"{name} must have the shape of its tokens {_shape(tokens)}, got "
                         f"{_shape(mask)}")
    if bool((mask[:, 1:] < mask[:, :-1]).any()):
        raise ValueError(f"{name} must mark right padding only (a real token after padding)")
    if bool(mask[:, 0].any()):
        raise ValueError(f"{name}: every item needs at least one real token")


def _lengths(mask: Tensor | None, tokens: Tensor) -> Tensor:
    if mask is None:
        return torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long,
                          device=tokens.device)
    return (~mask).sum(1)


# ------------------------------------------------------------------------------- model


class Seq2Seq(nn.Module):
    """Encoder-decoder translation model (see the module docstring).

    ``spec``: an :class:`AttentionSpec` or its string. ``length_predictor``:
    None, ``"ratio"``, ``"lookup"``, ``"conv"`` or a
    :class:`~leapformer.nn.length.LengthPredictor` instance; named ones start
    neutral (ratio 1, a lookup table of 1 per token) until
    :meth:`fit_length_predictor`, ``conv`` is trained by :meth:`loss`.
    ``causal_encoder=True``: unidirectional encoder (simultaneous translation).
    """

    def __init__(self, cfg: Seq2SeqConfig, spec: AttentionSpec | str = "enc=leap,dec=leap,cross=leap",
                 length_predictor: str | LengthPredictor | None = None, *,
                 causal_encoder: bool = False):
        super().__init__()
        if not isinstance(cfg, Seq2SeqConfig):
            raise TypeError(f"cfg must be a Seq2SeqConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.spec = AttentionSpec.parse(spec) if isinstance(spec, str) else spec
        if not isinstance(self.spec, AttentionSpec):
            raise TypeError(f"spec must be an AttentionSpec or a string, got {type(spec).__name__}")
        self._check_spec(causal_encoder)
        d = cfg.d_model
        self.src_embed = nn.Embedding(cfg.src_vocab_size, d, padding_idx=cfg.pad_id)
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab_size, d, padding_idx=cfg.pad_id)
        for emb in (self.src_embed, self.tgt_embed):
            nn.init.normal_(emb.weight, std=d ** -0.5)
            with torch.no_grad():
                emb.weight[cfg.pad_id].zero_()
        self.embed_scale = math.sqrt(d) if cfg.scale_embedding else 1.0
        if cfg.positions == "learned":
            self.src_pos = nn.Embedding(cfg.max_positions, d)
            self.tgt_pos = nn.Embedding(cfg.max_positions, d)
        else:
            self.src_pos = self.tgt_pos = None
        self.dropout = nn.Dropout(cfg.dropout)
        block = cfg.block()
        self.encoder = Encoder(cfg.num_encoder_layers, block, self.spec, cfg.mechanism_options,
                               causal=causal_encoder)
        self.decoder = Decoder(cfg.num_decoder_layers, block, self.spec, cfg.mechanism_options)
        self.output = None
        if not cfg.tie_target_embeddings:
            self.output = nn.Linear(d, cfg.tgt_vocab_size, bias=False)
            nn.init.normal_(self.output.weight, std=d ** -0.5)
        self.length_predictor = self._build_length_predictor(length_predictor)

    # -- construction ---------------------------------------------------------
    def _check_spec(self, causal_encoder: bool) -> None:
        cfg = self.cfg
        full = sorted(n for n, c in MECHANISMS.items() if c.full)
        blocks = [("dec", cfg.num_decoder_layers), ("cross", cfg.num_decoder_layers)]
        if causal_encoder:
            blocks.append(("enc", cfg.num_encoder_layers))
        for block, n in blocks:
            for i in range(n):
                name = self.spec.mechanism(block, i)
                if not MECHANISMS[name].full:
                    raise ValueError(f"mechanism {name!r} (block {block}, layer {i}) has no "
                                     f"causal/cross/decoding form; use one of {full}")

    def _build_length_predictor(self, spec) -> LengthPredictor | None:
        cfg = self.cfg
        return build_length_predictor(spec, d_model=cfg.d_model, src_vocab_size=cfg.src_vocab_size,
                                      hidden=cfg.length_hidden, dropout=cfg.dropout)

    def set_length_predictor(self, spec: str | LengthPredictor | None) -> LengthPredictor | None:
        """Replace the target-length predictor (``None``, ``"ratio"``, ``"lookup"``,
        ``"conv"`` or a :class:`~leapformer.nn.length.LengthPredictor`); a new
        ``ratio``/``lookup`` one must then be fitted (:meth:`fit_length_predictor`),
        a new ``conv`` one trained. Returns the new predictor."""
        device = self.src_embed.weight.device
        pred = self._build_length_predictor(spec)
        self.length_predictor = pred.to(device) if pred is not None else None
        return self.length_predictor

    @property
    def needs_target_length(self) -> bool:
        """True if a decoder block re-weights by the target length (cosFormer)."""
        return needs_target_length(self.decoder)

    def fit_length_predictor(self, sources: Sequence[Sequence[int]],
                             target_lengths: Sequence[int]) -> LengthPredictor:
        """Fit a ``ratio`` or ``lookup`` predictor from training data: ``sources`` (the
        source token lists, as given to the encoder) and ``target_lengths`` (decoder
        positions per pair: target tokens + 1). Replaces the predictor; returns it."""
        new = fit_length_predictor(self.length_predictor, sources, target_lengths,
                                   src_vocab_size=self.cfg.src_vocab_size)
        self.length_predictor = new.to(self.src_embed.weight.device)
        return self.length_predictor

    # -- pieces ---------------------------------------------------------------
    def _embed(self, tokens: Tensor, emb: nn.Embedding, pos_table: nn.Embedding | None,
               start: int = 0) -> Tensor:
        T = tokens.shape[1]
        pos = torch.arange(start + 1, start + T + 1, device=tokens.device)
        if pos_table is not None and start + T > self.cfg.max_positions:
            raise ValueError(f"position {start + T} is past the learned position table "
                             f"(max_positions={self.cfg.max_positions})")
        x = emb(tokens) * self.embed_scale
        if pos_table is not None:
            x = x + pos_table(pos - 1)
        else:
            x = x + sinusoidal_embedding(pos, self.cfg.d_model).to(x.dtype)
        return self.dropout(x)

    def embed_source(self, tokens: Tensor, start: int = 0) -> Tensor:
        """Encoder input of source ``tokens [B, T]`` at positions ``start+1 .. start+T``
        (scaled embedding + position, dropout in training): what :meth:`encode`
        feeds the encoder, for a streamed source read ``T`` tokens at a time."""
        _check_tokens("tokens", tokens, self.cfg.src_vocab_size)
        return self._embed(tokens, self.src_embed, self.src_pos, start)

    def project(self, hidden: Tensor) -> Tensor:
        """Decoder states ``[..., d_model]`` -> logits ``[..., tgt_vocab_size]``."""
        if self.output is None:
            return F.linear(hidden, self.tgt_embed.weight)
        return self.output(hidden)

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> EncoderOutput:
        """Encode ``src [B, S]`` (``src_mask`` True = padding; right padding)."""
        _check_tokens("src", src, self.cfg.src_vocab_size)
        _check_mask("src_mask", src_mask, src)
        if src_mask is not None and not bool(src_mask.any()):
            src_mask = None
        x = self._embed(src, self.src_embed, self.src_pos)
        memory = self.encoder(x, key_padding_mask=src_mask)
        return EncoderOutput(memory, src_mask, _lengths(src_mask, src), src)

    def predict_target_length(self, enc: EncoderOutput) -> Tensor:
        """Predicted decoder lengths ``M [B]`` (LongTensor, >= 1) from the length predictor."""
        return predict_target_length(self.length_predictor, enc)

    def _target_length(self, enc: EncoderOutput, target_length) -> Tensor | None:
        return resolve_target_length(enc, target_length, needed=self.needs_target_length,
                                     has_predictor=self.length_predictor is not None,
                                     predict=self.predict_target_length)

    # -- training -------------------------------------------------------------
    def forward(self, src: Tensor, src_mask: Tensor | None, tgt_in: Tensor,
                tgt_mask: Tensor | None = None, memory_prefix: Tensor | None = None, *,
                target_length: Tensor | int | None = None,
                enc: EncoderOutput | None = None) -> Tensor:
        """Teacher-forced logits ``[B, T, tgt_vocab_size]`` for ``tgt_in [B, T]``.

        ``target_length`` (default: each item's unpadded ``tgt_in`` length) is
        the ``M`` of cosFormer decoder blocks. ``memory_prefix [B, T]`` (wait-k
        training): decoder position ``t`` sees the first ``memory_prefix[b, t]``
        source positions. ``enc``: a precomputed :meth:`encode` of ``src``.
        """
        if enc is None:
            enc = self.encode(src, src_mask)
        return self.project(self._decode_full(enc, tgt_in, tgt_mask, memory_prefix,
                                              target_length))

    def _decode_full(self, enc, tgt_in, tgt_mask, memory_prefix, target_length) -> Tensor:
        _check_tokens("tgt_in", tgt_in, self.cfg.tgt_vocab_size)
        _check_mask("tgt_mask", tgt_mask, tgt_in)
        if tgt_in.shape[0] != enc.batch_size:
            raise ValueError(f"src has {enc.batch_size} items but tgt_in {tgt_in.shape[0]}")
        if tgt_mask is not None and not bool(tgt_mask.any()):
            tgt_mask = None
        if target_length is None:
            target_length = _lengths(tgt_mask, tgt_in)
        y = self._embed(tgt_in, self.tgt_embed, self.tgt_pos)
        return self.decoder(y, enc.memory, tgt_key_padding_mask=tgt_mask,
                            memory_key_padding_mask=enc.padding_mask,
                            target_length=target_length, source_length=enc.src_lengths,
                            memory_prefix=memory_prefix)

    def loss(self, src: Tensor, src_mask: Tensor | None, tgt_in: Tensor, tgt_out: Tensor,
             tgt_mask: Tensor | None = None, memory_prefix: Tensor | None = None, *,
             label_smoothing: float | None = None) -> dict[str, Tensor]:
        """Training loss of a batch: ``{"loss", "nll", "length_loss", "tokens"}``.

        ``loss`` = label-smoothed cross-entropy (mean over the target tokens,
        ``tgt_out == pad_id`` ignored) + ``length_loss_weight * length_loss``
        for a ``conv`` length predictor (0 otherwise); ``nll`` is the plain
        cross-entropy (for perplexity), ``tokens`` the number of counted targets.
        """
        eps = self.cfg.label_smoothing if label_smoothing is None else label_smoothing
        _check_tokens("tgt_out", tgt_out, self.cfg.tgt_vocab_size)
        if tgt_out.shape != tgt_in.shape:
            raise ValueError(f"tgt_out {_shape(tgt_out)} must have the shape of tgt_in "
                             f"{_shape(tgt_in)}")
        enc = self.encode(src, src_mask)
        logits = self.forward(src, src_mask, tgt_in, tgt_mask, memory_prefix, enc=enc)
        loss, nll = label_smoothed_nll(logits, tgt_out, epsilon=eps, ignore_index=self.cfg.pad_id)
        tokens = (tgt_out != self.cfg.pad_id).sum()
        len_loss = logits.new_zeros((), dtype=torch.float32)
        if isinstance(self.length_predictor, ConvLength):
            pred = self.length_predictor(enc.memory, enc.padding_mask)
            len_loss = length_loss(pred, _lengths(tgt_mask, tgt_in))
            loss = loss + self.cfg.length_loss_weight * len_loss
        return {"loss": loss, "nll": nll, "length_loss": len_loss, "tokens": tokens}

    # -- incremental decoding -------------------------------------------------
    def new_decoder_cache(self, enc: EncoderOutput, *, target_length: Tensor | int | None = None,
                          max_length: int | None = None) -> Seq2SeqCache:
        """A decoding cache over ``enc`` (cross-attention sums computed once).

        ``target_length`` (int or ``[B]``) overrides the predicted ``M``;
        ``max_length``: most decoder positions (preallocates softmax caches).
        """
        if not isinstance(enc, EncoderOutput):
            raise TypeError(f"enc must be an EncoderOutput (Seq2Seq.encode), got "
                            f"{type(enc).__name__}")
        M = self._target_length(enc, target_length)
        dec = self.decoder.new_cache(enc.batch_size, max_length=max_length, memory=enc.memory,
                                     memory_key_padding_mask=enc.padding_mask,
                                     source_length=enc.src_lengths)
        return Seq2SeqCache(dec, M, enc.batch_size)

    def decode_step(self, tokens: Tensor, cache: Seq2SeqCache) -> Tensor:
        """Logits ``[B, T, V]`` for ``T >= 1`` next decoder inputs ``tokens [B, T]``
        (the first call starts with BOS) continuing ``cache`` (updated in place)."""
        if not isinstance(cache, Seq2SeqCache):
            raise TypeError(f"cache must be a Seq2SeqCache (Seq2Seq.new_decoder_cache), got "
                            f"{type(cache).__name__}")
        _check_tokens("tokens", tokens, self.cfg.tgt_vocab_size)
        if tokens.shape[0] != cache.batch_size:
            raise ValueError(f"cache holds {cache.batch_size} rows, tokens "
                             f"{_shape(tokens)}")
        y = self._embed(tokens, self.tgt_embed, self.tgt_pos, start=cache.length)
        h = self.decoder(y, cache=cache.decoder, target_length=cache.target_length)
        return self.project(h)
