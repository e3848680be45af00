"""Bias correction (Nagel et al., ICCV 2019, sec. 4.2), plain PyTorch.

Quantizing ``W`` to ``W_q = W + eps`` shifts the expected output by
``eps E[x]``; subtracting it from the bias removes the shift. ``E[x]`` per
input channel comes from BN statistics through the clipped-normal mean of a
ReLU (analytic, data-free) or from a few batches (empirical).

The input mean is taken as constant over space; at zero-padded borders the
real expectation is smaller, so the correction is exact for interior
positions and approximate on feature maps only a few pixels wide.
"""
from __future__ import annotations

from torch import Tensor


def expected_output_shift(w: Tensor, w_q: Tensor, in_mean: Tensor) -> Tensor:
    """``(W_q - W) E[x]`` per output channel (kernel summed; spatially constant mean)."""
    eps = (w_q - w).detach()
    return eps.reshape(eps.shape[0], eps.shape[1], -1).sum(2) @ in_mean.to(eps.dtype)


def corrected_bias(b: Tensor, w: Tensor, w_q: Tensor, in_mean: Tensor) -> Tensor:
    return b - expected_output_shift(w, w_q, in_mean)
