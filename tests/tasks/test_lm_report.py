"""The LM report: runs grouped over seeds (mean ± t interval, verdict), extra evaluations,
speed tables, no targets, CLI."""

import json

import pytest

from leapformer.cli import main
from leapformer.tasks.lm.report import (
    collect_lm_results,
    cosformer_inference,
    group_runs,
    load_evals,
    render_lm_report,
)


def _run(root, mech, test_ppl, folder=None, **extra):
    d = root / (folder or f"lm-{mech}")
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
    rows = _rows(text, "| mechanism | seeds")
    assert [r[0] for r in rows] == ["softmax", "cosformer", "leap", "linear"]
    assert rows[2] == ["leap", "1", "21.8", "20.8", "41.6", "1234", "456", "4321"]
    # single runs without test blocks: no interval, and the verdict says so
    assert "single run without test blocks (written before they were recorded), no interval" \
        in text
    assert ("test ppl: not separated: no interval for softmax, leap, cosformer, linear "
            "(single run)") in text
    ev = _rows(text, "| mechanism | split")
    assert len(ev) == 4
    assert ["cosformer", "test", "stepping", "512 / 256", "25.0"] in ev
    assert "test ppl 25.0 (L=stepping)" in text  # the better of train 30 / stepping 25
    train = _rows(text, "| context | mechanism")
    assert train == [["2k", "softmax", "1000", "1.00", "200"], ["2k", "leap", "2500", "2.50", "50.0"]]
    gen = _rows(text, "| position | mechanism")
    assert gen == [["4k", "softmax", "3.00", "1.00"], ["4k", "leap", "2.00", "1.50"]]
    for word in ("Targets", "PASS", "MISS", "issue"):
        assert word not in text


def _seeds(root, ppls):
    for mech, values in ppls.items():
        for seed, ppl in enumerate(values):
            _run(root, mech, ppl, folder=f"{mech}-s{seed}", seed=seed,
                 config={"attention": mech, "seed": seed, "model": {"d_model": 64}})


def test_seeds_are_grouped_with_a_t_interval_and_separated(tmp_path):
    # t(0.975, 2) = 4.302653: s = 0.2 -> 4.302653 * 0.2 / sqrt(3) = 0.50; s = 0.1 -> 0.25
    _seeds(tmp_path, {"softmax": [20.0, 20.2, 20.4], "leap": [21.0, 21.1, 21.2]})
    text = render_lm_report(collect_lm_results([tmp_path]))
    rows = {r[0]: r for r in _rows(text, "| mechanism | seeds")}
    assert rows["softmax"][1:4] == ["3", "21.2", "20.20 ± 0.50"]
    assert rows["leap"][1:4] == ["3", "22.1", "21.10 ± 0.25"]
    assert "test ppl: softmax < leap" in text  # [19.70, 20.70] vs [20.85, 21.35]
    assert "single run" not in text
    _run(tmp_path, "linear", 22.0, folder="linear-s0", seed=0,
         config={"attention": "linear", "seed": 0, "model": {"d_model": 64}})
    text = render_lm_report(collect_lm_results([tmp_path]))
    assert "test ppl: softmax < leap; single run, no interval: linear" in text
    assert "single run without test blocks" in text


def test_single_run_with_test_blocks_gets_a_block_bootstrap(tmp_path):
    import math

    import numpy as np

    rng = np.random.default_rng(0)
    tokens = [128] * 100
    for mech, level in (("softmax", 3.0), ("leap", 3.2)):
        nll = [t * (level + rng.normal(0, 0.2)) for t in tokens]
        _run(tmp_path, mech, math.exp(sum(nll) / sum(tokens)), seed=0,
             test_blocks={"nll": nll, "tokens": tokens})
    text = render_lm_report(collect_lm_results([tmp_path]))
    rows = {r[0]: r for r in _rows(text, "| mechanism | seeds")}
    low, half = rows["softmax"][3].split(" ± ")
    assert float(low) == pytest.approx(math.exp(3.0), rel=0.05) and 0 < float(half) < 1.0
    assert "test ppl: softmax < leap" in text  # exp(3.0) vs exp(3.2), 100 blocks each
    assert "a bootstrap over blocks of its test stream" in text


def test_overlapping_seeds_are_not_separated(tmp_path):
    _seeds(tmp_path, {"softmax": [20.0, 20.2, 20.4], "leap": [21.0, 21.1, 21.2],
                      "linear": [20.9, 21.3, 21.1]})  # 21.10 ± 0.50 overlaps both
    text = render_lm_report(collect_lm_results([tmp_path]))
    # no tiers (linear bridges the two), but the one separated pair is named
    assert ("test ppl: no tiers (wide intervals overlap across); separated pairs: "
            "softmax < leap") in text


