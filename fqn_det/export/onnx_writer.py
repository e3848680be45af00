"""Write an :class:`IntGraph` as a standard ONNX model that runs on integer kernels.

QuantizeLinear on the input; QLinearConv (convs, and linears as 1x1 convs),
QLinearAdd (com.microsoft; adds and requantizations), MaxPool and nearest
Resize on uint8 tensors; DequantizeLinear only on the head outputs. Values of
fewer than 8 bits live in 8-bit containers: a ``Clip`` after each requantizing
op keeps them in ``[qmin, qmax]`` (onnxruntime saturates to the container's
range only). Asymmetric activations are uint8. Weights are zero-centred int8
``q - z`` with zero-point 0 for every scheme that fits (the fast u8s8 kernels);
at opset 21 (the default) 4-bit weights are INT4 / UINT4 initializers, two per
byte, cast to int8 when onnxruntime loads the model. A head output with
per-channel ranges is one QLinearConv plus a per-channel clip, whatever the
number of channels (:meth:`_Writer.per_channel_output`).

Requantization (``requant``): ``'fast'`` (the default) uses onnxruntime's
``QLinearConv`` / ``QLinearAdd`` kernels, which rescale with a float32
multiplier (convs) and XNNPack's fixed point (adds); they give the integer
engine's integers up to 6-bit activations, and at 7-8 bits differ on about one
output in 10^5 per layer. ``'exact'`` writes the engine's own fixed-point
arithmetic (``ConvInteger``, then int64 ``Mul`` by ``M0`` and a rounding
right shift as ``Div``; the add likewise): the engine's integers at every bit
width, with no float operation between the input quantization and the head
outputs (but the exact integer square root of a GroupNorm, see
:meth:`_Writer.group_norm`), on slower kernels. A GroupNorm is written in int64
ops in both modes.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..quant.fixed_point import multiplier_value
from .graph import IntGraph, TensorQ
from .weights import centered_int8

#: 21: 4-bit weights as INT4 / UINT4 initializers; 17: every weight in an 8-bit container
OPSETS = (17, 21)
OPSET = 21
#: 'fast': onnxruntime's QLinearConv / QLinearAdd; 'exact': the engine's fixed point in integer ops
REQUANT_MODES = ('fast', 'exact')
MS_DOMAIN = 'com.microsoft'


class OnnxExportError(RuntimeError):
    """The graph cannot be expressed with onnxruntime's integer kernels."""


