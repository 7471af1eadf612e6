"""The Bible LM corpus, stream batches (order, coverage, resume) and evaluation windows."""

import numpy as np
import pytest
import torch

from leapformer.data.bible import read_books, read_web
from leapformer.data.lm_corpus import (
    TEST_BOOKS,
    VALID_BOOKS,
    StreamBatcher,
    bible_lm_books,
    bible_lm_corpus,
    bible_lm_documents,
    sliding_windows,
)

# ----------------------------------------------------------------------------- corpus


def test_bible_split_by_book():
    books = bible_lm_books()
    assert books["valid"] == list(VALID_BOOKS) and books["test"] == list(TEST_BOOKS)
    sets = {s: set(b) for s, b in books.items()}
    assert not (sets["train"] & sets["valid"] or sets["train"] & sets["test"]
                or sets["valid"] & sets["test"])
    assert sets["train"] | sets["valid"] | sets["test"] == set(range(1, 67))

    verses = [v for v in read_web() if v.text]
    n = {s: sum(v.book in sets[s] for v in verses) for s in books}
    assert n == {"train": 27981, "valid": 1553, "test": 1561}
    assert all(0.045 < n[s] / len(verses) < 0.055 for s in ("valid", "test"))
    genres = {b.number: b.genre for b in read_books().values()}
    assert len({genres[b] for b in books["valid"]}) >= 4
    assert len({genres[b] for b in books["test"]}) >= 5


def test_bible_corpus_text_layout_and_determinism():
    corpus = bible_lm_corpus()
    assert list(corpus) == ["train", "valid", "test"]
    assert corpus == bible_lm_corpus()  # deterministic
    docs = bible_lm_documents()
    names = {b.number: b.name for b in read_books().values()}
    for split, books in bible_lm_books().items():
        text = corpus[split]
        assert text and text.endswith("\n\n")
        assert [name for name, _ in docs[split]] == [names[b] for b in books]
        # one book = its verses one per line, then an empty line (the document end)
        assert text.split("\n\n")[:-1] == [doc.rstrip("\n") for _, doc in docs[split]]
        assert text.count("\n\n") == len(books)
    web = {v.book: [] for v in read_web()}
    for v in read_web():
        if v.text:
            web[v.book].append(v.text)
    ruth = dict(docs["test"])["Ruth"].split("\n")[:-1]
    assert ruth == web[8] and len(ruth) == 85
    assert corpus["test"].startswith(web[8][0] + "\n")
    assert "Ruth" not in dict(docs["train"]) and "Genesis" in dict(docs["train"])


# ----------------------------------------------------------------------------- batches


def _stream(n, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 1000, n))


def test_stream_batcher_in_order_covers_stream_once():
    ids = _stream(1003)
    b = StreamBatcher(ids, batch_size=4, context=32)
    L = b.row_length
    assert L == 1002 // 4 == 250 and b.unused == 2
    batches = list(b)
    assert len(batches) == len(b) == 8  # 7 windows of 32, one of 26
    assert [x.shape for x, _ in batches] == [(4, 32)] * 7 + [(4, 26)]
    inputs = torch.cat([x for x, _ in batches], dim=1)
    targets = torch.cat([y for _, y in batches], dim=1)
    # row r is the contiguous piece ids[r*L : (r+1)*L], targets shifted by one
    assert torch.equal(inputs.reshape(-1), ids[:4 * L])
    assert torch.equal(targets.reshape(-1), ids[1:4 * L + 1])
    assert all(x.dtype == torch.int64 and x.is_contiguous() for pair in batches for x in pair)
    # same batches every epoch; the epoch counter moves on
    assert b.epoch == 1 and b.step == 0
    again = list(b)
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(batches, again))
    # numpy and lists are accepted
    c = StreamBatcher(ids.numpy().astype(np.int32), 4, 32)
    assert torch.equal(next(iter(c))[0], batches[0][0])