def test_other_settings_get_their_own_row_and_a_repeated_seed_counts_once(tmp_path):
    _seeds(tmp_path, {"leap": [21.0, 21.2]})
    _run(tmp_path, "leap", 30.0, folder="leap-copy", seed=1,
         config={"attention": "leap", "seed": 1, "model": {"d_model": 64}})  # seed 1 again
    _run(tmp_path, "leap", 25.0, folder="leap-wide", seed=0,
         config={"attention": "leap", "seed": 0, "model": {"d_model": 128}})
    rows = {r[0]: r for r in _rows(render_lm_report(collect_lm_results([tmp_path])),
                                   "| mechanism | seeds")}
    assert set(rows) == {"leap [model.d_model=64]", "leap [model.d_model=128]"}
    # seed 1 twice: leap-s1 (after leap-copy by path) is kept; 21.0 and 21.2 with
    # t(0.975, 1) = 12.7062: 12.7062 * 0.141421 / sqrt(2) = 1.27
    assert rows["leap [model.d_model=64]"][1:4] == ["2", "22.1", "21.10 ± 1.27"]
    assert rows["leap [model.d_model=128]"][1:4] == ["1", "26.0", "25.0"]


def test_mechanism_options_are_named_not_listed_as_settings(tmp_path):
    _seeds(tmp_path, {"leap": [21.0, 21.2]})
    for seed, ppl in enumerate([20.0, 20.4]):
        _run(tmp_path, "leap", ppl, folder=f"norm-s{seed}", seed=seed,
             config={"attention": "leap", "seed": seed,
                     "model": {"d_model": 64, "mechanism_options": {"head_norm": "rms"}}})
    text = render_lm_report(collect_lm_results([tmp_path]), paired="leap",
                            notes=["machine: test"])
    assert "\n- machine: test\n" in text
    rows = {r[0]: r for r in _rows(text, "| mechanism | seeds")}
    assert set(rows) == {"leap", "leap+head_norm=rms"}
    assert rows["leap+head_norm=rms"][1] == "2"
    assert "leap - leap+head_norm=rms: +0.90 ± " in text
    # an option the preset sets for the mechanism anyway is not a variant
    _run(tmp_path / "wt", "leap", 30.0, folder="leap-q", seed=0,
         config={"attention": "leap", "seed": 0,
                 "model": {"mechanism_options": {"q_scale": True}},
                 "train": {"mechanism_options": {"leap": {"q_scale": True}}}})
    assert list(group_runs(collect_lm_results([tmp_path / "wt"]))) == ["leap"]


def test_cosformer_inference_is_the_best_of_the_inference_modes(runs, tmp_path):
    root, eval_paths = runs
    results = collect_lm_results([root])
    assert cosformer_inference(results, load_evals(eval_paths)) == (25.0, "L=stepping")
    assert cosformer_inference(results, []) == (21.0, "window L")  # the run's own


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
    assert "## Extra evaluations" in text and "## Speed" in text and "## Targets" not in text
    assert "Verdict" in text
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
    assert "error: leapformer lm report: run folder" in err and "broken.json" in err
    assert "nope.json" in err
    assert not out.exists()


def test_paired_by_seed(tmp_path, capsys):
    # unpaired the intervals overlap (the seed moves both); leap is 0.4-0.6 lower on each seed
    _seeds(tmp_path, {"softmax": [20.0, 23.0, 21.0], "leap": [19.5, 22.4, 20.6]})
    results = collect_lm_results([tmp_path])
    assert "Paired" not in render_lm_report(results)
    text = render_lm_report(results, paired="leap")
    assert "not separated" in text.split("Paired")[0]
    # differences -0.5, -0.6, -0.4: -0.50 ± 4.303 * 0.1 / sqrt(3) = -0.50 ± 0.25
    assert ("- leap - softmax: -0.50 ± 0.25 ppl over 3 paired seeds (leap higher in 0 of 3, "
            "sign test p = 0.250): separated, leap better") in text
    with pytest.raises(ValueError, match="--paired must name a mechanism"):
        render_lm_report(results, paired="cosformer")
    out = tmp_path / "lm.md"
    assert main(["lm", "report", "--runs", str(tmp_path), "--out", str(out),
                 "--paired", "leap"]) == 0
    assert "leap - softmax: -0.50" in out.read_text()
    capsys.readouterr()
    assert main(["lm", "report", "--runs", str(tmp_path), "--out", str(out),
                 "--paired", "gla"]) != 0
    assert "--paired must name a mechanism of the runs" in capsys.readouterr().err
