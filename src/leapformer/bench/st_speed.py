"""Simultaneous speech translation speed (issue: SimulST): how the compute of the
wait-k speech agent grows with the utterance, per attention spec.

Method: a :class:`~leapformer.models.speech.SpeechSeq2Seq` with random weights at a
preset's sizes (timing does not depend on the weights) and a causal encoder;
:class:`~leapformer.models.speech_simul.SpeechSimulAgent` (wait-``k`` on chunks of
``ratio`` encoder states, one read per chunk) translates noise audio of each
duration. The output is the tokens the policy writes while reading, plus one
(``max_len_a = max_len_b = 0``), so every spec writes the same number and the
latency columns compare like with like. Per (duration, encoder mode) the specs run
round-robin, ``reps`` times each after one warm-up; medians are reported:

- encoder ms per second of audio, decoder ms per step (one target token);
- AL (ms of audio, no compute) and the computation-aware AL_CA (SimulEval's
  ``elapsed``: audio read plus compute so far), and their difference, the lag the
  compute adds;
- the spec's AL_CA over the baseline spec's (the first one) in the same process.

Decoder steps run the compiled fused step (``compile_step``, the agent's default;
compiled on the agent's untimed warm-up) or, with
``compile_step=False``, the eager modules.
"""

from __future__ import annotations

import logging
import statistics

import numpy as np
import torch

from leapformer.bench._common import table_header
from leapformer.eval import computation_aware_scores, latency_scores
from leapformer.models.seq2seq import SEQ2SEQ_PRESETS, Seq2SeqConfig
from leapformer.models.speech import SpeechSeq2Seq
from leapformer.models.speech_simul import SpeechSimulAgent

log = logging.getLogger(__name__)

__all__ = ["SAMPLE_RATE", "build_model", "measure", "render_markdown"]

SAMPLE_RATE = 16000


def build_model(spec: str, preset: str = "lite", vocab: int = 1000, seed: int = 0,
                conv_channels: int = 512) -> SpeechSeq2Seq:
    """An untrained speech model with a causal encoder at ``preset``'s sizes."""
    if preset not in SEQ2SEQ_PRESETS:
        raise ValueError(f"preset must be one of {sorted(SEQ2SEQ_PRESETS)}, got {preset!r}")
    torch.manual_seed(seed)
    cfg = Seq2SeqConfig(src_vocab_size=4, tgt_vocab_size=vocab,
                        **{**SEQ2SEQ_PRESETS[preset], "positions": "sinusoidal"})
    return SpeechSeq2Seq(cfg, spec, causal_encoder=True, conv_channels=conv_channels).eval()


def _once(agent: SpeechSimulAgent, audio: np.ndarray) -> dict:
    r = agent.translate(audio)
    al = latency_scores(r.delays, r.source_ms)["AL"]
    ca = computation_aware_scores(r.elapsed, r.source_ms)["AL_CA"]
    seconds = r.source_ms / 1000
    return {"encoder_ms_per_s": 1000 * r.encoder_s / seconds,
            "decoder_ms_per_step": 1000 * r.decoder_s / max(1, r.decoder_steps),
            "compute_ms_per_s": 1000 * (r.encoder_s + r.decoder_s + r.feature_s) / seconds,
            "AL": al, "AL_CA": ca, "tokens": len(r.tokens)}


def measure(specs: dict[str, str], durations: list[float], *, encoders=("incremental",),
            k: int = 5, ratio: int = 7, reps: int = 3, preset: str = "lite",
            compile_step: bool = True, progress=None) -> list[dict]:
    """One row per (spec name, duration, encoder mode); see the module docstring.
    ``specs``: display name -> attention spec; the first is the baseline."""
    if not specs or not durations:
        raise ValueError("need at least one spec and one duration")
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps must be a positive int, got {reps!r}")
    bad = [s for s in durations if not s > 0]
    if bad:
        raise ValueError(f"durations must be positive seconds, got {bad}")
    models = {name: build_model(spec, preset) for name, spec in specs.items()}
    rng = np.random.default_rng(0)
    rows = []
    for seconds in durations:
        audio = (0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
        for mode in encoders:
            agents = {n: SpeechSimulAgent(m, k, ratio=ratio, encoder=mode, max_len_a=0,
                                          max_len_b=0, compile_step=compile_step)
                      for n, m in models.items()}
            for agent in agents.values():  # the step's compile (once per model), warm-up
                agent.warm_up()
                agent.translate(audio[: SAMPLE_RATE])
            samples: dict[str, list[dict]] = {n: [] for n in agents}
            for _ in range(reps):
                for name, agent in agents.items():
                    with torch.no_grad():
                        samples[name].append(_once(agent, audio))
            base = None
            for name in agents:
                row = {"spec": name, "attention": specs[name], "preset": preset,
                       "audio_s": seconds, "encoder": mode, "k": k, "ratio": ratio, "reps": reps,
                       "compile_step": compile_step,
                       "compiled": bool(agents[name].step is not None
                                        and agents[name].step.compiled_once)}
                for key in samples[name][0]:
                    row[key] = statistics.median(s[key] for s in samples[name])
                row["compute_lag_ms"] = row["AL_CA"] - row["AL"]
                base = row if base is None else base
                row["AL_CA_vs_baseline"] = row["AL_CA"] / base["AL_CA"]
                rows.append(row)
                log.info("%s %.0f s %s: AL_CA %.0f ms", name, seconds, mode, row["AL_CA"])
            if progress is not None:
                progress(1)
    return rows


def render_markdown(rows: list[dict], info: dict, *, command: str, load: str) -> str:
    """The results table with the machine and the command."""
    if not rows:
        raise ValueError("rows is empty: nothing was measured")
    base = rows[0]["spec"]
    lines = [*table_header("Simultaneous speech translation speed (CPU)", info,
                           command=command, load=load),
             f"- method: untrained `{rows[0]['preset']}`-size speech models (causal encoder), "
             f"wait-k on chunks of {rows[0]['ratio']} encoder states, noise audio; the tokens "
             "written while reading (+1), the same for every spec; median of "
             f"{rows[0]['reps']} runs, specs interleaved; baseline: {base}",
             "- decoder step: " + ("the compiled fused step" if rows[0].get("compile_step")
                                   else "the eager modules") + " (see "
             "`leapformer.models.fused_step`); compiled column: whether the spec's step ran "
             "compiled",
             "- AL and AL_CA in ms of source audio (SimulEval definitions); compute lag = "
             "AL_CA - AL", "",
             "| spec | k | audio s | encoder | tokens | encoder ms per s audio | decoder ms/step | "
             "compute ms per s audio | AL | AL_CA | compute lag | AL_CA / baseline | compiled |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['spec']} | {r['k']} | {r['audio_s']:g} | {r['encoder']} | "
                     f"{r['tokens']:.0f} | "
                     f"{r['encoder_ms_per_s']:.1f} | {r['decoder_ms_per_step']:.2f} | "
                     f"{r['compute_ms_per_s']:.1f} | {r['AL']:.0f} | {r['AL_CA']:.0f} | "
                     f"{r['compute_lag_ms']:.0f} | {r['AL_CA_vs_baseline']:.3f} | "
                     f"{'yes' if r.get('compiled') else 'no'} |")
    return "\n".join(lines) + "\n"
