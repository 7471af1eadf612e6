"""LRA ListOps: official TSV files or the project's generator (docs/math.md §5.1)."""

from __future__ import annotations

from pathlib import Path

from leapformer.tasks.lra.batching import Split
from leapformer.tasks.lra.profile import LRAProfile
from leapformer.tasks.lra.sets import TaskData, paper_data

PAIRED = False
FILES = {"train": "basic_train.tsv", "valid": "basic_val.tsv", "test": "basic_test.tsv"}
PROFILES = {
    "paper": paper_data("listops", max_length=2048),
    # lengths 10-100 (LRA: 501-1999), 4,000 steps: softmax ~50% in ~4 min on one thread
    # (docs/lra.md, "Tuning the lite profile")
    "lite": LRAProfile(max_length=128, batch_size=32, lr=2e-3, steps=4_000, eval_every=250,
                       warmup_steps=100, n_train=40_000, n_valid=1_000, n_test=2_000,
                       min_len=10, max_len=100),
}


def load(p: LRAProfile, data_dir: Path | None, seed: int, progress: bool = False) -> TaskData:
    from leapformer.data.listops import ListOpsTokenizer, generate_listops, read_tsv

    tok = ListOpsTokenizer()
    if data_dir is not None:
        raw = {}
        for k, name in FILES.items():
            path = data_dir / name
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: a ListOps --data-dir holds "
                                        f"{', '.join(FILES.values())}")
            raw[k] = read_tsv(path)
            if not raw[k]:
                raise ValueError(f"{path}: no examples (the file holds only its header)")
        source = str(data_dir)
    else:
        from tqdm import tqdm

        sizes = {"train": p.n_train, "valid": p.n_valid, "test": p.n_test}
        raw = {}
        for i, (k, n) in enumerate(sizes.items()):
            with tqdm(total=n, desc=f"generate listops {k}", disable=not progress) as bar:
                raw[k] = generate_listops(n, seed=seed * 3 + i, min_len=p.min_len,
                                          max_len=p.max_len, progress=bar.update)
        source = "generated"
    splits = {k: Split([tok.encode(e.source) for e in v], [int(e.label) for e in v])
              for k, v in raw.items()}
    return TaskData(splits, tok.vocab_size, 10, source)
