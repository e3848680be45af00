"""Quantized counterparts of mmdet's SSDNeck and SSDHead (SSDLite: ``use_depthwise=True``).

SSDLite's neck adds stride-2 levels, each a 1x1 ``ConvModule`` then a
depthwise-separable 3x3 (depthwise ``ConvModule`` + pointwise ``ConvModule``);
its head has, per level (no weights shared across levels), a depthwise 3x3
``ConvModule`` then a 1x1 output conv, for classes and boxes. Every conv is a
:class:`QConv2d` (BN folded, ReLU6 as a range ceiling, depthwise as a grouped
conv); the head outputs are quantized like RetinaNet's (FQN sec. 3.4). SSD's
L2 normalization of the first level (VGG SSD) has no integer form here.
"""
from __future__ import annotations

from typing import List, Tuple

from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmdet.models.dense_heads import SSDHead
from mmdet.models.necks import SSDNeck
from torch import Tensor, nn

from .builder import QBuilder, UnsupportedModuleError, clone_as
from .dataflow import RUN, Builder, walk_sequential


class QDepthwiseSeparable(nn.Module):
    """``pointwise(depthwise(x))``: mmcv's ``DepthwiseSeparableConvModule`` with both convs quantized."""

    def __init__(self, depthwise_conv: nn.Module, pointwise_conv: nn.Module) -> None:
        super().__init__()
        self.depthwise_conv, self.pointwise_conv = depthwise_conv, pointwise_conv

    @classmethod
    def from_float(cls, m: DepthwiseSeparableConvModule, qb: QBuilder, name: str) -> 'QDepthwiseSeparable':
        return cls(qb.conv_module(m.depthwise_conv, f'{name}.depthwise_conv'),
                   qb.conv_module(m.pointwise_conv, f'{name}.pointwise_conv'))

    def walk(self, b: Builder, x):
        return b.conv(self.pointwise_conv, b.conv(self.depthwise_conv, x))

    def forward(self, x: Tensor) -> Tensor:
        return self.walk(RUN, x)


class _Conv(nn.Module):
    """One quantized ``ConvModule`` as a walkable block."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv

    def walk(self, b: Builder, x):
        return b.conv(self.conv, x)

    def forward(self, x: Tensor) -> Tensor:
        return self.walk(RUN, x)


def _quantize_stack(layers, qb: QBuilder, name: str) -> nn.Sequential:
    out = []
    for i, m in enumerate(layers):
        path = f'{name}.{i}'
        if type(m) is DepthwiseSeparableConvModule:
            out.append(QDepthwiseSeparable.from_float(m, qb, path))
        elif isinstance(m, ConvModule):
            out.append(_Conv(qb.conv_module(m, path)))
        else:
            raise UnsupportedModuleError(path, m, 'expected a ConvModule or DepthwiseSeparableConvModule')
    return nn.Sequential(*out)


class QSSDNeck(SSDNeck):
    """SSDNeck: the backbone levels pass through; each extra level is a quantized conv stack."""

    @classmethod
    def from_float(cls, neck: SSDNeck, qb: QBuilder, name: str) -> 'QSSDNeck':
        if hasattr(neck, 'l2_norm'):
            raise UnsupportedModuleError(f'{name}.l2_norm', neck.l2_norm,
                                         'L2 normalization is not supported (l2_norm_scale=None, as SSDLite)')
        q = clone_as(neck, cls)
        q.extra_layers = nn.ModuleList(_quantize_stack(layer, qb, f'{name}.extra_layers.{i}')
                                       for i, layer in enumerate(neck.extra_layers))
        return q

    def walk(self, b: Builder, inputs) -> tuple:
        outs = list(inputs)
        feat = outs[-1]
        for layer in self.extra_layers:
            feat = walk_sequential(b, layer, feat)
            outs.append(feat)
        return tuple(outs)

    def forward(self, inputs) -> tuple:
        return self.walk(RUN, inputs)


class QSSDHead(SSDHead):
    """SSDHead: per level, a quantized conv stack then the quantized 1x1 (or 3x3) output convs."""

    @classmethod
    def from_float(cls, head: SSDHead, qb: QBuilder, name: str) -> 'QSSDHead':
        q = clone_as(head, cls)
        for branch in ('cls_convs', 'reg_convs'):
            levels = []
            for lvl, seq in enumerate(getattr(head, branch)):
                path = f'{name}.{branch}.{lvl}'
                *stack, last = list(seq)
                if type(last) is not nn.Conv2d:
                    raise UnsupportedModuleError(f'{path}.{len(stack)}', last, 'the output layer must be an nn.Conv2d')
                levels.append(nn.ModuleDict(dict(
                    stack=_quantize_stack(stack, qb, path),
                    out=qb.conv(last, None, False, f'{path}.{len(stack)}', output=True))))
            setattr(q, branch, nn.ModuleList(levels))
        return q

    def walk(self, b: Builder, feats) -> Tuple[List, List]:
        if len(feats) != len(self.cls_convs):
            raise ValueError(f'{type(self).__name__} has {len(self.cls_convs)} levels but got {len(feats)} '
                             'feature maps')
        cls_scores, bbox_preds = [], []
        for lvl, x in enumerate(feats):
            for branch, out, name in (('cls_convs', cls_scores, 'cls_score'), ('reg_convs', bbox_preds, 'bbox_pred')):
                level = getattr(self, branch)[lvl]
                y = b.conv(level['out'], walk_sequential(b, level['stack'], x))
                out.append(b.output(y, f'{name}.{lvl}', f'{name}s'))
        return cls_scores, bbox_preds

    def forward(self, x: Tuple[Tensor]) -> tuple:
        return self.walk(RUN, x)
