"""``leapformer tts train``: one TransformerTTS run on the spoken Bible or LJ Speech.

Run folder (:mod:`leapformer.tasks._skeleton` policy: refuse / ``--overwrite`` /
``--resume``, lock): ``config.json`` (written by a fresh run; a resumed run must
have the same settings, except that ``steps`` may grow, and reuses the saved
text front-end and CMVN), ``features/{split}.pt`` (log-mels, float16,
kept on overwrite), ``cmvn.npz`` (global statistics of the training mels),
``length_stats.json`` (training text ids -> frames, to fit the ``ratio`` and
``lookup`` predictors at evaluation), ``metrics.jsonl``, ``last.pt`` /
``best.pt`` (lowest dev loss) and ``results.json``.

Training: AdamW (betas 0.9/0.98), linear warm-up then inverse square root decay
(Li et al. 2019's Noam schedule), gradient norm clipped to 1, batches of at
most ``batch_frames`` padded mel frames. The decoder reads the true mel length
(cosFormer's ``M``).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from leapformer.data.speech import GlobalCMVN, compute_cmvn
from leapformer.models.tts import TTS_PRESETS, TransformerTTS, TTSConfig
from leapformer.nn import AttentionSpec
from leapformer.tasks._runs import read_run
from leapformer.tasks._skeleton import capped_warmup, check_resume, runs_in_folder, write_json
from leapformer.tasks.tts.data import TextFrontend, collate, load_items, mel_batches, utterance_mel

log = logging.getLogger(__name__)

__all__ = ["RUN_FORMAT", "TTS_DEFAULTS", "check_settings", "load_tts_run", "run_tts_train"]

RUN_FORMAT = "leapformer-tts-1"
TTS_DEFAULTS = {"preset": "lite", "steps": 20000, "batch_frames": 6000, "lr": 1e-3,
                "warmup_steps": 4000, "eval_every": 500, "max_dev": 100}
_RESUME_KEYS = ("spec", "preset", "front_end", "data", "format_data", "loss", "length_predictor",
                "overrides", "max_items", "max_dev", "seed", "lr", "warmup_steps",
                "batch_frames", "eval_every")

FeatureProgress = Callable[[str, int, int], None]
"""``progress(split, done, total)``, called after each utterance whose mels are computed."""


def _features(out: Path, split: str, items, progress: FeatureProgress | None):
    """``(ids, texts, mels)`` of a split, the mels cached in ``out/features/{split}.pt``;
    ``progress(split, done, total)`` after each utterance computed."""
    path = out / "features" / f"{split}.pt"
    ids = [it.id for it in items]
    if path.is_file():
        cached = torch.load(path, weights_only=True)
        if cached.get("ids") == ids:
            return ids, [it.src_text for it in items], cached["mels"]
        log.warning("%s holds other utterances: recomputing", path)
    mels = []
    for it in items:
        mels.append(utterance_mel(it).to(torch.float16))
        if progress is not None:
            progress(split, len(mels), len(items))
    path.parent.mkdir(parents=True, exist_ok=True)
    from leapformer._io import atomic_open

    with atomic_open(path) as fh:
        torch.save({"ids": ids, "mels": mels}, fh)
    return ids, [it.src_text for it in items], mels


def _lr(step: int, peak: float, warmup: int) -> float:
    return peak * min((step + 1) / warmup, math.sqrt(warmup / (step + 1)))


@torch.no_grad()
def dev_loss(model: TransformerTTS, texts, mels, batch_frames: int) -> dict:
    """Frame-weighted mean of each loss term over a split (teacher forcing)."""
    model.eval()
    sums, frames = {}, 0
    for batch in mel_batches([m.shape[0] for m in mels], batch_frames, shuffle=False):
        text, mask, mel, lengths = collate([texts[i] for i in batch], [mels[i] for i in batch])
        out = model.loss(text, mask, mel, lengths)
        n = int(lengths.sum())
        frames += n
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v) * n
    return {k: v / frames for k, v in sums.items()}


def check_settings(spec: str, preset: str, front_end: str, loss: str,
                   length_predictor: str | None, fmt: str) -> None:
    """ValueError for settings that would fail only after the features are computed."""
    from leapformer.models.target_length import LENGTH_PREDICTORS
    from leapformer.models.tts import TTS_LOSSES
    from leapformer.nn import MECHANISMS
    from leapformer.tasks.tts.data import DATA_FORMATS, FRONT_ENDS

    parsed = AttentionSpec.parse(spec)
    for block in ("dec", "cross"):
        name = parsed.mechanism(block)
        if not MECHANISMS[name].full:
            raise ValueError(f"mechanism {name!r} (block {block}) has no causal/cross/decoding "
                             "form")
    for name, value, known in (("preset", preset, sorted(TTS_PRESETS)),
                               ("front_end", front_end, FRONT_ENDS), ("loss", loss, TTS_LOSSES),
                               ("length_predictor", length_predictor,
                                (None, *LENGTH_PREDICTORS)), ("data format", fmt, DATA_FORMATS)):
        if value not in known:
            raise ValueError(f"unknown {name} {value!r}; known: {list(known)}")


def run_tts_train(*, spec: str, preset: str = TTS_DEFAULTS["preset"], front_end: str = "chars",
                  loss: str = "l1", length_predictor: str | None = "conv",
                  fmt: str = "spoken-bible", **kwargs) -> dict:
    """Train one model (settings checked before the run folder is touched); returns the
    results dict (also written to ``results.json``). See :func:`_train`."""
    check_settings(spec, preset, front_end, loss, length_predictor, fmt)
    return _train(spec=spec, preset=preset, front_end=front_end, loss=loss,
                  length_predictor=length_predictor, fmt=fmt, **kwargs)


@runs_in_folder(outputs=("eval*.json", "synth"))
def _train(*, data: str | Path, fmt: str, spec: str, out: Path,
           preset: str = TTS_DEFAULTS["preset"], front_end: str = "chars",
           loss: str = "l1", length_predictor: str | None = "conv",
           steps: int = TTS_DEFAULTS["steps"],
           batch_frames: int = TTS_DEFAULTS["batch_frames"],
           lr: float = TTS_DEFAULTS["lr"], eval_every: int = TTS_DEFAULTS["eval_every"],
           max_items: int | None = None, max_dev: int = TTS_DEFAULTS["max_dev"],
           seed: int = 0, overrides: dict | None = None, resume: bool = False,
           progress: bool = True, feature_progress: FeatureProgress | None = None,
           command: str = "", dist=None) -> dict:
    """The training run in the opened folder ``out`` (module docstring). ``progress``:
    a bar over the training steps; ``feature_progress(split, done, total)`` while the
    mels are computed."""
    overrides = dict(overrides or {})
    settings = {"format": RUN_FORMAT, "spec": spec, "preset": preset, "front_end": front_end,
                "data": str(Path(data).resolve()), "format_data": fmt, "loss": loss,
                "length_predictor": length_predictor, "steps": steps,
                "batch_frames": batch_frames, "lr": lr, "eval_every": eval_every,
                "max_items": max_items, "max_dev": max_dev, "seed": seed,
                "warmup_steps": capped_warmup(TTS_DEFAULTS["warmup_steps"], steps),
                "overrides": overrides, "command": command}
    old = None
    if resume:
        old = json.loads((out / "config.json").read_text())
        keys = [k for k in _RESUME_KEYS if k != "warmup_steps" or k in old]  # older runs
        # one spec written two ways ('leap' and 'enc=leap,dec=leap,cross=leap') is one spec
        saved = {**old, "spec": str(AttentionSpec.parse(old["spec"]))} if "spec" in old else old
        check_resume(out, {**settings, "spec": str(AttentionSpec.parse(spec))}, keys,
                     saved=saved)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    train_items = load_items(data, fmt, "train", max_items=max_items)
    dev_items = load_items(data, fmt, "dev", max_items=max_dev)
    _, train_text, train_mels = _features(out, "train", train_items, feature_progress)
    _, dev_text, dev_mels = _features(out, "dev", dev_items, feature_progress)
    if old is not None:  # the symbols and statistics the checkpoint was trained with
        front = TextFrontend.from_dict(old["front_end_symbols"])
        cmvn = GlobalCMVN.load(out / "cmvn.npz")
    else:
        front = TextFrontend.build([it.src_text for it in train_items], front_end)
        cmvn = compute_cmvn(m.float() for m in train_mels)
        cmvn.save(out / "cmvn.npz")
    norm = lambda mels: [cmvn(m.float()) for m in mels]  # noqa: E731
    train_mels, dev_mels = norm(train_mels), norm(dev_mels)
    train_ids = [front.encode(t) for t in train_text]
    dev_ids = [front.encode(t) for t in dev_text]
    write_json(out / "length_stats.json", {"texts": train_ids,
                                           "frames": [m.shape[0] for m in train_mels]})
    cfg = TTSConfig.preset(preset, front.vocab_size, loss=loss, **overrides)
    model = TransformerTTS(cfg, spec, length_predictor)
    settings.update(model=asdict(cfg), front_end_symbols=front.to_dict(),
                    parameters=sum(p.numel() for p in model.parameters()))
    if old is None:
        write_json(out / "config.json", settings)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9,
                            weight_decay=0.0)
    warmup = settings["warmup_steps"]
    step, best, wall0 = 0, float("inf"), 0.0
    if resume:
        ck = torch.load(out / "last.pt", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, best, wall0 = ck["step"], ck["best"], ck["wall_s"]
        rng.setstate(ck["rng"])
    metrics = (out / "metrics.jsonl").open("a")
    lengths = [m.shape[0] for m in train_mels]
    t0 = time.perf_counter() - wall0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=step, desc=f"tts {spec}", unit="step")

    def save(name: str) -> None:
        from leapformer._io import atomic_open

        with atomic_open(out / name) as fh:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "step": step, "best": best, "wall_s": time.perf_counter() - t0,
                        "rng": rng.getstate()}, fh)

    try:
        while step < steps:
            for batch in mel_batches(lengths, batch_frames, shuffle=True, rng=rng):
                if step >= steps:
                    break
                model.train()
                text, mask, mel, mel_len = collate([train_ids[i] for i in batch],
                                                   [train_mels[i] for i in batch])
                for g in opt.param_groups:
                    g["lr"] = _lr(step, lr, warmup)
                losses = model.loss(text, mask, mel, mel_len)
                opt.zero_grad(set_to_none=True)
                losses["loss"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{losses['loss'].item():.3f}")
                if step % eval_every == 0 or step == steps:
                    dev = dev_loss(model, dev_ids, dev_mels, batch_frames)
                    rec = {"step": step, "train_loss": losses["loss"].item(),
                           **{f"dev_{k}": v for k, v in dev.items()},
                           "wall_s": time.perf_counter() - t0}
                    if dev["loss"] < best:
                        best = dev["loss"]
                        _fit_predictors(model, train_ids, lengths)
                        save("best.pt")
                    save("last.pt")
                    metrics.write(json.dumps(rec) + "\n")
                    metrics.flush()
    finally:
        metrics.close()
        if bar is not None:
            bar.close()
    results = {"format": RUN_FORMAT, "spec": str(model.spec), "steps": step, "best_dev_loss": best,
               "train_wall_s": time.perf_counter() - t0,
               "train_utterances": len(train_ids), "dev_utterances": len(dev_ids),
               "parameters": settings["parameters"]}
    write_json(out / "results.json", results)
    return results


def _fit_predictors(model: TransformerTTS, texts, frames) -> None:
    """Fit a ``ratio``/``lookup`` predictor of the model on the training texts."""
    from leapformer.nn.length import LookupLength, RatioLength

    if isinstance(model.length_predictor, (RatioLength, LookupLength)):
        model.fit_length_predictor(texts, frames)


def load_tts_run(run: str | Path, checkpoint: str = "best"
                 ) -> tuple[TransformerTTS, TextFrontend, GlobalCMVN, dict]:
    """``(model in eval mode, front-end, CMVN, config)`` of a ``tts train`` run folder."""
    run, config, ck_path = read_run(run, checkpoint, fmt=RUN_FORMAT, what="a TTS",
                                    command="leapformer tts train")
    cfg = TTSConfig(**config["model"])
    model = TransformerTTS(cfg, config["spec"], config["length_predictor"])
    model.load_state_dict(torch.load(ck_path, weights_only=False)["model"])
    front = TextFrontend.from_dict(config["front_end_symbols"])
    return model.eval(), front, GlobalCMVN.load(run / "cmvn.npz"), config
