"""Cross-layer equalization (Nagel et al., ICCV 2019, sec. 4.1), plain PyTorch.

For ``y = W2 f(W1 x + b1) + b2`` with ``f`` piecewise linear and positively
homogeneous (ReLU), scaling output channel ``i`` of layer 1 by ``1 / s_i`` and
input channel ``i`` of layer 2 by ``s_i`` leaves ``y`` unchanged. With
``s_i = sqrt(r1_i / r2_i)`` (``r`` the per-channel weight ranges) both ranges
become ``sqrt(r1_i * r2_i)``, so per-tensor quantization approaches
per-channel quantization. Pairs are swept repeatedly until the scales stop
changing. A grouped consumer (e.g. a depthwise 3x3, whose input channel ``i`` is its
output channel ``i``) takes its ``groups`` (:mod:`.grouped`).
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import Tensor

from .grouped import grouped_in_ranges, scale_grouped_inputs


def out_channel_ranges(w: Tensor) -> Tensor:
    """``max |w|`` per output channel (dim 0)."""
    return w.detach().abs().reshape(w.shape[0], -1).amax(1)


def in_channel_ranges(w: Tensor) -> Tensor:
    """``max |w|`` per input channel (dim 1) of a conv ``(O, I, kh, kw)`` or linear ``(O, I)`` weight."""
    return w.detach().abs().transpose(0, 1).reshape(w.shape[1], -1).amax(1)


def equalization_scales(w1: Tensor, consumers: Sequence[Tensor], eps: float = 1e-12,
                        groups: Optional[Sequence[int]] = None) -> Tensor:
    """``s = sqrt(r1 / r2)`` per channel; ``r2`` is the max over all consumer layers.

    Channels where either range is (near) zero keep ``s = 1``. ``groups``: each
    consumer's conv groups (default all 1).
    """
    groups = [1] * len(consumers) if groups is None else groups
    r1 = out_channel_ranges(w1)
    r2 = torch.stack([in_channel_ranges(w) if g == 1 else grouped_in_ranges(w, g)
                      for w, g in zip(consumers, groups)]).amax(0)
    ok = (r1 > eps) & (r2 > eps)
    s = torch.ones_like(r1)
    s[ok] = torch.sqrt(r1[ok] / r2[ok])
    return s


def apply_scales(w1: Tensor, b1: Tensor, consumers: List[Tensor], s: Tensor,
                 groups: Optional[Sequence[int]] = None):
    """``w1, b1`` divided by ``s`` per output channel; consumers multiplied per input channel."""
    groups = [1] * len(consumers) if groups is None else groups
    w1 = w1 / s.reshape(-1, *([1] * (w1.dim() - 1)))
    b1 = b1 / s
    out = [w * s.reshape(1, -1, *([1] * (w.dim() - 2))) if g == 1 else scale_grouped_inputs(w, s, g)
           for w, g in zip(consumers, groups)]
    return w1, b1, out
