"""Integer engine vs fake quant vs onnxruntime: RetinaNet-MobileNetV2 and SSDLite (depthwise convs, ReLU6)."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from conftest import ROOT, batch, build_quantized, calibrate_on, tiny_model_cfg
from export.test_fidelity import _check_onnx, _exact, _ints
from fqn_det.export.detectors import build_graphs
from fqn_det.export.engine import IntegerEngine


def tiny_mobilenet_retina_cfg():
    """The tiny reference RetinaNet with a narrow MobileNetV2 (ReLU6, depthwise 3x3, residual adds)."""
    m = tiny_model_cfg('retina')
    m.backbone = dict(type='MobileNetV2', widen_factor=0.25, out_indices=(2, 4, 6), act_cfg=dict(type='ReLU6'),
                      init_cfg=None)
    m.neck.in_channels = [8, 24, 80]
    m.neck.start_level = 0
    return m


def tiny_ssdlite_cfg():
    """The reference SSDLite, narrowed: MobileNetV2 width 0.25, depthwise-separable SSD neck and head."""
    m = copy.deepcopy(Config.fromfile(str(ROOT / 'configs/fqn/ssdlite_mobilenetv2_12e_synthetic.py')).model)
    m.backbone.widen_factor = 0.25
    m.neck.in_channels = (24, 1280)
    m.neck.out_channels = m.bbox_head.in_channels = (24, 1280, 64, 32)
    return m


@pytest.mark.parametrize('cfg', [tiny_mobilenet_retina_cfg, tiny_ssdlite_cfg], ids=['retina-mobilenetv2', 'ssdlite'])
def test_engine_matches_fake_quant_and_onnx(cfg):
    model = build_quantized(cfg())
    calibrate_on(model, batch(5, n=2, size=128, seed=0))
    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    for s in range(2):
        model.train_step(batch(5, n=2, size=128, seed=10 + s), optim)
    model.eval()
    head = model.detector.bbox_head
    data = batch(5, n=2, size=128, seed=42)
    with torch.no_grad():
        d = model.data_preprocessor(data, False)
        cls, reg = head(model.detector.extract_feat(d['inputs']))
    g = build_graphs(model)['features']
    assert g.non_integer_ops() == []
    dw = [n for n in g.nodes if n.op == 'conv' and n.attrs['groups'] > 1]
    n_dw = 17 + (0 if cfg is tiny_mobilenet_retina_cfg else 2 + 2 * len(cls))  # + neck and head depthwise
    assert len(dw) == n_dw and all(n.attrs['groups'] == n.params['weight'].shape[0] for n in dw)
    out = IntegerEngine(g).run({'image': d['inputs']})
    if cfg is tiny_mobilenet_retina_cfg:
        outs = [(head.retina_cls, lvl, head.retina_reg, lvl) for lvl in range(len(cls))]
    else:
        outs = [(head.cls_convs[lvl]['out'], 0, head.reg_convs[lvl]['out'], 0) for lvl in range(len(cls))]
    pairs = []
    for lvl, (c, cs, r, rs) in enumerate(outs):
        pairs.append((_ints(cls[lvl], c.out_quant[cs]), out['_int'][f'cls_score.{lvl}']))
        pairs.append((_ints(reg[lvl], r.out_quant[rs]), out['_int'][f'bbox_pred.{lvl}']))
    _exact(pairs)
    _check_onnx(g, {'image': d['inputs']}, out)
    # ReLU6 layers export with ranges that stop at 6
    bb = model.detector.backbone
    q = bb.layer3[0].depthwise_conv.out_quant[0]
    assert q.ceiling == 6.0 and float(q.max_val) <= 6.0
