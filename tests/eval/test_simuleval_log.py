"""instances.log / scores.json in SimulEval's format."""

import dataclasses
import json

import pytest

from leapformer.eval import (
    InstanceRecord,
    compute_scores,
    corpus_latency,
    read_config,
    read_instances,
    scores_from_log,
    write_config,
    write_instances,
    write_scores,
)
from leapformer.eval.simuleval_log import SIMULEVAL_KEYS


def records():
    return [
        # the basic instance: |X| = 4, d = [2, 3, 4, 4], |Y*| = 4 words
        # AL 2.0, LAAL 2.0, AP 13/16, DAL 2.0 (tests/eval/test_latency.py)
        InstanceRecord(
            index=0,
            prediction="the cat sat down",
            delays=[2, 3, 4, 4],
            elapsed=[210.0, 320.0, 430.0, 440.0],
            source_length=4,
            source_duration_ms=400,
            reference="the cat sat .",
            source="die Katze sass .",
        ),
        # |X| = 6, d = [3, 3, 6], |Y| = 3, a reference of 5 words (given explicitly)
        # AL: gamma = 5/6, 1/gamma = 1.2, tau = 3: ((3-0) + (3-1.2) + (6-2.4)) / 3 = 8.4/3 = 2.8
        InstanceRecord(
            index=1,
            prediction="neko ga suwa",
            delays=[3, 3, 6],
            elapsed=[320.0, 330.0, 640.0],
            source_length=6,
            source_duration_ms=600,
            reference="neko ga suwatta yo ne",
            reference_length=5,
            source="the cat sat down on it",
            extra={"metric": {"sentence_bleu": 12.5}},
        ),
        # no reference, no timing
        InstanceRecord(index=2, prediction="a b", delays=[1, 2], source_length=2),
    ]


def test_round_trip(tmp_path):
    path = write_instances(tmp_path / "out" / "instances.log", records())
    expected = records()
    expected[0].reference_length = 4  # filled in on reading: the reference counted in words
    assert read_instances(path) == expected


def test_lines_have_simulevals_keys_in_order(tmp_path):
    path = write_instances(tmp_path / "instances.log", records())
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert tuple(first) == SIMULEVAL_KEYS + ("source_duration_ms",)
    assert first["prediction_length"] == 4
    second = json.loads(lines[1])
    assert "reference_length" not in second  # a read-only property of SimulEval's LogInstance
    assert second["metric"] == {"sentence_bleu": 12.5}
    third = json.loads(lines[2])
    assert third["reference"] is None and third["elapsed"] == []
    assert tuple(third) == SIMULEVAL_KEYS
    # the config SimulEval's --score-only needs, with the latency unit
    assert read_config(tmp_path) == {"source_type": "text", "target_type": "text", "eval_latency_unit": "word"}


def test_japanese_in_characters(tmp_path):
    # the reference is counted in SimulEval's char unit: len("猫が座った") = 5, so these
    # scores equal those of the romanised instance 1 of records() with its 5 words
    ja = InstanceRecord(index=1, prediction="猫が座", delays=[3, 3, 6], source_length=6,
                        reference="猫が座った", source="the cat sat down on it")
    path = write_instances(tmp_path / "instances.log", [ja], latency_unit="char")
    assert "猫が座" in path.read_text(encoding="utf-8")  # UTF-8, not \\u escapes
    assert read_config(tmp_path)["eval_latency_unit"] == "char"
    (record,) = read_instances(path)
    assert record.reference_length == 5
    romanised = dataclasses.replace(records()[1], elapsed=[], source_duration_ms=None)
    assert scores_from_log(path) == compute_scores([romanised])
    assert scores_from_log(path)["AL"] == pytest.approx(2.8)
    # in words (SimulEval's default unit) the Japanese reference is a single word:
    # gamma = 1/6, 1/gamma = 6: ((3-0) + (3-6) + (6-12)) / 3 = -2.0
    assert scores_from_log(path, latency_unit="word")["AL"] == pytest.approx(-2.0)
    # an explicit reference length must be the count SimulEval will make
    with pytest.raises(ValueError, match=r"instances\[0\]: reference_length is 4 but SimulEval counts 5"):
        write_instances(tmp_path / "x" / "instances.log", [dataclasses.replace(ja, reference_length=4)],
                        latency_unit="char")
    assert not (tmp_path / "x").exists()


