"""GPU paths of re-weighted linear attention (LeaP, cosFormer, plain linear).

- ``functions.py``: autograd functions around the Triton kernels of
  ``_bidirectional.py`` and ``_causal.py``. The sin/cos re-weighting and the feature
  map (ReLU, ELU + 1, identity) are computed in registers; the doubled features
  ``[phi(x) sin, phi(x) cos]`` are never written to memory. Forms: bidirectional and
  causal chunkwise with initial and final state (a decoding step is the causal form on
  a few tokens), forward and backward, key padding masks. Needs Triton
  (``pip install 'leapformer[triton]'``); on CPU tensors the kernels run only under
  ``TRITON_INTERPRET=1`` (set before Triton is imported).
- ``fla.py``: the same attention through flash-linear-attention on expanded features.
- ``dispatch.py``: the ``backend=`` choice of :func:`leapformer.ops.leap_attention`
  and friends; it imports neither Triton nor FLA, so this package imports without them.
"""
