"""Data-free activation ranges from BN statistics (Nagel et al., ICCV 2019).

Walks the quantized detector (the same walk the exporter uses) propagating a
per-channel Gaussian ``(mean, var)``: layers with (folded) BN start from their
BN statistics, other layers propagate ``mean W + b`` and ``var W^2`` (inputs
assumed independent), ReLUs use clipped-normal moments, adds sum moments, a GroupNorm gives
``N(beta_c, gamma_c^2)``.
Each activation range is ``[min_c(mean - k std), max_c(mean + k std)]`` (ReLU
outputs start at 0); a head output with per-channel ranges gets one per channel.
The network input is taken as normalized: N(0, 1).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from ..nn.qdetector import walk_detector
from .detector import get_wb
from .grouped import dense
from .stats import relu_moments

Stats = Tuple[Tensor, Tensor, bool]  # per-channel mean, variance; known non-negative


class _StatsWalker:
    """A :class:`~fqn_det.nn.dataflow.Builder` whose "tensor" is per-channel ``(mean, var, non-negative)``."""

    def __init__(self, k: float) -> None:
        self.k = k
        self.feats = []

    def _set(self, q, st: Stats, relu: bool) -> None:
        mean, var = st[0], st[1]
        std = var.clamp(min=0).sqrt()
        if q.per_channel:  # a head output with one range per channel
            lo_c, hi_c = (mean - self.k * std).float(), (mean + self.k * std).float().clamp(min=1e-6)
            lo_c = torch.zeros_like(lo_c) if relu or st[2] else lo_c.clamp(max=0.0)
            q.set_range(q.floored(lo_c, hi_c), hi_c)
            return
        lo, hi = float((mean - self.k * std).min()), float((mean + self.k * std).max())
        if relu or st[2]:
            lo, hi = 0.0, max(hi, 1e-6)
        lo, hi = min(lo, 0.0), max(hi, 1e-6)
        q.set_range(torch.tensor(q.floored(lo, hi)), torch.tensor(hi))

    def _relu(self, st: Stats, relu: bool) -> Stats:
        if not relu:
            return st
        return (*relu_moments(st[0], st[1].clamp(min=0).sqrt()), True)

    def input(self, name, q):
        st = (torch.zeros(3), torch.ones(3), False)
        self._set(q, st, False)
        return st

    def int_input(self, name, q):
        mean = torch.stack([f[0] for f in self.feats]).mean(0)
        var = torch.stack([f[1] for f in self.feats]).mean(0)
        nonneg = all(f[2] for f in self.feats)
        self._set(q, (mean, var, nonneg), False)
        return (mean, var, nonneg)

    def _weighted(self, m, x: Stats, site: int) -> Stats:
        pre = getattr(m, 'dfq_stats', None)
        if pre is not None:
            pre = (pre[0], pre[1] ** 2, False)
        else:
            w, b = get_wb(m)
            w = dense(m, w)
            w2 = w.reshape(w.shape[0], w.shape[1], -1)
            mean_in, var_in = x[0], x[1]
            if mean_in.numel() != w2.shape[1]:  # flattened (C, H, W) -> C*H*W features
                rep = w2.shape[1] // mean_in.numel()
                mean_in, var_in = mean_in.repeat_interleave(rep), var_in.repeat_interleave(rep)
            pre = (w2.sum(2) @ mean_in + b, (w2 ** 2).sum(2) @ var_in, False)
        self._set(m.out_quant[site], pre, m.relu)
        return self._relu(pre, m.relu)

    def conv(self, m, x, site=0):
        return self._weighted(m, x, site)

    linear = conv

    def add(self, m, a, b, site=0):
        st = (a[0] + b[0], a[1] + b[1], a[2] and b[2])
        self._set(m.out_quant[site], st, m.relu)
        return self._relu(st, m.relu)

    def maxpool(self, m, x, site=0):
        self._set(m.out_quant[site], x, False)
        return x

    def avgpool(self, m, x, site=0):
        k = m.kernel_size[0] * m.kernel_size[1]  # mean of k inputs taken as independent
        st = (x[0], x[1] / k, x[2])
        self._set(m.out_quant[site], st, False)
        return st

    def upsample(self, m, x, like, site=0):
        self._set(m.out_quant[site], x, False)
        return x

    def group_norm(self, m, x, site=0):
        # normalized per group: each channel is then gamma_c * N(0, 1) + beta_c
        g = m.gn
        c = g.num_channels
        gamma = torch.ones(c) if g.weight is None else g.weight.detach().float().cpu()
        beta = torch.zeros(c) if g.bias is None else g.bias.detach().float().cpu()
        st = (beta, gamma ** 2, False)
        self._set(m.out_quant[site], st, m.relu)
        return self._relu(st, m.relu)

    def relu(self, x, name):
        return self._relu(x, True)

    def flatten(self, x, name):
        return x

    def output(self, x, name, group=None, factor=None):
        return name

    def int_output(self, x, group):
        self.feats.append(x)


def data_free_ranges(det, k: float = 4.0) -> None:
    """Set every activation range of a quantized detector from propagated BN statistics."""
    w = _StatsWalker(k)
    walk_detector(det, w, w)
