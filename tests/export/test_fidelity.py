"""Integer engine vs fake-quantized model vs onnxruntime, RetinaNet and Faster R-CNN."""
import numpy as np
import onnx
import pytest
import torch
from mmcv.ops import RoIAlign

from conftest import batch, build_quantized, calibrate_on, finetuned, tiny_model_cfg
from fqn_det.export.detectors import build_graphs
from fqn_det.export.engine import IntegerEngine
from fqn_det.export.graph import TensorQ
from fqn_det.export.onnx_writer import ort_session, run_onnx, to_onnx, uses_int4
from fqn_det.export.roi_align import integer_roi_align, map_roi_levels


def _finetuned(kind, quant_cfg=None):
    """Calibrated, then a few QAT steps (EMA ranges and weights move), in eval mode."""
    return finetuned(tiny_model_cfg(kind), quant_cfg)


#: one range per output channel on every head output (not in the paper), with the score floor
PC_RETINA = dict(overrides=[dict(pattern='bbox_head.retina_*', a_per_channel=True),
                            dict(pattern='bbox_head.retina_cls', gamma=1.0, floor='score_thr')])
PC_FASTER = dict(overrides=[dict(pattern='rpn_head.rpn_cls', a_per_channel=True),
                            dict(pattern='rpn_head.rpn_reg', a_per_channel=True),
                            dict(pattern='roi_head.bbox_head.fc_*', a_per_channel=True)])


def _ints(x, q):
    s, z = q.scale, q.zero_point
    if q.per_channel:  # along dim 1
        shape = [1, -1] + [1] * (x.dim() - 2)
        s, z = s.reshape(shape), z.reshape(shape)
    return torch.round(x / s + z).long()


def _agreement(pairs):
    a = torch.cat([x.flatten() for x, _ in pairs])
    b = torch.cat([y.flatten() for _, y in pairs])
    return float((a == b).double().mean()), int((a - b).abs().max())


def _exact(pairs):
    """The fake-quantized model (eval: integer-exact) and the engine give the same integers, every one."""
    same, worst = _agreement(pairs)
    assert same == 1.0 and worst == 0, (same, worst)


def _check_onnx(g, feeds, out):
    """Both ONNX files (opset 21, 4-bit weights in INT4 / UINT4; opset 17, 8-bit containers) == the engine."""
    for opset in (21, 17):
        model = to_onnx(g, opset=opset)
        w4 = any(n.attrs['w_bits'] <= 4 for n in g.nodes if n.op in ('conv', 'linear'))
        assert uses_int4(model) == (opset == 21 and w4)
        # every weight zero-centred int8 with zero-point 0; per-channel outputs add a constant number of nodes
        narrow = all(n.attrs['w_bits'] <= 7 for n in g.nodes if n.op in ('conv', 'linear'))
        assert not narrow or not [t.name for t in model.graph.initializer
                                  if t.data_type == onnx.TensorProto.UINT8 and t.name.startswith('w_')]
        n_weighted = sum(n.op in ('conv', 'linear') for n in g.nodes)
        assert sum(n.op_type == 'QLinearConv' for n in model.graph.node) == n_weighted
        _check_onnx_model(g, model, feeds, out)


def _check_onnx_model(g, model, feeds, out):
    sess = ort_session(model)
    o = run_onnx(sess, {k: (v.numpy().astype(np.uint8) if k in g.tensors else v.numpy()) for k, v in feeds.items()})
    pairs = []
    for name in g.outputs:
        if name in out['_int']:
            t = g.tensors[next(n for n in g.nodes if n.outputs[0] == name).inputs[0]]
            scale, zp = (v.numpy() for v in t.broadcast(o[name].ndim))
            pairs.append((torch.from_numpy(np.round(o[name] / scale + zp).astype(np.int64)), out['_int'][name]))
        else:
            pairs.append((torch.from_numpy(o[name].astype(np.int64)), out[name]))
    same, worst = _agreement(pairs)
    assert same >= 0.999 and worst <= 1, (same, worst)
    return same


