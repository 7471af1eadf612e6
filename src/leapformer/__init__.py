"""leapformer: linear-time attention with learned proportions (LeaPformer),
cosFormer and modular linearized attention for PyTorch."""

from leapformer import ops

__version__ = "0.1.0"
__all__ = ["ops", "__version__"]