class _Writer:
    def __init__(self, g: IntGraph, name: str, opset: int, requant: str = 'fast') -> None:
        if opset not in OPSETS:
            raise OnnxExportError(f'ONNX opset must be one of {OPSETS}, got {opset}')
        if requant not in REQUANT_MODES:
            raise OnnxExportError(f'ONNX requantization must be one of {REQUANT_MODES}, got {requant!r}')
        self.g, self.name, self.opset, self.exact = g, name, opset, requant == 'exact'
        #: per-channel head outputs written on a grid shifted to one zero-point (tensor -> that zero-point)
        self.shifted_zp: Dict[str, int] = {}
        self.nodes: List[onnx.NodeProto] = []
        self.inits: List[onnx.TensorProto] = []
        self._consts: Dict[tuple, str] = {}
        self._n = 0
        for t in g.tensors.values():
            if t.qmin < 0 or t.qmax > 255:
                raise OnnxExportError('ONNX export supports asymmetric (unsigned) activations only')

    def const(self, value, dtype, hint='c') -> str:
        """An initializer; identical constants (e.g. weights shared by FPN levels) are stored once."""
        a = np.asarray(value, dtype=dtype)
        key = (a.dtype.str, a.shape, a.tobytes())
        if key not in self._consts:
            self._n += 1
            self._consts[key] = f'{hint}_{self._n}'
            self.inits.append(numpy_helper.from_array(a, self._consts[key]))
        return self._consts[key]

    def node(self, op, inputs, outputs=None, domain=None, **attrs) -> str:
        self._n += 1
        outputs = outputs or [f'onnx_{op.lower()}_{self._n}']  # never an integer graph tensor's name
        self.nodes.append(helper.make_node(op, inputs, outputs, name=f'{op}_{self._n}', domain=domain, **attrs))
        return outputs[0]

    def qparams(self, t: TensorQ):
        """Scale and zero-point initializers: scalars, or 1-D (one per channel) for per-channel tensors."""
        return (self.const(np.asarray(t.scale, np.float32), np.float32, 's'),
                self.const(np.asarray(t.zero_point, np.uint8), np.uint8, 'zp'))

    def clip(self, x: str, lo: int, hi: int, out: str) -> str:
        if lo <= 0 and hi >= 255:
            return self.node('Identity', [x], [out])
        return self.node('Clip', [x, self.const(np.uint8(lo), np.uint8, 'lo'),
                                  self.const(np.uint8(hi), np.uint8, 'hi')], [out])

    def weight(self, n, w: np.ndarray) -> tuple:
        """``(weight, weight zero-point)`` inputs of QLinearConv / ConvInteger for integer weights ``w``.

        Zero-centred int8 ``q - z`` with zero-point 0 whenever it fits (every
        scheme of up to 7 bits, symmetric or not): onnxruntime's u8s8 kernels.
        From opset 21 on, weights of up to 4 bits are stored as INT4 (centred
        values in [-8, 7]) or UINT4 (``q``, then ``Sub`` of the zero-points)
        initializers, two per byte, which onnxruntime folds to int8 at load time.
        """
        wz = n.params['w_zero_point']
        c8 = centered_int8(w, wz)
        if c8 is None:  # centred values need 9 bits: uint8 with zero-point (slow path, wide 8-bit weights only)
            return (self.const(w.astype(np.uint8), np.uint8, 'w'),
                    self.const(np.asarray(wz).astype(np.uint8), np.uint8, 'wz'))
        zero = self.const(np.int8(0), np.int8, 'wz')
        if self.opset < 21 or n.attrs['w_bits'] > 4:
            return self.const(c8, np.int8, 'w'), zero
        q = np.asarray(w).astype(np.int64)
        if c8.size == 0 or (int(c8.min()) >= -8 and int(c8.max()) <= 7):
            stored, dtype, offset = c8.astype(np.int64), TensorProto.INT4, None
        elif int(q.min()) >= 0 and int(q.max()) <= 15:
            stored, dtype = q, TensorProto.UINT4
            offset = np.asarray(wz).astype(np.int8).reshape(-1, *([1] * (w.ndim - 1)))
        else:
            return self.const(c8, np.int8, 'w'), zero
        key = ('int4', dtype, stored.shape, stored.tobytes(), None if offset is None else offset.tobytes())
        if key not in self._consts:
            self._n += 1
            name = f'w4_{self._n}'
            self.inits.append(helper.make_tensor(name, dtype, list(stored.shape),
                                                 _pack4(stored).tobytes(), raw=True))
            out = self.node('Cast', [name], to=TensorProto.INT8)
            if offset is not None:
                out = self.node('Sub', [out, self.const(offset, np.int8, 'wzc')])
            self._consts[key] = out
        return self._consts[key], zero

    def conv_inputs(self, n, linear: bool):
        """``(x, tx, y, ty, w, attrs)`` of a conv / linear node; a linear runs as a 1x1 conv on (N, C, 1, 1)."""
        x, y = n.inputs[0], n.outputs[0]
        tx, ty = self.g.tensors[x], self.g.tensors[y]
        w = n.params['weight']
        if linear:
            w = w.reshape(*w.shape, 1, 1)
            x = self.node('Unsqueeze', [x, self.const(np.array([2, 3], np.int64), np.int64, 'axes')])
        attrs = {} if linear else dict(strides=n.attrs['stride'], dilations=n.attrs['dilation'],
                                       group=n.attrs['groups'], pads=n.attrs['padding'] * 2)
        return x, tx, y, ty, w, attrs

    def weighted(self, n, linear: bool) -> None:
        x, tx, y, ty, w, attrs = self.conv_inputs(n, linear)
        wq, wz = self.weight(n, w)
        xs, xz = self.qparams(tx)
        b = self.const(n.params['bias'].astype(np.int32), np.int32, 'b')
        if ty.per_channel:
            if ty.axis != 1:
                raise OnnxExportError(f'{n.name}: per-channel outputs need axis 1, got {ty.axis}')
            conv = self.per_channel_output(n, x, xz, wq, wz, b, ty, attrs)
        else:
            ws = self.const(n.params['w_scale'].astype(np.float32), np.float32, 'ws')
            conv = self.node('QLinearConv', [x, xs, xz, wq, ws, wz, *self.qparams(ty), b], **attrs)
            if linear:
                conv = self.node('Flatten', [conv], axis=1)
            self.clip(conv, n.attrs['lo'], ty.qmax, y)
            return
        self.node('Flatten' if linear else 'Identity', [conv], [y], **({'axis': 1} if linear else {}))

    def per_channel_output(self, n, x, xz, wq, wz, b, ty: TensorQ, attrs) -> str:
        """A conv whose output has one range per channel, in a constant number of nodes.

        The requantization multipliers ``M_c = s_x * s_w,c / s_y,c`` are per
        channel anyway; only the output zero-points ``z_c`` differ from a
        per-tensor output. QLinearConv with unit input/output scales, weight
        scales ``M_c`` and one zero-point ``Z`` computes ``Z + round(acc_c * M_c)``;
        per-channel Max / Min clip it to ``[lo - z_c, qmax - z_c] + Z``, which is
        ``q_c - z_c + Z``: the engine's integer on a grid shifted by ``Z - z_c``
        (recorded for the dequantization). When no ``Z`` keeps every channel's
        range inside uint8 (outputs of 8 bits), ConvInteger gives the int32
        accumulators and the requantization is a few float vector ops.
        """
        cout = n.params['bias'].shape[0]
        m = multiplier_value(n.params['m0'], n.params['shift'])
        m = np.broadcast_to(m, (cout,)).astype(np.float32)
        zc = np.broadcast_to(np.asarray(ty.zero_point, np.int64), (cout,))
        lo = np.broadcast_to(np.asarray(n.attrs['lo'], np.int64), (cout,))
        shape = (1, cout, 1, 1)
        z_min, z_max = int((zc - lo).max()), 255 - int((ty.qmax - zc).max())
        if z_min <= z_max:
            big_z = z_min
            one = self.const(np.float32(1.0), np.float32, 's')
            conv = self.node('QLinearConv', [x, one, xz, wq, self.const(m, np.float32, 'm'), wz, one,
                                             self.const(np.uint8(big_z), np.uint8, 'zp'), b], **attrs)
            conv = self.node('Max', [conv, self.const((lo - zc + big_z).astype(np.uint8).reshape(shape),
                                                      np.uint8, 'lo')])
            out = self.node('Min', [conv, self.const((ty.qmax - zc + big_z).astype(np.uint8).reshape(shape),
                                                     np.uint8, 'hi')])
            self.shifted_zp[n.outputs[0]] = big_z
            return out
        if centered_int8(n.params['weight'], n.params['w_zero_point']) is None:
            raise OnnxExportError(f'{n.name}: 8-bit per-channel outputs need weights whose centred values fit '
                                  'int8 (onnxruntime\'s ConvInteger takes one weight zero-point)')
        acc = self.node('ConvInteger', [x, wq, xz, wz], **attrs)
        acc = self.node('Add', [acc, self.const(n.params['bias'].astype(np.int32).reshape(shape), np.int32, 'b')])
        v = self.node('Round', [self.node('Mul', [self.node('Cast', [acc], to=TensorProto.FLOAT),
                                                  self.const(m.reshape(shape), np.float32, 'm')])])
        v = self.node('Add', [v, self.const(zc.astype(np.float32).reshape(shape), np.float32, 'zc')])
        v = self.node('Min', [self.node('Max', [v, self.const(lo.astype(np.float32).reshape(shape), np.float32,
                                                              'lo')]),
                              self.const(np.float32(ty.qmax), np.float32, 'hi')])
        return self.node('Cast', [v], to=TensorProto.UINT8)

    # -- exact fixed-point requantization (requant='exact') -------------------
    def i64(self, value, shape=None) -> str:
        a = np.asarray(value, np.int64)
        return self.const(a if shape is None else a.reshape(shape), np.int64, 'i')

    def rounding_rshift(self, p: str, k, shape) -> str:
        """``round(p / 2^k)``, ties away from zero, for int64 ``p`` (the engine's ``rounding_rshift``)."""
        k = np.minimum(np.asarray(k, np.int64), 62)
        half = np.where(k > 0, np.left_shift(np.int64(1), np.maximum(k - 1, 0)), 0)
        mag = self.node('Div', [self.node('Add', [self.node('Abs', [p]), self.i64(half, shape)]),
                                self.i64(np.left_shift(np.int64(1), k), shape)])
        return self.node('Mul', [mag, self.node('Sign', [p])])

    def to_uint8(self, v: str, zero_point, lo, hi: int, out: str, shape) -> str:
        """``clamp(z + v, lo, hi)`` of int64 ``v`` as uint8 (``z`` and ``lo`` per channel or scalar)."""
        v = self.node('Add', [v, self.i64(zero_point, shape)])
        v = self.node('Min', [self.node('Max', [v, self.i64(lo, shape)]), self.i64(hi)])
        return self.node('Cast', [v], [out], to=TensorProto.UINT8)

    def weighted_exact(self, n, linear: bool) -> None:
        """``ConvInteger`` + int32 bias, then ``z + round(acc * M0 / 2^(31 + shift))`` in int64."""
        x, tx, y, ty, w, attrs = self.conv_inputs(n, linear)
        cout = n.params['bias'].shape[0]
        shape = (1, cout, 1, 1)
        xz = self.const(np.asarray(tx.zero_point, np.uint8), np.uint8, 'zp')  # no scale: nothing float here
        if centered_int8(w, n.params['w_zero_point']) is not None:
            wq, wz = self.weight(n, w)
            acc = self.node('ConvInteger', [x, wq, xz, wz], **attrs)
        else:  # 8-bit asymmetric weights: centred values in [-255, 255], as int8 parts (an exact int32 sum)
            rest = w.astype(np.int64) - np.asarray(n.params['w_zero_point'], np.int64).reshape(-1, 1, 1, 1)
            zero = self.const(np.int8(0), np.int8, 'wz')
            acc = None
            while rest.any():  # at most three parts (255 = 127 + 127 + 1)
                part = np.clip(rest, -128, 127)
                rest = rest - part
                y_part = self.node('ConvInteger', [x, self.const(part.astype(np.int8), np.int8, 'w'), xz, zero],
                                   **attrs)
                acc = y_part if acc is None else self.node('Add', [acc, y_part])
            if acc is None:  # all-zero weights
                acc = self.node('ConvInteger', [x, self.const(np.zeros(w.shape, np.int8), np.int8, 'w'), xz, zero],
                                **attrs)
        acc = self.node('Add', [acc, self.const(n.params['bias'].astype(np.int32).reshape(shape), np.int32, 'b')])
        m0 = np.broadcast_to(np.asarray(n.params['m0'], np.int64), (cout,))
        shift = np.broadcast_to(np.asarray(n.params['shift'], np.int64), (cout,))
        prod = self.node('Mul', [self.node('Cast', [acc], to=TensorProto.INT64), self.i64(m0, shape)])
        v = self.rounding_rshift(prod, 31 + shift, shape)
        zc = np.broadcast_to(np.asarray(ty.zero_point, np.int64), (cout,))
        lo = np.broadcast_to(np.asarray(n.attrs['lo'], np.int64), (cout,))
        if not linear:
            self.to_uint8(v, zc, lo, ty.qmax, y, shape)
            return
        q = self.to_uint8(v, zc, lo, ty.qmax, f'{y}_4d', shape)
        self.node('Flatten', [q], [y], axis=1)

    def centred_i64(self, x: str, t: TensorQ) -> str:
        return self.node('Sub', [self.node('Cast', [x], to=TensorProto.INT64), self.i64(t.zero_point)])

    def add_exact(self, n) -> None:
        """The engine's integer add: each input ``<< ADD_SHIFT``, rescaled, summed, shifted back."""
        a, b = n.inputs
        ta, tb, ty = (self.g.tensors[k] for k in (a, b, n.outputs[0]))
        sh, p = n.attrs['add_shift'], n.params
        parts = []
        for x, t, m0, s in ((a, ta, p['m0_a'], p['shift_a']), (b, tb, p['m0_b'], p['shift_b'])):
            scaled = self.node('Mul', [self.centred_i64(x, t), self.i64(np.asarray(m0, np.int64) << sh)])
            parts.append(self.rounding_rshift(scaled, 31 + np.asarray(s, np.int64), None))
        v = self.rounding_rshift(self.node('Add', parts), sh, None)
        self.to_uint8(v, ty.zero_point, n.attrs['lo'], ty.qmax, n.outputs[0], None)

    def rescale_exact(self, n) -> None:
        """``clamp(z_y + round((q - z_x) * M))``: levels moved to another grid."""
        tx, ty = self.g.tensors[n.inputs[0]], self.g.tensors[n.outputs[0]]
        scaled = self.node('Mul', [self.centred_i64(n.inputs[0], tx), self.i64(n.params['m0'])])
        v = self.rounding_rshift(scaled, 31 + np.asarray(n.params['shift'], np.int64), None)
        self.to_uint8(v, ty.zero_point, ty.qmin, ty.qmax, n.outputs[0], None)

    def group_norm(self, n) -> None:
        """The engine's integer GroupNorm (:func:`fqn_det.quant.integer_ops.group_norm`) in int64 ops.

        The exact integer square root starts from a float64 ``Sqrt`` of the int64
        variance term, floored and corrected by one (as the engine computes it): the
        only float operation, whose result is an exact integer.
        """
        x, y = n.inputs[0], n.outputs[0]
        tx, ty = self.g.tensors[x], self.g.tensors[y]
        a, p = n.attrs, n.params
        c = p['m0'].shape[0]
        shape = (1, c, 1, 1)
        d = self.centred_i64(x, tx)
        g = self.node('Reshape', [d, self.i64([0, a['groups'], -1])])
        g_shape = self.node('Shape', [g])
        m = self.node('Slice', [g_shape, self.i64([2]), self.i64([3])])  # group size, (1,)
        axes = self.i64([2])
        s = self.node('ReduceSum', [g, axes], keepdims=1)
        v = self.node('Sub', [self.node('Mul', [m, self.node('ReduceSum', [self.node('Mul', [g, g]), axes],
                                                             keepdims=1)]),
                              self.node('Mul', [s, s])])
        frac = int(a['eps_frac'])
        eps = self.node('Div', [self.node('Add', [self.node('Mul', [self.node('Mul', [m, m]), self.i64(a['eps_fp'])]),
                                                  self.i64((1 << frac) >> 1)]), self.i64(1 << frac)])
        v = self.node('Mul', [self.node('Add', [v, eps]), self.i64(1 << (2 * int(a['std_bits'])))])
        guess = self.node('Sqrt', [self.node('Cast', [v], to=TensorProto.DOUBLE)])
        r = self.node('Cast', [self.node('Floor', [guess])], to=TensorProto.INT64)
        r = self.node('Sub', [r, self.node('Cast', [self.node('Greater', [self.node('Mul', [r, r]), v])],
                                           to=TensorProto.INT64)])
        r1 = self.node('Add', [r, self.i64(1)])
        r = self.node('Add', [r, self.node('Cast', [self.node('LessOrEqual', [self.node('Mul', [r1, r1]), v])],
                                           to=TensorProto.INT64)])
        r = self.node('Max', [r, self.i64(1)])
        num = self.node('Sub', [self.node('Mul', [m, g]), s])
        x_shape = self.node('Shape', [x])
        num = self.node('Reshape', [num, x_shape])
        r = self.node('Reshape', [self.node('Expand', [r, g_shape]), x_shape])
        prod = self.node('Mul', [num, self.i64(p['m0'], shape)])
        two_r = self.node('Mul', [r, self.i64(2)])
        u = self.node('Div', [self.node('Add', [self.node('Mul', [self.node('Abs', [prod]), self.i64(2)]), r]), two_r])
        u = self.node('Mul', [u, self.node('Sign', [prod])])
        u = self.node('Add', [self.node('Mul', [u, self.i64(p['sign'], shape)]), self.i64(p['beta'], shape)])
        v = self.rounding_rshift(u, 31 + np.asarray(p['shift'], np.int64) - int(a['std_bits']), shape)
        self.to_uint8(v, ty.zero_point, a['lo'], ty.qmax, y, None)

    def qadd(self, a: str, ta: TensorQ, b: str, tb: TensorQ, ty: TensorQ, out: str, lo: int) -> None:
        s = self.node('QLinearAdd', [a, *self.qparams(ta), b, *self.qparams(tb), *self.qparams(ty)],
                      domain=MS_DOMAIN)
        self.clip(s, lo, ty.qmax, out)

    def write(self) -> onnx.ModelProto:
        g = self.g
        inputs, outputs = [], []
        for name in g.inputs:
            if name in g.tensors:  # integer input (RoI features)
                inputs.append(helper.make_tensor_value_info(name, TensorProto.UINT8, ['N', 'C', 'H', 'W']))
            else:
                inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ['N', 3, 'H', 'W']))
        for n in g.nodes:
            x, y = n.inputs[0], n.outputs[0]
            if n.op != 'dequantize' and any(i in self.shifted_zp for i in n.inputs):
                raise OnnxExportError(f'{n.name}: reads a per-channel head output; only dequantize can')
            if n.op == 'quantize':
                ty = g.tensors[y]
                q = self.node('QuantizeLinear', [x, *self.qparams(ty)])
                self.clip(q, ty.qmin, ty.qmax, y)
            elif n.op in ('conv', 'linear'):
                (self.weighted_exact if self.exact else self.weighted)(n, n.op == 'linear')
            elif n.op == 'add' and self.exact:
                self.add_exact(n)
            elif n.op == 'add':
                self.qadd(x, g.tensors[x], n.inputs[1], g.tensors[n.inputs[1]], g.tensors[y], y, n.attrs['lo'])
            elif n.op == 'requant' and self.exact:
                self.rescale_exact(n)
            elif n.op == 'requant':
                zero = TensorQ(1.0, 0, 0, 255)
                self.qadd(x, g.tensors[x], self.const(np.uint8(0), np.uint8, 'zero'), zero, g.tensors[y],
                          y, g.tensors[y].qmin)
            elif n.op == 'maxpool':
                a = n.attrs
                if a['dilation'] != [1, 1]:
                    raise OnnxExportError(f'{n.name}: dilated max-pool')
                self.node('MaxPool', [x], [y], kernel_shape=a['kernel'], strides=a['stride'],
                          pads=a['padding'] * 2, ceil_mode=int(a['ceil_mode']))
            elif n.op == 'upsample':
                like = n.inputs[1]
                nc = self.node('Slice', [self.node('Shape', [x]), self.const([0], np.int64), self.const([2], np.int64)])
                hw = self.node('Slice', [self.node('Shape', [like]), self.const([2], np.int64),
                                         self.const([4], np.int64)])
                sizes = self.node('Concat', [nc, hw], axis=0)
                self.node('Resize', [x, '', '', sizes], [y], mode='nearest',
                          coordinate_transformation_mode='asymmetric', nearest_mode='floor')
            elif n.op == 'group_norm':
                self.group_norm(n)
            elif n.op == 'relu':
                self.clip(x, n.attrs['lo'], g.tensors[x].qmax, y)
            elif n.op == 'flatten':
                self.node('Flatten', [x], [y], axis=1)
            elif n.op == 'dequantize':
                t = g.tensors[x]
                s, zp = self.qparams(t)
                if n.attrs.get('factor') is not None:  # e.g. a learned Scale, folded into the output's scale
                    s = self.const(np.asarray(t.scale, np.float64) * n.attrs['factor'], np.float32, 's')
                if x in self.shifted_zp:
                    zp = self.const(np.full(len(t.scale), self.shifted_zp[x], np.uint8), np.uint8, 'zp')
                self.node('DequantizeLinear', [x, s, zp], [y], **({'axis': t.axis} if t.per_channel else {}))
            else:
                raise OnnxExportError(f'no ONNX mapping for op {n.op!r} ({n.name})')
        producer = {o: n for n in g.nodes for o in n.outputs}
        for name in g.outputs:
            dt = TensorProto.UINT8 if name in g.tensors else TensorProto.FLOAT
            src = producer[name]
            while src.op in ('dequantize', 'requant', 'relu'):
                src = producer[src.inputs[0]]
            rank = 2 if src.op in ('linear', 'flatten') else 4
            dims = [f'{name}_d{i}' for i in range(rank)]
            outputs.append(helper.make_tensor_value_info(name, dt, dims))
        graph = helper.make_graph(self.nodes, self.name, inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', self.opset),
                                                        helper.make_opsetid(MS_DOMAIN, 1)],
                                  producer_name='fqn_det')
        model.ir_version = 10 if self.opset >= 21 else 8  # INT4 tensors need IR version 10
        return model


