"""ACL Anthology Network document pairs (LRA Retrieval), official TSV files.

**Files** (LRA release, ``lra_release/tsv_data/``): ``new_aan_pairs.train.tsv``,
``new_aan_pairs.eval.tsv``, ``new_aan_pairs.test.tsv``. Each line is one pair,
no header, five tab-separated columns, no quoting — as LRA's reader
(``lra_benchmarks/matching/input_pipeline.py``: ``make_csv_dataset`` with
``column_names=['label', 'id1', 'id2', 'text1', 'text2']``, ``field_delim='\\t'``,
``use_quote_delim=False``, ``header=False``) reads them:

    label <TAB> id1 <TAB> id2 <TAB> text1 <TAB> text2

``label`` is read as a float by LRA; here it must be 0 or 1 (``0``, ``1``,
``0.0``, ``1.0``): whether the two papers are linked by a citation. Lines end
in ``\\n`` or ``\\r\\n``; blank lines are skipped. ``root`` may be the folder
holding the files or one holding ``tsv_data/``.

**Tokens**: byte level as LRA's ``char`` tokenizer (:mod:`leapformer.data.bytes`),
each document cut to ``max_length`` bytes (LRA cuts to 10,000 then to the
maximum length, the same thing for lengths up to 10,000).

A wrong column count, a bad label or a line that is not UTF-8 raises
``ValueError("<file>:<line>: ...")``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leapformer.data.bytes import encode_bytes

logger = logging.getLogger(__name__)

FILES = {"train": "new_aan_pairs.train.tsv", "valid": "new_aan_pairs.eval.tsv",
         "test": "new_aan_pairs.test.tsv"}
COLUMNS = ("label", "id1", "id2", "text1", "text2")
_LABELS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}


@dataclass(frozen=True, slots=True)
class AANPair:
    label: int
    id1: str
    id2: str
    text1: str
    text2: str


def aan_root(root: str | Path) -> Path:
    """The folder holding the TSV files: ``root`` or ``root/tsv_data``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"AAN folder {root} does not exist")
    if not (root / FILES["train"]).exists() and (root / "tsv_data" / FILES["train"]).exists():
        root = root / "tsv_data"
    return root


def _rows(path: Path):
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            raw = raw.rstrip(b"\n")
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not UTF-8 (byte {err.start})") from None
            fields = line.split("\t")
            if len(fields) != len(COLUMNS):
                raise ValueError(f"{path}:{lineno}: expected {len(COLUMNS)} tab-separated "
                                 f"columns ({', '.join(COLUMNS)}), got {len(fields)}")
            label = _LABELS.get(fields[0].strip())
            if label is None:
                raise ValueError(f"{path}:{lineno}: label must be 0 or 1, got {fields[0][:20]!r}")
            yield lineno, label, fields


def read_aan_tsv(path: str | Path) -> list[AANPair]:
    """Every pair of one AAN TSV file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AAN file {path} not found")
    pairs = [AANPair(label, *fields[1:]) for _, label, fields in _rows(path)]
    if not pairs:
        raise ValueError(f"{path}: holds no pair")
    logger.info("read %d AAN pairs from %s", len(pairs), path)
    return pairs


def load_aan(root: str | Path, max_length: int
             ) -> dict[str, tuple[list[np.ndarray], list[np.ndarray], list[int]]]:
    """``{split: (ids1, ids2, labels)}`` for train / valid / test, documents cut to
    ``max_length`` bytes (read line by line; the texts are not kept)."""
    root = aan_root(root)
    out = {}
    for split, name in FILES.items():
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"AAN file {path} not found (expected {sorted(FILES.values())})")
        ids1, ids2, labels = [], [], []
        for _, label, fields in _rows(path):
            ids1.append(encode_bytes(fields[3], max_length))
            ids2.append(encode_bytes(fields[4], max_length))
            labels.append(label)
        if not labels:
            raise ValueError(f"{path}: holds no pair")
        logger.info("read %d AAN pairs from %s", len(labels), path)
        out[split] = (ids1, ids2, labels)
    return out
