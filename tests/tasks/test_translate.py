"""Translation task end to end on a tiny parallel fixture: training lowers the loss,
resume is exact, eval writes BLEU, simul writes SimulEval files whose scores
recompute from the log; batching is deterministic; CLI wiring and errors."""

import argparse
import json
import random

import numpy as np
import pytest
import torch

from leapformer.cli.translate import register as add_translate_parser
from leapformer.eval import read_instances, scores_from_log
from leapformer.models import beam_search
from leapformer.tasks.translate import (
    load_translate_run,
    run_translate_eval,
    run_translate_simul,
    run_translate_train,
)
from leapformer.tasks.translate.data import TokenBatcher, sample_k, waitk_memory_prefix
from leapformer.train import load_checkpoint

SRC = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta", "iota", "kappa"]
TGT = ["AA", "BB", "CC", "DD", "EE", "FF", "GG", "HH", "II", "JJ"]
TINY = {"d_model": 32, "nhead": 2, "num_encoder_layers": 1, "num_decoder_layers": 1,
        "dim_feedforward": 64, "dropout": 0.1}
TRAIN = {"eval_every": 10, "log_every": 5, "valid_pairs": 20, "src_vocab": 40, "tgt_vocab": 40,
         "warmup_steps": 5}


pytestmark = pytest.mark.usefixtures("one_thread")


