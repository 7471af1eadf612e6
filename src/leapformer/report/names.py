"""Names of compared runs: a mechanism with its options (``leap+head_norm=rms``), so that
variants of one mechanism are grouped, filed and reported apart."""

from __future__ import annotations

import json


def _value(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), sort_keys=True,
                                                   default=str)


def mechanism_label(attention: str, options: dict | None = None) -> str:
    """``attention`` alone, or with its options sorted by key: ``leap+head_norm=rms``
    (strings as they are, other values as JSON: ``q_scale=true``, ``head_norm=null``)."""
    if not options:
        return attention
    return attention + "+" + ",".join(f"{k}={_value(options[k])}" for k in sorted(options))
