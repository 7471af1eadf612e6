"""The aclImdb folder reader (LRA Text, official data)."""

import numpy as np
import pytest

from leapformer.data.bytes import cut_utf8, decode_bytes, encode_bytes
from leapformer.data.imdb import load_imdb, read_imdb_split

REVIEWS = {"train/pos": ["Great film!", "Loved it <br />twice"],
           "train/neg": ["Dull.", "Café food was better"],
           "test/pos": ["Superb"], "test/neg": ["Awful, awful"]}


def write_imdb(root, reviews=REVIEWS):
    for folder, texts in reviews.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, t in enumerate(texts):
            (root / folder / f"{i}_{7 + i}.txt").write_text(t, encoding="utf-8")
    (root / "train" / "unsup").mkdir(exist_ok=True)  # ignored, as the release's extras
    (root / "train" / "labeledBow.feat").write_text("0 0:1\n")
    return root


def test_bytes_encoding():
    ids = encode_bytes("aé")
    assert ids.dtype == np.int16 and ids.tolist() == [98, 0xC3 + 1, 0xA9 + 1]
    assert decode_bytes([*ids.tolist(), 0, 0]) == "aé"
    assert encode_bytes("abcdef", 4).tolist() == [98, 99, 100, 101]
    assert cut_utf8("aé", 2) == "a"
    with pytest.raises(ValueError):
        decode_bytes([257])


def test_reads_official_layout(tmp_path):
    write_imdb(tmp_path / "aclImdb")
    for root in (tmp_path, tmp_path / "aclImdb"):  # the folder holding aclImdb, or aclImdb
        texts, labels = read_imdb_split(root, "train")
        assert labels == [0, 0, 1, 1]
        assert texts[0].decode() == "Dull." and texts[1].decode() == "Café food was better"
    data = load_imdb(tmp_path, max_length=5)
    ids, labels = data["test"]
    assert labels == [0, 1]
    assert decode_bytes(ids[0]) == "Awful" and decode_bytes(ids[1]) == "Super"
    assert all(1 <= int(x) <= 256 for seq in ids for x in seq)


def test_errors_name_the_path(tmp_path):
    root = write_imdb(tmp_path / "a", {k: v for k, v in REVIEWS.items() if k != "test/neg"})
    with pytest.raises(FileNotFoundError, match=r"test/neg is missing"):
        load_imdb(root, 100)
    (root / "test" / "neg").mkdir()
    with pytest.raises(ValueError, match=r"test/neg holds no \.txt review"):
        read_imdb_split(root, "test")
    (root / "test" / "neg" / "3_1.txt").write_bytes(b"bad \xff byte")
    with pytest.raises(ValueError, match=r"test/neg/3_1\.txt: not UTF-8"):
        read_imdb_split(root, "test")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_imdb_split(tmp_path / "none", "train")
    with pytest.raises(ValueError, match="split must be"):
        read_imdb_split(root, "unsup")
