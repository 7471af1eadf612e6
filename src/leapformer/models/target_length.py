"""Target-length plumbing of :class:`~leapformer.models.Seq2Seq` (docs/math.md §1.2, §3).

cosFormer in a decoder block (``dec`` or ``cross``) weighs query ``i`` by
``i / M``, ``M`` the number of decoder positions: the true one in training, a
prediction when decoding. These functions build, fit and apply the predictor
(:mod:`leapformer.nn.length`) and resolve the ``M`` a decoding step reads;
:class:`~leapformer.models.Seq2Seq` exposes them as methods.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from leapformer.models.seq2seq_cache import EncoderOutput
from leapformer.nn.length import ConvLength, LengthPredictor, LookupLength, RatioLength
from leapformer.nn.mechanisms import CosFormer

__all__ = ["LENGTH_PREDICTORS", "build_length_predictor", "fit_length_predictor",
           "needs_target_length", "predict_target_length", "resolve_target_length"]

LENGTH_PREDICTORS = ("ratio", "lookup", "conv")


def build_length_predictor(spec: str | LengthPredictor | None, *, d_model: int,
                           src_vocab_size: int, hidden: int,
                           dropout: float) -> LengthPredictor | None:
    """A new predictor for ``spec``: ``None``, a :class:`LengthPredictor` (returned
    as is), or one of :data:`LENGTH_PREDICTORS` (``ratio`` 1 and a lookup table of 1
    per token start neutral until fitted; ``conv`` is trained with the model)."""
    if spec is None or isinstance(spec, LengthPredictor):
        return spec
    if spec == "ratio":
        return RatioLength(1.0)
    if spec == "lookup":
        return LookupLength({}, default=1.0, vocab_size=src_vocab_size)
    if spec == "conv":
        return ConvLength(d_model, hidden=hidden, dropout=dropout)
    raise ValueError(f"length_predictor must be None, one of {LENGTH_PREDICTORS} or a "
                     f"LengthPredictor, got {spec!r}")


def needs_target_length(decoder: nn.Module) -> bool:
    """True if a block of ``decoder`` re-weights by the target length (cosFormer)."""
    return any(isinstance(m, CosFormer) and m.length_mode == "given"
               for m in decoder.modules())


@torch.no_grad()
def fit_length_predictor(pred: LengthPredictor | None, sources: Sequence[Sequence[int]],
                         target_lengths: Sequence[int], *,
                         src_vocab_size: int) -> LengthPredictor:
    """A ``ratio`` or ``lookup`` predictor of the kind of ``pred``, fitted on
    ``sources`` (source token lists, as given to the encoder) and
    ``target_lengths`` (decoder positions per pair: target tokens + 1)."""
    if len(sources) != len(target_lengths) or not sources:
        raise ValueError(f"need as many sources as target_lengths (> 0), got "
                         f"{len(sources)} and {len(target_lengths)}")
    if isinstance(pred, RatioLength):
        return RatioLength.fit([len(s) for s in sources], list(target_lengths))
    if isinstance(pred, LookupLength):
        return LookupLength.fit(sources, target_lengths=list(target_lengths),
                                vocab_size=src_vocab_size, damping=float(pred.damping))
    kind = type(pred).__name__ if pred is not None else None
    raise ValueError(  # noqa: TRY004
        f"fit_length_predictor fits a ratio or lookup predictor; this model has {kind}")


def predict_target_length(pred: LengthPredictor | None, enc: EncoderOutput) -> Tensor:
    """Predicted decoder lengths ``M [B]`` (LongTensor, >= 1) of ``pred`` for ``enc``."""
    if pred is None:
        raise ValueError("this model has no length_predictor; pass target_length")
    return pred.predict(
        enc.src_lengths, src_tokens=enc.src_tokens, encoder_out=enc.memory,
        src_key_padding_mask=enc.padding_mask).to(enc.memory.device)


def resolve_target_length(enc: EncoderOutput, target_length, *, needed: bool,
                          has_predictor: bool, predict) -> Tensor | None:
    """The ``M [B]`` a decoding run over ``enc`` reads: ``target_length`` (an int or
    ``[B]`` ints) if given, else None when no block ``needed`` it, else ``predict(enc)``."""
    B = enc.batch_size
    if target_length is not None:
        t = torch.as_tensor(target_length, device=enc.memory.device)
        if t.dim() == 0:
            t = t.expand(B)
        if t.shape != (B,) or t.is_floating_point() or bool((t < 1).any()):
            raise ValueError(f"target_length must be a positive int or [batch={B}] ints, "
                             f"got {target_length!r}")
        return t.long()
    if not needed:
        return None
    if not has_predictor:
        raise ValueError("a cosFormer decoder block needs the target length: give the model "
                         "a length_predictor or pass target_length")
    return predict(enc)
