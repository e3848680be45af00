"""Integer-only execution of an :class:`IntGraph` (plain PyTorch).

Tensors are int64 integer levels. Convolutions and matrix products run as
float64 kernels on the centred integers ``q - zero_point``: every product and
partial sum is an integer whose magnitude is below the node's accumulator
bound (checked < 2^31 at export, far below float64's exact-integer limit 2^53),
so the float64 result is the exact integer accumulator, asserted at run time.
Requantization is fixed-point (:func:`requantize`); adds use TFLite's
left-shifted fixed-point scheme; max-pool and nearest upsampling move integers.
"""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import Tensor

from .fixed_point import exact_in_float64, requantize, rounding_rshift
from .graph import IntGraph, Node, TensorQ


def _t(a) -> Tensor:
    return torch.as_tensor(a)


class IntegerEngine:
    """Runs integer graphs.

    Args:
        graph (IntGraph): The graph.
        check (bool): Assert the exactness invariants at run time. Defaults to True.
    """

    def __init__(self, graph: IntGraph, check: bool = True) -> None:
        self.g = graph
        self.check = check
        self._prep: Dict[str, dict] = {}
        for n in graph.nodes:
            if n.op in ('conv', 'linear'):
                w = _t(n.params['weight']).to(torch.int64)
                zw = _t(n.params['w_zero_point']).to(torch.int64).reshape(-1, *([1] * (w.dim() - 1)))
                self._prep[n.name] = dict(
                    w=(w - zw).double(), bias=_t(n.params['bias']).to(torch.int64),
                    m0=_t(n.params['m0']).to(torch.int64), shift=_t(n.params['shift']).to(torch.int64))
                if not exact_in_float64(n.attrs['acc_bound']):
                    raise ValueError(f'{n.name}: accumulator bound too large for exact emulation')

    def tq(self, name: str) -> TensorQ:
        return self.g.tensors[name]

    # -- ops -----------------------------------------------------------------
    def _acc(self, node: Node, x: Tensor) -> Tensor:
        p, a = self._prep[node.name], node.attrs
        xc = (x - self.tq(node.inputs[0]).zero_point).double()
        if node.op == 'conv':
            acc = F.conv2d(xc, p['w'], None, a['stride'], a['padding'], a['dilation'], a['groups'])
            acc_i = acc.round().long()
            acc_i = acc_i + p['bias'].reshape(1, -1, 1, 1)
        else:
            acc = F.linear(xc, p['w'])
            acc_i = acc.round().long() + p['bias'].reshape(1, -1)
        if self.check:
            assert torch.equal(acc, acc.round()), f'{node.name}: non-integer accumulator'
            assert acc_i.numel() == 0 or int(acc_i.abs().max()) <= a['acc_bound'], f'{node.name}: bound exceeded'
        return acc_i

    def _weighted(self, node: Node, x: Tensor) -> Tensor:
        p, ty = self._prep[node.name], self.tq(node.outputs[0])
        acc = self._acc(node, x)
        y = ty.broadcast(acc.dim())[1] + requantize(acc, p['m0'], p['shift'], axis=1)
        return y.clamp_(node.attrs['lo'], ty.qmax)

    def _add(self, node: Node, a: Tensor, b: Tensor) -> Tensor:
        ta, tb, ty = (self.tq(n) for n in (*node.inputs, node.outputs[0]))
        p, sh = node.params, node.attrs['add_shift']
        ra = requantize((a - ta.zero_point) << sh, _t(p['m0_a']), _t(p['shift_a']))
        rb = requantize((b - tb.zero_point) << sh, _t(p['m0_b']), _t(p['shift_b']))
        y = ty.zero_point + rounding_rshift(ra + rb, torch.tensor(sh))
        return y.clamp_(node.attrs['lo'], ty.qmax)

    def _requant(self, node: Node, x: Tensor) -> Tensor:
        tx, ty = self.tq(node.inputs[0]), self.tq(node.outputs[0])
        y = ty.zero_point + requantize(x - tx.zero_point, _t(node.params['m0']), _t(node.params['shift']))
        return y.clamp_(ty.qmin, ty.qmax)

    def _maxpool(self, node: Node, x: Tensor) -> Tensor:
        a = node.attrs
        # float64 holds these small integers exactly; padding acts as -inf
        return F.max_pool2d(x.double(), a['kernel'], a['stride'], a['padding'], a['dilation'],
                            a['ceil_mode']).long()

    def run(self, feeds: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Execute the graph; float inputs for ``quantize`` nodes, int64 otherwise.

        Returns:
            dict: every graph output (dequantized float32 head outputs, integer
            int64 tensors for integer outputs) plus, under ``'_int'``, the integer
            levels of the dequantized outputs.
        """
        env: Dict[str, Tensor] = dict(feeds)
        ints: Dict[str, Tensor] = {}
        for n in self.g.nodes:
            x = [env[i] for i in n.inputs]
            if n.op == 'quantize':
                t = self.tq(n.outputs[0])
                y = torch.round(x[0].double() / t.scale + t.zero_point).clamp_(t.qmin, t.qmax).long()
            elif n.op in ('conv', 'linear'):
                y = self._weighted(n, x[0])
            elif n.op == 'add':
                y = self._add(n, x[0], x[1])
            elif n.op == 'requant':
                y = self._requant(n, x[0])
            elif n.op == 'maxpool':
                y = self._maxpool(n, x[0])
            elif n.op == 'upsample':
                y = F.interpolate(x[0].double(), size=x[1].shape[2:], mode='nearest').long()
            elif n.op == 'relu':
                y = x[0].clamp(min=n.attrs['lo'])
            elif n.op == 'flatten':
                y = x[0].flatten(1)
            elif n.op == 'dequantize':
                scale, zp = self.tq(n.inputs[0]).broadcast(x[0].dim())  # per tensor or per channel
                ints[n.outputs[0]] = x[0]
                y = ((x[0] - zp).double() * scale).float()
            else:
                raise ValueError(f'unknown op {n.op!r} in node {n.name}')
            env[n.outputs[0]] = y
        out = {k: env[k] for k in self.g.outputs}
        out['_int'] = ints
        return out

    def grouped(self, out: Dict[str, Tensor], group: str) -> List[Tensor]:
        return [out[k] for k in self.g.output_groups[group]]
