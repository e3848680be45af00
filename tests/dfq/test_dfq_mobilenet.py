"""DFQ on a quantized MobileNetV2: pairs inside inverted residuals, ReLU6 -> ReLU reported."""
import copy

import torch

from fqn_det.dfq.detector import apply_dfq, find_pairs
from fqn_det.dfq.ptq import post_training_quantize
from fqn_det.models.imagenet_mobilenet import QuantizedClassifier
from fqn_det.quant.calibration import set_fake_quant

from nn.test_qmobilenet import _net  # noqa: E402  (tests/ is on sys.path)


def _model(net, **cfg):
    fc = torch.nn.Linear(1280, 10)
    return QuantizedClassifier(net, fc, cfg).eval()


def test_pairs_inside_inverted_residuals():
    m = _model(_net())
    pairs, skipped = find_pairs(m.detector)
    names = [p.name for p in pairs]
    assert 'backbone.layer2.0.expand_conv->depthwise_conv' in names
    assert 'backbone.layer2.0.depthwise_conv->linear_conv' in names
    assert 'backbone.layer1.0.expand_conv->depthwise_conv' not in names  # expand ratio 1: no expand conv
    assert len(pairs) == 16 + 17  # 16 expand convs, 17 depthwise convs; the stem feeds a residual add here
    assert any(s.startswith('backbone.layer2.1.linear_conv -> ') and 'add backbone.layer2.1.add' in s
               for s in skipped)
    assert any(s.startswith('backbone.conv1 -> ') and 'add backbone.layer1.0.add' in s for s in skipped)
    assert all(p.consumers[0].conv.groups == p.consumers[0].conv.in_channels for p in pairs if 'expand' in p.name)


def test_equalization_keeps_the_relu_function_and_reports_relu6():
    net = _net()
    m = _model(net)
    ref = copy.deepcopy(m)
    for p in find_pairs(ref.detector)[0]:  # the float function DFQ preserves: ReLU at the equalized producers
        for q in p.producer.out_quant:
            q.ceiling = None
    rep = apply_dfq(m.detector, equalization=True, absorption=False)
    assert rep.sweeps >= 2 and len(rep.relu6_replaced) == len(rep.pairs)
    assert 'backbone.layer3.0.depthwise_conv' in rep.relu6_replaced
    assert m.detector.backbone.layer3[0].linear_conv.out_quant[0].ceiling is None  # no ReLU6 there anyway
    set_fake_quant(m, False, False)
    set_fake_quant(ref, False, False)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref(x), rtol=1e-3, atol=1e-3)


def test_ptq_report_and_data_free_ranges():
    net = _net()
    with torch.no_grad():  # high biases: some channels almost always above 0
        net.layer2[0].expand_conv.bn.bias[:4] = 4.0
    m = _model(net, weight=dict(bits=6, per_channel=False), act=dict(bits=8))
    rep = post_training_quantize(m, equalization=True, absorption=True, bias_correction='analytic',
                                 ranges='data-free')
    assert rep['relu6_replaced'] and rep['bias_corrected']
    assert 'backbone.layer2.0.expand_conv->depthwise_conv' in rep['absorbed']
    assert any('linear_conv' in s for s in rep['skipped'])
    assert bool(m.calibrated)
    with torch.no_grad():
        assert torch.isfinite(m(torch.randn(1, 3, 64, 64))).all()
    # ranges still capped where ReLU6 was kept: the last 1x1 conv (no pair) keeps its ceiling
    assert m.detector.backbone.conv2.out_quant[0].ceiling == 6.0
    assert float(m.detector.backbone.conv2.out_quant[0].max_val) <= 6.0
