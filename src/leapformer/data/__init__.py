"""Task data: generators, loaders of official formats and tokenizers.

``listops``: the Long-Range Arena ListOps task (generator, TSV files,
evaluator, tokenizer).
"""

from leapformer.data.listops import (
    LRA_MAX_LEN,
    LRA_MIN_LEN,
    ListOpsBatch,
    ListOpsExample,
    ListOpsTokenizer,
    count_tokens,
    evaluate,
    format_source,
    generate_listops,
    read_tsv,
    write_tsv,
)

__all__ = [
    "LRA_MAX_LEN",
    "LRA_MIN_LEN",
    "ListOpsBatch",
    "ListOpsExample",
    "ListOpsTokenizer",
    "count_tokens",
    "evaluate",
    "format_source",
    "generate_listops",
    "read_tsv",
    "write_tsv",
]
