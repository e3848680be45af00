"""DFQ on a :class:`QuantizedDetector`: which layer pairs, and applying the maths.

BN is folded for good first (weights and biases take the folded values, the BN
modules become identities, so checkpoint keys stay those of the config's model)
and each folded layer remembers its BN output statistics (``mean = beta``,
``std = |gamma|``), updated by every transform, for absorption and analytic
bias correction. The pairs come from the detector's dataflow
(:mod:`fqn_det.dfq.pairs`): a layer with a fused ReLU read only by
convs/linears (inside ResNet blocks, the stacked head convs/FCs); everything
else is listed as skipped with the reason. Head convs shared across FPN levels
stay shared (only weights change). Grouped convs (ResNeXt) are handled in their
dense, block-diagonal form (:mod:`fqn_det.dfq.grouped`), as are MobileNetV2's
depthwise 3x3 convs (pairs ``expand -> depthwise -> linear`` inside each inverted
residual, as in the paper). Scaling through a ReLU6 is not exact (it clips at 6),
so each producer of an equalized or absorbed pair has its ReLU6 replaced by a ReLU
(its activation-range ceiling removed), listed in the report.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn

from ..nn import QConv2d, QLinear
from .absorb import absorb, absorption_amount
from .bias_correction import corrected_bias
from .equalize import apply_scales, equalization_scales
from .grouped import dense, grouped
from .pairs import pairs_from_dataflow
from .stats import relu_moments

Layer = nn.Module  # QConv2d or QLinear


class DFQError(ValueError):
    """DFQ cannot be applied as asked."""


@dataclass
class Pair:
    name: str
    producer: Layer
    consumers: List[Layer]


@dataclass
class DFQReport:
    pairs: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    sweeps: int = 0
    absorbed: List[str] = field(default_factory=list)
    bias_corrected: List[str] = field(default_factory=list)
    relu6_replaced: List[str] = field(default_factory=list)


def get_wb(m: Layer) -> Tuple[Tensor, Tensor]:
    """Effective (BN-folded) weight and bias of a quantized layer."""
    if isinstance(m, QConv2d):
        w, b = m.folded_weight_bias()
    else:
        w, b = m.linear.weight, m.linear.bias
    w = w.detach().clone()
    b = w.new_zeros(w.shape[0]) if b is None else b.detach().clone()
    return w, b


def set_wb(m: Layer, w: Tensor, b: Tensor) -> None:
    """Write an effective weight and bias back (BN, if any, is an identity by then)."""
    mod = m.conv if isinstance(m, QConv2d) else m.linear
    with torch.no_grad():
        mod.weight.copy_(w)
        bn = getattr(m, 'bn', None)
        if bn is not None:
            bn.bias.copy_(b - (0 if mod.bias is None else mod.bias))
        elif mod.bias is not None:
            mod.bias.copy_(b)
        elif torch.any(b != 0):
            raise DFQError(f'{type(m).__name__} has neither a bias nor a BN to hold the new bias '
                           '(adding one would change the checkpoint keys)')


def fold_bn_permanently(model: nn.Module) -> int:
    """Fold every BN into its conv; BNs become identities. Returns how many were folded."""
    n = 0
    for m in model.modules():
        if isinstance(m, QConv2d) and m.bn is not None and not getattr(m, 'dfq_folded', False):
            bn = m.bn
            if not bn.affine:
                raise DFQError('DFQ needs affine BN layers')
            m.dfq_stats = (bn.bias.detach().clone(), bn.weight.detach().abs().clone())
            w, b = m.folded_weight_bias()
            w, b = w.detach().clone(), b.detach().clone()
            with torch.no_grad():
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0)
                bn.weight.fill_(math.sqrt(1.0 + bn.eps))  # weight / sqrt(var + eps) == 1
                if m.conv.bias is not None:
                    m.conv.bias.zero_()
            set_wb(m, w, b)
            m.dfq_folded = True
            n += 1
    return n


def get_dense_wb(m: Layer) -> Tuple[Tensor, Tensor]:
    """:func:`get_wb` with a grouped conv's weight in its dense (block-diagonal) form."""
    w, b = get_wb(m)
    return dense(m, w), b


def set_dense_wb(m: Layer, w: Tensor, b: Tensor) -> None:
    set_wb(m, grouped(m, w), b)


def find_pairs(det: nn.Module) -> Tuple[List[Pair], List[str]]:
    """Equalizable ``layer -> ReLU -> layer(s)`` pairs, and skipped places with reasons."""
    found, skipped = pairs_from_dataflow(det)
    return [Pair(n, p, c) for n, p, c in found], skipped


def replace_relu6(pairs: List[Pair]) -> List[str]:
    """Drop the ReLU6 range ceiling of every producer (ReLU6 -> ReLU); the names of those changed."""
    done = []
    for p in pairs:
        if any(q.ceiling is not None for q in p.producer.out_quant):
            for q in p.producer.out_quant:
                q.ceiling = None
            done.append(p.producer.out_quant[0].name)
    return done


