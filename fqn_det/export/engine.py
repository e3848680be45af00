"""Integer-only execution of an :class:`IntGraph` (plain PyTorch).

Tensors are int64 integer levels. Convolutions and matrix products run as
float kernels on the centred integers ``x - z_x`` and ``w - z_w``: every
product and partial sum is an integer whose magnitude is at most the node's
accumulator bound (recorded at export). Below 2^24 float32 holds every such
integer exactly, so those layers run in float32; the others in float64
(exact below 2^53; bounds are < 2^31). The float64 layers are listed in
:attr:`IntegerEngine.float64_layers`. At run time the accumulators are checked
to be integers within the bound, and a few sampled outputs per layer are
recomputed in int64 and compared (so a kernel that is not an exact
accumulation, e.g. a Winograd convolution, cannot pass silently).
Requantization is fixed-point; adds use TFLite's left-shifted fixed-point
scheme; max-pool and nearest upsampling move integers. The arithmetic is
:mod:`fqn_det.quant.integer_ops`, which the fake-quantized model's
integer-exact evaluation uses too.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..quant import integer_ops as iops
from ..quant.fixed_point import exact_in_float64
from .graph import IntGraph, Node, TensorQ
from .weights import centered_weight

#: Outputs per layer and run recomputed in int64 by the exactness check.
CHECK_SAMPLES = 16


class InexactAccumulatorError(RuntimeError):
    """A float kernel did not produce the exact integer accumulator."""


def kernel_dtype(node: Node) -> str:
    """``'float32'`` when the node's export-time accumulator bound is < 2^24, else ``'float64'``."""
    return str(iops.kernel_dtype(int(node.attrs['acc_bound']))).replace('torch.', '')


def _t(a) -> Tensor:
    return torch.as_tensor(a)


class IntegerEngine:
    """Runs integer graphs.

    Args:
        graph (IntGraph): The graph.
        check (bool): Check the exactness invariants at run time. Defaults to True.

    Attributes:
        float64_layers (list[str]): Layers whose accumulator bound does not fit
            float32 exactly (>= 2^24); they run in float64, the rest in float32.
    """

    def __init__(self, graph: IntGraph, check: bool = True) -> None:
        self.g = graph
        self.check = check
        self._prep: Dict[str, dict] = {}
        self.float64_layers: List[str] = []
        for n in graph.nodes:
            if n.op in ('conv', 'linear'):
                if not exact_in_float64(n.attrs['acc_bound']):
                    raise ValueError(f'{n.name}: accumulator bound too large for exact emulation')
                dtype = getattr(torch, kernel_dtype(n))
                if dtype is torch.float64:
                    self.float64_layers.append(n.name)
                w = torch.from_numpy(centered_weight(n.params['weight'], n.params['w_zero_point']))
                self._prep[n.name] = dict(
                    w=w.to(dtype), w_int=w, dtype=dtype, bias=_t(n.params['bias']).to(torch.int64),
                    m0=_t(n.params['m0']).to(torch.int64), shift=_t(n.params['shift']).to(torch.int64))

    def tq(self, name: str) -> TensorQ:
        return self.g.tensors[name]

    # -- ops -----------------------------------------------------------------
    def _acc(self, node: Node, x: Tensor) -> Tensor:
        p, a = self._prep[node.name], node.attrs
        xi = x - self.tq(node.inputs[0]).zero_point
        acc = iops.accumulate(xi, p['w'], p['dtype'], a if node.op == 'conv' else None)
        acc_i = acc.round().long()
        if self.check and acc.numel():
            if not torch.equal(acc, acc.round()):
                raise InexactAccumulatorError(f'{node.name}: non-integer accumulator from the {p["dtype"]} kernel')
            _check_samples(node, xi, p['w_int'], acc_i)
        acc_i = acc_i + p['bias'].reshape(1, -1, *([1] * (acc_i.dim() - 2)))
        if self.check and acc_i.numel() and int(acc_i.abs().max()) > a['acc_bound']:
            raise InexactAccumulatorError(f'{node.name}: accumulator exceeds its export-time bound '
                                          f'{a["acc_bound"]}')
        return acc_i

    def _weighted(self, node: Node, x: Tensor) -> Tensor:
        p, ty = self._prep[node.name], self.tq(node.outputs[0])
        acc = self._acc(node, x)
        return iops.requantize_output(acc, p['m0'], p['shift'], ty.broadcast(acc.dim())[1], node.attrs['lo'], ty.qmax)

    def _add(self, node: Node, a: Tensor, b: Tensor) -> Tensor:
        ta, tb, ty = (self.tq(n) for n in (*node.inputs, node.outputs[0]))
        p = node.params
        return iops.integer_add(a - ta.zero_point, b - tb.zero_point, p['m0_a'], p['shift_a'], p['m0_b'],
                                p['shift_b'], ty.zero_point, node.attrs['lo'], ty.qmax, node.attrs['add_shift'])

    def _requant(self, node: Node, x: Tensor) -> Tensor:
        tx, ty = self.tq(node.inputs[0]), self.tq(node.outputs[0])
        return iops.rescale(x - tx.zero_point, node.params['m0'], node.params['shift'], ty.zero_point, ty.qmin,
                            ty.qmax)

    def _maxpool(self, node: Node, x: Tensor) -> Tensor:
        a = node.attrs
        # float64 holds these small integers exactly; padding acts as -inf
        return F.max_pool2d(x.double(), a['kernel'], a['stride'], a['padding'], a['dilation'],
                            a['ceil_mode']).long()

    def _group_norm(self, node: Node, x: Tensor) -> Tensor:
        a, p = node.attrs, node.params
        tx, ty = self.tq(node.inputs[0]), self.tq(node.outputs[0])
        gp = iops.GroupNormParams(a['groups'], p['m0'], p['shift'], p['sign'], p['beta'], a['eps_fp'], a['eps_frac'])
        return iops.group_norm(x - tx.zero_point, gp, a['in_max_abs'], ty.zero_point, a['lo'], ty.qmax)

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
                y = iops.quantize_input(x[0], t.scale, t.zero_point, t.qmin, t.qmax)
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
            elif n.op == 'group_norm':
                y = self._group_norm(n, x[0])
            elif n.op == 'relu':
                y = x[0].clamp(min=n.attrs['lo'])
            elif n.op == 'flatten':
                y = x[0].flatten(1)
            elif n.op == 'dequantize':
                t = self.tq(n.inputs[0])  # per tensor or per channel
                ints[n.outputs[0]] = x[0]
                y = iops.dequantize(x[0], _scaled(t.scale, n.attrs.get('factor')), t.zero_point, t.axis)
            else:
                raise ValueError(f'unknown op {n.op!r} in node {n.name}')
            env[n.outputs[0]] = y
        out = {k: env[k] for k in self.g.outputs}
        out['_int'] = ints
        return out

    def grouped(self, out: Dict[str, Tensor], group: str) -> List[Tensor]:
        return [out[k] for k in self.g.output_groups[group]]


