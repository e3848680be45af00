"""The fused CPU kernels give bit for bit the PyTorch path's values and gradients."""
import warnings

import pytest
import torch
from torch import nn

from fqn_det.quant import ActQuantizer, QScheme, WeightQuantizer, batch_range, calc_qparams, fake_quantize
from fqn_det.quant import fused


@pytest.fixture(autouse=True)
def _kernel_built():
    # CI and `make setup` have a C++ compiler: a missing kernel here is a failure, not a skip.
    assert fused.load() is not None, 'the fused kernel did not build (is a C++ compiler installed?)'


def _both(monkeypatch, fn):
    """``fn()`` with the fused kernels, then with PyTorch ops."""
    monkeypatch.setenv(fused.ENV_SWITCH, '1')
    a = fn()
    monkeypatch.setenv(fused.ENV_SWITCH, '0')
    b = fn()
    monkeypatch.setenv(fused.ENV_SWITCH, '1')
    return a, b


def _data(shape, seed, scale):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 3
    flat = x.view(-1)
    # exact rounding ties (x / s + zp = k + 1/2) and values far outside the range
    flat[:50] = (torch.arange(-25, 25).float() + 0.5) * scale
    flat[50:60] = torch.tensor([1e4, -1e4, 0.0, -0.0, 1e-30, 3e3, -3e3, 7.0, -7.0, 0.5])
    return x


@pytest.mark.parametrize('bits,symmetric', [(4, False), (4, True), (8, False)])
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last', 'vector', 'empty'])
def test_per_tensor_forward_backward_bit_exact(monkeypatch, bits, symmetric, layout):
    scheme = QScheme(bits, symmetric=symmetric)
    scale, zp = calc_qparams(torch.tensor(-2.3), torch.tensor(5.1), scheme)
    shape = {'contiguous': (4, 6, 9, 11), 'channels_last': (4, 6, 9, 11), 'vector': (70001,),
             'empty': (0, 3, 4, 4)}[layout]
    x = _data(shape, 0, float(scale)) if layout != 'empty' else torch.zeros(shape)
    if layout == 'channels_last':
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(shape, generator=torch.Generator().manual_seed(1))

    def run():
        a = x.clone().requires_grad_(True)
        y = fake_quantize(a, scale, zp, scheme.quant_min, scheme.quant_max)
        (y * w).sum().backward()
        with torch.no_grad():  # the no-mask forward too
            y2 = fake_quantize(x, scale, zp, scheme.quant_min, scheme.quant_max)
        return y.detach(), a.grad, y2, y.stride()

    (y, g, y2, st), (y_ref, g_ref, y2_ref, st_ref) = _both(monkeypatch, run)
    assert torch.equal(y, y_ref) and torch.equal(g, g_ref) and torch.equal(y2, y_ref) and torch.equal(y2_ref, y_ref)
    assert st == st_ref  # the output keeps the input's memory format
    if layout != 'empty':
        assert (g == 0).any() and (g != 0).any()  # both clipped and passed-through elements


@pytest.mark.parametrize('shape', [(16, 8, 3, 3), (5, 7), (3, 1, 1, 1)])
def test_per_channel_forward_backward_bit_exact(monkeypatch, shape):
    scheme = QScheme(4, per_channel=True)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(shape, generator=g)
    x[0] = 0.0  # an all-zero channel: range [0, 0], smallest scale
    lo, hi = x.reshape(shape[0], -1).amin(1) * 0.8, x.reshape(shape[0], -1).amax(1) * 0.8  # some clipping
    scale, zp = calc_qparams(lo, hi, scheme)

    def run():
        a = x.clone().requires_grad_(True)
        y = fake_quantize(a, scale, zp, scheme.quant_min, scheme.quant_max, 0)
        (y * y).sum().backward()
        return y.detach(), a.grad

    (y, gr), (y_ref, g_ref) = _both(monkeypatch, run)
    assert torch.equal(y, y_ref) and torch.equal(gr, g_ref)


def test_gradient_in_another_layout_and_double_backward(monkeypatch):
    # a channels-last input whose gradient arrives contiguous, and create_graph=True:
    # both take the PyTorch ops for the backward and stay exact
    scale, zp = calc_qparams(torch.tensor(-1.0), torch.tensor(2.0), QScheme(4))
    x = _data((2, 5, 6, 7), 3, float(scale)).contiguous(memory_format=torch.channels_last)

    def run():
        a = x.clone().requires_grad_(True)
        y = fake_quantize(a, scale, zp, 0, 15)
        (gx,) = torch.autograd.grad(y, a, torch.ones(y.shape), create_graph=True)
        return y.detach(), gx.detach()

    (y, gx), (y_ref, gx_ref) = _both(monkeypatch, run)
    assert torch.equal(y, y_ref) and torch.equal(gx, gx_ref)


