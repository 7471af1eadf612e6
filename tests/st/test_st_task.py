"""The speech task end to end on tiny generated wavs: ASR run, ST run initialised from
its encoder, a short overfit, the wait-k agent against the teacher-forced model, logs
rescored by SimulEval 1.1.4, the SimulEval agent under SimulEval's own entry point,
and the CLI's one-line errors."""

import dataclasses
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from leapformer.data.speech import SpeechItem, kaldi_fbank, write_manifest
from leapformer.eval import scores_from_log
from leapformer.models.seq2seq import Seq2SeqConfig
from leapformer.models.speech import SpeechSeq2Seq
from leapformer.models.speech_simul import SpeechSimulAgent
from leapformer.ops import waitk_prefix
from leapformer.tasks.st import init_encoder_from, load_st_run, run_st_simul, run_st_train
from leapformer.tasks.st.evaluate import simul_groups
from leapformer.tasks.st.data import describe_st_source, load_st_data, make_st_batch
from leapformer.train import load_checkpoint

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

EN = ["one two three", "four five", "six seven eight nine", "ten"]
JA = ["一二三", "四五", "六七八九", "十"]
TINY = {"d_model": 32, "nhead": 2, "num_encoder_layers": 1, "num_decoder_layers": 1,
        "dim_feedforward": 64, "dropout": 0.0, "label_smoothing": 0.0}
TRAIN = {"conv_channels": 16, "tgt_vocab": 24, "eval_every": 0, "log_every": 5}


