"""Attention mechanisms by name: a registry, so that models are assembled from
strings. Each mechanism module registers its classes with
:func:`register_mechanism` (:mod:`leapformer.nn.mechanisms.registry`); this
package only imports them, so adding a mechanism is one file plus one import
line here. The imports below are in the order of :data:`MECHANISMS`."""

from __future__ import annotations

from leapformer.nn.mechanisms.base import HEAD_NORMS, HeadNorm, LinearMechanism, Mechanism
from leapformer.nn.mechanisms.registry import (
    MECHANISMS,
    build_mechanism,
    check_mechanism_name,
    register_mechanism,
)

# isort: off  -- registration order = the order of MECHANISMS
from leapformer.nn.mechanisms.softmax import Softmax
from leapformer.nn.mechanisms.linear import EluLinear, ReluLinear
from leapformer.nn.mechanisms.cosformer import CosFormer
from leapformer.nn.mechanisms.leap import LeaPAttention
from leapformer.nn.mechanisms.performer import Performer
from leapformer.nn.mechanisms.linformer import Linformer
from leapformer.nn.mechanisms.nystromformer import Nystromformer
from leapformer.nn.mechanisms.skyformer import Skyformer
from leapformer.nn.mechanisms.reformer import Reformer
from leapformer.nn.mechanisms.bigbird import BigBird
from leapformer.nn.mechanisms.informer import Informer
from leapformer.nn.mechanisms.gated import GatedLeaP, GatedLinear
# isort: on

__all__ = [
    "HEAD_NORMS", "MECHANISMS", "BigBird", "CosFormer", "EluLinear", "GatedLeaP", "GatedLinear",
    "HeadNorm", "Informer",
    "LeaPAttention", "LinearMechanism", "Linformer", "Mechanism", "Nystromformer", "Performer",
    "Reformer", "ReluLinear", "Skyformer", "Softmax", "build_mechanism", "check_mechanism_name",
    "register_mechanism",
]
