"""Grouped convs seen as ordinary ones: a block-diagonal weight (plain PyTorch).

A conv with ``groups = g`` and weight ``(O, I/g, kh, kw)`` computes what an
ungrouped conv with weight ``(O, I, kh, kw)`` computes when output channel
``o`` (of group ``o // (O/g)``) has zeros outside its group's input channels.
Equalization, absorption, bias correction and range propagation reason per
input channel, so they use this dense form; only its block diagonal is
written back.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def _groups(m: nn.Module) -> int:
    conv = getattr(m, 'conv', None)
    return conv.groups if conv is not None else 1


def dense(m: nn.Module, w: Tensor) -> Tensor:
    """``w`` (the weight of layer ``m``) as an ungrouped weight (unchanged when ``groups == 1``)."""
    g = _groups(m)
    if g == 1:
        return w
    o, ig = w.shape[:2]
    og = o // g
    out = w.new_zeros(o, ig * g, *w.shape[2:])
    for k in range(g):
        out[k * og:(k + 1) * og, k * ig:(k + 1) * ig] = w[k * og:(k + 1) * og]
    return out


def grouped(m: nn.Module, w: Tensor) -> Tensor:
    """The inverse of :func:`dense`: the block diagonal of a dense weight, as layer ``m`` stores it."""
    g = _groups(m)
    if g == 1 or w.shape[1] == m.conv.weight.shape[1]:
        return w
    o, i = w.shape[:2]
    og, ig = o // g, i // g
    return torch.cat([w[k * og:(k + 1) * og, k * ig:(k + 1) * ig] for k in range(g)], 0)
