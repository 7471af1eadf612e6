"""Greedy and beam search: beam 1 is greedy, padded batches decode as items alone,
maximum lengths, EOS, beam search beats myopic greedy, the length penalty."""

import math
from types import SimpleNamespace

import pytest
import torch

from leapformer.models import beam_search, greedy, max_lengths
from tests.models.test_seq2seq import IDS, SPECS, batch, make_model

BOS, EOS = 2, 3


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(spec, seed):
    model = make_model(spec, seed=seed)
    with torch.no_grad():  # make EOS likely enough that some hypotheses end early
        model.tgt_embed.weight[EOS].mul_(2.0)
    return model


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_beam_one_equals_greedy(spec):
    model = _model(spec, seed=7)
    src, mask, _ = batch(7)
    kw = {"max_len_a": 1.0, "max_len_b": 4, "target_length": 8}
    g = greedy(model, src, mask, return_hypotheses=True, **kw)
    b = beam_search(model, src, mask, beam=1, length_penalty=1.0, return_hypotheses=True, **kw)
    assert [h.tokens for h in b] == [h.tokens for h in g]
    for hb, hg in zip(b, g):
        assert math.isclose(hb.score, hg.score, rel_tol=1e-9, abs_tol=1e-9) or not hg.finished


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_padded_batch_decodes_as_items_alone(spec):
    model = _model(spec, seed=8)
    src, mask, _ = batch(8)
    kw = {"max_len_a": 1.0, "max_len_b": 3, "target_length": 6}
    together = greedy(model, src, mask, **kw)
    beams = beam_search(model, src, mask, beam=3, **kw)
    for b in range(src.shape[0]):
        n = int((~mask[b]).sum())
        assert greedy(model, src[b:b + 1, :n], None, **kw) == [together[b]]
        assert beam_search(model, src[b:b + 1, :n], None, beam=3, **kw) == [beams[b]]
    assert len({tuple(t) for t in together}) > 1  # the sources lead to different output
    assert any(len(t) < n for t, n in zip(together, max_lengths(src, mask, 1.0, 3).tolist())) \
        or spec == "leap"  # some end with EOS before their maximum length


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@torch.no_grad()
def test_beam_scores_equal_teacher_forced_scores(spec):
    """Every returned hypothesis's score is the model's own log-probability of it, so
    the cache rows followed their beams through every reordering."""
    model = _model(spec, seed=11)
    src, mask, _ = batch(11)
    hyps = beam_search(model, src, mask, beam=4, length_penalty=1.0, max_len_a=1.0,
                       max_len_b=3, target_length=6, return_hypotheses=True)
    assert any(len(h.tokens) > 1 for h in hyps)
    for b, h in enumerate(hyps):
        out = h.tokens + ([EOS] if h.finished else [])
        tgt_in = torch.tensor([[BOS, *h.tokens]])[:, :len(out)]
        n = int((~mask[b]).sum())
        logits = model(src[b:b + 1, :n], None, tgt_in, None, target_length=6)
        lp = torch.log_softmax(logits.double(), -1)[0, torch.arange(len(out)), out]
        assert math.isclose(h.score, float(lp.sum()), rel_tol=1e-6, abs_tol=1e-6)


def test_predicted_length_is_used_when_none_is_given():
    model = make_model("cosformer", length_predictor="ratio", seed=9)
    src, mask, _ = batch(9)
    model.fit_length_predictor([[4] * 5], [7])  # r = 1.4
    lengths = (~mask).sum(1)
    expected = torch.round(lengths.double() * 1.4).long()
    kw = {"max_len_a": 1.0, "max_len_b": 2}
    assert greedy(model, src, mask, **kw) == greedy(model, src, mask, target_length=expected, **kw)


def test_max_length_and_never_bos_or_pad():
    model = _model("leap", seed=10)
    with torch.no_grad():  # EOS never wins: every output runs to its maximum length
        model.tgt_embed.weight[EOS].zero_()
        model.tgt_embed.weight[BOS].mul_(10)
    src, mask, _ = batch(10)
    limit = max_lengths(src, mask, 0.5, 2).tolist()
    assert limit == [5, 4, 3]  # floor(0.5 * [7, 5, 3] + 2)
    for out in (greedy(model, src, mask, 0.5, 2), beam_search(model, src, mask, 2, 1.0, 0.5, 2)):
        assert [len(o) for o in out] == limit
        assert all(t not in (0, BOS, EOS) for o in out for t in o)
    hyps = beam_search(model, src, mask, 2, 1.0, 0.5, 2, return_hypotheses=True)
    assert all(h.finished for h in hyps)  # forced to end at the limit (EOS scored)


# --------------------------------------------------------------- hand-built model


