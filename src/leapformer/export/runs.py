"""Load the model of an LM run folder for export.

``leapformer lm train --out RUN`` writes ``RUN/config.json`` (``"format":
"leapformer-lm-run"``, the model's :class:`~leapformer.models.LMConfig` under
``"model"``) and the checkpoints ``RUN/best.pt`` / ``RUN/last.pt`` (written by
:class:`~leapformer.train.Trainer`: the unwrapped model's ``state_dict`` under
``"model"``). :func:`load_run_model` rebuilds the model from them; errors name
the folder or file that is wrong, in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

from leapformer.models.lm import CausalLM, LMConfig
from leapformer.train import load_checkpoint

RUN_FORMAT = "leapformer-lm-run"  # written by `leapformer lm train`
CHECKPOINTS = ("best", "last")


def load_run_model(run: str | Path, *, checkpoint: str = "best") -> tuple[CausalLM, dict]:
    """``(model in eval mode on the CPU, config.json contents)`` of an LM run folder;
    ``checkpoint``: ``"best"`` or ``"last"``."""
    run = Path(run)
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {CHECKPOINTS}, got {checkpoint!r}")
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist")
    path = run / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run} is not an LM run folder (made by "
                                "'leapformer lm train')")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"could not read {path}: {err}") from err
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
        got = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{path} is not an LM run config (format {got!r}, expected "
                         f"{RUN_FORMAT!r})")
    if not isinstance(config.get("model"), dict):
        raise ValueError(f"{path} has no model settings ('model')")
    try:
        cfg = LMConfig(**config["model"])
    except TypeError as err:
        raise ValueError(f"{path}: the model settings do not fit this leapformer "
                         f"({err})") from err
    ck_path = run / f"{checkpoint}.pt"
    if not ck_path.is_file():
        raise FileNotFoundError(f"no checkpoint {ck_path} (has the run finished a step?)")
    ck = load_checkpoint(ck_path)
    if not isinstance(ck.get("model"), dict):
        raise ValueError(f"{ck_path} holds no model weights ('model')")
    model = CausalLM(cfg)
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{ck_path} does not fit the model of {path}: {first}") from err
    return model.eval(), config
