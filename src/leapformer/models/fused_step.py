"""A fused decoding step: one token through a whole decoder stack, compiled.

At batch 1 on a CPU a decoding step is bound by per-operation overhead (a few
microseconds for each of the ~50 small tensor operations of a layer), not by
arithmetic. :class:`FusedDecoderStep` writes one step of a
:class:`~leapformer.nn.Decoder` (embedding, every layer, final norm and output
head included) as one function of tensors only -- the constant-size states of
the linear family and the preallocated key/value buffers of softmax, updated in
place -- and compiles it with ``torch.compile`` (inductor's CPU C++ backend). The
shapes are static except the capacity and filled length of softmax key/value
buffers, which are marked dynamic: the step compiles once and serves every
position and every cache (no recompilation per token); a new batch size
compiles once more.

What the compiled step covers (anything else runs the modules' own eager path):

- self-attention: ``softmax`` (the new key and value written in place into the
  preallocated buffers, the filled part attended; a buffer that must grow, and
  the very first token, run eagerly) and the linear family's constant-size state
  (``linear``, ``elu``, ``performer``, ``leap``); not ``cosformer`` (its
  weights depend on lengths) nor the gated mechanisms;
- cross-attention (encoder-decoder models): the same mechanisms, read only;
- one new token per sequence, no padding among the new tokens (a padded
  prompt before is fine), inference (no gradients, eval mode).

If compiling fails, a warning is logged and the step runs eagerly from then on.
``compile_after`` runs that many steps eagerly before compiling, so that short
runs do not pay the compile time (seconds on a small CPU); once compiled, every
step runs compiled (:func:`warm_up_step` compiles a step ahead of timed work).
"""

from __future__ import annotations

import functools
import itertools
import logging
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leapformer.nn import Decoder, DecoderCache
from leapformer.nn.mechanisms import CosFormer, LeaPAttention, LinearMechanism, Mechanism, Softmax
from leapformer.ops import LinearAttentionState, decode_step_, reweighting

logger = logging.getLogger(__name__)

__all__ = ["FusedDecoderStep", "shared_step", "step_kind", "warm_up_step"]

_ids = itertools.count()
_SHARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

#: steps run eagerly before compiling, by default (a compile takes seconds; short
#: generations would not earn it back)
COMPILE_AFTER = 64
#: ``torch.compile`` backend of :func:`shared_step`
BACKEND = "inductor"
#: inductor options of the compiled step: a C++ wrapper around the kernels (less Python
#: per call)
DEFAULT_OPTIONS = {"cpp_wrapper": True}


def step_kind(mechanism: Mechanism) -> str | None:
    """``"softmax"``, ``"linear"`` or None (not covered by the compiled step)."""
    if type(mechanism) is Softmax:
        return "softmax"
    if not isinstance(mechanism, LinearMechanism) or isinstance(mechanism, CosFormer):
        return None
    own = (LinearMechanism.self_step, LeaPAttention.self_step)
    reads = (LinearMechanism.cross_read, LeaPAttention.cross_read)
    if type(mechanism).self_step not in own or type(mechanism).cross_read not in reads:
        return None  # gated mechanisms decay their state: their own step
    return "linear"


@dataclass
class _Plan:
    self_kind: str
    cross_kind: str | None


def _q_scaled(mech: LinearMechanism, q: Tensor) -> Tensor:
    return mech._scaled(q) if isinstance(mech, LeaPAttention) else q


