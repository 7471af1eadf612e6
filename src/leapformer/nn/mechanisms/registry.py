"""The mechanism registry: name -> :class:`~leapformer.nn.mechanisms.base.Mechanism` class.

Every built-in mechanism module registers its classes with the
:func:`register_mechanism` decorator when it is imported, and
``leapformer.nn.mechanisms`` imports them all; so adding a mechanism is one
file (the class, decorated) plus one import line in that package's
``__init__``. :data:`MECHANISMS` keeps the order of registration.
"""

from __future__ import annotations

from leapformer.nn.mechanisms.base import Mechanism

__all__ = ["MECHANISMS", "build_mechanism", "check_mechanism_name", "register_mechanism"]

MECHANISMS: dict[str, type[Mechanism]] = {}


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
    """Instantiate the mechanism registered as ``name``. An unknown option, or one of the
    wrong type (each constructor checks the types of its options where it takes them,
    :func:`~leapformer.nn.mechanisms.base.check_option`), is a one-line ``TypeError``
    naming the mechanism and the option, e.g. ``bad options for mechanism 'leap':
    step_down must be a positive int, got 'abc'``."""
    cls = MECHANISMS[check_mechanism_name(name)]
    try:
        return cls(num_heads, head_dim, **options)
    except TypeError as err:
        raise TypeError(f"bad options for mechanism {name!r}: {err}") from None
