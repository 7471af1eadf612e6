"""Simultaneous wait-k speech translation of a :class:`~leapformer.models.speech.SpeechSeq2Seq`.

The speech counterpart of :mod:`leapformer.models.simul`. The source arrives
as audio samples; 80-bin Kaldi filterbank frames (10 ms shift, global CMVN)
are computed as soon as their 25 ms window is complete (each frame depends on
its own window only, so streamed frames equal those of the whole file).

**Policy**: wait-k on *pre-decision chunks* of a fixed ratio (Ma et al. 2020,
SimulST; the official configs use 7 or 9 encoder states): one read unit is
``ratio`` encoder states (``4 * ratio`` frames, 280 ms of audio at ratio 7).
Target token ``t`` (1-based) is written once ``min((k + t - 1) * ratio, |h|)``
encoder states are available, ``|h|`` being all of them once the source has
ended -- the prefix that wait-k training gives decoder position ``t``
(:func:`leapformer.ops.waitk_prefix` with ``ratio``). EOS is banned until the
source has ended; then the agent writes until EOS or ``floor(max_len_a * |h|
+ max_len_b)`` tokens.

**Encoders** (``encoder=``): ``"incremental"`` needs a causal encoder; each new
frame goes once through the causal subsampler and each new encoder state once
through the encoder and into every decoder layer's cross-attention state
(running prefix sums for the linear family, appended keys/values for softmax;
never an ``N x M`` tensor). ``"reencode"`` (the official agent's baseline)
encodes the whole prefix again (bidirectionally) before each write that has new
audio and rebuilds the cross-attention states. The decoder self-attention state
carries over in both.

**Units** (SimulEval's for speech input): ``delays[i]`` is the milliseconds of
source audio read when token ``i + 1`` was written; ``compute_ms[i]`` the
cumulative compute time since the utterance started (features, encoder,
decoder), so SimulEval's computation-aware elapsed time is ``delays[i] +
compute_ms[i]``.

:class:`SpeechSimulSession` holds one utterance's state and is driven either by
:meth:`SpeechSimulAgent.translate` (the built-in runner: the audio is read in
segments of ``segment_ms``) or by the SimulEval agent of
:mod:`leapformer.tasks.st.simuleval_agent` (segments as SimulEval sends them).
cosFormer needs whole-source lengths (an oracle in streaming); this agent does
not take models that use cosFormer in the decoder or cross-attention.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from leapformer.data.speech.cmvn import GlobalCMVN
from leapformer.data.speech.features import kaldi_fbank, n_fbank_frames
from leapformer.models.seq2seq_cache import Seq2SeqCache
from leapformer.models.fused_step import warm_up_step
from leapformer.models.simul import ENCODER_MODES, decode_next, decoder_step
from leapformer.models.speech import SpeechSeq2Seq
from leapformer.nn.mechanisms import CosFormer

logger = logging.getLogger(__name__)

__all__ = ["SpeechSimulAgent", "SpeechSimulResult", "SpeechSimulSession"]

FRAME_SHIFT = 0.010  # s
FRAME_LENGTH = 0.025  # s


@dataclass
class SpeechSimulResult:
    """One simultaneous translation: ``tokens`` (no BOS/EOS), ``delays`` (ms of audio
    read at each write), ``compute_ms`` (cumulative compute at each write),
    ``source_ms`` (the utterance's duration), ``finished`` (EOS ended it),
    ``encoder_s`` / ``decoder_s`` / ``feature_s`` (seconds), ``decoder_steps``."""

    tokens: list[int]
    delays: list[float]
    compute_ms: list[float]
    source_ms: float
    finished: bool
    encoder_s: float = 0.0
    decoder_s: float = 0.0
    feature_s: float = 0.0
    decoder_steps: int = 0

    @property
    def elapsed(self) -> list[float]:
        """Computation-aware times (ms): delay + compute so far (SimulEval's ``elapsed``)."""
        return [d + c for d, c in zip(self.delays, self.compute_ms, strict=True)]


def _positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return v


class SpeechSimulAgent:
    """Wait-``k`` agent on pre-decision chunks of ``ratio`` encoder states (module
    docstring). ``cmvn``: the run's global CMVN (None: raw features);
    ``sample_rate``: of the audio given; ``segment_ms``: audio per read of
    :meth:`translate` (default one pre-decision chunk, ``40 * ratio`` ms).
    ``compile_step`` (default on): decoder steps run the model's compiled
    :class:`~leapformer.models.fused_step.FusedDecoderStep`, as in the text agent
    (compiled after the model's first ``COMPILE_AFTER`` steps; eager where
    compiling fails or a mechanism is not covered); ``False``: eager only."""

    def __init__(self, model: SpeechSeq2Seq, k: int, *, ratio: int = 7,
                 encoder: str = "incremental", cmvn: GlobalCMVN | None = None,
                 sample_rate: int = 16000, segment_ms: float | None = None,
                 max_len_a: float = 0.5, max_len_b: float = 10, compile_step: bool = True):
        if not isinstance(model, SpeechSeq2Seq):
            raise TypeError(f"model must be a SpeechSeq2Seq, got {type(model).__name__}")
        self.step = decoder_step(model, compile_step)
        self.k, self.ratio = _positive_int("k", k), _positive_int("ratio", ratio)
        self.sample_rate = _positive_int("sample_rate", sample_rate)
        if encoder not in ENCODER_MODES:
            raise ValueError(f"encoder must be one of {ENCODER_MODES}, got {encoder!r}")
        if encoder == "incremental" and not model.encoder.causal:
            raise ValueError("encoder='incremental' needs a causal encoder (SpeechSeq2Seq(..., "
                             "causal_encoder=True)); use encoder='reencode' (--encoder reencode) "
                             "for a bidirectional one")
        cos = [n for n, m in model.named_modules() if isinstance(m, CosFormer)
               and (n.startswith("decoder") or encoder == "incremental")]
        if cos:
            raise ValueError(f"the speech agent does not take cosFormer blocks that need "
                             f"whole-source lengths (found in {cos[0]})")
        if cmvn is not None and (not isinstance(cmvn, GlobalCMVN) or cmvn.bins != model.input_dim):
            raise ValueError(f"cmvn must be a GlobalCMVN of {model.input_dim} bins, got {cmvn!r}")
        for name, v in (("max_len_a", max_len_a), ("max_len_b", max_len_b)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if max_len_a < 0:
            raise ValueError(f"max_len_a must be >= 0, got {max_len_a!r}")
        if segment_ms is None:
            segment_ms = 1000 * FRAME_SHIFT * model.num_frames_per_state * ratio
        if not (isinstance(segment_ms, (int, float)) and segment_ms > 0):
            raise ValueError(f"segment_ms must be a positive number, got {segment_ms!r}")
        self.model, self.encoder, self.cmvn = model, encoder, cmvn
        self.segment_ms = float(segment_ms)
        self.max_len_a, self.max_len_b = float(max_len_a), float(max_len_b)

    def warm_up(self, seconds: float = 10.0) -> bool:
        """Compile the decoder step now, on an untimed translation of ``seconds`` of
        noise, so that no timed utterance pays for the compile (evaluations call it
        before their loop). Returns whether the step is compiled; a no-op without
        ``compile_step`` or once compiled."""
        def run():
            noise = np.random.default_rng(0).standard_normal(int(seconds * self.sample_rate))
            self.translate((0.1 * noise).astype(np.float32))

        return warm_up_step(self.step, run)

    def session(self) -> SpeechSimulSession:
        """A fresh per-utterance state (model put in eval mode until the session ends:
        see :meth:`SpeechSimulSession.close`)."""
        return SpeechSimulSession(self)

    @torch.no_grad()
    def translate(self, samples) -> SpeechSimulResult:
        """Translate one utterance (``samples``: 1-D float audio in [-1, 1) at
        ``sample_rate``), read ``segment_ms`` at a time."""
        x = _samples(samples)
        if x.size == 0:
            raise ValueError("samples is empty: an utterance needs audio")
        seg = max(1, math.ceil(self.segment_ms / 1000 * self.sample_rate))
        s = self.session()
        tokens, delays, compute = [], [], []
        pos = 0
        try:
            while True:
                while not s.can_write():
                    s.push(x[pos:pos + seg], finished=pos + seg >= x.size)
                    pos += seg
                tok = s.write()
                if tok is None:
                    break
                tokens.append(tok)
                delays.append(s.read_ms)
                compute.append(s.compute_s * 1e3)
        finally:
            s.close()
        logger.debug("speech simul wait-%d/%d (%s): %.0f ms, %d tokens", self.k, self.ratio,
                     self.encoder, s.read_ms, len(tokens))
        return SpeechSimulResult(tokens, delays, compute, 1000 * x.size / self.sample_rate,
                                 s.finished, encoder_s=s.encoder_s, decoder_s=s.decoder_s,
                                 feature_s=s.feature_s, decoder_steps=s.steps)


def _samples(samples) -> np.ndarray:
    if isinstance(samples, Tensor):
        samples = samples.detach().cpu().numpy()
    x = np.asarray(samples)
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"samples must be a 1-D float array, got {x.dtype} {list(x.shape)}")
    return x.astype(np.float32, copy=False)


class SpeechSimulSession:
    """One utterance being read and translated (see :class:`SpeechSimulAgent`).

    ``push(samples, finished)`` adds audio; ``can_write()`` says whether the
    policy writes now; ``write()`` returns the next token id, or None when the
    output has ended (EOS or the length limit). ``read_ms``: audio read so far;
    ``compute_s``: compute spent so far. The model is in eval mode while the
    session runs; its previous mode comes back when the output ends or at
    :meth:`close` (also a context manager).
    """

    def __init__(self, agent: SpeechSimulAgent):
        self.agent = agent
        model = self.model = agent.model
        self._was_training: bool | None = model.training
        model.eval()
        self.audio = np.zeros(0, np.float32)
        self.frames: list[Tensor] = []
        self.n_frames = 0
        self.encoded_frames = 0
        self.source_finished = False
        self.finished = False  # EOS written
        self.done = False      # no more output
        self.tokens: list[int] = []
        self.compute_s = self.encoder_s = self.decoder_s = self.feature_s = 0.0
        self.steps = 0
        self.states = 0
        self.stream = model.new_stream() if agent.encoder == "incremental" else None
        dec = model.decoder.new_cache(1)
        self.cache = Seq2SeqCache(dec, None, 1)
        device = model.tgt_embed.weight.device
        self.last = torch.full((1, 1), model.cfg.bos_id, dtype=torch.long, device=device)

    def close(self) -> None:
        """End the session: the model goes back to the mode it had before (idempotent)."""
        if self._was_training is not None:
            self.model.train(self._was_training)
            self._was_training = None

    def __enter__(self) -> SpeechSimulSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def read_ms(self) -> float:
        return 1000.0 * self.audio.size / self.agent.sample_rate

    # -- reading ------------------------------------------------------------------
    def push(self, samples, *, finished: bool = False) -> None:
        """Append ``samples`` (1-D float, may be empty); ``finished``: the source has ended."""
        if self.source_finished:
            raise ValueError("push after the source has finished")
        x = _samples(samples)
        t0 = time.perf_counter()
        self.audio = np.concatenate([self.audio, x])
        sr = self.agent.sample_rate
        total = n_fbank_frames(self.audio.size, sr)
        if total > self.n_frames:
            shift, length = int(sr * FRAME_SHIFT), int(sr * FRAME_LENGTH)
            start = self.n_frames * shift
            chunk = self.audio[start:(total - 1) * shift + length]
            f = kaldi_fbank(chunk, sr, n_bins=self.model.input_dim)
            if self.agent.cmvn is not None:
                f = self.agent.cmvn(f)
            self.frames.append(f.to(self.model.tgt_embed.weight.device))
            self.n_frames = total
        self.source_finished = bool(finished)
        dt = time.perf_counter() - t0
        self.feature_s += dt
        self.compute_s += dt

    def available_states(self) -> int:
        return int(self.model.encoder_lengths(self.n_frames))

    def can_write(self) -> bool:
        """True when the policy writes (or ends) now, False when it must read more."""
        if self.done or self.source_finished:
            return True
        need = (self.agent.k + len(self.tokens)) * self.agent.ratio
        return self.available_states() >= need

    # -- encoding -----------------------------------------------------------------
    def _features(self) -> Tensor:
        if len(self.frames) > 1:
            self.frames = [torch.cat(self.frames)]
        return self.frames[0]

    def _sync(self) -> None:
        """Bring the cross-attention states up to the frames read."""
        if self.n_frames == self.encoded_frames:
            return
        model, dec = self.model, self.cache.decoder
        feats = self._features()
        t0 = time.perf_counter()
        if self.stream is not None:
            mem = model.stream_encode(feats[None, self.encoded_frames:], self.stream)
            if mem.shape[1]:
                model.decoder.extend_memory(dec, mem)
            self.states = self.stream.states
        else:
            enc = model.encode(feats[None])
            for layer, lc in zip(model.decoder.layers, dec.layers, strict=True):
                queries = lc.cross_attn.queries
                lc.cross_attn = layer.cross_attn.new_cache(1, cross=True)
                lc.cross_attn.queries = queries
            model.decoder.extend_memory(dec, enc.memory, source_length=enc.src_lengths)
            self.states = enc.memory.shape[1]
        self.encoded_frames = self.n_frames
        dt = time.perf_counter() - t0
        self.encoder_s += dt
        self.compute_s += dt

    # -- writing ------------------------------------------------------------------
    def write(self) -> int | None:
        """The next target token (policy must allow it: :meth:`can_write`), or None at the end."""
        if self.done:
            return None
        if not self.can_write():
            raise ValueError("the policy reads now: push more audio first")
        if self.n_frames == 0:  # a source shorter than one window: nothing to attend to
            self.done = True
            self.close()
            return None
        self._sync()
        model, cfg = self.model, self.model.cfg
        t0 = time.perf_counter()
        logits = decode_next(model, self.agent.step, self.last, self.cache)
        lp = F.log_softmax(logits.double(), dim=-1)
        lp[:, [cfg.bos_id, cfg.pad_id]] = -math.inf
        if not self.source_finished:
            lp[:, cfg.eos_id] = -math.inf
        tok = int(lp.argmax(-1))
        dt = time.perf_counter() - t0
        self.decoder_s += dt
        self.compute_s += dt
        self.steps += 1
        if tok == cfg.eos_id:
            self.finished = self.done = True
            self.close()
            return None
        self.tokens.append(tok)
        self.last = torch.tensor([[tok]], dtype=torch.long, device=self.last.device)
        if self.source_finished:
            limit = max(1, math.floor(self.agent.max_len_a * self.states + self.agent.max_len_b
                                      + 1e-9))
            if len(self.tokens) >= limit:
                self.done = True
                self.close()
        return tok