def _pack4(v: np.ndarray) -> np.ndarray:
    """4-bit values (two's complement for INT4) two per byte, first element in the low nibble (ONNX's order)."""
    u = (np.asarray(v).astype(np.int64).reshape(-1) & 0x0F).astype(np.uint8)
    if u.size % 2:
        u = np.concatenate([u, np.zeros(1, np.uint8)])
    return (u[0::2] | (u[1::2] << 4)).astype(np.uint8)


def uses_int4(model: onnx.ModelProto) -> bool:
    """True if the model stores INT4 / UINT4 initializers (opset 21)."""
    return any(t.data_type in (TensorProto.INT4, TensorProto.UINT4) for t in model.graph.initializer)


def to_onnx(g: IntGraph, name: str = 'fqn_det', opset: int = OPSET, requant: str = 'fast') -> onnx.ModelProto:
    """The ONNX model of an integer graph (checked with ``onnx.checker``).

    Args:
        g (IntGraph): The graph.
        name (str): The ONNX graph name.
        opset (int): 21 (default): weights of up to 4 bits stored in 4 bits (INT4 / UINT4);
            17: every weight in an 8-bit container, for runtimes without INT4.
        requant (str): ``'fast'`` (default): onnxruntime's QLinearConv / QLinearAdd;
            ``'exact'``: the integer engine's fixed-point arithmetic in integer ops.
    """
    model = _Writer(g, name, opset, requant).write()
    onnx.checker.check_model(model)
    return model


def ort_session(model_or_path, threads: int = 2):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    src = model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto) else str(model_or_path)
    return ort.InferenceSession(src, opts, providers=['CPUExecutionProvider'])


def run_onnx(session, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))
