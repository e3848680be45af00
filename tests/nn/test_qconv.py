"""fold_bn, QConv2d (frozen and batch-statistics BN), QLinear and QAdd."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fqn_det.nn.qconv import QAdd, QConv2d, QLinear, fold_bn
from fqn_det.quant import ActQuantizer, QScheme, WeightQuantizer


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _random_bn(c, seed, affine=True):
    g = _gen(seed)
    bn = nn.BatchNorm2d(c, affine=affine)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g))
        bn.running_var.copy_(torch.rand(c, generator=g) * 3 + 0.05)
        bn.num_batches_tracked.fill_(123)
        if affine:
            bn.weight.copy_(torch.randn(c, generator=g))
            bn.bias.copy_(torch.randn(c, generator=g))
    return bn


def _conv(cin, cout, bias, seed, **kw):
    torch.manual_seed(seed)
    return nn.Conv2d(cin, cout, 3, padding=1, bias=bias, **kw)


@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('affine', [True, False])
@pytest.mark.parametrize('seed', [0, 1])
def test_fold_bn_matches_conv_bn(bias, affine, seed):
    conv = _conv(5, 7, bias, seed)
    bn = _random_bn(7, seed + 100, affine).eval()
    x = torch.randn(3, 5, 9, 9, generator=_gen(seed + 200))
    with torch.no_grad():
        ref = nn.Sequential(conv, bn)(x)
        w, b = fold_bn(conv.weight, conv.bias, bn)
        out = F.conv2d(x, w, b, padding=1)
    assert w.shape == conv.weight.shape and b.shape == (7,)
    err = (out - ref).abs().max() / ref.abs().max()
    assert err <= 1e-5, float(err)


def test_fold_bn_linear_and_given_stats():
    torch.manual_seed(3)
    lin = nn.Linear(6, 4)
    bn = nn.BatchNorm1d(4).eval()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    x = torch.randn(10, 6, generator=_gen(4))
    mean = torch.randn(4, generator=_gen(5))
    var = torch.rand(4, generator=_gen(6)) + 0.1
    with torch.no_grad():
        w, b = fold_bn(lin.weight, lin.bias, bn, mean, var)
        ref = (lin(x) - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias
        out = F.linear(x, w, b)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def _linked(layer):
    """A layer used on its own: each call site fed by a (not yet calibrated) input quantizer."""
    for site in range(len(layer.out_quant)):
        layer.link_input(ActQuantizer(QScheme(8), name=f'in{site}'), site)
    return layer


def _qconv(freeze_bn=True, seed=0, cin=3, cout=8):
    conv = _conv(cin, cout, False, seed)
    bn = _random_bn(cout, seed + 1)
    return _linked(QConv2d(conv, bn, relu=True,
                           w_quant=WeightQuantizer(QScheme(4, per_channel=True), cout),
                           out_quant=[ActQuantizer(QScheme(4), name='t')], freeze_bn=freeze_bn))


def _bn_state(bn):
    return {k: v.detach().clone() for k, v in bn.state_dict().items()}


def test_qconv_frozen_bn_never_changes():
    qc = _qconv(freeze_bn=True)
    assert not qc.bn.training
    assert all(not p.requires_grad for p in qc.bn.parameters())
    qc.train()
    assert qc.training and not qc.bn.training
    before = _bn_state(qc.bn)
    w0 = qc.conv.weight.detach().clone()
    # optimizer over *all* parameters, with weight decay and momentum
    opt = torch.optim.SGD(qc.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-2)
    for i in range(5):
        x = torch.randn(4, 3, 12, 12, generator=_gen(10 + i))
        y = qc(x)
        if i == 0:
            assert int(qc.out_quant[0].initialized) == 1  # IAO init from the first batch
        loss = (y - 0.5).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        assert qc.conv.weight.grad is not None and qc.conv.weight.grad.abs().sum() > 0
        opt.step()
    after = _bn_state(qc.bn)
    assert set(after) == {'weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'}
    for k in after:
        assert torch.equal(after[k], before[k]), k
    assert not torch.equal(qc.conv.weight, w0)
    # the weights that actually enter the conv: <= 16 levels per output channel
    w_fold, _ = qc.folded_weight_bias()
    wq = qc.w_quant(w_fold)
    for c in range(wq.shape[0]):
        assert wq[c].unique().numel() <= 16
    lv = wq / qc.w_quant.scale.reshape(-1, 1, 1, 1) + qc.w_quant.zero_point.reshape(-1, 1, 1, 1)
    assert torch.allclose(lv, lv.round(), atol=1e-3)


def test_qconv_forward_matches_manual_composition():
    qc = _qconv(freeze_bn=True, seed=5)
    qc.train()
    x = torch.randn(2, 3, 10, 10, generator=_gen(20))
    qc(x)  # initialize the output range
    qc.eval()
    y = qc(x)
    w, b = fold_bn(qc.conv.weight, None, qc.bn)
    s = qc.w_quant.scheme
    wq = torch.fake_quantize_per_channel_affine(w, qc.w_quant.scale, qc.w_quant.zero_point, 0,
                                                s.quant_min, s.quant_max)
    ref = F.relu(F.conv2d(x, wq, b, padding=1))
    oq = qc.out_quant[0]
    ref = torch.fake_quantize_per_tensor_affine(ref, oq.scale.reshape(1), oq.zero_point.reshape(1),
                                                0, 15)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-6)
    assert float(y.min()) >= 0  # fused relu, asym grid


@pytest.mark.parametrize('momentum', [0.1, None])
def test_qconv_unfrozen_bn_updates_running_stats_like_bn(momentum):
    qc = _qconv(freeze_bn=False, seed=7)
    qc.bn.momentum = momentum  # None: cumulative moving average
    qc.train()
    assert qc.bn.training  # batch statistics in training
    before = _bn_state(qc.bn)
    ref_bn = copy.deepcopy(qc.bn).train()
    x = torch.randn(4, 3, 12, 12, generator=_gen(30))
    qc(x)
    qc(x * 2)
    after = _bn_state(qc.bn)
    assert not torch.equal(after['running_mean'], before['running_mean'])
    assert not torch.equal(after['running_var'], before['running_var'])
    assert int(after['num_batches_tracked']) == int(before['num_batches_tracked']) + 2
    with torch.no_grad():
        ref_bn(qc.conv(x))  # the reference update of a real BN in train mode
        ref_bn(qc.conv(x * 2))
    torch.testing.assert_close(after['running_mean'], ref_bn.running_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(after['running_var'], ref_bn.running_var, rtol=1e-5, atol=1e-6)
    # eval: running statistics, no update
    qc.eval()
    frozen = _bn_state(qc.bn)
    qc(x)
    for k, v in _bn_state(qc.bn).items():
        assert torch.equal(v, frozen[k]), k


def test_qconv_unfrozen_bn_folds_batch_statistics():
    """In training with freeze_bn=False the pre-quantization output is BN'd with batch stats."""
    qc = _qconv(freeze_bn=False, seed=8)
    qc.w_quant.fake_quant_enabled.fill_(0)
    qc.out_quant[0].fake_quant_enabled.fill_(0)
    qc.train()
    ref_bn = copy.deepcopy(qc.bn).train()
    x = torch.randn(4, 3, 12, 12, generator=_gen(31))
    y = qc(x)
    with torch.no_grad():
        ref = F.relu(ref_bn(qc.conv(x)))
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)


