"""WeightQuantizer / ActQuantizer modules and the calibration helpers."""
import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from fqn_det.quant import (ActQuantizer, NonFiniteActivationError, NotCalibratedError, QScheme,
                           WeightQuantizer, calc_qparams, finish_calibration, start_calibration)
from fqn_det.quant.calibration import abort_calibration, iter_act_quantizers
from fqn_det.quant.fake_quantize import floored_min
from fqn_det.quant.functional import fake_quantize


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- WeightQuantizer
@pytest.mark.parametrize('scheme', [QScheme(4, per_channel=True), QScheme(4, True, per_channel=True),
                                    QScheme(8, per_channel=True)], ids=['4asym', '4sym', '8asym'])
def test_weight_quantizer_per_channel_matches_torch(scheme):
    w = torch.randn(12, 5, 3, 3, generator=_gen(0)) * torch.logspace(-2, 1, 12).reshape(-1, 1, 1, 1)
    w[3] = w[3].abs() + 0.1  # an all-positive channel
    w[4] = -w[4].abs() - 0.1  # an all-negative channel
    wq = WeightQuantizer(scheme, 12)
    out = wq(w)
    ref = torch.fake_quantize_per_channel_affine(w, wq.scale, wq.zero_point, 0, scheme.quant_min,
                                                 scheme.quant_max)
    assert torch.equal(out, ref)
    # buffers hold the qparams of this weight's per-channel min/max
    lo, hi = torch.aminmax(w.reshape(12, -1), dim=1)
    scale, zp = calc_qparams(lo, hi, scheme)
    assert torch.equal(wq.scale, scale) and torch.equal(wq.zero_point, zp)
    assert wq.scale.shape == (12,) and wq.zero_point.dtype == torch.int32
    sd = wq.state_dict()
    assert torch.equal(sd['scale'], scale) and torch.equal(sd['zero_point'], zp)
    assert 'fake_quant_enabled' in sd
    for c in range(12):
        assert out[c].unique().numel() <= scheme.num_levels


def test_weight_quantizer_updates_with_weight_and_passes_gradient():
    scheme = QScheme(4, per_channel=True)
    wq = WeightQuantizer(scheme, 4)
    w = torch.randn(4, 6, generator=_gen(1), requires_grad=True)
    wq(w)
    s1 = wq.scale.clone()
    with torch.no_grad():
        w.mul_(3.0)
    out = wq(w)
    torch.testing.assert_close(wq.scale, s1 * 3.0)
    out.sum().backward()
    # min/max ranges: every weight lies inside its channel's range -> STE passes all gradients
    assert torch.equal(w.grad, torch.ones_like(w))


def test_weight_quantizer_per_channel_axis1():
    scheme = QScheme(4, per_channel=True, ch_axis=1)
    w = torch.randn(3, 7, 2, 2, generator=_gen(2)) * torch.arange(1, 8).reshape(1, -1, 1, 1)
    wq = WeightQuantizer(scheme, 7)
    out = wq(w)
    ref = torch.fake_quantize_per_channel_affine(w, wq.scale, wq.zero_point, 1, 0, 15)
    assert torch.equal(out, ref)
    lo, hi = torch.aminmax(w.transpose(0, 1).reshape(7, -1), dim=1)
    assert torch.equal(wq.scale, calc_qparams(lo, hi, scheme)[0])


def test_weight_quantizer_per_tensor():
    scheme = QScheme(4)
    w = torch.randn(8, 4, generator=_gen(3))
    wq = WeightQuantizer(scheme, 8)
    out = wq(w)
    assert wq.scale.shape == (1,)
    ref = torch.fake_quantize_per_tensor_affine(w, wq.scale, wq.zero_point, 0, 15)
    assert torch.equal(out, ref)
    assert out.unique().numel() <= 16


def test_weight_quantizer_disabled_passes_through():
    wq = WeightQuantizer(QScheme(4, per_channel=True), 4)
    wq.fake_quant_enabled.fill_(0)
    w = torch.randn(4, 9, generator=_gen(4))
    out = wq(w)
    assert torch.equal(out, w)
    assert torch.equal(wq.scale, torch.ones(4))  # untouched while disabled


