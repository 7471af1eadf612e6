"""ListOps: generator against an independent evaluator, TSV files, tokenizer, CLI."""

from __future__ import annotations

import statistics
from collections import Counter

import numpy as np
import pytest
import torch

from leapformer.cli import main
from leapformer.data import (
    LRA_MAX_LEN,
    LRA_MIN_LEN,
    ListOpsExample,
    ListOpsTokenizer,
    evaluate,
    format_source,
    generate_listops,
    read_tsv,
    write_tsv,
)

# ----------------------------------------------------------------- independent evaluator
# Reads the official layout as LRA's generator builds it: every "( A B )" is a
# pair; an operator paired with arguments is an unsaturated function, and the
# pair (function, "]") applies it. It uses the parentheses, which the library
# ignores, so the layout is checked too.

OPS = {"[MIN": min, "[MAX": max, "[MED": lambda a: int(np.median(a)),
       "[SM": lambda a: sum(a) % 10}


def _pairs(tokens, i):
    if tokens[i] == "(":
        left, i = _pairs(tokens, i + 1)
        right, i = _pairs(tokens, i)
        assert tokens[i] == ")", f"expected ')' at token {i}, got {tokens[i]!r}"
        return (left, right), i + 1
    return tokens[i], i + 1


def _reduce(t):
    """-> ("value", v, levels, arg_counts) or ("partial", op, args, levels, arg_counts)."""
    if isinstance(t, str):
        if t in OPS:
            return ("partial", t, [], 0, [])
        assert t.isdigit() and len(t) == 1, t
        return ("value", int(t), 1, [])
    left, right = t
    if isinstance(right, str) and right == "]":
        kind, op, args, levels, counts = _reduce(left)
        assert kind == "partial" and args
        return ("value", OPS[op](args), levels + 1, counts + [len(args)])
    lk = _reduce(left)
    rk = _reduce(right)
    assert lk[0] == "partial" and rk[0] == "value", (lk, rk)
    _, op, args, levels, counts = lk
    return ("partial", op, args + [rk[1]], max(levels, rk[2]), counts + rk[3])


def oracle(source: str):
    """(value, length, levels, argument counts) of an official-layout source."""
    tokens = source.split()
    tree, end = _pairs(tokens, 0)
    assert end == len(tokens), "trailing tokens"
    kind, value, levels, counts = _reduce(tree)
    assert kind == "value"
    length = sum(tok not in "()" for tok in tokens)
    return value, length, levels, counts


def test_oracle_on_a_hand_written_example():
    assert oracle("( ( ( [MAX 2 ) 9 ) ] )") == (9, 4, 2, [2])
    src = "( ( ( ( [SM 2 ) ( ( ( [MED 3 ) 8 ) ] ) ) 1 ) ] )"  # [SM 2 [MED 3 8 ] 1 ]
    assert oracle(src) == (8, 8, 3, [2, 3])


# ----------------------------------------------------------------- generator


@pytest.mark.parametrize("params", [
    dict(seed=0, min_len=10, max_len=60),
    dict(seed=1, min_len=4, max_len=30, max_depth=3, max_args=3),
    dict(seed=2, min_len=20, max_len=200, max_depth=6, max_args=5, p_operator=0.5),
    dict(seed=3, min_len=100, max_len=400),
])
def test_every_example_evaluates_to_its_label_within_limits(params):
    n = 150
    examples = generate_listops(n, **params)
    assert len(examples) == n
    max_depth, max_args = params.get("max_depth", 10), params.get("max_args", 10)
    for ex in examples:
        value, length, levels, counts = oracle(ex.source)
        assert ex.label == value, ex.source
        assert params["min_len"] <= length <= params["max_len"]
        assert ex.length == length
        assert levels <= max_depth
        assert all(2 <= c <= max_args for c in counts)


def test_lra_defaults_lengths_and_labels():
    assert (LRA_MIN_LEN, LRA_MAX_LEN) == (501, 1999)  # LRA keeps 500 < length < 2000
    examples = generate_listops(12, seed=5)
    for ex in examples:
        value, length, levels, _ = oracle(ex.source)
        assert ex.label == value
        assert 501 <= length <= 1999 and levels <= 10