def equalize(pairs: List[Pair], max_sweeps: int = 50, tol: float = 1e-4) -> int:
    """Sweep all pairs until every scale is within ``tol`` of 1; returns the sweeps used."""
    for sweep in range(1, max_sweeps + 1):
        worst = 0.0
        for p in pairs:
            w1, b1 = get_wb(p.producer)
            ws = [get_dense_wb(c)[0] for c in p.consumers]
            s = equalization_scales(w1, ws)
            w1, b1, ws = apply_scales(w1, b1, ws, s)
            set_wb(p.producer, w1, b1)
            for c, w in zip(p.consumers, ws):
                set_dense_wb(c, w, get_wb(c)[1])
            st = getattr(p.producer, 'dfq_stats', None)
            if st is not None:
                p.producer.dfq_stats = (st[0] / s, st[1] / s)
            worst = max(worst, float((s - 1).abs().max()))
        if worst < tol:
            return sweep
    return max_sweeps


def absorb_high_biases(pairs: List[Pair], n_sigma: float = 3.0) -> List[str]:
    """Move ``max(0, beta - 3 gamma)`` from each producer into its consumers' biases."""
    done = []
    for p in pairs:
        st = getattr(p.producer, 'dfq_stats', None)
        if st is None:
            continue
        c = absorption_amount(st[0], st[1], n_sigma)
        if not torch.any(c > 0):
            continue
        w1, b1 = get_wb(p.producer)
        b1, new_b = absorb(b1, [get_dense_wb(x) for x in p.consumers], c)
        set_wb(p.producer, w1, b1)
        for x, b in zip(p.consumers, new_b):
            set_wb(x, get_wb(x)[0], b)
        p.producer.dfq_stats = (st[0] - c, st[1])
        done.append(p.name)
    return done


def analytic_bias_correction(pairs: List[Pair]) -> List[str]:
    """Correct each consumer's bias with ``E[x]`` from its producer's BN statistics."""
    if not any(getattr(p.producer, 'dfq_stats', None) is not None for p in pairs):
        raise DFQError('analytic bias correction needs BN statistics, and this model has none '
                       '(use --bias-correction empirical)')
    done = []
    for p in pairs:
        st = getattr(p.producer, 'dfq_stats', None)
        if st is None:
            continue
        mean_x, _ = relu_moments(*st)
        for c in p.consumers:
            correct_layer_bias(c, mean_x)
            done.append(f'{p.name} ({type(c).__name__})')
    return done


def correct_layer_bias(layer: Layer, in_mean: Tensor) -> None:
    w, b = get_wb(layer)
    with torch.no_grad():
        w_q = layer.w_quant(w)
    set_wb(layer, w, corrected_bias(b, dense(layer, w), dense(layer, w_q), in_mean))


def input_means(model: nn.Module, run_batches) -> Dict[Layer, Tensor]:
    """Per-input-channel means of every quantized layer's input over ``run_batches()``."""
    sums: Dict[Layer, Tuple[Tensor, int]] = {}
    hooks = []

    def hook(mod, args):
        x = args[0].detach()
        dims = [0] + list(range(2, x.dim()))
        s, n = x.sum(dims).double(), x.numel() // x.shape[1]
        old = sums.get(mod, (0, 0))
        sums[mod] = (old[0] + s, old[1] + n)

    for m in model.modules():
        if isinstance(m, (QConv2d, QLinear)):
            hooks.append(m.register_forward_pre_hook(hook))
    try:
        run_batches()
    finally:
        for h in hooks:
            h.remove()
    return {m: (s / n).float() for m, (s, n) in sums.items()}


def empirical_bias_correction(model: nn.Module, run_batches, rounds: int = 2) -> List[str]:
    """Correct every quantized layer's bias with input means measured on data.

    ``E[x]`` is measured on the model with quantized weights (activations in
    float), i.e. the inputs each layer really sees; since every correction
    changes the inputs downstream, the measurement is repeated ``rounds`` times,
    each round correcting the bias of the *original* weights' error again from
    the latest means.
    """
    from ..quant.calibration import set_fake_quant
    names = {id(m): n for n, m in model.named_modules()}
    base = {m: get_wb(m)[1] for m in model.modules() if isinstance(m, (QConv2d, QLinear))}
    set_fake_quant(model, True, False)
    try:
        for _ in range(rounds):
            means = input_means(model, run_batches)
            for layer, mean in means.items():
                w, _ = get_wb(layer)
                with torch.no_grad():
                    w_q = layer.w_quant(w)
                set_wb(layer, w, corrected_bias(base[layer], dense(layer, w), dense(layer, w_q), mean))
    finally:
        set_fake_quant(model, True, True)
    return sorted(names[id(m)] for m in means)


def apply_dfq(det: nn.Module, equalization: bool = True, absorption: bool = True) -> DFQReport:
    """BN folding, then cross-layer equalization and high-bias absorption, in place."""
    rep = DFQReport()
    fold_bn_permanently(det)
    pairs, rep.skipped = find_pairs(det)
    rep.pairs = [p.name for p in pairs]
    if equalization or absorption:
        rep.relu6_replaced = replace_relu6(pairs)
    if equalization:
        rep.sweeps = equalize(pairs)
    if absorption:
        rep.absorbed = absorb_high_biases(pairs)
    return rep
