"""Conversion of mmdet's unchanged R50 RetinaNet / Faster R-CNN configs."""
import copy

import pytest
import torch
from mmdet.registry import MODELS
from torch import nn

from conftest import batch, build_quantized, calibrate_on, mmdet_model_cfg
from fqn_det.convert import check_fully_quantized, quantize_detector
from fqn_det.nn import QConv2d, QLinear, UnsupportedModuleError
from fqn_det.quant import ActQuantizer
from fqn_det.quant.fake_quantize import floored_min
from fqn_det.quant.functional import fake_quantize


def _effective_weights(m):
    if isinstance(m, QConv2d):
        w, _ = m.folded_weight_bias()
    else:
        w = m.linear.weight
    return m.w_quant(w.detach())


@pytest.mark.parametrize('cfg_name', ['r50_retina_cfg', 'r50_faster_cfg'])
def test_every_conv_and_linear_is_quantized(cfg_name, request):
    cfg = request.getfixturevalue(cfg_name)
    float_det = MODELS.build(copy.deepcopy(cfg))
    n_conv = sum(type(m) is nn.Conv2d for m in float_det.modules())
    n_lin = sum(type(m) is nn.Linear for m in float_det.modules())
    model = build_quantized(cfg)
    q_layers = [m for m in model.detector.modules() if isinstance(m, (QConv2d, QLinear))]
    assert sum(isinstance(m, QConv2d) for m in q_layers) == n_conv
    assert sum(isinstance(m, QLinear) for m in q_layers) == n_lin
    for m in q_layers:
        # an activation quantizer on every output, and at most 2^bits weight levels per channel
        assert len(m.out_quant) >= 1 and all(isinstance(q, ActQuantizer) for q in m.out_quant)
        w = _effective_weights(m).reshape(m.w_quant.scale.numel(), -1)
        levels = max(len(torch.unique(row)) for row in w)
        assert levels <= 2 ** m.w_quant.scheme.bits, m
    # no quantizer module is reached through two paths (no shared ranges)
    all_q = [m for m in model.modules() if isinstance(m, ActQuantizer)]
    assert len(all_q) == len({id(m) for m in all_q})


def test_retina_quantizer_placement(r50_retina_cfg):
    model = build_quantized(r50_retina_cfg)
    names = {n for n, m in model.detector.named_modules() if isinstance(m, ActQuantizer)}
    assert 'backbone.input_quant' in names
    assert 'backbone.maxpool.out_quant.0' in names
    # every residual add quantizes its output; bottleneck conv3 (add input) too
    assert 'backbone.layer1.0.add.out_quant.0' in names
    assert 'backbone.layer1.0.conv3.out_quant.0' in names
    assert 'backbone.layer1.0.downsample.out_quant.0' in names
    # FPN: laterals, nearest upsampling, adds, outputs, extra convs
    for n in ('neck.lateral_convs.0', 'neck.upsamples.0', 'neck.adds.0', 'neck.fpn_convs.4'):
        assert f'{n}.out_quant.0' in names, n
    # head convs shared across 5 levels hold 5 ranges; outputs are quantized
    for n in ('bbox_head.cls_convs.0', 'bbox_head.retina_cls', 'bbox_head.retina_reg'):
        assert {f'{n}.out_quant.{i}' for i in range(5)} <= names, n


def test_faster_rcnn_quantizer_placement(r50_faster_cfg):
    model = build_quantized(r50_faster_cfg)
    names = {n for n, m in model.detector.named_modules() if isinstance(m, ActQuantizer)}
    assert 'neck.extra_pools.0.out_quant.0' in names        # max-pool P6
    assert 'roi_head.bbox_roi_extractor.out_quant' in names  # after RoIAlign
    for n in ('roi_head.bbox_head.shared_fcs.0', 'roi_head.bbox_head.fc_cls', 'roi_head.bbox_head.fc_reg'):
        assert f'{n}.out_quant.0' in names
    for n in ('rpn_head.rpn_conv.0', 'rpn_head.rpn_cls', 'rpn_head.rpn_reg'):
        assert {f'{n}.out_quant.{i}' for i in range(5)} <= names


def _on_grid(x: torch.Tensor, q: ActQuantizer) -> bool:
    v = x / q.scale + q.zero_point
    return bool(torch.allclose(v, v.round(), atol=1e-3)) and float(v.min()) >= q.scheme.quant_min - 1e-3 \
        and float(v.max()) <= q.scheme.quant_max + 1e-3


def test_retina_outputs_are_quantized_per_level(r50_retina_cfg):
    model = build_quantized(r50_retina_cfg)
    data = batch(80, n=2, size=96)
    calibrate_on(model, data)
    model.eval()
    with torch.no_grad():
        d = model.data_preprocessor(data, False)
        feats = model.detector.extract_feat(d['inputs'])
        cls_scores, bbox_preds = model.detector.bbox_head(feats)
    head = model.detector.bbox_head
    for lvl, (c, b) in enumerate(zip(cls_scores, bbox_preds)):
        assert _on_grid(c, head.retina_cls.out_quant[lvl])
        assert _on_grid(b, head.retina_reg.out_quant[lvl])
    for lvl, f in enumerate(feats):
        assert _on_grid(f, model.detector.neck.fpn_convs[lvl].out_quant[0])
    ranges = [(float(q.min_val), float(q.max_val)) for q in head.cls_convs[0].out_quant]
    assert len(set(ranges)) == 5  # each level has its own calibrated range


