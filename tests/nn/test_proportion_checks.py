"""Which mechanisms ask ``leap_attention`` to check that proportions lie in [0, 1]:
a re-weighted subclass by default; not cosFormer (positions past the normalising
length by design) and not LeaP (a sigmoid's outputs, in range by construction)."""

import pytest
import torch

import leapformer.ops._checks as ops_checks
from leapformer.nn.mechanisms import CosFormer, LeaPAttention, LinearMechanism

pytestmark = pytest.mark.usefixtures("one_thread")

B, H, M, D = 2, 2, 5, 8


class _Shifted(LinearMechanism):
    """A user's re-weighted mechanism whose proportions pass 1."""

    reweighted = True

    def query_proportions(self, q, offset, q_len):
        return torch.full(q.shape[:3], 1.5)

    def key_proportions(self, k, offset, k_len):
        return torch.full(k.shape[:3], 0.5)


def _qkv(N=M):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, H, M, D, generator=g), torch.randn(B, H, N, D, generator=g),
            torch.randn(B, H, N, D, generator=g))


def test_a_reweighted_subclass_is_checked_by_default():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"q_prop must hold proportions in \[0, 1\], got "
                       r"values in \[1.5, 1.5\]"):
        _Shifted(H, D)(q, k, v)

    class Unchecked(_Shifted):
        check_proportions = False

    o, _ = Unchecked(H, D)(q, k, v)
    assert torch.isfinite(o).all()


def test_cosformer_positions_past_the_length_are_accepted():
    """Cross-attention queries padded past an item's target length (q_len 3 of 5 rows),
    and causal self-attention normalised by a length shorter than the sequence
    (decoding past a predicted length): proportions above 1, by design."""
    q, k, v = _qkv(N=7)
    mech = CosFormer(H, D).eval()
    o, _ = mech(q, k, v, q_len=torch.tensor([3, 5]), k_len=torch.tensor([7, 6]))
    assert torch.isfinite(o).all()
    q, k, v = _qkv()
    o, _ = mech(q, k, v, causal=True, q_len=torch.tensor([2, 5]), k_len=torch.tensor([2, 5]))
    assert torch.isfinite(o).all()


@pytest.mark.parametrize("mech,calls", [(_Shifted, 1), (CosFormer, 0), (LeaPAttention, 0)])
def test_range_check_runs_only_where_asked(monkeypatch, mech, calls):
    """LeaP's and cosFormer's forward skip the check's reduction and device sync."""
    seen = []
    monkeypatch.setattr(ops_checks, "check_prop_range", lambda *a: seen.append(a))
    q, k, v = _qkv()
    mech(H, D).eval()(q, k, v, q_len=torch.tensor([5, 5]), k_len=torch.tensor([5, 5]))
    assert len(seen) == calls
