"""The AAN TSV reader (LRA Retrieval, official data)."""

import pytest

from leapformer.data.aan import FILES, load_aan, read_aan_tsv
from leapformer.data.bytes import decode_bytes

ROWS = ["1.0\tP01-1\tP02-2\tAbstract one about parsing.\tAbstract two, parsing too.",
        "0.0\tP03-3\tP04-4\tMachine translation.\tSpeech recognition é.",
        "1\tP05-5\tP06-6\tx\ty"]


def write_aan(folder, rows=ROWS, eol="\n"):
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES.values():
        (folder / name).write_bytes((eol.join(rows) + eol).encode("utf-8"))
    return folder


def test_reads_official_files(tmp_path):
    write_aan(tmp_path / "tsv_data", eol="\r\n")
    pairs = read_aan_tsv(tmp_path / "tsv_data" / FILES["test"])
    assert [p.label for p in pairs] == [1, 0, 1]
    assert pairs[1].id1 == "P03-3" and pairs[1].text2 == "Speech recognition é."
    data = load_aan(tmp_path, max_length=8)  # the folder holding tsv_data/ works too
    ids1, ids2, labels = data["valid"]
    assert labels == [1, 0, 1] and set(data) == {"train", "valid", "test"}
    assert decode_bytes(ids1[0]) == "Abstract" and decode_bytes(ids2[2]) == "y"


@pytest.mark.parametrize("bad, message", [
    ("1\tA\tB\tonly four", r"\.tsv:2: expected 5 tab-separated columns .*got 4"),
    ("2\tA\tB\tx\ty", r"\.tsv:2: label must be 0 or 1, got '2'"),
    ("yes\tA\tB\tx\ty", r"\.tsv:2: label must be 0 or 1"),
    ("1\tA\tB\tx\ty\tz", r"\.tsv:2: expected 5 tab-separated columns .*got 6"),
])
def test_malformed_rows_name_file_and_line(tmp_path, bad, message):
    path = write_aan(tmp_path, [ROWS[0], bad, ROWS[2]]) / FILES["train"]
    with pytest.raises(ValueError, match=message):
        read_aan_tsv(path)
    with pytest.raises(ValueError, match="new_aan_pairs.train" + message):
        load_aan(tmp_path, 100)


def test_other_errors(tmp_path):
    write_aan(tmp_path)
    (tmp_path / FILES["valid"]).write_bytes(ROWS[0].encode() + b"\n0\ta\tb\t\xff\tc\n")
    with pytest.raises(ValueError, match=r"new_aan_pairs\.eval\.tsv:2: not UTF-8"):
        load_aan(tmp_path, 100)
    (tmp_path / FILES["valid"]).write_bytes(b"\n")
    with pytest.raises(ValueError, match="holds no pair"):
        read_aan_tsv(tmp_path / FILES["valid"])
    write_aan(tmp_path)
    (tmp_path / FILES["test"]).unlink()
    with pytest.raises(FileNotFoundError, match=r"new_aan_pairs\.test\.tsv not found"):
        load_aan(tmp_path, 100)
