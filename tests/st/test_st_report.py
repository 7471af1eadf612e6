"""``leapformer st report``: the table of st eval results and the paired WER."""

import json

import numpy as np
import pytest

from leapformer.cli import main
from leapformer.tasks.st.report import collect_st_evals, render_st_report


def _eval(root, name, errors, words, spec="enc=leap,dec=leap,cross=leap", task="asr"):
    run = root / name
    (run / "eval-test").mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"task": task, "steps": 2000,
                                                  "train_wall_s": 2400.0}))
    wer = 100 * sum(errors) / sum(words)
    res = {"task": task, "split": "test", "utterances": len(words), "beam": 5, "spec": spec,
           "wall_s": 20.0, "WER_normalised": wer, "WER_normalised_interval": [wer - 1, wer + 1],
           "word_errors_per_utterance": errors, "ref_words_per_utterance": words}
    if task == "st":
        res = {**res, "BLEU": 12.345}
    (run / "eval-test" / "results.json").write_text(json.dumps(res))


def test_table_and_paired_wer(tmp_path, capsys):
    words = [10] * 50
    _eval(tmp_path, "asr-softmax", [2] * 50, words, spec="enc=softmax,dec=softmax,cross=softmax")
    _eval(tmp_path, "asr-leap", [3] * 50, words)  # one more error in every utterance
    _eval(tmp_path, "asr-other", [3] * 20, [10] * 20)  # other utterances: not paired
    _eval(tmp_path, "st-leap", [0] * 50, words, task="st")
    evals = collect_st_evals([tmp_path])
    assert len(evals) == 4 and all(e["_train"]["steps"] == 2000 for e in evals)
    text = render_st_report(evals, command="leapformer st report", paired="asr-leap")
    assert "| asr-leap | asr | `enc=leap,dec=leap,cross=leap` | 2000 | 40 | test | 50 | 5 | " \
        "WER 30.0 (29.0-31.0) | 20 |" in text
    assert "| st-leap | st |" in text and "BLEU 12.35" in text
    assert ("- asr-leap - asr-softmax (test, beam 5, 50 utterances): +10.0 WER points, 95% "
            "interval +10.0 to +10.0: separated, asr-softmax better") in text
    assert "asr-other" not in text.split("Paired")[1]
    out = tmp_path / "r.md"
    assert main(["st", "report", "--runs", str(tmp_path), "--out", str(out), "--paired",
                 "asr-softmax", "asr-leap", "--note", "machine: test"]) == 0
    written = out.read_text()
    assert "- machine: test" in written and "\n\n\n" not in written
    assert "## Paired: asr-softmax minus" in written and "## Paired: asr-leap minus" in written
    assert "st report: 4 evaluations" in capsys.readouterr().out
    with pytest.raises(ValueError, match="paired must name a run"):
        render_st_report(evals, paired="st-nothing")
    with pytest.raises(ValueError, match="no st eval or st simul results"):
        render_st_report([])
    assert main(["st", "report", "--runs", str(tmp_path / "missing"), "--out", str(out)]) != 0


def _simul(root, name, stats, ca, k=3, spec="enc=leap,dec=leap,cross=leap", concat=1):
    run = root / name
    folder = run / f"simul-test-k{k}"
    folder.mkdir(parents=True)
    if not (run / "results.json").is_file():
        (run / "results.json").write_text(json.dumps({"task": "st", "steps": 2000}))
    res = {"task": "st", "split": "test", "utterances": len(stats), "k": k, "ratio": 7,
           "encoder": "incremental", "concat": concat, "spec": spec, "waitk_trained": 5,
           "BLEU": 3.0, "BLEU_interval": [2.0, 4.0], "bleu_stats_per_utterance": stats,
           "AL": 1500.0, "LAAL": 2000.0, "AL_CA": float(np.mean([x for x in ca if x])),
           "AL_CA_per_utterance": ca, "audio_s": 7.5 * len(stats),
           "decoder_ms_per_token": 4.25}
    (folder / "results.json").write_text(json.dumps(res))


def test_simul_rows_and_paired_bleu_and_latency(tmp_path):
    good = [[4, 3, 2, 1, 4, 3, 2, 1, 4, 4]] * 30  # every n-gram right
    half = [[2, 1, 0, 0, 4, 3, 2, 1, 4, 4]] * 30
    _simul(tmp_path, "st-softmax", half, [1000.0 + i for i in range(30)],
           spec="enc=softmax,dec=softmax,cross=softmax")
    _simul(tmp_path, "st-leap", good, [800.0 + i for i in range(30)])
    _simul(tmp_path, "st-leap", good, [900.0] * 10, k=5)  # no softmax partner at k=5
    evals = collect_st_evals([tmp_path])
    assert sorted(e["_kind"] for e in evals) == ["simul"] * 3
    text = render_st_report(evals, paired="st-leap")
    assert "## Simultaneous" in text and "## Offline" not in text
    assert "| st-leap | `enc=leap,dec=leap,cross=leap` | 5 | 3 | 7 | incremental | eager | " \
        "test | 30 | 1 | 7.5 | BLEU 3.00 (2.00-4.00) | 1500 | 2000 | 814 | 4.2 |" in text
    paired = text.split("## Paired")[1]
    line = next(x for x in paired.splitlines() if "BLEU," in x)
    assert line.startswith("- st-leap - st-softmax (test, wait-3, ratio 7, incremental encoder, 30 "
                           "utterances): +") and \
        line.endswith("separated, st-leap better")
    assert "-200 ms computation-aware AL, 95% interval -200 to -200: separated, st-leap " \
        "better" in paired
    assert "wait-5" not in paired


def test_paired_skips_missing_latency_and_refuses_other_references(tmp_path):
    good = [[4, 3, 2, 1, 4, 3, 2, 1, 4, 4]] * 10
    other_refs = [[4, 3, 2, 1, 4, 3, 2, 1, 4, 5]] * 10  # reference lengths differ
    ca = [1000.0] * 10
    _simul(tmp_path, "st-a", good, [800.0] * 9 + [None])
    _simul(tmp_path, "st-b", good, ca)
    _simul(tmp_path, "st-c", other_refs, ca)
    paired = render_st_report(collect_st_evals([tmp_path]), paired="st-a").split("## Paired")[1]
    assert "- st-a - st-b (test, wait-3, ratio 7, incremental encoder, 10 utterances): -200 ms " \
        "computation-aware AL (the 9 utterances with output in both)" in paired
    assert "st-a - st-c" in paired and "not compared: the references differ" in paired
    old = tmp_path / "old"
    _simul(old, "st-a", good, ca)
    _simul(old, "st-b", good, ca)
    for run in ("st-a", "st-b"):
        path = old / run / "simul-test-k3" / "results.json"
        res = json.loads(path.read_text())
        del res["bleu_stats_per_utterance"], res["AL_CA_per_utterance"]
        path.write_text(json.dumps(res))
    text = render_st_report(collect_st_evals([old]), paired="st-a")
    assert "1 evaluation(s) match, but without per-utterance statistics" in text