def test_scores_json_equals_recomputation_from_log(tmp_path):
    recs = records()
    log = write_instances(tmp_path / "instances.log", recs)
    written = write_scores(tmp_path / "scores.json", recs, bleu=23.4)
    on_disk = json.loads((tmp_path / "scores.json").read_text())
    assert on_disk == written == scores_from_log(log, bleu=23.4)
    assert list(on_disk) == ["BLEU", "AL", "LAAL", "AP", "DAL", "AL_CA", "LAAL_CA", "AP_CA", "DAL_CA"]
    # AL: instance 0 -> 2.0; instance 1 -> 2.8; instance 2 (|X| = 2, d = [1, 2], no reference,
    # gamma = 1, tau = 2): ((1-0) + (2-1)) / 2 = 1.0; mean (2.0 + 2.8 + 1.0) / 3 = 5.8/3
    assert on_disk["AL"] == pytest.approx(5.8 / 3)
    # AL_CA over the two instances with elapsed times:
    # instance 0: |X| = 400 ms, gamma = 4/400, 1/gamma = 100, tau = 3 (430 >= 400):
    #             ((210-0) + (320-100) + (430-200)) / 3 = 660/3 = 220
    # instance 1: |X| = 600 ms, gamma = 5/600, 1/gamma = 120, tau = 3 (640 >= 600):
    #             ((320-0) + (330-120) + (640-240)) / 3 = 930/3 = 310
    # mean (220 + 310) / 2 = 265
    assert on_disk["AL_CA"] == pytest.approx(265.0)
    assert on_disk["BLEU"] == 23.4
    assert "BLEU" not in scores_from_log(log)


def test_reads_a_simuleval_text_log(tmp_path):
    # what SimulEval 1.1 writes for text-to-text: elapsed all zeros, no reference_length;
    # the reference length is the reference split on single spaces (LogInstance, word unit)
    line = {
        "index": 0,
        "prediction": "a b c",
        "delays": [2, 3, 4],
        "elapsed": [0, 0, 0],
        "prediction_length": 3,
        "reference": "a b c d",
        "source": "w x y z",
        "source_length": 4,
    }
    path = tmp_path / "instances.log"
    path.write_text(json.dumps(line) + "\n\n")  # a trailing blank line is skipped
    (tmp_path / "config.yaml").write_text("source_type: text\ntarget_type: text\n")  # as SimulEval writes it
    (record,) = read_instances(path)
    assert record.reference_length == 4 and record.prediction_length == 3
    # |X| = 4, d = [2, 3, 4], |Y*| = 4: gamma = 1, tau = 3: ((2-0) + (3-1) + (4-2)) / 3 = 2.0
    scores = scores_from_log(path)
    assert scores["AL"] == 2.0
    assert "AL_CA" not in scores  # zeros carry no timing
    assert scores == corpus_latency([line])
    # in characters "a b c d".strip() has 7: gamma = 7/4, 1/gamma = 4/7
    # AL = ((2-0) + (3-4/7) + (4-8/7)) / 3 = (9 - 12/7) / 3 = 17/7
    assert scores_from_log(path, latency_unit="char")["AL"] == pytest.approx(17 / 7)


def test_legacy_reference_length_key_is_read(tmp_path):
    # logs written before the latency unit carried reference_length (SimulEval cannot read them)
    line = {"index": 0, "prediction": "猫", "delays": [1, 2], "source_length": 2,
            "reference": "猫が", "reference_length": 3}
    path = tmp_path / "instances.log"
    path.write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    (record,) = read_instances(path)
    assert record.reference_length == 3 and "reference_length" not in record.to_json()