def _leap_proportions(mech: LeaPAttention, f: Tensor) -> Tensor:
    """Both LeaP networks in one batched product per linear layer (``f [2,B,H,1,F]``:
    query and key features) -> ``[2,B,H,1]``: half the matrix products of two
    separate networks. The weights are stacked inside the step (a trace must not keep
    the eager path's cached copy on the module)."""
    lin_q = [m for m in mech.leap_q.net if isinstance(m, nn.Linear)]
    lin_k = [m for m in mech.leap_k.net if isinstance(m, nn.Linear)]
    x = f.reshape(2, -1, f.shape[-1]).to(lin_q[0].weight.dtype)
    for i, (a, b) in enumerate(zip(lin_q, lin_k)):
        # [2, R, in] x [2, in, out] as a broadcast product and a sum: at these sizes
        # (a LeaP layer is head_dim x head_dim/4) one fused loop beats a library call
        w = torch.stack((a.weight, b.weight))  # [2, out, in]
        x = (x.unsqueeze(2) * w.unsqueeze(1)).sum(-1) + torch.stack((a.bias, b.bias))[:, None]
        x = x.sigmoid() if i == len(lin_q) - 1 else x.relu()
    return x.view(f.shape[:-1])


def _linear_self(mech: LinearMechanism, q: Tensor, k: Tensor, v: Tensor, s: Tensor) -> Tensor:
    """:meth:`LinearMechanism.self_step` for one unpadded token (no positions: the
    covered mechanisms use none)."""
    q = _q_scaled(mech, q)
    f = mech.step_features(q, k).to(s.dtype)
    props = None
    if mech.reweighted:
        props = (_leap_proportions(mech, f) if isinstance(mech, LeaPAttention) else
                 LinearMechanism.step_proportions(mech, q, k, f, 0, None)).to(s.dtype)
    o = decode_step_(f, v, s, props, normalize=mech.normalize, eps=mech.eps)
    return mech._finish(o.to(q.dtype))


def _linear_cross(mech: LinearMechanism, q: Tensor, s: Tensor) -> Tensor:
    """:meth:`LinearMechanism.cross_read` of one query."""
    q = _q_scaled(mech, q)
    fq = mech.features(q, True).to(s.dtype)
    w = None
    if mech.reweighted:
        w = reweighting(mech.query_proportions(q, 0, None).to(s.dtype)).expand(*fq.shape[:3], 2)
    o = LinearAttentionState(s, mech.head_dim).read(fq, w, normalize=mech.normalize, eps=mech.eps)
    return mech._finish(o.to(q.dtype))


def _softmax_self(q, k, v, kbuf, vbuf, pad, n) -> Tensor:
    """Write ``k``, ``v`` into slot ``n - 1`` of the buffers ``[B,H,cap,D]`` and attend
    to their first ``n`` slots (``n``: a symbolic size in the trace)."""
    kbuf.narrow(2, n - 1, 1).copy_(k)
    vbuf.narrow(2, n - 1, 1).copy_(v)
    keys, values = kbuf.narrow(2, 0, n), vbuf.narrow(2, 0, n)
    if pad is None:
        return F.scaled_dot_product_attention(q, keys, values)
    pad.narrow(1, n - 1, 1).fill_(False)
    return F.scaled_dot_product_attention(q, keys, values,
                                          attn_mask=~pad.narrow(1, 0, n)[:, None, None, :])


def _softmax_cross(q, kbuf, vbuf, pad, n) -> Tensor:
    return F.scaled_dot_product_attention(q, kbuf.narrow(2, 0, n), vbuf.narrow(2, 0, n),
                                          attn_mask=~pad.narrow(1, 0, n)[:, None, None, :])


def _length(n: int, device, mark: bool) -> Tensor:
    """A tensor of size ``n`` that carries a softmax cache's length into the trace as a
    dynamic size (a plain int would be specialised: one compile per position)."""
    t = torch.empty(n, dtype=torch.int8, device=device)
    if mark:
        torch._dynamo.mark_dynamic(t, 0)
    return t


def _buffers(tensors: dict[str, Tensor], mark: bool) -> list[Tensor | None]:
    """A softmax cache's key, value and padding buffers (padding: None if never any),
    their capacity marked dynamic before compiling (it differs from cache to cache)."""
    out = [tensors["k"], tensors["v"], tensors.get("pad")]
    if mark:
        for t, axis in zip(out, (2, 2, 1)):
            if t is not None and t.shape[axis] > 1:
                torch._dynamo.mark_dynamic(t, axis)
    return out


