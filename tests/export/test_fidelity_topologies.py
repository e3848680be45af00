"""ResNeXt (grouped convs), C4 (ResLayer shared head, average pool) and DC5 (dilated, no neck):
fake-quantized model vs integer engine vs onnxruntime, after QAT steps and after DFQ PTQ."""
import copy

import pytest
import torch
from mmdet.structures.bbox import bbox2roi
from test_fidelity import _check_onnx, _exact, _ints

from conftest import batch, build_quantized, finetuned, tiny_model_cfg
from fqn_det.dfq.detector import find_pairs
from fqn_det.dfq.ptq import post_training_quantize
from fqn_det.export.detectors import build_graphs
from fqn_det.export.engine import IntegerEngine


@pytest.fixture(autouse=True)
def one_block_per_stage(monkeypatch):
    """ResNeXt-50 with one (grouped) block per stage, to keep the test small; the full depth runs in
    the zoo test."""
    from mmdet.models.backbones import ResNeXt
    monkeypatch.setitem(ResNeXt.arch_settings, 50, (ResNeXt.arch_settings[50][0], (1, 1, 1, 1)))


def resnext_cfg(kind):
    m = tiny_model_cfg(kind)
    m.backbone = dict(type='ResNeXt', depth=50, groups=4, base_width=4, base_channels=8, num_stages=4,
                      out_indices=(0, 1, 2, 3), frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=True),
                      norm_eval=True, style='pytorch')
    m.neck.in_channels = [32, 64, 128, 256]
    return m


def dc5_cfg():
    m = tiny_model_cfg('faster')
    m.backbone.update(strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2), out_indices=(3,))
    m.pop('neck')
    m.rpn_head.in_channels = 64
    m.rpn_head.anchor_generator.strides = [16]
    m.roi_head.bbox_roi_extractor.update(out_channels=64, featmap_strides=[16])
    m.roi_head.bbox_head.in_channels = 64
    return m


def c4_cfg():
    m = dc5_cfg()
    m.backbone.update(base_channels=64, num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1), out_indices=(2,),
                      style='caffe')
    m.rpn_head.in_channels = 256
    m.roi_head.shared_head = dict(type='ResLayer', depth=18, stage=3, stride=2, dilation=1, style='caffe',
                                  norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True)
    m.roi_head.bbox_roi_extractor.update(out_channels=256, roi_layer=dict(type='RoIAlign', output_size=14,
                                                                             sampling_ratio=0))
    m.roi_head.bbox_head = dict(type='BBoxHead', with_avg_pool=True, roi_feat_size=7, in_channels=512,
                                num_classes=m.roi_head.bbox_head.num_classes,
                                bbox_coder=m.roi_head.bbox_head.bbox_coder, reg_class_agnostic=False,
                                loss_cls=m.roi_head.bbox_head.loss_cls, loss_bbox=m.roi_head.bbox_head.loss_bbox)
    return m


CFGS = {'resnext-retina': lambda: resnext_cfg('retina'), 'resnext-faster': lambda: resnext_cfg('faster'),
        'dc5': dc5_cfg, 'c4': c4_cfg}


def _qat(cfg):
    return finetuned(cfg)


