"""Benchmark mechanism names: results written with the old names (``sdpa``,
``linear_relu``, ``linear_elu``, ``vs_sdpa``) are read with the registry's names by
the LRA and LM reports."""

import json

from leapformer.bench.names import LEGACY_NAMES, canonical_result
from leapformer.nn import MECHANISMS
from leapformer.tasks.lm.report import load_speed, render_speed_tables
from leapformer.tasks.lra.report import figure1_points, render_report


def test_legacy_names_map_to_registered_mechanisms():
    assert set(LEGACY_NAMES.values()) <= set(MECHANISMS)
    assert not set(LEGACY_NAMES) & set(MECHANISMS)


def test_canonical_result_renames_rows_config_and_ratio_column():
    old = {"config": {"mechanisms": ("sdpa", "linear_relu", "leap"), "length": 8},
           "rows": [{"mechanism": "sdpa", "vs_sdpa": 1.0, "ms": 2.0},
                    {"mechanism": "linear_elu", "vs_sdpa": 3.0, "ms": 0.5}], "machine": {}}
    new = canonical_result(old)
    assert new["config"] == {"mechanisms": ("softmax", "linear", "leap"), "length": 8}
    assert new["rows"] == [{"mechanism": "softmax", "impl": "sdpa", "vs_softmax": 1.0, "ms": 2.0},
                           {"mechanism": "elu", "vs_softmax": 3.0, "ms": 0.5}]
    assert old["rows"][0]["mechanism"] == "sdpa"  # the input is not modified
    assert canonical_result(None) is None


def _lra_results(tmp_path):
    results = []
    for mech, acc in (("softmax", 0.5), ("linear", 0.4), ("elu", 0.45)):
        results.append({"task": "listops", "attention": mech, "test_accuracy": acc,
                        "_path": str(tmp_path / mech / "results.json")})
    return results


def test_lra_report_reads_old_speed_names(tmp_path):
    rows = [{"mode": "train", "mechanism": m, "error": None, "tokens_per_s": t,
             "vs_softmax": t / 100.0, "vs_linear": t / 1000.0, "peak_mb": 10.0}
            for m, t in (("sdpa", 100.0), ("linear_relu", 1000.0), ("linear_elu", 900.0))]
    speed = {"config": {"length": 4096}, "machine": {"device": "cpu"}, "rows": rows}
    results = _lra_results(tmp_path)
    points, _ = figure1_points(results, speed)
    assert {p["mechanism"]: p["throughput"] for p in points} == {
        "softmax": 100.0, "linear": 1000.0, "elu": 900.0}
    report = render_report(results, speed)
    assert "| softmax | 50.00 | 100 |" in report and "| elu | 45.00 | 900 |" in report
    assert "sdpa" not in report and "linear_relu" not in report


def test_lm_report_reads_old_speed_names(tmp_path):
    path = tmp_path / "lm-speed.json"
    path.write_text(json.dumps({"machine": {}, "config": {}, "rows": [
        {"mode": "train", "mechanism": "sdpa", "context": 512, "tokens_per_s": 10.0,
         "vs_sdpa": 1.0, "peak_mb": 5.0, "error": None},
        {"mode": "train", "mechanism": "linear_relu", "context": 512, "tokens_per_s": 30.0,
         "vs_sdpa": 3.0, "peak_mb": 2.0, "error": None}]}))
    speed = load_speed(path)
    assert [r["mechanism"] for r in speed["rows"]] == ["softmax", "linear"]
    text = "\n".join(render_speed_tables(speed))
    assert "| 512 | softmax | 10 | 1.00 | 5.00 |" in text  # vs_sdpa read as vs_softmax
    assert "| 512 | linear | 30 | 3.00 | 2.00 |" in text and "sdpa" not in text
    # rows handed over directly (not through load_speed) are mapped too
    raw = json.loads(path.read_text())
    assert "| 512 | linear | 30 |" in "\n".join(render_speed_tables(raw))