@pytest.mark.parametrize('gamma', [0.999, 0.9999, 0.99, 0.9])
@pytest.mark.parametrize('shape', [(8, 64, 32, 32), (2, 16, 8, 8), (3, 5), (200,)])
@pytest.mark.parametrize('kind', ['relu', 'normal', 'ties'])
def test_order_statistics_equal_topk(monkeypatch, gamma, shape, kind):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(shape, generator=g)
    if kind == 'relu':
        x = torch.relu(x)
    elif kind == 'ties':
        x = torch.round(x * 2)
    if len(shape) == 4 and shape[0] == 2:
        x = x.contiguous(memory_format=torch.channels_last)
    a, b = _both(monkeypatch, lambda: batch_range(x, 'percentile', gamma))
    assert float(a[0]) == float(b[0]) and float(a[1]) == float(b[1])


def test_order_statistics_extremes():
    # k = 1 and k = n, odd and even strides, against a sorted copy of the strided sample
    x = torch.randn(1000, generator=torch.Generator().manual_seed(5))
    for step in (1, 2, 7):
        sample = torch.sort(x[::step]).values
        n = sample.numel()
        for k_lo, k_hi in ((1, 1), (n, n), (3, 11)):
            lo, hi, ok = fused.strided_order_stats(x, step, k_lo, k_hi).tolist()
            assert lo == float(sample[k_lo - 1]) and hi == float(sample[n - k_hi])
    with pytest.raises(RuntimeError, match='k out of range'):
        fused.strided_order_stats(x, 1, 0, 1)


def _weights(seed, shape):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g) * torch.logspace(-6, 6, shape[0]).reshape(-1, *[1] * (len(shape) - 1))
    rows = w.view(shape[0], -1)
    last = rows.shape[1] - 1
    rows[0] = 0.0                        # an all-zero channel: scale clamped to eps
    rows[1] = rows[1].abs() + 1e-3       # all positive: the range widened to contain 0
    rows[2] = -rows[2].abs() - 1e-3      # all negative
    rows[3, 0] = -0.0
    rows[4] = 2.5                        # one value
    rows[5, min(1, last)] = float('inf')
    rows[6, min(2, last)] = float('-inf')
    rows[7, min(3, last)] = float('nan')
    rows[8] = 3.4e38                     # (max - min) overflows float32 on its own
    rows[8, 0] = -3.4e38
    return w


@pytest.mark.parametrize('bits,symmetric', [(4, False), (4, True), (8, False), (2, True), (3, False)])
@pytest.mark.parametrize('per_channel', [True, False])
@pytest.mark.parametrize('shape', [(12, 5, 3, 3), (16, 7), (9,)])
def test_weight_qparams_bit_exact(monkeypatch, bits, symmetric, per_channel, shape):
    # the weight quantizer's qparams and output, one fused call against amin/amax + calc_qparams
    w = _weights(bits * 7 + len(shape), shape)
    scheme = QScheme(bits, symmetric=symmetric, per_channel=per_channel)

    def run():
        q = WeightQuantizer(scheme, shape[0])
        out = q(w)
        return q.scale.clone(), q.zero_point.clone(), out

    (sa, za, oa), (sb, zb, ob) = _both(monkeypatch, run)
    assert torch.equal(sa.isnan(), sb.isnan()) and torch.equal(sa[~sa.isnan()], sb[~sb.isnan()])
    assert torch.equal(za, zb)
    assert torch.equal(oa.isnan(), ob.isnan()) and torch.equal(oa[~oa.isnan()], ob[~ob.isnan()])
    if per_channel:  # the edge channels did get their own values
        assert float(sa[0]) == torch.finfo(torch.float32).eps and sa[7].isnan()


