"""Word error rate of ``st eval``: jiwer's corpus WER, per-utterance counts, interval."""

import jiwer
import pytest

from leapformer.tasks.st import word_error_rate


def test_wer_by_hand_with_counts_and_interval():
    refs = ["The cat sat down.", "a dog", "hello world"]
    hyps = ["the cat sat", "A dog!", "hello there world"]
    r = word_error_rate(hyps, refs)
    # normalised: 1 deletion of 4 words, 0 of 2, 1 insertion over 2: 2 / 8 words
    assert r["word_errors_per_utterance"] == [1, 0, 1]
    assert r["ref_words_per_utterance"] == [4, 2, 2]
    assert r["WER_normalised"] == pytest.approx(25.0)
    assert r["WER"] == pytest.approx(100 * jiwer.wer(refs, hyps))  # as written: case counts
    low, high = r["WER_normalised_interval"]
    assert 0.0 <= low <= 25.0 <= high <= 100.0
    empty = word_error_rate(["", "x"], ["a b", "x"])  # an empty hypothesis: 2 deletions
    assert empty["word_errors_per_utterance"] == [2, 0]
    with pytest.raises(ValueError, match="as many hypotheses"):
        word_error_rate(["a"], ["a", "b"])