def tone(seed: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    f = 200 + 150 * seed
    return (0.3 * np.sin(2 * np.pi * f * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech")
    (root / "wav").mkdir()
    items = {"asr": [], "st": []}
    for i, (en, ja) in enumerate(zip(EN, JA)):
        path = root / "wav" / f"u{i}.wav"
        x = tone(i, 0.4 + 0.15 * i)
        sf.write(path, x, 16000, subtype="PCM_16")
        items["asr"].append(SpeechItem(f"u{i}", path, 0, x.size, en, en))
        items["st"].append(SpeechItem(f"u{i}", path, 0, x.size, en, ja))
    for task in ("asr", "st"):
        for split in ("train", "dev", "test"):
            rows = items[task] if split == "train" else items[task][:2]
            write_manifest(rows, root / f"{split}_{task}.tsv")
    return root


@pytest.fixture(scope="module")
def runs(speech_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    common = {"data": speech_dir, "steps": 8, "lr": 3e-3, "max_batch_frames": 1000,
              "model_overrides": TINY, "overrides": TRAIN, "progress": False,
              "checkpoint_seconds": 0}
    asr = run_st_train("leap", out=base / "asr", task="asr", **common)
    st = run_st_train("enc=leap,dec=leap,cross=linear", out=base / "st", task="st", waitk=2,
                      ratio=2, init_from=base / "asr", **common)
    return base / "asr", base / "st", asr, st


def test_resume_with_other_settings_is_refused(runs, speech_dir):
    asr_dir = runs[0]
    config = (asr_dir / "config.json").read_text()
    with pytest.raises(ValueError) as err:
        run_st_train("leap", out=asr_dir, task="asr", data=speech_dir, steps=8, lr=1e-3,
                     max_batch_frames=1000, model_overrides=TINY, overrides=TRAIN,
                     progress=False, checkpoint_seconds=0, resume=True)
    assert "train.lr" in str(err.value) and "\n" not in str(err.value)
    assert (asr_dir / "config.json").read_text() == config


def test_asr_then_st_initialised_from_the_asr_encoder(runs):
    asr_dir, st_dir, asr, st = runs
    assert asr["steps"] == 8 and st["waitk"] == 2 and st["init_from_tensors"] > 0
    model, config = load_st_run(st_dir)
    assert config["causal_encoder"] and config["frontend"]["causal_subsampler"]
    # a fresh ST model initialised from the ASR run holds the ASR encoder exactly
    from leapformer.tasks.st.run import build_st_model
    torch.manual_seed(123)
    fresh = build_st_model(config)
    names = init_encoder_from(fresh, asr_dir)
    asr_state = load_checkpoint(asr_dir / "best.pt")["model"]
    own = fresh.state_dict()
    assert any(n.startswith("subsampler.") for n in names)
    assert any(n.startswith("encoder.layers.0.") for n in names)
    for n in names:
        assert torch.equal(own[n], asr_state[n]), n
    assert not any(n.startswith("decoder.") for n in names)
    # the vocabularies differ: English transcripts vs Japanese translations
    assert load_st_data(asr_dir).refs["train"] == EN and load_st_data(st_dir).refs["train"] == JA


def test_tiny_model_overfits_four_utterances(runs):
    _, st_dir, _, _ = runs
    data = load_st_data(st_dir)
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(src_vocab_size=4, tgt_vocab_size=data.tok.vocab_size, **TINY)
    model = SpeechSeq2Seq(cfg, "leap", causal_encoder=True, conv_channels=16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    b = make_st_batch(data, "train", [0, 1, 2, 3], encoder_lengths=model.encoder_lengths,
                      waitk=2, ratio=2)
    losses = []
    for _ in range(30):
        r = model.loss(b["src"], b["src_mask"], b["tgt_in"], b["tgt_out"], b["tgt_mask"],
                       b["prefix"])
        opt.zero_grad()
        r["loss"].backward()
        opt.step()
        losses.append(float(r["loss"].detach()))
    assert losses[-1] < 0.5 * losses[0], losses


def test_agent_restores_the_training_mode(runs):
    model, _ = load_st_run(runs[1])
    data = load_st_data(runs[1])
    agent = SpeechSimulAgent(model, 2, ratio=2, cmvn=data.cmvn)
    for mode in (True, False):
        model.train(mode)
        agent.translate(tone(3, 0.3))
        assert model.training is mode and all(m.training is mode for m in model.modules())
        with agent.session() as s:  # eval while the session runs, back when it ends
            assert not model.training
            s.push(tone(3, 0.1).astype(np.float32))
        assert model.training is mode


@pytest.mark.parametrize("encoder", ["incremental", "reencode"])
def test_agent_follows_waitk_on_chunks(runs, encoder):
    _, st_dir, _, _ = runs
    model, _ = load_st_run(st_dir)
    data = load_st_data(st_dir)
    x = tone(3, 0.85)
    agent = SpeechSimulAgent(model, 2, ratio=2, encoder=encoder, cmvn=data.cmvn)
    r = agent.translate(x)
    assert r.tokens and len(r.delays) == len(r.tokens) == len(r.elapsed)
    assert r.delays == sorted(r.delays) and r.delays[-1] <= r.source_ms == 850.0
    assert all(e >= d for d, e in zip(r.delays, r.elapsed))
    feats = data.cmvn(kaldi_fbank(x))[None]
    N = int(model.encoder_lengths(feats.shape[1]))
    for t, d in enumerate(r.delays, start=1):  # the policy: enough states, no more audio
        if d < r.source_ms:
            n_read = int(round(d * 16))
            have = int(model.encoder_lengths(1 + (n_read - 400) // 160))
            assert have >= (2 + t - 1) * 2 and have - (2 + t - 1) * 2 < 2 * 80 / 40
    if encoder == "incremental":
        # each token written before the source ended is the teacher-forced argmax under the
        # wait-k prefix of the full causal pass (EOS/BOS/pad banned while reading)
        M = len(r.tokens)
        tgt_in = torch.tensor([[2] + r.tokens[:-1]])
        prefix = waitk_prefix(2, M, torch.tensor([N]), ratio=2)
        with torch.no_grad():
            logits = model(feats, None, tgt_in, memory_prefix=prefix)[0]
        logits[:, [0, 2, 3]] = -float("inf")
        reading = [t for t, d in enumerate(r.delays) if d < r.source_ms]
        assert len(reading) >= 3
        for t in reading:
            assert int(logits[t].argmax()) == r.tokens[t]


def test_simul_log_rescored_by_simuleval(runs, monkeypatch):
    _, st_dir, _, _ = runs
    res = run_st_simul(st_dir, k=2, split="test")
    out = st_dir / "simul-test-k2-r2-incremental"
    assert res["ratio"] == 2 and "BLEU" in res and "AL_CA" in res
    assert res["checkpoint_step"] == json.loads((st_dir / "results.json").read_text())[
        "best_step"]  # the evaluated weights' training step
    assert res["instances"] == str((out / "instances.log").resolve())
    log = [json.loads(line) for line in (out / "instances.log").read_text().splitlines()]
    assert len(log) == 2 and all(row["delays"] for row in log)
    assert log[0]["source_length"] == pytest.approx(400.0)  # ms of audio
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from simuleval import options
        from simuleval.evaluator import SentenceLevelEvaluator
    argv = ["--score-only", "--output", str(out), "--latency-metrics", "AL", "LAAL", "AP", "DAL",
            "--eval-latency-unit", "spm", "--eval-latency-spm-model", str(st_dir / "spm.tgt.model")]
    monkeypatch.setattr(sys, "argv", ["simuleval", *argv])
    parser = options.general_parser()
    options.add_evaluator_args(parser)
    options.add_scorer_args(parser, argv)
    options.add_dataloader_args(parser, argv)
    theirs = SentenceLevelEvaluator.from_args(parser.parse_args(argv)).latency
    ours = json.loads((out / "scores.json").read_text())
    for name in ("AL", "LAAL", "AP", "DAL"):
        assert theirs[name] == pytest.approx(ours[name], rel=1e-12), name
    assert scores_from_log(out / "instances.log", latency_unit="spm",
                           spm_model=st_dir / "spm.tgt.model")["AL"] == ours["AL"]


def test_simuleval_entry_point_runs_the_agent(runs, speech_dir, tmp_path, monkeypatch):
    _, st_dir, _, _ = runs
    src, tgt = tmp_path / "src.txt", tmp_path / "tgt.txt"
    src.write_text("".join(f"{speech_dir / 'wav' / f'u{i}.wav'}\n" for i in (0, 1)))
    tgt.write_text("".join(f"{t}\n" for t in JA[:2]))
    out = tmp_path / "simuleval"
    argv = ["simuleval", "--agent-class",
            "leapformer.tasks.st.simuleval_agent.LeapformerSpeechAgent",
            "--source", str(src), "--target", str(tgt), "--output", str(out),
            "--run", str(st_dir), "--waitk", "2", "--source-segment-size", "80",
            "--eval-latency-unit", "spm", "--eval-latency-spm-model", str(st_dir / "spm.tgt.model"),
            "--quality-metrics", "BLEU", "--sacrebleu-tokenizer", "ja-mecab"]
    monkeypatch.setattr(sys, "argv", argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from simuleval import cli
        cli.main()
    rows = [json.loads(line) for line in (out / "instances.log").read_text().splitlines()]
    assert len(rows) == 2
    # the same utterances through the built-in runner with the same 80 ms segments
    res = run_st_simul(st_dir, k=2, split="test", segment_ms=80, out=tmp_path / "ours")
    ours = [json.loads(line)
            for line in (tmp_path / "ours" / "instances.log").read_text().splitlines()]
    for a, b in zip(rows, ours):
        assert a["prediction"] == b["prediction"]
        assert a["delays"] == pytest.approx(b["delays"])
    assert res["utterances"] == 2


def test_cli_and_bad_inputs(runs, speech_dir, tmp_path, capsys):
    _, st_dir, _, _ = runs
    from leapformer.cli import main
    assert main(["st", "simul", "--run", str(tmp_path / "nope"), "--waitk", "2",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: leapformer st simul:") and "\n" not in err
    assert main(["st", "train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: leapformer st train:") and "does not exist" in err
    assert main(["st", "eval", "--run", str(st_dir), "--beam", "2", "--no-progress",
                 "--out", str(tmp_path / "ev")]) == 0
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert res["utterances"] == 2 and "BLEU" in res
    with pytest.raises(FileNotFoundError, match="no manifest .*train_st.tsv"):
        describe_st_source(tmp_path, task="st")
    with pytest.raises(ValueError, match="task must be one of"):
        describe_st_source(speech_dir, task="mt")
    model, _ = load_st_run(st_dir)
    with pytest.raises(ValueError, match="k must be a positive int"):
        SpeechSimulAgent(model, 0)
    bidir = SpeechSeq2Seq(model.cfg, "leap", causal_encoder=False, conv_channels=16)
    with pytest.raises(ValueError, match="causal encoder"):
        SpeechSimulAgent(bidir, 2, encoder="incremental")
    with pytest.raises(ValueError, match="samples"):
        SpeechSimulAgent(model, 2).translate(np.zeros((2, 3), np.float32))


def test_simuleval_agent_without_simuleval_names_the_extra(monkeypatch):
    import importlib

    for name in ("simuleval", "simuleval.agents", "simuleval.agents.actions"):
        monkeypatch.setitem(sys.modules, name, None)  # None: "not installed" to the importer
    monkeypatch.delitem(sys.modules, "leapformer.tasks.st.simuleval_agent", raising=False)
    with pytest.raises(ImportError) as err:
        importlib.import_module("leapformer.tasks.st.simuleval_agent")
    assert str(err.value) == ("the SimulEval agent needs simuleval: "
                              "pip install 'leapformer[speech]'")


def test_simul_joins_utterances_and_keeps_per_utterance_scores(runs, tmp_path):
    _, st_dir, _, _ = runs
    one = run_st_simul(st_dir, k=2, split="test", out=tmp_path / "one")
    assert np.mean(one["AL_per_utterance"]) == pytest.approx(one["AL"])
    assert np.mean(one["AL_CA_per_utterance"]) == pytest.approx(one["AL_CA"])
    assert len(one["bleu_stats_per_utterance"]) == 2 and \
        one["BLEU_interval"][0] <= one["BLEU"] <= one["BLEU_interval"][1]
    res = run_st_simul(st_dir, k=2, split="test", concat=2)
    out = st_dir / "simul-test-k2-r2-incremental-c2"
    assert res["utterances"] == 1 and res["concat"] == 2 and Path(res["instances"]).parent == out
    (row,) = [json.loads(line) for line in (out / "instances.log").read_text().splitlines()]
    assert row["source_length"] == pytest.approx(400.0 + 550.0)  # both tones, in ms
    assert row["reference"] == JA[0] + JA[1]  # Japanese: joined without a space
    assert res["audio_s"] == pytest.approx(0.95)
    with pytest.raises(ValueError, match="concat must be a positive int"):
        run_st_simul(st_dir, k=2, split="test", concat=0)


def test_simul_utterance_without_output_has_no_latency(runs, tmp_path, monkeypatch):
    _, st_dir, _, _ = runs
    real, calls = SpeechSimulAgent.translate, []

    def first_writes_nothing(self, samples):
        r = real(self, samples)
        calls.append(r)
        return dataclasses.replace(r, tokens=[], delays=[], compute_ms=[]) if len(calls) == 1 \
            else r

    monkeypatch.setattr(SpeechSimulAgent, "translate", first_writes_nothing)
    monkeypatch.setattr(SpeechSimulAgent, "warm_up", lambda self, seconds=10.0: False)
    res = run_st_simul(st_dir, k=2, split="test", out=tmp_path / "empty")
    assert res["AL_per_utterance"][0] is None and res["AL_CA_per_utterance"][0] is None
    assert res["AL_CA_per_utterance"][1] == pytest.approx(res["AL_CA"])  # the only scored one
    assert (tmp_path / "empty" / "results.json").is_file()


def test_simul_groups():
    assert simul_groups(7, 3) == [[0, 1, 2], [3, 4, 5]]  # the short last group dropped
    assert simul_groups(2, 1) == [[0], [1]]
    with pytest.raises(ValueError, match="concat=3 is more than the split's 2 utterances"):
        simul_groups(2, 3)


def test_too_small_japanese_vocabulary_is_named(speech_dir, tmp_path):
    rows = [SpeechItem(f"u{i}", speech_dir / "wav" / "u0.wav", 0, 6400, "x",
                       "".join(chr(0x4E00 + 7 * i + j) for j in range(7))) for i in range(90)]
    for split in ("train", "dev", "test"):
        write_manifest(rows, tmp_path / f"{split}_st.tsv")
    with pytest.raises(ValueError, match=r"tgt_vocab=100 is below the \d+ pieces the ja target "
                       r"text needs for its characters; raise it, e\.g\. --train-option "
                       r"tgt_vocab=\d+"):
        run_st_train("leap", out=tmp_path / "run", task="st", data=tmp_path, steps=1,
                     model_overrides=TINY, overrides={**TRAIN, "tgt_vocab": 100},
                     progress=False)