def test_length_bounds_are_inclusive_and_reached():
    examples = generate_listops(200, seed=4, min_len=4, max_len=6, max_args=4)
    lengths = Counter(ex.length for ex in examples)
    assert set(lengths) == {4, 5, 6}


def _roughly_uniform(counter, keys):
    mean = sum(counter[k] for k in keys) / len(keys)
    return set(counter) == set(keys) and all(0.7 * mean < counter[k] < 1.3 * mean for k in keys)


def test_operators_digits_and_argument_counts_are_uniform():
    # thousands of draws each (fixed seed): a wrong draw is far outside +-30%
    examples = generate_listops(300, seed=6, min_len=10, max_len=80, max_args=5)
    tokens = Counter(tok for ex in examples for tok in ex.source.split() if tok not in "()]")
    assert _roughly_uniform(Counter({t: c for t, c in tokens.items() if t in OPS}), list(OPS))
    digits = [str(d) for d in range(10)]
    assert _roughly_uniform(Counter({t: c for t, c in tokens.items() if t in digits}), digits)
    counts = Counter(c for ex in examples for c in oracle(ex.source)[3])
    assert _roughly_uniform(counts, [2, 3, 4, 5])
    assert set(ex.label for ex in examples) == set(range(10))


def test_no_duplicates_even_when_the_space_is_small():
    examples = generate_listops(400, seed=0, min_len=4, max_len=5, max_args=3)
    sources = [ex.source for ex in examples]
    assert len(set(sources)) == len(sources) == 400


def test_deterministic_given_the_seed():
    a = generate_listops(50, seed=11, min_len=10, max_len=60)
    b = generate_listops(50, seed=11, min_len=10, max_len=60)
    c = generate_listops(50, seed=12, min_len=10, max_len=60)
    assert a == b
    assert a != c


def test_progress_hook_is_called_per_example():
    calls = []
    generate_listops(7, seed=0, min_len=10, max_len=40, progress=calls.append)
    assert calls == [1] * 7


@pytest.mark.parametrize("kwargs, exc, fragment", [
    (dict(min_len=10, max_len=9), ValueError, "max_len"),
    (dict(min_len=0, max_len=9), ValueError, "min_len"),
    (dict(min_len=2, max_len=3), ValueError, "at least 4"),
    (dict(min_len=10, max_len=20, max_depth=1), ValueError, "max_depth"),
    (dict(min_len=10, max_len=20, p_operator=0.0), ValueError, "p_operator"),
    (dict(min_len=10, max_len=20, p_operator=1.5), ValueError, "p_operator"),
    (dict(min_len=500, max_len=600, max_depth=3, max_args=3), ValueError, "at most"),
    (dict(min_len=10, max_len=20, max_args=1), ValueError, "max_args"),
    (dict(min_len=10.0, max_len=20), TypeError, "min_len"),
    # max_args=2 gives lengths 1, 4, 7, 10, ... only: [5, 6] is unreachable
    (dict(min_len=5, max_len=6, max_args=2, max_attempts=2000), ValueError, "max_attempts"),
])
def test_generator_argument_errors(kwargs, exc, fragment):
    with pytest.raises(exc, match=fragment):
        generate_listops(3, seed=0, **kwargs)


def test_seed_is_required_and_non_negative():
    with pytest.raises(TypeError):
        generate_listops(3, min_len=10, max_len=20)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="seed"):
        generate_listops(3, seed=-1, min_len=10, max_len=20)


# ----------------------------------------------------------------- evaluator and layout