def test_weight_quantizer_state_dict_round_trip():
    scheme = QScheme(4, per_channel=True)
    wq = WeightQuantizer(scheme, 6)
    wq(torch.randn(6, 10, generator=_gen(5)))
    fresh = WeightQuantizer(scheme, 6)
    fresh.load_state_dict(wq.state_dict())
    assert torch.equal(fresh.scale, wq.scale) and torch.equal(fresh.zero_point, wq.zero_point)


# ---------------------------------------------------------------- ActQuantizer
def _act_batches(n=5, seed=0, shape=(4, 8, 16, 16)):
    g = _gen(seed)
    return [torch.relu(torch.randn(shape, generator=g) * (1 + i) + 0.2) - 0.05 * i for i in range(n)]


def test_act_quantizer_calibration_flow():
    q = ActQuantizer(QScheme(4), name='neck.conv3')
    q.eval()
    q.start_calibration()
    assert q.calibrating
    batches = _act_batches()
    for x in batches:
        y = q(x)
        assert torch.equal(y, x)  # values pass through unchanged while calibrating
    assert int(q.initialized) == 0
    width = q._hist.width
    assert q.finish_calibration(0.99)
    assert not q.calibrating
    allx = torch.cat([b.reshape(-1) for b in batches]).double().numpy()
    assert abs(float(q.min_val) - np.quantile(allx, 0.01)) <= 2 * width
    assert abs(float(q.max_val) - np.quantile(allx, 0.99)) <= 2 * width
    assert int(q.initialized) == 1
    scale, zp = calc_qparams(q.min_val, q.max_val, q.scheme)
    assert torch.equal(q.scale, scale) and torch.equal(q.zero_point, zp)
    # now it quantizes, on the grid
    y = q(batches[0])
    lv = y / q.scale + q.zero_point
    assert torch.allclose(lv, lv.round(), atol=1e-4)
    assert not torch.equal(y, batches[0])


def test_act_quantizer_calibration_default_gamma_and_minmax():
    batches = _act_batches(3, seed=1)
    allx = torch.cat([b.reshape(-1) for b in batches]).double().numpy()
    q = ActQuantizer(QScheme(4), gamma=0.999)
    q.start_calibration()
    for x in batches:
        q(x)
    width = q._hist.width
    q.finish_calibration()
    assert abs(float(q.max_val) - np.quantile(allx, 0.999)) <= 2 * width
    q.start_calibration()
    for x in batches:
        q(x)
    q.finish_calibration(1.0)
    assert float(q.min_val) == float(allx.min()) and float(q.max_val) == float(allx.max())


def test_act_quantizer_calibrating_in_train_mode_does_not_touch_range():
    q = ActQuantizer(QScheme(4), ema_stat='minmax')
    q.train()
    q.start_calibration()
    x = torch.randn(100, generator=_gen(2))
    assert torch.equal(q(x), x)
    assert int(q.initialized) == 0 and float(q.max_val) == 0.0


def test_finish_calibration_without_data_returns_false():
    q = ActQuantizer(QScheme(4))
    q.start_calibration()
    assert q.finish_calibration() is False
    assert int(q.initialized) == 0 and not q.calibrating
    assert ActQuantizer(QScheme(4)).finish_calibration() is False


def test_act_quantizer_uncalibrated_eval_raises_with_name():
    q = ActQuantizer(QScheme(4), name='backbone.layer2.0.relu_out')
    q.eval()
    with pytest.raises(NotCalibratedError, match=r'backbone\.layer2\.0\.relu_out'):
        q(torch.randn(3, 4))


