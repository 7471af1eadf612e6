"""The ``paper`` profiles against the official recipes (LeaPformer's pytorch-lra
``config.py``/``main.py``; its fairseq WikiText-103 script), and short smoke runs of
every one of them on tiny data: the five LRA tasks, the LM ``wikitext103`` preset,
the translation ``paper`` preset's LeaP options."""

import json
import math

import pytest
import torch

from leapformer.cli import main
from leapformer.tasks.lm import load_lm_run, run_lm_train
from leapformer.tasks.lra import TASKS, get_profile, run_lra
from leapformer.tasks.lra.profile import classifier_options, train_options
from tests.tasks.test_lm import corpus  # noqa: F401 (the tiny WikiText fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

# the official config.py values: batch, lr, warm-up, steps, eval_frequency,
# num_eval_steps x batch, data tensor length
OFFICIAL = {
    "listops": (32, 1e-4, 1000, 20_000, 250, 62 * 32, 2048),
    "text": (32, 1e-4, 80, 20_000, 250, 200 * 32, 4096),
    "retrieval": (16, 2e-4, 800, 50_000, 1000, 300 * 16, 4096),
    "image": (256, 1e-4, 175, 30_000, 50, 20 * 256, 1024),
    "pathfinder": (128, 2e-4, 312, 50_000, 500, 156 * 128, 1024),
}
# tiny data: small generated sets, short inputs, a small fixed tensor length
TINY = {"listops": dict(min_len=5, max_len=30, max_length=64, pad_to=64),
        "text": dict(min_len=32, max_len=64, max_length=64, pad_to=64),
        "retrieval": dict(min_len=32, max_len=64, max_length=64, pad_to=64),
        "image": dict(image_size=16, pad_to=256),
        "pathfinder": dict(image_size=16, pad_to=256)}
SIZES = dict(n_train=16, n_valid=8, n_test=8, batch_size=4)


@pytest.mark.parametrize("task", TASKS)
def test_paper_profile_is_the_official_recipe(task):
    p = get_profile(task, "paper")
    assert (p.batch_size, p.lr, p.warmup_steps, p.steps, p.eval_every, p.eval_examples,
            p.pad_to) == OFFICIAL[task]
    t = train_options(p)
    assert (t["betas"], t["eps"], t["weight_decay"]) == ((0.9, 0.999), 1e-6, 0.0)
    assert (t["schedule"], t["grad_clip"], t["grad_clip_mode"]) == ("onecycle", 1.0, "value")
    m = classifier_options("leap", p)
    assert (m["activation"], m["init_std"], m["head_hidden"], m["pooling"]) == \
        ("gelu", 0.02, 128, "mean_padded")
    assert m["mechanism_options"] == {"hidden": 16} and m["attention_dropout"] == 0.0
    assert classifier_options("cosformer", p)["mechanism_options"] == {"length": "padded"}
    assert "attention_dropout" not in classifier_options("softmax", p)
    # lite keeps its recipe and model
    lite = get_profile(task, "lite")
    # lite's Text and Retrieval use the official embedding init, Retrieval normalised pair
    # features (docs/lra.md, lite tuning)
    # and Pathfinder a masked background, 2-D positions, CLS pooling and no dropout
    lite_keys = {"max_length", "attention", "mechanism_options"} | (
        {"init_std"} if task in ("text", "retrieval") else set()) | (
        {"pair_features"} if task == "retrieval" else set()) | (
        {"positions", "grid_width", "pooling", "dropout"} if task == "pathfinder" else set())
    assert "pair_features" not in m  # the paper profile keeps the official features
    assert set(classifier_options("leap", lite)) == lite_keys
    assert classifier_options("leap", lite)["mechanism_options"] == {}
    t = train_options(lite)
    assert (t["schedule"], t["grad_clip_mode"], t["betas"], t["eps"]) == \
        ("linear", "norm", (0.9, 0.98), 1e-8)


@pytest.mark.parametrize("task,mech", [("listops", "leap"), ("text", "cosformer"),
                                       ("retrieval", "leap"), ("image", "cosformer"),
                                       ("pathfinder", "leap")])
def test_paper_profile_smoke_run(task, mech, tmp_path):
    res = run_lra(task, mech, profile="paper", out=tmp_path, steps=2, progress=False,
                  overrides={**SIZES, **TINY[task]})
    assert res["steps"] == 2 and math.isfinite(res["test_loss"])
    s = res["profile_settings"]
    assert (s["schedule"], s["grad_clip_mode"], s["pooling"]) == ("onecycle", "value",
                                                                  "mean_padded")
    model = res["model"]
    assert model["pad_to"] == TINY[task]["pad_to"] and model["activation"] == "gelu"
    assert model["mechanism_options"] == ({"hidden": 16} if mech == "leap" else
                                          {"length": "padded"})
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["kind"] == "train"]
    assert len(train) == 2 and all(math.isfinite(r["loss"]) for r in train)


