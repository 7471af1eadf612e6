"""WikiText token files as fairseq reads them, and the word vocabulary."""

import json

import numpy as np
import pytest

from leapformer.data.wikitext import (
    EOS,
    UNK,
    WordVocab,
    load_wikitext,
    read_wikitext,
    read_wikitext_file,
    wikitext_dir,
)

# The layout of wiki.*.tokens: a blank line (one space) before and after each
# heading, paragraphs on one line, a space before and after every word.
TRAIN = (" \n"
         " = Valkyria Chronicles III = \n"
         " \n"
         " The game 's <unk> system is the same as Valkyria Chronicles . \n"
         " \n"
         " = = Gameplay = = \n"
         " \n"
         " It is a tactical role @-@ playing game ;  the game is\t1 @,@ 000 years old . \n")
# fairseq (Binarizer + Dictionary.encode_line, append_eos=True) by hand:
#   8 lines, each ends with </s> (the 4 blank ones are a lone </s>);
#   words: 5 (= Valkyria Chronicles III =) + 12 + 5 (= = Gameplay = =) + 18 = 40
TRAIN_LINES, TRAIN_WORDS = 8, 40

# universal newlines: "\r\n" and a lone "\r" end a line; NBSP (U+00A0) and
# U+2028 are whitespace inside a line; the last line has no "\n" but is a line.
VALID = (" = Heading = \r\n"
         " a\u00a0b c\rd e \n"
         " \n"
         "final\u2028words")
#   lines: " = Heading = " (3 words), " a b c" (3), "d e " (2), " " (0), "final words" (2)
VALID_LINES, VALID_WORDS = 5, 10

TEST = " = T = \n \n x y \n"


def _write(folder, train=TRAIN, valid=VALID, test=TEST):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"wiki.{name}.tokens").write_bytes(text.encode("utf-8"))
    return folder


def test_token_counts_match_fairseq(tmp_path):
    data = read_wikitext(_write(tmp_path / "wt"))
    assert len(data["train"]) == TRAIN_WORDS + TRAIN_LINES == 48
    assert data["train"].count(EOS) == TRAIN_LINES
    assert data["train"][:8] == [EOS, "=", "Valkyria", "Chronicles", "III", "=", EOS, EOS]
    assert data["train"][-4:] == ["years", "old", ".", EOS]
    assert len(data["valid"]) == VALID_WORDS + VALID_LINES == 15
    assert data["valid"] == ["=", "Heading", "=", EOS, "a", "b", "c", EOS, "d", "e", EOS, EOS,
                             "final", "words", EOS]
    assert data["test"] == ["=", "T", "=", EOS, EOS, "x", "y", EOS]
    tokens, n_lines = read_wikitext_file(tmp_path / "wt" / "wiki.train.tokens")
    assert (len(tokens), n_lines) == (48, 8)
    # the same words share one string object (memory for WikiText-103)
    assert tokens[1] is tokens[5]


def test_subfolder_and_split_subset(tmp_path):
    _write(tmp_path / "wikitext-103")
    assert wikitext_dir(tmp_path) == tmp_path / "wikitext-103"
    data = read_wikitext(tmp_path, splits=("test",))
    assert list(data) == ["test"] and len(data["test"]) == 8
    with pytest.raises(ValueError, match="unknown WikiText split 'dev'"):
        read_wikitext(tmp_path, splits=("dev",))