def test_act_quantizer_per_channel_arguments_are_checked():
    with pytest.raises(ValueError, match='along dim 1'):
        ActQuantizer(QScheme(4, per_channel=True), num_channels=3, name='bbox_head.retina_reg')
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match='num_channels'):
            ActQuantizer(QScheme(4, per_channel=True, ch_axis=1), num_channels=bad)
    q = ActQuantizer(QScheme(4, per_channel=True, ch_axis=1), num_channels=5)
    assert q.per_channel and q.axis == 1
    assert all(getattr(q, b).shape == (5,) for b in ('scale', 'zero_point', 'min_val', 'max_val'))
    assert ActQuantizer(QScheme(4)).scale.shape == () and ActQuantizer(QScheme(4)).axis is None


def _channel_batches(n=4, seed=3, shape=(2, 3, 16, 16)):
    """Channels on very different ranges, as a head's box deltas and logits are."""
    g = _gen(seed)
    spread = torch.tensor([0.1, 1.0, 4.0]).reshape(1, 3, 1, 1)
    shift = torch.tensor([0.0, -2.0, 1.0]).reshape(1, 3, 1, 1)
    return [torch.randn(shape, generator=g) * spread * (1 + 0.3 * i) + shift for i in range(n)]


def _per_channel_and_references(c=3, **kw):
    pc = ActQuantizer(QScheme(4, per_channel=True, ch_axis=1), num_channels=c, name='pc', **kw)
    return pc, [ActQuantizer(QScheme(4), name=f'ref{i}', **kw) for i in range(c)]


@pytest.mark.parametrize('gamma', [0.999, 0.9, 1.0])
def test_per_channel_calibration_equals_one_quantizer_per_channel(gamma):
    pc, refs = _per_channel_and_references(gamma=gamma)
    batches = _channel_batches()
    for m in (pc, *refs):
        m.eval()
        m.start_calibration()
    assert len(pc.histograms()) == 3
    for x in batches:
        assert torch.equal(pc(x), x)
        for c, r in enumerate(refs):
            r(x[:, c])
    assert pc.finish_calibration() and not pc.calibrating
    for c, r in enumerate(refs):
        r.finish_calibration()
        for b in ('min_val', 'max_val', 'scale', 'zero_point'):
            assert torch.equal(getattr(pc, b)[c], getattr(r, b)), (c, b)
    assert len(set(pc.scale.tolist())) == 3  # three different grids
    # quantizing: each channel on its own grid, as its own per-tensor quantizer would
    x = batches[0]
    y = pc(x)
    assert torch.equal(y, fake_quantize(x, pc.scale, pc.zero_point, 0, 15, axis=1))
    for c, r in enumerate(refs):
        assert torch.allclose(y[:, c], r(x[:, c]), rtol=0, atol=1e-6)
    # the per-channel error is far below that of one range for all channels
    one = ActQuantizer(QScheme(4), gamma=gamma)
    one.eval()
    one.start_calibration()
    for b in batches:
        one(b)
    one.finish_calibration()
    small = x[:, 0]
    assert (y[:, 0] - small).abs().mean() < (one(x)[:, 0] - small).abs().mean() / 4


@pytest.mark.parametrize('ema_stat', ['minmax', 'percentile'])
def test_per_channel_ema_equals_one_quantizer_per_channel(ema_stat):
    pc, refs = _per_channel_and_references(momentum=0.2, ema_stat=ema_stat, gamma=0.99)
    for m in (pc, *refs):
        m.train()
    for x in _channel_batches(5, seed=7):
        pc(x)
        for c, r in enumerate(refs):
            r(x[:, c].contiguous())
        for c, r in enumerate(refs):
            assert float(pc.min_val[c]) == pytest.approx(float(r.min_val), abs=1e-6)
            assert float(pc.max_val[c]) == pytest.approx(float(r.max_val), abs=1e-6)
        scale, zp = calc_qparams(pc.min_val, pc.max_val, pc.scheme)
        assert torch.equal(pc.scale, scale) and torch.equal(pc.zero_point, zp)


