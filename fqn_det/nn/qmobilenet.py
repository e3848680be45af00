"""Quantized counterparts of mmdet's MobileNetV2 and its InvertedResidual blocks.

Each ``ConvModule`` (conv -> frozen BN -> ReLU6 / none) becomes one
:class:`QConv2d` with BN folded; the depthwise 3x3 is a grouped conv
(``groups = channels``). ReLU6 is a ReLU followed by an output quantizer
whose range never exceeds 6 (``ActQuantizer.ceiling``), so the integer clamp
at the top of the range is the ReLU6. A block with a shortcut adds its input
to the projection's output in a :class:`QAdd` (no activation after the add).
Each block's dataflow is its ``walk`` (:mod:`fqn_det.nn.dataflow`): the
fake-quantized forward, the integer graph, input linking, DFQ's pairs
(``expand -> depthwise -> linear``) and data-free ranges all come from it.
"""
from __future__ import annotations

from typing import Optional

from mmdet.models.backbones import MobileNetV2
from mmdet.models.layers import InvertedResidual
from torch import Tensor, nn

from .builder import QBuilder, UnsupportedModuleError, clone_as
from .dataflow import RUN, Builder, walk_sequential
from .qconv import QAdd, QConv2d


class QInvertedResidual(nn.Module):
    """``[x +] linear(depthwise(expand(x)))`` with quantized convs and add."""

    def __init__(self, expand: Optional[QConv2d], depthwise: QConv2d, linear: QConv2d,
                 add: Optional[QAdd]) -> None:
        super().__init__()
        self.expand_conv, self.depthwise_conv, self.linear_conv, self.add = expand, depthwise, linear, add

    @classmethod
    def from_float(cls, block: InvertedResidual, qb: QBuilder, name: str) -> 'QInvertedResidual':
        if block.with_se:
            raise UnsupportedModuleError(name, block, 'squeeze-excitation layers are not supported')
        if not isinstance(block.drop_path, nn.Identity):
            raise UnsupportedModuleError(name, block, 'drop_path_rate > 0 is not supported')
        dw = block.depthwise_conv.conv
        if dw.groups != dw.in_channels or dw.out_channels != dw.in_channels:
            raise UnsupportedModuleError(f'{name}.depthwise_conv', block.depthwise_conv,
                                         'the depthwise conv must have groups == in == out channels')
        expand = qb.conv_module(block.expand_conv, f'{name}.expand_conv') if block.with_expand_conv else None
        return cls(expand, qb.conv_module(block.depthwise_conv, f'{name}.depthwise_conv'),
                   qb.conv_module(block.linear_conv, f'{name}.linear_conv'),
                   qb.add(False, f'{name}.add') if block.with_res_shortcut else None)

    def walk(self, b: Builder, x):
        out = x if self.expand_conv is None else b.conv(self.expand_conv, x)
        out = b.conv(self.linear_conv, b.conv(self.depthwise_conv, out))
        return out if self.add is None else b.add(self.add, x, out)

    def forward(self, x: Tensor) -> Tensor:
        return self.walk(RUN, x)


class QMobileNetV2(MobileNetV2):
    """mmdet MobileNetV2 with the network input, stem, blocks and last 1x1 conv quantized."""

    @classmethod
    def from_float(cls, net: MobileNetV2, qb: QBuilder, name: str) -> 'QMobileNetV2':
        q = clone_as(net, cls)
        q.input_quant = qb.act(f'{name}.input_quant')[0]
        q.conv1 = qb.conv_module(net.conv1, f'{name}.conv1')
        for layer_name in net.layers:
            layer = getattr(net, layer_name)
            if layer_name == 'conv2':
                q.conv2 = qb.conv_module(layer, f'{name}.conv2')
                continue
            blocks = []
            for i, block in enumerate(layer):
                path = f'{name}.{layer_name}.{i}'
                if type(block) is not InvertedResidual:
                    raise UnsupportedModuleError(path, block, 'not an InvertedResidual')
                blocks.append(QInvertedResidual.from_float(block, qb, path))
            setattr(q, layer_name, nn.Sequential(*blocks))
        return q

    def walk(self, b: Builder, x) -> tuple:
        """``x``: the float image (a graph input name for graph builders)."""
        x = b.conv(self.conv1, b.input(x, self.input_quant))
        outs = []
        for i, layer_name in enumerate(self.layers):
            if layer_name == 'conv2':
                x = b.conv(self.conv2, x)
            else:
                x = walk_sequential(b, getattr(self, layer_name), x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def forward(self, x: Tensor) -> tuple:
        return self.walk(RUN, x)

    def train(self, mode: bool = True) -> 'QMobileNetV2':
        # Not MobileNetV2.train: frozen stages keep the requires_grad they had,
        # and BN is frozen by QConv2d itself.
        return nn.Module.train(self, mode)
