"""Corpus BLEU: tokenizer by target language, identical text scores 100, a known
case equals sacreBLEU called directly with the same tokenizer, errors."""

import logging
import random

import numpy as np
import pytest
from sacrebleu.metrics import BLEU

from leapformer.eval import bleu as bleu_module
from leapformer.eval.bleu import (
    BleuResult,
    bleu_from_stats,
    bleu_tokenizer,
    corpus_bleu,
    sentence_bleu_stats,
    writes_without_spaces,
)
from leapformer.tasks.st.evaluate import bleu_interval

JA_REFS = ["神は光を昼と名づけられた。", "地は形なく、むなしかった。"]
EN_REFS = ["God called the light day.", "The earth was formless and empty."]


def test_tokenizer_by_language():
    assert bleu_tokenizer("ja") == "ja-mecab"  # mecab-python3 and ipadic are dev dependencies
    assert bleu_tokenizer("JA_jp") == "ja-mecab"
    assert bleu_tokenizer("de") == "13a"
    assert bleu_tokenizer("en") == "13a"
    with pytest.raises(ValueError, match="target_lang"):
        bleu_tokenizer("")


@pytest.mark.parametrize(("refs", "lang"), [(JA_REFS, "ja"), (EN_REFS, "en")])
def test_identical_text_scores_100(refs, lang):
    res = corpus_bleu(refs, refs, lang)
    assert isinstance(res, BleuResult)
    assert res.score == pytest.approx(100.0)
    assert res.bp == pytest.approx(1.0)
    assert f"tok:{'ja-mecab' if lang == 'ja' else '13a'}" in res.signature
    assert "version:" in res.signature and str(res).startswith("BLEU = 100.00")


def test_known_differences_match_sacrebleu_directly(caplog):
    hyps = ["神は光を昼と呼ばれた。", "地は形がなく、むなしかった。"]
    with caplog.at_level(logging.INFO, logger="leapformer.eval.bleu"):
        res = corpus_bleu(hyps, JA_REFS, "ja")
    direct = BLEU(tokenize="ja-mecab").corpus_score(hyps, [JA_REFS])
    assert res.score == pytest.approx(direct.score)
    assert 0 < res.score < 100
    assert res.precisions == pytest.approx(tuple(direct.precisions))
    assert (res.sys_len, res.ref_len) == (direct.sys_len, direct.ref_len)
    assert res.tokenizer == "ja-mecab"
    assert "ja-mecab" in caplog.text

    en_hyps = ["God called the light night.", "The earth was empty."]
    en = corpus_bleu(en_hyps, EN_REFS, "en")
    assert en.score == pytest.approx(BLEU(tokenize="13a").corpus_score(en_hyps, [EN_REFS]).score)
    assert en.bp < 1.0  # the hypotheses are shorter


def test_multiple_reference_streams():
    other = ["God named the light day.", "The earth was without form."]
    hyps = ["God named the light day.", "The earth was formless and empty."]
    assert corpus_bleu(hyps, [EN_REFS, other], "en").score == pytest.approx(100.0)
    assert corpus_bleu(hyps, EN_REFS, "en").score < 100.0


def test_char_fallback_when_mecab_is_unavailable(monkeypatch):
    bleu_module._ja_mecab_available.cache_clear()
    import sacrebleu.tokenizers.tokenizer_ja_mecab as ja

    def broken(*args, **kwargs):
        raise RuntimeError("no MeCab here")

    monkeypatch.setattr(ja, "TokenizerJaMecab", broken)
    try:
        assert bleu_tokenizer("ja") == "char"
        hyps = ["神は光を昼と呼ばれた。", "地は形がなく、むなしかった。"]
        res = corpus_bleu(hyps, JA_REFS, "ja")
        assert res.tokenizer == "char" and "tok:char" in res.signature
        assert res.score == pytest.approx(BLEU(tokenize="char").corpus_score(hyps, [JA_REFS]).score)
    finally:
        bleu_module._ja_mecab_available.cache_clear()


def test_errors():
    with pytest.raises(ValueError, match="refs has 1 sentences but hyps has 2"):
        corpus_bleu(["a", "b"], ["a"], "en")
    with pytest.raises(ValueError, match="hyps is empty"):
        corpus_bleu([], [], "en")
    with pytest.raises(TypeError, match="hyps must be a list of strings"):
        corpus_bleu("a b", ["a b"], "en")
    with pytest.raises(TypeError, match=r"hyps\[1\] must be a str"):
        corpus_bleu(["a", 2], ["a", "b"], "en")
    with pytest.raises(ValueError, match=r"refs\[1\] has 1 sentences"):
        corpus_bleu(["a", "b"], [["a", "b"], ["a"]], "en")


def test_sentence_stats_sum_to_corpus_bleu():
    rng = random.Random(3)
    words = "the a cat dog sat ran on in mat hat big small".split()
    refs = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(40)]
    hyps = [" ".join(w if rng.random() < 0.7 else rng.choice(words) for w in r.split()
                     [:rng.randint(0, 12)]) for r in refs]
    stats = sentence_bleu_stats(hyps, refs, "en")
    assert stats.shape == (40, 10) and stats.dtype == np.int64
    assert bleu_from_stats(stats) == pytest.approx(corpus_bleu(hyps, refs, "en").score, abs=1e-9)
    ja_hyps = ["神は光を昼と", "地は形なく、むなしかった。"]
    assert bleu_from_stats(sentence_bleu_stats(ja_hyps, JA_REFS, "ja")) == \
        pytest.approx(corpus_bleu(ja_hyps, JA_REFS, "ja").score, abs=1e-9)
    iv = bleu_interval(stats, resamples=300)
    point, low, high = iv.mean, iv.low, iv.high
    assert point == pytest.approx(corpus_bleu(hyps, refs, "en").score)
    assert low < point < high
    assert bleu_interval(stats, resamples=300, seed=1) == bleu_interval(stats, resamples=300,
                                                                           seed=1)


def test_paired_bleu_interval():
    refs = [f"word{i} and more words here" for i in range(30)]
    same = sentence_bleu_stats(refs, refs, "en")
    worse = sentence_bleu_stats([r.split()[0] + " and" for r in refs], refs, "en")
    iv = bleu_interval(same, worse, resamples=200)
    d, low, high = iv.mean, iv.low, iv.high
    assert d > 0 and 0 < low <= high
    zero = bleu_interval(same, same, resamples=50)
    assert (zero.mean, zero.low, zero.high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same 30 sentences"):
        bleu_interval(same, worse[:10])
    with pytest.raises(ValueError, match="stats must be non-negative"):
        bleu_interval(np.zeros((3, 9)))
    with pytest.raises(ValueError, match="resamples"):
        bleu_interval(same, resamples=0)


def test_languages_written_without_spaces():
    for lang in ("ja", "JA_jp", "japanese", "jpn", "zh", "zh-TW", "chinese"):
        assert writes_without_spaces(lang), lang
    for lang in ("en", "de", "ko"):
        assert not writes_without_spaces(lang), lang
    with pytest.raises(ValueError, match="target_lang"):
        writes_without_spaces(" ")
