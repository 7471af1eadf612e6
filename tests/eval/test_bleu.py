"""Corpus BLEU: tokenizer by target language, identical text scores 100, a known
case equals sacreBLEU called directly with the same tokenizer, errors."""

import logging

import pytest
from sacrebleu.metrics import BLEU

from leapformer.eval import bleu as bleu_module
from leapformer.eval.bleu import BleuResult, bleu_tokenizer, corpus_bleu

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
