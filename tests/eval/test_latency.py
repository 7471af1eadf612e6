"""Latency metrics on hand-worked instances (SimulEval semantics, docs/math.md §4.1).

Notation in the comments: |X| source length, d_i delays, |Y| hypothesis length,
|Y*| reference length, T the target length SimulEval uses (|Y*| when given,
else |Y|).
"""

import logging
import math

import numpy as np
import pytest
import torch

from leapformer.eval import computation_aware_scores, corpus_latency, latency_scores


def approx(d):
    return {k: pytest.approx(v, rel=1e-12, abs=1e-12) for k, v in d.items()}


def test_basic_instance():
    # |X| = 4, d = [2, 3, 4, 4], |Y| = |Y*| = 4.
    # AL: gamma = T/|X| = 4/4 = 1; tau = 3 (d_3 = 4 >= |X|);
    #     AL = ((2-0) + (3-1) + (4-2)) / 3 = 6/3 = 2.0
    # LAAL: gamma = max(|Y|, |Y*|)/|X| = 1 -> same as AL = 2.0
    # AP = (2+3+4+4) / (|X| T) = 13/16 = 0.8125
    # DAL: gamma = |Y|/|X| = 1; d' = [2, max(3, 2+1)=3, max(4, 3+1)=4, max(4, 4+1)=5]
    #      DAL = ((2-0) + (3-1) + (4-2) + (5-3)) / 4 = 8/4 = 2.0
    assert latency_scores([2, 3, 4, 4], 4, 4) == {"AL": 2.0, "LAAL": 2.0, "AP": 0.8125, "DAL": 2.0}


def test_dal_with_gamma_not_one():
    # |X| = 6, d = [3, 3, 6], no reference: T = |Y| = 3, gamma = 3/6 = 0.5, 1/gamma = 2.
    # AL: tau = 3 (d_3 = 6); AL = ((3-0) + (3-2) + (6-4)) / 3 = 6/3 = 2.0
    # LAAL = AL without a reference = 2.0
    # AP = (3+3+6) / (6*3) = 12/18 = 2/3
    # DAL: d'_1 = 3, d'_2 = max(3, 3+2) = 5, d'_3 = max(6, 5+2) = 7
    #      DAL = ((3-0) + (5-2) + (7-4)) / 3 = 9/3 = 3.0   (the max() raises it above AL)
    assert latency_scores([3, 3, 6], 6) == approx({"AL": 2.0, "LAAL": 2.0, "AP": 2 / 3, "DAL": 3.0})


def test_tau_never_reached_and_ap_uses_reference_length():
    # |X| = 6, d = [2, 3, 4] (the source is never read to the end), |Y*| = 6.
    # AL: gamma = 6/6 = 1; no d_i >= 6, so tau = |Y| = 3;
    #     AL = ((2-0) + (3-1) + (4-2)) / 3 = 2.0
    # LAAL: gamma = max(3, 6)/6 = 1 -> 2.0
    # AP = (2+3+4) / (|X| |Y*|) = 9/36 = 0.25   (SimulEval divides by the reference length)
    # DAL: gamma = |Y|/|X| = 0.5 (the reference is ignored), 1/gamma = 2;
    #      d' = [2, max(3, 4) = 4, max(4, 6) = 6]; DAL = ((2-0) + (4-2) + (6-4)) / 3 = 2.0
    assert latency_scores([2, 3, 4], 6, 6) == {"AL": 2.0, "LAAL": 2.0, "AP": 0.25, "DAL": 2.0}
    # without the reference AP divides by |Y| = 3: 9/18 = 0.5; gamma = 0.5 for AL:
    # AL = ((2-0) + (3-2) + (4-4)) / 3 = 1.0
    assert latency_scores([2, 3, 4], 6) == {"AL": 1.0, "LAAL": 1.0, "AP": 0.5, "DAL": 2.0}


