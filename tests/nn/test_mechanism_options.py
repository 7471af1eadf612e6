"""Mechanism options of the wrong type (e.g. ``--mechanism-option step_down=abc``, read
from a command line as text) are rejected where they are taken, with a one-line
TypeError naming the option and the value, not a comparison error from deep inside."""

import pytest
import torch

from leapformer.nn import LeaP, MultiheadAttention
from leapformer.nn.mechanisms import build_mechanism

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = [
    ("leap", {"step_down": "abc"}, "step_down must be a positive int, got 'abc'"),
    ("leap", {"step_down": 2.5}, "step_down must be a positive int, got 2.5"),
    ("leap", {"hidden": "16"}, "hidden must be a positive int or None, got '16'"),
    ("leap", {"hidden": True}, "hidden must be a positive int or None, got True"),
    ("leap", {"eps": "0.1"}, "eps must be a number, got '0.1'"),
    ("leap", {"dropout": "0.1"}, "dropout must be a number, got '0.1'"),
    ("cosformer", {"eps": None}, "eps must be a number, got None"),
    ("linear", {"dropout": [0.1]}, r"dropout must be a number, got \[0.1\]"),
    ("performer", {"num_features": "64"}, "num_features must be an int or None, got '64'"),
    ("performer", {"orthogonal": "yes"}, "orthogonal must be a bool, got 'yes'"),
    ("performer", {"seed": 1.0}, "seed must be an int or None, got 1.0"),
    ("linformer", {"k": "32"}, "k must be an int, got '32'"),
    ("linformer", {"max_length": 64.0}, "max_length must be an int, got 64.0"),
    ("nystromformer", {"num_landmarks": "8"}, "num_landmarks must be an int, got '8'"),
    ("nystromformer", {"conv_kernel": None}, "conv_kernel must be an int, got None"),
    ("skyformer", {"num_landmarks": "8"}, "num_landmarks must be an int, got '8'"),
    ("skyformer", {"ridge": "0.1"}, "ridge must be a number, got '0.1'"),
    ("skyformer", {"normalize": 1}, "normalize must be a bool, got 1"),
    ("reformer", {"num_hashes": "2"}, "num_hashes must be an int, got '2'"),
    ("reformer", {"num_buckets": "8"}, "num_buckets must be an int or None, got '8'"),
    ("bigbird", {"block_size": "abc"}, "block_size must be an int, got 'abc'"),
    ("informer", {"factor": 5.0}, "factor must be an int, got 5.0"),
]


@pytest.mark.parametrize("name,options,match", CASES,
                         ids=[f"{c[0]}-{next(iter(c[1]))}" for c in CASES])
def test_bad_option_types_name_the_option(name, options, match):
    with pytest.raises(TypeError, match=rf"^bad options for mechanism '{name}': {match}$") as err:
        build_mechanism(name, num_heads=2, head_dim=8, **options)
    assert "\n" not in str(err.value)
    if "dropout" not in options:  # the module sets dropout itself
        with pytest.raises(TypeError, match=match):  # the same through the module
            MultiheadAttention(16, 2, name, mechanism_options=options)


def test_bad_option_values_name_the_option():
    with pytest.raises(ValueError, match="step_down must be positive, got 0"):
        build_mechanism("leap", num_heads=2, head_dim=8, step_down=0)
    with pytest.raises(ValueError, match="step_down must be positive, got -1"):
        LeaP(8, step_down=-1, hidden=4)  # checked even when hidden sets the size
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.5"):
        build_mechanism("softmax", num_heads=2, head_dim=8, dropout=1.5)
    with pytest.raises(ValueError, match="num_features must be positive, got 0"):
        build_mechanism("performer", num_heads=2, head_dim=8, num_features=0)


def test_numpy_and_plain_values_still_work():
    import numpy as np

    net = LeaP(np.int64(8), step_down=np.int64(2))
    assert net.hidden == 4 and net(torch.rand(3, 8)).shape == (3,)
    for name, options in (("leap", {"hidden": 1, "eps": 0, "dropout": 0}),
                          ("performer", {"num_features": 16, "orthogonal": False, "seed": 3}),
                          ("skyformer", {"num_landmarks": 4, "ridge": 0, "eps": 1e-6}),
                          ("reformer", {"num_buckets": 4})):
        build_mechanism(name, num_heads=2, head_dim=8, **options)