def test_faster_rcnn_roi_path_is_quantized(r50_faster_cfg):
    model = build_quantized(r50_faster_cfg)
    data = batch(80, n=1, size=96)
    calibrate_on(model, data)
    model.eval()
    with torch.no_grad():
        d = model.data_preprocessor(data, False)
        cls_score, bbox_pred = model(**d, mode='tensor')[0]
    bh = model.detector.roi_head.bbox_head
    assert _on_grid(cls_score, bh.fc_cls.out_quant[0])
    assert _on_grid(bbox_pred, bh.fc_reg.out_quant[0])
    assert all(bool(q.initialized) for _, q in model.quantizers())


def test_float_model_untouched_and_shares_tensors(r50_retina_cfg):
    model = build_quantized(r50_retina_cfg)
    fd = model.float_detector
    assert type(fd.backbone).__name__ == 'ResNet' and type(fd.bbox_head).__name__ == 'RetinaHead'
    assert fd.backbone.conv1.weight is model.detector.backbone.conv1.conv.weight
    assert fd.backbone.bn1 is model.detector.backbone.conv1.bn
    assert not any(isinstance(m, (QConv2d, ActQuantizer)) for m in fd.modules())


def test_per_module_overrides(r50_retina_cfg):
    model = build_quantized(r50_retina_cfg, dict(overrides=[
        dict(pattern='backbone.conv1', w_bits=8, a_bits=8),
        dict(pattern='bbox_head.retina_*', a_bits=8)]))
    det = model.detector
    assert det.backbone.conv1.w_quant.scheme.bits == 8
    assert det.backbone.conv1.out_quant[0].scheme.bits == 8
    assert det.backbone.layer1[0].conv1.w_quant.scheme.bits == 4
    assert det.bbox_head.retina_cls.w_quant.scheme.bits == 4
    assert all(q.scheme.bits == 8 for q in det.bbox_head.retina_reg.out_quant)


def test_unknown_override_pattern_is_an_error(r50_retina_cfg):
    with pytest.raises(ValueError, match=r"backbone\.conv99"):
        build_quantized(r50_retina_cfg, dict(overrides=[dict(pattern='backbone.conv99', w_bits=8)]))


def test_unsupported_layers_name_path_and_type():
    gn = mmdet_model_cfg('retinanet/retinanet_r50_fpn_1x_coco.py')
    gn.bbox_head.norm_cfg = dict(type='GN', num_groups=32, requires_grad=True)
    with pytest.raises(UnsupportedModuleError, match=r"bbox_head\.cls_convs\.0.*GroupNorm"):
        quantize_detector(MODELS.build(gn))
    atss = mmdet_model_cfg('atss/atss_r50_fpn_1x_coco.py')
    with pytest.raises(UnsupportedModuleError, match=r"'bbox_head'.*ATSSHead"):
        quantize_detector(MODELS.build(atss))


def test_check_fully_quantized_catches_stray_layer(r50_retina_cfg):
    model = build_quantized(r50_retina_cfg)
    model.detector.bbox_head.extra = nn.Conv2d(4, 4, 1)
    with pytest.raises(UnsupportedModuleError, match=r"bbox_head\.extra"):
        check_fully_quantized(model.detector)


def test_score_threshold_floor_on_sigmoid_classification_outputs(r50_retina_cfg):
    import math
    over = dict(overrides=[dict(pattern='bbox_head.retina_cls', gamma=1.0, floor='score_thr')])
    model = build_quantized(r50_retina_cfg, over)
    thr = r50_retina_cfg['test_cfg']['score_thr']
    t = math.log(thr / (1 - thr))
    head = model.detector.bbox_head
    assert all(q.floor == pytest.approx(t) for q in head.retina_cls.out_quant)
    assert all(q.floor is None for q in head.retina_reg.out_quant)
    with torch.no_grad():  # logits spread wide on both sides of the threshold
        head.retina_cls.conv.weight.mul_(20.0)
        head.retina_cls.conv.bias.fill_(t)
    data = batch(80, n=2, size=96)
    calibrate_on(model, data, gamma=None)
    model.eval()

    def logits():
        with torch.no_grad():
            d = model.data_preprocessor(data, False)
            return head(model.detector.extract_feat(d['inputs']))[0]
    switches = [m.fake_quant_enabled for m in model.modules() if isinstance(m, ActQuantizer)]
    for f in switches:  # the logits calibration saw: float activations (weights stay quantized)
        f.fill_(0)
    raw = logits()
    for f in switches:
        f.fill_(1)
    clipped = 0
    for lvl, (r, c) in enumerate(zip(raw, logits())):
        q = head.retina_cls.out_quant[lvl]
        assert float(q.max_val) == pytest.approx(float(r.max()), abs=1e-3)  # gamma=1 on this output
        # the range starts at most one step under the threshold: the levels go to values that can pass it
        bound = float(floored_min(t, q.max_val, q.scheme))
        assert float(q.min_val) == pytest.approx(max(float(r.min()), bound), abs=1e-3)
        lowest = (q.scheme.quant_min - int(q.zero_point)) * float(q.scale)
        below = r <= float(q.min_val)
        if float(r.min()) < bound:  # what the floor clips ends on the lowest level, under the threshold
            s_ = q.scheme
            assert lowest < t and float(c.min()) == pytest.approx(lowest)
            assert torch.all(fake_quantize(r[below], q.scale, q.zero_point, s_.quant_min, s_.quant_max) < t)
            clipped += 1
    assert clipped >= 3


