"""Walk of the quantized MobileNetV2 (mirrors ``QMobileNetV2.forward``; tests check they agree).

The same walk serves every builder of :mod:`fqn_det.export.detectors`: integer
graphs, input-quantizer linking and DFQ's data-free ranges.
"""
from __future__ import annotations

from typing import List

from ..nn.qmobilenet import QMobileNetV2


def export_mobilenet(b, net: QMobileNetV2) -> List[str]:
    x = b.conv(net.conv1, b.input('image', net.input_quant))
    outs = []
    for i, layer_name in enumerate(net.layers):
        if layer_name == 'conv2':
            x = b.conv(net.conv2, x)
        else:
            for blk in getattr(net, layer_name):
                y = x if blk.expand_conv is None else b.conv(blk.expand_conv, x)
                y = b.conv(blk.linear_conv, b.conv(blk.depthwise_conv, y))
                x = y if blk.add is None else b.add(blk.add, x, y)
        if i in net.out_indices:
            outs.append(x)
    return outs
