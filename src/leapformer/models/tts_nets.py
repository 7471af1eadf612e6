"""The convolutional and MLP pieces of :class:`~leapformer.models.tts.TransformerTTS`
(Li et al. 2019, "Neural Speech Synthesis with Transformer Network"; the nets of
Tacotron 2, Shen et al. 2018):

- :class:`EncoderPrenet`: symbol embedding, 3 x (conv 5 + batch norm + ReLU +
  dropout), then a linear projection to the model width;
- :class:`DecoderPrenet`: 2 x (linear + ReLU + dropout) over the previous mel
  frame, then a linear projection. Its dropout is *always on* (also in
  ``eval()``), as in Tacotron 2, unless ``always_dropout`` is set False (tests
  compare decoding paths with it off);
- :class:`Postnet`: 5 convolutions (kernel 5; batch norm; tanh on all but the
  last) predicting a residual added to the decoder's mel;
- :class:`ScaledPositions`: ``x + alpha * PE(pos)`` with a trainable ``alpha``
  (Li et al.'s scaled positional encoding), positions 1-based.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leapformer.models.lm import sinusoidal_embedding

__all__ = ["DecoderPrenet", "EncoderPrenet", "Postnet", "ScaledPositions"]


def _masked(x: Tensor, mask: Tensor | None) -> Tensor:
    """``x [B, C, T]`` with padded positions (``mask [B, T]`` True) zeroed."""
    return x if mask is None else x.masked_fill(mask[:, None, :], 0.0)


class EncoderPrenet(nn.Module):
    """Embedding + ``layers`` x (conv + BN + ReLU + dropout) + linear: ``[B, S]`` ids ->
    ``[B, S, d_model]``. Padded positions are zeroed before each convolution, so an
    item's output does not depend on the padding after it (batch norm in ``eval()``)."""

    def __init__(self, vocab_size: int, d_model: int, *, channels: int = 256, layers: int = 3,
                 kernel_size: int = 5, dropout: float = 0.1, pad_id: int = 0):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.embed = nn.Embedding(vocab_size, channels, padding_idx=pad_id)
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size,
                                             padding=kernel_size // 2) for _ in range(layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(channels) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(channels, d_model)

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        x = self.embed(tokens).transpose(1, 2)  # [B, C, S]
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = self.dropout(F.relu(norm(conv(_masked(x, mask)))))
        return self.proj(x.transpose(1, 2))


class DecoderPrenet(nn.Module):
    """``[B, T, n_mels]`` -> ``[B, T, d_model]``: two ReLU layers with dropout that
    stays on in ``eval()`` while ``always_dropout`` (the Tacotron 2 rule; it makes
    the autoregressive decoder robust to its own outputs), then a projection."""

    def __init__(self, n_mels: int, d_model: int, *, hidden: int = 256, dropout: float = 0.5,
                 always_dropout: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(n_mels, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.proj = nn.Linear(hidden, d_model)
        self.p = dropout
        self.always_dropout = always_dropout

    def forward(self, mel: Tensor) -> Tensor:
        on = self.training or self.always_dropout
        h = F.dropout(F.relu(self.fc1(mel)), self.p, training=on)
        h = F.dropout(F.relu(self.fc2(h)), self.p, training=on)
        return self.proj(h)


class Postnet(nn.Module):
    """``layers`` convolutions over ``[B, T, n_mels]`` -> the residual ``[B, T, n_mels]``
    (batch norm after each; tanh and dropout on all but the last)."""

    def __init__(self, n_mels: int, *, channels: int = 256, layers: int = 5,
                 kernel_size: int = 5, dropout: float = 0.1):
        super().__init__()
        if layers < 2:
            raise ValueError(f"the post-net needs at least 2 layers, got {layers}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        sizes = [n_mels] + [channels] * (layers - 1) + [n_mels]
        self.convs = nn.ModuleList(nn.Conv1d(a, b, kernel_size, padding=kernel_size // 2)
                                   for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) for b in sizes[1:])
        self.dropout = nn.Dropout(dropout)

    def forward(self, mel: Tensor, mask: Tensor | None = None) -> Tensor:
        x = mel.transpose(1, 2)
        last = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = norm(conv(_masked(x, mask)))
            if i < last:
                x = self.dropout(torch.tanh(x))
        return _masked(x, mask).transpose(1, 2)


class ScaledPositions(nn.Module):
    """``x + alpha * PE(start+1 .. start+T)`` (sinusoidal, fairseq layout); ``alpha``
    is trained (initialised to 1)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.d_model = d_model
        self.alpha = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        pos = torch.arange(start + 1, start + x.shape[1] + 1, device=x.device)
        return self.at(x, pos)

    def at(self, x: Tensor, positions: Tensor) -> Tensor:
        """``x [B, T, d] + alpha * PE(positions)`` at 1-based ``positions`` (``[T]`` or
        ``[B, T]``, long): a tensor, so a compiled decoding step serves every position."""
        return x + self.alpha * sinusoidal_embedding(positions, self.d_model).to(x.dtype)
