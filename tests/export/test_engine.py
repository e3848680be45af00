"""Integer engine: float32 kernels where exact, float64 fallback reported, exactness checked."""
import numpy as np
import pytest
import torch

from fqn_det.export import engine as engine_mod
from fqn_det.export.engine import IntegerEngine, InexactAccumulatorError, kernel_dtype
from fqn_det.quant.integer_ops import FLOAT32_EXACT

from graphs import conv_graph, feeds


def _exact_reference(g, fe):
    """The accumulator in int64 (no float kernel at all), requantized like the engine."""
    eng = IntegerEngine(g, check=False)
    n = g.nodes[1]
    p = eng._prep[n.name]
    xi = fe['image'] - g.tensors['x_q'].zero_point
    xi = torch.nn.functional.pad(xi.long(), (1, 1, 1, 1))
    w = p['w_int']
    acc = torch.zeros(xi.shape[0], w.shape[0], xi.shape[2] - 2, xi.shape[3] - 2, dtype=torch.long)
    for dy in range(3):
        for dx in range(3):
            acc += torch.einsum('bchw,oc->bohw', xi[:, :, dy:dy + acc.shape[2], dx:dx + acc.shape[3]], w[:, :, dy, dx])
    return acc + p['bias'].reshape(1, -1, 1, 1)


def test_small_bounds_run_in_float32_and_are_exact():
    g = conv_graph()
    fe, _ = feeds(g, size=9)
    fe['image'] = torch.round(fe['image'] / 0.05 + 7).clamp(0, 15) * 0.05 - 7 * 0.05  # on the input grid
    eng = IntegerEngine(g)
    assert kernel_dtype(g.nodes[1]) == 'float32' and eng.float64_layers == []
    assert eng._prep['layer']['w'].dtype == torch.float32
    x = torch.round(fe['image'] / 0.05 + 7).clamp(0, 15).long()
    acc = eng._acc(g.nodes[1], x)
    ref = _exact_reference(g, {'image': x})
    assert torch.equal(acc, ref)


def test_a_layer_whose_bound_does_not_fit_float32_falls_back_to_float64_and_is_reported():
    g = conv_graph(w_bits=8, w_range=(70, 180), cin=3)
    n = g.nodes[1]
    n.params['bias'] = np.full_like(n.params['bias'], FLOAT32_EXACT)  # crafted: bias alone reaches 2^24
    n.attrs['acc_bound'] = int(n.attrs['acc_bound'] + FLOAT32_EXACT)
    assert kernel_dtype(n) == 'float64'
    eng = IntegerEngine(g)
    assert eng.float64_layers == ['layer'] and eng._prep['layer']['w'].dtype == torch.float64
    x = torch.randint(0, 16, (1, 3, 6, 6))
    assert torch.equal(eng._acc(n, x), _exact_reference(g, {'image': x}))
    from fqn_det.export.exporter import engine_report
    rep = engine_report({'features': g})
    assert rep == dict(engine_float64_layers=['features: layer'])


def test_a_kernel_that_is_not_exact_is_caught(monkeypatch):
    g = conv_graph()
    eng = IntegerEngine(g)
    real = torch.nn.functional.conv2d

    def off_by_one(*a, **k):
        y = real(*a, **k)
        return y + 1  # integers, but wrong: only the sampled int64 recomputation sees it

    monkeypatch.setattr(engine_mod.F, 'conv2d', off_by_one)
    x = torch.randint(0, 16, (2, 3, 10, 10))
    with pytest.raises(InexactAccumulatorError, match='layer: the float kernel differs'):
        eng._acc(g.nodes[1], x)


def test_linear_layers_check_too():
    g = conv_graph(linear=True)
    fe, _ = feeds(g)
    out = IntegerEngine(g).run(fe)
    assert out['_int']['out'].shape == (6, 12)