class TableModel:
    """p(next | tokens so far) from a table; prefixes not in the table: uniform.

    Tokens: 0 pad, 1 unk, 2 BOS, 3 EOS, 4 "a", 5 "b". Implements the interface
    the searches use (encode, new_decoder_cache, decode_step, cache.reorder).
    """

    V = 6
    cfg = SimpleNamespace(bos_id=BOS, eos_id=EOS, pad_id=0)

    def __init__(self, table):
        self.table = table

    def encode(self, src, src_mask):
        return src.shape[0]

    def new_decoder_cache(self, enc, *, target_length=None, max_length=None):
        return TableCache([() for _ in range(enc)])

    def decode_step(self, tokens, cache):
        rows = []
        for r, t in enumerate(tokens[:, -1].tolist()):
            if t != BOS:
                cache.prefixes[r] = cache.prefixes[r] + (t,)
            probs = torch.zeros(self.V, dtype=torch.float64)
            for tok, p in self.table.get(cache.prefixes[r], {}).items():
                probs[tok] = p
            rows.append(torch.log(probs + 1e-9) if probs.sum() > 0 else probs)
        return torch.stack(rows).unsqueeze(1)


class TableCache:
    def __init__(self, prefixes):
        self.prefixes = prefixes

    def reorder(self, index, *, cross=True):
        self.prefixes = [self.prefixes[i] for i in index.tolist()]


A, B_ = 4, 5
SRC = torch.ones(1, 3, dtype=torch.long)


def test_beam_finds_what_myopic_greedy_misses():
    # greedy takes "a" (0.6), then EOS (0.35): 0.21; "b" EOS is 0.4 * 0.95 = 0.38
    model = TableModel({(): {A: 0.6, B_: 0.4}, (A,): {EOS: 0.35, A: 0.33, B_: 0.32},
                        (B_,): {EOS: 0.95, A: 0.05}})
    assert greedy(model, SRC, None, 0, 10) == [[A]]
    best = beam_search(model, SRC, None, beam=2, length_penalty=0.0, max_len_a=0, max_len_b=10,
                       return_hypotheses=True)[0]
    assert best.tokens == [B_]
    assert math.isclose(best.score, math.log(0.4 * 0.95), rel_tol=1e-6)
    assert beam_search(model, SRC, None, 1, 0.0, 0, 10) == [[A]]


def test_length_penalty_chooses_by_score_over_length_power():
    # A = "a" EOS: 0.7 (2 tokens with EOS); B = "b b b" EOS: 0.3 * 0.95 * 0.95 (4 tokens).
    # Raw scores favour A; score / len ** alpha favours B once 2 ** alpha > log B / log A
    # (alpha > 1.87). (b, b) cannot end, so B is not cut short by an early EOS.
    model = TableModel({(): {A: 0.7, B_: 0.3}, (A,): {EOS: 1.0}, (B_,): {B_: 0.95, EOS: 0.05},
                        (B_, B_): {B_: 0.95, A: 0.05}, (B_, B_, B_): {EOS: 1.0}})
    score_a, score_b = math.log(0.7), math.log(0.3 * 0.95 * 0.95)
    chosen = set()
    for alpha in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0):
        hyps = beam_search(model, SRC, None, beam=2, length_penalty=alpha, max_len_a=0,
                           max_len_b=10, return_hypotheses=True)
        expected = [A] if score_a / 2 ** alpha > score_b / 4 ** alpha else [B_, B_, B_]
        assert hyps[0].tokens == expected, alpha
        assert math.isclose(hyps[0].normalized,
                            hyps[0].score / (len(hyps[0].tokens) + 1) ** alpha)
        chosen.add(tuple(expected))
    assert chosen == {(A,), (B_, B_, B_)}
    assert beam_search(model, SRC, None, 2, 1.0, 0, 10) == [[A]]
    assert beam_search(model, SRC, None, 2, 2.0, 0, 10) == [[B_, B_, B_]]


def test_immediate_eos_gives_empty_output():
    model = TableModel({(): {EOS: 0.9, A: 0.1}})
    assert greedy(model, SRC, None, 0, 5) == [[]]
    hyp = beam_search(model, SRC, None, 3, 1.0, 0, 5, return_hypotheses=True)[0]
    assert hyp.tokens == [] and hyp.finished and math.isclose(hyp.score, math.log(0.9),
                                                              rel_tol=1e-6)


def test_argument_errors():
    model = TableModel({})
    with pytest.raises(ValueError, match="beam must be an int >= 1"):
        beam_search(model, SRC, None, beam=0)
    with pytest.raises(TypeError, match="src must be an integer tensor"):
        greedy(model, SRC.float(), None)
    with pytest.raises(ValueError, match="src_mask must be a bool tensor of src's shape"):
        greedy(model, SRC, torch.zeros(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="max_len_a"):
        greedy(model, SRC, None, max_len_a=-1)
    with pytest.raises(TypeError, match="bos_id"):
        greedy(SimpleNamespace(cfg=None), SRC, None)
