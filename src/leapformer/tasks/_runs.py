"""Reading a task's run folder: the checks every ``load_*_run`` shares (result files:
:func:`leapformer._io.read_json_object`)."""

from __future__ import annotations

import json
from pathlib import Path


def read_run(run: str | Path, checkpoint: str, *, fmt: str, what: str,
             command: str) -> tuple[Path, dict, Path]:
    """``(run folder, config.json contents, checkpoint path)`` of a run folder of
    ``command`` (``what`` names the kind of run in errors); ``checkpoint`` is
    ``"best"`` or ``"last"``. Errors name the folder or file that is wrong."""
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist")
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    path = run / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run} is not {what} run folder "
                                f"(made by '{command}')")
    config = json.loads(path.read_text())
    if config.get("format") != fmt:
        raise ValueError(f"{path} is not {what} run config (format {config.get('format')!r})")
    ck_path = run / f"{checkpoint}.pt"
    if not ck_path.is_file():
        raise FileNotFoundError(f"no checkpoint {ck_path} (has the run finished a step?)")
    return run, config, ck_path


def flatten(d: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: nested settings as dotted keys."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
