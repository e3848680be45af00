"""Grouped (e.g. depthwise) conv weights as dense block-diagonal ones, plain PyTorch.

DFQ's formulas (:mod:`.equalize`, :mod:`.absorb`, :mod:`.bias_correction`) index a
consumer's weight by input channel, ``(O, I, kh, kw)``. A grouped conv's weight is
``(O, I / g, kh, kw)``: output channel ``o`` reads only the inputs of its group.
Writing it as the dense ``(O, I, kh, kw)`` weight that is zero outside the groups
lets the same formulas apply unchanged (a depthwise 3x3's input channel ``i`` is
then its output channel ``i``); :func:`from_dense` takes the groups back out.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _cols(o: int, ig: int, groups: int, device) -> Tensor:
    """``(O, I / groups)`` indices of the dense input channels each output channel reads."""
    og = o // groups
    return (torch.arange(o, device=device) // og * ig).unsqueeze(1) + torch.arange(ig, device=device)


def to_dense(w: Tensor, groups: int) -> Tensor:
    """The block-diagonal dense weight ``(O, I, ...)`` of a grouped weight ``(O, I / groups, ...)``."""
    if groups == 1:
        return w
    o, ig = w.shape[0], w.shape[1]
    if o % groups:
        raise ValueError(f'{o} output channels do not split into {groups} groups')
    dense = w.new_zeros(o, ig * groups, *w.shape[2:])
    dense[torch.arange(o, device=w.device).unsqueeze(1), _cols(o, ig, groups, w.device)] = w
    return dense


def from_dense(dense: Tensor, groups: int) -> Tensor:
    """The grouped weight of a block-diagonal dense one (entries outside the groups must be zero)."""
    if groups == 1:
        return dense
    o, ig = dense.shape[0], dense.shape[1] // groups
    w = dense[torch.arange(o, device=dense.device).unsqueeze(1), _cols(o, ig, groups, dense.device)]
    total = float(dense.abs().sum())
    if total - float(w.abs().sum()) > 1e-6 * max(total, 1.0):
        raise ValueError('the dense weight has entries outside its groups')
    return w


def grouped_in_ranges(w: Tensor, groups: int = 1) -> Tensor:
    """``max |w|`` per input channel of a grouped conv weight (that of :func:`to_dense`, without building it)."""
    o, ig = w.shape[0], w.shape[1]
    a = w.detach().abs().reshape(groups, o // groups, ig, -1)
    return a.amax(dim=(1, 3)).reshape(-1)


def scale_grouped_inputs(w: Tensor, s: Tensor, groups: int = 1) -> Tensor:
    """``w`` with input channel ``i`` multiplied by ``s[i]`` (``s`` over all ``I`` input channels)."""
    o, ig = w.shape[0], w.shape[1]
    s = s.to(w.dtype).reshape(groups, 1, ig, *([1] * (w.dim() - 2)))
    return (w.reshape(groups, o // groups, ig, *w.shape[2:]) * s).reshape(w.shape)


def grouped_input_sum(w: Tensor, x: Tensor, groups: int = 1) -> Tensor:
    """``sum_{i, k} W[o, i, k] x[i]`` per output channel: a spatially constant input ``x`` (per input
    channel) through the kernel-summed grouped weight (``W c`` for absorption, ``eps E[x]`` for bias correction)."""
    o, ig = w.shape[0], w.shape[1]
    ws = w.reshape(groups, o // groups, ig, -1).sum(3)
    return torch.einsum('goi,gi->go', ws, x.to(w.dtype).reshape(groups, ig)).reshape(o)