def test_qconv_train_keeps_frozen_bn_in_eval():
    qc = _qconv(freeze_bn=True)
    qc.bn.train()  # even if someone flips it
    ret = qc.train()
    assert ret is qc
    assert qc.training and qc.w_quant.training and qc.out_quant[0].training
    assert not qc.bn.training
    wrapper = nn.Sequential(qc)
    wrapper.train()
    assert not qc.bn.training
    wrapper.eval()
    wrapper.train(True)
    assert not qc.bn.training and qc.training


def test_qconv_rejects_non_zero_padding():
    conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode='reflect')
    with pytest.raises(TypeError, match='padding'):
        QConv2d(conv, None, False, WeightQuantizer(QScheme(4, per_channel=True), 4),
                [ActQuantizer(QScheme(4))])


def test_qconv_without_bn_and_sites():
    torch.manual_seed(9)
    conv = nn.Conv2d(3, 4, 1, bias=True)
    qc = QConv2d(conv, None, False, WeightQuantizer(QScheme(4, per_channel=True), 4),
                 [ActQuantizer(QScheme(8), ema_stat='minmax', name='s0'),
                  ActQuantizer(QScheme(8), ema_stat='minmax', name='s1')])
    _linked(qc).train()
    w, b = qc.folded_weight_bias()
    assert w is conv.weight and b is conv.bias
    x0 = torch.randn(2, 3, 4, 4, generator=_gen(40))
    x1 = torch.randn(2, 3, 4, 4, generator=_gen(41)) * 10
    qc(x0, site=0)
    qc(x1, site=1)
    assert float(qc.out_quant[1].max_val) > 3 * float(qc.out_quant[0].max_val)


def _on_grid(y, q, tol=1e-4):
    lv = y / q.scale + q.zero_point
    return bool(torch.all((lv - lv.round()).abs() <= tol)) and \
        bool(lv.round().min() >= q.scheme.quant_min) and bool(lv.round().max() <= q.scheme.quant_max)


