"""Input-quantizer linking: each quantized layer learns which quantizer feeds it.

Integer-exact evaluation (:mod:`fqn_det.nn.integer_eval`) reads every layer's
input levels on that quantizer's grid. Biases are rounded to the int32 grid ``s_in * s_w`` of integer inference
(:func:`fqn_det.nn.qconv.quantize_bias`), so the fake-quantized model computes
what the integer model computes; ``s_in`` is the scale of the quantizer that
produced the layer's input at each call site, found by walking the detector's
dataflow with :class:`_LinkBuilder`.
"""
from __future__ import annotations

from typing import List

from torch import nn

from .qconv import QConv2d, QLinear, UnlinkedInputError
from .qdetector import walk_detector


class _LinkBuilder:
    """A :class:`~fqn_det.nn.dataflow.Builder` whose "tensor" is the quantizer that produced it."""

    def input(self, x, q):
        return q

    def int_input(self, name, q):
        return q

    def conv(self, m, x, site=0):
        m.link_input(x, site)
        return m.out_quant[site]

    linear = conv

    def add(self, m, a, b, site=0):
        m.link_input((a, b), site)
        return m.out_quant[site]

    def maxpool(self, m, x, site=0):
        m.link_input(x, site)
        return m.out_quant[site]

    avgpool = maxpool
    group_norm = maxpool

    def upsample(self, m, x, like, site=0):
        m.link_input(x, site)
        return m.out_quant[site]

    def relu(self, x, name):
        return x

    flatten = relu

    def output(self, x, name, group=None, factor=None):
        return x

    def int_output(self, x, group):
        return x


def link_input_quantizers(det: nn.Module) -> None:
    """Link every quantized conv/linear of ``det`` to the quantizer feeding each of its call sites.

    Raises:
        UnlinkedInputError: A conv/linear (or one of its call sites) is not reached by the
            detector's dataflow, so its bias could not be rounded as integer inference does.
    """
    b = _LinkBuilder()
    walk_detector(det, b, b)
    unlinked: List[str] = []
    for name, m in det.named_modules():
        if isinstance(m, (QConv2d, QLinear)):
            if len(m.in_quants) < len(m.out_quant) or any(q is None for q in m.in_quants):
                unlinked.append(name)
    if unlinked:
        raise UnlinkedInputError(f'quantized layers not reached by the dataflow walk (no input quantizer): '
                                 f'{unlinked[:6]}')
