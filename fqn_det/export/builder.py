"""Turns fake-quantized layers into integer graph nodes.

For a conv with input ``(s_x, z_x)``, per-channel weights ``(s_w, z_w)`` and
output ``(s_y, z_y)`` (Jacob et al., CVPR 2018, eq. 7):

    acc_c = sum((q_x - z_x) * (q_w,c - z_w,c)) + round(b_c / (s_x * s_w,c))   (int32)
    q_y   = clamp(z_y + requant(acc_c, M_c), lo, qmax),  M_c = s_x * s_w,c / s_y

with ``lo = z_y`` when a ReLU is fused. A head output with per-channel ranges
has ``(s_y,c, z_y,c)`` per output channel, so ``M_c = s_x * s_w,c / s_y,c``: the
multipliers are per channel anyway. Zero padding of real values is padding
``q_x`` with ``z_x``, exact because ``z_x`` is an integer. Every node records
the bound of its accumulator, checked to fit int32 (and so float64 exactly).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..nn import QAdd, QConv2d, QLinear, QMaxPool2d, QUpsampleNearest
from ..nn.qconv import QAvgPool2d, QGroupNorm
from ..quant import ActQuantizer, NotCalibratedError
from ..quant.integer_ops import (ADD_SHIFT, GN_STD_BITS, accumulator_bound, avgpool_multiplier, group_norm_params,
                                 integer_weight, rescale_multiplier, weighted_multiplier)
from .graph import IntGraph, Node, TensorQ


class ExportError(RuntimeError):
    """The model cannot be exported as an integer model."""


def _tensor_q(q: ActQuantizer, per_channel_ok: bool = False) -> TensorQ:
    if not bool(q.initialized):
        raise NotCalibratedError(f'activation quantizer {q.name} has no range: export a calibrated, '
                                 'fine-tuned checkpoint (or a PTQ output)')
    s = q.scheme
    if q.per_channel:
        if not per_channel_ok:
            raise ExportError(f'{q.name}: per-channel activation ranges are only exported on conv / linear '
                              'head outputs')
        return TensorQ([float(v) for v in q.scale], [int(v) for v in q.zero_point], s.quant_min, s.quant_max,
                       axis=q.axis)
    return TensorQ(float(q.scale), int(q.zero_point), s.quant_min, s.quant_max)


class GraphBuilder:
    """Appends integer nodes to an :class:`IntGraph`, one quantized layer at a time.

    A :class:`fqn_det.nn.dataflow.Builder` whose "tensor" is a graph tensor name.
    """

    def __init__(self) -> None:
        self.g = IntGraph()
        self._count = 0

    def _new(self, q: TensorQ, hint: str = 't') -> str:
        self._count += 1
        name = f'{hint}_{self._count}'
        self.g.tensors[name] = q
        return name

    def _add(self, node: Node) -> None:
        self.g.nodes.append(node)

    def _in(self, x: str) -> TensorQ:
        """The quantization of tensor ``x`` as an integer op's input: per tensor only."""
        t = self.g.tensors[x]
        if t.per_channel:
            raise ExportError(f'tensor {x!r} has per-channel ranges and can only be dequantized as a head '
                              'output; an integer layer needs one range per input')
        return t

    # -- boundary ------------------------------------------------------------
    def input(self, name: str, q: ActQuantizer) -> str:
        """Float graph input ``name`` quantized by ``q``."""
        self.g.inputs.append(name)
        out = self._new(_tensor_q(q), 'in_q')
        self._add(Node('quantize', q.name, [name], [out]))
        return out

    def int_input(self, name: str, q: ActQuantizer) -> str:
        """An integer graph input (e.g. RoI features computed outside the graph)."""
        self.g.inputs.append(name)
        self.g.tensors[name] = _tensor_q(q)
        return name

    def output(self, x: str, name: str, group: Optional[str] = None, factor=None) -> str:
        attrs = {}
        if factor is not None:
            f = float(factor.detach()) if hasattr(factor, 'detach') else float(factor)
            if not f > 0:
                raise ExportError(f'{name}: output factor (e.g. a learned Scale) must be positive, got {f}')
            attrs['factor'] = f
        self._add(Node('dequantize', name, [x], [name], attrs))
        self.g.outputs.append(name)
        if group is not None:
            self.g.output_groups.setdefault(group, []).append(name)
        return name

    def int_output(self, x: str, group: str) -> str:
        """Expose integer tensor ``x`` as a graph output (no dequantization)."""
        self._in(x)
        self.g.outputs.append(x)
        self.g.output_groups.setdefault(group, []).append(x)
        return x

    # -- layers --------------------------------------------------------------
    def _weighted(self, op: str, m, w: torch.Tensor, b: Optional[torch.Tensor], x: str,
                  out_q: ActQuantizer, relu: bool, attrs: dict) -> str:
        tx, ty = self._in(x), _tensor_q(out_q, per_channel_ok=not relu)
        s = m.w_quant.scheme
        if not bool(m.w_quant.fake_quant_enabled):
            raise ExportError(f'{m.out_quant[0].name}: weight quantization is disabled')
        iw = integer_weight(m.w_quant, w, b, tx.scale)
        qw, z_w, s_w, bias_q = (t.cpu().numpy() for t in iw)
        bound = accumulator_bound(iw.centered.cpu(), tx.max_abs_centered, iw.bias.cpu())
        if bound >= 2 ** 31:
            raise ExportError(f'{out_q.name}: accumulator bound {bound} exceeds int32')
        m0, shift = weighted_multiplier(tx.scale, s_w, ty.scale)
        y = self._new(ty, op)
        lo = ty.zero_point if relu else ty.qmin
        self._add(Node(op, out_q.name, [x], [y], dict(
            attrs, relu=relu, lo=lo, w_bits=s.bits, w_symmetric=s.symmetric, acc_bound=bound),
            dict(weight=qw.astype(np.int8 if s.symmetric else np.uint8), w_zero_point=z_w,
                 w_scale=s_w.astype(np.float32), bias=bias_q.astype(np.int32), m0=m0, shift=shift)))
        return y

    def conv(self, m: QConv2d, x: str, site: int = 0) -> str:
        w, b = m.folded_weight_bias()
        c = m.conv
        return self._weighted('conv', m, w, b, x, m.out_quant[site], m.relu, dict(
            stride=list(c.stride), padding=list(c.padding), dilation=list(c.dilation), groups=c.groups))

    def linear(self, m: QLinear, x: str, site: int = 0) -> str:
        return self._weighted('linear', m, m.linear.weight, m.linear.bias, x, m.out_quant[site],
                              m.relu, {})

    def add(self, m: QAdd, a: str, b: str, site: int = 0) -> str:
        ta, tb, ty = self._in(a), self._in(b), _tensor_q(m.out_quant[site])
        ma, sa = rescale_multiplier(ta.scale, ty.scale)
        mb, sb = rescale_multiplier(tb.scale, ty.scale)
        y = self._new(ty, 'add')
        lo = ty.zero_point if m.relu else ty.qmin
        self._add(Node('add', m.out_quant[site].name, [a, b], [y],
                       dict(relu=m.relu, lo=lo, add_shift=ADD_SHIFT),
                       dict(m0_a=ma, shift_a=sa, m0_b=mb, shift_b=sb)))
        return y

    def requant(self, x: str, out_q: ActQuantizer, name: str) -> str:
        """``x`` rescaled to ``out_q``'s grid (nothing emitted when they already agree)."""
        tx, ty = self._in(x), _tensor_q(out_q)
        if tx.same_as(ty):
            return x
        m0, shift = rescale_multiplier(tx.scale, ty.scale)
        y = self._new(ty, 'rq')
        self._add(Node('requant', name, [x], [y], {}, dict(m0=m0, shift=shift)))
        return y

    def maxpool(self, m: QMaxPool2d, x: str, site: int = 0) -> str:
        y = self._new(self._in(x), 'pool')
        k = m.kernel_size

        def as_list(v):
            return list(v) if isinstance(v, (tuple, list)) else [v, v]
        self._add(Node('maxpool', m.out_quant[site].name + '.pool', [x], [y], dict(
            kernel=as_list(k), stride=as_list(m.stride if m.stride is not None else k),
            padding=as_list(m.padding), dilation=as_list(m.dilation), ceil_mode=bool(m.ceil_mode))))
        return self.requant(y, m.out_quant[site], m.out_quant[site].name)

    def avgpool(self, m: QAvgPool2d, x: str, site: int = 0) -> str:
        """Average pool as a depthwise conv with all-ones weights: the sum of ``k*k`` levels, requantized."""
        tx, out_q = self._in(x), m.out_quant[site]
        ty = _tensor_q(out_q)
        kh, kw = m.kernel_size
        c = m.channels
        bound = kh * kw * tx.max_abs_centered
        m0, shift = avgpool_multiplier(tx.scale, kh * kw, c, ty.scale)
        y = self._new(ty, 'avgpool')
        self._add(Node('conv', out_q.name, [x], [y], dict(
            stride=[kh, kw], padding=[0, 0], dilation=[1, 1], groups=c, relu=False, lo=ty.qmin, w_bits=8,
            w_symmetric=True, acc_bound=bound),
            dict(weight=np.ones((c, 1, kh, kw), np.int8), w_zero_point=np.zeros(c, np.int64),
                 w_scale=np.full(c, 1.0 / (kh * kw), np.float32), bias=np.zeros(c, np.int32), m0=m0, shift=shift)))
        return y

    def upsample(self, m: QUpsampleNearest, x: str, like: str, site: int = 0) -> str:
        """Nearest upsampling of ``x`` to the spatial size of tensor ``like``."""
        y = self._new(self._in(x), 'up')
        self._add(Node('upsample', m.out_quant[site].name + '.resize', [x, like], [y], dict(mode='nearest')))
        return self.requant(y, m.out_quant[site], m.out_quant[site].name)

    def group_norm(self, m: QGroupNorm, x: str, site: int = 0) -> str:
        """GroupNorm on integer levels: per-channel constants, statistics computed at run time."""
        tx, out_q = self._in(x), m.out_quant[site]
        ty = _tensor_q(out_q)
        g = m.gn
        try:
            p = group_norm_params(g.num_groups, g.weight, g.bias, g.num_channels, g.eps, tx.scale, ty.scale)
        except ValueError as e:
            raise ExportError(f'{out_q.name}: {e}') from None
        y = self._new(ty, 'gn')
        self._add(Node('group_norm', out_q.name, [x], [y], dict(
            groups=p.groups, relu=m.relu, lo=ty.zero_point if m.relu else ty.qmin, eps_fp=p.eps_fp,
            eps_frac=p.eps_frac, std_bits=GN_STD_BITS, in_max_abs=tx.max_abs_centered),
            dict(m0=p.m0, shift=p.shift, sign=p.sign, beta=p.beta)))
        return y

    def relu(self, x: str, name: str) -> str:
        t = self._in(x)
        y = self._new(t, 'relu')
        self._add(Node('relu', name, [x], [y], dict(lo=t.zero_point)))
        return y

    def flatten(self, x: str, name: str) -> str:
        y = self._new(self._in(x), 'flat')
        self._add(Node('flatten', name, [x], [y]))
        return y

