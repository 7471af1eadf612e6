"""evaluate_perplexity: fairseq eval-lm --context-window semantics, checked against a
direct per-token computation on a tiny random model."""

import math

import pytest
import torch

from leapformer.models import CausalLM, LMConfig
from leapformer.tasks.lm.perplexity import evaluate_perplexity

V = 23


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(attention, seed=0):
    torch.manual_seed(seed)
    cfg = LMConfig(vocab_size=V, context_length=16, attention=attention, num_layers=2,
                   d_model=16, nhead=2, dim_feedforward=32, dropout=0.3)
    return CausalLM(cfg).train()  # dropout on: evaluation must switch it off




def reference(model, ids, window, stride, bos):
    model.eval()
    z = ([bos] if bos is not None else []) + list(ids)
    C = window - stride
    total, n = 0.0, 0
    # target number a (0-based) is z[a + 1]; it is in block a // stride at offset j
    for a in range(len(z) - 1):
        j = a % stride
        ctx_len = min(a, C + j) + 1  # tokens read before predicting z[a + 1]
        context = torch.tensor([z[a + 1 - ctx_len:a + 1]])
        assert context.shape[1] <= window
        with torch.no_grad():
            logp = torch.log_softmax(model(context)[0, -1].double(), -1)
        total -= float(logp[z[a + 1]])
        n += 1
    return total, n


@pytest.mark.parametrize("attention", ["softmax", "leap"])
@pytest.mark.parametrize("window,stride", [(8, 8), (8, 1), (8, 3), (5, 2), (1, 1)])
@pytest.mark.parametrize("bos", [1, None])
def test_matches_direct_per_token_computation(attention, window, stride, bos):
    model = _model(attention)
    g = torch.Generator().manual_seed(window * 10 + stride)
    ids = torch.randint(3, V, (29,), generator=g)
    res = evaluate_perplexity(model, ids, window=window, stride=stride, batch_size=3, bos=bos,
                              words=20)
    assert model.training  # mode restored
    total, n = reference(model, ids.tolist(), window, stride, bos)
    assert res["tokens"] == n == (29 if bos is not None else 28)
    assert res["nll_sum"] == pytest.approx(total, rel=1e-5)
    assert res["nll_per_token"] == pytest.approx(total / n, rel=1e-5)
    assert res["ppl"] == pytest.approx(math.exp(total / n), rel=1e-5)
    assert res["ppl_per_word"] == pytest.approx(math.exp(total / 20), rel=1e-5)


def test_batch_size_and_context_change_the_result_as_they_should():
    model = _model("linear")
    ids = torch.randint(3, V, (40,), generator=torch.Generator().manual_seed(1))
    a = evaluate_perplexity(model, ids, window=8, stride=2, batch_size=1, bos=1)
    b = evaluate_perplexity(model, ids, window=8, stride=2, batch_size=7, bos=1)
    assert a["nll_sum"] == pytest.approx(b["nll_sum"], rel=1e-6)  # padding is invisible
    c = evaluate_perplexity(model, ids, window=8, stride=8, batch_size=7, bos=1)
    assert c["tokens"] == a["tokens"] and c["nll_sum"] != pytest.approx(a["nll_sum"], rel=1e-6)
    assert a["ppl_per_word"] is None and a["words"] is None


def test_blocks_partition_the_scored_stream():
    model = _model("leap")
    ids = torch.randint(3, V, (40,), generator=torch.Generator().manual_seed(2))
    whole = evaluate_perplexity(model, ids, window=8, stride=2, batch_size=3, bos=1, blocks=6)
    assert len(whole["block_nll"]) == len(whole["block_tokens"]) == 6  # 20 windows -> 6 runs
    assert sum(whole["block_tokens"]) == whole["tokens"] == 40
    assert sorted(whole["block_tokens"]) == [6, 6, 6, 6, 8, 8]  # 4, 4, 3, 3, 3, 3 windows
    assert sum(whole["block_nll"]) == pytest.approx(whole["nll_sum"], rel=1e-6)
    # each block is its stretch of the stream: the first block's 8 tokens alone
    first = evaluate_perplexity(model, ids[:8], window=8, stride=2, batch_size=3, bos=1)
    assert whole["block_nll"][0] == pytest.approx(first["nll_sum"], rel=1e-5)
    few = evaluate_perplexity(model, ids[:5], window=8, stride=8, bos=1, blocks=50)
    assert few["block_tokens"] == [5]  # fewer windows than blocks: one block per window
    with pytest.raises(ValueError, match="blocks must be a positive int"):
        evaluate_perplexity(model, ids, window=8, stride=2, bos=1, blocks=0)


def test_cosformer_length_modes_run():
    model = _model("cosformer")
    ids = torch.randint(3, V, (20,), generator=torch.Generator().manual_seed(2))
    out = {m: evaluate_perplexity(model, ids, window=8, stride=4, bos=1, cosformer_length=m)
           for m in ("window", "train", "stepping")}
    assert all(math.isfinite(r["ppl"]) for r in out.values())
    assert out["train"]["nll_sum"] != pytest.approx(out["window"]["nll_sum"], rel=1e-6)


def test_errors():
    model = _model("linear")
    ids = torch.randint(3, V, (10,))
    with pytest.raises(ValueError, match="stride must be <= window"):
        evaluate_perplexity(model, ids, window=4, stride=5)
    with pytest.raises(ValueError, match=r"token id 99, outside the model's vocabulary \[0, 23\)"):
        evaluate_perplexity(model, torch.tensor([3, 99, 4]), window=4, stride=1)
    with pytest.raises(ValueError, match="bos holds token id 50"):
        evaluate_perplexity(model, ids, window=4, stride=1, bos=50)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        evaluate_perplexity(model, ids, window=4, stride=1, batch_size=0)
    with pytest.raises(ValueError, match="words must be None or a positive int"):
        evaluate_perplexity(model, ids, window=4, stride=1, words=0)
    with pytest.raises(ValueError, match="cosformer_length must be one of"):
        evaluate_perplexity(model, ids, window=4, stride=1, cosformer_length="given")
    with pytest.raises(TypeError, match="model must be a CausalLM"):
        evaluate_perplexity(torch.nn.Linear(2, 2), ids, window=4, stride=1)
