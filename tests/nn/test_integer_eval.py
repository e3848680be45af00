"""Integer-exact evaluation: every quantized layer in eval mode gives the integer engine's integers."""
import pytest
import torch
from torch import nn

from fqn_det.export.builder import GraphBuilder
from fqn_det.export.engine import IntegerEngine
from fqn_det.nn import RUN
from fqn_det.nn.integer_eval import float_arithmetic
from fqn_det.nn.link import _LinkBuilder
from fqn_det.nn.qconv import QAdd, QAvgPool2d, QConv2d, QLinear, QMaxPool2d, QUpsampleNearest
from fqn_det.quant import ActQuantizer, QScheme, WeightQuantizer
from fqn_det.quant.calibration import finish_calibration, set_fake_quant, start_calibration


def act(bits, name):
    return ActQuantizer(QScheme(bits=bits, symmetric=False), name=name)


def weight(bits, cout, symmetric=False):
    return WeightQuantizer(QScheme(bits=bits, symmetric=symmetric, per_channel=True, ch_axis=0), cout)


class Toy(nn.Module):
    """input -> conv+relu -> max-pool -> conv -> add(skip) -> upsample -> avg-pool -> conv -> flatten -> linear."""

    def __init__(self, w_bits=8, a_bits=8, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        bn = nn.BatchNorm2d(24)
        with torch.no_grad():
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        self.inp = act(a_bits, 'input')
        self.c1 = QConv2d(nn.Conv2d(3, 24, 3, padding=1, bias=False), bn, True, weight(w_bits, 24),
                          [act(a_bits, 'c1')])
        self.pool = QMaxPool2d(3, 2, 1, out_quant=[act(a_bits, 'pool')])
        self.c2 = QConv2d(nn.Conv2d(24, 24, 3, padding=1), None, False, weight(w_bits, 24, symmetric=True),
                          [act(a_bits, 'c2')])
        self.add = QAdd(True, [act(a_bits, 'add')])
        self.up = QUpsampleNearest([act(a_bits, 'up')])
        self.avg = QAvgPool2d(4, 24, [act(a_bits, 'avg')])
        self.c3 = QConv2d(nn.Conv2d(24, 16, 1), None, False, weight(w_bits, 16), [act(a_bits, 'c3')])
        self.fc = QLinear(nn.Linear(16 * 8 * 8, 10), False, weight(w_bits, 10), [act(a_bits, 'fc')])

    def walk(self, b, x):
        x = b.input(x, self.inp)
        x = b.conv(self.c1, x)
        p = b.maxpool(self.pool, x)
        y = b.add(self.add, b.conv(self.c2, p), p)
        y = b.upsample(self.up, y, x)
        y = b.avgpool(self.avg, y)
        y = b.conv(self.c3, y)
        return b.output(b.linear(self.fc, b.flatten(y, 'flat')), 'out')

    def forward(self, x):
        return self.walk(RUN, x)


def calibrated(w_bits=8, a_bits=8, seed=0):
    m = Toy(w_bits, a_bits, seed)
    m.walk(_LinkBuilder(), None)
    m.eval()
    start_calibration(m)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(2, 3, 32, 32, generator=g) * 2)
    finish_calibration(m, 0.999)
    return m


def engine_out(m, x):
    b = GraphBuilder()
    m.walk(b, 'image')
    out = IntegerEngine(b.g).run({'image': x})
    return out['out'], out['_int']['out']


@pytest.mark.parametrize('w_bits, a_bits', [(8, 8), (6, 6), (4, 4), (2, 2), (4, 8), (8, 4)])
def test_eval_equals_the_integer_engine_bit_for_bit(w_bits, a_bits):
    m = calibrated(w_bits, a_bits)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(7)) * 2
    calls = []
    for q in m.modules():
        if isinstance(q, ActQuantizer):
            q.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        got = m(x)
    assert not calls  # every layer took the integer path: no float fake quantization ran
    want, _ = engine_out(m, x)
    assert got.dtype == torch.float32 and torch.equal(got, want)
    with torch.no_grad(), float_arithmetic():
        m(x)
    assert len(calls) == 9  # the float path quantizes with each of the nine activation quantizers


def test_float_arithmetic_is_the_training_path_and_is_restored():
    m = calibrated(8, 8)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        exact = m(x)
        with float_arithmetic():
            flt = m(x)
        m.train()
        trained_path = m(x)  # training mode: the float fake quantization (EMA observers update ranges)
    assert torch.allclose(flt, exact, atol=float(m.fc.out_quant[0].scale) * 2.01)
    m2 = calibrated(8, 8)
    with pytest.raises(RuntimeError, match='boom'), float_arithmetic():
        raise RuntimeError('boom')
    with torch.no_grad():
        assert torch.equal(m2(x), exact)  # integer-exact again after the block, even after an exception
    assert trained_path.requires_grad is False and trained_path.shape == exact.shape


def test_not_used_while_calibrating_or_with_fake_quant_off():
    m = calibrated(8, 8)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    set_fake_quant(m, True, False)  # activations float: no integer grid to compute on
    with torch.no_grad():
        out = m(x)
    want, _ = engine_out(calibrated(8, 8), x)
    assert not torch.equal(out, want)
    m = calibrated(8, 8)
    start_calibration(m)
    with torch.no_grad():
        assert m(x).shape == want.shape  # the float path records histograms; no error
    assert all(len(q.histograms()) for q in m.modules() if isinstance(q, ActQuantizer))


def test_unlinked_layer_keeps_the_clear_error():
    m = calibrated(8, 8)
    m.c2.in_quants.clear()
    with pytest.raises(Exception, match='no input quantizer linked'), torch.no_grad():
        m(torch.randn(1, 3, 32, 32))
