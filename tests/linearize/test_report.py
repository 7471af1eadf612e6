"""``leapformer linearize-report``: bootstrap and paired intervals from 'lm eval' results."""

import json
import math

import numpy as np
import pytest

from leapformer.cli import main
from leapformer.linearize.report import comparable, load_evals, render_linearize_report


def _eval(path, level, *, noise=0.2, seed=0, stride=128, blocks=100):
    rng = np.random.default_rng(seed)
    tokens = [128] * blocks
    nll = [t * (level + rng.normal(0, noise)) for t in tokens]
    path.write_text(json.dumps({"ppl": math.exp(sum(nll) / sum(tokens)), "split": "test",
                                "window": 256, "stride": stride, "block_nll": nll,
                                "block_tokens": tokens}))
    return path


def test_table_ratios_and_pairs(tmp_path):
    teacher = _eval(tmp_path / "t.json", 4.0)
    close = _eval(tmp_path / "c.json", 4.0 + 0.002, seed=1)  # a different model, ~same ppl
    worse = _eval(tmp_path / "w.json", 4.2, seed=2)
    other = _eval(tmp_path / "o.json", 4.0, stride=64)
    evals = load_evals([("teacher", teacher), ("close", close), ("worse", worse),
                        ("other", other)])
    assert comparable(evals[0][1], evals[1][1]) and not comparable(evals[0][1], evals[3][1])
    text = render_linearize_report(evals, reference="teacher", command="cmd", notes=["n1"])
    assert "- command: `cmd`" in text and "- n1" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()
            if line.startswith("| ") and "model" not in line}
    assert rows["teacher"].rstrip().endswith("| 1 |")
    assert f"{math.exp(4.0):.0f}" in rows["teacher"] or "54.6" in rows["teacher"]
    assert "not comparable" in rows["other"]
    assert "- worse / teacher" not in text and "- teacher / worse: " in text
    line = next(x for x in text.splitlines() if x.startswith("- teacher / worse"))
    assert line.endswith("separated, teacher better")
    assert "teacher vs other: not comparable" in text


def test_errors_and_cli(tmp_path, capsys):
    _eval(tmp_path / "a.json", 4.0)
    (tmp_path / "old.json").write_text(json.dumps({"ppl": 50.0, "split": "test"}))
    with pytest.raises(ValueError, match="block_nll"):
        load_evals([("old", tmp_path / "old.json")])
    with pytest.raises(ValueError, match="given twice"):
        load_evals([("a", tmp_path / "a.json"), ("a", tmp_path / "a.json")])
    with pytest.raises(ValueError, match="reference must be one of"):
        render_linearize_report(load_evals([("a", tmp_path / "a.json")]), reference="b")
    _eval(tmp_path / "b.json", 4.1, seed=3)
    out = tmp_path / "r.md"
    assert main(["linearize-report", "--evals", f"a={tmp_path / 'a.json'}",
                 f"LeaP stage 1={tmp_path / 'b.json'}", "--reference", "a", "--out",
                 str(out)]) == 0
    assert "| LeaP stage 1 | test | 256 / 128 | 12800 |" in out.read_text()
    odd = tmp_path / "lr=1e-3"
    odd.mkdir()
    _eval(odd / "c.json", 4.0, seed=4)  # a path holding "=": the label ends at the first
    assert main(["linearize-report", "--evals", f"a={tmp_path / 'a.json'}",
                 f"c={odd / 'c.json'}"]) == 0
    assert "| c | test |" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["linearize-report", "--evals", f"a={tmp_path / 'a.json'}",
                 "--reference", "zzz"]) != 0
    assert "--reference must be one of the labels (a), got 'zzz'" in capsys.readouterr().err