def _scaled(scale, factor):
    """A dequantization scale times an output factor (e.g. a learned Scale), in float64."""
    return scale if factor is None else np.asarray(scale, np.float64) * float(factor)


def _check_samples(node: Node, xi: Tensor, w: Tensor, acc: Tensor) -> None:
    """Recompute :data:`CHECK_SAMPLES` accumulators (bias excluded) in int64 and compare."""
    gen = torch.Generator().manual_seed(acc.numel())
    flat = torch.randint(0, acc.numel(), (CHECK_SAMPLES,), generator=gen)
    if node.op == 'linear':
        r, c = flat // acc.shape[1], flat % acc.shape[1]
        exact = (xi[r] * w[c]).sum(1)
        got = acc[r, c]
    else:
        a = node.attrs
        (sh, sw), (ph, pw), (dh, dw), groups = a['stride'], a['padding'], a['dilation'], a['groups']
        n_, co, oh, ow = acc.shape
        b, c, y, x = (flat // (co * oh * ow), flat // (oh * ow) % co, flat // ow % oh, flat % ow)
        xp = F.pad(xi, (pw, pw, ph, ph))  # zero padding of centred integers (= padding q with z_x)
        cin_g, kh, kw = w.shape[1:]
        ci = (c // (co // groups) * cin_g)[:, None] + torch.arange(cin_g)[None]  # (S, cin_g) input channels
        ky = y[:, None] * sh + torch.arange(kh)[None] * dh  # (S, kh)
        kx = x[:, None] * sw + torch.arange(kw)[None] * dw
        patch = xp[b[:, None, None, None], ci[:, :, None, None], ky[:, None, :, None], kx[:, None, None, :]]
        exact = (patch * w[c]).sum((1, 2, 3))
        got = acc.reshape(-1)[flat]
    if not torch.equal(got, exact):
        raise InexactAccumulatorError(f'{node.name}: the float kernel differs from the int64 accumulator at '
                                      f'{int((got != exact).sum())} of {CHECK_SAMPLES} sampled outputs')
