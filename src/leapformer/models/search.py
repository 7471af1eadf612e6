"""Greedy and beam search for encoder-decoder models, on the incremental decoding cache.

Both decode a batch of (right-padded) sources at once, one decoder step per
call to ``model.decode_step`` over the rows still running; finished
sentences are dropped from the batch (their cache rows too). A hypothesis
ends at EOS or at its maximum length ``max_len = floor(a * |src| + b)``
tokens (``|src|`` = the unpadded source length, EOS included if the source
carries one); the returned token lists hold neither BOS nor EOS. BOS and
padding (``model.cfg.pad_id``) are never generated.

The model interface (what :class:`~leapformer.models.seq2seq.Seq2Seq`
provides; a test can supply a stand-in): ``model.cfg.bos_id`` / ``eos_id``,
``enc = model.encode(src, src_mask)``, ``cache = model.new_decoder_cache(enc,
target_length=..., max_length=...)``, ``model.decode_step(tokens [B, 1],
cache) -> logits [B, 1, V]`` and ``cache.reorder(index, cross=...)``.

Beam search (fairseq's ``sequence_generator`` scheme): per sentence ``beam``
rows; each step takes the ``2 * beam`` best continuations of all rows; an EOS
among the ``beam`` best of them finishes a hypothesis, the best ``beam``
non-EOS ones continue. A sentence is done when it has ``beam`` finished
hypotheses (at its maximum length every row is made to end). The answer is
the finished hypothesis of highest ``score / len ** length_penalty``, where
``score`` is the sum of token log-probabilities and ``len`` counts the tokens
with the EOS (``length_penalty = 0``: raw score; > 0 favours longer output).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)

__all__ = ["Hypothesis", "beam_search", "greedy", "max_lengths"]


@dataclass(frozen=True)
class Hypothesis:
    """One output: ``tokens`` (no BOS/EOS), ``score`` (sum of log-probabilities of
    the tokens and of the EOS if ``finished``), ``normalized`` (``score / len **
    length_penalty``, ``len`` counting the EOS) and whether EOS ended it."""

    tokens: list[int]
    score: float
    normalized: float
    finished: bool


def _check_args(src, src_mask, max_len_a, max_len_b) -> None:
    if not isinstance(src, Tensor) or src.dim() != 2 or src.is_floating_point():
        raise TypeError(f"src must be an integer tensor [batch, length], got "
                        f"{getattr(src, 'dtype', type(src).__name__)} "
                        f"{list(getattr(src, 'shape', []))}")
    if src.shape[0] < 1 or src.shape[1] < 1:
        raise ValueError(f"src must hold at least one item and one position, got "
                         f"{list(src.shape)}")
    if src_mask is not None:
        if not isinstance(src_mask, Tensor) or src_mask.dtype != torch.bool:
            raise TypeError(f"src_mask must be a bool tensor (True = padding), got "
                            f"{getattr(src_mask, 'dtype', type(src_mask).__name__)}")
        if src_mask.shape != src.shape:
            raise ValueError(f"src_mask must be a bool tensor of src's shape {list(src.shape)}, "
                             f"got {list(src_mask.shape)}")
    for name, v in (("max_len_a", max_len_a), ("max_len_b", max_len_b)):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise TypeError(f"{name} must be a number, got {v!r}")
    if max_len_a < 0:
        raise ValueError(f"max_len_a must be >= 0, got {max_len_a!r}")


def max_lengths(src: Tensor, src_mask: Tensor | None, max_len_a: float,
                max_len_b: float) -> Tensor:
    """``floor(a * |src| + b)`` per item (LongTensor ``[B]``, at least 1), ``|src|`` unpadded."""
    n = torch.full((src.shape[0],), src.shape[1], dtype=torch.float64) if src_mask is None \
        else (~src_mask).sum(1).double().cpu()
    return torch.floor(max_len_a * n + max_len_b + 1e-9).long().clamp_min(1)


def _ids(model) -> tuple[int, int, list[int]]:
    """BOS, EOS and the ids never generated (BOS and, if the config has one, padding)."""
    cfg = getattr(model, "cfg", None)
    try:
        bos, eos = int(cfg.bos_id), int(cfg.eos_id)
    except AttributeError:
        raise TypeError("model.cfg must provide bos_id and eos_id") from None
    pad = getattr(cfg, "pad_id", None)
    return bos, eos, [bos] + ([] if pad is None else [int(pad)])


def _log_probs(logits: Tensor, banned: list[int], dtype: torch.dtype) -> Tensor:
    """Log-softmax of the last position ``[B, V]`` with the ``banned`` ids at -inf."""
    lp = F.log_softmax(logits[:, -1].to(dtype), dim=-1)
    lp[:, banned] = -math.inf
    return lp


class _EvalMode:
    """Eval mode and inference mode for the duration of a search (training mode restored)."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was = getattr(self.model, "training", False)
        if hasattr(self.model, "eval"):
            self.model.eval()
        self.inference = torch.inference_mode()
        self.inference.__enter__()

    def __exit__(self, *exc):
        self.inference.__exit__(*exc)
        if hasattr(self.model, "train"):
            self.model.train(self.was)


