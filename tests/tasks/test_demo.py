"""``make demo``'s job: the recall table with intervals and a verdict, the cost table,
reuse of finished runs, refusal of a folder trained with other settings."""

import json

import pytest

from leapformer.cli import main
from leapformer.tasks.demo import cost_verdict, recall_interval, render_demo, run_demo

pytestmark = pytest.mark.usefixtures("one_thread")


def _result(acc_per_seq, **extra):
    """A results.json of an MQAR run whose test sequences got these counts right (of 4)."""
    return {"test_accuracy": sum(acc_per_seq) / (4 * len(acc_per_seq)), "num_kv": 4,
            "test_correct_per_sequence": acc_per_seq, "state_bytes": 33_000,
            "train_wall_s": 100.0, "seq_len": 64, "d_model": 64, "vocab": 8192, "layers": 2,
            "steps": 1000, "lr": 3e-3, "seed": 0, "n_test": len(acc_per_seq), **extra}


COST = {"heads": 8, "head_dim": 64, "threads": 1, "rows": [
    {"length": 1024, "softmax_fwd_ms": 50.0, "leap_fwd_ms": 10.0, "softmax_step_ms": 0.1,
     "leap_step_ms": 0.2, "softmax_cache_bytes": 2 * 1024 * 8 * 64 * 4, "leap_state_bytes": 294_912},
    {"length": 4096, "softmax_fwd_ms": 800.0, "leap_fwd_ms": 40.0, "softmax_step_ms": 0.5,
     "leap_step_ms": 0.2, "softmax_cache_bytes": 2 * 4096 * 8 * 64 * 4, "leap_state_bytes": 294_912}]}


def test_recall_interval_is_a_bootstrap_over_test_sequences():
    r = _result([4, 0] * 200)  # half the sequences all right, half all wrong: p = 0.5
    iv = recall_interval(r)
    assert iv.method == "bootstrap" and iv.mean == pytest.approx(0.5)
    # sequences are the resampled unit: 1.96 * sqrt(.25 / 400) = 0.049
    assert (iv.high - iv.low) / 2 == pytest.approx(0.049, rel=0.2)


def test_render_ranks_only_separated_mechanisms():
    recall = {"softmax": _result([4] * 400), "linear": _result([1, 2] * 200),
              "leap": _result([1, 2] * 199 + [2, 2])}
    text = render_demo(recall, COST, command="leapformer demo")
    assert "| softmax | 100.0 ± 0.0 |" in text
    verdict_line = next(line for line in text.splitlines() if line.startswith("Recall:"))
    assert verdict_line.startswith("Recall: softmax > {")  # linear and leap are not separated
    assert "not separated" in verdict_line
    assert "| 4096 | 800 | 40.0 | 20.0x |" in text
    assert "16.78 MB" in text and "0.29 MB" in text


def test_cost_verdict_reads_the_first_and_last_length():
    line = cost_verdict(COST)
    assert "5.0x softmax's speed at 1024" in line and "20.0x at 4096" in line
    assert "0.29 MB per layer" in line and "16.78 MB" in line


def test_run_demo_trains_reuses_and_refuses(tmp_path):
    out = tmp_path / "demo"
    res = run_demo(out, mechanisms=["softmax", "leap"], steps=3, jobs=1, lengths=(64,))
    assert set(res["recall"]) == {"softmax", "leap"}
    assert (out / "demo.md").read_text() == res["markdown"]
    saved = json.loads((out / "demo.json").read_text())
    assert saved["recall"]["leap"]["steps"] == 3 and saved["cost"]["rows"][0]["length"] == 64
    stamp = (out / "mqar" / "leap" / "results.json").stat().st_mtime_ns
    run_demo(out, mechanisms=["leap"], steps=3, jobs=1, lengths=(64,))
    assert (out / "mqar" / "leap" / "results.json").stat().st_mtime_ns == stamp  # reused
    with pytest.raises(ValueError, match="other settings"):
        run_demo(out, mechanisms=["leap"], steps=4, jobs=1, lengths=(64,))


def test_cli_errors_are_one_line(capsys, tmp_path):
    assert main(["demo", "--out", str(tmp_path / "d"), "--mechanisms", "bigbird"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: leapformer demo:")


def test_seed_note_cites_the_multi_seed_result_of_the_demo_cell_only():
    from leapformer.tasks.demo import DEMO_CELL

    text = render_demo({"leap": _result([2] * 10, **DEMO_CELL)}, COST)
    assert "docs/results/mqar-256.md" in text and "8 of 9 seeds" in text
    other = render_demo({"leap": _result([2] * 10)}, COST)  # (64, 4) at 3e-3
    assert "mqar-256" not in other and "repeat over seeds" in other
    short = render_demo({"leap": _result([2] * 10, **{**DEMO_CELL, "steps": 50})}, COST)
    assert "mqar-256" not in short  # `make demo STEPS=50` is not the 1000-step result
