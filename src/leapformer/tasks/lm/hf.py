"""``transformers`` causal LMs in the LM harness: softmax teachers for linearisation.

- :func:`build_hf_lm` makes a GPT-2 (learned positions, GELU MLP, LayerNorm) or a
  Llama (rotary positions, SwiGLU MLP, RMSNorm; ``num_key_value_heads`` below the
  head count for grouped keys) of the sizes of an :class:`~leapformer.models.LMConfig`,
  wrapped in :class:`HFCausalLM` so that the shared training loop and
  :func:`~leapformer.tasks.lm.perplexity.evaluate_perplexity` treat it as they treat
  :class:`~leapformer.models.CausalLM` (``run_lm_train(..., hf_arch=...)``).
- :func:`save_hf_dir` writes the model with ``save_pretrained`` plus the project's
  tokenizer (``leapformer_tokenizer.json``) and where the tokens are
  (``leapformer_data.json``: the corpus source and the run folder that holds
  ``tokens/<split>.npy``), so that ``leapformer linearize`` and ``lm eval --hf`` read
  the same token ids (:func:`leapformer.tasks.lm.run.read_hf_data` gives them back).

``transformers`` is imported when a model is built or loaded (the ``[hf]`` extra).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from leapformer._io import atomic_open, atomic_write_text
from leapformer.models.lm import LMConfig

HF_ARCHS = ("gpt2", "llama")
TOKENIZER_FILE = "leapformer_tokenizer.json"
DATA_FILE = "leapformer_data.json"


def _transformers():
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - installed with the [hf] extra
        raise ImportError("--hf-arch / --hf need transformers: pip install 'leapformer[hf]'"
                          ) from err
    return transformers


@dataclass
class HFInfo:
    """What the harness reads of a model's configuration."""

    vocab_size: int
    context_length: int
    pad_id: int | None


class HFCausalLM(nn.Module):
    """A ``transformers`` causal LM behind :class:`~leapformer.models.CausalLM`'s call:
    ``model(tokens [B, T], key_padding_mask=None) -> logits [B, T, V]`` (``key_padding_mask``
    True = padding, passed as ``attention_mask``). ``hf`` is the wrapped model."""

    def __init__(self, hf: nn.Module, context_length: int, pad_id: int | None = None):
        super().__init__()
        self.hf = hf
        self.cfg = HFInfo(hf.config.vocab_size, context_length, pad_id)

    @property
    def embed(self) -> nn.Module:
        return self.hf.get_input_embeddings()

    def forward(self, tokens: Tensor, *, key_padding_mask: Tensor | None = None,
                target_length=None) -> Tensor:
        mask = None if key_padding_mask is None else (~key_padding_mask).long()
        return self.hf(input_ids=tokens, attention_mask=mask, use_cache=False).logits


def hf_config(arch: str, cfg: LMConfig, *, bos_id: int | None = None, **overrides):
    """The ``transformers`` config of ``arch`` with ``cfg``'s sizes (``overrides``:
    further config fields, e.g. ``num_key_value_heads=2`` for Llama)."""
    transformers = _transformers()
    if arch == "gpt2":
        base = dict(vocab_size=cfg.vocab_size, n_positions=cfg.context_length,
                    n_embd=cfg.d_model, n_layer=cfg.num_layers, n_head=cfg.nhead,
                    n_inner=cfg.dim_feedforward, resid_pdrop=cfg.dropout,
                    embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
                    bos_token_id=bos_id, eos_token_id=bos_id, pad_token_id=cfg.pad_id)
        config_class = transformers.GPT2Config
    elif arch == "llama":
        base = dict(vocab_size=cfg.vocab_size, max_position_embeddings=cfg.context_length,
                    hidden_size=cfg.d_model, num_hidden_layers=cfg.num_layers,
                    num_attention_heads=cfg.nhead, num_key_value_heads=cfg.nhead,
                    intermediate_size=cfg.dim_feedforward, attention_dropout=cfg.dropout,
                    tie_word_embeddings=cfg.tie_embeddings, bos_token_id=bos_id,
                    eos_token_id=bos_id, pad_token_id=cfg.pad_id)
        config_class = transformers.LlamaConfig
    else:
        raise ValueError(f"hf_arch must be one of {HF_ARCHS}, got {arch!r}")
    unknown = set(overrides) - set(config_class().to_dict()) - set(base)
    if unknown:
        raise ValueError(f"unknown {arch} config fields {sorted(unknown)}")
    config = config_class(**{**base, **overrides})
    if arch == "llama" and config.num_attention_heads % config.num_key_value_heads:
        raise ValueError(f"num_key_value_heads ({config.num_key_value_heads}) must divide the "
                         f"head count ({config.num_attention_heads})")
    return config