#: state tensors of a layer's attention block in the step's arguments, by kind
_WIDTH = {"linear": 1, "softmax": 3}


def _self_attention(mha, kind: str, states, n, h: Tensor) -> Tensor:
    """One token's self-attention block (projections included) on the tensors ``states``
    (``n``: the softmax cache's length, new token included)."""
    q, k, v = mha._project_qkv(h)
    if kind == "linear":
        return mha._merge(_linear_self(mha.attention, q, k, v, *states))
    return mha._merge(_softmax_self(q, k, v, *states, n))


def _cross_attention(mha, kind: str, states, n, h: Tensor) -> Tensor:
    q = mha._project_q(h)
    if kind == "linear":
        return mha._merge(_linear_cross(mha.attention, q, *states))
    return mha._merge(_softmax_cross(q, *states, n))


class FusedDecoderStep:
    """One decoding step of ``decoder`` (see the module docstring).

    ``step(inputs, cache, positions, owner=model)`` is ``head(model, decoder(
    embed(model, inputs, positions), cache=cache))`` for one new token per
    sequence: ``inputs [B, 1]`` (token ids with ``embed``, else ``[B, 1, E]``
    vectors), ``positions [B, 1]`` (1-based, long; passed to ``embed`` only),
    ``cache`` a :class:`~leapformer.nn.DecoderCache` of ``decoder`` (updated in
    place, its counters advanced as the decoder's own path does), ``owner`` the
    model around the decoder (given at each call, so that this object holds no
    reference to it). ``embed`` and ``head`` (``hidden [B, 1, E]`` -> anything)
    are traced into the same compiled graph: pure tensor functions.

    ``compile=False`` runs the eager path only. ``backend`` is ``torch.compile``'s
    (e.g. a compile counter in tests). ``compiled`` says whether the last step ran
    the compiled function.
    """

    def __init__(self, decoder: Decoder, *, embed: Callable | None = None,
                 head: Callable | None = None, compile: bool = True,
                 compile_after: int = COMPILE_AFTER, backend="inductor",
                 options: dict | None = None):
        if not isinstance(decoder, Decoder):
            raise TypeError(f"decoder must be a leapformer.nn.Decoder, got "
                            f"{type(decoder).__name__}")
        if isinstance(compile_after, bool) or not isinstance(compile_after, int) or \
                compile_after < 0:
            raise ValueError(f"compile_after must be an int >= 0, got {compile_after!r}")
        self.decoder, self.embed, self.head = decoder, embed, head
        self.compile_after = compile_after
        self.backend = backend
        self.options = options
        self.plans: list[_Plan] | None = []
        for layer in decoder.layers:
            kind = step_kind(layer.self_attn.attention)
            cross = None if layer.cross_attn is None else step_kind(layer.cross_attn.attention)
            if kind is None or (layer.cross_attn is not None and cross is None):
                self.plans = None
                break
            self.plans.append(_Plan(kind, cross))
        self.enabled = compile and self.plans is not None
        if compile and self.plans is None:
            logger.info("fused decoding step: a mechanism of this decoder is not covered; "
                        "decoding eagerly")
        self._fn = None
        self.steps = 0
        self.compiled = False
        self.compiled_once = False

    # -- eager -------------------------------------------------------------------
    def eager(self, inputs: Tensor, cache: DecoderCache, positions: Tensor | None = None, *,
              owner=None, target_length: Tensor | int | None = None) -> Tensor:
        """The modules' own path (the reference)."""
        x = inputs if self.embed is None else self.embed(owner, inputs, positions)
        h = self.decoder(x, cache=cache, target_length=target_length)
        return h if self.head is None else self.head(owner, h)

    # -- fused -------------------------------------------------------------------
    def _fused(self, owner, inputs: Tensor, positions: Tensor | None, self_len: Tensor | None,
               cross_len: Tensor | None, states: tuple[Tensor | None, ...]) -> Tensor:
        x = inputs if self.embed is None else self.embed(owner, inputs, positions)
        n_self = None if self_len is None else self_len.shape[0]
        n_cross = None if cross_len is None else cross_len.shape[0]
        i = 0
        for layer, plan in zip(self.decoder.layers, self.plans):
            w = _WIDTH[plan.self_kind]
            x = layer.sub_self(x, functools.partial(_self_attention, layer.self_attn,
                                                    plan.self_kind, states[i:i + w], n_self))
            i += w
            if plan.cross_kind is not None:
                w = _WIDTH[plan.cross_kind]
                x = layer.sub_cross(x, functools.partial(
                    _cross_attention, layer.cross_attn, plan.cross_kind, states[i:i + w],
                    n_cross))
                i += w
            x = layer.sub_ffn(x, layer.ffn)
        if self.decoder.norm is not None:
            x = self.decoder.norm(x)
        return x if self.head is None else self.head(owner, x)

    def _gather(self, cache: DecoderCache, inputs: Tensor) -> tuple | None:
        """The tensors of the fused step, or None where the eager path must run.

        Softmax buffers are passed whole, their filled length as the size of a tensor
        marked dynamic: one compile serves every position."""
        if inputs.shape[1] != 1 or torch.is_grad_enabled() or self.decoder.training:
            return None
        if not isinstance(cache, DecoderCache) or len(cache.layers) != len(self.plans):
            return None
        B = inputs.shape[0]
        mark = not self.compiled_once
        states: list[Tensor | None] = []
        self_len = cross_len = None
        for layer, lc, plan in zip(self.decoder.layers, cache.layers, self.plans):
            c = lc.self_attn
            c.check(layer.self_attn.layer_id, "self", B, 1)  # the eager path's errors
            if plan.self_kind == "linear":
                states.append(c.tensors["s"])
            else:
                end = c.length + 1
                if end < 2 or end > c.tensors["k"].shape[2]:
                    return None  # no past key (a size-1 axis is never dynamic), or growing
                states += _buffers(c.tensors, mark)
                if self_len is None:
                    self_len = _length(end, inputs.device, mark)
                elif self_len.shape[0] != end:
                    return None
            if plan.cross_kind is not None:
                x = lc.cross_attn
                if x is None or x.batch_size != B or x.length == 0:
                    return None
                if plan.cross_kind == "linear":
                    states.append(x.tensors["s"])
                elif x.length < 2:
                    return None
                else:
                    states += _buffers(x.tensors, mark)
                    if cross_len is None:
                        cross_len = _length(x.length, inputs.device, mark)
                    elif cross_len.shape[0] != x.length:
                        return None
        return self_len, cross_len, tuple(states)

    def _prime(self, states: tuple[Tensor | None, ...]) -> None:
        """Run :func:`~leapformer.ops.decode_step_` once eagerly on scratch tensors of the
        states' layouts: it caches small constants on first use, and a trace that
        sees the cache change would be recompiled at the next step."""
        i = 0
        for layer, plan in zip(self.decoder.layers, self.plans):
            if plan.self_kind == "linear":
                s, Dv = states[i], layer.self_attn.attention.head_dim
                _, _, G, Fd, P = s.shape
                scratch = s.new_zeros(1, 1, G, Fd, P)
                props = s.new_zeros(2, 1, 1, 1) if G == 2 else None
                decode_step_(s.new_zeros(2, 1, 1, 1, Fd), s.new_zeros(1, 1, 1, Dv), scratch,
                             props)
            i += _WIDTH[plan.self_kind] + _WIDTH.get(plan.cross_kind, 0)

    def _advance(self, cache: DecoderCache) -> None:
        for lc in cache.layers:
            lc.self_attn.advance(1)
            lc.self_attn.queries += 1
            if lc.cross_attn is not None:
                lc.cross_attn.queries += 1

    def _compile(self):
        # a code object of its own: dynamo keeps its compiled entries (and their limit,
        # ``recompile_limit``) per code object, which would otherwise be shared by every
        # instance (every model, every shape) of the process
        code = FusedDecoderStep._fused.__code__
        fn = types.FunctionType(code.replace(co_name=f"_fused_{next(_ids)}"), globals(),
                                "_fused")
        kw = {} if self.backend != "inductor" else \
            {"options": dict(DEFAULT_OPTIONS if self.options is None else self.options)}
        return torch.compile(types.MethodType(fn, self), backend=self.backend, fullgraph=True,
                             **kw)

    def __call__(self, inputs: Tensor, cache: DecoderCache, positions: Tensor | None = None,
                 *, owner=None, target_length: Tensor | int | None = None) -> Tensor:
        self.compiled = False
        self.steps += 1
        gathered = None
        if self.enabled and (self._fn is not None or self.steps > self.compile_after):
            gathered = self._gather(cache, inputs)
        if gathered is None:
            return self.eager(inputs, cache, positions, owner=owner, target_length=target_length)
        if self._fn is None:
            self._prime(gathered[2])
            self._fn = self._compile()
        try:
            out = self._fn(owner, inputs, positions, *gathered)
        except _compile_errors() as exc:
            if self.compiled_once:  # it compiled before: not a first-compile failure
                raise
            # fullgraph=True: the step failed while being traced or compiled, before any
            # of its state writes ran, so the token can be run again eagerly
            cause = getattr(exc, "inner_exception", None) or exc.__cause__ or exc
            lines = [ln for ln in str(cause).splitlines() if ln.strip()] or [""]
            logger.warning("fused decoding step: torch.compile failed (%s: %s); decoding "
                           "eagerly", type(cause).__name__, lines[0][:200])
            self.enabled = False
            return self.eager(inputs, cache, positions, owner=owner, target_length=target_length)
        self._advance(cache)
        self.compiled = self.compiled_once = True
        return out