def test_stream_batcher_shuffled_windows():
    ids = _stream(1003)
    b = StreamBatcher(ids, batch_size=4, context=32, shuffle=True, seed=3)
    epoch0 = list(b)
    assert len(epoch0) == 8 and all(x.shape == (4, 32) for x, _ in epoch0)
    # every target position is trained on at least once; overlaps only at row ends
    seen = torch.zeros(1003, dtype=torch.int64)
    pos = torch.arange(1003)
    lookup = {}
    for x, y in epoch0:
        for row_x, row_y in zip(x, y):
            key = tuple(row_y.tolist())
            lookup[key] = lookup.get(key, 0) + 1
    for r in range(4):
        row = ids[1 + r * 250: 1 + (r + 1) * 250]
        starts = [0, 32, 64, 96, 128, 160, 192, 218]
        for s in starts:
            assert lookup.pop(tuple(row[s:s + 32].tolist())) == 1
            seen[pos[1 + r * 250 + s: 1 + r * 250 + s + 32]] += 1
    assert not lookup
    assert (seen[1:1001] >= 1).all() and seen[0] == 0 and (seen[1001:] == 0).all()
    # inputs precede targets by one token
    for x, y in epoch0:
        assert torch.equal(x[:, 1:], y[:, :-1])
    # deterministic per (seed, epoch); epochs and seeds differ
    epoch1 = list(b)
    again = StreamBatcher(ids, 4, 32, shuffle=True, seed=3)
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(epoch0, list(again)))
    assert not all(torch.equal(x, y) for (x, _), (y, _) in zip(epoch0, epoch1))
    other = list(StreamBatcher(ids, 4, 32, shuffle=True, seed=4))
    assert not all(torch.equal(x, y) for (x, _), (y, _) in zip(epoch0, other))
    # a context longer than a row: windows are whole rows
    short = StreamBatcher(ids[:21], batch_size=4, context=32, shuffle=True)
    assert [x.shape for x, _ in short] == [(4, 5)]


@pytest.mark.parametrize("shuffle", [False, True])
def test_stream_batcher_resume_is_exact(shuffle):
    ids = _stream(2000, seed=1)

    def make():
        return StreamBatcher(ids, batch_size=3, context=50, shuffle=shuffle, seed=7)

    full = make()
    reference = []
    while len(reference) < 3 * len(full) - 5:  # two and a half epochs and more
        reference.extend(full)
    for cut in (0, 5, len(full) - 1, len(full), len(full) + 4):
        first = make()
        got = []
        it = iter(first)
        while len(got) < cut:
            try:
                got.append(next(it))
            except StopIteration:
                it = iter(first)
        state = first.state_dict()  # taken while batch `cut - 1` is in use
        resumed = make()
        resumed.load_state_dict(state)
        while len(got) < len(reference):
            got.extend(resumed)
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                   for a, b in zip(got, reference)), cut


def test_stream_batcher_errors():
    ids = _stream(100)
    b = StreamBatcher(ids, 4, 8)
    with pytest.raises(ValueError, match="different token stream"):
        StreamBatcher(_stream(100, seed=5), 4, 8).load_state_dict(b.state_dict())
    with pytest.raises(ValueError, match="batch_size=4.*batch_size=5"):
        StreamBatcher(ids, 5, 8).load_state_dict(b.state_dict())
    with pytest.raises(ValueError, match="step"):
        b.load_state_dict({**b.state_dict(), "step": 99})
    with pytest.raises(ValueError, match="too short for batch_size=4"):
        StreamBatcher(ids[:4], 4, 8)
    with pytest.raises(ValueError, match=r"1-D .*\(2, 50\)"):
        StreamBatcher(ids.view(2, 50), 2, 8)
    with pytest.raises(TypeError, match="integers"):
        StreamBatcher(ids.float(), 2, 8)
    with pytest.raises(ValueError, match="context must be >= 1"):
        StreamBatcher(ids, 2, 0)


