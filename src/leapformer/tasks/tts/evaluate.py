"""``leapformer tts synth|eval|report``: synthesis to .wav, evaluation (MCD, length
error per predictor, real-time factor), and the markdown report over runs.

- **MCD** (:func:`leapformer.eval.mcd`, DTW-aligned, dB) of the Griffin-Lim
  synthesis against the reference audio (both at 22,050 Hz). Each utterance is
  synthesised with stop-token decoding; a decoder with a cosFormer block reads
  ``M`` from each length predictor in turn (and from the true frame count,
  ``oracle``), so every predictor gets its own MCD.
- **Length error** per predictor: mean ``|M_pred - M| / M`` and mean ``|M_pred - M|``
  frames against the true mel frames, for ``ratio`` and ``lookup`` (fitted on
  the run's training texts -> frames), ``conv`` (if the run trained one) and
  ``stop`` (where stop-token decoding ended; with a cosFormer decoder, ``stop@P``
  under the ``M`` of predictor ``P``, ``stop@oracle`` under the true one).
- **Real-time factor** at batch 1: decoder seconds (the frame loop and the
  post-net, no vocoder) per second of audio, for outputs forced to last 1, 5
  and 20 s (the stop token is ignored until then); also per frame.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from leapformer.models.seq2seq_cache import EncoderOutput
from leapformer.models.tts import TransformerTTS, frames_for_seconds
from leapformer.nn.length import ConvLength
from leapformer._io import read_json_object
from leapformer.report.intervals import bootstrap_interval
from leapformer.tasks._skeleton import write_json
from leapformer.tasks.tts.data import (
    SAMPLE_RATE,
    collate,
    griffin_lim,
    load_items,
    utterance_audio,
    utterance_mel,
    write_wav,
)
from leapformer.tasks.tts.figure import plot_mels
from leapformer.tasks.tts.run import load_tts_run

log = logging.getLogger(__name__)

__all__ = ["decoder_rtf", "length_errors", "run_tts_eval", "run_tts_report", "run_tts_synth"]

RTF_SECONDS = (1.0, 5.0, 20.0)


def _encode_text_ids(ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    t, m, _, _ = collate([ids])
    return t, m


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fitted(model: TransformerTTS, kind: str, stats: dict) -> TransformerTTS:
    """``model`` with a ``ratio``/``lookup`` predictor fitted on the training statistics."""
    model.set_length_predictor(kind)
    model.fit_length_predictor(stats["texts"], stats["frames"])
    return model


def length_errors(predicted: dict[str, list[int]], true: list[int]) -> dict[str, dict]:
    """``{name: {"rel": mean |p - t| / t, "abs_frames": mean |p - t|,
    "bias": mean (p - t) / t}}`` of predicted lengths against the true ones."""
    t = np.asarray(true, np.float64)
    out = {}
    for name, p in predicted.items():
        p = np.asarray(p, np.float64)
        if p.shape != t.shape:
            raise ValueError(f"predictor {name!r}: {p.size} lengths for {t.size} utterances")
        out[name] = {"rel": float(np.mean(np.abs(p - t) / t)),
                     "abs_frames": float(np.mean(np.abs(p - t))),
                     "bias": float(np.mean((p - t) / t))}
    return out


def run_tts_synth(run: str | Path, text: str, out: str | Path, *,
                  length_predictor: str | None = None, max_seconds: float = 30.0,
                  stop_threshold: float = 0.5, griffin_lim_iters: int = 32,
                  seed: int = 0) -> dict:
    """Synthesise ``text`` with the run's best model and write ``out`` (.wav)."""
    if not str(out).endswith(".wav"):
        raise ValueError(f"--out must name a .wav file, got {out}")
    if not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
    torch.manual_seed(seed)
    model, front, cmvn, _ = load_tts_run(run)
    run = Path(run)
    if length_predictor in ("ratio", "lookup"):
        _fitted(model, length_predictor, read_json_object(run / "length_stats.json"))
    text_ids, mask = _encode_text_ids(front.encode(text))
    t0 = time.perf_counter()
    # one synthesis does not earn back a compile (tens of seconds on a CPU): eager
    mel, lengths = model.synthesize(text_ids, mask, max_frames=frames_for_seconds(max_seconds),
                                    stop_threshold=stop_threshold, compile_step=False)
    decode_s = time.perf_counter() - t0
    wav = griffin_lim(mel[0, :int(lengths[0])], cmvn, n_iter=griffin_lim_iters)
    write_wav(out, wav)
    return {"frames": int(lengths[0]), "seconds": wav.size / SAMPLE_RATE,
            "decode_s": decode_s, "out": str(out)}


