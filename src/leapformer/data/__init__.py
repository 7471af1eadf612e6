"""Task data: generators, loaders of official formats and tokenizers.

``listops``: the Long-Range Arena ListOps task (generator, TSV files,
evaluator, tokenizer). ``pathfinder``: Pathfinder-32 (generator, the official
folder layout, pixel tokens).
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
from leapformer.data.pathfinder import (
    generate_pathfinder,
    load_pathfinder_dir,
    pathfinder_tokens,
    save_pathfinder_dir,
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
    "generate_pathfinder",
    "load_pathfinder_dir",
    "pathfinder_tokens",
    "read_tsv",
    "save_pathfinder_dir",
    "write_tsv",
]