def test_per_channel_floor_applies_to_every_channel():
    floor = -2.944
    q = ActQuantizer(QScheme(4, per_channel=True, ch_axis=1), num_channels=3, gamma=1.0, floor=floor)
    g = _gen(9)
    x = torch.randn(2, 3, 8, 8, generator=g) * torch.tensor([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1) - 5
    q.eval()
    q.start_calibration()
    q(x)
    q.finish_calibration()
    for c in range(3):
        assert float(q.min_val[c]) == pytest.approx(float(floored_min(floor, q.max_val[c], q.scheme)))
        assert (q.scheme.quant_min - int(q.zero_point[c])) * float(q.scale[c]) < floor
    # each EMA step moves towards the floored batch statistic, channel by channel
    from fqn_det.quant.observers import batch_range_per_channel
    q.train()
    prev = q.min_val.clone()
    lo, hi = batch_range_per_channel(x + 1.0, 'percentile', 1.0)
    q(x + 1.0)
    expected = torch.lerp(prev, torch.maximum(lo, floored_min(floor, hi, q.scheme)), q.momentum)
    assert torch.allclose(q.min_val, expected, rtol=0, atol=1e-6)
    assert torch.all((q.scheme.quant_min - q.zero_point) * q.scale < floor)


def test_per_channel_state_dict_round_trip_and_shape_checks():
    pc, _ = _per_channel_and_references()
    pc.eval()
    pc.start_calibration()
    pc(_channel_batches(1)[0])
    pc.finish_calibration()
    fresh = ActQuantizer(QScheme(4, per_channel=True, ch_axis=1), num_channels=3)
    fresh.load_state_dict(pc.state_dict())
    x = _channel_batches(1, seed=11)[0]
    fresh.eval()
    assert torch.equal(fresh(x), pc(x))
    with pytest.raises(RuntimeError, match='size mismatch'):
        ActQuantizer(QScheme(4)).load_state_dict(pc.state_dict())
    # a tensor with another channel count is refused while calibrating, naming the quantizer
    pc.start_calibration()
    with pytest.raises(ValueError, match='pc: per-channel ranges for 3 channels'):
        pc(torch.randn(2, 4, 8, 8))
    pc.start_calibration()
    bad = torch.randn(2, 3, 4, 4)
    bad[1, 2, 0, 0] = float('nan')
    with pytest.raises(NonFiniteActivationError, match='pc during calibration'):
        pc(bad)
    pc._hist = None
    pc.train()
    with pytest.raises(NonFiniteActivationError, match='at pc'):
        pc(bad)


def test_batch_range_per_channel_is_batch_range_of_each_channel():
    from fqn_det.quant import batch_range
    from fqn_det.quant.observers import batch_range_per_channel
    x = torch.cat(_channel_batches(2), 0)
    for stat, gamma in (('minmax', 0.999), ('percentile', 0.99), ('percentile', 1.0)):
        lo, hi = batch_range_per_channel(x, stat, gamma)
        for c in range(3):
            rlo, rhi = batch_range(x[:, c].contiguous(), stat, gamma)
            assert float(lo[c]) == float(rlo) and float(hi[c]) == float(rhi), (stat, gamma, c)
    lo, hi = batch_range_per_channel(torch.randn(6, 4), 'minmax', 1.0)  # (N, C) linear outputs
    assert lo.shape == hi.shape == (4,)
    bad = x.clone()
    bad[0, 1, 3, 3] = float('inf')
    with pytest.raises(NonFiniteActivationError):
        batch_range_per_channel(bad, 'percentile', 0.99, check_finite=True)


def test_act_quantizer_training_iao_init_then_ema():
    m = 0.1
    q = ActQuantizer(QScheme(4), momentum=m, ema_stat='minmax', name='x')
    q.train()
    batches = [torch.randn(2, 3, 8, 8, generator=_gen(10 + i)) * (1 + 0.5 * i) + 0.3 * i
               for i in range(6)]
    y = q(batches[0])
    assert int(q.initialized) == 1
    assert float(q.min_val) == float(batches[0].min())
    assert float(q.max_val) == float(batches[0].max())
    lv = y / q.scale + q.zero_point
    assert torch.allclose(lv, lv.round(), atol=1e-4)
    exp_lo, exp_hi = float(batches[0].min()), float(batches[0].max())
    for x in batches[1:]:
        q(x)
        exp_lo = (1 - m) * exp_lo + m * float(x.min())
        exp_hi = (1 - m) * exp_hi + m * float(x.max())
        assert abs(float(q.min_val) - exp_lo) <= 1e-6
        assert abs(float(q.max_val) - exp_hi) <= 1e-6
        scale, zp = calc_qparams(q.min_val, q.max_val, q.scheme)
        assert torch.equal(q.scale, scale) and torch.equal(q.zero_point, zp)
    # eval: the range is frozen
    q.eval()
    before = {k: v.clone() for k, v in q.state_dict().items()}
    for x in batches:
        q(x * 10)
    for k, v in q.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_act_quantizer_training_percentile_stat():
    m = 0.2
    q = ActQuantizer(QScheme(4), momentum=m, ema_stat='percentile', gamma=0.99)
    q.train()
    x0 = torch.randn(20_000, generator=_gen(20))
    q(x0)
    xs = x0.double().numpy()
    assert abs(float(q.max_val) - np.quantile(xs, 0.99)) < 0.05
    assert abs(float(q.min_val) - np.quantile(xs, 0.01)) < 0.05
    old_hi = float(q.max_val)
    x1 = x0 * 3
    q(x1)
    from fqn_det.quant import batch_range
    _, bhi = batch_range(x1, 'percentile', 0.99)
    assert abs(float(q.max_val) - ((1 - m) * old_hi + m * float(bhi))) <= 1e-6


def test_act_quantizer_observer_disabled_in_training():
    q = ActQuantizer(QScheme(4), ema_stat='minmax')
    q.train()
    q(torch.randn(50, generator=_gen(3)))
    q.observer_enabled.fill_(0)
    lo, hi = q.min_val.clone(), q.max_val.clone()
    q(torch.randn(50, generator=_gen(4)) * 100)
    assert torch.equal(q.min_val, lo) and torch.equal(q.max_val, hi)


def test_act_quantizer_fake_quant_disabled_passes_through():
    q = ActQuantizer(QScheme(4))
    q.eval()
    q.fake_quant_enabled.fill_(0)
    x = torch.randn(10, generator=_gen(5))
    assert torch.equal(q(x), x)  # and no NotCalibratedError


def test_act_quantizer_state_dict_round_trip():
    q = ActQuantizer(QScheme(4), momentum=0.3, ema_stat='minmax', name='a')
    q.train()
    for i in range(3):
        q(torch.randn(2, 4, 5, 5, generator=_gen(30 + i)) * (i + 1))
    q.observer_enabled.fill_(0)
    q.eval()
    sd = q.state_dict()
    for k in ('scale', 'zero_point', 'min_val', 'max_val', 'initialized', 'fake_quant_enabled',
              'observer_enabled'):
        assert k in sd, k
    fresh = ActQuantizer(QScheme(4), name='a')
    fresh.load_state_dict(copy.deepcopy(sd))
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, sd[k]) and v.dtype == sd[k].dtype, k
    fresh.eval()
    x = torch.randn(3, 4, 6, 6, generator=_gen(40)) * 2
    assert torch.equal(fresh(x), q(x))
    # the restored flags are honoured: observer disabled survives a switch to training
    fresh.train()
    lo = fresh.min_val.clone()
    fresh(x * 50)
    assert torch.equal(fresh.min_val, lo)