@pytest.mark.parametrize('quant_cfg', [None, dict(weight=dict(symmetric=True)),
                                       dict(weight=dict(bits=8), act=dict(bits=8)), PC_RETINA],
                         ids=['w4a4-asym', 'w4a4-sym', 'w8a8', 'w4a4-outputs-per-channel'])
def test_retina_engine_matches_fake_quant_and_onnx(quant_cfg):
    model = _finetuned('retina', quant_cfg)
    head = model.detector.bbox_head
    per_channel = quant_cfg is PC_RETINA
    assert head.retina_reg.out_quant[0].per_channel is per_channel
    assert head.retina_reg.out_quant[0].scale.numel() == (head.retina_reg.conv.out_channels if per_channel else 1)
    data = batch(5, n=2, size=96, seed=42)
    with torch.no_grad():
        d = model.data_preprocessor(data, False)
        cls, reg = model.detector.bbox_head(model.detector.extract_feat(d['inputs']))
    g = build_graphs(model)['features']
    assert g.non_integer_ops() == []
    assert sum(t.per_channel for t in g.tensors.values()) == (2 * len(cls) if per_channel else 0)
    out = IntegerEngine(g).run({'image': d['inputs']})
    pairs = []
    for lvl in range(len(cls)):
        pairs.append((_ints(cls[lvl], head.retina_cls.out_quant[lvl]), out['_int'][f'cls_score.{lvl}']))
        pairs.append((_ints(reg[lvl], head.retina_reg.out_quant[lvl]), out['_int'][f'bbox_pred.{lvl}']))
    _exact(pairs)
    _check_onnx(g, {'image': d['inputs']}, out)


@pytest.mark.parametrize('quant_cfg', [None, PC_FASTER], ids=['w4a4', 'w4a4-outputs-per-channel'])
def test_faster_rcnn_engine_matches_fake_quant_and_onnx(quant_cfg):
    model = _finetuned('faster', quant_cfg)
    bh = model.detector.roi_head.bbox_head
    assert bh.fc_reg.out_quant[0].per_channel is (quant_cfg is PC_FASTER)
    assert model.detector.rpn_head.rpn_reg.out_quant[0].per_channel is (quant_cfg is PC_FASTER)
    data = batch(5, n=2, size=96, seed=42)
    det = model.detector
    graphs = build_graphs(model)
    with torch.no_grad():
        d = model.data_preprocessor(data, False)
        feats = det.extract_feat(d['inputs'])
        rpn_cls, rpn_reg = det.rpn_head(feats)
        proposals = det.rpn_head.predict(feats, d['data_samples'], rescale=False)
        from mmdet.structures.bbox import bbox2roi
        rois = bbox2roi([p.bboxes for p in proposals])
        roi_feats = det.roi_head.bbox_roi_extractor(feats[:4], rois)
        cls, reg = det.roi_head.bbox_head(roi_feats)
    out = IntegerEngine(graphs['features']).run({'image': d['inputs']})
    rpn = det.rpn_head
    pairs = [(_ints(rpn_cls[lvl], rpn.rpn_cls.out_quant[lvl]), out['_int'][f'rpn_cls_score.{lvl}'])
             for lvl in range(5)] + \
            [(_ints(rpn_reg[lvl], rpn.rpn_reg.out_quant[lvl]), out['_int'][f'rpn_bbox_pred.{lvl}'])
             for lvl in range(5)]
    _exact(pairs)
    _check_onnx(graphs['features'], {'image': d['inputs']}, out)
    # RoI head on the same (integer) RoI features
    ext_q = det.roi_head.bbox_roi_extractor.out_quant
    roi_int = _ints(roi_feats, ext_q)
    rout = IntegerEngine(graphs['roi']).run({'roi_feats': roi_int})
    bh = det.roi_head.bbox_head
    _exact([(_ints(cls, bh.fc_cls.out_quant[0]), rout['_int']['cls_score']),
            (_ints(reg, bh.fc_reg.out_quant[0]), rout['_int']['bbox_pred'])])
    _check_onnx(graphs['roi'], {'roi_feats': roi_int}, rout)