@pytest.mark.parametrize('pattern', ['bbox_head.retina_reg', 'backbone.conv1'])
def test_score_threshold_floor_needs_a_sigmoid_classification_output(r50_retina_cfg, pattern):
    with pytest.raises(ValueError, match=r"floor='score_thr' at '" + pattern.replace('.', r'\.')):
        build_quantized(r50_retina_cfg, dict(overrides=[dict(pattern=pattern, floor='score_thr')]))


def test_score_threshold_floor_rejected_on_softmax_heads(r50_faster_cfg):
    with pytest.raises(ValueError, match='sigmoid head'):
        build_quantized(r50_faster_cfg, dict(overrides=[dict(pattern='roi_head.bbox_head.fc_cls',
                                                             floor='score_thr')]))


def test_per_channel_ranges_on_head_outputs_only(r50_retina_cfg, r50_faster_cfg):
    over = dict(overrides=[dict(pattern='bbox_head.retina_*', a_per_channel=True)])
    head = build_quantized(r50_retina_cfg, over).detector.bbox_head
    for conv in (head.retina_cls, head.retina_reg):
        assert len(conv.out_quant) == 5  # still one quantizer per FPN level, each per channel
        assert all(q.per_channel and q.scale.shape == (conv.conv.out_channels,) for q in conv.out_quant)
    assert not any(q.per_channel for q in head.cls_convs[0].out_quant)
    faster = build_quantized(r50_faster_cfg, dict(overrides=[
        dict(pattern=p, a_per_channel=True) for p in ('rpn_head.rpn_cls', 'rpn_head.rpn_reg',
                                                      'roi_head.bbox_head.fc_*')])).detector
    fc_cls = faster.roi_head.bbox_head.fc_cls
    assert fc_cls.out_quant[0].scale.shape == (fc_cls.linear.out_features,)
    assert faster.rpn_head.rpn_reg.out_quant[4].per_channel
    # anywhere an integer layer reads the output: refused at conversion, naming the module
    for cfg, pattern in ((r50_retina_cfg, 'bbox_head.cls_convs.0'), (r50_retina_cfg, 'neck.fpn_convs.*'),
                         (r50_retina_cfg, 'backbone.layer1.0.add'), (r50_faster_cfg, 'rpn_head.rpn_conv'),
                         (r50_faster_cfg, 'roi_head.bbox_head.shared_fcs.0')):
        with pytest.raises(ValueError, match=r"a_per_channel=True at '" + pattern.replace('.', r'\.')
                           .replace('*', '0') + "', which is not a head output"):
            build_quantized(cfg, dict(overrides=[dict(pattern=pattern, a_per_channel=True)]))


def test_mixed_supported_and_unsupported_blocks_fail_whole_and_leave_the_float_model_untouched():
    from conftest import tiny_model_cfg
    cfg = tiny_model_cfg('retina')
    cfg.neck.type = 'PAFPN'  # supported backbone and head around an unsupported neck
    float_det = MODELS.build(cfg)
    float_det.train()
    grads = {n: p.requires_grad for n, p in float_det.named_parameters()}
    modes = {n: m.training for n, m in float_det.named_modules()}
    types = {n: type(m) for n, m in float_det.named_modules()}
    with pytest.raises(UnsupportedModuleError, match=r"'neck' of type mmdet\.models\.necks\.pafpn\.PAFPN.*"
                                                      r"supported: .*FPN.*ResNeXt"):
        quantize_detector(float_det)
    assert {n: p.requires_grad for n, p in float_det.named_parameters()} == grads
    assert {n: m.training for n, m in float_det.named_modules()} == modes
    assert {n: type(m) for n, m in float_det.named_modules()} == types


def test_a_layer_the_dataflow_does_not_reach_is_an_error(monkeypatch):
    from conftest import tiny_model_cfg
    from fqn_det.nn import UnlinkedInputError
    from fqn_det.nn.qresnet import QBasicBlock
    # a block whose walk skips a conv: conversion refuses it instead of keeping a float bias there
    monkeypatch.setattr(QBasicBlock, 'walk', lambda self, b, x: b.add(self.add, b.conv(self.conv1, x), x))
    with pytest.raises(UnlinkedInputError, match=r'backbone\.layer1\.0\.conv2'):
        quantize_detector(MODELS.build(tiny_model_cfg('retina')))
