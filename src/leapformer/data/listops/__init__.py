"""ListOps (Long-Range Arena): generator, official TSV files, evaluator, tokenizer.

An expression is a tree of operators over the digits 0-9 (docs/math.md §5.1, LRA
``lra_benchmarks/data/listops.py``)::

    [MAX 2 9 [MIN 4 7 ] 0 ]          -> 9
    [SM 2 [MED 3 8 ] 1 ]             -> 8   (MED of 3, 8 = int(5.5) = 5; 2 + 5 + 1 = 8)

- ``[MIN``, ``[MAX``: smallest / largest argument.
- ``[MED``: ``int(np.median(args))``, the integer part of the median; for an
  even count the mean of the two middle values, truncated (``[MED 1 2 ] -> 1``).
- ``[SM``: sum modulo 10.

- :mod:`~leapformer.data.listops.expression`: tokens, :class:`ListOpsExample`,
  the official layout (:func:`format_source`), the length count and the
  evaluator (:func:`evaluate`);
- :mod:`~leapformer.data.listops.generator`: :func:`generate_listops` (the tree
  distribution);
- :mod:`~leapformer.data.listops.tsv`: :func:`read_tsv`, :func:`write_tsv`;
- :mod:`~leapformer.data.listops.tokenizer`: :class:`ListOpsTokenizer`,
  :class:`ListOpsBatch`.
"""

from leapformer.data.listops.expression import (
    DIGITS,
    END,
    LRA_MAX_LEN,
    LRA_MIN_LEN,
    OPERATORS,
    PAD,
    PARENS,
    ListOpsExample,
    count_tokens,
    evaluate,
    format_source,
)
from leapformer.data.listops.generator import generate_listops
from leapformer.data.listops.tokenizer import ListOpsBatch, ListOpsTokenizer
from leapformer.data.listops.tsv import HEADER, read_tsv, write_tsv

__all__ = [
    "DIGITS", "END", "HEADER", "LRA_MAX_LEN", "LRA_MIN_LEN", "OPERATORS", "PAD", "PARENS",
    "ListOpsBatch", "ListOpsExample", "ListOpsTokenizer", "count_tokens", "evaluate",
    "format_source", "generate_listops", "read_tsv", "write_tsv",
]
