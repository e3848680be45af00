"""Integer engine vs fake quant vs onnxruntime for RetinaNet with a MobileNetV2 backbone (depthwise convs)."""
import torch
from mmengine.optim import OptimWrapper

from conftest import batch, build_quantized, calibrate_on, tiny_model_cfg
from export.test_fidelity import _agreement, _check_onnx, _ints
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


def test_retina_mobilenet_engine_matches_fake_quant_and_onnx():
    model = build_quantized(tiny_mobilenet_retina_cfg())
    calibrate_on(model, batch(5, n=2, size=96, seed=0))
    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    for s in range(2):
        model.train_step(batch(5, n=2, size=96, seed=10 + s), optim)
    model.eval()
    head = model.detector.bbox_head
    data = batch(5, n=2, size=96, seed=42)
    with torch.no_grad():
        d = model.data_preprocessor(data, False)
        cls, reg = head(model.detector.extract_feat(d['inputs']))
    g = build_graphs(model)['features']
    assert g.non_integer_ops() == []
    dw = [n for n in g.nodes if n.op == 'conv' and n.attrs['groups'] > 1]
    assert len(dw) == 17 and all(n.attrs['groups'] == n.params['weight'].shape[0] for n in dw)
    out = IntegerEngine(g).run({'image': d['inputs']})
    pairs = []
    for lvl in range(len(cls)):
        pairs.append((_ints(cls[lvl], head.retina_cls.out_quant[lvl]), out['_int'][f'cls_score.{lvl}']))
        pairs.append((_ints(reg[lvl], head.retina_reg.out_quant[lvl]), out['_int'][f'bbox_pred.{lvl}']))
    same, worst = _agreement(pairs)
    assert same >= 0.999 and worst <= 1, (same, worst)
    _check_onnx(g, {'image': d['inputs']}, out)
    # ReLU6 layers export with ranges that stop at 6
    bb = model.detector.backbone
    q = bb.layer3[0].depthwise_conv.out_quant[0]
    assert q.ceiling == 6.0 and float(q.max_val) <= 6.0
