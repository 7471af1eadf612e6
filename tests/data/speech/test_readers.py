"""The generic TSV manifest, MuST-C and LJ Speech readers, on small fixtures written
here (wav files + yaml/txt/csv), with every error naming its file and line; global
CMVN over a manifest."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from leapformer.data.speech.cmvn import manifest_cmvn
from leapformer.data.speech.features import kaldi_fbank
from leapformer.data.speech.ljspeech import read_ljspeech
from leapformer.data.speech.manifest import (
    MANIFEST_COLUMNS,
    SpeechItem,
    load_audio,
    read_manifest,
    write_manifest,
)
from leapformer.data.speech.mustc import _one_line_entries, _yaml_pairs, read_mustc

SR = 16000
HEADER = "\t".join(MANIFEST_COLUMNS) + "\n"


def _wav(path, n, seed=0, rate=SR):
    """A wav whose sample i is a known value (a ramp plus a seed-dependent offset)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = ((np.arange(n) * 7 + seed * 1000) % 20000 - 10000).astype(np.int16)
    sf.write(path, x, rate, subtype="PCM_16")
    return x


# --------------------------------------------------------------------------- manifest


def test_manifest_round_trip_and_audio(tmp_path):
    a = _wav(tmp_path / "wav" / "a.wav", 8000, seed=1)
    b = _wav(tmp_path / "elsewhere" / "b.wav", 3000, seed=2)
    items = [SpeechItem("u1", tmp_path / "wav" / "a.wav", 100, 500, "hello there", "こんにちは"),
             SpeechItem("u2", (tmp_path / "elsewhere" / "b.wav").resolve(), 0, 3000, "x", "y")]
    path = write_manifest(items, tmp_path / "m.tsv")
    text = path.read_text(encoding="utf-8")
    assert text.startswith(HEADER) and "\twav/a.wav\t100\t500\t" in text
    back = read_manifest(path)
    assert [(i.id, i.offset, i.n_frames, i.src_text, i.tgt_text) for i in back] == \
        [(i.id, i.offset, i.n_frames, i.src_text, i.tgt_text) for i in items]
    assert back[0].audio.resolve() == (tmp_path / "wav" / "a.wav").resolve()
    x, rate = load_audio(back[0], sample_rate=SR)
    assert rate == SR and x.dtype == np.float32
    np.testing.assert_array_equal(np.round(x * 32768).astype(np.int16), a[100:600])
    y, _ = load_audio(back[1])
    np.testing.assert_array_equal(np.round(y * 32768).astype(np.int16), b)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("body, line, message", [
    ("", 1, "empty file"),
    ("id\taudio\tn_frames\tsrc_text\ttgt_text\n", 1, "header must be"),
    (HEADER, 2, "no utterances"),
    (HEADER + "u1\ta.wav\t0\t10\thi\n", 2, "expected 6 tab-separated columns, got 5"),
    (HEADER + "u1\ta.wav\t0\t10\thi\tho\nu2\ta.wav\t-1\t10\thi\tho\n", 3, "offset must be"),
    (HEADER + "u1\ta.wav\t0\t0\thi\tho\n", 2, "n_frames must be an integer >= 1"),
    (HEADER + "u1\ta.wav\t0\t5\thi\tho\nu1\ta.wav\t0\t5\thi\tho\n", 3,
     "id 'u1' already on line 2"),
    (HEADER + "u1\ta.wav\t0\t5\t \tho\n", 2, "empty src_text"),
    (HEADER + "u1\ta.wav\t0\t5\thi\tho\n\n", 3, "empty line"),
])
def test_manifest_errors_name_file_and_line(tmp_path, body, line, message):
    path = tmp_path / "bad.tsv"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"bad\.tsv:{line}: .*{message}"):
        read_manifest(path)


