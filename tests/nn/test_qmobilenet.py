"""QMobileNetV2: the fake-quant model against mmdet's float MobileNetV2; ReLU6 as a range ceiling."""
import pytest
import torch
from mmdet.models.backbones import MobileNetV2

from fqn_det.nn.link import link_input_quantizers
from fqn_det.models.imagenet_mobilenet import FeatureExtractor
from fqn_det.nn import QBuilder, UnsupportedModuleError
from fqn_det.nn.qmobilenet import QInvertedResidual, QMobileNetV2
from fqn_det.quant import QuantConfig, finish_calibration, start_calibration
from fqn_det.quant.calibration import set_fake_quant


def _net(**kw):
    torch.manual_seed(0)
    net = MobileNetV2(widen_factor=0.25, out_indices=(2, 4, 7), **kw)
    for m in net.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    net.eval()
    return net


def _quantized(net, **cfg):
    q = QMobileNetV2.from_float(net, QBuilder(QuantConfig.from_dict(cfg)), 'backbone')
    link_input_quantizers(FeatureExtractor(q))
    return q.eval()


def test_float_path_equals_mmdet():
    net = _net()
    q = _quantized(net)
    set_fake_quant(q, False, False)
    x = torch.randn(2, 3, 64, 64) * 3
    with torch.no_grad():
        ref, out = net(x), q(x)
    assert len(out) == 3
    for a, b in zip(ref, out):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    blocks = [m for m in q.modules() if isinstance(m, QInvertedResidual)]
    assert len(blocks) == 17 and sum(b.add is not None for b in blocks) == 11  # 10 + layer1 (8 -> 8 at this width)
    assert all(b.depthwise_conv.conv.groups == b.depthwise_conv.conv.in_channels for b in blocks)


def test_relu6_is_a_range_ceiling():
    net = _net()
    q = _quantized(net, weight=dict(bits=8), act=dict(bits=8, symmetric=False))
    ceilings = {aq.name: aq.ceiling for m in q.modules() if hasattr(m, 'out_quant') for aq in m.out_quant}
    assert ceilings['backbone.conv1'] == 6.0 and ceilings['backbone.layer2.0.depthwise_conv'] == 6.0
    assert ceilings['backbone.layer2.0.linear_conv'] is None and ceilings['backbone.layer2.1.add'] is None
    start_calibration(q)
    with torch.no_grad():
        q(torch.randn(2, 3, 64, 64) * 20)  # large inputs: pre-activations well above 6
    finish_calibration(q, 1.0)
    dw = q.layer2[0].depthwise_conv.out_quant[0]
    assert float(dw.max_val) <= 6.0 and float(q.conv1.out_quant[0].max_val) == pytest.approx(6.0)
    y = dw(torch.tensor([3.0, 7.0, 100.0]))
    assert float(y[1]) == float(y[2]) <= 6.0  # clipped at the top of the range, as ReLU6 clips


def test_unsupported_blocks_are_named():
    net = _net()
    net.layer3[1].drop_path = torch.nn.Dropout()
    with pytest.raises(UnsupportedModuleError, match=r"'backbone.layer3.1'.*drop_path"):
        _quantized(net)