def test_first_delay_beyond_source_is_returned_unclipped():
    # |X| = 3, d = [4, 4] (e.g. written after reading the source and an end-of-source
    # marker), |Y*| = 2. SimulEval: d_1 > |X| -> AL = LAAL = d_1 = 4 (no clipping).
    # AP = (4+4) / (3*2) = 8/6 = 4/3
    # DAL: gamma = 2/3, 1/gamma = 1.5; d' = [4, max(4, 4+1.5) = 5.5];
    #      DAL = ((4-0) + (5.5-1.5)) / 2 = 8/2 = 4.0
    assert latency_scores([4, 4], 3, 2) == approx({"AL": 4.0, "LAAL": 4.0, "AP": 4 / 3, "DAL": 4.0})
    # d_1 == |X| is not the shortcut: gamma = 2/3, tau = 1, AL = (3-0)/1 = 3.0
    assert latency_scores([3, 3], 3, 2)["AL"] == 3.0


def test_hypothesis_longer_than_reference():
    # |X| = 4, d = [1, 2, 3, 4, 4, 4] (|Y| = 6), |Y*| = 3: the system over-generates.
    # AL: gamma = |Y*|/|X| = 3/4, 1/gamma = 4/3; tau = 4 (d_4 = 4);
    #     AL = ((1-0) + (2-4/3) + (3-8/3) + (4-4)) / 4 = (1 + 2/3 + 1/3 + 0)/4 = 2/4 = 0.5
    # LAAL: gamma = max(6, 3)/4 = 3/2, 1/gamma = 2/3;
    #     LAAL = ((1-0) + (2-2/3) + (3-4/3) + (4-2)) / 4 = (1 + 4/3 + 5/3 + 2)/4 = 6/4 = 1.5
    # AP = (1+2+3+4+4+4) / (4*3) = 18/12 = 1.5
    # DAL: gamma = |Y|/|X| = 3/2, 1/gamma = 2/3;
    #      d' = [1, 2, 3, 4, max(4, 4+2/3) = 14/3, max(4, 14/3+2/3) = 16/3]
    #      minus (i-1)/gamma = [0, 2/3, 4/3, 2, 8/3, 10/3] -> [1, 4/3, 5/3, 2, 2, 2], sum 10
    #      DAL = 10/6 = 5/3
    scores = latency_scores([1, 2, 3, 4, 4, 4], 4, 3)
    assert scores == approx({"AL": 0.5, "LAAL": 1.5, "AP": 1.5, "DAL": 5 / 3})
    assert scores["LAAL"] > scores["AL"]  # AL rewards over-generation, LAAL does not


def test_no_reference_makes_laal_equal_al():
    for delays, src in [([1, 2, 3, 4, 4, 4], 4), ([1, 1, 5, 5], 5), ([0, 2], 7)]:
        s = latency_scores(delays, src)
        assert s["LAAL"] == s["AL"]


def test_float_delays_speech_in_ms():
    # |X| = 1000 ms, d = [400, 800, 1000] ms, |Y*| = 2.
    # AL: gamma = 2/1000, 1/gamma = 500; tau = 3; ((400-0) + (800-500) + (1000-1000))/3 = 700/3
    s = latency_scores([400.0, 800.0, 1000.0], 1000.0, 2)
    assert s["AL"] == pytest.approx(700 / 3)
    # AP = 2200 / (1000 * 2) = 1.1
    assert s["AP"] == pytest.approx(1.1)


def test_array_and_tensor_inputs():
    expected = latency_scores([2, 3, 4, 4], 4, 4)
    assert latency_scores(np.array([2, 3, 4, 4]), 4, 4) == expected
    assert latency_scores(torch.tensor([2, 3, 4, 4]), 4, 4) == expected
    assert latency_scores((2.0, 3.0, 4.0, 4.0), 4.0, 4) == expected
    assert all(isinstance(v, float) for v in expected.values())


