"""Write an :class:`IntGraph` as a standard ONNX model that runs on integer kernels.

QuantizeLinear on the input; QLinearConv (convs, and linears as 1x1 convs),
QLinearAdd (com.microsoft; adds and requantizations), MaxPool and nearest
Resize on uint8 tensors; DequantizeLinear only on the head outputs. Values of
fewer than 8 bits live in 8-bit containers: a ``Clip`` after each requantizing
op keeps them in ``[qmin, qmax]`` (onnxruntime saturates to the container's
range only). Asymmetric activations are uint8; weights are uint8 (asymmetric)
or int8 (symmetric). A head output with per-channel ranges is one QLinearConv per
output channel (each with its own output scale), concatenated, and dequantized
per axis.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .graph import IntGraph, TensorQ

OPSET = 17
MS_DOMAIN = 'com.microsoft'


class OnnxExportError(RuntimeError):
    """The graph cannot be expressed with onnxruntime's integer kernels."""


class _Writer:
    def __init__(self, g: IntGraph, name: str) -> None:
        self.g, self.name = g, name
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
        outputs = outputs or [f'{op.lower()}_{self._n}']
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

    def weighted(self, n, linear: bool) -> None:
        x, y = n.inputs[0], n.outputs[0]
        tx, ty = self.g.tensors[x], self.g.tensors[y]
        w = n.params['weight']
        wdt = np.int8 if n.attrs['w_symmetric'] else np.uint8
        if linear:
            w = w.reshape(*w.shape, 1, 1)
            x = self.node('Unsqueeze', [x, self.const(np.array([2, 3], np.int64), np.int64, 'axes')])
        xs, xz = self.qparams(tx)
        attrs = {} if linear else dict(strides=n.attrs['stride'], dilations=n.attrs['dilation'],
                                       group=n.attrs['groups'], pads=n.attrs['padding'] * 2)
        ws, wz, b = n.params['w_scale'], n.params['w_zero_point'], n.params['bias']

        def qconv(sl: slice, yq: TensorQ) -> str:
            return self.node('QLinearConv', [
                x, xs, xz, self.const(w[sl].astype(wdt), wdt, 'w'), self.const(ws[sl].astype(np.float32), np.float32,
                                                                               'ws'),
                self.const(wz[sl].astype(wdt), wdt, 'wz'), *self.qparams(yq),
                self.const(b[sl].astype(np.int32), np.int32, 'b')], **attrs)

        if ty.per_channel:
            # QLinearConv takes one output scale: one conv per output channel, each on its own grid
            if ty.axis != 1 or (not linear and n.attrs['groups'] != 1):
                raise OnnxExportError(f'{n.name}: per-channel outputs need axis 1 and an ungrouped conv')
            conv = self.node('Concat', [qconv(slice(c, c + 1), TensorQ(ty.scale[c], ty.zero_point[c], ty.qmin,
                                                                       ty.qmax))
                                        for c in range(w.shape[0])], axis=1)
        else:
            conv = qconv(slice(None), ty)
        if linear:
            conv = self.node('Flatten', [conv], axis=1)
        self.clip(conv, n.attrs['lo'], ty.qmax, y)

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
            if n.op == 'quantize':
                ty = g.tensors[y]
                q = self.node('QuantizeLinear', [x, *self.qparams(ty)])
                self.clip(q, ty.qmin, ty.qmax, y)
            elif n.op == 'conv':
                self.weighted(n, False)
            elif n.op == 'linear':
                self.weighted(n, True)
            elif n.op == 'add':
                self.qadd(x, g.tensors[x], n.inputs[1], g.tensors[n.inputs[1]], g.tensors[y], y, n.attrs['lo'])
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
            elif n.op == 'relu':
                self.clip(x, n.attrs['lo'], g.tensors[x].qmax, y)
            elif n.op == 'flatten':
                self.node('Flatten', [x], [y], axis=1)
            elif n.op == 'dequantize':
                t = g.tensors[x]
                self.node('DequantizeLinear', [x, *self.qparams(t)], [y], **({'axis': t.axis} if t.per_channel
                                                                             else {}))
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
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', OPSET),
                                                        helper.make_opsetid(MS_DOMAIN, 1)],
                                  producer_name='fqn_det')
        model.ir_version = 8
        return model


def to_onnx(g: IntGraph, name: str = 'fqn_det') -> onnx.ModelProto:
    """The ONNX model of an integer graph (checked with ``onnx.checker``)."""
    model = _Writer(g, name).write()
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
