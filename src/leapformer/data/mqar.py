"""Multi-query associative recall (MQAR) data (docs/math.md §5.4).

MQAR is the synthetic recall task of Zoology (Arora et al. 2023, "Zoology:
Measuring and Improving Recall in Efficient Language Models", Fig. 2), built
here as in its ``multiquery_ar`` generator with ``random_non_queries=False``:

- a vocabulary of ``vocab`` tokens; keys come from ``[1, vocab // 2)``,
  values from ``[vocab // 2, vocab)``; the ``num_kv`` keys of a sequence are
  distinct and so are its values (both drawn without replacement per
  sequence, as Zoology does);
- the sequence starts with the pairs ``k1 v1 k2 v2 ...`` (``2 num_kv``
  tokens); each key then appears once more, as a query, at an even offset
  ``2 g`` after the pairs, the gaps ``g`` drawn without replacement from the
  ``seq_len / 2 - num_kv`` slots with ``p(g) ∝ alpha (g + 1)^(alpha - 1)``
  (power law, ``alpha = 0.01``: short gaps are likelier);
- the label at a query position is its key's value, ``-100`` (ignored)
  everywhere else; the value is *not* in the input after the query; every
  other input position holds the filler token ``0``.

Example (``vocab=16, seq_len=12, num_kv=2``)::

    inputs  3 12  5 9  0 0  5 0  0 0  3 0
    labels  .  .  . .  . .  9 .  . . 12 .     (. = -100)

``make_mqar`` is vectorised numpy and seeded with
``np.random.default_rng(seed)``: one seed, one data set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leapformer._io import atomic_open

__all__ = ["IGNORE", "check_mqar_args", "load_mqar", "make_mqar", "save_mqar"]

#: Label of positions that are not queries (``torch.nn.functional.cross_entropy``'s default).
IGNORE = -100
#: Random numbers drawn per chunk of rows (bounds the generator's memory).
_CHUNK_ELEMENTS = 1 << 22


def _int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_mqar_args(n: int, seq_len: int, num_kv: int, vocab: int, seed: int,
                    alpha: float = 0.01) -> None:
    """Raise ``ValueError`` naming the argument unless the settings make an MQAR set."""
    _int("n", n, 1)
    _int("num_kv", num_kv, 1)
    _int("seq_len", seq_len, 2)
    _int("vocab", vocab, 1)
    _int("seed", seed, 0)
    if seq_len % 2:
        raise ValueError(f"seq_len must be even, got {seq_len}")
    if vocab <= seq_len:
        raise ValueError(f"vocab must be > seq_len ({seq_len}), got {vocab}")
    if 4 * num_kv > seq_len:
        raise ValueError(f"num_kv must satisfy 4 * num_kv <= seq_len ({seq_len}), got "
                         f"num_kv={num_kv}")
    if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and alpha > 0
            and np.isfinite(alpha)):
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")


def _rows_in_chunks(n: int, width: int):
    step = max(1, _CHUNK_ELEMENTS // max(width, 1))
    for start in range(0, n, step):
        yield start, min(n, start + step)


def _distinct(rng: np.random.Generator, n: int, k: int, low: int, high: int) -> np.ndarray:
    """``[n, k]`` ints from ``[low, high)``, distinct within each row, in random order
    (each row a uniform draw without replacement)."""
    span = high - low
    if k * k <= span:  # collisions are rare: draw, then redraw the rows that collide
        out = rng.integers(low, high, size=(n, k))
        todo = np.arange(n)
        while todo.size:
            s = np.sort(out[todo], axis=1)
            todo = todo[(s[:, 1:] == s[:, :-1]).any(axis=1)]
            out[todo] = rng.integers(low, high, size=(todo.size, k))
        return out
    out = np.empty((n, k), dtype=np.int64)  # dense: the k smallest of span uniforms per row
    for a, b in _rows_in_chunks(n, span):
        r = rng.random((b - a, span))
        idx = np.argpartition(r, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(r, idx, axis=1), axis=1)
        out[a:b] = low + np.take_along_axis(idx, order, axis=1)
    return out


def _power_law_gaps(rng: np.random.Generator, n: int, k: int, slots: int,
                    alpha: float) -> np.ndarray:
    """``[n, k]`` distinct gaps in ``[0, slots)`` per row, drawn one after another without
    replacement with ``p(g) ∝ alpha (g + 1)^(alpha - 1)`` (Gumbel top-k: the same
    distribution as ``np.random.choice(slots, k, replace=False, p=p)``)."""
    logp = np.log(alpha) + (alpha - 1.0) * np.log(np.arange(1, slots + 1, dtype=np.float64))
    out = np.empty((n, k), dtype=np.int64)
    for a, b in _rows_in_chunks(n, slots):
        score = logp - np.log(-np.log(rng.random((b - a, slots))))  # + Gumbel(0, 1)
        top = np.argpartition(-score, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(score, top, axis=1), axis=1)
        out[a:b] = np.take_along_axis(top, order, axis=1)
    return out


def make_mqar(n: int, seq_len: int, num_kv: int, vocab: int, seed: int,
              alpha: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """``n`` MQAR sequences: ``(inputs, labels)``, both int64 ``[n, seq_len]`` (see the
    module docstring). ``labels`` is ``-100`` except at the ``num_kv`` query positions
    of each row, where it is the queried key's value.

    Constraints (``ValueError`` naming the argument): ``n >= 1``, ``num_kv >= 1``,
    ``seq_len`` even, ``vocab > seq_len``, ``4 * num_kv <= seq_len``, ``seed >= 0``,
    ``alpha > 0``.
    """
    check_mqar_args(n, seq_len, num_kv, vocab, seed, alpha)
    rng = np.random.default_rng(seed)
    half, context = vocab // 2, 2 * num_kv
    keys = _distinct(rng, n, num_kv, 1, half)
    values = _distinct(rng, n, num_kv, half, vocab)
    gaps = _power_law_gaps(rng, n, num_kv, (seq_len - context) // 2, float(alpha))
    inputs = np.zeros((n, seq_len), dtype=np.int64)
    inputs[:, 0:context:2] = keys
    inputs[:, 1:context:2] = values
    query = context + 2 * gaps
    np.put_along_axis(inputs, query, keys, axis=1)
    labels = np.full((n, seq_len), IGNORE, dtype=np.int64)
    np.put_along_axis(labels, query, values, axis=1)
    return inputs, labels


def _check_arrays(inputs: np.ndarray, labels: np.ndarray, where: str) -> None:
    for name, a in (("inputs", inputs), ("labels", labels)):
        if not isinstance(a, np.ndarray) or a.ndim != 2 or a.dtype != np.int64:
            raise ValueError(f"{where}: {name} must be an int64 array [n, seq_len], got "
                             f"{getattr(a, 'dtype', type(a).__name__)} "
                             f"{list(getattr(a, 'shape', []))}")
    if inputs.shape != labels.shape:
        raise ValueError(f"{where}: inputs {list(inputs.shape)} and labels "
                         f"{list(labels.shape)} must have one shape")
    if inputs.shape[0] < 1:
        raise ValueError(f"{where}: no sequences")


def save_mqar(path: str | Path, inputs: np.ndarray, labels: np.ndarray) -> Path:
    """Write ``inputs`` and ``labels`` to ``path`` (an ``.npz`` file, written atomically)."""
    _check_arrays(inputs, labels, "save_mqar")
    path = Path(path)
    with atomic_open(path) as fh:
        np.savez(fh, inputs=inputs, labels=labels)
    return path


def load_mqar(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, labels)`` from an ``.npz`` file of :func:`save_mqar`; ``FileNotFoundError``
    or ``ValueError`` naming the file if it is missing or not an MQAR file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MQAR file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("inputs", "labels") if k not in data.files]
            if missing:
                raise ValueError(f"{path} is not an MQAR file: missing {', '.join(missing)} "
                                 f"(holds {data.files})")
            inputs, labels = data["inputs"], data["labels"]
    except (OSError, EOFError) as err:
        raise ValueError(f"could not read MQAR file {path}: {err}") from err
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"could not read MQAR file {path}: {err}") from err
    _check_arrays(inputs, labels, str(path))
    return inputs, labels
