"""Small hand-made integer graphs for the export consumers (engine, ONNX writer, file format)."""
import numpy as np

from fqn_det.quant.fixed_point import quantize_multiplier
from fqn_det.export.graph import IntGraph, Node, TensorQ


def conv_graph(w_bits=4, symmetric=False, out_bits=4, out_per_channel=False, cin=3, cout=12, k=3, linear=False,
               w_range=None, seed=0) -> IntGraph:
    """image -> quantize -> conv (or linear) -> dequantize, with random integer parameters.

    ``w_range`` forces the weight integers into ``[lo, hi]`` (e.g. a wide 8-bit asymmetric range).
    """
    rng = np.random.default_rng(seed)
    tx = TensorQ(0.05, 7, 0, 15)
    qmax = 2 ** out_bits - 1
    if out_per_channel:
        ty = TensorQ([float(v) for v in rng.uniform(0.05, 0.3, cout)],
                     [int(v) for v in rng.integers(0, qmax + 1, cout)], 0, qmax, axis=1)
    else:
        ty = TensorQ(0.2, qmax // 3, 0, qmax)
    if symmetric:
        lo, hi = -(2 ** (w_bits - 1) - 1), 2 ** (w_bits - 1) - 1
    else:
        lo, hi = 0, 2 ** w_bits - 1
    if w_range is not None:
        lo, hi = w_range
    shape = (cout, cin) if linear else (cout, cin, k, k)
    q = rng.integers(lo, hi + 1, shape)
    z = np.zeros(cout, np.int64) if symmetric else rng.integers(lo, hi + 1, cout)
    s_w = rng.uniform(0.01, 0.05, cout)
    bias = rng.integers(-200, 200, cout)
    centred = np.abs(q - z.reshape(-1, *([1] * (q.ndim - 1)))).reshape(cout, -1).sum(1)
    bound = int((centred * max(tx.zero_point - tx.qmin, tx.qmax - tx.zero_point) + np.abs(bias)).max())
    m0, shift = quantize_multiplier(tx.scale * s_w / np.asarray(ty.scale, np.float64))
    attrs = dict(relu=False, lo=0, w_bits=w_bits, w_symmetric=symmetric, acc_bound=bound)
    if not linear:
        attrs.update(stride=[1, 1], padding=[k // 2, k // 2], dilation=[1, 1], groups=1)
    params = dict(weight=q.astype(np.int8 if symmetric and hi < 128 else np.uint8 if lo >= 0 else np.int16),
                  w_zero_point=z, w_scale=s_w.astype(np.float32), bias=bias.astype(np.int32), m0=m0, shift=shift)
    g = IntGraph(tensors={'x_q': tx, 'y_q': ty}, inputs=['x_q' if linear else 'image'], outputs=['out'])
    if linear:  # integer input (N, C, 1, 1), as the RoI head's
        g.tensors['x_f'] = tx
        g.nodes = [Node('flatten', 'flat', ['x_q'], ['x_f']), Node('linear', 'layer', ['x_f'], ['y_q'], attrs, params)]
    else:
        g.nodes = [Node('quantize', 'in', ['image'], ['x_q']), Node('conv', 'layer', ['x_q'], ['y_q'], attrs, params)]
    g.nodes.append(Node('dequantize', 'out', ['y_q'], ['out']))
    return g


def feeds(g: IntGraph, seed=1, size=10):
    """``(engine feeds, onnxruntime feeds)`` for :func:`conv_graph` graphs."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    if g.inputs == ['x_q']:
        cin = next(n for n in g.nodes if n.op == 'linear').params['weight'].shape[1]
        x = torch.randint(0, 16, (6, cin, 1, 1), generator=gen)
        return {'x_q': x}, {'x_q': x.numpy().astype(np.uint8)}
    x = torch.rand((2, 3, size, size), generator=gen) * 0.9 - 0.3
    return {'image': x}, {'image': x.numpy()}