@torch.no_grad()
def decoder_rtf(model: TransformerTTS, text: torch.Tensor, mask: torch.Tensor,
                seconds: tuple[float, ...], repeats: int = 1, *,
                compile_step: bool = True) -> dict:
    """``{"S": {"frames", "decode_s", "rtf", "ms_per_frame"}}``: the best of ``repeats``
    timings of :meth:`TransformerTTS.synthesize` forced to ``S`` seconds of frames
    (the stop token ignored, cosFormer's ``M`` the forced length), batch of ``text``.
    With ``compile_step`` the step is compiled first (:meth:`TransformerTTS.warm_up`),
    so that its compile is not timed. The time includes the text encoder and the
    post-net, not the vocoder."""
    if compile_step:
        model.warm_up()
    out = {}
    for s in seconds:
        n = frames_for_seconds(s)
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.synthesize(text, mask, max_frames=n, min_frames=n, target_length=n,
                             compile_step=compile_step)
            best = min(best, time.perf_counter() - t0)
        out[f"{s:g}"] = {"frames": n, "decode_s": best, "rtf": best / s,
                         "ms_per_frame": 1e3 * best / n}
    return out


@torch.no_grad()
def run_tts_eval(run: str | Path, *, split: str = "test", max_items: int = 20,
                 data: str | Path | None = None, predictors: tuple[str, ...] | None = None,
                 rtf_seconds: tuple[float, ...] = RTF_SECONDS, rtf_repeats: int = 1,
                 max_seconds: float = 30.0, griffin_lim_iters: int = 32, save_wavs: int = 2,
                 out: str | Path | None = None, seed: int = 0,
                 compile_step: bool = True) -> dict:
    """Evaluate the run's best model on ``max_items`` utterances of ``split``; writes
    ``out`` (default ``RUN/eval_{split}.json``, ``eval_{split}-eager.json`` without
    ``compile_step``) and the first ``save_wavs`` syntheses
    (with their references and a mel figure, ``<id>.png``) under ``RUN/synth/``.
    ``compile_step``: synthesise on the compiled fused decoder step (default) or the
    eager modules (``False``)."""
    from leapformer.eval import mcd

    torch.manual_seed(seed)
    model, front, cmvn, config = load_tts_run(run)
    run = Path(run)
    stats = read_json_object(run / "length_stats.json")
    if data is None and not Path(config["data"]).is_dir():
        raise FileNotFoundError(f"the data folder this run was trained on, {config['data']}, "
                                f"is gone: pass --data DIR (a {config['format_data']} folder)")
    items = load_items(data or config["data"], config["format_data"], split,
                       max_items=max_items)
    refs = [utterance_audio(it) for it in items]
    true = [int(utterance_mel(it).shape[0]) for it in items]
    texts = [front.encode(it.src_text) for it in items]
    # length predictors: ratio / lookup fitted now, the run's own conv, the stop token
    kinds = list(predictors) if predictors else ["ratio", "lookup"] + (
        ["conv"] if isinstance(model.length_predictor, ConvLength) else [])
    conv = model.length_predictor if isinstance(model.length_predictor, ConvLength) else None
    encs: list[EncoderOutput] = []
    predicted: dict[str, list[int]] = {k: [] for k in kinds}
    for ids in texts:
        t, m = _encode_text_ids(ids)
        encs.append(model.encode(t, m))
    fitted = {}
    for kind in kinds:
        if kind == "conv":
            if conv is None:
                raise ValueError(f"{run} trained no conv length predictor (--length-predictor "
                                 "conv); choose ratio or lookup")
            fitted[kind] = conv
        elif kind in ("ratio", "lookup"):
            fitted[kind] = _fitted(model, kind, stats).length_predictor
        else:
            raise ValueError(f"unknown length predictor {kind!r}; known: ratio, lookup, conv")
        model.length_predictor = fitted[kind]
        predicted[kind] = [int(model.predict_target_length(e)[0]) for e in encs]
    # synthesis: cosFormer decoders once per predictor (+ oracle), others once
    runs = ([*kinds, "oracle"] if model.needs_target_length else ["stop"])
    max_frames = frames_for_seconds(max_seconds)
    synth_dir = run / "synth"
    mcds: dict[str, list[float]] = {r: [] for r in runs}
    stop_lengths: dict[str, list[int]] = {r: [] for r in runs}
    decode_s, audio_s = 0.0, 0.0
    if compile_step:
        model.warm_up()  # the step's compile, untimed
    for i, (enc, ref) in enumerate(zip(encs, refs, strict=True)):
        for r in runs:
            target = None
            if r == "oracle":
                target = true[i]
            elif r != "stop":
                target = predicted[r][i]
            t0 = time.perf_counter()
            mel, lengths = model.synthesize(enc.src_tokens, enc.padding_mask,
                                            max_frames=max_frames, target_length=target,
                                            enc=enc, compile_step=compile_step)
            decode_s += time.perf_counter() - t0
            n = int(lengths[0])
            audio_s += n * 256 / SAMPLE_RATE
            stop_lengths[r].append(n)
            wav = griffin_lim(mel[0, :n], cmvn, n_iter=griffin_lim_iters)
            mcds[r].append(mcd(ref, wav, SAMPLE_RATE))
            if i < save_wavs:
                write_wav(synth_dir / f"{items[i].id}.{r}.wav", wav)
                if r == runs[0]:
                    write_wav(synth_dir / f"{items[i].id}.ref.wav", ref)
                    ref_mel = utterance_mel(items[i])
                    plot_mels([ref_mel, mel[0, :n] * torch.from_numpy(cmvn.std)
                               + torch.from_numpy(cmvn.mean)],
                              [f"{items[i].id}: reference",
                               f"synthesis ({model.spec}, length from {r})"],
                              synth_dir / f"{items[i].id}.png")
    for r in runs:  # where stop-token decoding ended (with cosFormer: under each M)
        predicted["stop" if r == "stop" else f"stop@{r}"] = stop_lengths[r]
    t, m = _encode_text_ids(texts[0])
    result = {
        "run": str(Path(run).resolve()),
        "spec": str(model.spec), "frames_per_step": model.cfg.frames_per_step,
        "split": split, "utterances": len(items),
        "mcd": {r: float(np.mean(v)) for r, v in mcds.items()},
        "mcd_interval": {r: list(_interval(v)) for r, v in mcds.items()},
        "mcd_per_utterance": mcds, "utterance_ids": [it.id for it in items],
        "true_frames": true, "frames_per_utterance": predicted,
        "length_error": length_errors(predicted, true),
        "decoder_rtf": decode_s / max(audio_s, 1e-9),
        "rtf_vs_length": decoder_rtf(model, t, m, tuple(rtf_seconds), rtf_repeats,
                                     compile_step=compile_step) if rtf_seconds else {},
        "compile_step": compile_step, "decoder_compiled": model.fused_step().compiled_once,
        "griffin_lim_iters": griffin_lim_iters, "threads": torch.get_num_threads(),
    }
    default = f"eval_{split}.json" if compile_step else f"eval_{split}-eager.json"
    write_json(Path(out) if out else run / default, result)
    return result


