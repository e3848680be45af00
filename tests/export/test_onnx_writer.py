"""ONNX writer: zero-centred int8 weights, INT4 storage, per-channel outputs in a constant number of nodes."""
import numpy as np
import pytest
import torch
from onnx import TensorProto, numpy_helper

from fqn_det.export.engine import IntegerEngine
from fqn_det.export.onnx_writer import OnnxExportError, ort_session, run_onnx, to_onnx, uses_int4

from graphs import conv_graph, feeds


def _onnx_ints(g, opset, x):
    out = run_onnx(ort_session(to_onnx(g, opset=opset)), x)['out']
    scale, zp = (v.numpy() for v in g.tensors['y_q'].broadcast(out.ndim))
    return torch.from_numpy(np.round(out / scale + zp).astype(np.int64))


def _qlinearconv_weights(model):
    """(dtype, zero-point values) of each QLinearConv weight after constant folding of Cast / Sub."""
    inits = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    res = []
    for n in model.graph.node:
        if n.op_type == 'QLinearConv':
            src = producer.get(n.input[3])
            dtype = TensorProto.INT8 if src is not None else inits[n.input[3]].data_type
            res.append((dtype, numpy_helper.to_array(inits[n.input[5]]).reshape(-1)))
    return res


CASES = {'w4-asym': dict(), 'w4-sym': dict(symmetric=True), 'w8-asym': dict(w_bits=8, out_bits=8, w_range=(70, 180)),
         'w8-asym-wide': dict(w_bits=8, out_bits=8, w_range=(0, 255)), 'w3-asym': dict(w_bits=3),
         'w4-asym-pc': dict(out_per_channel=True), 'w4-sym-pc': dict(symmetric=True, out_per_channel=True),
         'w8-pc-convinteger': dict(w_bits=8, out_bits=8, out_per_channel=True, w_range=(70, 180)),
         'w4-asym-linear-pc': dict(out_per_channel=True, linear=True)}


@pytest.mark.parametrize('case', list(CASES))
@pytest.mark.parametrize('opset', [17, 21])
def test_onnx_integers_equal_the_engine(case, opset):
    kw = CASES[case]
    g = conv_graph(**kw)
    fe, fo = feeds(g)
    ref = IntegerEngine(g).run(fe)['_int']['out']
    got = _onnx_ints(g, opset, fo)
    same = float((got == ref).double().mean())
    assert same >= 0.999 and int((got - ref).abs().max()) <= 1, (same, case)
    model = to_onnx(g, opset=opset)
    for dtype, zp in _qlinearconv_weights(model):
        if case == 'w8-asym-wide':  # centred values need 9 bits: uint8 with its zero-points
            assert dtype == TensorProto.UINT8 and zp.any()
        else:  # zero-centred int8, zero-point 0: the u8s8 kernels
            assert dtype == TensorProto.INT8 and not zp.any()
    assert uses_int4(model) == (opset == 21 and g.nodes[1].attrs['w_bits'] <= 4)


def test_int4_file_halves_the_weight_bytes():
    g = conv_graph(cin=64, cout=64, linear=True)
    b17 = len(to_onnx(g, opset=17).SerializeToString())
    b21 = len(to_onnx(g, opset=21).SerializeToString())
    w = g.nodes[1].params['weight'].size
    assert b17 - b21 >= 0.45 * w  # half a byte saved per weight
    m = to_onnx(g, opset=21)
    assert m.opset_import[0].version == 21 and m.ir_version >= 10


@pytest.mark.parametrize('cout', [4, 64])
def test_per_channel_outputs_take_a_constant_number_of_nodes(cout):
    n_pc = len(to_onnx(conv_graph(out_per_channel=True, cout=cout)).graph.node)
    n_pt = len(to_onnx(conv_graph(out_per_channel=False, cout=cout)).graph.node)
    assert n_pc <= n_pt + 3
    n8 = len(to_onnx(conv_graph(out_per_channel=True, cout=cout, w_bits=8, out_bits=8,
                                   w_range=(70, 180))).graph.node)
    assert n8 <= n_pt + 10


def test_wide_weights_with_8_bit_per_channel_outputs_are_refused():
    with pytest.raises(OnnxExportError, match='layer: 8-bit per-channel outputs'):
        to_onnx(conv_graph(w_bits=8, out_bits=8, out_per_channel=True, w_range=(0, 255)))


def test_unknown_opset_is_refused():
    with pytest.raises(OnnxExportError, match='opset must be one of'):
        to_onnx(conv_graph(), opset=19)


def test_a_layer_reading_a_per_channel_output_is_refused():
    g = conv_graph(out_per_channel=True)
    from fqn_det.export.graph import Node
    g.nodes.insert(2, Node('relu', 'bad', ['y_q'], ['z_q'], dict(lo=0)))
    g.tensors['z_q'] = g.tensors['y_q']
    with pytest.raises(OnnxExportError, match='bad'):
        to_onnx(g)


@pytest.mark.parametrize('case', list(CASES) + ['w8-asym-extremes'])
@pytest.mark.parametrize('opset', [17, 21])
def test_exact_requantization_gives_the_engine_integers(case, opset):
    """requant='exact': the engine's fixed point in integer ops; no float op before the head outputs."""
    if case == 'w8-asym-extremes':  # centred weights of +-255: three int8 parts
        g = conv_graph(w_bits=8, out_bits=8, w_range=(0, 255))
        n = g.nodes[1]
        w, z = n.params['weight'], n.params['w_zero_point']
        z[0], z[1] = 0, 255
        w[0, :, 0, 0], w[1, :, 0, 0] = 255, 0
        centred = np.abs(w.astype(np.int64) - z.reshape(-1, 1, 1, 1)).reshape(len(z), -1).sum(1)
        n.attrs['acc_bound'] = int((centred * 8 + np.abs(n.params['bias'])).max())
    else:
        g = conv_graph(**CASES[case])
    fe, fo = feeds(g)
    ref = IntegerEngine(g).run(fe)['_int']['out']
    model = to_onnx(g, opset=opset, requant='exact')
    out = run_onnx(ort_session(model), fo)['out']
    scale, zp = (v.numpy() for v in g.tensors['y_q'].broadcast(out.ndim))
    assert torch.equal(torch.from_numpy(np.round(out / scale + zp).astype(np.int64)), ref)
    ops = {n.op_type for n in model.graph.node}
    assert 'ConvInteger' in ops and not ops & {'QLinearConv', 'QLinearAdd', 'Round'}
    used = {i for n in model.graph.node for i in n.input}
    assert {t.name for t in model.graph.initializer} <= used  # onnxruntime warns about unused initializers


def test_unknown_requantization_is_refused():
    with pytest.raises(OnnxExportError, match=r"requantization must be one of \('fast', 'exact'\), got 'float'"):
        to_onnx(conv_graph(), requant='float')
