"""Cross-layer equalization (Nagel et al., ICCV 2019, sec. 4.1), plain PyTorch.

For ``y = W2 f(W1 x + b1) + b2`` with ``f`` piecewise linear and positively
homogeneous (ReLU), scaling output channel ``i`` of layer 1 by ``1 / s_i`` and
input channel ``i`` of layer 2 by ``s_i`` leaves ``y`` unchanged. With
``s_i = sqrt(r1_i / r2_i)`` (``r`` the per-channel weight ranges) both ranges
become ``sqrt(r1_i * r2_i)``, so per-tensor quantization approaches
per-channel quantization. Pairs are swept repeatedly until the scales stop
changing.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import Tensor


def out_channel_ranges(w: Tensor) -> Tensor:
    """``max |w|`` per output channel (dim 0)."""
    return w.detach().abs().reshape(w.shape[0], -1).amax(1)


def in_channel_ranges(w: Tensor) -> Tensor:
    """``max |w|`` per input channel (dim 1) of a conv ``(O, I, kh, kw)`` or linear ``(O, I)`` weight."""
    return w.detach().abs().transpose(0, 1).reshape(w.shape[1], -1).amax(1)


def equalization_scales(w1: Tensor, consumers: Sequence[Tensor], eps: float = 1e-12) -> Tensor:
    """``s = sqrt(r1 / r2)`` per channel; ``r2`` is the max over all consumer layers.

    Channels where either range is (near) zero keep ``s = 1``.
    """
    r1 = out_channel_ranges(w1)
    r2 = torch.stack([in_channel_ranges(w) for w in consumers]).amax(0)
    ok = (r1 > eps) & (r2 > eps)
    s = torch.ones_like(r1)
    s[ok] = torch.sqrt(r1[ok] / r2[ok])
    return s


def apply_scales(w1: Tensor, b1: Tensor, consumers: List[Tensor], s: Tensor):
    """``w1, b1`` divided by ``s`` per output channel; consumers multiplied per input channel."""
    w1 = w1 / s.reshape(-1, *([1] * (w1.dim() - 1)))
    b1 = b1 / s
    out = [w * s.reshape(1, -1, *([1] * (w.dim() - 2))) for w in consumers]
    return w1, b1, out
