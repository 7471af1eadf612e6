"""instances.log / scores.json in SimulEval's format."""

import json

import pytest

from leapformer.eval import (
    InstanceRecord,
    corpus_latency,
    read_instances,
    scores_from_log,
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
        # a Japanese target counted in characters: the reference length is given
        # explicitly (5 characters), |X| = 6, d = [3, 3, 6], |Y| = 3
        # AL: gamma = 5/6, 1/gamma = 1.2, tau = 3: ((3-0) + (3-1.2) + (6-2.4)) / 3 = 8.4/3 = 2.8
        InstanceRecord(
            index=1,
            prediction="猫が座",
            delays=[3, 3, 6],
            elapsed=[320.0, 330.0, 640.0],
            source_length=6,
            source_duration_ms=600,
            reference="猫が座った",
            reference_length=5,
            source="the cat sat down on it",
            extra={"metric": {"sentence_bleu": 12.5}},
        ),
        # no reference, no timing
        InstanceRecord(index=2, prediction="a b", delays=[1, 2], source_length=2),
    ]


def test_round_trip(tmp_path):
    path = write_instances(tmp_path / "out" / "instances.log", records())
    assert read_instances(path) == records()


def test_lines_have_simulevals_keys_in_order(tmp_path):
    path = write_instances(tmp_path / "instances.log", records())
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert tuple(first)[: len(SIMULEVAL_KEYS)] == SIMULEVAL_KEYS
    assert first["prediction_length"] == 4
    assert "reference_length" not in first  # only written when set
    second = json.loads(lines[1])
    assert second["reference_length"] == 5 and second["metric"] == {"sentence_bleu": 12.5}
    assert "猫が座" in lines[1]  # UTF-8, not \\u escapes
    third = json.loads(lines[2])
    assert third["reference"] is None and third["elapsed"] == []


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
    # the reference length is the reference split on single spaces (LogInstance)
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
    (record,) = read_instances(path)
    assert record.reference_length is None and record.prediction_length == 3
    # |X| = 4, d = [2, 3, 4], |Y*| = 4: gamma = 1, tau = 3: ((2-0) + (3-1) + (4-2)) / 3 = 2.0
    scores = scores_from_log(path)
    assert scores["AL"] == 2.0
    assert "AL_CA" not in scores  # zeros carry no timing
    assert scores == corpus_latency([line])


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
