"""The one description of a quantized block's dataflow, and the builder it is written against.

Every quantized block (ResNet, its blocks, FPN, the heads) has a method
``walk(b, *inputs)`` that states, once, which quantized layers its inputs go
through and how they combine, by calling the operations of a :class:`Builder`.
What a "tensor" is depends on the builder:

- :data:`RUN` (this file): real tensors; each operation calls the quantized
  layer. Every block's ``forward`` is ``self.walk(RUN, ...)``, so this *is*
  the fake-quantized forward pass.
- ``fqn_det.export.builder.GraphBuilder``: names of integer graph tensors;
  each operation appends an integer node.
- ``fqn_det.nn.link._LinkBuilder``: the quantizer that produced the tensor;
  convs and linears learn which quantizer feeds them (for bias rounding).
- ``fqn_det.dfq.ranges._StatsWalker``: per-channel Gaussian moments, for
  data-free activation ranges.
- ``fqn_det.dfq.pairs.PairFinder``: which layer produced the tensor, for
  DFQ's equalization pairs.

A new operation is added to :class:`Builder` and to each of these five.

Plain PyTorch.
"""
from __future__ import annotations

from typing import Any, Optional, Protocol, TypeVar

import torch.nn.functional as F
from torch import Tensor

from . import integer_eval

T = TypeVar('T')


class Builder(Protocol[T]):
    """The operations a block's ``walk`` may use; ``T`` is the builder's tensor.

    ``site`` selects the call site of a layer run at several places with the
    same weights (a head conv on each FPN level): its output quantizer
    ``m.out_quant[site]``.
    """

    def input(self, x: Any, q: Any) -> T:
        """The float network input ``x`` (a graph input name for graph builders) quantized by ``q``."""

    def int_input(self, name: str, q: Any) -> T:
        """An integer input produced outside this graph (RoI features), on ``q``'s grid."""

    def conv(self, m: Any, x: T, site: int = 0) -> T:
        """A :class:`~fqn_det.nn.QConv2d` (folded BN, fused ReLU, output quantizer)."""

    def linear(self, m: Any, x: T, site: int = 0) -> T:
        """A :class:`~fqn_det.nn.QLinear`."""

    def add(self, m: Any, a: T, b: T, site: int = 0) -> T:
        """A :class:`~fqn_det.nn.QAdd` of two quantized tensors."""

    def maxpool(self, m: Any, x: T, site: int = 0) -> T:
        """A :class:`~fqn_det.nn.QMaxPool2d`."""

    def avgpool(self, m: Any, x: T, site: int = 0) -> T:
        """A :class:`~fqn_det.nn.QAvgPool2d` (kernel = stride, no padding)."""

    def upsample(self, m: Any, x: T, like: T, site: int = 0) -> T:
        """A :class:`~fqn_det.nn.QUpsampleNearest` of ``x`` to the spatial size of ``like``."""

    def group_norm(self, m: Any, x: T, site: int = 0) -> T:
        """A :class:`~fqn_det.nn.QGroupNorm` (normalized with each sample's statistics, fused ReLU)."""

    def relu(self, x: T, name: str) -> T:
        """ReLU of a quantized tensor (stays on its grid: zero is a level)."""

    def flatten(self, x: T, name: str) -> T:
        """``x.flatten(1)``."""

    def output(self, x: T, name: str, group: Optional[str] = None, factor: Any = None) -> T:
        """A head output (dequantized for box decoding and NMS), listed under ``group``.

        ``factor``: a positive scalar (a tensor, e.g. FCOS's learned per-level ``Scale``) the
        dequantized value is multiplied by: it only changes the output's scale, not its levels.
        """

    def int_output(self, x: T, group: str) -> T:
        """An integer tensor leaving the graph (features RoIAlign reads)."""


def walk_sequential(b: Builder, blocks, x):
    """Walk ``blocks`` (each with a ``walk(b, x)``) one after the other, as ``nn.Sequential`` runs them."""
    for blk in blocks:
        x = blk.walk(b, x)
    return x


class FakeQuantRunner:
    """The :class:`Builder` that computes: each operation runs the quantized layer on tensors."""

    def input(self, x: Tensor, q) -> Tensor:
        if integer_eval.per_tensor(q) and integer_eval.applies(q, q):
            return integer_eval.input_quant(q, x)  # as the integer model quantizes it
        return q(x)

    def int_input(self, name, q):
        raise TypeError('the fake-quantized forward has no integer inputs: call the RoI extractor')

    def conv(self, m, x: Tensor, site: int = 0) -> Tensor:
        return m(x, site)

    linear = conv
    maxpool = conv
    avgpool = conv
    group_norm = conv

    def add(self, m, a: Tensor, b: Tensor, site: int = 0) -> Tensor:
        return m(a, b, site)

    def upsample(self, m, x: Tensor, like: Tensor, site: int = 0) -> Tensor:
        return m(x, like.shape[2:], site)

    def relu(self, x: Tensor, name: str) -> Tensor:
        return F.relu(x)

    def flatten(self, x: Tensor, name: str) -> Tensor:
        return x.flatten(1)

    def output(self, x: Tensor, name: str, group: Optional[str] = None, factor=None) -> Tensor:
        return x if factor is None else x * factor.to(x.dtype)

    def int_output(self, x: Tensor, group: str) -> Tensor:
        return x


#: The fake-quantized forward pass of every block is ``block.walk(RUN, ...)``.
RUN = FakeQuantRunner()
