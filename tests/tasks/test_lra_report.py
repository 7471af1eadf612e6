"""The LRA report: runs grouped over seeds, mean ± 95% interval, verdicts, no targets.

Interval values are computed here by hand: t(0.975, df=2) = 4.302653, so three
seeds with sample std s give a half-width of 4.302653 * s / sqrt(3).
"""

import json
import re

import numpy as np
import pytest

from leapformer.cli import main
from leapformer.tasks.lra.report import (
    collect,
    decode_correct,
    encode_correct,
    render_report,
    render_table,
)


def _write(root, task, mech, acc, seed=0, correct=None, folder=None, **extra):
    d = root / (folder or f"{task}-{mech}-s{seed}")
    d.mkdir(parents=True)
    res = {"task": task, "attention": mech, "seed": seed, "profile": "lite",
           "profile_settings": {"steps": 100, "lr": 1e-3}, "test_accuracy": acc,
           "train_tokens_per_s": 1000.0 + seed, "train_steps_per_s": 2.0, "peak_rss_mb": 300.0,
           "peak_rss_scope": "run", "parameters": 123, **extra}
    if correct is not None:
        res["test_correct"] = encode_correct(correct)
    (d / "results.json").write_text(json.dumps(res))


def _rows(table):
    return {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in table.splitlines()[2:] if line.startswith("|")}


def _half(cell):
    return float(re.fullmatch(r"[\d.]+ ± ([\d.]+)", cell).group(1))


def _seeds(root, accs):
    """``accs``: {mech: {task: [accuracy per seed]}}."""
    for mech, tasks in accs.items():
        for task, values in tasks.items():
            for seed, acc in enumerate(values):
                _write(root, task, mech, acc, seed=seed)


def test_single_runs_without_per_example_results_have_no_interval(tmp_path):
    _write(tmp_path, "listops", "leap", 0.40)
    _write(tmp_path, "pathfinder", "leap", 0.60)
    _write(tmp_path, "listops", "softmax", 0.35)
    table = render_table(collect([tmp_path]))
    rows = _rows(table)
    assert list(rows) == ["softmax", "leap"]  # softmax first
    assert rows["leap"][1:5] == ["40.00", "60.00", "50.00", "1"]
    assert rows["softmax"][1:5] == ["35.00", "-", "-", "1"]  # no average over a missing task
    assert "- listops: not separated: no interval for leap, softmax (single run)" in table


def test_three_seeds_mean_t_interval_and_verdicts(tmp_path):
    _seeds(tmp_path, {"softmax": {"listops": [0.40, 0.44, 0.42], "text": [0.60, 0.62, 0.64]},
                      "leap": {"listops": [0.30, 0.31, 0.32], "text": [0.50, 0.50, 0.50]},
                      "linear": {"listops": [0.41, 0.43, 0.39], "text": [0.60, 0.62, 0.64]}})
    table = render_table(collect([tmp_path]))
    rows = _rows(table)
    # listops: s = 0.02 -> 4.302653 * 0.02 / sqrt(3) = 4.97 points; s = 0.01 -> 2.48
    assert rows["softmax"][1:3] == ["42.00 ± 4.97", "62.00 ± 4.97"]
    assert rows["leap"][1:3] == ["31.00 ± 2.48", "50.00 ± 0.00"]
    assert rows["linear"][1] == "41.00 ± 4.97"
    # average over the per-seed averages: softmax 0.50, 0.53, 0.53 -> 52.00, s = 0.01732,
    # half = 4.302653 * 0.01 = 4.30; leap 0.40, 0.405, 0.41 -> 40.50 ± 1.24;
    # linear 0.505, 0.525, 0.515 -> 51.50 ± 2.48
    assert [rows[m][3] for m in ("softmax", "leap", "linear")] == [
        "52.00 ± 4.30", "40.50 ± 1.24", "51.50 ± 2.48"]
    assert rows["softmax"][4] == "3"  # seeds
    assert rows["softmax"][5] == "1001 / 1001"  # mean tokens/s over the seeds, per task
    # separated: softmax and linear above leap, not from each other; ties by name
    assert "- average: {softmax, linear} (not separated) > leap" in table
    assert "- listops: {softmax, linear} (not separated) > leap" in table
    assert "- text: {linear, softmax} (not separated) > leap" in table


