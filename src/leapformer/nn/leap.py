"""LeaP: the learned-proportion network of LeaPformer (docs/math.md §1.3).

``Linear(d, d/f) -> ReLU -> Linear(d/f, 1) -> Sigmoid`` applied to each
post-ReLU per-head vector, so every token gets one proportion in ``(0, 1)`` per
head. The official fairseq code uses a step-down factor ``f = 4``; the LRA code
sets the hidden size directly (16 by default), and a hidden size of 1 means
``Linear(d, 1) -> Sigmoid``. One LeaP for queries and one for keys per
attention layer, shared by all heads.
"""

from __future__ import annotations

import numbers

from torch import Tensor, nn


def _positive_int(name: str, value, optional: bool = False):
    """One-line TypeError / ValueError naming the option (e.g. ``step_down="abc"`` read
    from a command line)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int{' or None' if optional else ''}, "
                        f"got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")


class LeaP(nn.Module):
    """Proportions ``[...] in (0, 1)`` from per-head vectors ``x [..., head_dim]``.

    ``hidden`` sets the hidden size explicitly (1 = a single ``Linear(d, 1)``);
    otherwise it is ``head_dim // step_down`` (at least 1).
    """

    def __init__(self, head_dim: int, *, step_down: int = 4, hidden: int | None = None):
        super().__init__()
        _positive_int("head_dim", head_dim)
        _positive_int("step_down", step_down)  # checked even when hidden overrides it
        _positive_int("hidden", hidden, optional=True)
        if hidden is None:
            hidden = max(1, head_dim // step_down)
        head_dim, hidden = int(head_dim), int(hidden)
        self.head_dim = head_dim
        self.hidden = hidden
        if hidden == 1:
            self.net = nn.Sequential(nn.Linear(head_dim, 1), nn.Sigmoid())
        else:
            self.net = nn.Sequential(nn.Linear(head_dim, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 1), nn.Sigmoid())

    @property
    def num_parameters(self) -> int:
        """Trainable parameters of this network."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.head_dim:
            raise ValueError(f"LeaP expects [..., {self.head_dim}] inputs, got {list(x.shape)}")
        return self.net(x).squeeze(-1)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, hidden={self.hidden}, parameters={self.num_parameters}"
