"""The TTS task end to end on a tiny spoken-Bible-like fixture the test writes (sine
sweeps at 16 kHz): ``tts train|eval|synth|report`` through the handlers registered on
a fresh parser, the length-error report, Griffin-Lim wav output, the front-end, and
one-line errors for bad input."""

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from leapformer.cli import main
from leapformer.data.speech import SpeechItem, tts_log_mel, write_manifest
from leapformer.tasks.tts.data import EOS, UNK, TextFrontend, griffin_lim, mel_batches, write_wav
from leapformer.tasks.tts.evaluate import length_errors

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["in the beginning", "god created", "the heavens and the earth", "and the earth was",
         "without form", "and void"]


def _sweep(f0, f1, seconds, sr):
    t = np.arange(int(seconds * sr)) / sr
    return (0.4 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds)))
            ).astype(np.float32)


def _run(argv):
    return main(argv)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tts-data")
    items = []
    for i, text in enumerate(TEXTS):
        wav = root / "wav" / f"{i:08d}.wav"
        wav.parent.mkdir(exist_ok=True)
        y = _sweep(150 + 50 * i, 3000, 0.05 * len(text.split()) + 0.05, 16000)
        sf.write(wav, y, 16000, subtype="PCM_16")
        items.append(SpeechItem(f"{i:08d}", wav, 0, len(y), text, text))
    write_manifest(items[:4], root / "train_asr.tsv")
    write_manifest(items[4:5], root / "dev_asr.tsv")
    write_manifest(items[5:], root / "test_asr.tsv")
    return root


