"""Quantized conv (with folded BN and fused ReLU) and linear layers.

FQN (Li et al., CVPR 2019, sec. 3.2) fine-tunes with *frozen* BN: the
pretrained statistics and affine parameters never change and are folded into
the conv before weight quantization,

    w_fold = w * gamma / sigma        (per output channel, sigma = sqrt(var + eps))
    b_fold = beta + (b - mu) * gamma / sigma

so the fake-quantized weights are the integers integer inference will use.
With ``freeze_bn=False`` the layer folds the *batch* statistics during
training instead (Jacob et al., CVPR 2018, appendix C), the IAO baseline.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..quant import ActQuantizer, WeightQuantizer
from ..quant.functional import bias_levels
from . import integer_eval


def _bn_scale(bn: _BatchNorm, var: Tensor) -> Tensor:
    inv_std = torch.rsqrt(var + bn.eps)
    return bn.weight * inv_std if bn.affine else inv_std


def fold_bn(weight: Tensor, bias: Optional[Tensor], bn: _BatchNorm,
            mean: Optional[Tensor] = None, var: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Fold BN (running or given statistics) into a conv/linear ``weight, bias``."""
    mean = bn.running_mean if mean is None else mean
    var = bn.running_var if var is None else var
    g = _bn_scale(bn, var)
    b = bias if bias is not None else torch.zeros_like(mean)
    b = (b - mean) * g
    if bn.affine:
        b = b + bn.bias
    return weight * g.reshape(-1, *([1] * (weight.dim() - 1))), b


class UnlinkedInputError(RuntimeError):
    """A quantized conv/linear ran at a call site whose input quantizer was never linked."""


def quantize_bias(b: Optional[Tensor], in_quants: list, site: int, w_quant: WeightQuantizer,
                  owner: Optional[nn.Module] = None, dtype: Optional[torch.dtype] = None
                  ) -> Optional[Tensor]:
    """Round ``b`` to the int32 grid ``s_in * s_w`` integer inference uses (STE gradient).

    ``in_quants[site]`` is the quantizer that produced this layer's input at that
    call site (set by :func:`fqn_det.nn.link.link_input_quantizers`, or
    :meth:`QConv2d.link_input` for a layer used on its own). Before calibration
    (no range yet), while calibrating, or with fake quantization off, the bias
    stays float, as every other quantity does then. The levels come from
    :func:`fqn_det.quant.functional.bias_levels` (as in the export); the result
    is in ``dtype`` (the layer input's; default ``b``'s).

    Raises:
        UnlinkedInputError: no input quantizer is linked at ``site``.
    """
    q_in = in_quants[site] if site < len(in_quants) else None
    if q_in is None:
        name = owner.out_quant[site].name if owner is not None else 'quantized layer'
        raise UnlinkedInputError(
            f'{name}: no input quantizer linked at call site {site}; layers of a converted '
            'model are linked by quantize_detector, a layer used on its own needs link_input(quantizer, site)')
    if b is None or not bool(q_in.initialized) or not bool(w_quant.fake_quant_enabled) \
            or not bool(q_in.fake_quant_enabled) or q_in.calibrating:
        return b if b is None or dtype is None else b.to(dtype)
    b = b if dtype is None else b.to(dtype)
    step = q_in.scale.double() * w_quant.scale.double()
    return b + (bias_levels(b, q_in.scale, w_quant.scale).mul_(step).to(b.dtype) - b).detach()


def _link(in_quants: list, q: ActQuantizer, site: int) -> None:
    while len(in_quants) <= site:
        in_quants.append(None)
    in_quants[site] = q