def test_cli_leap_hidden_and_cosformer_length_are_recorded(tmp_path):
    from leapformer.data import generate_listops, write_tsv

    data = tmp_path / "data"
    for i, name in enumerate(("basic_train.tsv", "basic_val.tsv", "basic_test.tsv")):
        write_tsv(generate_listops(16, seed=i, min_len=5, max_len=25), data / name)

    def run(attention, *extra):
        out = tmp_path / attention
        assert main(["lra", "--task", "listops", "--attention", attention, "--steps", "2",
                     "--data-dir", str(data), "--out", str(out), "--no-progress", *extra]) == 0
        return json.loads((out / "results.json").read_text()), out

    res, out = run("leap", "--leap-hidden", "5")
    assert res["profile_settings"]["leap_hidden"] == 5
    assert res["model"]["mechanism_options"] == {"hidden": 5}
    weights = torch.load(out / "best.pt", weights_only=False)["model"]
    assert weights["encoder.encoder.layers.0.self_attn.attention.leap_q.net.0.weight"].shape == \
        (5, 32)
    res, _ = run("cosformer", "--cosformer-length", "padded")
    assert res["profile_settings"]["cosformer_length"] == "padded"
    assert res["model"]["mechanism_options"] == {"length": "padded"}


LM_TINY = {"num_layers": 1, "d_model": 32, "nhead": 2, "dim_feedforward": 64}
LM_SMALL = {"eval_window": 24, "eval_stride": 12, "eval_batch_size": 4, "log_every": 1}


def _lm(corpus, out, attention, **kw):  # noqa: F811
    return run_lm_train(attention, out=out, preset="wikitext103", data=corpus, steps=2,
                        context=24, batch_size=2, overrides=LM_SMALL, model_overrides=LM_TINY,
                        device="cpu", progress=False, **kw)


def test_lm_wikitext103_preset_smoke_run(corpus, tmp_path):  # noqa: F811
    res = _lm(corpus, tmp_path / "leap", "leap")
    train = res["config"]["train"]
    assert (train["optimizer"], train["lr"], train["weight_decay"], train["grad_clip"]) == \
        ("nag", 1.0, 0.0, 0.1)
    assert (train["schedule"], train["warmup_steps"], train["min_lr_ratio"]) == \
        ("fairseq_cosine", 8000, 1e-4)
    assert train["schedule_options"] == {"warmup_init": 1e-7, "period": 270_000, "t_mult": 2.0,
                                         "shrink": 0.75}
    assert (train["steps"], train["grad_accum"]) == (2, 2)  # 250k x (8 x 512 tokens) x 2
    assert res["config"]["model"]["mechanism_options"] == {"q_scale": True}
    assert math.isfinite(res["valid_ppl"]) and res["steps"] == 2
    recs = [json.loads(x) for x in (tmp_path / "leap" / "metrics.jsonl").read_text().splitlines()]
    first = next(r for r in recs if r["kind"] == "train" and r["step"] == 1)
    assert first["lr"] == pytest.approx(1e-7 + (1.0 - 1e-7) / 8000)  # fairseq's warm-up
    model, _, _ = load_lm_run(tmp_path / "leap")
    assert model.decoder.layers[0].self_attn.attention.q_scale is True
    # explicit options win; other mechanisms get none; another schedule drops the options
    res = _lm(corpus, tmp_path / "off", "leap", mechanism_options={"q_scale": False})
    assert res["config"]["model"]["mechanism_options"] == {"q_scale": False}
    res = _lm(corpus, tmp_path / "cos", "cosformer", schedule="cosine")
    assert res["config"]["model"]["mechanism_options"] == {}
    assert res["config"]["train"]["schedule_options"] == {}


def test_translate_paper_preset_scales_leap_queries(tmp_path):
    from leapformer.tasks.translate import run_translate_train
    from leapformer.tasks.translate.run import TRANSLATE_PRESETS
    from tests.tasks.test_translate import write_fixture

    assert TRANSLATE_PRESETS["paper"].mechanism_options == {"leap": {"q_scale": True}}
    assert TRANSLATE_PRESETS["lite"].mechanism_options == {}
    write_fixture(tmp_path / "data", n=(40, 8, 8))
    res = run_translate_train(
        "leap", out=tmp_path / "run", preset="paper", data=tmp_path / "data", src_lang="en",
        tgt_lang="de", steps=1, max_batch_tokens=200, progress=False,
        overrides={"src_vocab": 40, "tgt_vocab": 40, "valid_pairs": 4, "warmup_steps": 1},
        model_overrides={"d_model": 32, "nhead": 2, "num_encoder_layers": 1,
                         "num_decoder_layers": 1, "dim_feedforward": 64},
        mechanism_options={"leap": {"hidden": 3}, "cosformer": {"eps": 0.5}})
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["mechanism_options"] == {"cosformer": {"eps": 0.5},
                                                    "leap": {"q_scale": True, "hidden": 3}}
    assert res["steps"] == 1


@pytest.mark.parametrize("task", ["listops", "text", "retrieval", "image", "pathfinder"])
def test_each_paper_value_lives_in_one_place(task):
    """The task modules' paper profiles are built from the official recipe, not copies."""
    from leapformer.tasks.lra import get_profile, get_task

    assert get_task(task).PROFILES["paper"] == get_profile(task, "paper")