def test_train_eval_synth_report(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert _run(["tts", "train", "--data", str(data), "--spec", "cosformer", "--out", str(run),
                 "--preset", "tiny", "--steps", "4", "--eval-every", "2",
                 "--batch-frames", "100", "--no-progress"]) == 0
    for name in ("config.json", "best.pt", "last.pt", "cmvn.npz", "length_stats.json",
                 "results.json", "metrics.jsonl"):
        assert (run / name).is_file(), name
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    stats = json.loads((run / "length_stats.json").read_text())
    assert len(stats["texts"]) == len(stats["frames"]) == 4
    # a second train on the folder is refused, as every run folder
    assert _run(["tts", "train", "--data", str(data), "--spec", "cosformer", "--out", str(run),
                 "--preset", "tiny", "--steps", "4", "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err

    assert _run(["tts", "eval", "--run", str(run), "--max-items", "1", "--rtf-seconds", "0.05",
                 "0.1", "--griffin-lim-iters", "2", "--save-wavs", "1"]) == 0
    res = json.loads((run / "eval_test.json").read_text())
    # cosFormer: one synthesis per length predictor, plus the true length
    assert set(res["mcd"]) == {"ratio", "lookup", "conv", "oracle"}
    assert all(np.isfinite(v) and v >= 0 for v in res["mcd"].values())
    assert res["utterance_ids"] == ["00000005"] and len(res["true_frames"]) == 1
    for key, values in res["mcd_per_utterance"].items():  # one test utterance here
        assert values == [res["mcd"][key]] and res["mcd_interval"][key] == [values[0]] * 2
    assert set(res["length_error"]) == {"ratio", "lookup", "conv", "stop@ratio", "stop@lookup",
                                        "stop@conv", "stop@oracle"}
    true = tts_log_mel(_ref(data)).shape[0]
    ratio = sum(stats["frames"]) / sum(len(t) for t in stats["texts"])
    n_sym = len(TextFrontend.build(TEXTS[:4]).encode(TEXTS[5]))
    expect = abs(round(ratio * n_sym) - true) / true
    assert res["length_error"]["ratio"]["rel"] == pytest.approx(expect, abs=1e-9)
    assert set(res["rtf_vs_length"]) == {"0.05", "0.1"}
    assert res["rtf_vs_length"]["0.1"]["frames"] == 1 + 2205 // 256
    assert sorted(p.name for p in (run / "synth").iterdir()) == sorted(
        [f"00000005.{r}.wav" for r in ("ratio", "lookup", "conv", "oracle", "ref")]
        + ["00000005.png"])
    assert (run / "synth" / "00000005.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    wav = tmp_path / "out.wav"
    assert _run(["tts", "synth", "--run", str(run), "--text", "god created", "--out", str(wav),
                 "--max-seconds", "0.2", "--griffin-lim-iters", "2"]) == 0
    y, sr = sf.read(wav)
    assert sr == 22050 and y.ndim == 1 and y.size > 0

    report = tmp_path / "report.md"
    assert _run(["tts", "report", "--runs", str(run), "--out", str(report)]) == 0
    text = report.read_text()
    assert "| enc=cosformer,dec=cosformer,cross=cosformer | test | ratio |" in text
    assert "| enc=cosformer,dec=cosformer,cross=cosformer | eager | 0.1 | 9 |" in text  # cosFormer
    # an eval written under another name (--out) is found in its folder; the split shows
    assert _run(["tts", "eval", "--run", str(run), "--split", "dev", "--max-items", "1",
                 "--rtf-seconds", "0.05", "--griffin-lim-iters", "2",
                 "--out", str(tmp_path / "evals" / "dev.json")]) == 0
    assert _run(["tts", "report", "--runs", str(tmp_path / "evals"), str(run),
                 "--out", str(report)]) == 0
    text = report.read_text()
    assert "| dev | ratio |" in text and "| test | ratio |" in text
    # the data folder of the run has moved: the message says so and what to pass
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "data": str(tmp_path / "gone")}))
    assert _run(["tts", "eval", "--run", str(run), "--max-items", "1"]) == 2
    assert "is gone: pass --data DIR" in capsys.readouterr().err


def _ref(data):
    import soxr

    y, sr = sf.read(data / "wav" / "00000005.wav", dtype="float32")
    return soxr.resample(y, sr, 22050, quality="HQ")


def test_report_pairs_mcd_by_utterance(tmp_path):
    from leapformer.tasks.tts.evaluate import run_tts_report

    def write(name, spec, mcds, ids=("a", "b", "c", "d")):
        r = {"spec": spec, "split": "test", "utterances": len(ids), "utterance_ids": list(ids),
             "mcd": {"stop": float(np.mean(mcds))}, "mcd_per_utterance": {"stop": mcds},
             "mcd_interval": {"stop": [min(mcds), max(mcds)]},
             "length_error": {"stop": {"rel": 0.1, "abs_frames": 3.0, "bias": 0.0}},
             "rtf_vs_length": {}}
        (tmp_path / f"{name}.json").write_text(json.dumps(r))
        return tmp_path / f"{name}.json"

    a = write("a", "leap", [10.0, 11.0, 12.0, 13.0])
    b = write("b", "softmax", [12.0, 13.5, 14.0, 15.5])  # 2-2.5 dB above on every one
    c = write("c", "linear", [13.0, 8.0, 15.0, 10.0])  # mixed signs against a
    d = write("d", "elu", [1.0, 2.0, 3.0], ids=("x", "y", "z"))  # other utterances
    text = run_tts_report([a, b, c, d])
    assert "| leap | test | stop | 11.50 | 10.00-13.00 | 4 |" in text
    assert "| leap | softmax | test | stop | 4 | -2.25 |" in text
    assert "separated, leap lower" in text
    assert "| leap | linear | test | stop | 4 | +0.00 |" in text and "not separated" in text
    assert "| elu |" not in text.split("## Paired")[1].split("## Length")[0]
    assert "(no two evaluations" in run_tts_report([a, d])


def test_length_errors_by_hand():
    res = length_errors({"a": [10, 12], "b": [5, 20]}, [10, 16])
    assert res["a"] == pytest.approx({"rel": 0.125, "abs_frames": 2.0, "bias": -0.125})
    assert res["b"] == pytest.approx({"rel": (0.5 + 0.25) / 2, "abs_frames": 4.5,
                                      "bias": (-0.5 + 0.25) / 2})
    with pytest.raises(ValueError, match="predictor 'a'"):
        length_errors({"a": [1]}, [1, 2])


def test_griffin_lim_writes_a_valid_wav(tmp_path):
    sr, f = 22050, 1000.0
    y = 0.5 * np.sin(2 * np.pi * f * np.arange(sr // 2) / sr).astype(np.float32)
    mel = tts_log_mel(y)
    out = griffin_lim(mel, n_iter=8)
    assert abs(out.size - (mel.shape[0] - 1) * 256) <= 256
    path = write_wav(tmp_path / "a" / "x.wav", out)
    back, rate = sf.read(path, dtype="float32")
    assert rate == sr and back.shape == out.shape
    assert os.listdir(path.parent) == ["x.wav"]  # no temporary file left
    spectrum = np.abs(np.fft.rfft(back))
    peak = np.argmax(spectrum) * sr / back.size
    assert abs(peak - f) < 60, peak
    with pytest.raises(ValueError, match="log_mel"):
        griffin_lim(torch.zeros(10, 7))
    with pytest.raises(ValueError, match="samples"):
        write_wav(tmp_path / "y.wav", np.zeros((2, 3)))
    from leapformer.tasks.tts.figure import plot_mels

    with pytest.raises(ValueError, match="one title per mel"):
        plot_mels([mel], ["a", "b"], tmp_path / "f.png")
    with pytest.raises(ValueError, match=r"mels\[0\]"):
        plot_mels([np.zeros(5)], ["a"], tmp_path / "f.png")


def test_front_end_and_batches():
    front = TextFrontend.build(["Ab  c"], "chars")
    assert front.symbols == [" ", "a", "b", "c"]
    assert front.encode("AB z") == [4, 5, 3, UNK, EOS]
    assert TextFrontend.from_dict(front.to_dict()) == front
    ph = TextFrontend.build(["hello"], "phonemes")
    assert ph.vocab_size > 3 and UNK not in ph.encode("hello")
    with pytest.raises(ValueError, match="front_end"):
        TextFrontend("words", [])
    batches = mel_batches([5, 50, 7, 6, 60], 100, shuffle=False)
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3, 4]
    assert all(max([5, 50, 7, 6, 60][i] for i in b) * len(b) <= 100 for b in batches)


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--data", "{tmp}/none", "--spec", "leap", "--out", "{tmp}/r"], "not found"),
    (["train", "--data", "{data}", "--spec", "dec=bogus", "--out", "{tmp}/r2",
      "--preset", "tiny", "--steps", "1"], "bogus"),
    (["synth", "--run", "{tmp}", "--text", "x", "--out", "{tmp}/x.mp3"], ".wav"),
    (["eval", "--run", "{tmp}/none"], "does not exist"),
    (["report", "--runs", "{tmp}"], "no TTS eval"),
])
def test_bad_input_is_one_line(argv, fragment, data, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, data=data) for a in argv]
    assert _run(["tts", *argv, *(["--no-progress"] if argv[0] == "train" else [])]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: leapformer tts {argv[0]}:") and err.count("\n") == 1
    assert fragment in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "r2").exists()


