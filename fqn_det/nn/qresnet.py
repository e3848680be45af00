"""Quantized counterparts of mmdet's ResNet / ResNeXt, BasicBlock and Bottleneck.

Each block's ``conv -> BN -> ReLU`` becomes one :class:`QConv2d`; the residual
add takes two quantized inputs (the last conv's and the identity/downsample
output) and quantizes its ReLU'd sum. mmdet blocks call one ``ReLU`` module
several times; here every call site owns its quantizer. ResNeXt differs only
in its grouped 3x3 convs (``groups``, ``base_width``), which :class:`QConv2d`
keeps, and in the ``caffe`` / ``pytorch`` styles and dilated stages (DC5),
which only change conv attributes. Each block's dataflow is its ``walk``
(see :mod:`fqn_det.nn.dataflow`).
"""
from __future__ import annotations

from typing import Optional

from mmdet.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from mmdet.models.backbones.resnext import Bottleneck as XBottleneck
from torch import Tensor, nn

from .builder import QBuilder, UnsupportedModuleError, clone_as
from .dataflow import RUN, Builder, walk_sequential
from .qconv import QAdd, QConv2d, QMaxPool2d


def _downsample(ds: Optional[nn.Module], qb: QBuilder, name: str) -> Optional[QConv2d]:
    if ds is None:
        return None
    mods = list(ds.children()) if isinstance(ds, nn.Sequential) else [ds]
    if len(mods) != 2 or type(mods[0]) is not nn.Conv2d:
        raise UnsupportedModuleError(name, ds, 'only conv+BN downsampling is supported '
                                     '(avg_down / other layouts are not)')
    return qb.conv(mods[0], mods[1], False, name)


class QBasicBlock(nn.Module):
    """``relu(conv2(conv1(x)) + identity)`` with quantized convs and add."""

    def __init__(self, conv1: QConv2d, conv2: QConv2d, downsample: Optional[QConv2d],
                 add: QAdd) -> None:
        super().__init__()
        self.conv1, self.conv2, self.downsample, self.add = conv1, conv2, downsample, add

    @classmethod
    def from_float(cls, block: nn.Module, qb: QBuilder, name: str) -> 'QBasicBlock':
        return cls(qb.conv(block.conv1, block.norm1, True, f'{name}.conv1'),
                   qb.conv(block.conv2, block.norm2, False, f'{name}.conv2'),
                   _downsample(block.downsample, qb, f'{name}.downsample'),
                   qb.add(True, f'{name}.add'))

    def walk(self, b: Builder, x):
        identity = x if self.downsample is None else b.conv(self.downsample, x)
        return b.add(self.add, b.conv(self.conv2, b.conv(self.conv1, x)), identity)

    def forward(self, x: Tensor) -> Tensor:
        return self.walk(RUN, x)


class QBottleneck(nn.Module):
    """``relu(conv3(conv2(conv1(x))) + identity)`` with quantized convs and add."""

    def __init__(self, conv1: QConv2d, conv2: QConv2d, conv3: QConv2d,
                 downsample: Optional[QConv2d], add: QAdd) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3 = conv1, conv2, conv3
        self.downsample, self.add = downsample, add

    @classmethod
    def from_float(cls, block: nn.Module, qb: QBuilder, name: str) -> 'QBottleneck':
        if block.with_plugins:
            raise UnsupportedModuleError(name, block, 'Bottleneck plugins are not supported')
        return cls(qb.conv(block.conv1, block.norm1, True, f'{name}.conv1'),
                   qb.conv(block.conv2, block.norm2, True, f'{name}.conv2'),
                   qb.conv(block.conv3, block.norm3, False, f'{name}.conv3'),
                   _downsample(block.downsample, qb, f'{name}.downsample'),
                   qb.add(True, f'{name}.add'))

    def walk(self, b: Builder, x):
        identity = x if self.downsample is None else b.conv(self.downsample, x)
        return b.add(self.add, b.conv(self.conv3, b.conv(self.conv2, b.conv(self.conv1, x))), identity)

    def forward(self, x: Tensor) -> Tensor:
        return self.walk(RUN, x)


#: ResNeXt's Bottleneck only builds a grouped, wider conv2: the same dataflow.
_BLOCKS = {BasicBlock: QBasicBlock, Bottleneck: QBottleneck, XBottleneck: QBottleneck}


def quantize_res_layer(layer: nn.Module, qb: QBuilder, name: str) -> nn.Sequential:
    """A ``ResLayer`` (a sequence of blocks) with every block quantized."""
    qblocks = []
    for i, block in enumerate(layer):
        path = f'{name}.{i}'
        if type(block) not in _BLOCKS:
            raise UnsupportedModuleError(path, block, 'not a BasicBlock/Bottleneck')
        qblocks.append(_BLOCKS[type(block)].from_float(block, qb, path))
    return nn.Sequential(*qblocks)


class QResNet(ResNet):
    """mmdet ResNet with the network input, stem, max-pool and blocks quantized."""

    @classmethod
    def from_float(cls, net: ResNet, qb: QBuilder, name: str) -> 'QResNet':
        if net.deep_stem:
            raise UnsupportedModuleError(name, net, 'deep_stem is not supported')
        q = clone_as(net, cls)
        del q._modules[net.norm1_name], q._modules['relu']
        q.input_quant = qb.act(f'{name}.input_quant')[0]
        q.conv1 = qb.conv(net.conv1, net.norm1, True, f'{name}.conv1')
        mp = net.maxpool
        q.maxpool = QMaxPool2d(mp.kernel_size, mp.stride, mp.padding, mp.dilation,
                               mp.ceil_mode, qb.act(f'{name}.maxpool'))
        for layer_name in net.res_layers:
            setattr(q, layer_name, quantize_res_layer(getattr(net, layer_name), qb, f'{name}.{layer_name}'))
        return q

    def walk(self, b: Builder, x) -> tuple:
        """``x``: the float image (a graph input name for graph builders)."""
        x = b.maxpool(self.maxpool, b.conv(self.conv1, b.input(x, self.input_quant)))
        outs = []
        for i, layer_name in enumerate(self.res_layers):
            x = walk_sequential(b, getattr(self, layer_name), x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def forward(self, x: Tensor) -> tuple:
        return self.walk(RUN, x)

    def train(self, mode: bool = True) -> 'QResNet':
        # Not ResNet.train: frozen stages keep the requires_grad they had,
        # and BN is frozen by QConv2d itself.
        return nn.Module.train(self, mode)
