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
    assert ("- asr-leap - asr-softmax (test, beam 5, 50 utterances): +10.0 WER points, 95% interval "
            "+10.0 to +10.0: separated, asr-softmax better") in text
    assert "asr-other" not in text.split("Paired")[1]
    out = tmp_path / "r.md"
    assert main(["st", "report", "--runs", str(tmp_path), "--out", str(out), "--paired",
                 "asr-softmax", "--note", "machine: test"]) == 0
    assert "- machine: test" in out.read_text()
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
           "AL": 1500.0, "LAAL": 2000.0, "AL_CA": float(np.mean(ca)),
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
    assert "| st-leap | `enc=leap,dec=leap,cross=leap` | 5 | 3 | test | 30 | 7.5 | " \
        "BLEU 3.00 (2.00-4.00) | 1500 | 2000 | 814 | 4.2 |" in text
    paired = text.split("## Paired")[1]
    line = next(x for x in paired.splitlines() if "BLEU," in x)
    assert line.startswith("- st-leap - st-softmax (test, wait-3, 30 utterances): +") and \
        line.endswith("separated, st-leap better")
    assert "-200 ms computation-aware AL, 95% interval -200 to -200: separated, st-leap " \
        "better" in paired
    assert "wait-5" not in paired