def test_argparse_rejects_bad_numbers(capsys):
    with pytest.raises(SystemExit) as exc:
        _run(["tts", "train", "--data", "x", "--spec", "leap", "--out", "y", "--steps", "0"])
    assert exc.value.code == 2
    assert "--steps" in capsys.readouterr().err


def test_resume_continues_the_run(data, tmp_path):
    run = tmp_path / "run"
    base = ["tts", "train", "--data", str(data), "--spec", "leap", "--out", str(run),
            "--preset", "tiny", "--eval-every", "1", "--batch-frames", "100", "--no-progress"]
    assert _run([*base, "--steps", "2"]) == 0
    assert _run([*base, "--steps", "3", "--resume"]) == 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert json.loads((run / "results.json").read_text())["steps"] == 3
    assert _run([*base, "--steps", "4", "--resume", "--loss", "l2"]) == 2  # settings differ
    # the spec as results.json writes it is the same spec
    long_spec = [a if a != "leap" else "enc=leap,dec=leap,cross=leap" for a in base]
    assert _run([*long_spec, "--steps", "4", "--resume"]) == 0
    assert _run([*base, "--steps", "5", "--resume", "--spec", "enc=leap,dec=linear,cross=leap"]
                ) == 2


def test_resume_reuses_the_saved_front_end_and_cmvn(data, tmp_path, capsys):
    from leapformer.data.speech import GlobalCMVN

    run = tmp_path / "run"
    base = ["tts", "train", "--data", str(data), "--spec", "leap", "--out", str(run),
            "--preset", "tiny", "--eval-every", "1", "--batch-frames", "100", "--no-progress",
            "--max-items", "3"]
    assert _run([*base, "--steps", "1"]) == 0
    # the saved symbols and statistics, altered: a resumed run must use these, not rebuild
    config = json.loads((run / "config.json").read_text())
    config["front_end_symbols"]["symbols"].reverse()
    (run / "config.json").write_text(json.dumps(config))
    cmvn = GlobalCMVN.load(run / "cmvn.npz")
    GlobalCMVN(cmvn.mean + 1.0, cmvn.std * 2.0, cmvn.count).save(run / "cmvn.npz")
    saved = {n: (run / n).read_bytes() for n in ("config.json", "cmvn.npz")}
    assert _run([*base, "--steps", "2", "--resume"]) == 0
    assert {n: (run / n).read_bytes() for n in saved} == saved
    front = TextFrontend.from_dict(config["front_end_symbols"])
    texts = json.loads((run / "length_stats.json").read_text())["texts"]
    assert texts == [front.encode(t) for t in TEXTS[:3]]
    for change in (["--max-items", "2"], ["--seed", "1"], ["--lr", "0.01"],
                   ["--batch-frames", "90"], ["--eval-every", "2"], ["--max-dev", "3"]):
        assert _run([*base, "--steps", "3", "--resume", *change]) == 2, change
        err = capsys.readouterr().err
        assert err.startswith("error: leapformer tts train: cannot resume") and \
            err.count("\n") == 1


