"""Attention mechanisms by name: a registry, so that models are assembled from
strings and adding a mechanism is one file plus one line here."""

from __future__ import annotations

from leapformer.nn.mechanisms.base import HEAD_NORMS, HeadNorm, LinearMechanism, Mechanism
from leapformer.nn.mechanisms.bigbird import BigBird
from leapformer.nn.mechanisms.cosformer import CosFormer
from leapformer.nn.mechanisms.informer import Informer
from leapformer.nn.mechanisms.leap import LeaPAttention
from leapformer.nn.mechanisms.linear import EluLinear, ReluLinear
from leapformer.nn.mechanisms.linformer import Linformer
from leapformer.nn.mechanisms.nystromformer import Nystromformer
from leapformer.nn.mechanisms.performer import Performer
from leapformer.nn.mechanisms.reformer import Reformer
from leapformer.nn.mechanisms.skyformer import Skyformer
from leapformer.nn.mechanisms.softmax import Softmax

MECHANISMS: dict[str, type[Mechanism]] = {
    cls.name: cls for cls in (Softmax, ReluLinear, EluLinear, CosFormer, LeaPAttention, Performer,
                              Linformer, Nystromformer, Skyformer, Reformer, BigBird, Informer)
}


def register_mechanism(cls: type[Mechanism]) -> type[Mechanism]:
    """Register a :class:`Mechanism` subclass under ``cls.name`` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Mechanism)):
        raise TypeError(f"register_mechanism expects a Mechanism subclass, got {cls!r}")
    if cls.name in MECHANISMS and MECHANISMS[cls.name] is not cls:
        raise ValueError(f"a mechanism named {cls.name!r} is already registered")
    MECHANISMS[cls.name] = cls
    return cls


def check_mechanism_name(name: str) -> str:
    if name not in MECHANISMS:
        raise ValueError(f"unknown attention mechanism {name!r}; known: {sorted(MECHANISMS)}")
    return name


def build_mechanism(name: str, *, num_heads: int, head_dim: int, **options) -> Mechanism:
    """Instantiate the mechanism registered as ``name``."""
    cls = MECHANISMS[check_mechanism_name(name)]
    try:
        return cls(num_heads, head_dim, **options)
    except TypeError as err:
        raise TypeError(f"bad options for mechanism {name!r}: {err}") from None


__all__ = [
    "HEAD_NORMS", "MECHANISMS", "BigBird", "CosFormer", "EluLinear", "HeadNorm", "Informer",
    "LeaPAttention", "LinearMechanism", "Linformer", "Mechanism", "Nystromformer", "Performer",
    "Reformer", "ReluLinear", "Skyformer", "Softmax", "build_mechanism", "check_mechanism_name",
    "register_mechanism",
]