# ----------------------------------------------------------------------------- windows


def _fairseq_windows(stream, tokens_per_sample, context_window, bos):
    """fairseq eval-lm --context-window, re-enacted on lists: eval_lm lowers
    tokens_per_sample by the context window; TokenBlockDataset (break mode none,
    include_targets) cuts blocks of that many targets whose source is the stream
    shifted right by one with `bos` (eos) first; LMContextWindowDataset.collater
    prepends the last `context_window` tokens it saw and marks the block's start."""
    block = tokens_per_sample - context_window
    out, prev = [], []
    for s in range(0, len(stream), block):
        e = min(s + block, len(stream))
        item = stream[s:e]
        source = ([bos] + stream[0:e - 1]) if s == 0 else stream[s - 1:e - 1]
        extra = len(prev) + len(source) - (block + context_window)
        if extra > 0:
            prev = prev[extra:]
        toks = prev + source
        out.append((toks, [None] * len(prev) + item, len(prev)))
        prev = toks[-context_window:] if context_window else []
    return out


@pytest.mark.parametrize("n,window,stride", [(50, 8, 1), (50, 8, 3), (50, 8, 8), (7, 16, 5),
                                             (64, 16, 4), (1, 4, 2)])
def test_sliding_windows_match_fairseq(n, window, stride):
    ids = list(range(100, 100 + n))
    bos = 1
    ws = sliding_windows(torch.tensor(ids), window, stride, bos=bos)
    if stride < window:
        ref = _fairseq_windows(ids, window, window - stride, bos)
        assert len(ws) == len(ref)
        for w, (toks, tgts, first) in zip(ws, ref):
            assert w.inputs.tolist() == toks and w.first == first
            assert w.targets.tolist()[first:] == tgts[first:]
    # brute force: every token scored once, in order, with all of its context
    scored = []
    z = [bos] + ids
    for w in ws:
        assert len(w.inputs) == len(w.targets) <= window
        assert w.targets[:-1].tolist() == w.inputs[1:].tolist()
        for p in range(w.first, len(w.targets)):
            t = w.start + (p - w.first)  # index in ids of this target
            assert w.targets[p] == ids[t]
            assert w.inputs[:p + 1].tolist() == z[t - p:t + 1]  # the real preceding tokens
            assert p >= min(t, window - stride)  # at least C tokens of context when they exist
            scored.append(t)
        assert w.score_mask.sum() == w.n_scored
    assert scored == list(range(n))


def test_sliding_windows_without_bos_and_batches():
    ids = torch.arange(10, 30)
    ws = sliding_windows(ids, window=6, stride=2)
    scored = [w.start + i for w in ws for i in range(w.n_scored)]
    assert scored == list(range(1, 20))  # ids[0] is context only
    assert ws[0].inputs.tolist() == [10, 11] and ws[0].first == 0 and ws[0].start == 1
    last = ws[-1]
    assert last.inputs.tolist() == [24, 25, 26, 27, 28] and last.first == 4
    assert [w.start for w in ws[1:3]] == [w.start for w in ws][1:3]
    total = 0
    for inputs, targets, mask in ws.batches(batch_size=4, pad_id=0):
        assert inputs.shape == targets.shape == mask.shape and inputs.shape[0] <= 4
        total += int(mask.sum())
    assert total == 19
    x, _, m = next(ws.batches(4, pad_id=0))
    assert x[0].tolist() == [10, 11, 0, 0, 0, 0] and m[0].tolist() == [True, True] + [False] * 4
    assert x.shape == (4, 6) and m[1].tolist() == [False, False, True, True, False, False]
    with pytest.raises(ValueError, match="stride must be <= window"):
        sliding_windows(ids, 4, 5)
    with pytest.raises(ValueError, match="nothing to score"):
        sliding_windows(ids[:1], 4, 2)
    assert len(sliding_windows(ids[:1], 4, 2, bos=1)) == 1