def write_fixture(root, n=(160, 20, 12), seed=0):
    """A word-for-word 'language pair': target words in the source order."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, count in zip(("train", "valid", "test"), n):
        src, tgt = [], []
        for _ in range(count):
            idx = [rng.randrange(len(SRC)) for _ in range(rng.randint(3, 8))]
            src.append(" ".join(SRC[i] for i in idx))
            tgt.append(" ".join(TGT[i] for i in idx))
        (root / f"{split}.en").write_text("\n".join(src) + "\n")
        (root / f"{split}.de").write_text("\n".join(tgt) + "\n")
    return root


def train(tmp_path, out, steps, *, resume=False, waitk=2, spec="leap", **kw):
    return run_translate_train(spec, out=out, waitk=waitk, data=tmp_path / "data",
                               src_lang="en", tgt_lang="de", steps=steps,
                               max_batch_tokens=200, lr=3e-3, overrides=TRAIN,
                               model_overrides=TINY, resume=resume, progress=False, **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("translate")
    write_fixture(tmp / "data")
    res = train(tmp, tmp / "run", 40)
    return tmp, res


def test_training_lowers_the_loss_and_writes_its_files(trained):
    tmp, res = trained
    run = tmp / "run"
    for name in ("config.json", "results.json", "metrics.jsonl", "best.pt", "last.pt",
                 "spm.src.model", "spm.tgt.model", "data/ids.npz", "data/data.json"):
        assert (run / name).is_file(), name
    assert res["steps"] == 40 and res["parameters"] > 0 and res["train_tokens_per_s"] > 0
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in recs if r["kind"] == "train"]
    evals = [r["loss"] for r in recs if r["kind"] == "eval"]
    assert losses[-1] < losses[0] - 0.5
    assert len(evals) == 4 and evals[-1] < evals[0]
    config = json.loads((run / "config.json").read_text())
    assert config["waitk"] == 2 and config["causal_encoder"] is True
    assert json.loads((run / "results.json").read_text())["best_valid_loss"] == min(evals)


def test_resume_continues_and_equals_the_uninterrupted_run(tmp_path):
    write_fixture(tmp_path / "data")
    full = train(tmp_path, tmp_path / "a", 20, waitk="multi")
    train(tmp_path, tmp_path / "b", 10, waitk="multi")
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 10
    resumed = train(tmp_path, tmp_path / "b", 20, waitk="multi", resume=True)
    assert resumed["steps"] == 20
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], rel=1e-6)
    a = load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(tmp_path, tmp_path / "a", 20, waitk="multi")
    with pytest.raises(ValueError, match="cannot resume .* waitk"):
        train(tmp_path, tmp_path / "a", 30, waitk=3, resume=True)


def test_eval_writes_bleu_and_hypotheses(trained):
    tmp, _ = trained
    res = run_translate_eval(tmp / "run", beam=2, max_sentences=8, out=tmp / "ev")
    assert 0.0 <= res["BLEU"] <= 100.0 and res["bleu_tokenizer"] == "13a"
    assert res["sentences"] == 8
    hyps = (tmp / "ev" / "hyp.txt").read_text().split("\n")[:-1]
    assert len(hyps) == 8
    assert json.loads((tmp / "ev" / "results.json").read_text())["BLEU"] == res["BLEU"]


def test_eval_records_absolute_paths(trained, monkeypatch):
    """Paths in an eval's results.json do not depend on the caller's working directory."""
    tmp, _ = trained
    monkeypatch.chdir(tmp)
    res = run_translate_eval("run", max_sentences=2, out="ev-rel")
    assert res["run"] == str((tmp / "run").resolve())
    assert res["hypotheses"] == str((tmp / "ev-rel" / "hyp.txt").resolve())
    # and which training step the evaluated (best) checkpoint is from
    assert res["checkpoint_step"] == json.loads((tmp / "run" / "results.json").read_text())[
        "best_step"]


def test_offline_cosformer_eval_with_each_length_predictor(trained):
    tmp, _ = trained
    run = tmp / "cos"
    train(tmp, run, 12, waitk=None, spec="cosformer", length_predictor="conv")
    n = 6
    res = {m: run_translate_eval(run, beam=2, max_sentences=n, length_predictor=m)
           for m in ("trained", "ratio", "lookup", "oracle")}
    assert res["trained"]["length_predictor"] == "conv"
    assert (run / "eval-test").is_dir() and (run / "eval-test-oracle").is_dir()
    assert res["oracle"]["length_mae"] == 0 and res["oracle"]["length_ratio"] == 1
    for m in ("trained", "ratio", "lookup"):
        assert res[m]["length_predictor"] == ("conv" if m == "trained" else m)
        assert res[m]["length_mae"] >= 0 and res[m]["length_ratio"] > 0
    # the oracle run equals beam search given the reference lengths directly
    model, data, _ = load_translate_run(run)
    src, tgt = data.ids["test"]
    hyps = (run / "eval-test-oracle" / "hyp.txt").read_text().split("\n")[:-1]
    for j in range(n):
        x = torch.tensor([src[j] + [model.cfg.eos_id]])
        ids = beam_search(model, x, None, beam=2, target_length=len(tgt[j]) + 1)[0]
        assert data.tgt_tok.decode(ids) == hyps[j]
    ratio_run = tmp / "cos-ratio"
    assert train(tmp, ratio_run, 2, waitk=None, spec="cosformer")["length_predictor"] == "ratio"
    with pytest.raises(ValueError, match="length_predictor='conv' is trained with the model"):
        run_translate_eval(ratio_run, max_sentences=2, length_predictor="conv")
    with pytest.raises(ValueError, match="length_predictor='ratio' needs a cosFormer"):
        run_translate_eval(tmp / "run", max_sentences=2, length_predictor="ratio")
    with pytest.raises(ValueError, match="length_predictor must be one of"):
        run_translate_eval(run, max_sentences=2, length_predictor="nope")


@pytest.mark.parametrize("encoder", ["incremental", "reencode"])
def test_simul_writes_simuleval_files(trained, encoder):
    tmp, _ = trained
    out = tmp / f"simul-{encoder}"
    res = run_translate_simul(tmp / "run", k=2, encoder=encoder, max_sentences=6, out=out)
    records = read_instances(out / "instances.log")
    assert [r.index for r in records] == list(range(6))
    for r in records:
        n = int(r.source_length)
        assert r.delays == [min(2 + t, n) for t in range(len(r.delays))]
        assert len(r.elapsed) == len(r.delays) and r.reference_length >= 1
        assert r.source_duration_ms == pytest.approx(300.0 * n)
    scores = json.loads((out / "scores.json").read_text())
    assert scores == scores_from_log(out / "instances.log", bleu=scores["BLEU"])
    for key in ("BLEU", "AL", "LAAL", "AP", "DAL", "AL_CA"):
        assert key in scores and res[key] == scores[key]
    assert res["decoder_tokens_per_s"] > 0 and res["oracle"] == []


def test_incremental_and_reencode_agree_on_a_causal_run(trained):
    tmp, _ = trained
    a = run_translate_simul(tmp / "run", k=3, max_sentences=4, out=tmp / "s-a")
    b = run_translate_simul(tmp / "run", k=3, encoder="reencode", max_sentences=4,
                            out=tmp / "s-b")
    pa = [r.prediction for r in read_instances(tmp / "s-a" / "instances.log")]
    pb = [r.prediction for r in read_instances(tmp / "s-b" / "instances.log")]
    assert pa == pb and a["AL"] == b["AL"]


@pytest.mark.parametrize("encoder", ["incremental", "reencode"])
def test_simul_batch_size_gives_the_same_instances(trained, encoder):
    """Sentences served 4 at a time (the last batch smaller) get what they get alone."""
    tmp, _ = trained
    one = run_translate_simul(tmp / "run", k=2, encoder=encoder, max_sentences=6,
                              out=tmp / f"b1-{encoder}", compile_step=False)
    four = run_translate_simul(tmp / "run", k=2, encoder=encoder, max_sentences=6,
                               batch_size=4, out=tmp / f"b4-{encoder}", compile_step=False)
    ra = read_instances(tmp / f"b1-{encoder}" / "instances.log")
    rb = read_instances(tmp / f"b4-{encoder}" / "instances.log")
    assert [(r.index, r.prediction, r.delays) for r in ra] == \
        [(r.index, r.prediction, r.delays) for r in rb]
    assert (one["batch_size"], four["batch_size"]) == (1, 4)
    assert one["AL"] == four["AL"] and one["BLEU"] == four["BLEU"]
    with pytest.raises(ValueError, match="batch_size"):
        run_translate_simul(tmp / "run", k=2, batch_size=0)


def test_batches_are_a_pure_function_of_seed_and_index():
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(1, 30, 300), rng.integers(1, 30, 300)
    a = TokenBatcher(src, tgt, 120, seed=3, pool=50)
    b = TokenBatcher(src, tgt, 120, seed=3, pool=50)
    late = [b.batch(i).tolist() for i in (57, 3, 200)]  # out of order, other epochs
    assert late == [a.batch(i).tolist() for i in (57, 3, 200)]
    per_epoch = a.batches_per_epoch()
    seen = np.concatenate([a.batch(i) for i in range(per_epoch)])
    assert sorted(seen.tolist()) == list(range(300))  # an epoch covers every pair once
    for i in range(per_epoch):
        rows = a.batch(i)
        cost = np.maximum(src[rows], tgt[rows]) + 1
        assert len(rows) == 1 or len(rows) * cost.max() <= 120
    assert TokenBatcher(src, tgt, 120, seed=4, pool=50).batch(0).tolist() != a.batch(0).tolist()
    with pytest.raises(ValueError, match="max_batch_tokens must be a positive int"):
        TokenBatcher(src, tgt, 0)


def test_waitk_prefix_matches_the_agent_schedule_and_multi_k_is_deterministic():
    src_len = torch.tensor([5, 3])  # 4 and 2 tokens + EOS
    p = waitk_memory_prefix(2, 5, src_len)
    assert p.tolist() == [[2, 3, 5, 5, 5], [3, 3, 3, 3, 3]]
    ks = [sample_k("multi", 0, i, 9) for i in range(50)]
    assert ks == [sample_k("multi", 0, i, 9) for i in range(50)]
    assert min(ks) >= 1 and max(ks) <= 9 and len(set(ks)) > 3
    assert sample_k(4, 0, 7, 9) == 4


def parser():
    p = argparse.ArgumentParser(prog="leapformer")
    add_translate_parser(p.add_subparsers(dest="command", required=True))
    return p


def test_cli_wiring(tmp_path, trained, capfd):
    tmp, _ = trained
    args = parser().parse_args(
        ["translate", "train", "--spec", "enc=leap,dec=linear,cross=leap", "--waitk", "multi",
         "--data", str(tmp / "data"), "--src-lang", "en", "--tgt-lang", "de",
         "--out", str(tmp_path / "cli"), "--steps", "3", "--max-batch-tokens", "200",
         "--no-progress"]
        + [a for k, v in TINY.items() for a in ("--model-option", f"{k}={v}")]
        + [a for k, v in TRAIN.items() for a in ("--train-option", f"{k}={v}")])
    assert args.waitk == "multi" and args.func.__name__ == "run_translate_train_command"
    assert args.func(args) == 0
    assert json.loads((tmp_path / "cli" / "results.json").read_text())["steps"] == 3
    args = parser().parse_args(["translate", "eval", "--run", str(tmp / "run"), "--beam", "1",
                                "--max-sentences", "3", "--out", str(tmp_path / "ev"),
                                "--no-progress"])
    assert args.func(args) == 0 and (tmp_path / "ev" / "hyp.txt").is_file()
    args = parser().parse_args(["translate", "simul", "--run", str(tmp / "run"), "--waitk", "3",
                                "--encoder", "reencode", "--max-sentences", "3",
                                "--batch-size", "2", "--no-compile-step",
                                "--out", str(tmp_path / "si"), "--no-progress"])
    assert (args.batch_size, args.no_compile_step) == (2, True)
    assert args.func(args) == 0 and (tmp_path / "si" / "scores.json").is_file()
    with pytest.raises(SystemExit):
        parser().parse_args(["translate", "train", "--waitk", "0", "--out", "x"])
    capfd.readouterr()


def test_errors_name_the_argument(tmp_path, capfd):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="run folder .*nope does not exist"):
        run_translate_eval(missing)
    with pytest.raises(FileNotFoundError, match="not a translation run folder"):
        run_translate_simul(tmp_path, k=2)
    args = parser().parse_args(["translate", "simul", "--run", str(missing), "--waitk", "2",
                                "--no-progress"])
    assert args.func(args) == 2
    assert "error: leapformer translate simul:" in capfd.readouterr().err
    other = tmp_path / "other-run"  # a run folder of another command
    other.mkdir()
    (other / "config.json").write_text('{"format": "leapformer-st-run"}')
    (other / "best.pt").write_bytes(b"")
    args = parser().parse_args(["translate", "eval", "--run", str(other), "--no-progress"])
    assert args.func(args) == 2
    assert "is not a translation run config (format 'leapformer-st-run')" in \
        capfd.readouterr().err
    write_fixture(tmp_path / "data", n=(20, 4, 4))
    with pytest.raises(ValueError, match="bad attention spec 'enc=bogus'"):
        train(tmp_path, tmp_path / "r", 2, spec="enc=bogus")
    with pytest.raises(ValueError, match="waitk must be None, a positive int or 'multi'"):
        train(tmp_path, tmp_path / "r", 2, waitk=0)
    with pytest.raises(ValueError, match="embedded corpus is English -> Japanese"):
        run_translate_train("leap", out=tmp_path / "r", tgt_lang="de", progress=False)
    with pytest.raises(FileNotFoundError, match="data folder .* does not exist"):
        run_translate_train("leap", out=tmp_path / "r", data=missing, progress=False)


class _Stop(Exception):
    """Raised by the TrainConfig spy: the settings are known, no need to train."""


def test_cli_scales_the_warmup_with_steps_and_takes_checkpoint_seconds(tmp_path, monkeypatch):
    """``translate train --steps N`` caps the preset's warm-up at N // 10 (at least 1), as
    ``lra`` does; an explicit warm-up is kept; the library keeps the preset's unless
    asked. ``--checkpoint-seconds`` reaches the trainer."""
    from leapformer.cli import main
    from leapformer.tasks.translate import run as translate_task

    seen = {}

    def spy(**kw):
        seen.update(kw)
        raise _Stop

    monkeypatch.setattr(translate_task, "TrainConfig", spy)
    write_fixture(tmp_path / "data", n=(20, 4, 4))
    out = tmp_path / "run"
    base = ["translate", "train", "--spec", "leap", "--data", str(tmp_path / "data"),
            "--src-lang", "en", "--tgt-lang", "de", "--out", str(out), "--no-progress",
            "--train-option", "src_vocab=40", "--train-option", "tgt_vocab=40"]
    base += [a for k, v in TINY.items() for a in ("--model-option", f"{k}={v}")]
    assert translate_task.TRANSLATE_PRESETS["lite"].warmup_steps == 300
    with pytest.raises(_Stop):
        main([*base, "--steps", "40", "--checkpoint-seconds", "0"])
    assert (seen["warmup_steps"], seen["steps"], seen["checkpoint_seconds"]) == (4, 40, 0.0)
    with pytest.raises(_Stop):
        main([*base, "--steps", "40", "--train-option", "warmup_steps=9"])
    assert (seen["warmup_steps"], seen["checkpoint_seconds"]) == (9, 60.0)
    with pytest.raises(_Stop):
        main([*base, "--steps", "40", "--warmup-steps", "0"])
    assert seen["warmup_steps"] == 0
    with pytest.raises(_Stop):
        run_translate_train("leap", out=out, data=tmp_path / "data", src_lang="en",
                            tgt_lang="de", steps=40, overrides={"src_vocab": 40, "tgt_vocab": 40},
                            model_overrides=TINY, progress=False)
    assert seen["warmup_steps"] == 300
