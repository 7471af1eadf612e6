"""The installed SimulEval 1.1.4 rescores logs written by the project (``--score-only``)
to the project's own AL, LAAL, AP and DAL, field by field, in each latency unit.

In-process: SimulEval's own option parser and ``SentenceLevelEvaluator`` read the
folder, and its unrounded latency scores are compared exactly. Once more through
the real command line (``python -m simuleval.cli``), whose table is rounded to
three decimals."""

import json
import random
import shlex
import subprocess
import sys
import warnings

import pytest

from leapformer.data.spm import train_spm
from leapformer.eval import (
    InstanceRecord,
    corpus_bleu,
    read_config,
    scores_from_log,
    simuleval_command,
    write_instances,
    write_scores,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pydub (imported by simuleval) warns that ffmpeg is missing
    from simuleval import options
    from simuleval.evaluator import SentenceLevelEvaluator

pytestmark = pytest.mark.filterwarnings("ignore:The .warn. method is deprecated:DeprecationWarning")

METRICS = ("AL", "LAAL", "AP", "DAL")
WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"]
JA_WORDS = ["猫", "が", "座った", "犬", "は", "走る", "鳥", "を", "見た", "静かに", "大きな", "家"]


def ja_sentence(rng, n):
    return "".join(rng.choice(JA_WORDS) for _ in range(n)) + "。"


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    rng = random.Random(0)
    texts = [ja_sentence(rng, rng.randint(2, 8)) for _ in range(300)]
    path = tmp_path_factory.mktemp("spm") / "spm.tgt.model"
    train_spm(texts, 40, hard_vocab_limit=False).save(path)
    return path


def simuleval_latency(folder, monkeypatch, *extra):
    """SimulEval's unrounded latency scores of ``folder`` (its --score-only path, in process)."""
    argv = ["--score-only", "--output", str(folder), "--latency-metrics", *METRICS, *extra]
    monkeypatch.setattr(sys, "argv", ["simuleval", *argv])
    parser = options.general_parser()
    options.add_evaluator_args(parser)
    options.add_scorer_args(parser, argv)
    options.add_dataloader_args(parser, argv)
    evaluator = SentenceLevelEvaluator.from_args(parser.parse_args(argv))
    return evaluator.latency


def random_records(rng, unit, speech=False):
    """Random instances: delays past the source end, first delays beyond it, hypotheses
    shorter and longer than the reference, one instance without a reference and one
    without delays (both tools skip it)."""
    out = []
    for index in range(40):
        if speech:
            n = rng.uniform(500.0, 8000.0)  # ms of audio
            steps = sorted(rng.uniform(0.0, n * 1.1) for _ in range(rng.randint(1, 12)))
        else:
            n = rng.randint(1, 20)
            steps = sorted(rng.randint(1, n + 1) for _ in range(rng.randint(1, 25)))
        m = rng.randint(1, 15)
        if unit == "word":
            reference = " ".join(rng.choice(WORDS) for _ in range(m))
        else:
            reference = ja_sentence(rng, m)
        out.append(InstanceRecord(index=index, prediction="x " * len(steps), delays=steps,
                                  source_length=n, reference=reference))
    out[3].reference = None
    out[5].delays, out[5].prediction = [], ""
    return out


@pytest.mark.parametrize("unit, speech", [("word", False), ("char", False), ("spm", False), ("word", True)])
def test_simuleval_rescores_a_log_to_the_same_numbers(tmp_path, monkeypatch, spm_model, unit, speech):
    rng = random.Random(f"{unit}{speech}")
    records = random_records(rng, unit, speech)
    kw = {"latency_unit": unit, "spm_model": spm_model if unit == "spm" else None}
    write_instances(tmp_path / "instances.log", records, source_type="speech" if speech else "text", **kw)
    ours = write_scores(tmp_path / "scores.json", records, **kw)
    extra = ["--eval-latency-unit", unit] + (["--eval-latency-spm-model", str(spm_model)] if unit == "spm" else [])
    theirs = simuleval_latency(tmp_path, monkeypatch, *extra)
    assert set(theirs) == set(METRICS)
    for name in METRICS:
        assert theirs[name] == ours[name], name  # the same arithmetic in the same order: bit for bit
    assert json.loads((tmp_path / "scores.json").read_text()) == ours


def test_default_word_unit_is_wrong_for_japanese_subwords(tmp_path, monkeypatch, spm_model):
    # the failure that motivated the unit: a Japanese reference has no spaces, so SimulEval's
    # default word unit counts it as 1 and AL / AP go far off; LAAL and DAL do not use |Y*| that way
    rng = random.Random(1)
    records = random_records(rng, "spm")
    write_instances(tmp_path / "instances.log", records, latency_unit="spm", spm_model=spm_model)
    ours = scores_from_log(tmp_path / "instances.log")
    theirs = simuleval_latency(tmp_path, monkeypatch)  # no --eval-latency-unit: word
    assert theirs["AL"] < ours["AL"] - 1 and theirs["AP"] > ours["AP"] + 1
    assert theirs["DAL"] == ours["DAL"]


def test_simuleval_command_line(tmp_path, spm_model):
    # the command results.json carries, run as it is (python -m simuleval.cli for simuleval)
    rng = random.Random(2)
    refs = [ja_sentence(rng, rng.randint(3, 9)) for _ in range(12)]
    hyps = [r[: max(1, len(r) - rng.randint(0, 3))] for r in refs]
    records = []
    for j, (hyp, ref) in enumerate(zip(hyps, refs)):
        n = rng.randint(3, 12)
        delays = sorted(rng.randint(1, n) for _ in range(rng.randint(2, 10)))
        records.append(InstanceRecord(index=j, prediction=hyp, delays=delays, source_length=n,
                                      reference=ref, elapsed=[300.0 * d + 7.0 * i for i, d in enumerate(delays)],
                                      source_duration_ms=300.0 * n))
    bleu = corpus_bleu(hyps, refs, "ja")
    out = tmp_path / "simul"
    write_instances(out / "instances.log", records, latency_unit="spm", spm_model=spm_model)
    ours = write_scores(out / "scores.json", records, bleu=bleu.score, latency_unit="spm", spm_model=spm_model)
    command = simuleval_command(out, latency_unit="spm", spm_model=spm_model, sacrebleu_tokenizer=bleu.tokenizer)
    argv = shlex.split(command)
    assert argv[:2] == ["simuleval", "--score-only"] and "--eval-latency-spm-model" in argv
    done = subprocess.run([sys.executable, "-m", "simuleval.cli", *argv[1:]], capture_output=True, text=True,
                          timeout=120, check=True)
    lines = done.stdout.strip().splitlines()
    header = lines[-2].split()
    values = [float(v) for v in lines[-1].split()[1:]]  # the first column is the DataFrame index
    assert header == ["BLEU", *METRICS]
    for name, value in zip(header, values):
        assert value == round(ours[name], 3), name
    # SimulEval rewrote config.yaml without the unit (and with target_type = source_type);
    # the unit given again reads the same scores
    assert "eval_latency_unit" not in read_config(out)
    again = scores_from_log(out / "instances.log", bleu.score, latency_unit="spm", spm_model=spm_model)
    assert again == ours
