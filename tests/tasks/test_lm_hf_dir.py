"""``save_hf_dir`` replaces a model folder as a whole: never a partly written one."""

from __future__ import annotations

import json

import pytest

from leapformer.models.lm import LMConfig
from leapformer.tasks.lm.hf import DATA_FILE, TOKENIZER_FILE, build_hf_lm, save_hf_dir

pytestmark = pytest.mark.usefixtures("one_thread")


def _model():
    cfg = LMConfig(vocab_size=13, context_length=8, attention="softmax", num_layers=1,
                   d_model=8, nhead=2, dim_feedforward=16)
    return build_hf_lm("gpt2", cfg)


def test_save_replaces_the_folder_or_leaves_it(tmp_path, monkeypatch):
    tok = tmp_path / "tok.json"
    tok.write_text('{"t": 1}')
    out = tmp_path / "hf"
    out.mkdir()
    (out / "stale.bin").write_text("old")
    model = _model()
    assert save_hf_dir(model, out, tokenizer_file=tok, source={"corpus": "x"}, run=tmp_path) == out
    names = {p.name for p in out.iterdir()}
    assert {"config.json", TOKENIZER_FILE, DATA_FILE} <= names and "stale.bin" not in names
    assert json.loads((out / DATA_FILE).read_text())["source"] == {"corpus": "x"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def half_written(path, *args, **kwargs):  # a save that fails midway
        (path / "config.json").write_text("{")
        raise OSError("disk full")

    monkeypatch.setattr(model.hf, "save_pretrained", half_written)
    with pytest.raises(OSError, match="disk full"):
        save_hf_dir(model, out, tokenizer_file=tok, source={"corpus": "y"}, run=tmp_path)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
