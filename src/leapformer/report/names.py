"""Names of compared runs: a mechanism with its options (``leap+head_norm=rms``), so that
variants of one mechanism are grouped, filed and reported apart."""

from __future__ import annotations


def mechanism_label(attention: str, options: dict | None = None) -> str:
    """``attention`` alone, or with its options sorted by key: ``leap+head_norm=rms``."""
    if not options:
        return attention
    return attention + "+" + ",".join(f"{k}={options[k]}" for k in sorted(options))
