"""The mechanism registry: built-in mechanisms register themselves with the decorator
(in a stable order), and a mechanism defined outside the package is usable by name."""

import importlib
import inspect
import pkgutil

import pytest
import torch

import leapformer.nn.mechanisms as mechanisms
from leapformer.nn import MECHANISMS, MultiheadAttention, register_mechanism
from leapformer.nn.mechanisms import LinearMechanism, Mechanism, build_mechanism

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_mechanism_class_of_the_package_is_registered():
    found = {}
    for info in pkgutil.iter_modules(mechanisms.__path__):
        if info.name.startswith("_") or info.name in ("base", "registry"):
            continue
        module = importlib.import_module(f"{mechanisms.__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, Mechanism) and cls.__module__ == module.__name__
                    and not inspect.isabstract(cls)):
                found[cls.name] = cls
    assert len(found) == 14
    assert found == dict(MECHANISMS)


def test_registration_order_is_stable():
    # CLI help and default orders read MECHANISMS; the order is the import order of
    # leapformer.nn.mechanisms
    assert list(MECHANISMS) == ["softmax", "linear", "elu", "cosformer", "leap", "performer",
                                "linformer", "nystromformer", "skyformer", "reformer",
                                "bigbird", "informer", "gla", "gated-leap"]


@pytest.fixture
def scratch_registry():
    before = dict(MECHANISMS)
    yield
    MECHANISMS.clear()
    MECHANISMS.update(before)


def test_a_new_mechanism_is_one_decorated_class(scratch_registry):
    @register_mechanism
    class Identity(LinearMechanism):
        name = "test-identity"

        def __init__(self, num_heads, head_dim, **options):
            super().__init__(num_heads, head_dim, feature_map="identity", **options)

    assert MECHANISMS["test-identity"] is Identity
    assert isinstance(build_mechanism("test-identity", num_heads=2, head_dim=4), Identity)
    torch.manual_seed(0)
    mha = MultiheadAttention(8, 2, "test-identity", bias=False)
    x = torch.randn(1, 5, 8)
    out, _ = mha(x)
    # identity features: o_i = sum_j (q_i.k_j) v_j / max(sum_j q_i.k_j, 0.1) (docs/math.md §1)
    wq, wk, wv = (w for w, _ in mha.projection_weights())
    q, k, v = (x @ w.T for w in (wq, wk, wv))
    q, k, v = (t.view(1, 5, 2, 4).transpose(1, 2) for t in (q, k, v))
    s = q @ k.transpose(-1, -2)
    o = (s @ v) / s.sum(-1, keepdim=True).clamp_min(0.1)
    want = mha.out_proj(o.transpose(1, 2).reshape(1, 5, 8))
    torch.testing.assert_close(out, want)


def test_register_rejects_duplicates_and_non_mechanisms(scratch_registry):
    class Other(LinearMechanism):
        name = "linear"

    with pytest.raises(ValueError, match="already registered"):
        register_mechanism(Other)
    assert register_mechanism(MECHANISMS["linear"]) is MECHANISMS["linear"]  # idempotent
    with pytest.raises(TypeError, match="Mechanism subclass"):
        register_mechanism(torch.nn.Linear)
    with pytest.raises(ValueError, match="unknown attention mechanism 'nope'"):
        build_mechanism("nope", num_heads=1, head_dim=2)