_EVAL_KEYS = ("spec", "mcd", "length_error", "rtf_vs_length", "utterances")


def find_tts_evals(paths: list[Path]) -> list[Path]:
    """The tts eval results among ``paths``: files as given, and in folders every JSON file
    (searched recursively) that holds one (whatever ``tts eval --out`` named it)."""
    found = []
    for p in map(Path, paths):
        if not p.is_dir():
            found.append(p)
            continue
        for f in sorted(p.rglob("*.json")):
            try:
                r = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(r, dict) and all(k in r for k in _EVAL_KEYS):
                found.append(f)
    unique = {}
    for f in found:  # a folder and a file inside it, both given: one evaluation
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


def _interval(values) -> tuple[float, float]:
    iv = bootstrap_interval(np.asarray(values, dtype=np.float64))
    return iv.low, iv.high


def _paired_mcd(results: list[dict]) -> list[list]:
    """Rows ``[a, b, split, length from, utterances, a - b, interval, verdict]``: each
    pair of evaluations of the same utterances with per-utterance MCDs, paired by
    utterance under the same bootstrap resamples."""
    rows = []
    for i, a in enumerate(results):
        for b in results[i + 1:]:
            ids = a.get("utterance_ids")
            if not ids or ids != b.get("utterance_ids") or a.get("split") != b.get("split"):
                continue
            for key in a.get("mcd_per_utterance", {}):
                if key not in b.get("mcd_per_utterance", {}):
                    continue
                d = np.subtract(a["mcd_per_utterance"][key], b["mcd_per_utterance"][key])
                iv = bootstrap_interval(d)
                verdict = "not separated" if iv.low <= 0 <= iv.high else \
                    f"separated, {a['_label'] if iv.mean < 0 else b['_label']} lower"
                rows.append([a["_label"], b["_label"], a["split"], key, len(ids),
                             f"{iv.mean:+.2f}", f"{iv.low:+.2f} to {iv.high:+.2f}", verdict])
    return rows