def test_act_quantizer_nan_while_calibrating_names_quantizer():
    q = ActQuantizer(QScheme(4), name='rpn_head.rpn_conv')
    q.start_calibration()
    q(torch.randn(100, generator=_gen(6)))
    x = torch.randn(100, generator=_gen(7))
    x[17] = float('nan')
    with pytest.raises(NonFiniteActivationError, match=r'rpn_head\.rpn_conv'):
        q(x)


@pytest.mark.parametrize('ema_stat', ['minmax', 'percentile'])
@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
@pytest.mark.parametrize('initialized', [False, True], ids=['first', 'later'])
def test_act_quantizer_non_finite_in_training_raises(ema_stat, bad, initialized):
    """A NaN/inf activation in training must raise, whatever the EMA statistic.

    A realistic activation (one 2x16x32x32 feature map) with one bad element.
    """
    q = ActQuantizer(QScheme(4), ema_stat=ema_stat, name='bbox_head.cls_convs.0')
    q.train()
    if initialized:
        q(torch.randn(2, 16, 32, 32, generator=_gen(8)))
    x = torch.randn(2, 16, 32, 32, generator=_gen(9))
    x[1, 3, 10, 7] = bad
    with pytest.raises(NonFiniteActivationError, match=r'bbox_head\.cls_convs\.0'):
        q(x)