def test_computation_aware_text_convention():
    # Text source with a rate of r = 100 ms per token: |X| = 3 tokens -> 300 ms.
    # d = [1, 2, 3] tokens; computing takes 10 ms per target token, so
    # elapsed = d*r + compute so far = [100+10, 200+20, 300+30] = [110, 220, 330].
    # No reference: gamma = 3/300, 1/gamma = 100; tau = 3 (330 >= 300);
    # AL_CA = ((110-0) + (220-100) + (330-200)) / 3 = 360/3 = 120 ms
    #       = AL on delays (1 token = 100 ms) + the mean computation time (20 ms).
    # AP_CA = 660 / (300*3) = 0.7333...; DAL_CA: d' = [110, max(220, 210), max(330, 320)]
    #       -> same as AL_CA = 120.
    ca = computation_aware_scores([110, 220, 330], 300)
    assert ca == approx({"AL_CA": 120.0, "LAAL_CA": 120.0, "AP_CA": 660 / 900, "DAL_CA": 120.0})
    # AL on the delays: gamma = 1, tau = 3: ((1-0) + (2-1) + (3-2)) / 3 = 1 token (= 100 ms)
    assert latency_scores([1, 2, 3], 3)["AL"] == 1.0


def test_computation_aware_speech_with_reference():
    # |X| = 1000 ms, elapsed = [400, 800, 1200], |Y*| = 2.
    # AL_CA: gamma = 2/1000, 1/gamma = 500; tau = 3 (1200 >= 1000);
    #        ((400-0) + (800-500) + (1200-1000)) / 3 = 900/3 = 300
    # LAAL_CA: gamma = max(3, 2)/1000, 1/gamma = 1000/3; tau = 3;
    #        ((400-0) + (800-1000/3) + (1200-2000/3)) / 3 = (400 + 1400/3 + 1600/3) / 3 = 1400/3
    # AP_CA = 2400 / (1000*2) = 1.2
    # DAL_CA: gamma = |Y|/|X| = 3/1000, 1/gamma = 1000/3;
    #        d' = [400, max(800, 400+333.3) = 800, max(1200, 800+333.3) = 1200]
    #        -> the same three terms as LAAL_CA, over |Y| = 3: 1400/3
    ca = computation_aware_scores([400, 800, 1200], 1000, 2)
    assert ca == approx({"AL_CA": 300.0, "LAAL_CA": 1400 / 3, "AP_CA": 1.2, "DAL_CA": 1400 / 3})


def test_computation_aware_first_elapsed_beyond_source():
    # computation alone can push the first token past the end of the source:
    # |X| = 300 ms, elapsed = [450, 460] -> AL_CA = LAAL_CA = 450 (SimulEval's d_1 > |X| rule)
    ca = computation_aware_scores([450, 460], 300)
    assert ca["AL_CA"] == 450.0 and ca["LAAL_CA"] == 450.0


@pytest.mark.parametrize(
    "args, error, words",
    [
        (([], 4), ValueError, "delays is empty"),
        (([1, -2], 4), ValueError, "delays[1] must be non-negative"),
        (([3, 2], 4), ValueError, "delays must be non-decreasing"),
        (([1, float("nan")], 4), ValueError, "delays[1] must be finite"),
        (([1, float("inf")], 4), ValueError, "delays[1] must be finite"),
        (([1, "2"], 4), TypeError, "delays[1] must be a real number"),
        (([True], 4), TypeError, "delays[0] must be a real number"),
        (("12", 4), TypeError, "delays must be a sequence"),
        ((5, 4), TypeError, "delays must be a sequence"),
        (([1], 0), ValueError, "source_length must be a finite number >= 1"),
        (([1], 0.5), ValueError, "source_length must be a finite number >= 1"),
        (([1], -3), ValueError, "source_length"),
        (([1], float("nan")), ValueError, "source_length"),
        (([1], None), TypeError, "source_length must be a real number"),
        (([1], True), TypeError, "source_length must be a real number"),
        (([1], 4, 0), ValueError, "reference_length must be a positive integer"),
        (([1], 4, 2.5), TypeError, "reference_length must be a positive integer"),
    ],
)
def test_validation(args, error, words):
    with pytest.raises(error) as info:
        latency_scores(*args)
    assert words in str(info.value)


