"""Tiny randomly initialised GPT-2 and Llama (from configs: no downloads)."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from leapformer.linearize import attention_modules

VOCAB = 61
ARCHS = ("gpt2", "llama")


def tiny(arch: str, *, seed: int = 0, layers: int = 2, sharp: float = 1.0,
         dtype: torch.dtype = torch.float32):
    """A 2-layer, 32-wide, 4-head model (Llama: 2 key/value heads, GQA) in eval mode;
    ``sharp`` scales the attention projections (more peaked softmax)."""
    torch.manual_seed(seed)
    if arch == "gpt2":
        config = GPT2Config(n_layer=layers, n_embd=32, n_head=4, vocab_size=VOCAB,
                            n_positions=64, bos_token_id=0, eos_token_id=0)
        model = GPT2LMHeadModel(config)
    else:
        config = LlamaConfig(num_hidden_layers=layers, hidden_size=32, num_attention_heads=4,
                             num_key_value_heads=2, intermediate_size=64, vocab_size=VOCAB,
                             max_position_embeddings=64, bos_token_id=0, eos_token_id=0)
        model = LlamaForCausalLM(config)
    if sharp != 1.0:
        with torch.no_grad():
            for m in attention_modules(model):
                for child in m.children():
                    if hasattr(child, "weight"):
                        child.weight.mul_(sharp)
    return model.to(dtype).eval()