@pytest.mark.parametrize('relu', [True, False])
def test_qlinear(relu):
    torch.manual_seed(11)
    lin = nn.Linear(6, 5)
    ql = QLinear(lin, relu, WeightQuantizer(QScheme(4, per_channel=True), 5),
                 [ActQuantizer(QScheme(4), name='fc')])
    _linked(ql).train()
    x = torch.randn(16, 6, generator=_gen(42))
    y = ql(x)
    assert y.shape == (16, 5)
    q = ql.out_quant[0]
    assert _on_grid(y, q)
    if relu:
        assert float(y.min()) >= 0
    # close to the float layer (4-bit: within a few output steps)
    ref = lin(x)
    if relu:
        ref = F.relu(ref)
    assert float((y - ref).abs().max()) < 0.3 * float(ref.abs().max())
    y.sum().backward()
    assert lin.weight.grad is not None and lin.bias.grad is not None
    for c in range(5):
        assert ql.w_quant(lin.weight)[c].unique().numel() <= 16


@pytest.mark.parametrize('relu', [True, False])
def test_qadd(relu):
    qa = QAdd(relu, [ActQuantizer(QScheme(4), ema_stat='minmax', name='add')])
    qa.train()
    a = torch.randn(2, 4, 5, 5, generator=_gen(43))
    b = torch.randn(2, 4, 5, 5, generator=_gen(44))
    y = qa(a, b)
    q = qa.out_quant[0]
    assert _on_grid(y, q)
    ref = F.relu(a + b) if relu else a + b
    # min/max range from this very batch: nothing is clipped, error <= half a step
    assert float((y - ref).abs().max()) <= 0.5 * float(q.scale) * (1 + 1e-5)
    if relu:
        assert float(y.min()) == 0.0
    qa.eval()
    y2 = qa(a, b)
    assert torch.equal(y, y2)


def _three_site_qconv(freeze_bn, seed=7):
    conv = _conv(4, 6, True, seed)
    return _linked(QConv2d(conv, _random_bn(6, seed + 1), relu=True,
                           w_quant=WeightQuantizer(QScheme(4, per_channel=True), 6),
                           out_quant=[ActQuantizer(QScheme(4), ema_stat='minmax', name=f's{i}') for i in range(3)],
                           freeze_bn=freeze_bn))


@pytest.mark.parametrize('freeze_bn', [True, False])
def test_shared_weight_quantization_same_outputs_and_gradients(freeze_bn):
    """Inside the block each conv quantizes its weight once for all call sites (frozen BN):
    outputs, weight gradients and quantizer state equal separate computations per site."""
    from fqn_det.nn import shared_weight_quantization
    xs = [torch.randn(2, 4, 8 >> i, 8 >> i, generator=_gen(40 + i)) for i in range(3)]
    runs = []
    for shared in (False, True):
        qc = _three_site_qconv(freeze_bn).train()
        calls = []
        qc.w_quant.register_forward_hook(lambda *a: calls.append(1))
        for step in range(2):  # second step: EMA ranges and bias quantization are active
            qc.zero_grad()
            if shared:
                with shared_weight_quantization(qc):
                    ys = [qc(x, site=i) for i, x in enumerate(xs)]
            else:
                ys = [qc(x, site=i) for i, x in enumerate(xs)]
            sum((y * (i + 1)).sum() for i, y in enumerate(ys)).backward()
        runs.append((ys, qc.conv.weight.grad.clone(), qc.state_dict(), len(calls)))
        assert qc._weight_cache is None  # the cache lives only inside the block
    (ys0, g0, sd0, n0), (ys1, g1, sd1, n1) = runs
    for a, b in zip(ys0, ys1):
        assert torch.equal(a, b)
    torch.testing.assert_close(g1, g0, rtol=1e-6, atol=1e-7)
    for k in sd0:
        assert torch.equal(sd0[k], sd1[k]), k
    assert n0 == 6
    assert n1 == (2 if freeze_bn else 6)  # batch-statistics folding depends on each input


def test_nested_shared_weight_blocks_keep_the_outer_cache():
    from fqn_det.nn import shared_weight_quantization
    qc = _three_site_qconv(True).train()
    with shared_weight_quantization(qc):
        outer = qc._weight_cache
        with shared_weight_quantization(qc):
            assert qc._weight_cache is outer
        assert qc._weight_cache is outer  # the inner block does not end the outer one
    assert qc._weight_cache is None


def test_unlinked_layer_is_an_error_not_a_float_bias():
    from fqn_det.nn import UnlinkedInputError
    conv = nn.Conv2d(3, 4, 1, bias=True)
    qc = QConv2d(conv, None, False, WeightQuantizer(QScheme(4, per_channel=True), 4),
                 [ActQuantizer(QScheme(8), name='lonely'), ActQuantizer(QScheme(8), name='lonely2')])
    x = torch.randn(1, 3, 2, 2)
    with pytest.raises(UnlinkedInputError, match="lonely: no input quantizer linked at call site 0"):
        qc(x)
    qc.link_input(ActQuantizer(QScheme(8), name='in'), 0)
    qc(x)
    with pytest.raises(UnlinkedInputError, match='call site 1'):
        qc(x, 1)