@pytest.mark.parametrize('ema_stat', ['minmax', 'percentile'])
def test_act_quantizer_all_nan_in_training_raises(ema_stat):
    q = ActQuantizer(QScheme(4), ema_stat=ema_stat, name='q0')
    q.train()
    with pytest.raises(NonFiniteActivationError, match='q0'):
        q(torch.full((4, 4), float('nan')))


# ---------------------------------------------------------------- calibration helpers
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = ActQuantizer(QScheme(8), name='inp')
        self.fc = nn.Linear(6, 5)
        self.body = nn.Sequential(nn.ReLU(), ActQuantizer(QScheme(4), name='body.1'))
        self.unused = ActQuantizer(QScheme(4), name='unused')

    def forward(self, x):
        return self.body(self.fc(self.inp(x)))


def test_calibration_helpers():
    torch.manual_seed(0)
    net = _Net().eval()
    names = [n for n, _ in iter_act_quantizers(net)]
    assert names == ['inp', 'body.1', 'unused']
    assert start_calibration(net) == 3
    assert all(q.calibrating for _, q in iter_act_quantizers(net))
    xs = [torch.randn(16, 6, generator=_gen(50 + i)) for i in range(3)]
    with torch.no_grad():
        for x in xs:
            ref = torch.relu(net.fc(x))
            assert torch.equal(net(x), ref)  # float behaviour while calibrating
    with pytest.warns(UserWarning, match='unused'):
        unseen = finish_calibration(net, gamma=1.0)
    assert unseen == ['unused']
    assert not any(q.calibrating for _, q in iter_act_quantizers(net))
    allx = torch.cat(xs)
    assert float(net.inp.min_val) == float(allx.min())
    assert float(net.inp.max_val) == float(allx.max())
    assert int(net.inp.initialized) == 1 and int(net.body[1].initialized) == 1
    assert int(net.unused.initialized) == 0
    with torch.no_grad():
        out = net(xs[0])
    lv = out / net.body[1].scale + net.body[1].zero_point
    assert torch.allclose(lv, lv.round(), atol=1e-4)


def test_finish_calibration_all_seen_does_not_warn():
    net = nn.Sequential(ActQuantizer(QScheme(4), name='a'), nn.ReLU(), ActQuantizer(QScheme(4)))
    start_calibration(net)
    net(torch.randn(10, 3, generator=_gen(60)))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert finish_calibration(net) == []


def test_abort_calibration_keeps_ranges():
    net = nn.Sequential(ActQuantizer(QScheme(4), ema_stat='minmax'), nn.ReLU(),
                        ActQuantizer(QScheme(4), ema_stat='minmax'))
    net.train()
    net(torch.randn(10, 3, generator=_gen(61)))
    before = copy.deepcopy(net.state_dict())
    start_calibration(net)
    net(torch.randn(10, 3, generator=_gen(62)) * 100)
    abort_calibration(net)
    assert not any(q.calibrating for _, q in iter_act_quantizers(net))
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    # a fresh (never initialized) quantizer stays uninitialized after an abort
    q = ActQuantizer(QScheme(4))
    start_calibration(q)
    q(torch.randn(5))
    abort_calibration(q)
    assert int(q.initialized) == 0 and not q.calibrating
    q.eval()
    with pytest.raises(NotCalibratedError):
        q(torch.randn(5))