@pytest.mark.parametrize("source, value", [
    ("[MED 1 2 ]", 1),          # 1.5 -> 1
    ("[MED 2 2 3 3 ]", 2),      # 2.5 -> 2
    ("[MED 3 4 8 9 ]", 6),      # 6.0
    ("[MED 0 9 ]", 4),          # 4.5 -> 4
    ("[MED 9 8 ]", 8),          # 8.5 -> 8, unsorted input
    ("[MED 5 1 7 ]", 5),
    ("[MED 7 0 0 0 9 9 ]", 3),  # (0 + 7) / 2
    ("[MIN 4 2 8 ]", 2),
    ("[MAX 4 2 8 ]", 8),
    ("[SM 9 9 5 ]", 3),
    ("[SM 2 [MED 3 8 ] 1 ]", 8),
    ("[MAX 2 9 [MIN 4 7 ] 0 ]", 9),
    ("7", 7),
])
def test_evaluate_hand_written(source, value):
    assert evaluate(source) == value
    assert evaluate(format_source(source)) == value
    assert oracle(format_source(source))[0] == value


@pytest.mark.parametrize("digits", [[1, 2], [2, 2, 3, 3], [0, 9], [9, 8, 1, 0], [5, 5, 6, 7]])
def test_med_matches_numpy_median_truncated(digits):
    source = "[MED " + " ".join(map(str, digits)) + " ]"
    assert evaluate(source) == int(np.median(digits))


@pytest.mark.parametrize("source", ["", "[MAX ]", "[MAX 1", "1 2", "]", "[MAX 1 ] 2",
                                    "[MAX 1 ] [MIN 2 ]", "[FOO 1 ]", "[MAX 12 ]"])
def test_evaluate_rejects_malformed(source):
    with pytest.raises(ValueError):
        evaluate(source)


def test_format_source_official_layout():
    assert format_source("[MAX 2 9 ]") == "( ( ( [MAX 2 ) 9 ) ] )"
    assert format_source("[SM 2 [MED 3 8 ] 1 ]") == (
        "( ( ( ( [SM 2 ) ( ( ( [MED 3 ) 8 ) ] ) ) 1 ) ] )")
    assert format_source(format_source("[MAX 2 9 ]")) == "( ( ( [MAX 2 ) 9 ) ] )"
    assert format_source("5") == "5"


def test_example_validates_its_label():
    with pytest.raises(ValueError, match="label"):
        ListOpsExample("( ( ( [MAX 2 ) 9 ) ] )", 10)
    with pytest.raises(TypeError, match="label"):
        ListOpsExample("( ( ( [MAX 2 ) 9 ) ] )", "9")  # type: ignore[arg-type]


# ----------------------------------------------------------------- TSV files


def test_tsv_round_trip_and_layout(tmp_path):
    examples = generate_listops(40, seed=3, min_len=10, max_len=80)
    path = write_tsv(examples, tmp_path / "sub" / "basic_train.tsv")
    assert path == tmp_path / "sub" / "basic_train.tsv"
    lines = path.read_text().split("\n")
    assert lines[0] == "Source\tTarget" and lines[-1] == ""
    assert lines[1] == f"{examples[0].source}\t{examples[0].label}"
    assert read_tsv(path) == examples
    assert read_tsv(path, verify_labels=True) == examples
    assert [p.name for p in path.parent.iterdir()] == ["basic_train.tsv"]  # no temp file left


def test_read_accepts_crlf(tmp_path):
    path = tmp_path / "crlf.tsv"
    path.write_bytes(b"Source\tTarget\r\n( ( ( [MAX 2 ) 9 ) ] )\t9\r\n( ( [MIN 4 ) ] )\t4\r\n")
    assert read_tsv(path, verify_labels=True) == [
        ListOpsExample("( ( ( [MAX 2 ) 9 ) ] )", 9), ListOpsExample("( ( [MIN 4 ) ] )", 4)]


def test_fixed_seed_gives_identical_file_bytes(tmp_path):
    def make(seed, name):
        return write_tsv(generate_listops(60, seed=seed, min_len=10, max_len=100),
                         tmp_path / name).read_bytes()

    assert make(7, "a.tsv") == make(7, "b.tsv")
    assert make(7, "a.tsv") != make(8, "c.tsv")


