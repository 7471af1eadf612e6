"""The LM report: run table, extra evaluations, speed tables, targets, CLI."""

import json

import pytest

from leapformer.cli import main
from leapformer.tasks.lm.report import (
    collect_lm_results,
    cosformer_inference,
    evaluate_lm_targets,
    load_evals,
    render_lm_report,
)


def _run(root, mech, test_ppl, **extra):
    d = root / f"lm-{mech}"
    d.mkdir(parents=True)
    res = {"task": "lm", "attention": mech, "preset": "lite", "corpus": "bible", "steps": 2000,
           "valid_ppl": test_ppl + 1.0, "test_ppl": test_ppl, "valid_ppl_per_word": 50.0,
           "test_ppl_per_word": 2 * test_ppl, "eval_window": 512, "eval_stride": 256,
           "train_tokens_per_s": 1234.4, "peak_rss_mb": 456.0, "parameters": 4321,
           "command": "leapformer lm train", **extra}
    (d / "results.json").write_text(json.dumps(res))
    return d


def _eval(root, name, mech, split, mode, ppl):
    path = root / f"{name}.json"
    path.write_text(json.dumps({
        "run": f"runs/lm-{mech}", "split": split, "checkpoint": "best", "attention": mech,
        "cosformer_length": mode, "nll_per_token": 3.0, "ppl": ppl, "tokens": 1000,
        "nll_sum": 3000.0, "words": 800, "nll_per_word": 3.7, "ppl_per_word": 40.0,
        "window": 512, "stride": 256}))
    return path


def _speed_row(mode, mech, n, **kw):
    row = {"mode": mode, "mechanism": mech, "context": None, "batch": 1, "position": None,
           "ms": None, "tokens_per_s": None, "vs_softmax": None, "peak_mb": None,
           "cache_mb": None, "parameters": 10, "reps": 3, "error": None}
    row["context" if mode == "train" else "position"] = n
    return row | kw


def _speed():
    return {"machine": {"device": "cpu"}, "config": {}, "command": "leapformer lm bench",
            "rows": [
                _speed_row("train", "softmax", 2048, tokens_per_s=1000.0, vs_softmax=1.0,
                           ms=8.0, peak_mb=200.0),
                _speed_row("train", "leap", 2048, tokens_per_s=2500.0, vs_softmax=2.5, ms=3.2,
                           peak_mb=50.0),
                _speed_row("generate", "softmax", 4096, ms=3.0, vs_softmax=1.0),
                _speed_row("generate", "leap", 4096, ms=2.0, vs_softmax=1.5),
            ]}


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    # written in an order other than the table's: softmax must come first
    for mech, ppl in (("leap", 20.8), ("linear", 22.0), ("cosformer", 21.0), ("softmax", 20.0)):
        _run(root, mech, ppl)
    ev = tmp_path / "evals"
    ev.mkdir()
    evals = [
        _eval(ev, "cos-train", "cosformer", "test", "train", 30.0),
        _eval(ev, "cos-stepping", "cosformer", "test", "stepping", 25.0),
        _eval(ev, "cos-window", "cosformer", "test", "window", 19.0),  # not an inference mode
        _eval(ev, "cos-valid", "cosformer", "valid", "stepping", 10.0),  # not the test split
    ]
    return root, evals


