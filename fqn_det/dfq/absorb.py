"""High-bias absorption (Nagel et al., ICCV 2019, sec. 4.2), plain PyTorch.

If layer 1's pre-activation ``y_i ~ N(beta_i, gamma_i^2)`` (its BN statistics),
then ``c_i = max(0, beta_i - 3 gamma_i)`` is almost always below ``y_i``, so
``relu(y_i) = relu(y_i - c_i) + c_i``. The constant ``c`` moves into layer 2's
bias as ``W2 c`` (exact wherever the ReLU does not clip ``y - c``; for convs
with zero padding, at positions whose receptive field lies inside the input).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import Tensor


def absorption_amount(mean: Tensor, std: Tensor, n_sigma: float = 3.0) -> Tensor:
    """``c = max(0, mean - n_sigma * std)`` per channel."""
    return torch.clamp(mean - n_sigma * std, min=0.0)


def absorb(b1: Tensor, consumers: Sequence[Tuple[Tensor, Tensor]], c: Tensor
           ) -> Tuple[Tensor, List[Tensor]]:
    """``b1 - c`` and each consumer bias ``b2 + W2 c`` (W2 summed over its kernel)."""
    new_b = []
    for w2, b2 in consumers:
        w_sum = w2.reshape(w2.shape[0], w2.shape[1], -1).sum(2)
        new_b.append(b2 + w_sum @ c)
    return b1 - c, new_b