def greedy(model, src: Tensor, src_mask: Tensor | None = None, max_len_a: float = 1.5,
           max_len_b: float = 10, *, target_length: Tensor | int | None = None,
           return_hypotheses: bool = False) -> list[list[int]] | list[Hypothesis]:
    """Greedy decoding of ``src [B, S]``: token lists (or :class:`Hypothesis` with
    ``return_hypotheses``), one per source, as the items would get alone.
    ``target_length`` overrides the model's predicted target length (cosFormer)."""
    _check_args(src, src_mask, max_len_a, max_len_b)
    bos, eos, banned = _ids(model)
    B = src.shape[0]
    limit = max_lengths(src, src_mask, max_len_a, max_len_b)
    out: list[list[int]] = [[] for _ in range(B)]
    scores = [0.0] * B
    finished = [False] * B
    with _EvalMode(model):
        enc = model.encode(src, src_mask)
        cache = model.new_decoder_cache(enc, target_length=target_length,
                                        max_length=int(limit.max()) + 1)
        device = src.device
        active = torch.arange(B)  # sentence of each cache row
        last = torch.full((B, 1), bos, dtype=torch.long, device=device)
        step = 0
        while active.numel():
            lp = _log_probs(model.decode_step(last, cache), banned, torch.float64)
            best, tok = lp.max(-1)
            step += 1
            keep = []
            for r, (s, t, v) in enumerate(zip(active.tolist(), tok.tolist(), best.tolist())):
                scores[s] += v
                if t == eos:
                    finished[s] = True
                    continue
                out[s].append(t)
                if step < int(limit[s]):
                    keep.append(r)
            if not keep:
                break
            if len(keep) < active.numel():
                rows = torch.tensor(keep, dtype=torch.long)
                cache.reorder(rows.to(device))
                active, tok = active[rows], tok[rows.to(tok.device)]
            last = tok.view(-1, 1)
    logger.debug("greedy: %d sentences, %d steps", B, step)
    if not return_hypotheses:
        return out
    return [Hypothesis(o, sc, sc, f) for o, sc, f in zip(out, scores, finished)]