def test_computation_aware_validation_names_elapsed():
    with pytest.raises(ValueError, match=r"elapsed must be non-decreasing"):
        computation_aware_scores([10, 5], 100)
    with pytest.raises(ValueError, match="elapsed is empty"):
        computation_aware_scores([], 100)


def test_corpus_is_mean_of_instances_and_skips_empty(caplog):
    # instance 0: the basic instance, AL 2.0, LAAL 2.0, AP 0.8125, DAL 2.0
    # instance 1: |X| = 6, d = [3, 3, 6], reference "a b c" (3 words, split on " "):
    #             AL 2.0, LAAL 2.0, AP 2/3, DAL 3.0 (test_dal_with_gamma_not_one)
    # instance 2: no delays -> skipped with a warning (SimulEval skips it too)
    # means: AL 2.0, LAAL 2.0, AP (0.8125 + 2/3)/2, DAL 2.5
    instances = [
        {"index": 0, "delays": [2, 3, 4, 4], "source_length": 4, "reference_length": 4},
        {"index": 1, "delays": [3, 3, 6], "source_length": 6, "reference": "a b c"},
        {"index": 2, "delays": [], "source_length": 5, "reference": "x"},
    ]
    with caplog.at_level(logging.WARNING, logger="leapformer.eval.latency"):
        scores = corpus_latency(instances)
    assert scores == approx({"AL": 2.0, "LAAL": 2.0, "AP": (0.8125 + 2 / 3) / 2, "DAL": 2.5})
    assert "instance 2 has no delays" in caplog.text
    assert not any(k.endswith("_CA") for k in scores)  # no elapsed times, no CA scores


def test_corpus_reference_words_and_no_use_ref_len():
    # reference "a b" is 2 words: |X| = 4, d = [1, 2, 3, 4, 4, 4], |Y*| = 2
    # AL: gamma = 2/4, 1/gamma = 2; tau = 4: ((1-0) + (2-2) + (3-4) + (4-6)) / 4 = -2/4 = -0.5
    ins = {"delays": [1, 2, 3, 4, 4, 4], "source_length": 4, "reference": "a b"}
    assert corpus_latency([ins])["AL"] == -0.5
    # use_ref_len=False scores against |Y| = 6, like latency_scores without a reference
    assert corpus_latency([ins], use_ref_len=False) == latency_scores([1, 2, 3, 4, 4, 4], 4)


def test_corpus_computation_aware():
    # instance 0: elapsed [110, 220, 330] over a 300 ms source (source_duration_ms): AL_CA 120
    # instance 1: speech, source_length 1000 ms used for elapsed too, elapsed [400, 800, 1200],
    #             |Y*| = 2: AL_CA 300 (test_computation_aware_speech_with_reference)
    # instance 2: elapsed all zeros (what SimulEval logs for text): no timing, left out
    # AL_CA = (120 + 300) / 2 = 210
    instances = [
        {"delays": [1, 2, 3], "elapsed": [110, 220, 330], "source_length": 3, "source_duration_ms": 300},
        {"delays": [400, 800, 1000], "elapsed": [400, 800, 1200], "source_length": 1000, "reference_length": 2},
        {"delays": [1, 2], "elapsed": [0, 0], "source_length": 2},
    ]
    scores = corpus_latency(instances)
    assert scores["AL_CA"] == pytest.approx(210.0)
    assert scores["AP_CA"] == pytest.approx((660 / 900 + 1.2) / 2)
    assert math.isclose(scores["AL"], (1.0 + 700 / 3 + latency_scores([1, 2], 2)["AL"]) / 3)


def test_corpus_errors_name_the_instance():
    with pytest.raises(ValueError, match="no instance with delays among 1"):
        corpus_latency([{"delays": [], "source_length": 3}])
    with pytest.raises(ValueError, match=r"instance 7: delays must be non-decreasing"):
        corpus_latency([{"index": 7, "delays": [3, 1], "source_length": 3}])
    with pytest.raises(ValueError, match=r"instance 1: elapsed has 1 values but delays has 2"):
        corpus_latency([{"index": 1, "delays": [1, 2], "elapsed": [5], "source_length": 3}])
