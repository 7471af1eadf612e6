"""Text-to-speech decoding speed (issue: TTS): how the cost of autoregressive mel
synthesis grows with the utterance, per attention spec, at batch 1.

Method: a :class:`~leapformer.models.tts.TransformerTTS` with random weights at a
preset's sizes (timing does not depend on the weights) synthesises a forced number of
frames (``S`` seconds at 22,050 Hz, hop 256; the stop token ignored, cosFormer's
``M`` the forced length) from a random text of about :data:`SYMBOLS_PER_SECOND`
symbols per second of audio (espeak-ng's English rate), so the cross-attention reads
a text as long as the speech. The time covers the text encoder, the frame loop and
the post-net (no vocoder). Per (frames per step, duration) the specs run round-robin, ``reps`` times
each after a warm-up that also compiles the step; medians are reported:

- decode seconds, the real-time factor (decode seconds per second of audio) and ms
  per frame;
- the baseline spec's (the first one's) time over this spec's: the speed-up.

Decoder steps run the model's compiled fused step
(:meth:`~leapformer.models.tts.TransformerTTS.fused_step`; cosFormer is not covered
and runs eagerly) or, with ``compile_step=False``, the eager modules.
"""

from __future__ import annotations

import logging
import statistics
import time

import torch

from leapformer.bench._common import table_header
from leapformer.models.tts import TransformerTTS, TTSConfig, frames_for_seconds

log = logging.getLogger(__name__)

__all__ = ["SYMBOLS_PER_SECOND", "build_tts", "measure", "render_markdown"]

SYMBOLS_PER_SECOND = 15
VOCAB = 60


def build_tts(spec: str, preset: str = "lite", frames_per_step: int = 1,
              seed: int = 0) -> TransformerTTS:
    """An untrained TTS model at ``preset``'s sizes, in eval mode, pre-net dropout on
    (as synthesis runs it)."""
    if preset not in ("tiny", "lite", "paper"):
        raise ValueError(f"preset must be one of tiny, lite, paper, got {preset!r}")
    torch.manual_seed(seed)
    cfg = TTSConfig.preset(preset, VOCAB, frames_per_step=frames_per_step)
    return TransformerTTS(cfg, spec).eval()


def _text(seconds: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    n = max(2, round(SYMBOLS_PER_SECOND * seconds))
    return torch.randint(3, VOCAB, (1, n), generator=g)


def _synth(model: TransformerTTS, text: torch.Tensor, frames: int, compile_step: bool) -> float:
    t0 = time.perf_counter()
    model.synthesize(text, None, max_frames=frames, min_frames=frames, target_length=frames,
                     compile_step=compile_step)
    return time.perf_counter() - t0


def measure(specs: dict[str, str], seconds: list[float], *, frames_per_step=(1,),
            reps: int = 3, preset: str = "lite", compile_step: bool = True,
            progress=None) -> list[dict]:
    """One row per (frames per step, duration, spec name); see the module docstring.
    ``specs``: display name -> attention spec; the first is the baseline."""
    if not specs or not seconds:
        raise ValueError("need at least one spec and one duration")
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps must be a positive int, got {reps!r}")
    bad = [s for s in seconds if not s > 0]
    if bad:
        raise ValueError(f"seconds must be positive, got {bad}")
    bad = [r for r in frames_per_step if isinstance(r, bool) or not isinstance(r, int) or r < 1]
    if bad or not frames_per_step:
        raise ValueError(f"frames_per_step must be positive ints, got {list(frames_per_step)}")
    rows = []
    with torch.no_grad():
        for r in frames_per_step:
            models = {n: build_tts(s, preset, r) for n, s in specs.items()}
            for model in models.values():  # the step's compile, then a warm-up
                if compile_step:
                    model.warm_up()
                _synth(model, _text(1.0, 0), 8 * r, compile_step)
            for sec in seconds:
                frames, text = frames_for_seconds(sec), _text(sec, 1)
                times: dict[str, list[float]] = {n: [] for n in models}
                for _ in range(reps):
                    for name, model in models.items():
                        times[name].append(_synth(model, text, frames, compile_step))
                base = None
                for name, model in models.items():
                    t = statistics.median(times[name])
                    base = t if base is None else base
                    rows.append({"spec": name, "attention": specs[name], "preset": preset,
                                 "frames_per_step": r, "seconds": sec, "frames": frames,
                                 "symbols": int(text.shape[1]), "reps": reps,
                                 "decode_s": t, "rtf": t / sec, "ms_per_frame": 1e3 * t / frames,
                                 "speedup_vs_baseline": base / t,
                                 "compile_step": compile_step,
                                 "compiled": model.fused_step().compiled_once})
                    log.info("%s r=%d %g s: %.3f s", name, r, sec, t)
                if progress is not None:
                    progress(1)
    return rows


def render_markdown(rows: list[dict], info: dict, *, command: str, load: str) -> str:
    """The results table with the machine and the command."""
    if not rows:
        raise ValueError("rows is empty: nothing was measured")
    first = rows[0]
    lines = [*table_header("Text-to-speech decoding speed (CPU)", info, command=command, load=load),
             f"- method: untrained `{first['preset']}`-size TransformerTTS, batch 1, a forced "
             f"number of frames (22,050 Hz, hop 256) from a random text of "
             f"{SYMBOLS_PER_SECOND} symbols per second of audio; text encoder, frame loop and "
             f"post-net, no vocoder; median of {first['reps']} runs, specs interleaved; baseline: "
             f"{first['spec']} (speed-up = its time / the row's)",
             "- decoder step: " + ("the compiled fused step (`TransformerTTS.fused_step`; "
                                   "cosFormer runs eagerly)" if first["compile_step"]
                                   else "the eager modules"), "",
             "| spec | frames per step | audio s | frames | decode s | RTF | ms/frame | "
             "speed-up | compiled |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['spec']} | {r['frames_per_step']} | {r['seconds']:g} | "
                     f"{r['frames']} | {r['decode_s']:.3f} | {r['rtf']:.3f} | "
                     f"{r['ms_per_frame']:.2f} | {r['speedup_vs_baseline']:.2f}x | "
                     f"{'yes' if r['compiled'] else 'no'} |")
    return "\n".join(lines) + "\n"
