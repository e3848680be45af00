"""Fake-quant vs integer engine vs onnxruntime for every bit width, on a demo-width RetinaNet.

The demo's RetinaNet width (ResNet-18 at 32 base channels, FPN and head at 64)
on one 64-pixel image, untrained but calibrated: 8-bit accumulators there are
as large as in the demo, so float32 arithmetic in the fake-quantized model
would round differently from the integer engine (about 1 value in 10^3 per
layer at 8 bits, compounding with depth). Evaluated integer-exactly
(fqn_det.nn.integer_eval), the fake-quantized model gives the engine's
integers, all of them.
"""
import copy

import numpy as np
import pytest
import torch
from mmengine.config import Config

from conftest import ROOT, batch, build_quantized, calibrate_on
from fqn_det.export.detectors import build_graphs
from fqn_det.export.engine import IntegerEngine
from fqn_det.export.onnx_writer import ort_session, run_onnx, to_onnx

SETTINGS = [(b, b) for b in range(2, 9)] + [(4, 8), (8, 4)]


@pytest.fixture(scope='module')
def demo_width():
    cfg_file = ROOT / 'configs' / 'fqn' / 'retinanet_r18-tiny_fpn_12e_synthetic.py'
    cfg = copy.deepcopy(Config.fromfile(str(cfg_file)).model)
    torch.manual_seed(0)
    from mmdet.registry import MODELS
    det = MODELS.build(copy.deepcopy(cfg))
    det.init_weights()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        # BN statistics and affine parameters as after training (init's are 0/1: a benign, exact case)
        for m in det.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_mean.copy_(torch.randn(n, generator=g) * 2.0)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
        # mmdet's prior bias (-4.6) would not fit an 8-bit accumulator untrained
        det.bbox_head.retina_cls.bias.fill_(-1.0)
    return cfg, det.state_dict()


def _head_ints(model, x):
    head = model.detector.bbox_head
    with torch.no_grad():
        cls, reg = head(model.detector.extract_feat(x))
    out = {}
    for lvl in range(len(cls)):
        for name, y, m in (('cls_score', cls, head.retina_cls), ('bbox_pred', reg, head.retina_reg)):
            q = m.out_quant[lvl]
            out[f'{name}.{lvl}'] = torch.round(y[lvl].double() / q.scale.double() + q.zero_point).long()
    return out


def _agreement(a: dict, b: dict):
    x = torch.cat([a[k].flatten() for k in a])
    y = torch.cat([b[k].flatten() for k in a])
    return float((x == y).double().mean()), int((x - y).abs().max())


@pytest.mark.parametrize('w_bits, a_bits', SETTINGS, ids=[f'w{w}a{a}' for w, a in SETTINGS])
def test_fake_quant_engine_and_onnx_agree(demo_width, w_bits, a_bits):
    cfg, state = demo_width
    model = build_quantized(cfg, dict(weight=dict(bits=w_bits), act=dict(bits=a_bits)))
    model.load_state_dict(state)
    calibrate_on(model, batch(5, n=1, size=64, seed=0))
    x = model.data_preprocessor(batch(5, n=1, size=64, seed=42), False)['inputs']
    fq = _head_ints(model.eval(), x)
    assert next(iter(fq.values())).numel() > 0
    g = build_graphs(model)['features']
    eng = IntegerEngine(g).run({'image': x})['_int']
    assert all(torch.equal(fq[k], eng[k]) for k in fq), _agreement(fq, eng)
    o = run_onnx(ort_session(to_onnx(g)), {'image': x.numpy()})
    ort = {}
    for k in fq:
        t = g.tensors[next(n for n in g.nodes if n.outputs[0] == k).inputs[0]]
        scale, zp = (v.numpy() for v in t.broadcast(o[k].ndim))
        ort[k] = torch.from_numpy(np.round(o[k].astype(np.float64) / scale + zp).astype(np.int64))
    same, worst = _agreement(eng, ort)
    assert same >= 0.999 and worst <= 1, (same, worst)
    # requant='exact': the engine's fixed point in integer ONNX ops, its integers exactly
    o = run_onnx(ort_session(to_onnx(g, requant='exact')), {'image': x.numpy()})
    exact = {}
    for k in fq:
        t = g.tensors[next(n for n in g.nodes if n.outputs[0] == k).inputs[0]]
        scale, zp = (v.numpy() for v in t.broadcast(o[k].ndim))
        exact[k] = torch.from_numpy(np.round(o[k].astype(np.float64) / scale + zp).astype(np.int64))
    assert all(torch.equal(exact[k], eng[k]) for k in fq), _agreement(eng, exact)


def test_bias_levels_are_the_exported_ones(demo_width):
    """The fake-quantized layer adds exactly the exported int32 bias (x its step), even where
    ``b / step`` is beyond float32's integer precision (small 8-bit steps, large biases)."""
    from fqn_det.nn.qconv import quantize_bias
    cfg, state = demo_width
    model = build_quantized(cfg, dict(weight=dict(bits=8), act=dict(bits=8)))
    model.load_state_dict(state)
    conv = model.detector.neck.fpn_convs[0]
    with torch.no_grad():
        conv.conv.bias.copy_(torch.linspace(-3.0, 3.0, conv.conv.bias.numel()))
        conv.conv.weight.mul_(1e-3)  # small weights: a small weight scale, many levels per unit of bias
    calibrate_on(model, batch(5, n=1, size=64, seed=0))
    model.eval()
    node = next(n for n in build_graphs(model)['features'].nodes if n.name.startswith('neck.fpn_convs.0'))
    b = conv.folded_weight_bias()[1]
    step = conv.in_quants[0].scale.double() * conv.w_quant.scale.double()
    ratio = float((b.detach().double() / step).abs().max())
    assert ratio > 2 ** 20, ratio  # float32 b / step is off by up to 1/16 of a level there
    with torch.no_grad():
        levels = quantize_bias(b, conv.in_quants, 0, conv.w_quant, dtype=torch.float64) / step
    assert float((levels - levels.round()).abs().max()) < 1e-6  # float32 would be off by up to 1/16 level
    assert torch.equal(levels.round().long(), torch.from_numpy(node.params['bias'].astype(np.int64)))
