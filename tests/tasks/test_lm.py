"""The LM harness end to end on a tiny WikiText-format corpus the tests write:
``leapformer lm train|eval|generate`` through ``cli.main``, exact resume, errors."""

import json

import pytest
import torch

from leapformer.cli import main
from leapformer.tasks.lm import run as lm_task
from leapformer.tasks.lm import LMTrainPreset, load_lm_run, run_lm_train

WORDS = ["in", "the", "beginning", "god", "created", "the", "heavens", "and", "the", "earth"]
TINY_MODEL = ["--model-option", "num_layers=1", "--model-option", "d_model=32",
              "--model-option", "nhead=2", "--model-option", "dim_feedforward=64"]
TINY = {"num_layers": 1, "d_model": 32, "nhead": 2, "dim_feedforward": 64}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Lines of a fixed word cycle (easy to learn), in the WikiText file layout."""
    root = tmp_path_factory.mktemp("wikitext")

    def text(n, shift):
        lines = []
        for i in range(n):
            start = (i * 3 + shift) % len(WORDS)
            lines.append(" " + " ".join(WORDS[(start + j) % len(WORDS)] for j in range(7)) + " ")
            if i % 6 == 5:
                lines += [" ", " = heading = "]
        return "\n".join(lines) + "\n"

    for split, n, shift in (("train", 120, 0), ("valid", 12, 1), ("test", 12, 2)):
        (root / f"wiki.{split}.tokens").write_text(text(n, shift))
    return root


def _train(corpus, out, attention, steps, *extra):
    return main(["lm", "train", "--attention", attention, "--data", str(corpus), "--out",
                 str(out), "--steps", str(steps), "--context", "24", "--batch-size", "4",
                 "--lr", "3e-3", "--warmup-steps", "0", "--eval-every", "10",
                 "--device", "cpu", "--no-progress", *TINY_MODEL, *extra])


def _train_losses(out):
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in recs if r["kind"] == "train"], [r for r in recs if r["kind"] == "eval"]


@pytest.mark.parametrize("attention", ["softmax", "leap"])
def test_train_eval_generate_cli(attention, corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(corpus, out, attention, 40, "--schedule", "constant") == 0
    res = json.loads((out / "results.json").read_text())
    assert res["steps"] == 40 and res["attention"] == attention and res["corpus"] == "wikitext"
    for key in ("valid_ppl", "test_ppl", "valid_ppl_per_word", "test_ppl_per_word",
                "train_tokens_per_s", "peak_rss_mb", "parameters", "train_wall_s"):
        assert res[key] > 0, key
    assert res["eval_window"] == 24 and res["eval_stride"] == 12
    # word-level data: one word per token, and every token of the split scored
    assert res["valid_ppl_per_word"] == pytest.approx(res["valid_ppl"])
    assert res["eval_tokens"]["valid"] == res["eval_words"]["valid"]
    for name in ("config.json", "tokenizer.json", "data.json", "tokens/train.npy", "best.pt",
                 "last.pt"):
        assert (out / name).is_file(), name
    train, evals = _train_losses(out)
    assert [r["step"] for r in evals] == [10, 20, 30, 40]
    assert train[-1]["loss"] < 0.6 * train[0]["loss"]  # the word cycle is learned
    assert evals[-1]["loss"] < evals[0]["loss"]
    assert res["valid_ppl"] < 0.5 * res["vocab_size"]  # far below uniform (13)
    capsys.readouterr()

    assert main(["lm", "eval", "--run", str(out), "--split", "valid", "--window", "16",
                 "--stride", "1", "--no-progress", "--out", str(tmp_path / "eval.json")]) == 0
    printed = capsys.readouterr().out
    ev = json.loads((tmp_path / "eval.json").read_text())
    assert ev["window"] == 16 and ev["stride"] == 1 and ev["tokens"] == res["eval_tokens"]["valid"]
    assert ev["ppl"] < 0.5 * res["vocab_size"] and '"split": "valid"' in printed

    assert main(["lm", "generate", "--run", str(out), "--prompt", "in the beginning",
                 "--prompt", "the heavens and", "--max-new-tokens", "6"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("in the beginning") and len(lines[0].split()) == 3 + 6
    assert lines[1] == "-" * 40 and lines[2].startswith("the heavens and")
    # greedy continuation of the learned cycle
    assert lines[0].split()[3:5] == ["god", "created"]
    assert main(["lm", "generate", "--run", str(out), "--prompt", "the", "--strategy", "top-p",
                 "--seed", "3", "--max-new-tokens", "4", "--checkpoint", "last"]) == 0
    assert capsys.readouterr().out.startswith("the")


def test_model_rebuilt_from_run_folder(corpus, tmp_path):
    out = tmp_path / "run"
    res = run_lm_train("cosformer", out=out, data=corpus, steps=3, context=16, batch_size=2,
                       model_overrides=TINY, progress=False)
    model, tok, config = load_lm_run(out, checkpoint="last")
    assert not model.training and config["attention"] == "cosformer"
    assert model.cfg.context_length == 16 and model.cfg.vocab_size == tok.vocab_size
    assert sum(p.numel() for p in model.parameters()) == res["parameters"]
    last = torch.load(out / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(v, last[k]) for k, v in model.state_dict().items())


def test_resume_is_exact(corpus, tmp_path, monkeypatch):
    """8 steps in one go == 8 steps interrupted after step 6 (last.pt at step 4), resumed."""
    kw = {"data": corpus, "steps": 8, "context": 16, "batch_size": 4, "lr": 3e-3, "schedule": "cosine",
              "model_overrides": TINY, "progress": False,
              "overrides": {"checkpoint_every": 4, "log_every": 1}}
    full = run_lm_train("leap", out=tmp_path / "full", **kw)

    class Crash(KeyboardInterrupt):
        pass

    class Interrupted(lm_task.StreamBatcher):
        calls = 0

        def batch(self, epoch, step):
            Interrupted.calls += 1
            if Interrupted.calls > 6:
                raise Crash
            return super().batch(epoch, step)

    monkeypatch.setattr(lm_task, "StreamBatcher", Interrupted)
    with pytest.raises(Crash):
        run_lm_train("leap", out=tmp_path / "cut", **kw)
    monkeypatch.undo()
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=False)["step"] == 4
    resumed = run_lm_train("leap", out=tmp_path / "cut", resume=True, **kw)
    assert resumed["steps"] == full["steps"] == 8
    assert resumed["train_loss"] == full["train_loss"]
    assert resumed["valid_ppl"] == full["valid_ppl"]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    train_full, _ = _train_losses(tmp_path / "full")
    train_cut, _ = _train_losses(tmp_path / "cut")
    assert [r["step"] for r in train_cut] == list(range(1, 9))  # steps 5, 6 not duplicated
    assert [r["loss"] for r in train_cut] == [r["loss"] for r in train_full]


def test_resume_continues_the_step_count_cli(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(corpus, out, "linear", 5) == 0
    assert _train(corpus, out, "linear", 9, "--resume") == 0
    assert json.loads((out / "results.json").read_text())["steps"] == 9
    train, _ = _train_losses(out)
    steps = [r["step"] for r in train]
    assert steps == sorted(set(steps)) and steps[-1] == 9
    # a different model cannot resume this run
    assert _train(corpus, out, "linear", 12, "--resume", "--model-option", "d_model=64") == 2
    assert "cannot resume" in capsys.readouterr().err


def test_errors(corpus, tmp_path, capsys):
    def err(argv):
        assert main(argv) == 2
        return capsys.readouterr().err

    assert "data " + str(tmp_path / "nope") + " does not exist" in err(
        ["lm", "train", "--attention", "leap", "--data", str(tmp_path / "nope"), "--out",
         str(tmp_path / "r")])
    assert "--corpus wikitext needs --data" in err(
        ["lm", "train", "--attention", "leap", "--corpus", "wikitext", "--out", str(tmp_path)])
    assert "run folder " + str(tmp_path / "missing") + " does not exist" in err(
        ["lm", "eval", "--run", str(tmp_path / "missing")])
    assert "is not an LM run folder" in err(["lm", "generate", "--run", str(tmp_path),
                                             "--prompt", "x"])
    assert "cannot resume: no checkpoint" in err(
        ["lm", "train", "--attention", "leap", "--data", str(corpus), "--out",
         str(tmp_path / "fresh"), "--resume"])
    assert "has no causal form" in err(
        ["lm", "train", "--attention", "bigbird", "--data", str(corpus), "--out",
         str(tmp_path / "bb"), *TINY_MODEL])
    out = tmp_path / "run"
    assert _train(corpus, out, "elu", 2) == 0
    capsys.readouterr()
    assert "already holds a run" in err(["lm", "train", "--attention", "elu", "--data",
                                         str(corpus), "--out", str(out)])
    assert "max_new_tokens must be an int >= 0" in err(
        ["lm", "generate", "--run", str(out), "--prompt", "x", "--max-new-tokens", "-1"])
    with pytest.raises(ValueError, match="unknown training settings"):
        run_lm_train("leap", out=tmp_path / "o", data=corpus, overrides={"colour": 1})
    with pytest.raises(ValueError, match="preset must be one of"):
        run_lm_train("leap", out=tmp_path / "o", preset="huge")
    with pytest.raises(ValueError, match="eval_every must be an int >= 0, got -1"):
        LMTrainPreset(steps=1, batch_size=1, eval_every=-1)
    with pytest.raises(ValueError, match="model_overrides cannot set"):
        run_lm_train("leap", out=tmp_path / "o", data=corpus, model_overrides={"vocab_size": 9})


def test_bible_corpus_with_bpe(tmp_path):
    """The default corpus: BPE trained on the training books, saved with the token ids;
    per-word perplexity counts the words of the text (fewer than BPE tokens)."""
    from leapformer.data.lm_corpus import bible_lm_corpus
    from leapformer.data.lm_tokenizer import LMTokenizer

    out = tmp_path / "bible"
    res = run_lm_train("linear", out=out, steps=2, context=16, batch_size=2,
                       model_overrides=TINY, progress=False,
                       overrides={"bpe_vocab": 400, "valid_tokens": 64, "eval_stride": 16,
                                      "eval_batch_size": 512})
    assert res["corpus"] == "bible" and res["vocab_size"] == 400
    tok = LMTokenizer.load(out / "tokenizer.json")
    text = bible_lm_corpus()["valid"]
    ids = tok.encode(text)
    assert res["eval_tokens"]["valid"] == len(ids)
    assert res["eval_words"]["valid"] == len(text.split()) + text.count("\n") < len(ids)
    assert res["valid_ppl_per_word"] > res["valid_ppl"]  # same nll over fewer words
    assert (out / "tokens" / "valid.npy").is_file()
    import numpy as np
    assert np.load(out / "tokens" / "valid.npy").tolist() == ids


class _Stop(Exception):
    """Raised by the TrainConfig spy: the settings are known, no need to train."""


def _spy_train_config(monkeypatch, module):
    seen = {}

    def spy(**kw):
        seen.update(kw)
        raise _Stop

    monkeypatch.setattr(module, "TrainConfig", spy)
    return seen


def test_cli_scales_the_warmup_with_steps_and_takes_checkpoint_seconds(corpus, tmp_path,
                                                                       monkeypatch):
    """``lm train --steps N`` caps the preset's warm-up at N // 10 (at least 1), as ``lra``
    does; an explicit ``--warmup-steps`` is kept; the library keeps the preset's unless
    asked. ``--checkpoint-seconds`` reaches the trainer."""
    seen = _spy_train_config(monkeypatch, lm_task)
    out = tmp_path / "run"
    base = ["lm", "train", "--attention", "linear", "--data", str(corpus), "--out", str(out),
            "--context", "24", "--batch-size", "2", "--device", "cpu", "--no-progress",
            *TINY_MODEL]
    assert lm_task.LM_TRAIN_PRESETS["lite"].warmup_steps == 100
    with pytest.raises(_Stop):
        main([*base, "--steps", "30", "--checkpoint-seconds", "0"])
    assert (seen["warmup_steps"], seen["steps"], seen["checkpoint_seconds"]) == (3, 30, 0.0)
    with pytest.raises(_Stop):
        main([*base, "--steps", "2"])
    assert (seen["warmup_steps"], seen["checkpoint_seconds"]) == (1, 60.0)
    with pytest.raises(_Stop):
        main([*base, "--steps", "5000"])
    assert seen["warmup_steps"] == 100  # never above the preset's
    with pytest.raises(_Stop):
        main([*base, "--steps", "30", "--warmup-steps", "7"])
    assert seen["warmup_steps"] == 7
    with pytest.raises(_Stop):
        run_lm_train("linear", out=out, data=corpus, steps=30, context=24, batch_size=2,
                     model_overrides=TINY, progress=False)
    assert seen["warmup_steps"] == 100
