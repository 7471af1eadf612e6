"""One MQAR run: generate the data, train an :class:`~leapformer.models.mqar.MQARModel`
with the shared :class:`~leapformer.train.Trainer`, evaluate recall (docs/math.md §5.4).

Multi-query associative recall follows Zoology (Arora et al. 2023, "Zoology:
Measuring and Improving Recall in Efficient Language Models"): the data come
from :func:`leapformer.data.mqar.make_mqar`, generated in-process from the
run's seed with disjoint seeds per split (train ``3 s``, validation
``3 s + 1``, test ``3 s + 2`` for run seed ``s``: no two splits of any two
runs share a seed). Training batch ``i`` is a function of ``(seed, i)`` only
(a per-epoch permutation of the training set), so ``resume=True`` continues
exactly where ``last.pt`` stopped.

The run folder holds ``config.json`` (every setting), ``metrics.jsonl``,
``last.pt``, ``best.pt`` (the best validation accuracy) and ``results.json``
(written atomically, last): the test accuracy per query of the best
checkpoint (and per sequence: all of its queries right), the decoding state
size per layer, the training time, the settings and the command. The folder
rules are the shared run skeleton's (:func:`leapformer.tasks._skeleton.open_run`):
a folder that holds a run is refused unless ``resume`` or ``overwrite``, and it is
locked while the run trains.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from leapformer._io import atomic_write_text
from leapformer.data.mqar import check_mqar_args, make_mqar
from leapformer.tasks._skeleton import open_run
from leapformer.models.mqar import MQARConfig, MQARModel
from leapformer.train import TrainConfig, Trainer, load_checkpoint

log = logging.getLogger(__name__)

RUN_FORMAT = "leapformer-mqar-run"

#: Defaults of one run (CPU-sized, see docs/math.md §5.4 and the calibration in the grid).
DEFAULTS = {"vocab": 8192, "layers": 2, "steps": 1000, "lr": 3e-3, "queries_per_batch": 512,
            "n_train": None, "max_train": 100_000, "n_valid": 500, "n_test": 1000,
            "eval_every": 200, "warmup_steps": 40, "weight_decay": 0.1}


def batch_for(num_kv: int, queries_per_batch: int = DEFAULTS["queries_per_batch"]) -> int:
    """Sequences per batch holding about ``queries_per_batch`` queries (at least 1). The
    default, 512 queries per step, is 128 sequences at (64, 4), 64 at (128, 8) and 32 at
    (256, 16): 8192 tokens per step in the cells with ``seq_len = 16 num_kv``
    (Zoology's batches, 512 sequences at length 64, are 4-8x larger; sized for a CPU)."""
    return max(1, queries_per_batch // num_kv)


def split_seeds(seed: int) -> dict[str, int]:
    """Data seeds of the three splits of run seed ``seed`` (disjoint over all seeds)."""
    return {"train": 3 * seed, "valid": 3 * seed + 1, "test": 3 * seed + 2}


def _batch_fn(inputs: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
    """``get_batch(i)``: batch ``i`` of a per-epoch permutation drawn from ``(seed, epoch)``."""
    n = len(inputs)
    per_epoch = max(1, n // batch_size)
    cache: dict[int, np.ndarray] = {}

    def get_batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, k = divmod(i, per_epoch)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        idx = np.sort(cache[epoch][k * batch_size:(k + 1) * batch_size])
        return (torch.from_numpy(inputs[idx].astype(np.int64)),
                torch.from_numpy(labels[idx].astype(np.int64)))

    return get_batch


@torch.no_grad()
def evaluate_recall(model: MQARModel, inputs: np.ndarray, labels: np.ndarray,
                    batch_size: int = 250) -> dict:
    """Accuracy per query and mean loss over ``(inputs, labels)``, and each sequence's
    accuracy (``per_sequence``: the fraction of its queries answered right)."""
    was_training = model.training
    model.eval()
    correct, loss, count, per_seq = 0, 0.0, 0, []
    for a in range(0, len(inputs), batch_size):
        x = torch.from_numpy(inputs[a:a + batch_size])
        y = torch.from_numpy(labels[a:a + batch_size])
        _, logits = model(x, y)
        mask = y != -100
        targets = y[mask]
        hit = logits.argmax(-1) == targets
        loss += F.cross_entropy(logits.float(), targets, reduction="sum").item()
        correct += int(hit.sum())
        count += targets.numel()
        rows = mask.nonzero()[:, 0]
        per_seq.append((torch.zeros(len(x)).index_add_(0, rows, hit.float())
                        / mask.sum(1).clamp_min(1)).numpy())
    model.train(was_training)
    return {"accuracy": correct / count, "loss": loss / count,
            "per_sequence": np.concatenate(per_seq)}


def _prior_seconds(history: list[dict]) -> float:
    """Training seconds before a resume: the last ``elapsed_s`` of each earlier segment
    (``elapsed_s`` restarts at every ``fit`` call)."""
    total, last = 0.0, 0.0
    for rec in history:
        if rec.get("kind") != "train" or "elapsed_s" not in rec:
            continue
        if rec["elapsed_s"] < last:
            total += last
        last = rec["elapsed_s"]
    return total + last


_RUN_KEYS = ("attention", "seed", "batch_size")


def _check_saved_config(out: Path, config: dict, warmup_steps: int | None = None) -> None:
    """Refuse to resume a run saved with other settings (``steps`` may grow). The saved
    warm-up is the requested one capped at ``steps - 1`` (the request itself is not
    saved); a saved warm-up equal to ``min(warmup_steps, saved steps - 1)`` is accepted,
    so a short run can be extended."""
    path = out / "config.json"
    if path.is_file():
        old = json.loads(path.read_text())
        config = json.loads(json.dumps(config))  # tuples as JSON lists, like the saved file
        for key in ("run", "model", "data", "train"):
            a = old.get(key, {}) if key != "run" else {k: old.get(k) for k in _RUN_KEYS}
            b = config[key] if key != "run" else {k: config[k] for k in _RUN_KEYS}
            same = {"steps"}
            if key == "train" and warmup_steps is not None and isinstance(a.get("steps"), int) \
                    and a.get("warmup_steps") == min(warmup_steps, a["steps"] - 1):
                same.add("warmup_steps")
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in same)
            if diff:
                raise ValueError(f"cannot resume {out}: its {key} settings differ in {diff} "
                                 f"(saved {[a.get(k) for k in diff]}, now "
                                 f"{[b.get(k) for k in diff]})")


def run_mqar(attention: str, *, d_model: int, seq_len: int, num_kv: int,
             out: str | Path, vocab: int = DEFAULTS["vocab"], layers: int = DEFAULTS["layers"],
             steps: int = DEFAULTS["steps"], lr: float = DEFAULTS["lr"],
             batch_size: int | None = None, n_train: int | None = DEFAULTS["n_train"],
             n_test: int = DEFAULTS["n_test"], seed: int = 0, short_conv: bool = True,
             resume: bool = False, overwrite: bool = False, progress: bool = True,
             command: str | None = None,
             n_valid: int = DEFAULTS["n_valid"], eval_every: int = DEFAULTS["eval_every"],
             warmup_steps: int = DEFAULTS["warmup_steps"],
             weight_decay: float = DEFAULTS["weight_decay"], heads: int = 1, mlp: bool = False,
             positions: str = "learned", mechanism_options: dict | None = None) -> dict:
    """Train and test one (mechanism, width, cell); writes and returns ``results.json``.

    AdamW at peak ``lr`` with ``warmup_steps`` of linear warm-up and cosine decay to
    zero over ``steps``, batches of ``batch_size`` sequences (default
    :func:`batch_for`: ``512 // num_kv``, 512 queries per step) from ``n_train``
    generated ones (default ``min(steps * batch_size, 100_000)``: Zoology's 100k
    training sequences at most, and no sequence seen twice below that); validation
    (``n_valid`` sequences) every ``eval_every`` steps selects ``best.pt``, which is
    tested on ``n_test`` sequences. ``short_conv`` (default on) puts a short causal
    convolution before each attention: without it, even softmax stays near 20-27%
    accuracy at (64, 4), width 64, batch 64, after 1000 steps (the previous-token
    shift must then be learned through the positions, slowly). ``command`` is stored
    as given (the CLI passes its command line).
    """
    batch_size = batch_for(num_kv) if batch_size is None else batch_size
    saved = Path(out) / "config.json"
    if n_train is None and resume and saved.is_file():  # keep the data of the run resumed
        n_train = json.loads(saved.read_text()).get("data", {}).get("n_train")
    if n_train is None and isinstance(steps, int) and isinstance(batch_size, int):
        n_train = min(DEFAULTS["max_train"], steps * batch_size)
    for name, value in (("steps", steps), ("batch_size", batch_size), ("n_valid", n_valid),
                        ("n_test", n_test), ("eval_every", eval_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an int >= 0, got {warmup_steps!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    check_mqar_args(n_train, seq_len, num_kv, vocab, seed)
    if n_train < batch_size:
        raise ValueError(f"n_train ({n_train}) must be >= batch_size ({batch_size})")
    out = Path(out)
    model_cfg = MQARConfig(vocab=vocab, d_model=d_model, attention=attention, layers=layers,
                           heads=heads, max_length=seq_len, positions=positions,
                           short_conv=short_conv, mlp=mlp,
                           mechanism_options=dict(mechanism_options or {}))
    data_cfg = {"seq_len": seq_len, "num_kv": num_kv, "vocab": vocab, "n_train": n_train,
                "n_valid": n_valid, "n_test": n_test, "alpha": 0.01, "seeds": split_seeds(seed)}
    train_cfg = TrainConfig(steps=steps, lr=lr, weight_decay=weight_decay, schedule="cosine",
                            warmup_steps=min(warmup_steps, steps - 1), eval_every=eval_every,
                            log_every=math.gcd(eval_every, 50), seed=seed,
                            metric="accuracy", mode="max")
    config = {"format": RUN_FORMAT, "version": 1, "attention": attention, "seed": seed,
              "batch_size": batch_size, "model": asdict(model_cfg), "data": data_cfg,
              "train": asdict(train_cfg)}
    torch.manual_seed(seed)  # the model first: bad options fail before a file is touched
    model = MQARModel(model_cfg)
    with open_run(out, resume=resume, overwrite=overwrite) as out:
        if resume:
            _check_saved_config(out, config, warmup_steps)
        seeds = data_cfg["seeds"]
        t0 = time.perf_counter()
        train = tuple(a.astype(np.int32) for a in make_mqar(n_train, seq_len, num_kv, vocab,
                                                           seeds["train"]))  # half the memory
        valid = make_mqar(n_valid, seq_len, num_kv, vocab, seeds["valid"])
        test = make_mqar(n_test, seq_len, num_kv, vocab, seeds["test"])
        log.info("MQAR data T=%d K=%d V=%d: %d/%d/%d sequences in %.1f s", seq_len, num_kv, vocab,
                 n_train, n_valid, n_test, time.perf_counter() - t0)
        out.mkdir(parents=True, exist_ok=True)
        prior = _prior_seconds(load_checkpoint(out / "last.pt").get("history", [])) if resume else 0.0
        atomic_write_text(out / "config.json", json.dumps(config, indent=2) + "\n")

        def loss_fn(m, batch):
            x, y = batch
            loss, _ = m(x, y)
            return loss, {"examples": x.shape[0], "tokens": x.numel()}

        def evaluate(m):
            r = evaluate_recall(m, *valid)
            return {"accuracy": r["accuracy"], "loss": r["loss"]}

        trainer = Trainer(model, train_cfg, get_batch=_batch_fn(*train, batch_size, seed),
                          loss_fn=loss_fn, evaluate=evaluate, out_dir=out, progress=progress,
                          meta={"task": "mqar", "attention": attention, "model": asdict(model_cfg)})
        cpu0 = time.process_time()
        result = trainer.fit(resume=resume)
        cpu = time.process_time() - cpu0
        model.load_state_dict(load_checkpoint(out / "best.pt")["model"])
        res = evaluate_recall(model, *test)
        per_layer = model.state_bytes(seq_len)
        summary = {
            "format": "leapformer-mqar-results", "task": "mqar", "attention": attention,
            "mechanism_options": dict(mechanism_options or {}),
            "d_model": d_model, "seq_len": seq_len, "num_kv": num_kv, "vocab": vocab,
            "layers": layers, "heads": heads, "short_conv": short_conv, "mlp": mlp,
            "positions": positions, "seed": seed, "steps": result.steps, "lr": lr,
            "batch_size": batch_size, "n_train": n_train, "n_valid": n_valid, "n_test": n_test,
            "test_accuracy": res["accuracy"],
            "test_sequence_accuracy": float((res["per_sequence"] == 1.0).mean()),
            "test_loss": res["loss"],
            # queries answered right in each test sequence (of num_kv): the report's bootstrap
            "test_correct_per_sequence": [int(v) for v in np.rint(res["per_sequence"] * num_kv)],
            "best_valid_accuracy": result.best["accuracy"] if result.best else None,
            "best_step": result.best["step"] if result.best else None,
            "final_valid_accuracy": result.last_eval["accuracy"] if result.last_eval else None,
            "train_loss": result.train_loss,
            "state_bytes": per_layer, "state_bytes_all_layers": per_layer * layers,
            "parameters": result.parameters,
            "train_wall_s": prior + result.wall_s, "train_cpu_s_this_call": cpu,
            "train_steps_per_s": result.steps_per_s,
            "train_examples_per_s": result.examples_per_s,
            "threads": torch.get_num_threads(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
            "config": config, "command": command,
        }
        atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
        log.info("MQAR %s d=%d T=%d K=%d: test accuracy %.4f (%d steps, %.0f s)", attention,
                 d_model, seq_len, num_kv, res["accuracy"], result.steps, summary["train_wall_s"])
        return summary
