"""Byte-level BPE and word tokenizers behind one interface: round trips, save/load."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leapformer.data.lm_corpus import bible_lm_corpus
from leapformer.data.lm_tokenizer import (
    BPETokenizer,
    LMTokenizer,
    WordTokenizer,
    train_bpe,
)
from leapformer.data.wikitext import WordVocab, read_wikitext_file

UNICODE = [
    "",
    "\n",
    "\n\n\n",
    "plain ascii, then a trailing newline\n",
    "  leading and trailing spaces  \t",
    "Windows\r\nline\rends\r\n",
    "Grüße, naïve café — “quotes” … ½ ∑ ∞",
    "日本語のテキスト。한국어 텍스트. Ελληνικά. עברית. العربية",
    "emoji 👩🏽‍💻🇯🇵 and combining e\u0301 and ZWJ \u200d and BOM \ufeff",
    "control \x00\x01\x7f bytes and NBSP\u00a0and \u2028 separator",
    "literal specials </s> <pad> <unk> are text",
    "\U0010ffff astral \U0001d11e",
]


@pytest.fixture(scope="module")
def corpus():
    return bible_lm_corpus()


@pytest.fixture(scope="module")
def bpe(corpus):
    verses = corpus["train"].split("\n")[:400]
    return train_bpe("\n".join(verses), vocab_size=500)


def test_bpe_specials_and_vocab(bpe):
    assert isinstance(bpe, BPETokenizer) and isinstance(bpe, LMTokenizer)
    assert bpe.vocab_size == 500
    assert (bpe.pad_id, bpe.eos_id, bpe.unk_id) == (0, 1, 2)
    tok = bpe.tokenizer
    assert [tok.token_to_id(s) for s in ("<pad>", "</s>", "<unk>")] == [0, 1, 2]
    ids = bpe.encode("In the beginning")
    assert ids and all(3 <= i < 500 for i in ids)
    assert len(ids) < len("In the beginning")  # merges were learnt


def test_bpe_round_trips_bible_text(bpe, corpus):
    text = corpus["test"]  # books the tokenizer never saw
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert bpe.unk_id not in ids and bpe.pad_id not in ids
    # </s> is the line break: one per verse, two at a book's end
    assert ids.count(bpe.eos_id) == text.count("\n")
    assert ids[-2:] == [bpe.eos_id, bpe.eos_id]
    arr = bpe.encode_array(text)
    assert arr.dtype == np.int64 and arr.tolist() == ids


@pytest.mark.parametrize("text", UNICODE)
def test_bpe_round_trips_any_unicode(bpe, text):
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert ids.count(bpe.eos_id) == text.count("\n") and bpe.unk_id not in ids


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_bpe_round_trip_property(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_line_breaks_and_padding(bpe):
    assert bpe.encode("") == [] and bpe.encode("\n") == [1]
    a, b = bpe.encode("a b"), bpe.encode("c")
    assert bpe.encode("a b\nc") == a + [1] + b
    assert bpe.encode("a b\nc\n") == a + [1] + b + [1]
    assert bpe.decode([0, *a, 1, 0, *b]) == "a b\nc"  # <pad> is dropped
    assert bpe.decode(np.array(a)) == "a b"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        bpe.decode([500])
    with pytest.raises(TypeError, match="takes a str"):
        bpe.encode(["a"])


def test_bpe_save_load_identical_ids(bpe, corpus, tmp_path):
    path = bpe.save(tmp_path / "model" / "tokenizer.json")
    assert [p.name for p in path.parent.iterdir()] == ["tokenizer.json"]  # atomic, no temp left
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "leapformer-lm-tokenizer" and data["kind"] == "bpe"
    back = LMTokenizer.load(path)
    assert isinstance(back, BPETokenizer) and back.vocab_size == bpe.vocab_size
    for text in [corpus["valid"][:20000], *UNICODE]:
        assert back.encode(text) == bpe.encode(text)
        assert back.decode(bpe.encode(text)) == text
    again = LMTokenizer.from_dict(bpe.to_dict())
    assert again.encode(corpus["valid"][:2000]) == bpe.encode(corpus["valid"][:2000])


def test_bpe_training_is_deterministic_and_validated(corpus):
    text = "\n".join(corpus["train"].split("\n")[:300])
    a, b = train_bpe(text, 400), train_bpe([text], 400)
    assert a.to_dict() == b.to_dict()
    with pytest.raises(ValueError, match="vocab_size must be an int >= 259"):
        train_bpe(text, 258)
    with pytest.raises(ValueError, match="no characters"):
        train_bpe(["\n\n", ""], 300)
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        train_bpe(["a", 3], 300)


WIKI = (" \n = Valkyria Chronicles = \n \n The game 's <unk> system is the same . \n"
        " \n It is a\ttactical game . \n")


def test_word_tokenizer_same_interface(tmp_path):
    path = tmp_path / "wiki.train.tokens"
    path.write_text(WIKI, encoding="utf-8")
    tokens, _ = read_wikitext_file(path)
    vocab = WordVocab.build(tokens)
    tok = WordTokenizer(vocab)
    assert isinstance(tok, LMTokenizer) and tok.vocab_size == len(vocab)
    assert (tok.pad_id, tok.eos_id, tok.unk_id) == (0, 1, 2)
    # encoding the file's text gives fairseq's stream, as the WikiText reader builds it
    ids = tok.encode(WIKI)
    assert ids == vocab.encode(tokens).tolist()
    assert tok.encode(WIKI.replace("\n", "\r\n")) == ids
    assert tok.decode(ids) == "\n= Valkyria Chronicles =\n\nThe game 's <unk> system is the same .\n" \
                              "\nIt is a tactical game .\n"
    assert tok.encode("the unseen game") == [vocab.index("the"), 2, vocab.index("game")]
    assert tok.encode("game\n") == [vocab.index("game"), 1]
    assert tok.decode([0, vocab.index("game"), 1, 0]) == "game\n"

    saved = LMTokenizer.load(tok.save(tmp_path / "word.json"))
    assert isinstance(saved, WordTokenizer) and saved.vocab == vocab
    assert saved.encode(WIKI) == ids

    built = WordTokenizer.build(WIKI)
    assert built.vocab == vocab and built.vocab.counts == vocab.counts


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        LMTokenizer.load(tmp_path / "nothing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    with pytest.raises(ValueError, match=r"bad\.json: not a JSON file"):
        LMTokenizer.load(bad)
    bad.write_text(json.dumps({"format": "leapformer-lm-tokenizer", "version": 1,
                               "kind": "sentencepiece"}))
    with pytest.raises(ValueError, match="unknown tokenizer kind 'sentencepiece'"):
        LMTokenizer.load(bad)
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a leapformer-lm-tokenizer"):
        LMTokenizer.load(bad)