def _rows(text, header):
    """Table rows (cells) of the table starting with ``header``."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(header))
    out = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        out.append([c.strip() for c in line.strip("|").split("|")])
    return out


def test_tables(runs):
    root, eval_paths = runs
    results = collect_lm_results([root])
    evals = load_evals(eval_paths)
    text = render_lm_report(results, evals, _speed(), command="leapformer lm report x")
    assert "- command: `leapformer lm report x`" in text
    assert "corpus: bible; preset: lite; steps: 2000" in text
    assert "512 / 256" in text
    rows = _rows(text, "| mechanism | valid ppl")
    assert [r[0] for r in rows] == ["softmax", "cosformer", "leap", "linear"]
    assert rows[2] == ["leap", "21.8", "20.8", "41.6", "1234", "456", "4321"]
    ev = _rows(text, "| mechanism | split")
    assert len(ev) == 4
    assert ["cosformer", "test", "stepping", "512 / 256", "25.0"] in ev
    train = _rows(text, "| context | mechanism")
    assert train == [["2k", "softmax", "1000", "1.00", "200"], ["2k", "leap", "2500", "2.50", "50.0"]]
    gen = _rows(text, "| position | mechanism")
    assert gen == [["4k", "softmax", "3.00", "1.00"], ["4k", "leap", "2.00", "1.50"]]
    targets = {r[0]: r for r in _rows(text, "| target |")}
    assert targets["LeaP training tokens/s vs softmax at context 2k"][3] == "PASS"
    assert targets["LeaP generation speed vs softmax at position 4k"][3] == "MISS"
    assert targets["LeaP generation speed vs softmax at position 16k"][3] == "n/a"


def test_targets_pass_and_cosformer_best_of_modes(runs):
    root, eval_paths = runs
    results = collect_lm_results([root])
    evals = load_evals(eval_paths)
    assert cosformer_inference(results, evals) == (25.0, "L=stepping")  # lower of train 30 / stepping 25
    got = {t["name"]: t for t in evaluate_lm_targets(results, evals)}
    soft = got["LeaP test ppl / softmax's"]
    assert soft["status"] == "PASS" and soft["value"] == pytest.approx(20.8 / 20.0)
    lin = got["LeaP test ppl / ReLU linear's"]
    assert lin["status"] == "PASS" and lin["value"] == pytest.approx(20.8 / 22.0)
    cos = got["LeaP test ppl / cosFormer's at inference"]
    assert cos["status"] == "PASS" and cos["value"] == pytest.approx(20.8 / 25.0)
    assert "L=stepping" in cos["shown"] and "25.00" in cos["shown"]


def test_targets_miss_and_window_fallback(tmp_path):
    for mech, ppl in (("softmax", 20.0), ("leap", 21.5), ("linear", 21.0), ("cosformer", 21.0)):
        _run(tmp_path, mech, ppl)
    results = collect_lm_results([tmp_path])
    got = {t["name"]: t for t in evaluate_lm_targets(results)}
    soft = got["LeaP test ppl / softmax's"]
    assert soft["status"] == "MISS" and soft["value"] == pytest.approx(1.075)
    lin = got["LeaP test ppl / ReLU linear's"]
    assert lin["status"] == "MISS" and lin["value"] == pytest.approx(21.5 / 21.0)
    cos = got["LeaP test ppl / cosFormer's at inference"]
    assert cos["status"] == "MISS" and cos["value"] == pytest.approx(21.5 / 21.0)
    assert "window L" in cos["shown"]


def test_targets_na_without_runs(tmp_path):
    _run(tmp_path, "leap", 20.0)
    got = evaluate_lm_targets(collect_lm_results([tmp_path]))
    assert [t["status"] for t in got] == ["n/a"] * 3


def test_cli_writes_report(runs, tmp_path, capsys):
    root, eval_paths = runs
    speed = tmp_path / "lm-speed.json"
    speed.write_text(json.dumps(_speed()))
    out = tmp_path / "lm.md"
    argv = ["lm", "report", "--runs", str(root), "--evals", *map(str, eval_paths),
            "--speed", str(speed), "--out", str(out)]
    assert main(argv) == 0
    text = out.read_text()
    assert text.startswith("# Language model results")
    assert "## Extra evaluations" in text and "## Speed" in text and "## Targets" in text
    assert "| LeaP test ppl / cosFormer's at inference | < 1 (better) | 0.832" in text
    assert f"wrote {out}" in capsys.readouterr().out


def test_errors(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect_lm_results([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no results.json"):
        collect_lm_results([tmp_path / "empty"])
    bad = tmp_path / "bad" / "r1"
    bad.mkdir(parents=True)
    (bad / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"could not read .*r1.results\.json"):
        collect_lm_results([tmp_path / "bad"])
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.json").write_text(json.dumps({"task": "listops", "test_accuracy": 0.4}))
    with pytest.raises(ValueError, match="missing attention, test_ppl"):
        collect_lm_results([other])
    broken = tmp_path / "broken.json"
    broken.write_text("[")
    with pytest.raises(ValueError, match="broken.json"):
        load_evals([broken])
    with pytest.raises(ValueError, match="missing attention, split, cosformer_length, ppl"):
        load_evals([other / "results.json"])
    _run(tmp_path / "ok", "leap", 20.0)
    out = tmp_path / "r.md"
    assert main(["lm", "report", "--runs", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert main(["lm", "report", "--runs", str(tmp_path / "ok"), "--evals", str(broken),
                 "--out", str(out)]) == 2
    assert main(["lm", "report", "--runs", str(tmp_path / "ok"), "--speed",
                 str(tmp_path / "nope.json"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "leapformer lm report: error: run folder" in err and "broken.json" in err
    assert "nope.json" in err
    assert not out.exists()