def test_write_rejects_non_examples(tmp_path):
    with pytest.raises(TypeError, match=r"examples\[1\]"):
        write_tsv([ListOpsExample("3", 3), ("3", 3)], tmp_path / "x.tsv")
    assert not (tmp_path / "x.tsv").exists()


GOOD = "( ( ( [MAX 2 ) 9 ) ] )\t9"


@pytest.mark.parametrize("content, line, fragment", [
    ("", 1, "empty"),
    ("Source\tLabel\n" + GOOD + "\n", 1, "header"),
    (GOOD + "\n", 1, "header"),
    ("Source\tTarget\n" + GOOD + "\n( [MAX 2 ] )\t2\t7\n", 3, "2 tab-separated columns"),
    ("Source\tTarget\n" + GOOD + "\n\n", 3, "2 tab-separated columns"),
    ("Source\tTarget\n( [MAX 2 ] ) 2\n", 2, "2 tab-separated columns"),
    ("Source\tTarget\n" + GOOD + "\n( ( [MAX 2 ) ] )\t10\n", 3, "integer 0-9"),
    ("Source\tTarget\n( ( [MAX 2 ) ] )\tx\n", 2, "integer 0-9"),
    ("Source\tTarget\n( ( [MAX 2 ) ] )\t-1\n", 2, "integer 0-9"),
    ("Source\tTarget\n( ( [MAX 2 ) ] )\t\n", 2, "integer 0-9"),
    ("Source\tTarget\n\t3\n", 2, "empty Source"),
    ("Source\tTarget\n" + GOOD + "\n( ( [FOO 2 ) ] )\t2\n", 3, "unknown token '\\[FOO'"),
    ("Source\tTarget\n( ( [MAX 12 ) ] )\t2\n", 2, "unknown token '12'"),
    ("Source\tTarget\n( ( [MAX 2 ) ] \t2\n", 2, "unbalanced parentheses"),
    ("Source\tTarget\n) ( [MAX 2 ( ] )\t2\n", 2, "unbalanced parentheses"),
    ("Source\tTarget\n" + GOOD + "\n" + GOOD + "\n( ( ( [MAX 2 ) 9 ) )\t9\n", 4,
     "unbalanced brackets"),
    ("Source\tTarget\n( ( ] [MAX 2 ) )\t2\n", 2, "unbalanced brackets"),
    ("Source\tTarget\n( ( [MAX 2 ) ] )\t2\n( [MAX \xe9 ] )\t2\n", 3, "non-ASCII"),
])
def test_read_errors_name_file_and_line(tmp_path, content, line, fragment):
    path = tmp_path / "bad.tsv"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(ValueError, match=fragment) as info:
        read_tsv(path)
    assert str(info.value).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize("row, fragment", [
    ("( ( ( [MAX 2 ) 9 ) ] )\t8", "evaluates to 9"),
    ("( ( ( [MED 1 ) 2 ) ] )\t2", "evaluates to 1"),
    ("( [MAX ] )\t2", "no arguments"),
    ("( ( [MAX 2 ) ] ) 3\t2", "follows a complete expression"),
])
def test_verify_labels_names_file_and_line(tmp_path, row, fragment):
    path = tmp_path / "labels.tsv"
    path.write_text(f"Source\tTarget\n{GOOD}\n{row}\n")
    assert len(read_tsv(path)) == 2  # structure-only checks pass
    with pytest.raises(ValueError, match=fragment) as info:
        read_tsv(path, verify_labels=True)
    assert str(info.value).startswith(f"{path}:3: ")


def test_read_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_tsv(tmp_path / "absent.tsv")


# ----------------------------------------------------------------- tokenizer


def test_tokenizer_vocabulary():
    tok = ListOpsTokenizer()
    assert tok.vocab_size == 16 and tok.pad_id == 0
    assert tok.encode("( ( ( [MAX 2 ) 9 ) ] )") == [2, 8, 15, 5]
    assert tok.encode("[MIN [MAX [MED [SM ] 0 9") == [1, 2, 3, 4, 5, 6, 15]
    assert tok.decode([2, 8, 15, 5]) == "[MAX 2 9 ]"
    with pytest.raises(ValueError, match="FOO"):
        tok.encode("( [FOO 1 ] )")
    with pytest.raises(ValueError, match="16"):
        tok.decode([2, 16])