class QConv2d(nn.Module):
    """``quant(relu(conv(x, fq(w_fold)) + b_fold))`` with one output range per call site.

    Args:
        conv (nn.Conv2d): The float conv (its parameters are reused, not copied).
        bn (_BatchNorm, optional): BN to fold.
        relu (bool): Fuse a ReLU before the output quantizer.
        w_quant (WeightQuantizer): Weight fake quantizer.
        out_quant (list[ActQuantizer]): One output quantizer per call site
            (e.g. per FPN level for head convs shared across levels).
        freeze_bn (bool): Frozen BN (FQN) or batch-statistics folding (IAO).
    """

    def __init__(self, conv: nn.Conv2d, bn: Optional[_BatchNorm], relu: bool,
                 w_quant: WeightQuantizer, out_quant: List[ActQuantizer],
                 freeze_bn: bool = True) -> None:
        super().__init__()
        if conv.padding_mode != 'zeros':
            raise TypeError(f'only zero padding is supported, got padding_mode={conv.padding_mode!r}')
        self.conv = conv
        self.bn = bn
        self.relu = relu
        self.freeze_bn = freeze_bn
        self.w_quant = w_quant
        self.out_quant = nn.ModuleList(out_quant)
        self.in_quants: list = []  # producer quantizer per call site (not submodules)
        self._weight_cache: Optional[list] = None  # see shared_weight_quantization
        if bn is not None and freeze_bn:
            bn.eval()
            for p in bn.parameters():
                p.requires_grad_(False)

    def link_input(self, q: ActQuantizer, site: int = 0) -> None:
        """Record ``q`` as the quantizer of this layer's input at call site ``site``."""
        _link(self.in_quants, q, site)

    def train(self, mode: bool = True) -> 'QConv2d':
        super().train(mode)
        if self.bn is not None and self.freeze_bn:
            self.bn.eval()  # frozen BN: statistics never update
        return self

    def folded_weight_bias(self) -> Tuple[Tensor, Optional[Tensor]]:
        """Weight and bias with BN folded in, before weight quantization."""
        if self.bn is None:
            return self.conv.weight, self.conv.bias
        return fold_bn(self.conv.weight, self.conv.bias, self.bn)

    @torch.no_grad()
    def refresh_weight_qparams(self) -> None:
        """Recompute the weight quantizer's scale/zero-point from the current weights."""
        self.w_quant(self.folded_weight_bias()[0])

    def _conv(self, x: Tensor, w: Tensor, b: Optional[Tensor]) -> Tensor:
        c = self.conv
        w = w.to(x.dtype)  # float64 activations at inference (EVAL_DTYPE)
        return F.conv2d(x, w, None if b is None else b.to(x.dtype), c.stride, c.padding, c.dilation, c.groups)

    def _batch_stat_weight_bias(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        # IAO: batch statistics of the float conv output, folded, running stats updated.
        bn = self.bn
        y = self._conv(x, self.conv.weight, self.conv.bias)
        mean = y.mean((0, 2, 3))
        var = y.var((0, 2, 3), unbiased=False)
        with torch.no_grad():
            n = y.numel() / y.shape[1]
            bn.num_batches_tracked += 1
            # momentum=None: cumulative average, as nn.BatchNorm does.
            m = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            bn.running_mean.lerp_(mean.detach(), m)
            bn.running_var.lerp_(var.detach() * n / max(n - 1, 1), m)
        return fold_bn(self.conv.weight, self.conv.bias, bn, mean, var)

    def _quantized_weight_bias(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        if self.bn is not None and not self.freeze_bn and self.training:
            w, b = self._batch_stat_weight_bias(x)  # depends on x: never shared
            return self.w_quant(w), b
        cache = self._weight_cache
        if cache:
            return cache[0], cache[1]
        w, b = self.folded_weight_bias()
        wq = self.w_quant(w)
        if cache is not None:
            cache[:] = (wq, b)
        return wq, b

    def _integer_exact(self, site: int) -> bool:
        q_in = self.in_quants[site] if site < len(self.in_quants) else None
        return integer_eval.per_tensor(q_in) and integer_eval.applies(self, q_in, self.out_quant[site],
                                                                      w_quant=self.w_quant)

    def forward(self, x: Tensor, site: int = 0) -> Tensor:
        if self._integer_exact(site):
            w, b = self.folded_weight_bias()
            c = self.conv
            return integer_eval.weighted(self, x, site, w, b, dict(
                stride=c.stride, padding=c.padding, dilation=c.dilation, groups=c.groups))
        wq, b = self._quantized_weight_bias(x)
        y = self._conv(x, wq, quantize_bias(b, self.in_quants, site, self.w_quant, self, x.dtype))
        if self.relu:
            y = F.relu(y)
        return self.out_quant[site](y)

    def extra_repr(self) -> str:
        return f'bn={"frozen" if self.freeze_bn else "batch"}' * (self.bn is not None) + \
            f'{", " if self.bn is not None else ""}relu={self.relu}, sites={len(self.out_quant)}'


@contextmanager
def shared_weight_quantization(module: nn.Module) -> Iterator[None]:
    """Fold and fake-quantize each conv's weight once for all call sites inside the block.

    Head convs run on every FPN level with the same weights; without this, each
    level would fold BN and quantize the weight again (the same result, five
    times the work, forward and backward). Autograd sums the gradients of all
    levels into the one shared weight, exactly as with separate computations.
    Not shared: IAO's batch-statistics folding, which depends on each input.
    """
    convs = [m for m in module.modules() if isinstance(m, QConv2d)]
    before = [m._weight_cache for m in convs]  # an enclosing block keeps its own cache
    for m in convs:
        if m._weight_cache is None:
            m._weight_cache = []
    try:
        yield
    finally:
        for m, c in zip(convs, before):
            m._weight_cache = c


class QLinear(nn.Module):
    """``quant(relu(linear(x, fq(w)) + b))`` with per-site output quantizers."""

    def __init__(self, linear: nn.Linear, relu: bool, w_quant: WeightQuantizer,
                 out_quant: List[ActQuantizer]) -> None:
        super().__init__()
        self.linear = linear
        self.relu = relu
        self.w_quant = w_quant
        self.out_quant = nn.ModuleList(out_quant)
        self.in_quants: list = []

    def link_input(self, q: ActQuantizer, site: int = 0) -> None:
        """Record ``q`` as the quantizer of this layer's input at call site ``site``."""
        _link(self.in_quants, q, site)

    @torch.no_grad()
    def refresh_weight_qparams(self) -> None:
        """Recompute the weight quantizer's scale/zero-point from the current weights."""
        self.w_quant(self.linear.weight)

    _integer_exact = QConv2d._integer_exact

    def forward(self, x: Tensor, site: int = 0) -> Tensor:
        if self._integer_exact(site):
            return integer_eval.weighted(self, x, site, self.linear.weight, self.linear.bias)
        wq = self.w_quant(self.linear.weight)
        y = F.linear(x, wq.to(x.dtype), quantize_bias(self.linear.bias, self.in_quants, site, self.w_quant, self,
                                                      x.dtype))
        if self.relu:
            y = F.relu(y)
        return self.out_quant[site](y)


class QAdd(nn.Module):
    """Element-wise add of two quantized tensors, optional fused ReLU, quantized output.

    Integer inference rescales both inputs to the output scale (an integer add
    with fixed-point multipliers); here both inputs are already fake-quantized.
    """

    def __init__(self, relu: bool, out_quant: List[ActQuantizer]) -> None:
        super().__init__()
        self.relu = relu
        self.out_quant = nn.ModuleList(out_quant)
        self.in_quants: list = []  # (quantizer of a, quantizer of b) per call site

    def link_input(self, qs: tuple, site: int = 0) -> None:
        """Record the quantizers ``(q_a, q_b)`` of the two inputs at call site ``site``."""
        _link(self.in_quants, tuple(qs), site)

    def forward(self, a: Tensor, b: Tensor, site: int = 0) -> Tensor:
        qs = self.in_quants[site] if site < len(self.in_quants) else None
        if qs is not None and all(integer_eval.per_tensor(q) for q in qs) \
                and integer_eval.applies(self, *qs, self.out_quant[site]):
            return integer_eval.add(self, a, b, site)
        y = a + b
        if self.relu:
            y = F.relu(y)
        return self.out_quant[site](y)


class _QuantizedOp(nn.Module):
    """An integer op without weights (pooling, upsampling, GroupNorm): one output quantizer per call site."""

    w_quant = None

    def __init__(self, out_quant: List[ActQuantizer]) -> None:
        super().__init__()
        self.out_quant = nn.ModuleList(out_quant)
        self.in_quants: list = []

    link_input = QConv2d.link_input
    _integer_exact = QConv2d._integer_exact


class QMaxPool2d(_QuantizedOp):
    """Max-pool (on quantized values, so exact on integers) followed by a quantizer."""

    def __init__(self, kernel_size, stride, padding, dilation: int = 1, ceil_mode: bool = False,
                 out_quant: List[ActQuantizer] = ()) -> None:
        super().__init__(out_quant)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode

    def _pool(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

    def forward(self, x: Tensor, site: int = 0) -> Tensor:
        if self._integer_exact(site):
            return integer_eval.moved(self, x, site, self._pool)
        return self.out_quant[site](self._pool(x))


class QAvgPool2d(_QuantizedOp):
    """Average pooling (kernel = stride, no padding) followed by a quantizer.

    Integer inference computes it as a depthwise conv with all-ones weights
    (sum of ``k*k`` integer levels, requantized by ``s_in / (k*k * s_out)``).

    Args:
        kernel_size (int | tuple): Pooling window (and stride).
        channels (int): Number of channels (the depthwise conv's groups).
        out_quant (list[ActQuantizer]): One output quantizer per call site.
    """

    def __init__(self, kernel_size, channels: int, out_quant: List[ActQuantizer]) -> None:
        super().__init__(out_quant)
        self.kernel_size = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) \
            else (kernel_size, kernel_size)
        self.channels = channels

    def forward(self, x: Tensor, site: int = 0) -> Tensor:
        if x.numel() == 0:  # no RoIs: avg_pool2d refuses empty inputs
            return self.out_quant[site](x.new_zeros(x.shape[0], x.shape[1], 1, 1))
        if self._integer_exact(site):
            return integer_eval.avgpool(self, x, site)
        return self.out_quant[site](F.avg_pool2d(x, self.kernel_size, self.kernel_size))


class QUpsampleNearest(_QuantizedOp):
    """Nearest upsampling (integer-exact) followed by a quantizer."""

    def forward(self, x: Tensor, size, site: int = 0) -> Tensor:
        if self._integer_exact(site):
            return integer_eval.moved(self, x, site, lambda v: F.interpolate(v, size=size, mode='nearest'))
        return self.out_quant[site](F.interpolate(x, size=size, mode='nearest'))


class QGroupNorm(_QuantizedOp):
    """GroupNorm of a quantized tensor, optional fused ReLU, quantized output.

    GroupNorm normalizes with each sample's own statistics, so unlike BN it
    cannot be folded into the conv before it: that conv's output is quantized,
    and integer inference computes the normalization from its levels
    (:func:`fqn_det.quant.integer_ops.group_norm`: integer sums, an exact integer
    square root and a rounding division). ``gamma`` and ``beta`` keep training.

    Args:
        gn (nn.GroupNorm): The float layer (its parameters are reused).
        relu (bool): Fuse a ReLU before the output quantizer.
        out_quant (list[ActQuantizer]): One output quantizer per call site.
    """

    def __init__(self, gn: nn.GroupNorm, relu: bool, out_quant: List[ActQuantizer]) -> None:
        super().__init__(out_quant)
        self.gn = gn
        self.relu = relu

    def forward(self, x: Tensor, site: int = 0) -> Tensor:
        if self._integer_exact(site):
            return integer_eval.group_norm(self, x, site)
        g = self.gn
        y = F.group_norm(x, g.num_groups, None if g.weight is None else g.weight.to(x.dtype),
                         None if g.bias is None else g.bias.to(x.dtype), g.eps)
        if self.relu:
            y = F.relu(y)
        return self.out_quant[site](y)

    def extra_repr(self) -> str:
        return f'relu={self.relu}, sites={len(self.out_quant)}'


def refresh_weight_qparams(model: nn.Module) -> int:
    """Bring every weight quantizer's buffers up to date with the weights.

    Weight scales are computed in the forward pass, so after an optimizer step
    they describe the previous weights until the next forward. Call this before
    saving, so a checkpoint's quantizer buffers match its weights. Returns the
    number of layers refreshed.
    """
    n = 0
    for m in model.modules():
        if isinstance(m, (QConv2d, QLinear)):
            m.refresh_weight_qparams()
            n += 1
    return n