def test_weight_qparams_random_ranges(monkeypatch):
    # many random per-channel ranges, every scheme: the same float32 scales and zero-points
    g = torch.Generator().manual_seed(11)
    w = torch.randn(4096, 6, generator=g) * torch.exp(torch.randn(4096, 1, generator=g) * 4)
    w += torch.randn(4096, 1, generator=g) * torch.exp(torch.randn(4096, 1, generator=g) * 3)
    # ranges [-(k + 1/2) t, (m - k - 1/2) t]: min / scale lands on or within an ulp of a rounding tie
    t = torch.exp(torch.randn(2048, generator=g) * 4)
    k = torch.randint(0, 15, (2048,), generator=g).float()
    w[:2048, 0], w[:2048, 1] = -(k + 0.5) * t, (15 - k - 0.5) * t
    w[:2048, 2:] = 0.0
    for bits in (2, 4, 8):
        for symmetric in (False, True):
            q = WeightQuantizer(QScheme(bits, symmetric=symmetric, per_channel=True), 4096)
            a, b = _both(monkeypatch, lambda: (q(w), q.scale.clone(), q.zero_point.clone())[1:])
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize('symmetric', [False, True])
def test_ema_qparams_bit_exact(monkeypatch, symmetric):
    # many EMA steps from calibrated and from uninitialized quantizers: the same buffers either way
    g = torch.Generator().manual_seed(12)
    steps = torch.randn(300, 2, generator=g) * torch.exp(torch.randn(300, 1, generator=g) * 3)
    steps[::7] = 0.0
    t = torch.exp(torch.randn(100, generator=g) * 3)  # ranges on rounding ties of min / scale
    k = torch.randint(0, 15, (100,), generator=g).float()
    steps[100:200] = torch.stack([-(k + 0.5) * t, (15 - k - 0.5) * t], 1)

    def run(calibrated, momentum):
        q = ActQuantizer(QScheme(4, symmetric=symmetric), momentum=momentum)
        if calibrated:
            q.set_range(torch.tensor(-0.75), torch.tensor(3.25))
        trace = []
        for lo, hi in steps:
            lo, hi = torch.minimum(lo, hi), torch.maximum(lo, hi)
            q._update_range(lo, hi)
            trace.append(torch.stack([q.min_val, q.max_val, q.scale, q.zero_point.float(), q.initialized.float()]))
        return torch.stack(trace)

    for calibrated in (False, True):
        for momentum in (0.01, 0.3, 0.5, 0.9):
            a, b = _both(monkeypatch, lambda: run(calibrated, momentum))
            assert torch.equal(a, b), (calibrated, momentum)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)
        self.wq1, self.wq2 = (WeightQuantizer(QScheme(4, per_channel=True), c) for c in (8, 4))
        self.aq0, self.aq1, self.aq2 = (ActQuantizer(QScheme(4)) for _ in range(3))

    def forward(self, x):
        x = self.aq0(x)
        x = self.aq1(torch.relu(nn.functional.conv2d(x, self.wq1(self.conv1.weight), self.conv1.bias, padding=1)))
        return self.aq2(nn.functional.conv2d(x, self.wq2(self.conv2.weight), self.conv2.bias, padding=1))


def test_qat_steps_bit_exact(monkeypatch):
    # several SGD steps with EMA percentile ranges: the same parameters and ranges either way
    def run():
        torch.manual_seed(0)
        net = _Net()
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        g = torch.Generator().manual_seed(1)
        for _ in range(4):
            x = torch.randn(4, 3, 16, 16, generator=g)
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
        return {k: v.clone() for k, v in net.state_dict().items()}

    a, b = _both(monkeypatch, run)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert float(a['aq2.max_val']) != 0.0


def test_build_failure_warns_once_and_falls_back(monkeypatch):
    def broken(verbose):
        raise RuntimeError('Error building extension: no compiler')

    monkeypatch.setattr(fused, '_state', {})
    monkeypatch.setattr(fused, '_load_library', broken)
    x = torch.randn(2, 3, 4, 4)
    scale, zp = calc_qparams(torch.tensor(-1.0), torch.tensor(1.0), QScheme(4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        y1 = fake_quantize(x, scale, zp, 0, 15)
        y2 = fake_quantize(x, scale, zp, 0, 15)
    msgs = [str(w.message) for w in caught if 'fused fake-quant kernel' in str(w.message)]
    assert len(msgs) == 1 and 'no compiler' in msgs[0] and fused.ENV_SWITCH in msgs[0]
    assert torch.equal(y1, y2) and not fused.usable(x)


def test_switch_off(monkeypatch):
    monkeypatch.setenv(fused.ENV_SWITCH, '0')
    assert not fused.enabled() and not fused.usable(torch.zeros(3))
    monkeypatch.setenv(fused.ENV_SWITCH, 'on')
    assert fused.enabled() and fused.usable(torch.zeros(3))
    assert not fused.usable(torch.zeros(3, dtype=torch.float64))
    assert not fused.usable(torch.zeros(4, 6)[:, ::2])  # not dense