def _trained_like_bn(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.exp(torch.randn(m.num_features, generator=g) * 0.5)
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.3
    return model


def _ptq(cfg):
    model = _trained_like_bn(build_quantized(cfg)).eval()
    rep = post_training_quantize(model, equalization=True, absorption=True, bias_correction='analytic')
    return model.eval(), rep


def _check(model):
    det = model.detector
    data = batch(5, n=2, size=96, seed=42)
    graphs = build_graphs(model)
    assert graphs['features'].non_integer_ops() == []
    with torch.no_grad():
        d = model.data_preprocessor(data, False)
        feats = det.extract_feat(d['inputs'])
    out = IntegerEngine(graphs['features']).run({'image': d['inputs']})
    if 'roi' not in graphs:
        head = det.bbox_head
        with torch.no_grad():
            cls, reg = head(feats)
        pairs = [(_ints(cls[i], head.retina_cls.out_quant[i]), out['_int'][f'cls_score.{i}']) for i in range(len(cls))]
        pairs += [(_ints(reg[i], head.retina_reg.out_quant[i]), out['_int'][f'bbox_pred.{i}'])
                  for i in range(len(reg))]
    else:
        rpn = det.rpn_head
        with torch.no_grad():
            cls, reg = rpn(feats)
        pairs = [(_ints(cls[i], rpn.rpn_cls.out_quant[i]), out['_int'][f'rpn_cls_score.{i}']) for i in range(len(cls))]
        pairs += [(_ints(reg[i], rpn.rpn_reg.out_quant[i]), out['_int'][f'rpn_bbox_pred.{i}'])
                  for i in range(len(reg))]
    _exact(pairs)
    _check_onnx(graphs['features'], {'image': d['inputs']}, out)
    if 'roi' in graphs:
        rh = det.roi_head
        with torch.no_grad():
            proposals = rpn.predict(feats, d['data_samples'], rescale=False)
            rois = bbox2roi([p.bboxes for p in proposals])
            roi_feats = rh.bbox_roi_extractor(feats[:rh.bbox_roi_extractor.num_inputs], rois)
            x = rh.shared_head(roi_feats) if rh.with_shared_head else roi_feats
            cls, reg = rh.bbox_head(x)
        roi_int = _ints(roi_feats, rh.bbox_roi_extractor.out_quant)
        rout = IntegerEngine(graphs['roi']).run({'roi_feats': roi_int})
        bh = rh.bbox_head
        _exact([(_ints(cls, bh.fc_cls.out_quant[0]), rout['_int']['cls_score']),
                (_ints(reg, bh.fc_reg.out_quant[0]), rout['_int']['bbox_pred'])])
        _check_onnx(graphs['roi'], {'roi_feats': roi_int}, rout)
    return graphs


@pytest.mark.parametrize('name', list(CFGS))
def test_qat_engine_matches_fake_quant_and_onnx(name):
    graphs = _check(_qat(CFGS[name]()))
    groups = {n.attrs['groups'] for g in graphs.values() for n in g.nodes if n.op == 'conv'}
    if name.startswith('resnext'):
        assert 4 in groups  # grouped 3x3 convs exported as grouped convs
    if name == 'dc5':
        assert any(n.attrs['dilation'] == [2, 2] for n in graphs['features'].nodes if n.op == 'conv')
    if name == 'c4':
        assert len(graphs['features'].output_groups['feats']) == 1
        assert sum(n.op == 'add' for n in graphs['roi'].nodes) == 2  # the ResLayer's two BasicBlocks
        assert 512 in groups  # the average pool as a depthwise conv


@pytest.mark.parametrize('name', ['resnext-retina', 'c4'])
def test_dfq_ptq_engine_matches_fake_quant_and_onnx(name):
    model, rep = _ptq(CFGS[name]())
    pairs, _ = find_pairs(model.detector)
    if name == 'resnext-retina':
        # grouped conv2 is a consumer (of conv1) and a producer (for conv3)
        assert any(p.name.endswith('conv1->conv2') and p.consumers[0].conv.groups == 4 for p in pairs)
        assert any(p.name.endswith('conv2->conv3') and p.producer.conv.groups == 4 for p in pairs)
    else:
        assert any(p.name.startswith('roi_head.shared_head.') for p in pairs)
    _check(model)


def test_grouped_equalization_leaves_the_float_model_unchanged():
    from fqn_det.dfq.detector import apply_dfq, fold_bn_permanently
    from fqn_det.quant.calibration import set_fake_quant
    model = _trained_like_bn(build_quantized(resnext_cfg('retina'))).eval()
    set_fake_quant(model, False, False)
    x = model.data_preprocessor(batch(5, n=1, size=64), False)['inputs']
    with torch.no_grad():
        ref = torch.cat([f.flatten() for f in model.detector.extract_feat(x)])
        fold_bn_permanently(model.detector)
        apply_dfq(model.detector)
        out = torch.cat([f.flatten() for f in model.detector.extract_feat(x)])
    assert float((out - ref).abs().max() / ref.abs().max()) <= 1e-4


def test_dc5_and_c4_convert_without_a_neck():
    for cfg in (dc5_cfg(), c4_cfg()):
        det = build_quantized(copy.deepcopy(cfg)).detector
        assert not det.with_neck and det.backbone.out_indices == cfg.backbone.out_indices
