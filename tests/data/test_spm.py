"""SentencePiece wrapper: in-memory training, fixed special ids, round trips,
determinism, save/load, errors."""

import os

import pytest

from leapformer.data.spm import BOS_ID, EOS_ID, PAD_ID, UNK_ID, SpmTokenizer, train_spm

EN = [
    "In the beginning God created the heavens and the earth.",
    "The earth was formless and empty.",
    "Darkness was on the surface of the deep.",
    "God said, let there be light, and there was light.",
    "God saw the light, and saw that it was good.",
    "God divided the light from the darkness.",
    "God called the light day, and the darkness he called night.",
    "There was evening and there was morning, the first day.",
] * 4
JA = [
    "はじめに神は天と地とを創造された。",
    "地は形なく、むなしく、やみが淵のおもてにあった。",
    "神は「光あれ」と言われた。すると光があった。",
    "神はその光を見て、良しとされた。",
    "神はその光とやみとを分けられた。",
    "神は光を昼と名づけ、やみを夜と名づけられた。",
] * 4


@pytest.fixture(scope="module")
def en_tok():
    return train_spm(EN, 60)


def test_special_ids_are_fixed(en_tok):
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert [en_tok.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert (en_tok.pad_id, en_tok.unk_id, en_tok.bos_id, en_tok.eos_id) == (0, 1, 2, 3)
    assert en_tok.vocab_size == len(en_tok) == 60


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_round_trip(model_type):
    tok = train_spm(EN, 60, model_type)
    for text in EN[:8]:
        ids = tok.encode(text)
        assert all(isinstance(i, int) and 4 <= i < 60 for i in ids)
        assert tok.decode(ids) == text
    ids = tok.encode(EN[0], add_bos=True, add_eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert tok.decode(ids + [PAD_ID, PAD_ID]) == EN[0]  # specials dropped
    assert tok.encode(EN[:2]) == [tok.encode(EN[0]), tok.encode(EN[1])]


def test_japanese_round_trip_and_unknown_characters():
    tok = train_spm(JA, 56, character_coverage=1.0)  # 52 characters + 4 specials
    for text in JA[:6]:
        assert tok.decode(tok.encode(text)) == text
    assert UNK_ID in tok.encode("宇宙")  # characters never seen in training
    assert "".join(tok.encode_pieces(JA[0])).replace("▁", "") == JA[0]


def test_training_is_deterministic_and_leaves_no_files(tmp_path, monkeypatch, en_tok):
    monkeypatch.chdir(tmp_path)
    again = train_spm(EN, 60)
    assert os.listdir(tmp_path) == []
    assert again == en_tok and again.model_proto == en_tok.model_proto
    assert train_spm(EN, 60, "bpe") != en_tok


def test_save_load_equality(tmp_path, en_tok):
    path = en_tok.save(tmp_path / "models" / "en.model")
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["en.model"]
    loaded = SpmTokenizer.load(path)
    assert loaded == en_tok
    assert loaded.encode(EN[3]) == en_tok.encode(EN[3])


def test_errors(tmp_path, en_tok):
    with pytest.raises(ValueError, match="vocab_size must be an int >= 5"):
        train_spm(EN, 4)
    with pytest.raises(ValueError, match="model_type must be one of"):
        train_spm(EN, 60, "word")
    with pytest.raises(ValueError, match="too high"):
        train_spm(EN[:2], 5000)
    with pytest.raises(ValueError, match="no non-empty sentence"):
        train_spm(["", "  "], 60)
    with pytest.raises(TypeError, match="single string"):
        train_spm("a whole text", 60)
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        train_spm(["a", 3], 60)
    with pytest.raises(ValueError, match=r"texts\[0\] holds a line break"):
        train_spm(["a\nb"], 60)
    with pytest.raises(ValueError, match=r"sets \['pad_id'\] itself"):
        train_spm(EN, 60, pad_id=5)
    with pytest.raises(ValueError, match=r"token id 60 is not an int in \[0, vocab_size=60\)"):
        en_tok.decode([5, 60])
    with pytest.raises(TypeError, match="text must be a str or a list"):
        en_tok.encode(b"bytes")
    with pytest.raises(FileNotFoundError, match="no SentencePiece model"):
        SpmTokenizer.load(tmp_path / "missing.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.model"):
        SpmTokenizer.load(bad)
    assert train_spm(EN[:2], 5000, hard_vocab_limit=False).vocab_size < 5000


def test_trains_when_stderr_has_no_file_descriptor(capsys):
    # under pytest's capsys (and in notebooks) sys.stderr has no fileno(); training
    # must not depend on redirecting it
    tok = train_spm(["hello world", "hello there", "world of words"] * 50, 15)
    assert tok.vocab_size == 15