def test_fp16_activations_do_not_raise_a_false_nan_error():
    q = ActQuantizer(QScheme(4), name='amp').train()
    x = torch.full((1, 8, 128, 128), 0.5, dtype=torch.float16)  # sums past fp16's 65504
    q(x)
    assert bool(q.initialized)


@pytest.mark.parametrize('bits', [2, 3, 4, 8])
@pytest.mark.parametrize('floor', [-2.944, -0.3, -7.0])
def test_floored_min_keeps_the_lowest_level_below_the_floor(bits, floor):
    scheme = QScheme(bits)
    g = _gen(bits)
    his = [-10.0, floor - 1.0, floor, floor / 2, 0.0, 1e-3, 0.5, 3.0, 40.0] + \
        (torch.rand(200, generator=g) * 20 - 8).tolist()
    for hi in his:
        lo = floored_min(floor, hi, scheme)
        assert lo < floor
        scale, zp = calc_qparams(torch.tensor(lo), torch.tensor(hi), scheme)
        lowest = float((scheme.quant_min - zp) * scale)
        # strictly below, by 1/2 - 1/L of a step (L = qmax - qmin): whatever is clipped there stays
        # under a threshold at floor
        L = scheme.quant_max - scheme.quant_min
        assert floor - lowest >= (0.5 - 1 / L) * float(scale) - 1e-6, (hi, lowest)
        x = torch.tensor([lo, lo - 1.0, lo - 100.0, -1e6])  # clipped at the bottom of the range
        assert torch.all(fake_quantize(x, scale, zp, scheme.quant_min, scheme.quant_max) < floor)
        # the tensor form gives the same bound
        assert float(floored_min(floor, torch.tensor(hi), scheme)) == pytest.approx(lo, rel=1e-6, abs=1e-6)
        if hi > floor:  # and the range spends its levels above the floor: no more than one step below it
            assert floor - lo <= (max(hi, 0.0) - floor) / (scheme.quant_max - scheme.quant_min) + 1e-9


def test_act_quantizer_floor_in_calibration_and_ema():
    floor = -2.944
    g = _gen(5)
    q = ActQuantizer(QScheme(4), gamma=1.0, floor=floor, name='bbox_head.retina_cls')
    ref = ActQuantizer(QScheme(4), gamma=1.0, name='ref')
    batches = [torch.randn(2, 45, 8, 8, generator=g) * 2 - 5 for _ in range(3)]  # mostly far below the floor
    for m in (q, ref):
        m.eval()
        m.start_calibration()
        for x in batches:
            m(x)
        m.finish_calibration()
    assert float(ref.min_val) < -10  # the plain range spends most levels on discarded values
    assert float(q.max_val) == float(ref.max_val)
    assert float(q.min_val) == pytest.approx(floored_min(floor, float(q.max_val), q.scheme))
    assert float(q.scale) < float(ref.scale) / 2
    lowest = (q.scheme.quant_min - int(q.zero_point)) * float(q.scale)
    assert lowest < floor
    # training: every EMA step is floored too, and the lowest level stays below the floor
    q.train()
    for i in range(20):
        q(torch.randn(2, 45, 8, 8, generator=g) * 3 - 5 + 0.2 * i)
        lo_bound = floored_min(floor, q.max_val, q.scheme)
        assert float(q.min_val) >= float(lo_bound) - 1e-5
        assert (q.scheme.quant_min - int(q.zero_point)) * float(q.scale) < floor
    # a batch entirely above the floor keeps its own minimum
    q2 = ActQuantizer(QScheme(4), gamma=1.0, floor=floor)
    q2.train()
    q2(torch.linspace(-1.0, 2.0, 100))
    assert float(q2.min_val) == -1.0
    assert 'floor=-2.944' in repr(q2)
