"""Quantized counterpart of mmdet's FCOS head (as a detector head, or as the RPN of a two-stage detector).

Its convs are ``conv -> GroupNorm -> ReLU`` (:class:`QConvGroupNorm`): GroupNorm
normalizes with each sample's statistics, so it is an integer layer of its own
after the quantized conv output, not folded. The three outputs per level
(classification logits, box distances, centerness) are quantized head outputs;
FCOS's learned per-level ``Scale`` of the box distances multiplies the
dequantized value (it only changes that output's scale), then FCOS's own
``exp`` / ReLU-times-stride is box decoding (:func:`fcos_bbox_outputs`).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

from mmdet.models.dense_heads import FCOSHead
from torch import Tensor, nn

from .builder import QBuilder, UnsupportedModuleError, clone_as
from .dataflow import RUN, Builder
from .qconv import QConv2d, QGroupNorm, shared_weight_quantization
from .qheads import PerLevelForward, sigmoid_score_thr


class QConvGroupNorm(nn.Module):
    """An mmcv ``ConvModule`` conv -> GroupNorm (-> ReLU): a quantized conv, then a quantized GroupNorm."""

    def __init__(self, conv: QConv2d, norm: QGroupNorm) -> None:
        super().__init__()
        self.conv, self.norm = conv, norm

    @classmethod
    def from_float(cls, cm: nn.Module, qb: QBuilder, name: str, sites: int = 1) -> 'QConvGroupNorm':
        from mmcv.cnn import ConvModule
        if not isinstance(cm, ConvModule) or not cm.with_norm or type(cm.norm) is not nn.GroupNorm:
            raise UnsupportedModuleError(name, cm, 'expected an mmcv ConvModule with GroupNorm')
        if tuple(cm.order) != ('conv', 'norm', 'act') or cm.with_explicit_padding:
            raise UnsupportedModuleError(name, cm, f'ConvModule order {cm.order} / explicit padding is not '
                                         'supported (conv-norm-act with zero padding is)')
        relu = cm.with_activation
        if relu and type(cm.activate) is not nn.ReLU:
            raise UnsupportedModuleError(f'{name}.activate', cm.activate, 'only ReLU can follow a GroupNorm')
        conv = qb.conv(cm.conv, None, False, name, sites)
        return cls(conv, QGroupNorm(cm.norm, relu, qb.act(f'{name}.{cm.norm_name}', sites)))

    def walk(self, b: Builder, x, site: int = 0):
        return b.group_norm(self.norm, b.conv(self.conv, x, site), site)


def fcos_bbox_outputs(head: FCOSHead, bbox_preds: Sequence[Tensor], training: bool) -> List[Tensor]:
    """FCOS's box distances from the (scaled) regression outputs: ``exp``, or ReLU times the stride at test time."""
    out = []
    for b, stride in zip(bbox_preds, head.strides):
        b = b.float()
        if head.norm_on_bbox:
            b = b.clamp(min=0)
            if not training:
                b = b * stride
        else:
            b = b.exp()
        out.append(b)
    return out


class QFCOSHead(PerLevelForward, FCOSHead):
    """FCOSHead with per-level activation quantizers on its shared convs and GroupNorms."""

    #: children that only multiply dequantized head outputs (see ``check_fully_quantized``)
    OUTPUT_FACTORS = ('scales',)
    OUTPUTS = ('cls_score', 'bbox_pred', 'centerness')

    @classmethod
    def from_float(cls, head: FCOSHead, qb: QBuilder, name: str) -> 'QFCOSHead':
        q = clone_as(head, cls)
        q.num_levels = L = head.prior_generator.num_levels
        q.output_prefix = 'rpn_' if name.split('.')[-1] == 'rpn_head' else ''
        for branch in ('cls_convs', 'reg_convs'):
            layers = []
            for i, m in enumerate(getattr(head, branch)):
                path = f'{name}.{branch}.{i}'
                layers.append(QConvGroupNorm.from_float(m, qb, path, L) if getattr(m, 'with_norm', False)
                              else _Plain(qb.conv_module(m, path, L)))
            setattr(q, branch, nn.ModuleList(layers))
        q.conv_cls = qb.conv(head.conv_cls, None, False, f'{name}.conv_cls', L, score_thr=sigmoid_score_thr(head),
                             output=True)
        q.conv_reg = qb.conv(head.conv_reg, None, False, f'{name}.conv_reg', L, output=True)
        q.conv_centerness = qb.conv(head.conv_centerness, None, False, f'{name}.conv_centerness', L, output=True)
        return q

    def walk_level(self, b: Builder, x, level: int):
        cls_feat = reg_feat = x
        for m in self.cls_convs:
            cls_feat = m.walk(b, cls_feat, level)
        for m in self.reg_convs:
            reg_feat = m.walk(b, reg_feat, level)
        return (b.conv(self.conv_cls, cls_feat, level), b.conv(self.conv_reg, reg_feat, level),
                b.conv(self.conv_centerness, reg_feat if self.centerness_on_reg else cls_feat, level))

    def output_names(self) -> Tuple[str, ...]:
        return tuple(self.output_prefix + n for n in self.OUTPUTS)

    def output_factor(self, i: int, level: int):
        return self.scales[level].scale if i == 1 else None  # the box distances' learned Scale

    def forward(self, x: Tuple[Tensor]) -> tuple:
        with shared_weight_quantization(self):  # one weight quantization for all levels
            cls_scores, bbox_preds, centernesses = self.walk(RUN, x)
        return cls_scores, fcos_bbox_outputs(self, bbox_preds, self.training), centernesses


class _Plain(nn.Module):
    """A head conv without GroupNorm (``norm_cfg=None``): one quantized conv."""

    def __init__(self, conv: QConv2d) -> None:
        super().__init__()
        self.conv = conv

    def walk(self, b: Builder, x, site: int = 0):
        return b.conv(self.conv, x, site)


__all__: List[str] = ['QConvGroupNorm', 'QFCOSHead', 'fcos_bbox_outputs']