def test_ljspeech_split(tmp_path):
    from leapformer.tasks.tts.data import load_items

    (tmp_path / "wavs").mkdir()
    rows = []
    for i in range(5):
        sf.write(tmp_path / "wavs" / f"LJ{i}.wav", np.zeros(300, np.float32), 22050)
        rows.append(f"LJ{i}|Text {i}|text {i}")
    (tmp_path / "metadata.csv").write_text("\n".join(rows) + "\n")
    split = {s: [it.id for it in load_items(tmp_path, "ljspeech", s, held_out=1)]
             for s in ("train", "dev", "test")}
    assert split == {"train": ["LJ0", "LJ1", "LJ2"], "dev": ["LJ3"], "test": ["LJ4"]}
    with pytest.raises(ValueError, match="need more than"):
        load_items(tmp_path, "ljspeech", "train", held_out=3)


def test_frames_per_step_run_is_labelled(data, tmp_path):
    run = tmp_path / "r2"
    assert _run(["tts", "train", "--data", str(data), "--spec", "leap", "--out", str(run),
                 "--preset", "tiny", "--steps", "2", "--eval-every", "2", "--batch-frames", "100",
                 "--model-option", "frames_per_step=2", "--no-progress"]) == 0
    assert _run(["tts", "eval", "--run", str(run), "--max-items", "1", "--rtf-seconds", "0.05",
                 "--griffin-lim-iters", "2", "--max-seconds", "0.3"]) == 0
    res = json.loads((run / "eval_test.json").read_text())
    assert res["frames_per_step"] == 2
    assert res["rtf_vs_length"]["0.05"]["frames"] == 1 + 1102 // 256
    report = tmp_path / "report.md"
    assert _run(["tts", "report", "--runs", str(run), "--out", str(report)]) == 0
    assert "| enc=leap,dec=leap,cross=leap (2 frames/step) | test | stop |" in report.read_text()
