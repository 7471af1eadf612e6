"""espeak-ng synthesis and the spoken-Bible build: wav format, plausible durations,
manifests, selection by book, resuming, settings checks, the CLI command."""

import json

import numpy as np
import pytest
import soundfile as sf

from leapformer.cli import main
from leapformer.data.bible import parse_vid
from leapformer.data.parallel import BIBLE_TEST_BOOKS, DEV_BOOKS
from leapformer.data.speech.espeak import phonemize, synthesize
from leapformer.data.speech.manifest import load_audio, read_manifest
from leapformer.data.speech.spoken_bible import (
    build_spoken_bible,
    select_verses,
    synthesize_verse,
)

SPLITS = ("train", "dev", "test")


def _seconds_range(text: str, wpm: int) -> tuple[float, float]:
    """Duration a reading of ``text`` at ``wpm`` words per minute plausibly has."""
    words = len(text.split())
    return 0.4 * words * 60 / wpm, 2.5 * words * 60 / wpm + 1.0


def test_synthesize_speaks_at_the_given_rate():
    text = "In the beginning, God created the heavens and the earth."
    x, sr = synthesize(text)
    assert sr == 22050 and x.dtype == np.int16 and x.ndim == 1
    lo, hi = _seconds_range(text, 175)
    assert lo < x.size / sr < hi
    assert np.abs(x.astype(np.int32)).max() > 3000  # audible, not silence
    fast, _ = synthesize(text, rate=350)
    slow, _ = synthesize(text, rate=120)
    assert fast.size < x.size < slow.size
    again, _ = synthesize(text)  # espeak-ng keeps some state between utterances:
    assert abs(again.size - x.size) < 0.01 * x.size  # the same length within 1%
    assert "ɡˈɑːd" in phonemize("God")
    with pytest.raises(ValueError, match="voice"):
        synthesize(text, voice="xx-nonexistent")
    with pytest.raises(ValueError, match="rate must be an int in"):
        synthesize(text, rate=10)
    with pytest.raises(ValueError, match="text must be a non-empty"):
        synthesize("  ")


def test_selection_is_split_by_book_and_extends():
    small, large = select_verses(10, seed=3), select_verses(60, seed=3)
    assert {s: len(v) for s, v in small.items()} == {"train": 8, "dev": 1, "test": 1}
    assert sum(len(v) for v in large.values()) == 60
    for split in SPLITS:
        assert {v for v, _, _ in small[split]} <= {v for v, _, _ in large[split]}
        vids = [v for v, _, _ in large[split]]
        assert vids == sorted(vids)
    books = {s: {parse_vid(v)[0] for v, _, _ in large[s]} for s in SPLITS}
    assert books["dev"] <= set(DEV_BOOKS) and books["test"] <= set(BIBLE_TEST_BOOKS)
    assert not books["train"] & (set(DEV_BOOKS) | set(BIBLE_TEST_BOOKS))
    assert select_verses(10, seed=4) != small
    with pytest.raises(ValueError, match="at least 3"):
        select_verses(2)


def test_jitter_depends_on_the_verse_only():
    settings = {"voice": "en-us", "rate": 175, "pitch": 50, "rate_jitter": 60,
                "pitch_jitter": 20, "sample_rate": 16000, "seed": 0}
    text = "Jesus wept."
    a = synthesize_verse(text, "43011035", settings).size
    b = synthesize_verse(text, "43011035", settings).size
    assert abs(a - b) < 0.01 * a  # the same rate (espeak-ng itself varies by a few samples)
    others = [synthesize_verse(text, f"430110{i:02d}", settings).size for i in range(30, 38)]
    assert max(others) > 1.1 * min(others)  # the rate varies from verse to verse


def test_build_three_verses_then_resume(tmp_path):
    out = tmp_path / "sb"
    calls = []
    info = build_spoken_bible(out, max_verses=3, progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, 3) and calls[-1] == (3, 3)
    assert info["complete"] and info["synthesised"] == 3 and info["verses"] == \
        {"train": 1, "dev": 1, "test": 1}
    chosen = select_verses(3)
    for split in SPLITS:
        st, asr = read_manifest(out / f"{split}_st.tsv"), read_manifest(out / f"{split}_asr.tsv")
        (vid, en, ja), = chosen[split]
        assert [(i.id, i.src_text, i.tgt_text) for i in st] == [(vid, en, ja)]
        assert [(i.id, i.src_text, i.tgt_text) for i in asr] == [(vid, en, en)]
        info_wav = sf.info(str(st[0].audio))
        assert (info_wav.samplerate, info_wav.channels, info_wav.subtype) == (16000, 1, "PCM_16")
        assert st[0].offset == 0 and st[0].n_frames == info_wav.frames
        lo, hi = _seconds_range(en, 175)
        assert lo < info_wav.frames / 16000 < hi
        x, _ = load_audio(st[0], sample_rate=16000)
        assert np.abs(x).max() > 0.05
    assert json.loads((out / "spoken_bible.json").read_text())["complete"] is True

    wavs = sorted((out / "wav").iterdir())
    stamps = {p: p.stat().st_mtime_ns for p in wavs}
    (out / "wav" / ".junk.wav.123.tmp").write_bytes(b"half")  # an interrupted write
    wavs[0].write_bytes(wavs[0].read_bytes()[:30])  # a truncated file is redone
    again = build_spoken_bible(out, max_verses=3)
    assert (again["synthesised"], again["reused"]) == (1, 2)
    assert sf.info(str(wavs[0])).frames > 0
    assert all(p.stat().st_mtime_ns == stamps[p] for p in wavs[1:])
    third = build_spoken_bible(out, max_verses=3)
    assert (third["synthesised"], third["reused"]) == (0, 3)
    with pytest.raises(ValueError, match=r"other settings \(rate 175 -> 200\)"):
        build_spoken_bible(out, max_verses=3, rate=200)
    with pytest.raises(ValueError, match=r"other settings \(max_chars None -> 80\)"):
        build_spoken_bible(out, max_verses=3, max_chars=80)  # other verses: other splits


def test_cli_spoken_bible(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["data", "spoken-bible", "--out", str(out), "--max-verses", "3",
                 "--no-progress"]) == 0
    assert "train 1 dev 1 test 1 verses" in capsys.readouterr().out
    assert len(list((out / "wav").glob("*.wav"))) == 3
    assert main(["data", "spoken-bible", "--out", str(out), "--max-verses", "3",
                 "--no-progress", "--voice", "en-gb"]) == 2
    assert "other settings (voice 'en-us' -> 'en-gb')" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "spoken-bible", "--out", str(out), "--pitch", "101"])
