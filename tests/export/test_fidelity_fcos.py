"""FCOS heads (GroupNorm, three outputs, learned per-level Scale), as a detector head and as the RPN
of a Faster R-CNN (mmdet's fcos-rpn config): QAT steps, then fake-quant (eval) == integer engine ==
onnxruntime (both requantization modes), integer for integer, and the exported model predicts."""
import copy

import numpy as np
import pytest
import torch

from conftest import batch, finetuned, tiny_model_cfg
from fqn_det.export.detectors import build_graphs
from fqn_det.export.engine import IntegerEngine
from fqn_det.export.onnx_writer import ort_session, run_onnx, to_onnx
from fqn_det.nn.dataflow import FakeQuantRunner
from fqn_det.nn.qfcos import QFCOSHead

FCOS = dict(type='FCOSHead', in_channels=16, stacked_convs=2, feat_channels=32, strides=[8, 16, 32, 64, 128],
            norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
            loss_bbox=dict(type='IoULoss', loss_weight=1.0),
            loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0))


def fcos_cfg(kind):
    if kind == 'plain':  # FCOS with norm_cfg=None: conv + ReLU head convs, no GroupNorm
        m = fcos_cfg('retina')
        m.bbox_head.norm_cfg = None
        return m
    m = tiny_model_cfg(kind)
    if kind == 'retina':  # a single-stage FCOS on the tiny ResNet-FPN
        m.bbox_head = dict(FCOS, num_classes=m.bbox_head.num_classes, norm_on_bbox=True, centerness_on_reg=True)
        m.test_cfg = dict(nms_pre=100, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5),
                          max_per_img=50)
        m.train_cfg = dict(assigner=None, allowed_border=-1, pos_weight=-1, debug=False)
    else:  # mmdet's faster-rcnn_r50_fpn_fcos-rpn_1x_coco.py
        m.neck.update(start_level=1, add_extra_convs='on_output', relu_before_extra_convs=True)
        m.rpn_head = dict(FCOS, num_classes=1)
        m.roi_head.bbox_roi_extractor.featmap_strides = [8, 16, 32, 64, 128]
    return m


@pytest.fixture(scope='module')
def trained():
    """One QAT model per kind, shared by the tests of this file."""
    cache = {}

    def get(kind):
        if kind not in cache:
            cache[kind] = finetuned(fcos_cfg(kind))
        return cache[kind]
    return get


@pytest.mark.parametrize('kind', ['retina', 'faster', 'plain'], ids=['fcos', 'fcos-rpn', 'fcos-no-gn'])
def test_fcos_fake_quant_engine_and_onnx_agree_exactly(kind, trained):
    model = trained(kind)
    det = model.detector
    head = det.rpn_head if kind == 'faster' else det.bbox_head
    assert isinstance(head, QFCOSHead)
    graphs = build_graphs(model)
    g = graphs['features']
    assert g.non_integer_ops() == []
    n_gn = 0 if kind == 'plain' else 2 * 2 * 5  # 2 branches x 2 convs x 5 levels
    assert sum(n.op == 'group_norm' for n in g.nodes) == n_gn
    d = model.data_preprocessor(batch(5, n=2, size=96, seed=42), False)
    with torch.no_grad():
        outs = head.walk(_Unscaled(), det.extract_feat(d['inputs']))
    out = IntegerEngine(g).run({'image': d['inputs']})
    p = head.output_prefix
    for name, conv, levels in zip(('cls_score', 'bbox_pred', 'centerness'),
                                  (head.conv_cls, head.conv_reg, head.conv_centerness), outs):
        for i, x in enumerate(levels):
            q = conv.out_quant[i]
            assert torch.equal(torch.round(x / q.scale + q.zero_point).long(), out['_int'][f'{p}{name}.{i}']), \
                (name, i)
    # the dequantized box output carries the level's learned Scale
    t = g.tensors[next(n for n in g.nodes if n.outputs[0] == f'{p}bbox_pred.0').inputs[0]]
    s0 = float(head.scales[0].scale.detach())
    torch.testing.assert_close(out[f'{p}bbox_pred.0'].double(),
                               (out['_int'][f'{p}bbox_pred.0'] - t.zero_point).double() * t.scale * s0)
    for requant in ('exact', 'fast'):
        o = run_onnx(ort_session(to_onnx(g, requant=requant)), {'image': d['inputs'].numpy()})
        for name in g.outputs:
            if name not in out['_int']:  # the integer features RoIAlign reads
                assert np.array_equal(o[name].astype(np.int64), out[name].numpy()), (requant, name)
                continue
            node = next(n for n in g.nodes if n.outputs[0] == name)
            t = g.tensors[node.inputs[0]]
            scale = t.scale * node.attrs.get('factor', 1.0)
            got = np.round(o[name] / np.float32(scale) + t.zero_point).astype(np.int64)
            assert np.array_equal(got, out['_int'][name].numpy()), (requant, name)


class _Unscaled(FakeQuantRunner):
    """The fake-quantized forward, with the head outputs before their output factor (the Scale)."""

    def output(self, x, name, group=None, factor=None):
        return x


def test_fcos_exported_model_predicts_like_the_fake_quantized_one(tmp_path, trained):
    from fqn_det.export.exporter import export_model
    from fqn_det.models import IntegerDetector
    model = trained('retina')  # FCOS's decoding of the exported outputs (Scale, ReLU x stride, centerness)
    export_model(model, copy.deepcopy(fcos_cfg('retina')), tmp_path / 'export')
    data = batch(5, n=1, size=96, seed=7)
    with torch.no_grad():
        ref = model.test_step(data)[0].pred_instances
        int_model = IntegerDetector(str(tmp_path / 'export' / 'model.fqnint'))
        got = int_model.test_step(data)[0].pred_instances
    assert len(got) == len(ref)
    torch.testing.assert_close(got.bboxes, ref.bboxes, rtol=0, atol=1e-3)
    torch.testing.assert_close(got.scores, ref.scores, rtol=0, atol=1e-5)
