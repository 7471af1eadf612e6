"""``leapformer export --run RUN --format onnx --out FILE`` on a run folder made by
``leapformer lm train`` (a tiny WikiText-format corpus), and its one-line errors."""

import json
import shutil
from dataclasses import asdict

import numpy as np
import pytest
import torch

from leapformer.cli import main
from leapformer.export import OnnxDecoder
from leapformer.models.lm import CausalLM, LMConfig
from leapformer.tasks.lm import load_lm_run
from leapformer.train import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = ["in", "the", "beginning", "god", "created", "the", "heavens", "and", "the", "earth"]
TINY = ["--model-option", "num_layers=1", "--model-option", "d_model=32", "--model-option",
        "nhead=2", "--model-option", "dim_feedforward=48"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 3-step LeaP run folder, as `leapformer lm train` writes it."""
    root = tmp_path_factory.mktemp("export-run")
    for split, n in (("train", 40), ("valid", 6), ("test", 6)):
        lines = [" " + " ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(7)) + " "
                 for i in range(n)]
        (root / f"wiki.{split}.tokens").write_text("\n".join(lines) + "\n")
    out = root / "run"
    assert main(["lm", "train", "--attention", "leap", "--data", str(root), "--out", str(out),
                 "--steps", "3", "--context", "16", "--batch-size", "2", "--eval-every", "0",
                 "--device", "cpu", "--no-progress", *TINY]) == 0
    return out


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: leapformer export: "), err
    return err


def test_export_run_round_trip(run, tmp_path, capsys):
    out = tmp_path / "new" / "step.onnx"
    capsys.readouterr()
    assert main(["export", "--run", str(run), "--format", "onnx", "--out", str(out),
                 "--checkpoint", "last"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["out"] == str(out) and printed["attention"] == "leap"
    assert printed["layers"] == 1 and printed["bytes"] == out.stat().st_size
    assert [p.name for p in out.parent.iterdir()] == ["step.onnx"]  # no temporary left
    dec = OnnxDecoder(out, threads=1)
    assert dec.metadata["source"] == {"run": str(run.resolve()), "checkpoint": "last"}
    model, _, _ = load_lm_run(run, checkpoint="last")  # the harness's own loader
    tokens = torch.from_numpy(np.load(run / "tokens" / "valid.npy")[:20].astype(np.int64))
    with torch.no_grad():
        ref = model(tokens[None])[0]  # position t's logits, from the whole prefix
    states = dec.initial_states(1)
    for t in range(20):
        logits, states = dec.step([int(tokens[t])], [t + 1], states)
        np.testing.assert_allclose(logits[0], ref[t].numpy(), atol=1e-4, rtol=1e-4)


def test_export_errors(run, tmp_path, capsys):
    out = tmp_path / "x.onnx"
    capsys.readouterr()
    assert main(["export", "--run", str(tmp_path / "nope"), "--out", str(out)]) == 2
    err = _error(capsys)
    assert "run folder" in err and "does not exist" in err
    assert main(["export", "--run", str(tmp_path), "--out", str(out)]) == 2
    assert "config.json not found" in _error(capsys)
    assert main(["export", "--run", str(run), "--out", str(tmp_path)]) == 2
    assert "--out" in _error(capsys)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["export", "--run", str(run), "--out", str(blocker / "x.onnx")]) == 2
    assert "is a file, not a folder" in _error(capsys)
    cut = tmp_path / "cut"
    shutil.copytree(run, cut, ignore=shutil.ignore_patterns("tokens", "best.pt"))
    assert main(["export", "--run", str(cut), "--out", str(out)]) == 2
    err = _error(capsys)
    assert "no checkpoint" in err and "best.pt" in err
    (cut / "last.pt").write_bytes(b"truncated")
    assert main(["export", "--run", str(cut), "--out", str(out), "--checkpoint", "last"]) == 2
    assert "could not read checkpoint" in _error(capsys)
    assert main(["export", "--run", str(run), "--out", str(out), "--opset", "11"]) == 2
    assert "opset must be an int >= 18" in _error(capsys)
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--run", str(run), "--out", str(out), "--format", "tflite"])
    assert exit_.value.code == 2
    assert "invalid choice" in _error(capsys)
    assert not out.exists()


def test_softmax_run_is_refused(tmp_path, capsys):
    """A run folder in the layout `lm train` writes, with softmax attention."""
    cfg = LMConfig(vocab_size=11, context_length=16, attention="softmax", num_layers=1,
                   d_model=16, nhead=2, dim_feedforward=16)
    run = tmp_path / "softmax"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"format": "leapformer-lm-run", "version": 1,
                                                 "attention": "softmax",
                                                 "model": asdict(cfg)}))
    save_checkpoint({"model": CausalLM(cfg).state_dict()}, run / "best.pt")
    out = tmp_path / "s.onnx"
    assert main(["export", "--run", str(run), "--out", str(out)]) == 2
    err = _error(capsys)
    assert "'softmax'" in err and "grows with the length" in err and not out.exists()