@pytest.mark.parametrize(
    "bad_line, words",
    [
        ('{"index": 1, "prediction": "a", "delays": [1', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"index": 1, "prediction": "a", "delays": [1]}', "missing key(s) ['source_length']"),
        ('{"index": 1, "prediction": "a b", "delays": [2, 1], "source_length": 2}', "delays must be non-decreasing"),
        ('{"index": 1, "prediction": "a", "delays": [1], "source_length": 0}', "source_length must be"),
        ('{"index": -1, "prediction": "a", "delays": [1], "source_length": 2}', "index must be"),
        ('{"index": 1, "prediction": 5, "delays": [1], "source_length": 2}', "prediction must be a string"),
        (
            '{"index": 1, "prediction": "a", "delays": [1], "prediction_length": 2, "source_length": 2}',
            "prediction_length is 2 but delays has 1 values",
        ),
        (
            '{"index": 1, "prediction": "a", "delays": [1], "elapsed": [1, 2], "source_length": 2}',
            "elapsed has 2 values but delays has 1",
        ),
        ('{"index": 0, "prediction": "a", "delays": [1], "source_length": 2}', "index 0 repeats line 1"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad_line, words):
    good = json.dumps({"index": 0, "prediction": "a", "delays": [1], "source_length": 2})
    path = tmp_path / "instances.log"
    path.write_text(good + "\n\n" + bad_line + "\n")
    with pytest.raises(ValueError) as info:
        read_instances(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: "), message
    assert words in message


def test_write_validates_instances(tmp_path):
    ok = {"index": 0, "prediction": "a", "delays": [1], "source_length": 2}
    with pytest.raises(ValueError, match=r"instances\[1\]: index 0 repeats instances\[0\]"):
        write_instances(tmp_path / "instances.log", [ok, dict(ok)])
    with pytest.raises(ValueError, match=r"instances\[0\]: delays\[0\] must be non-negative"):
        write_instances(tmp_path / "instances.log", [dict(ok, delays=[-1])])
    with pytest.raises(TypeError, match=r"instances\[0\]: expected an InstanceRecord or a mapping"):
        write_instances(tmp_path / "instances.log", [42])
    assert not (tmp_path / "instances.log").exists()  # nothing written on error
    with pytest.raises(ValueError, match="bleu must be a finite number"):
        write_scores(tmp_path / "scores.json", [ok], bleu=float("nan"))


def test_append_and_mappings(tmp_path):
    path = tmp_path / "instances.log"
    write_instances(path, [{"index": 0, "prediction": "a", "delays": [1], "source_length": 2}])
    write_instances(path, [{"index": 1, "prediction": "b c", "delays": [1, 2], "source_length": 2}], append=True)
    assert [r.index for r in read_instances(path)] == [0, 1]


def test_latency_unit_errors(tmp_path):
    ok = {"index": 0, "prediction": "a", "delays": [1], "source_length": 2, "reference": "a b"}
    log = tmp_path / "instances.log"
    with pytest.raises(ValueError, match=r"latency_unit must be one of \('word', 'char', 'spm'\), got 'bpe'"):
        write_instances(log, [ok], latency_unit="bpe")
    with pytest.raises(ValueError, match="latency_unit='spm' needs spm_model"):
        write_instances(log, [ok], latency_unit="spm")
    with pytest.raises(FileNotFoundError, match="spm_model: no SentencePiece model at"):
        write_instances(log, [ok], latency_unit="spm", spm_model=tmp_path / "none.model")
    with pytest.raises(ValueError, match="spm_model is only used with latency_unit='spm'"):
        compute_scores([ok], spm_model=tmp_path / "none.model")
    with pytest.raises(ValueError, match=r"instances\[0\]: reference_length is 2 but reference is None"):
        write_instances(log, [dict(ok, reference=None, reference_length=2)])
    with pytest.raises(ValueError, match=r"instances\[0\]: reference ' ' has no unit in the latency unit"):
        compute_scores([dict(ok, reference=" ")], latency_unit="char")
    with pytest.raises(ValueError, match="source_type must be one of"):
        write_instances(log, [ok], source_type="audio")
    assert not log.exists() and not (tmp_path / "config.yaml").exists()


@pytest.mark.parametrize("spm_name", ["m.model", "a dir: 'q\"/ü m#.model"])
def test_config_yaml_is_yaml(tmp_path, spm_name):
    import yaml  # PyYAML, a dependency of simuleval (the [speech] extra)

    model = tmp_path / spm_name
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(b"x")  # only its existence is checked when writing
    write_config(tmp_path, source_type="speech", latency_unit="spm", spm_model=model)
    text = (tmp_path / "config.yaml").read_text(encoding="utf-8")
    expected = {"source_type": "speech", "target_type": "text", "eval_latency_unit": "spm",
                "eval_latency_spm_model": str(model.resolve())}
    assert yaml.safe_load(text) == read_config(tmp_path) == expected
    # what SimulEval writes (yaml.dump of a flat mapping) reads back the same
    for values in ({"source_type": "text", "target_type": "text"}, {"a": "it's: 1", "b": "#x", "c": "  y"}):
        (tmp_path / "config.yaml").write_text(yaml.dump(values, default_flow_style=False), encoding="utf-8")
        assert read_config(tmp_path) == values


def test_config_yaml_errors(tmp_path):
    assert read_config(tmp_path) == {}
    (tmp_path / "config.yaml").write_text('eval_latency_unit: "spm"\neval_latency_spm_model: "/no/such.model"\n')
    with pytest.raises(FileNotFoundError, match=r"config.yaml: spm_model: no SentencePiece model at /no/such.model"):
        read_instances(tmp_path / "instances.log")
    (tmp_path / "config.yaml").write_text("source_type: text\nnested:\n  a: 1\n")
    with pytest.raises(ValueError, match=r"config.yaml:3: expected a flat 'key: value' line"):
        read_config(tmp_path)
