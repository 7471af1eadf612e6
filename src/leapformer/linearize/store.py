"""Save and load linearised models.

A linearised model folder is a ``transformers`` checkpoint of the (merged) model
without the new parameters, so ``AutoModelForCausalLM.from_pretrained`` reads it as
the softmax architecture, plus:

- ``linearize.json``: the :func:`~leapformer.linearize.linearize` settings;
- ``linear_cores.safetensors``: the new parameters (LeaP networks, feature maps),
  named ``<layer>.<parameter>``.

:func:`load_linearized` rebuilds the linear model; :func:`is_linearized` tells the
two kinds of folder apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from leapformer._io import atomic_open, atomic_write_text
from leapformer.linearize.swap import CORE, linear_cores, linearize, require_transformers

SETTINGS_FILE = "linearize.json"
CORES_FILE = "linear_cores.safetensors"
FORMAT = "leapformer-linearized"


def is_linearized(path: str | Path) -> bool:
    """Whether ``path`` holds a model saved by :func:`save_linearized`."""
    return (Path(path) / SETTINGS_FILE).is_file()


def save_linearized(model: nn.Module, out: str | Path, *, extra: dict | None = None) -> Path:
    """Write ``model`` (linearised, adapters merged) to the folder ``out``; ``extra`` is
    recorded in ``linearize.json`` (e.g. the training history)."""
    from safetensors.torch import save

    settings = getattr(model, "leapformer_linearize", None)
    if settings is None:
        raise ValueError("model is not linearised (call linearize first)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in model.state_dict().items() if f".{CORE}." not in k}
    model.save_pretrained(out, state_dict=base)
    cores = {f"{i}.{k}": v.detach().contiguous().cpu()
             for i, core in linear_cores(model).items() for k, v in core.state_dict().items()}
    with atomic_open(out / CORES_FILE) as fh:
        fh.write(save(cores, metadata={"format": FORMAT}))
    atomic_write_text(out / SETTINGS_FILE, json.dumps(
        {"format": FORMAT, "version": 1, "settings": settings, **(extra or {})}, indent=2) + "\n")
    return out


def load_linearized(path: str | Path, *, device: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None) -> nn.Module:
    """The linearised model saved in ``path`` (eval mode)."""
    from safetensors.torch import load_file

    transformers = require_transformers()
    path = Path(path)
    if not is_linearized(path):
        raise FileNotFoundError(f"{path / SETTINGS_FILE} not found: {path} is not a "
                                "linearised model folder (made by 'leapformer linearize')")
    info = json.loads((path / SETTINGS_FILE).read_text())
    if info.get("format") != FORMAT:
        raise ValueError(f"{path / SETTINGS_FILE} is not a {FORMAT} file")
    kwargs = {} if dtype is None else {"dtype": dtype}
    model = transformers.AutoModelForCausalLM.from_pretrained(path, **kwargs)
    s = info["settings"]
    linearize(model, s["mechanism"], s["layers"], s["feature_map"], step_down=s["step_down"],
              hidden=s["hidden"], eps=s["eps"])
    tensors = load_file(path / CORES_FILE)
    cores = linear_cores(model)
    expected = {f"{i}.{k}" for i, core in cores.items() for k in core.state_dict()}
    if set(tensors) != expected:
        raise ValueError(f"{path / CORES_FILE} holds {sorted(set(tensors) ^ expected)[:4]} "
                         "that do not match the settings")
    for i, core in cores.items():
        prefix = f"{i}."
        core.load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                              if k.startswith(prefix)})
    return model.to(device).eval()
