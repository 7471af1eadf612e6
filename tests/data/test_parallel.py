"""Parallel text files (reading, writing, errors) and the en-ja Bible split by book."""

import pytest
import torch

from leapformer.data.bible import parse_vid
from leapformer.data.parallel import (
    BIBLE_TEST_BOOKS,
    DEV_BOOKS,
    bible_en_ja,
    collate_translation,
    read_parallel,
    write_parallel,
)


def _files(tmp_path, src: bytes, tgt: bytes):
    s, t = tmp_path / "train.en", tmp_path / "train.ja"
    s.write_bytes(src)
    t.write_bytes(tgt)
    return s, t


def test_read_pairs_lines(tmp_path):
    s, t = _files(tmp_path, b"Hello .\r\nGood night\n", "こんにちは。\nおやすみ".encode())
    assert read_parallel(s, t) == [("Hello .", "こんにちは。"), ("Good night", "おやすみ")]


def test_write_then_read_round_trip(tmp_path):
    pairs = [("01001001", "In the beginning", "元始に"), ("01001002", "Now the earth", "地は")]
    s, t = write_parallel(pairs, tmp_path / "out" / "a.en", tmp_path / "out" / "a.ja")
    assert read_parallel(s, t) == [(e, j) for _, e, j in pairs]
    assert s.read_text(encoding="utf-8") == "In the beginning\nNow the earth\n"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_mismatched_line_counts_name_both_files_and_counts(tmp_path):
    s, t = _files(tmp_path, b"a\nb\nc\n", b"x\ny\n")
    with pytest.raises(ValueError, match=r"train\.en has 3 lines, .*train\.ja has 2"):
        read_parallel(s, t)


def test_empty_file(tmp_path):
    s, t = _files(tmp_path, b"a\n", b"\n")
    with pytest.raises(ValueError, match=r"train\.ja: empty file"):
        read_parallel(s, t)


def test_empty_line_names_the_line(tmp_path):
    s, t = _files(tmp_path, b"a\n  \nc\n", b"x\ny\nz\n")
    with pytest.raises(ValueError, match=r"train\.en:2: empty line"):
        read_parallel(s, t)


def test_bad_utf8_names_the_line(tmp_path):
    s, t = _files(tmp_path, b"a\nb\n", b"x\n\xff\xfe y\n")
    with pytest.raises(ValueError, match=r"train\.ja:2: not valid UTF-8"):
        read_parallel(s, t)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.en"):
        read_parallel(tmp_path / "nope.en", tmp_path / "nope.ja")


def test_write_errors(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        write_parallel([], tmp_path / "a", tmp_path / "b")
    with pytest.raises(ValueError, match=r"pairs\[1\] target holds a line break"):
        write_parallel([("a", "b"), ("c", "d\ne")], tmp_path / "a", tmp_path / "b")
    with pytest.raises(ValueError, match=r"pairs\[0\] has an empty source"):
        write_parallel([(" ", "b")], tmp_path / "a", tmp_path / "b")
    assert not (tmp_path / "a").exists()


def test_bible_split_by_book_is_deterministic_and_disjoint():
    splits = bible_en_ja()
    again = bible_en_ja()
    assert splits == again
    books = {s: {parse_vid(v)[0] for v, _, _ in rows} for s, rows in splits.items()}
    assert books["dev"] == set(DEV_BOOKS)
    assert books["test"] == set(BIBLE_TEST_BOOKS)
    assert not books["train"] & (books["dev"] | books["test"])
    assert len(books["train"]) == 66 - len(DEV_BOOKS) - len(BIBLE_TEST_BOOKS)
    sizes = {s: len(rows) for s, rows in splits.items()}
    assert sizes == {"train": 27954, "dev": 1553, "test": 1560}
    vid, en, ja = splits["train"][0]
    assert vid == "01001001" and en.startswith("In the beginning") and ja
    assert not any("&gt;" in en or "  " in en for _, en, _ in splits["train"])


def test_bible_max_chars_filters_train_only_unless_asked():
    full = bible_en_ja()
    short = bible_en_ja(max_chars=100)
    assert short["dev"] == full["dev"] and short["test"] == full["test"]
    assert 0 < len(short["train"]) < len(full["train"])
    assert all(max(len(e), len(j)) <= 100 for _, e, j in short["train"])
    both = bible_en_ja(max_chars=100, filter_eval=True)
    assert len(both["test"]) < len(full["test"])
    with pytest.raises(ValueError, match="max_chars"):
        bible_en_ja(max_chars=0)


def test_collate_translation_adds_bos_eos_and_pads():
    b = collate_translation([[5, 6, 7], [8]], [[9], [10, 11]])
    assert b.src.tolist() == [[5, 6, 7, 3], [8, 3, 0, 0]]
    assert b.src_mask.tolist() == [[False] * 4, [False, False, True, True]]
    assert b.tgt_in.tolist() == [[2, 9, 0], [2, 10, 11]]
    assert b.tgt_out.tolist() == [[9, 3, 0], [10, 11, 3]]
    assert torch.equal(b.tgt_mask, b.tgt_out == 0)
    with pytest.raises(ValueError, match=r"targets\[0\] holds a pad/bos/eos id"):
        collate_translation([[5]], [[3]])
    with pytest.raises(ValueError, match="as many sources as targets"):
        collate_translation([[5]], [])
