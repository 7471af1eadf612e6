"""LeaP: the learned-proportion network of LeaPformer (docs/math.md §1.3).

``Linear(d, d/f) -> ReLU -> Linear(d/f, 1) -> Sigmoid`` applied to each
post-ReLU per-head vector, so every token gets one proportion in ``(0, 1)`` per
head. The official fairseq code uses a step-down factor ``f = 4``; the LRA code
sets the hidden size directly (16 by default), and a hidden size of 1 means
``Linear(d, 1) -> Sigmoid``. One LeaP for queries and one for keys per
attention layer, shared by all heads.
"""

from __future__ import annotations

from torch import Tensor, nn


class LeaP(nn.Module):
    """Proportions ``[...] in (0, 1)`` from per-head vectors ``x [..., head_dim]``.

    ``hidden`` sets the hidden size explicitly (1 = a single ``Linear(d, 1)``);
    otherwise it is ``head_dim // step_down`` (at least 1).
    """

    def __init__(self, head_dim: int, *, step_down: int = 4, hidden: int | None = None):
        super().__init__()
        if head_dim < 1:
            raise ValueError(f"head_dim must be positive, got {head_dim}")
        if hidden is None:
            if step_down < 1:
                raise ValueError(f"step_down must be positive, got {step_down}")
            hidden = max(1, head_dim // step_down)
        if hidden < 1:
            raise ValueError(f"hidden must be positive, got {hidden}")
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