def test_integer_roi_align_matches_float_roi_align():
    g = torch.Generator().manual_seed(0)
    strides = [4, 8, 16, 32]
    feats = [torch.randint(0, 16, (2, 8, 512 // s, 512 // s), generator=g) for s in strides]
    tqs = [TensorQ(0.05 * (i + 1), 3 + i, 0, 15) for i in range(4)]
    out_q = TensorQ(0.12, 2, 0, 15)
    xy = torch.rand(400, 2, generator=g) * 400
    wh = torch.exp(torch.rand(400, 2, generator=g) * 6.4) + 2  # 3 px .. 600 px: all levels
    rois = torch.cat([torch.randint(0, 2, (400, 1), generator=g).float(), xy, xy + wh], 1)
    rois[:10, 1:] = torch.tensor([-20.0, -10.0, 530.0, 520.0])  # level 3, partly outside the image
    res = integer_roi_align(feats, tqs, rois, out_q, strides, (7, 7), 0, True)
    lv = map_roi_levels(rois, 4)
    assert set(lv.tolist()) == {0, 1, 2, 3}
    ref = torch.zeros(400, 8, 7, 7)
    for i, s in enumerate(strides):
        idx = (lv == i).nonzero().squeeze(1)
        f = ((feats[i] - tqs[i].zero_point) * tqs[i].scale).float()
        ref[idx] = RoIAlign((7, 7), 1.0 / s, 0, aligned=True)(f, rois[idx])
    refq = torch.round(ref / out_q.scale + out_q.zero_point).clamp(0, 15).long()
    same, worst = _agreement([(refq, res)])
    assert same >= 0.999 and worst <= 1, (same, worst)


def test_roi_align_feature_levels_match_the_extractor():
    model = build_quantized(tiny_model_cfg('faster'))
    from conftest import calibrate_on as _cal
    _cal(model, batch(5, n=1, size=64))
    g = build_graphs(model)['features']
    assert len(g.output_groups['feats']) == model.detector.roi_head.bbox_roi_extractor.num_inputs == 4
    t = TensorQ(0.1, 0, 0, 15)
    with pytest.raises(ValueError, match='must match'):
        integer_roi_align([torch.zeros(1, 4, 8, 8, dtype=torch.long)] * 5, [t] * 5,
                          torch.tensor([[0.0, 0, 0, 1000, 1000]]), t, [4, 8, 16, 32], (7, 7))


@pytest.mark.parametrize('head', [dict(num_shared_fcs=0, num_cls_fcs=1, num_reg_fcs=1),
                                  dict(num_shared_fcs=0, num_cls_fcs=1, num_reg_fcs=0)])
def test_box_heads_without_shared_fcs_export_and_match(head):
    cfg = tiny_model_cfg('faster')
    cfg.roi_head.bbox_head = dict(cfg.roi_head.bbox_head, type='ConvFCBBoxHead', **head)
    model = build_quantized(cfg)
    calibrate_on(model, batch(5, n=1, size=96))
    model.eval()
    det = model.detector
    roi_feats = torch.rand(6, 16, 7, 7)
    q = det.roi_head.bbox_roi_extractor.out_quant
    with torch.no_grad():
        cls, reg = det.roi_head.bbox_head(q(roi_feats))
    out = IntegerEngine(build_graphs(model)['roi']).run({'roi_feats': _ints(q(roi_feats), q)})
    bh = det.roi_head.bbox_head
    _exact([(_ints(cls, bh.fc_cls.out_quant[0]), out['_int']['cls_score']),
            (_ints(reg, bh.fc_reg.out_quant[0]), out['_int']['bbox_pred'])])