def test_tokenizer_round_trip_on_generated_examples():
    tok = ListOpsTokenizer()
    for ex in generate_listops(30, seed=9, min_len=10, max_len=200):
        ids = tok.encode(ex.source)
        assert len(ids) == ex.length and 0 not in ids
        assert tok.decode(ids, official=True) == ex.source
        assert tok.decode(torch.tensor(ids + [0, 0]), official=True) == ex.source
        assert evaluate(tok.decode(ids)) == ex.label


def test_batch_padding():
    tok = ListOpsTokenizer()
    sources = ["( ( ( [MAX 2 ) 9 ) ] )", "( ( [MIN 4 ) ] )", "7"]
    batch = tok.batch_encode(sources)
    assert batch.ids.dtype == torch.long and batch.ids.shape == (3, 4)
    assert batch.lengths.tolist() == [4, 3, 1]
    assert batch.ids.tolist() == [[2, 8, 15, 5], [1, 10, 5, 0], [13, 0, 0, 0]]
    assert batch.padding_mask().tolist() == [[False] * 4, [False, False, False, True],
                                             [False, True, True, True]]
    assert tok.batch_encode(sources, pad_to=3).ids.shape == (3, 6)
    assert tok.batch_encode(sources, pad_to="pow2").ids.shape == (3, 4)
    assert tok.batch_encode(sources[1:], pad_to="pow2").ids.shape == (2, 4)
    assert tok.batch_encode(sources, max_length=10, pad_to="max_length").ids.shape == (3, 10)
    with pytest.raises(ValueError, match=r"sources\[0\] has 4 tokens > max_length=3"):
        tok.batch_encode(sources, max_length=3)
    cut = tok.batch_encode(sources, max_length=2, truncate=True)
    assert cut.ids.tolist() == [[2, 8], [1, 10], [13, 0]] and cut.lengths.tolist() == [2, 2, 1]
    with pytest.raises(ValueError, match="pad_to"):
        tok.batch_encode(sources, pad_to="pow3")
    with pytest.raises(TypeError):
        tok.batch_encode("( ( [MIN 4 ) ] )")


def test_batch_pads_lra_lengths_to_2048():
    tok = ListOpsTokenizer()
    examples = generate_listops(4, seed=1)
    batch = tok.batch_encode([ex.source for ex in examples], max_length=2000, pad_to="pow2")
    assert batch.ids.shape[1] in (512, 1024, 2048)
    assert batch.ids.shape[1] >= max(ex.length for ex in examples)
    assert batch.lengths.tolist() == [ex.length for ex in examples]


# ----------------------------------------------------------------- CLI


def test_cli_writes_file_and_summary(tmp_path, capsys):
    out = tmp_path / "listops.tsv"
    rc = main(["data", "listops", "--n", "25", "--seed", "3", "--min-len", "10",
               "--max-len", "50", "--out", str(out), "--no-progress"])
    assert rc == 0
    examples = read_tsv(out, verify_labels=True)
    assert examples == generate_listops(25, seed=3, min_len=10, max_len=50)
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1
    lengths = [ex.length for ex in examples]
    assert f"wrote 25 examples to {out}" in summary[0]
    mean = statistics.mean(lengths)
    assert f"mean {mean:.1f} min {min(lengths)} max {max(lengths)}" in summary[0]
    labels = Counter(ex.label for ex in examples)
    assert " ".join(f"{d}:{labels[d]}" for d in range(10)) in summary[0]


def test_cli_reports_bad_ranges(tmp_path, capsys):
    rc = main(["data", "listops", "--n", "5", "--min-len", "60", "--max-len", "50",
               "--out", str(tmp_path / "x.tsv"), "--no-progress"])
    assert rc == 2
    assert "max_len" in capsys.readouterr().err
    assert not (tmp_path / "x.tsv").exists()