def build_hf_lm(arch: str, cfg: LMConfig, *, bos_id: int | None = None,
                hf_options: dict | None = None) -> HFCausalLM:
    """A freshly initialised ``arch`` model of ``cfg``'s sizes (softmax attention)."""
    if cfg.attention != "softmax":
        raise ValueError(f"--hf-arch trains a softmax teacher; attention must be 'softmax', "
                         f"got {cfg.attention!r}")
    transformers = _transformers()
    config = hf_config(arch, cfg, bos_id=bos_id, **(hf_options or {}))
    config._attn_implementation = "sdpa"
    hf = transformers.AutoModelForCausalLM.from_config(config)
    return HFCausalLM(hf, cfg.context_length, cfg.pad_id)


def save_hf_dir(model: HFCausalLM, out: str | Path, *, tokenizer_file: Path, source: dict,
                run: Path) -> Path:
    """``save_pretrained`` into ``out`` with the tokenizer and the token source (see the
    module docstring). Written into a temporary folder next to ``out`` that then
    replaces it: ``out`` is either the previous complete folder, missing for a moment
    (when one is replaced), or the new complete one; never a partly written one."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(out, "tmp")
    try:
        model.hf.save_pretrained(tmp)
        shutil.copyfile(tokenizer_file, tmp / TOKENIZER_FILE)
        info = {"source": source, "run": str(Path(run).resolve()),
                "context_length": model.cfg.context_length, "pad_id": model.cfg.pad_id}
        atomic_write_text(tmp / DATA_FILE, json.dumps(info, indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex}.old")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _sibling(out: Path, kind: str) -> Path:
    """A new empty folder next to ``out`` (usual permissions, unlike ``mkdtemp``'s)."""
    path = out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex}.{kind}")
    path.mkdir()
    return path


def copy_hf_data(src: str | Path, out: str | Path) -> None:
    """Copy a model folder's tokenizer and token source to another model folder, each
    file atomically and the token source (the folder's completion marker) last."""
    for name in (TOKENIZER_FILE, DATA_FILE):
        with open(Path(src) / name, "rb") as fh, atomic_open(Path(out) / name) as dst:
            shutil.copyfileobj(fh, dst)


def load_hf_lm(path: str | Path, *, device: str | torch.device = "cpu",
               context_length: int | None = None, pad_id: int | None = None) -> HFCausalLM:
    """A plain ``transformers`` causal LM folder, wrapped (eval mode)."""
    transformers = _transformers()
    hf = transformers.AutoModelForCausalLM.from_pretrained(path)
    return wrap_hf(hf, context_length=context_length, pad_id=pad_id).to(device).eval()


def wrap_hf(hf: nn.Module, *, context_length: int | None = None,
            pad_id: int | None = None) -> HFCausalLM:
    """:class:`HFCausalLM` around a loaded model; the context defaults to its
    position table's size."""
    if context_length is None:
        context_length = getattr(hf.config, "max_position_embeddings", None) or 1024
    return HFCausalLM(hf, context_length, pad_id)


def corpus_text(source: dict, split: str) -> str:
    """The raw text of ``split`` of an LM run's corpus (``data.json``'s ``source``)."""
    if source.get("corpus") == "bible":
        from leapformer.data.lm_corpus import bible_lm_corpus

        return bible_lm_corpus()[split]
    if source.get("corpus") == "wikitext":
        path = Path(source["path"]) / f"wiki.{split}.tokens"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (the WikiText folder the run read)")
        return path.read_text(encoding="utf-8")
    raise ValueError(f"unknown corpus source {source!r}")


def encode_with_own_tokenizer(path: str | Path, text: str) -> tuple[list[int], int | None]:
    """``(ids, bos)``: ``text`` in the tokens of the model folder's own ``transformers``
    tokenizer (a model that was not trained on the project's tokenizer); ``bos``: its
    beginning- (or end-) of-sequence id, read before the first token."""
    transformers = _transformers()
    try:
        tok = transformers.AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"{path} holds neither {TOKENIZER_FILE} nor a transformers "
                                f"tokenizer ({' '.join(str(err).split())[:200]})") from None
    tok.model_max_length = int(1e30)  # a whole split in one call: no length warning
    ids = tok(text, add_special_tokens=False)["input_ids"]
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    return ids, bos
