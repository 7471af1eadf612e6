"""Mechanism names in benchmark results.

Every benchmark names its rows with the names of the mechanism registry
(:data:`leapformer.nn.MECHANISMS`: ``softmax``, ``linear``, ``elu``,
``cosformer``, ``leap``, ...); where a row times one implementation of a
mechanism (softmax through torch's SDPA), the implementation is a separate
field. Results written before that used other names (the ops benchmark's
``sdpa``, ``linear_relu``, ``linear_elu`` and its ``vs_sdpa`` column); the
readers of result files pass them through :func:`canonical_result`, so old
files keep working. (No imports: the ops benchmark must not load ``leapformer.nn``.)
"""

from __future__ import annotations

__all__ = ["LEGACY_NAMES", "canonical_mechanism", "canonical_result"]

LEGACY_NAMES = {"sdpa": "softmax", "linear_relu": "linear", "linear_elu": "elu"}
"""Old benchmark mechanism name -> registry name."""
_LEGACY_KEYS = {"vs_sdpa": "vs_softmax"}
_LEGACY_IMPL = {"sdpa": "sdpa"}  # implementation an old name stood for


def canonical_mechanism(name: str) -> str:
    """The registry name of a benchmark mechanism name (old names mapped, others kept)."""
    return LEGACY_NAMES.get(name, name)


def _row(row):
    if not isinstance(row, dict):
        return row
    old = row.get("mechanism")
    out = {}
    for key, value in row.items():
        key = _LEGACY_KEYS.get(key, key)
        if key == "mechanism" and isinstance(value, str):
            value = canonical_mechanism(value)
        out[key] = value
        if key == "mechanism" and old in _LEGACY_IMPL and "impl" not in row:
            out["impl"] = _LEGACY_IMPL[old]
    return out


def canonical_result(result: dict) -> dict:
    """A copy of a benchmark result (``{"rows": [...], "config": {...}, ...}``) whose
    rows and ``config["mechanisms"]`` use registry names (:data:`LEGACY_NAMES`;
    ``vs_sdpa`` becomes ``vs_softmax``). A result with current names comes back
    equal; anything that is not such a dict is returned unchanged."""
    if not isinstance(result, dict):
        return result
    out = dict(result)
    if isinstance(result.get("rows"), list):
        out["rows"] = [_row(r) for r in result["rows"]]
    config = result.get("config")
    if isinstance(config, dict) and isinstance(config.get("mechanisms"), (list, tuple)):
        names = config["mechanisms"]
        out["config"] = dict(config, mechanisms=type(names)(
            canonical_mechanism(m) if isinstance(m, str) else m for m in names))
    return out
