"""Run an exported decoding step (:func:`~leapformer.export.export_onnx`) in onnxruntime.

:class:`OnnxDecoder` opens the file, reads the state shapes from its
metadata, and decodes with numpy arrays: ``initial_states(B)``,
``step(tokens, positions, states)`` and a greedy ``generate`` (prompt fed one
token per step, then the argmax). Needs ``onnxruntime`` (the ``[onnx]`` extra).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from leapformer.export.onnx_export import FORMAT, METADATA_KEY, require_onnx

_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}


class OnnxDecoder:
    """An onnxruntime session on an exported decoding step (CPU; ``threads``: intra-op
    threads, None: onnxruntime's choice)."""

    def __init__(self, path: str | Path, *, threads: int | None = None):
        require_onnx("onnxruntime")
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no ONNX file at {path}")
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own classes
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ValueError(f"could not load {path} in onnxruntime: {first}") from err
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        meta = json.loads(raw) if raw else {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a leapformer decoding step (no "
                             f"{METADATA_KEY!r} metadata of format {FORMAT!r})")
        self.path = path
        self.metadata = meta
        self.vocab_size: int = meta["model"]["vocab_size"]
        self.state_shapes = [tuple(s) for s in meta["states"]]
        inputs = self.session.get_inputs()
        self.state_names = [i.name for i in inputs[2:]]
        self.state_dtype = _DTYPES[inputs[2].type]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def initial_states(self, batch_size: int) -> list[np.ndarray]:
        """Zero states (before the first token) for ``batch_size`` sequences."""
        return [np.zeros((batch_size, *s), dtype=self.state_dtype) for s in self.state_shapes]

    def step(self, tokens, positions, states: list[np.ndarray]
             ) -> tuple[np.ndarray, list[np.ndarray]]:
        """``(logits [B, V], new states)`` for ``tokens [B]`` at 1-based ``positions [B]``."""
        feed = {"token": np.asarray(tokens, dtype=np.int64).reshape(-1),
                "position": np.asarray(positions, dtype=np.int64).reshape(-1)}
        if len(states) != len(self.state_names):
            raise ValueError(f"expected {len(self.state_names)} states, got {len(states)}")
        feed.update(zip(self.state_names, states, strict=True))
        logits, *new = self.session.run(self.output_names, feed)
        return logits, new

    def generate(self, prompt: list[int], max_new_tokens: int) -> list[int]:
        """Greedy continuation of one prompt by ``max_new_tokens`` tokens."""
        if not prompt or not all(0 <= int(t) < self.vocab_size for t in prompt):
            raise ValueError(f"prompt must be a non-empty list of token ids in "
                             f"[0, {self.vocab_size})")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        states = self.initial_states(1)
        logits = None
        for position, token in enumerate(prompt, start=1):
            logits, states = self.step([token], [position], states)
        new: list[int] = []
        while len(new) < max_new_tokens:
            new.append(int(logits[0].argmax()))
            if len(new) < max_new_tokens:
                logits, states = self.step([new[-1]], [len(prompt) + len(new)], states)
        return new