def test_a_single_run_without_interval_is_named_apart_from_the_ranking(tmp_path):
    _seeds(tmp_path, {"softmax": {"listops": [0.40, 0.44, 0.42]},
                      "leap": {"listops": [0.30, 0.31, 0.32]}})
    _write(tmp_path, "listops", "elu", 0.36)  # one seed, no per-example results
    table = render_table(collect([tmp_path]))
    assert "- listops: softmax > leap; single run, no interval: elu" in table


def test_overlapping_intervals_are_not_separated(tmp_path):
    _seeds(tmp_path, {"softmax": {"listops": [0.40, 0.44, 0.42]},
                      "leap": {"listops": [0.41, 0.43, 0.39]}})
    table = render_table(collect([tmp_path]))
    assert "- listops: not separated: all intervals overlap" in table
    assert "average" not in table.split("Verdict")[1].split("±")[0]  # one task: no average line


def test_a_single_run_gets_a_bootstrap_interval_over_its_test_examples(tmp_path):
    rng = np.random.default_rng(0)
    half = rng.permutation([1] * 200 + [0] * 200)  # 400 examples, 50% correct
    most = rng.permutation([1] * 320 + [0] * 80)  # 80% correct
    _write(tmp_path, "listops", "leap", 0.5, correct=half)
    _write(tmp_path, "text", "leap", 0.8, correct=most)
    _write(tmp_path, "listops", "softmax", 0.7, correct=rng.permutation([1] * 280 + [0] * 120))
    rows = _rows(render_table(collect([tmp_path])))
    # normal approximation: 1.96 * sqrt(0.25 / 400) = 4.90 points
    assert rows["leap"][1].startswith("50.00 ± ") and 4.5 < _half(rows["leap"][1]) < 5.3
    # the average resamples each task: 1.96 * 0.5 * sqrt((0.25 + 0.16) / 400) = 3.14 points
    assert rows["leap"][3].startswith("65.00 ± ") and 2.8 < _half(rows["leap"][3]) < 3.5
    table = render_table(collect([tmp_path]))
    assert "- listops: softmax > leap" in table  # 70 ± 4.5 vs 50 ± 4.9 do not overlap


def test_same_seed_counts_once_and_other_settings_get_their_own_row(tmp_path):
    _write(tmp_path, "listops", "leap", 0.40, seed=0, folder="a")
    _write(tmp_path, "listops", "leap", 0.50, seed=0, folder="b")  # a copy: the last wins
    _write(tmp_path, "listops", "leap", 0.30, seed=0, folder="c",
           profile_settings={"steps": 200, "lr": 1e-3})
    rows = _rows(render_table(collect([tmp_path])))
    assert set(rows) == {"leap [steps=100]", "leap [steps=200]"}
    assert rows["leap [steps=100]"][1:4] == ["50.00", "50.00", "1"]  # listops, average, seeds
    assert rows["leap [steps=200]"][1] == "30.00"


def test_report_has_results_and_verdict_but_no_targets(tmp_path):
    _seeds(tmp_path, {"softmax": {"listops": [0.40, 0.44, 0.42]},
                      "leap": {"listops": [0.30, 0.31, 0.32]}})
    speed = {"config": {"length": 4096}, "machine": {"device": "cpu"}, "command": "bench", "rows": [
        {"mode": "train", "mechanism": m, "error": None, "tokens_per_s": t, "vs_softmax": t / 100,
         "vs_linear": t / 1000, "peak_mb": 10.0} for m, t in (("softmax", 100.0), ("leap", 900.0))]}
    report = render_report(collect([tmp_path]), speed, command="leapformer lra-report --runs x")
    assert "`leapformer lra-report --runs x`" in report
    assert "- listops: softmax > leap" in report
    assert "| leap | 31.00 ± 2.48 | 900 |" in report
    assert "each run's own peak" in report
    for word in ("Targets", "PASS", "MISS", "issue"):
        assert word not in report
    out = tmp_path / "report.md"
    assert main(["lra-report", "--runs", str(tmp_path), "--out", str(out)]) == 0
    assert "| softmax | 42.00 ± 4.97 |" in out.read_text()


