"""``leapformer lm train --hf-arch``, ``leapformer linearize`` and ``lm eval --hf`` end to
end on a tiny WikiText-format corpus; bad input ends as one line."""

from __future__ import annotations

import json

import pytest

from leapformer.cli import main
from leapformer.linearize import is_linearized, linear_cores, load_linearized

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = "in the beginning god created the heavens and the earth".split()
TINY = ["--model-option", "num_layers=2", "--model-option", "d_model=32",
        "--model-option", "nhead=4", "--model-option", "dim_feedforward=64"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A 2-layer Llama (GQA: 2 key/value heads) trained 20 steps; returns its RUN/hf."""
    root = tmp_path_factory.mktemp("linearize")
    wiki = root / "wiki"
    wiki.mkdir()
    for split, n, shift in (("train", 80, 0), ("valid", 10, 1), ("test", 10, 2)):
        lines = [" " + " ".join(WORDS[(i * 3 + shift + j) % len(WORDS)] for j in range(7))
                 for i in range(n)]
        (wiki / f"wiki.{split}.tokens").write_text("\n".join(lines) + "\n")
    run = root / "teacher"
    assert main(["lm", "train", "--hf-arch", "llama", "--hf-option", "num_key_value_heads=2",
                 "--data", str(wiki), "--out", str(run), "--steps", "20", "--context", "16",
                 "--batch-size", "4", "--lr", "3e-3", "--warmup-steps", "0", "--eval-every",
                 "10", "--device", "cpu", "--no-progress", *TINY]) == 0
    return run / "hf"


def test_teacher_folder(teacher):
    config = json.loads((teacher / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_key_value_heads"] == 2
    results = json.loads((teacher.parent / "results.json").read_text())
    assert results["hf_dir"] == str(teacher) and results["attention"] == "softmax"


def test_linearize_then_eval(teacher, tmp_path, capsys):
    out = tmp_path / "lin"
    assert main(["linearize", "--model", str(teacher), "--mechanism", "leap", "--stage1-steps",
                 "3", "--stage2-steps", "3", "--batch-size", "2", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "validation perplexity teacher" in printed and str(out) in printed
    res = json.loads((out / "results.json").read_text())
    assert res["stage1"]["steps"] == 3 and res["stage2"]["steps"] == 3
    assert set(res["valid_ppl"]) == {"teacher", "linearized", "stage1", "stage2"}
    assert res["new_parameters"] > 0 and res["stage2"]["lora_parameters"] > 0
    for folder in (out, out / "stage1"):
        assert is_linearized(folder)
        assert sorted(linear_cores(load_linearized(folder))) == [0, 1]
    assert main(["lm", "eval", "--hf", str(out), "--split", "valid", "--no-progress",
                 "--window", "16", "--stride", "16", "--out", str(tmp_path / "e.json")]) == 0
    lin = json.loads((tmp_path / "e.json").read_text())
    assert lin["linearized"] is True
    # the same non-overlapping windows as the linearize command's stage-2 figure
    assert lin["ppl"] == pytest.approx(res["valid_ppl"]["stage2"], rel=1e-4)
    assert main(["lm", "eval", "--hf", str(teacher), "--split", "valid", "--no-progress",
                 "--window", "16", "--stride", "16", "--out", str(tmp_path / "t.json")]) == 0
    ref = json.loads((tmp_path / "t.json").read_text())
    assert ref["linearized"] is False
    assert ref["ppl"] == pytest.approx(res["valid_ppl"]["teacher"], rel=1e-4)


@pytest.mark.parametrize("argv,command,message", [
    (["linearize", "--model", "{root}/nope", "--out", "{tmp}/o"], "linearize",
     "--model {root}/nope does not exist"),
    (["linearize", "--model", "{teacher}", "--out", "{tmp}/o", "--stage1-steps", "0",
      "--stage2-steps", "0"], "linearize", "nothing to train"),
    (["linearize", "--model", "{teacher}", "--out", "{tmp}/full"], "linearize",
     "--out {tmp}/full is not empty; pass --overwrite"),
    (["linearize", "--model", "{teacher}", "--out", "{tmp}/o", "--layers", "0,7"],
     "linearize", "layers holds 7; the model has layers 0..1"),
    (["linearize", "--model", "{teacher}", "--out", "{tmp}/o", "--layers", "x"],
     "linearize", "argument --layers: expected 'all' or comma-separated layer indices"),
    (["linearize", "--model", "{teacher}", "--out", "{tmp}/o", "--mechanism", "cosformer"],
     "linearize", "argument --mechanism: invalid choice"),
    (["linearize", "--model", "{root}", "--out", "{tmp}/o"], "linearize",
     "is not a transformers model folder"),
    (["lm", "train", "--hf-arch", "gpt2", "--attention", "leap", "--out", "{tmp}/o"],
     "lm train", "--hf-arch trains a softmax teacher; --attention leap cannot be used"),
    (["lm", "train", "--attention", "softmax", "--hf-option", "n_head=2", "--out", "{tmp}/o"],
     "lm train", "--hf-option needs --hf-arch"),
    (["lm", "train", "--out", "{tmp}/o"], "lm train", "required: --attention (or --hf-arch)"),
    (["lm", "eval", "--hf", "{root}", "--no-progress"], "lm eval",
     "is not a transformers model folder"),
    (["lm", "eval", "--run", "{root}", "--hf", "{teacher}"], "lm eval",
     "not allowed with argument"),
])
def test_bad_input_is_one_line(argv, command, message, teacher, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    subs = {"{teacher}": str(teacher), "{root}": str(teacher.parent.parent),
            "{tmp}": str(tmp_path)}

    def fill(text):
        for k, v in subs.items():
            text = text.replace(k, v)
        return text

    try:
        code = main([fill(a) for a in argv])
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: leapformer {command}:"), err
    assert fill(message) in err, err
    assert not (tmp_path / "o").exists()


def test_gpt2_teacher_hedgehog_one_layer(teacher, tmp_path):
    wiki = teacher.parent.parent / "wiki"
    run = tmp_path / "gpt2"
    assert main(["lm", "train", "--hf-arch", "gpt2", "--data", str(wiki), "--out", str(run),
                 "--steps", "3", "--context", "16", "--batch-size", "2", "--eval-every", "0",
                 "--device", "cpu", "--no-progress", *TINY]) == 0
    out = tmp_path / "lin"
    assert main(["linearize", "--model", str(run / "hf"), "--mechanism", "linear",
                 "--feature-map", "hedgehog", "--layers", "1", "--stage1-steps", "2",
                 "--stage2-steps", "0", "--batch-size", "2", "--valid-tokens", "0",
                 "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["stage1"]["steps"] == 2 and "stage2" not in res
    assert res["valid_ppl"] == {"teacher": None, "linearized": None, "stage1": None}
    assert not (out / "stage1").exists()
    model = load_linearized(out)
    assert model.config.model_type == "gpt2" and sorted(linear_cores(model)) == [1]
    assert linear_cores(model)[1].feature_map_name == "hedgehog"


def test_eval_a_model_with_its_own_tokenizer(teacher, tmp_path, capsys):
    """A GPT-2 with a word-level transformers tokenizer (not the project's) is scored on
    the run's corpus text re-tokenised; the word counts are the run's."""
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", *sorted(set(WORDS))])}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>")
    folder = tmp_path / "own"
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(vocab),
                               n_positions=32)).save_pretrained(folder)
    tok.save_pretrained(folder)
    run = teacher.parent
    assert main(["lm", "eval", "--hf", str(folder), "--split", "test", "--no-progress"]) == 2
    assert "pass --data RUN" in capsys.readouterr().err
    assert main(["lm", "eval", "--hf", str(folder), "--data", str(run), "--split", "test",
                 "--window", "16", "--no-progress", "--out", str(tmp_path / "r.json")]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    data = json.loads((run / "data.json").read_text())
    text = (run.parent / "wiki" / "wiki.test.tokens").read_text()
    assert res["tokenizer"] == "own" and res["tokens"] == len(text.split())
    assert res["words"] == data["splits"]["test"]["words"]
    assert res["ppl"] > 1 and res["ppl_per_word"] > 1