def test_manifest_missing_files_and_bad_writes(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        read_manifest(tmp_path / "nope.tsv")
    _wav(tmp_path / "a.wav", 100)
    item = SpeechItem("u", tmp_path / "a.wav", 50, 51, "a", "b")
    with pytest.raises(ValueError, match="needs samples 50..100 but the file has 100"):
        load_audio(item)
    with pytest.raises(ValueError, match="sample rate 16000 Hz, expected 22050"):
        load_audio(SpeechItem("u", tmp_path / "a.wav", 0, 10, "a", "b"), sample_rate=22050)
    with pytest.raises(FileNotFoundError, match="gone.wav"):
        load_audio(SpeechItem("u", tmp_path / "gone.wav", 0, 10, "a", "b"))
    with pytest.raises(ValueError, match="tab or line break"):
        write_manifest([SpeechItem("u", tmp_path / "a.wav", 0, 1, "a\tb", "c")], tmp_path / "m")
    with pytest.raises(ValueError, match="appears twice"):
        write_manifest([item, item], tmp_path / "m.tsv")
    with pytest.raises(ValueError, match="empty"):
        write_manifest([], tmp_path / "m.tsv")
    assert not (tmp_path / "m.tsv").exists()


# --------------------------------------------------------------------------- MuST-C

YAML = """\
- {duration: 0.5, offset: 0.25, rW: 3, uW: 0, speaker_id: spk.1, wav: ted_1.wav}
- {duration: 0.75, offset: 1.0, rW: 4, uW: 0, speaker_id: spk.1, wav: ted_1.wav}
- {duration: 0.3, offset: 0.1, rW: 2, uW: 0, speaker_id: spk.2, wav: ted_2.wav}
"""
EN = "Hello world .\nThis is a talk .\nSecond talk .\n"
DE = "Hallo Welt .\nDas ist ein Vortrag .\nZweiter Vortrag .\n"


def _mustc(root, split="dev", yaml=YAML, en=EN, de=DE, wavs=(("ted_1", 2.0), ("ted_2", 1.0))):
    base = root / "en-de" / "data" / split
    txt = base / "txt"
    txt.mkdir(parents=True, exist_ok=True)
    for name, body in ((f"{split}.yaml", yaml), (f"{split}.en", en), (f"{split}.de", de)):
        if body is not None:
            (txt / name).write_text(body, encoding="utf-8")
    data = {}
    for i, (talk, seconds) in enumerate(wavs):
        data[talk] = _wav(base / "wav" / f"{talk}.wav", int(seconds * SR), seed=i)
    return root / "en-de", data


def test_mustc_segments_talks_by_offset_and_duration(tmp_path):
    pair, data = _mustc(tmp_path)
    items = read_mustc(pair, "dev")
    assert [(i.id, i.offset, i.n_frames) for i in items] == [
        ("ted_1_0", 4000, 8000), ("ted_1_1", 16000, 12000), ("ted_2_0", 1600, 4800)]
    assert [i.src_text for i in items] == EN.splitlines()
    assert [i.tgt_text for i in items] == DE.splitlines()
    x, rate = load_audio(items[1])
    assert rate == SR
    np.testing.assert_array_equal(np.round(x * 32768).astype(np.int16),
                                  data["ted_1"][16000:28000])
    assert [i.id for i in read_mustc(tmp_path, "dev", tgt_lang="de")] == [i.id for i in items]
    # the readers compose: a MuST-C split written as a generic manifest reads back equal
    back = read_manifest(write_manifest(items, tmp_path / "dev_st.tsv"))
    assert [(i.id, i.audio.resolve(), i.offset, i.n_frames) for i in back] == \
        [(i.id, i.audio.resolve(), i.offset, i.n_frames) for i in items]


def test_mustc_overrun_is_clipped_within_tolerance(tmp_path):
    yaml = "- {duration: 1.5, offset: 1.0, rW: 1, uW: 0, speaker_id: a, wav: ted_1.wav}\n"
    pair, _ = _mustc(tmp_path, yaml=yaml, en="a\n", de="b\n", wavs=(("ted_1", 2.0),))
    (item,) = read_mustc(pair, "dev")
    assert (item.offset, item.n_frames) == (16000, 16000)


def _error(tmp_path, **kw):
    pair, _ = _mustc(tmp_path, **kw)
    return pair


@pytest.mark.parametrize("kw, exc, pattern", [
    ({"de": "Hallo Welt .\nDas ist ein Vortrag .\n"}, ValueError,
     r"dev\.de:3: dev\.de has 2 lines but dev\.yaml has 3 segments \(its last on line 3\)"),
    ({"en": EN + "extra\n"}, ValueError, r"dev\.en:4: dev\.en has 4 lines but dev\.yaml"),
    ({"yaml": YAML.replace("wav: ted_2.wav", "wav: ted_9.wav")}, FileNotFoundError,
     r"dev\.yaml:3: wav file .*ted_9\.wav not found"),
    ({"yaml": YAML.replace("duration: 0.75, ", "")}, ValueError,
     r"dev\.yaml:2: segment has no 'duration'"),
    ({"yaml": YAML.replace("offset: 0.1,", "offset: soon,")}, ValueError,
     r"dev\.yaml:3: offset must be a number >= 0, got 'soon'"),
    ({"yaml": YAML.replace("duration: 0.5,", "duration: 0,")}, ValueError,
     r"dev\.yaml:1: duration must be a number > 0"),
    ({"yaml": YAML.replace("offset: 1.0,", "offset: 5.0,")}, ValueError,
     r"dev\.yaml:2: segment 5\.0\+0\.75 s runs past the end of ted_1\.wav \(2\.000 s\)"),
    ({"yaml": YAML + "- {duration: 1, offset: [2\n"}, ValueError,
     r"dev\.yaml:\d+: not valid YAML"),
    ({"yaml": "duration: 1\n"}, ValueError, r"dev\.yaml:1: expected a list of segments"),
    ({"yaml": None}, FileNotFoundError, r"MuST-C file .*dev\.yaml not found"),
    ({"de": None}, FileNotFoundError, r"MuST-C file .*dev\.de not found"),
])
def test_mustc_errors_name_file_and_line(tmp_path, kw, exc, pattern):
    pair = _error(tmp_path, **kw)
    with pytest.raises(exc, match=pattern):
        read_mustc(pair, "dev")


def test_mustc_folder_errors(tmp_path):
    pair, _ = _mustc(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"split folder .*tst-COMMON not found "
                       r"\(present: dev\)"):
        read_mustc(pair, "tst-COMMON")
    with pytest.raises(ValueError, match=r"not an en-XX folder: give tgt_lang \(found en-de\)"):
        read_mustc(tmp_path, "dev")
    with pytest.raises(FileNotFoundError, match="en-fr does not exist"):
        read_mustc(tmp_path, "dev", tgt_lang="fr")
    with pytest.raises(ValueError, match="tgt_lang='ja' but .* is the en-de release"):
        read_mustc(pair, "dev", tgt_lang="ja")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_mustc(tmp_path / "nope", "dev")


def test_mustc_empty_text_lines_are_skipped_or_kept(tmp_path):
    pair, _ = _mustc(tmp_path, de="Hallo Welt .\n\nZweiter Vortrag .\n")
    assert [i.id for i in read_mustc(pair, "dev")] == ["ted_1_0", "ted_2_0"]
    kept = read_mustc(pair, "dev", skip_empty=False)
    assert [i.id for i in kept] == ["ted_1_0", "ted_1_1", "ted_2_0"] and kept[1].tgt_text == ""


# --------------------------------------------------------------------------- LJ Speech


def _ljspeech(root, rows, wavs=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "metadata.csv").write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    for uid, n in (wavs or {}).items():
        _wav(root / "wavs" / f"{uid}.wav", n, rate=22050)
    return root


LJ_ROWS = ['LJ001-0001|Printing, in the only sense "with which" we are at present '
           'concerned,|Printing, in the only sense "with which" we are at present concerned,',
           "LJ001-0002|in 1473 by Caxton|in fourteen seventy-three by Caxton"]


def test_ljspeech_reads_metadata_and_wavs(tmp_path):
    root = _ljspeech(tmp_path / "LJSpeech-1.1", LJ_ROWS,
                     {"LJ001-0001": 3000, "LJ001-0002": 500})
    items = read_ljspeech(root)
    assert [(i.id, i.offset, i.n_frames) for i in items] == [("LJ001-0001", 0, 3000),
                                                             ("LJ001-0002", 0, 500)]
    assert items[0].src_text.endswith('sense "with which" we are at present concerned,')
    assert items[1].src_text == items[1].tgt_text == "in fourteen seventy-three by Caxton"
    assert read_ljspeech(root, text="original")[1].src_text == "in 1473 by Caxton"
    assert len(read_ljspeech(root, max_items=1)) == 1
    x, rate = load_audio(items[1], sample_rate=22050)
    assert x.shape == (500,) and rate == 22050


@pytest.mark.parametrize("rows, wavs, exc, pattern", [
    (["LJ1|a"], {"LJ1": 10}, ValueError, r"metadata\.csv:1: expected 3 '\|'-separated fields"),
    (LJ_ROWS[:1] + ["LJ001-0001|b|b"], {"LJ001-0001": 10}, ValueError,
     r"metadata\.csv:2: id 'LJ001-0001' already on line 1"),
    (LJ_ROWS, {"LJ001-0001": 10}, FileNotFoundError,
     r"metadata\.csv:2: wav file .*LJ001-0002\.wav not found"),
    (["LJ1|a|"], {"LJ1": 10}, ValueError, r"metadata\.csv:1: empty normalized text"),
])
def test_ljspeech_errors_name_file_and_line(tmp_path, rows, wavs, exc, pattern):
    root = _ljspeech(tmp_path / "lj", rows, wavs)
    with pytest.raises(exc, match=pattern):
        read_ljspeech(root)


def test_manifest_cmvn_equals_stacked_fbank(tmp_path):
    rng = np.random.default_rng(0)
    items = []
    for k, n in enumerate((400, 1600, 5000)):
        path = tmp_path / f"{k}.wav"
        sf.write(path, (rng.standard_normal(n) * 3000).astype(np.int16), SR, subtype="PCM_16")
        items.append(SpeechItem(f"u{k}", path, 0, n, "a", "b"))
    stats = manifest_cmvn(items)
    frames = np.concatenate([kaldi_fbank(load_audio(it)[0]).numpy() for it in items])
    assert stats.count == frames.shape[0] == 1 + 8 + 29
    np.testing.assert_allclose(stats.mean, frames.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.std, frames.std(0), rtol=1e-4)
    assert manifest_cmvn(items, max_items=1).count in (1, 8, 29)


BLOCK_YAML = """\
# the same three segments in block style (read by PyYAML, not the one-line fast path)
- duration: 0.5
  offset: 0.25
  wav: ted_1.wav
- {duration: 0.75, offset: 1.0,
   wav: ted_1.wav}
- offset: 0.1
  duration: 0.3
  wav: ted_2.wav
"""


def test_mustc_block_style_yaml_reads_the_same(tmp_path):
    one, _ = _mustc(tmp_path / "a")
    block, _ = _mustc(tmp_path / "b", yaml=BLOCK_YAML)
    key = lambda items: [(i.id, i.offset, i.n_frames, i.src_text) for i in items]  # noqa: E731
    assert key(read_mustc(block, "dev")) == key(read_mustc(one, "dev"))
    bad, _ = _mustc(tmp_path / "c", yaml=BLOCK_YAML.replace("  duration: 0.3\n", ""))
    with pytest.raises(ValueError, match=r"dev\.yaml:7: segment has no 'duration'"):
        read_mustc(bad, "dev")


@pytest.mark.parametrize("entry", [
    "{duration: 3.5, offset: 16.09, rW: 7, uW: 0, speaker_id: spk.1, wav: ted_1.wav}",
    "{duration: 1.5e+3, offset: -0.5, wav: a}", "{duration: 3, offset: 0, wav: a:b}",
    "{duration: 3., offset: +2, wav: x y}", "{duration: 007, offset: 1.0, wav: a.wav}",
    "{duration: 1e5, offset: 0, wav: a}", "{duration: yes, offset: 0, wav: a}",
    "{duration: .5, offset: 0, wav: a}", "{duration: 1:30, offset: 0, wav: a}",
    "{duration: ~, offset: 0, wav: a}", "{duration: 0x1A, offset: 0, wav: 'q'}",
])
def test_mustc_one_line_fast_path_agrees_with_pyyaml(tmp_path, entry):
    """The fast reader of the official one-line layout gives PyYAML's values, or
    declines (``None``) and leaves the file to PyYAML."""
    text = f"- {entry}\n- {entry}\n"
    fast = _one_line_entries(text)
    slow = _yaml_pairs(tmp_path / "x.yaml", text)
    assert fast is None or fast == slow
    if "spk.1" in entry or "1.5e+3" in entry:
        assert fast is not None  # the official form takes the fast path


def test_manifest_paths_relative_to_the_working_directory(tmp_path, monkeypatch):
    """Items read from (or built under) a relative folder hold working-directory-relative
    paths; writing them next to the audio and reading back finds the same files (a build
    with ``--out runs/x`` once wrote ``runs/x/wav/..`` into ``runs/x``'s manifests)."""
    monkeypatch.chdir(tmp_path)
    _wav(tmp_path / "build" / "wav" / "a.wav", 800, seed=3)
    item = SpeechItem("u1", Path("build") / "wav" / "a.wav", 0, 800, "a", "b")
    path = write_manifest([item], Path("build") / "m.tsv")
    assert "\twav/a.wav\t" in path.read_text(encoding="utf-8")
    back = read_manifest(Path("build") / "m.tsv")
    assert back[0].audio.resolve() == (tmp_path / "build" / "wav" / "a.wav").resolve()
    again = read_manifest(write_manifest(back, Path("build") / "copy.tsv"))
    assert again[0].audio.resolve() == back[0].audio.resolve()


def test_manifest_relative_to_its_folder_when_not_found_from_here(tmp_path, monkeypatch):
    """A relative path that names no file from the working directory but one next to the
    manifest keeps its older meaning (relative to the manifest's folder)."""
    _wav(tmp_path / "build" / "wav" / "a.wav", 800, seed=4)
    monkeypatch.chdir(tmp_path)
    path = write_manifest([SpeechItem("u1", Path("wav") / "a.wav", 0, 800, "a", "b")],
                          Path("build") / "m.tsv")
    assert "\twav/a.wav\t" in path.read_text(encoding="utf-8")
