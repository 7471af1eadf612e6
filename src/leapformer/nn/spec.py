"""Modular linearized attention (MLA, docs/math.md §2): a mechanism per block kind.

An encoder-decoder has three kinds of attention block: encoder self-attention
(``enc``), decoder self-attention (``dec``, causal) and decoder cross-attention
(``cross``). :class:`AttentionSpec` names a mechanism for each, and optionally
for single layers (the MLA paper's future work). As a string, for the CLI::

    "leap"                                   every block
    "enc=cosformer,dec=linear,cross=cosformer"
    "enc=leap,dec=linear,cross=softmax,dec.0=softmax"   layer 0 of the decoder

A block a spec string does not name gets ``softmax`` (logged as a warning);
``Encoder``/``Decoder`` reject per-layer overrides of layers they do not have.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from leapformer.nn.mechanisms import check_mechanism_name

log = logging.getLogger(__name__)

BLOCKS = ("enc", "dec", "cross")
_ALIASES = {"enc": "enc", "encoder": "enc", "dec": "dec", "decoder": "dec", "cross": "cross"}


@dataclass(frozen=True)
class AttentionSpec:
    """Mechanism names per block kind, with per-layer overrides ``{(block, layer): name}``."""

    enc: str = "softmax"
    dec: str = "softmax"
    cross: str = "softmax"
    layers: dict[tuple[str, int], str] = field(default_factory=dict)

    def __post_init__(self):
        for block in BLOCKS:
            check_mechanism_name(getattr(self, block))
        for (block, layer), name in self.layers.items():
            if block not in BLOCKS:
                raise ValueError(f"unknown attention block {block!r}; known: {BLOCKS}")
            if not isinstance(layer, int) or layer < 0:
                raise ValueError(f"layer index must be a non-negative int, got {layer!r}")
            check_mechanism_name(name)

    def mechanism(self, block: str, layer: int | None = None) -> str:
        """The mechanism of ``block`` (``enc``/``dec``/``cross``), at ``layer`` if overridden."""
        block = _ALIASES.get(block, block)
        if block not in BLOCKS:
            raise ValueError(f"unknown attention block {block!r}; known: {BLOCKS}")
        return self.layers.get((block, layer), getattr(self, block))

    def check_layers(self, block: str, num_layers: int) -> None:
        """ValueError if a per-layer override of ``block`` names a layer that a stack of
        ``num_layers`` layers does not have (``dec.99`` on a 2-layer decoder)."""
        block = _ALIASES.get(block, block)
        bad = sorted(i for b, i in self.layers if b == block and i >= num_layers)
        if bad:
            stack = "encoder" if block == "enc" else "decoder"
            have = f"layers 0-{num_layers - 1}" if num_layers else "no layers"
            raise ValueError(f"attention spec {str(self)!r} names {block}.{bad[0]} but the "
                             f"{stack} has {num_layers} layers ({have})")

    @classmethod
    def parse(cls, text: str) -> "AttentionSpec":
        """Parse ``"name"`` or comma-separated ``block=name`` / ``block.layer=name``."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"attention spec must be a non-empty string, got {text!r}")
        text = text.strip()
        if "=" not in text:
            name = check_mechanism_name(text)
            return cls(enc=name, dec=name, cross=name)
        kinds: dict[str, str] = {}
        layers: dict[tuple[str, int], str] = {}
        for part in text.split(","):
            lhs, eq, name = (s.strip() for s in part.partition("="))
            if not eq or not lhs or not name:
                raise ValueError(f"bad attention spec entry {part.strip()!r} in {text!r}; "
                                 "expected block=name, e.g. enc=leap")
            block, dot, layer = lhs.partition(".")
            if block not in _ALIASES:
                raise ValueError(f"unknown attention block {block!r} in {text!r}; "
                                 f"known: {sorted(_ALIASES)}")
            block = _ALIASES[block]
            check_mechanism_name(name)
            if dot:
                if not layer.isdigit():
                    raise ValueError(f"bad layer index {layer!r} in {part.strip()!r}")
                layers[(block, int(layer))] = name
            else:
                kinds[block] = name
        unnamed = [b for b in BLOCKS if b not in kinds]
        if unnamed:
            log.warning("attention spec %r names no mechanism for %s: using %s (the default)",
                        text, ", ".join(unnamed), cls.enc)
        return cls(**kinds, layers=layers)

    def __str__(self) -> str:
        parts = [f"{b}={getattr(self, b)}" for b in BLOCKS]
        parts += [f"{b}.{i}={n}" for (b, i), n in sorted(self.layers.items())]
        return ",".join(parts)