def beam_search(model, src: Tensor, src_mask: Tensor | None = None, beam: int = 5,
                length_penalty: float = 1.0, max_len_a: float = 1.5, max_len_b: float = 10, *,
                target_length: Tensor | int | None = None,
                return_hypotheses: bool = False) -> list[list[int]] | list[Hypothesis]:
    """Beam search over ``src [B, S]`` (see the module docstring): the best token
    list per source (or its :class:`Hypothesis` with ``return_hypotheses``)."""
    _check_args(src, src_mask, max_len_a, max_len_b)
    if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
        raise ValueError(f"beam must be an int >= 1, got {beam!r}")
    if not isinstance(length_penalty, (int, float)) or isinstance(length_penalty, bool):
        raise TypeError(f"length_penalty must be a number, got {length_penalty!r}")
    bos, eos, banned = _ids(model)
    B, K = src.shape[0], beam
    limit = max_lengths(src, src_mask, max_len_a, max_len_b)
    device = src.device
    final: list[list[Hypothesis]] = [[] for _ in range(B)]

    def norm(score: float, n: int) -> float:
        return score / (n ** length_penalty) if length_penalty else score

    with _EvalMode(model):
        enc = model.encode(src, src_mask)
        cache = model.new_decoder_cache(enc, target_length=target_length,
                                        max_length=int(limit.max()) + 1)
        cache.reorder(torch.arange(B, device=device).repeat_interleave(K))
        active = torch.arange(B)  # sentences still searching, K cache rows each
        scores = torch.zeros(B, K, dtype=torch.float64)
        scores[:, 1:] = -math.inf  # all beams start equal: expand the first only
        seqs = torch.zeros(B * K, 0, dtype=torch.long)
        last = torch.full((B * K, 1), bos, dtype=torch.long, device=device)
        step = 0
        while active.numel():
            n = active.numel()
            lp = _log_probs(model.decode_step(last, cache), banned, torch.float64).cpu()
            V = lp.shape[-1]
            if V < 2:
                raise ValueError(f"beam search needs a vocabulary of >= 2 tokens, got {V}")
            lp = lp.view(n, K, V)
            forced = limit[active] <= step  # `step` tokens generated: must end now
            if bool(forced.any()):
                only_eos = torch.full((V,), -math.inf, dtype=lp.dtype)
                only_eos[eos] = 0.0
                lp[forced] = torch.where(only_eos.isinf(), only_eos, lp[forced])
            cand = (scores.unsqueeze(-1) + lp).view(n, K * V)
            top, idx = cand.topk(min(2 * K, K * V), dim=1)
            parent, tok = idx // V, idx % V
            is_eos = tok == eos
            done = forced.clone()
            for i, j in (is_eos[:, :K] & torch.isfinite(top[:, :K])).nonzero().tolist():
                s = int(active[i])
                if len(final[s]) >= K:
                    continue
                toks = seqs[i * K + int(parent[i, j])].tolist()
                sc = float(top[i, j])
                final[s].append(Hypothesis(toks, sc, norm(sc, len(toks) + 1), True))
            for i in range(n):
                if len(final[int(active[i])]) >= K:
                    done[i] = True
            # continue with the best K non-EOS candidates of each sentence
            order = torch.sort(is_eos.int(), dim=1, stable=True).indices[:, :K]
            par = parent.gather(1, order)
            rows = (torch.arange(n).unsqueeze(1) * K + par).view(-1)
            new_tok = tok.gather(1, order)
            scores = top.gather(1, order)
            seqs = torch.cat((seqs[rows], new_tok.view(-1, 1)), dim=1)
            cache.reorder(rows.to(device), cross=False)
            step += 1
            if bool(done.any()):
                keep = (~done).nonzero().flatten()
                if keep.numel() == 0:
                    break
                krows = (keep.unsqueeze(1) * K + torch.arange(K)).view(-1)
                cache.reorder(krows.to(device))
                active, scores, seqs, new_tok = active[keep], scores[keep], seqs[krows], \
                    new_tok[keep]
            last = new_tok.reshape(-1, 1).to(device)
    logger.debug("beam_search: %d sentences, beam %d, %d steps", B, K, step)
    best = []
    for s in range(B):
        if not final[s]:  # cannot happen: every sentence is forced to end
            raise RuntimeError(f"beam search left sentence {s} without a hypothesis")
        best.append(max(final[s], key=lambda h: h.normalized))
    return best if return_hypotheses else [h.tokens for h in best]