def run_tts_report(evals: list[Path]) -> str:
    """Markdown tables (MCD, length error, real-time factor) over tts eval result files
    (:func:`find_tts_evals`), one row per evaluation, split and length source."""
    if not evals:
        raise ValueError("no TTS eval results given (run leapformer tts eval first)")
    rows_mcd, rows_len, rows_rtf, results = [], [], [], []
    for path in evals:
        r = read_json_object(path)
        for key in _EVAL_KEYS:
            if key not in r:
                raise ValueError(f"{path}: not a tts eval result (no {key!r})")
        split = r.get("split", "?")
        fps = r.get("frames_per_step", 1)
        spec = r["spec"] + (f" ({fps} frames/step)" if fps > 1 else "")
        results.append({**r, "_label": spec})
        for name, v in r["mcd"].items():
            iv = r.get("mcd_interval", {}).get(name)
            rows_mcd.append([spec, split, name, f"{v:.2f}",
                             "-" if iv is None else f"{iv[0]:.2f}-{iv[1]:.2f}", r["utterances"]])
        for name, v in r["length_error"].items():
            rows_len.append([spec, split, name, f"{100 * v['rel']:.1f}",
                             f"{v['abs_frames']:.1f}", f"{100 * v['bias']:+.1f}"])
        step = "compiled" if r.get("decoder_compiled") else "eager"  # older results: eager
        for s, v in r["rtf_vs_length"].items():
            rows_rtf.append([spec, step, s, v["frames"], f"{v['rtf']:.3f}",
                             f"{v['ms_per_frame']:.2f}"])
    paired = _paired_mcd(results)
    return "\n".join([
        "## MCD (dB, Griffin-Lim, DTW)", "",
        markdown_table(["spec", "split", "length from", "MCD", "95% interval", "utterances"],
                       rows_mcd), "",
        "## Paired MCD differences (same utterances, bootstrap over them)", "",
        markdown_table(["a", "b", "split", "length from", "utterances", "a - b dB",
                        "95% interval", "verdict"], paired)
        if paired else "(no two evaluations of the same utterances)", "",
        "## Length error", "",
        markdown_table(["spec", "split", "predictor", "rel. error %", "abs. frames", "bias %"],
                       rows_len), "",
        "## Decoder real-time factor (batch 1)", "",
        markdown_table(["spec", "decoder step", "audio s", "frames", "RTF", "ms / frame"],
                       rows_rtf), ""])