def test_correctness_encoding_round_trips_and_is_checked(tmp_path):
    for n in (1, 3, 4, 5, 8, 9, 1000):
        bits = np.random.default_rng(n).integers(0, 2, n)
        enc = encode_correct(bits)
        assert len(enc["bits"]) == (n + 3) // 4
        np.testing.assert_array_equal(decode_correct(enc), bits)
    assert encode_correct([1, 0, 1, 1, 0]) == {"encoding": "bits-hex", "n": 5, "bits": "b0"}
    with pytest.raises(ValueError, match="does not match"):
        decode_correct({"encoding": "bits-hex", "n": 9, "bits": "ff"})
    with pytest.raises(ValueError, match="not hexadecimal"):
        decode_correct({"encoding": "bits-hex", "n": 4, "bits": "z"})
    with pytest.raises(ValueError, match="encoding"):
        decode_correct([1, 0])
    _write(tmp_path, "listops", "leap", 0.9, correct=[1, 0])  # 50% correct, not 90%
    with pytest.raises(ValueError, match="disagrees with test_accuracy"):
        render_table(collect([tmp_path]))


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect([tmp_path / "missing"])
    with pytest.raises(ValueError, match="no LRA results.json"):
        collect([tmp_path])
    (tmp_path / "m").mkdir()  # another task's results are not LRA results
    (tmp_path / "m" / "results.json").write_text(json.dumps(
        {"task": "mqar", "attention": "leap", "test_accuracy": 0.5}))
    with pytest.raises(ValueError, match=r"no LRA results.json under .* \(1 of other tasks\)"):
        collect([tmp_path])
    _write(tmp_path, "listops", "leap", 0.40, seed=0)
    assert [r["task"] for r in collect([tmp_path])] == ["listops"]
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "results.json").write_text("{broken")
    with pytest.raises(ValueError, match="could not read"):
        collect([tmp_path])


def test_runs_recorded_before_a_field_existed_group_with_newer_ones(tmp_path):
    """An older results.json lacks a profile or model field added since (it ran with the
    field's default) or stores a None; it is still a seed of the same configuration."""
    old = {"steps": 100, "lr": 1e-3}
    new = {**old, "stand_in": None, "pair_features": "official"}
    _write(tmp_path, "listops", "leap", 0.40, seed=0, profile_settings=old,
           model={"d_model": 64})
    _write(tmp_path, "listops", "leap", 0.44, seed=1, profile_settings=new,
           model={"d_model": 64, "pair_features": "official"})
    _write(tmp_path, "listops", "leap", 0.50, seed=2,
           profile_settings={**new, "pair_features": "normalized"}, model={"d_model": 64})
    rows = _rows(render_table(collect([tmp_path])))
    assert set(rows) == {"leap [pair_features=official]", "leap [pair_features=normalized]"}
    assert rows["leap [pair_features=official]"][-5] == "2"  # seeds 0 and 1 together


def test_paired_by_seed(tmp_path, capsys):
    # the seed moves both mechanisms; cosformer is 1.5-3 points below leap on every seed
    _seeds(tmp_path, {"leap": {"text": [0.40, 0.60, 0.50], "listops": [0.3, 0.3, 0.3]},
                      "cosformer": {"text": [0.38, 0.585, 0.47]}})
    results = collect([tmp_path])
    table = render_table(results)
    assert "- text: not separated: all intervals overlap" in table and "Paired" not in table
    paired = render_table(results, paired="leap")
    # differences 2, 1.5, 3 points: 2.17 ± 4.303 * 0.764 / sqrt(3) = 2.2 ± 1.9
    assert "- text:\n  - leap - cosformer: +2.2 ± 1.9 points over 3 paired seeds" in paired
    assert "(leap higher in 3 of 3, sign test p = 0.250): separated, leap better" in paired
    assert "- listops:" not in paired  # nothing to pair with
    with pytest.raises(ValueError, match="paired must name a mechanism"):
        render_table(results, paired="softmax")
    out = tmp_path / "r.md"
    assert main(["lra-report", "--runs", str(tmp_path), "--out", str(out),
                 "--paired", "leap"]) == 0
    assert "leap - cosformer: +2.2" in out.read_text()
    capsys.readouterr()
    assert main(["lra-report", "--runs", str(tmp_path), "--paired", "gla"]) != 0
    err = capsys.readouterr().err
    assert "--paired must name a mechanism of the runs (cosformer, leap), got 'gla'" in err