def test_missing_empty_and_bad_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_wikitext(tmp_path / "nowhere")
    folder = _write(tmp_path / "wt")
    (folder / "wiki.valid.tokens").unlink()
    with pytest.raises(FileNotFoundError) as err:
        read_wikitext(folder)
    msg = str(err.value)
    assert str(folder / "wiki.valid.tokens") in msg
    assert all(n in msg for n in ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"))
    # the raw (untokenised) release gets a hint
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "wiki.train.raw").write_text("x\n")
    with pytest.raises(FileNotFoundError, match="wikitext-103-v1"):
        read_wikitext(raw)

    folder = _write(tmp_path / "empty", test="")
    with pytest.raises(ValueError, match=r"wiki\.test\.tokens: empty file"):
        read_wikitext(folder)
    folder = _write(tmp_path / "blank", valid=" \n \n\n")
    with pytest.raises(ValueError, match=r"wiki\.valid\.tokens: holds no words"):
        read_wikitext(folder)

    folder = _write(tmp_path / "latin1")
    (folder / "wiki.train.tokens").write_bytes(b" = A = \n \n caf\xe9 au lait \n")
    with pytest.raises(ValueError, match=r"wiki\.train\.tokens:3: not UTF-8 .*0xe9 at column 5"):
        read_wikitext(folder)


def test_vocab_build_order_counts_and_encode(tmp_path):
    tokens = read_wikitext(_write(tmp_path / "wt"))["train"]
    vocab = WordVocab.build(tokens)
    assert vocab.symbols[:3] == ["<pad>", "</s>", "<unk>"]
    assert (vocab.pad_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)
    assert vocab.counts[:3] == [0, 8, 1]  # 8 lines; WikiText's own <unk> is the unk symbol
    # then by decreasing count, ties in code-point order (fairseq's finalize)
    assert vocab.symbols[3:10] == ["=", "game", "is", ".", "Chronicles", "Valkyria", "the"]
    assert vocab.counts[3:10] == [6, 3, 3, 2, 2, 2, 2]
    words = vocab.symbols[3:]
    assert words == sorted(words, key=lambda w: (-vocab.counts[vocab.index(w)], w))
    assert len(vocab) == 3 + len(set(tokens) - {EOS, UNK})
    ids = vocab.encode(tokens)
    assert ids.dtype == np.int64 and ids.shape == (48,)
    assert vocab.decode(ids) == tokens
    assert list(vocab.encode(["game", "unseen", EOS, UNK])) == [vocab.index("game"), 2, 1, 2]
    with pytest.raises(TypeError, match="not a str"):
        vocab.encode("game")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.decode([len(vocab)])

    small = WordVocab.build(tokens, min_count=2)
    assert small.symbols == ["<pad>", "</s>", "<unk>", "=", "game", "is", ".", "Chronicles",
                             "Valkyria", "the"]
    padded = WordVocab.build(tokens, min_count=2, pad_to_multiple=8)
    assert len(padded) == 16 and padded.symbols[10:] == [f"madeupword{i:04d}" for i in range(6)]
    assert WordVocab.build(tokens, max_size=5).symbols == ["<pad>", "</s>", "<unk>", "=", "game"]
    with pytest.raises(ValueError, match="reserved"):
        WordVocab.build(["a", "<pad>"])


def test_vocab_save_load(tmp_path):
    vocab = WordVocab.build(read_wikitext(_write(tmp_path / "wt"))["valid"])
    path = vocab.save(tmp_path / "out" / "vocab.json")
    back = WordVocab.load(path)
    assert back == vocab and back.counts == vocab.counts
    assert [p.name for p in path.parent.iterdir()] == ["vocab.json"]  # no temporary left
    data = json.loads(path.read_text())
    data["symbols"][3] = data["symbols"][4]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"vocab\.json: .*repeated"):
        WordVocab.load(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="not a JSON file"):
        WordVocab.load(path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        WordVocab.load(tmp_path / "missing.json")


def test_load_wikitext_streams(tmp_path):
    root = _write(tmp_path / "wt")
    vocab, streams = load_wikitext(root)
    data = read_wikitext(root)
    assert list(streams) == ["train", "valid", "test"]
    for split in streams:
        assert np.array_equal(streams[split], vocab.encode(data[split]))
    assert vocab == WordVocab.build(data["train"])
    v2, only_test = load_wikitext(root, vocab, splits=("test",))
    assert v2 is vocab and np.array_equal(only_test["test"], streams["test"])
    with pytest.raises(ValueError, match="'train' must be among"):
        load_wikitext(root, splits=("test",))