def _compile_errors() -> tuple[type[BaseException], ...]:
    """The exceptions of a failed ``torch.compile`` (tracing or backend), not of running
    compiled code: dynamo's (a failing backend comes as ``BackendCompilerFailed``) and
    inductor's lowering / C++ compile errors."""
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor import exc as inductor

    names = ("InductorError", "OperatorIssue", "LoweringException", "SubgraphLoweringException",
             "InvalidCxxCompiler", "CppWrapperCodegenError", "CppCompileError")
    return (TorchDynamoException, *(getattr(inductor, n) for n in names if hasattr(inductor, n)))


def shared_step(owner, decoder: Decoder, *, embed: Callable | None = None,
                head: Callable | None = None) -> FusedDecoderStep:
    """The :class:`FusedDecoderStep` of ``owner``'s ``decoder`` with ``embed``/``head``,
    made once per model (and kept while the model lives): its compiled code and its
    step count (:data:`COMPILE_AFTER`) carry over from call to call (``generate``,
    the simultaneous agent). Uses :data:`BACKEND`."""
    steps = _SHARED.setdefault(owner, {})
    key = (id(decoder), embed, head)
    step = steps.get(key)
    if step is None or step.decoder is not decoder:
        step = steps[key] = FusedDecoderStep(decoder, embed=embed, head=head,
                                             compile_after=COMPILE_AFTER, backend=BACKEND)
    return step


def warm_up_step(step: FusedDecoderStep | None, run: Callable[[], object]) -> bool:
    """Compile ``step`` now: call ``run()`` (an untimed decode through it) with the step
    compiling from its first call, its ``compile_after`` restored after. Evaluations
    call this before their timed loop, so that no timed item pays for the compile.
    Returns whether the step has compiled; a no-op for None, a disabled step, or one
    that compiled before."""
    if step is None or not step.enabled:
        return False
    if not step.compiled_once:
        before, step.compile_after = step.compile_after, 0
        try:
            run()
        finally:
            step.compile_after = before
    return step.compiled_once
