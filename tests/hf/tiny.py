"""Tiny random Leapformer models for the Hugging Face tests."""

import torch
from transformers import AutoModelForCausalLM

from leapformer.hf import LeapformerConfig

V, CTX = 37, 96
SIZES = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=64, max_position_embeddings=CTX, dropout=0.0)
# all-LeaP, and a hybrid keeping a softmax layer
ATTENTIONS = {"leap": "leap", "hybrid": ["softmax", "leap"]}


def make_hf(attention="leap", seed=0, **overrides):
    """A float64 ``LeapformerForCausalLM`` in eval mode, built through ``AutoModelForCausalLM``,
    whose attention matters (out_proj scaled up, so different prompts lead to different text)."""
    torch.manual_seed(seed)
    # untied: a tiny tied model mostly repeats its last token
    cfg = LeapformerConfig(**{**SIZES, "attention": attention, "tie_word_embeddings": False,
                              **overrides})
    model = AutoModelForCausalLM.from_config(cfg).double().eval()
    with torch.no_grad():
        for layer in model.model.decoder.layers:
            layer.self_attn.out_proj.weight.mul_(4.0)
    return model


def left_pad(prompts, pad_id=0):
    """``input_ids`` and ``attention_mask`` (1 = real) of left-padded ``prompts``."""
    P = max(map(len, prompts))
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), P, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, P - len(p):] = torch.tensor(p)
        mask[b, P - len(p):] = 1
    return ids, mask
