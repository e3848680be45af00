"""Quantized counterparts of mmdet's RetinaNet and RPN heads.

The head convs are shared across FPN levels (weights shared), but every level
gets its own activation ranges: each quantized conv holds one output quantizer
per level, and each level's walk receives the level index. The final conv
outputs (classification logits, box deltas) are quantized too, so everything
up to box decoding and NMS runs on quantized values (FQN sec. 3.4).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from mmdet.models.dense_heads import RetinaHead, RPNHead
from torch import Tensor, nn

from .builder import QBuilder, UnsupportedModuleError, clone_as
from .dataflow import RUN, Builder
from .qconv import shared_weight_quantization


class PerLevelForward:
    """A head run on every FPN level with shared weights: ``walk`` visits each level.

    Subclasses provide ``walk_level(b, x, level)`` returning the level's
    outputs, one per name of ``output_names()`` (``OUTPUTS`` by default): the
    graph outputs ``<name>.<level>``, listed under the group ``<name>s``.
    ``output_factor(i, level)`` may return a positive scalar multiplying the
    i-th dequantized output of a level (FCOS's learned ``Scale``).
    """

    OUTPUTS: Tuple[str, ...] = ('cls_score', 'bbox_pred')

    def output_names(self) -> Tuple[str, ...]:
        return self.OUTPUTS

    def output_factor(self, i: int, level: int):
        return None

    def walk(self, b: Builder, feats) -> Tuple[list, ...]:
        if len(feats) > self.num_levels:
            raise ValueError(f'{type(self).__name__} was quantized for {self.num_levels} levels '
                             f'but got {len(feats)} feature maps')
        names = self.output_names()
        outs = tuple([] for _ in names)
        for lvl, x in enumerate(feats):
            level_outs = self.walk_level(b, x, lvl)
            if len(level_outs) != len(names):
                raise TypeError(f'{type(self).__name__}.walk_level returned {len(level_outs)} outputs for the '
                                f'{len(names)} names {names}')
            for i, (name, t) in enumerate(zip(names, level_outs)):
                group = name + ('es' if name.endswith('s') else 's')
                outs[i].append(b.output(t, f'{name}.{lvl}', group, factor=self.output_factor(i, lvl)))
        return outs

    def forward(self, x: Tuple[Tensor]) -> tuple:
        with shared_weight_quantization(self):  # one weight quantization for all levels
            return self.walk(RUN, x)

    def forward_single(self, x: Tensor, level: int = 0) -> Tuple[Tensor, Tensor]:
        return self.walk_level(RUN, x, level)


def sigmoid_score_thr(head: nn.Module) -> Optional[float]:
    """The test-time score threshold of a sigmoid-classification head, or None."""
    cfg = getattr(head, 'test_cfg', None) or {}
    thr = cfg.get('score_thr') if hasattr(cfg, 'get') else None
    return float(thr) if getattr(head, 'use_sigmoid_cls', False) and thr is not None else None


class QRetinaHead(PerLevelForward, RetinaHead):
    """RetinaHead with per-level activation quantizers on shared convs."""

    @classmethod
    def from_float(cls, head: RetinaHead, qb: QBuilder, name: str) -> 'QRetinaHead':
        q = clone_as(head, cls)
        q.num_levels = L = head.prior_generator.num_levels
        q.cls_convs = nn.ModuleList(qb.conv_module(m, f'{name}.cls_convs.{i}', L)
                                    for i, m in enumerate(head.cls_convs))
        q.reg_convs = nn.ModuleList(qb.conv_module(m, f'{name}.reg_convs.{i}', L)
                                    for i, m in enumerate(head.reg_convs))
        q.retina_cls = qb.conv(head.retina_cls, None, False, f'{name}.retina_cls', L,
                               score_thr=sigmoid_score_thr(head), output=True)
        q.retina_reg = qb.conv(head.retina_reg, None, False, f'{name}.retina_reg', L, output=True)
        return q

    def walk_level(self, b: Builder, x, level: int):
        cls_feat = reg_feat = x
        for conv in self.cls_convs:
            cls_feat = b.conv(conv, cls_feat, level)
        for conv in self.reg_convs:
            reg_feat = b.conv(conv, reg_feat, level)
        return b.conv(self.retina_cls, cls_feat, level), b.conv(self.retina_reg, reg_feat, level)


class QRPNHead(PerLevelForward, RPNHead):
    """RPNHead with per-level activation quantizers on shared convs."""

    OUTPUTS = ('rpn_cls_score', 'rpn_bbox_pred')

    @classmethod
    def from_float(cls, head: RPNHead, qb: QBuilder, name: str) -> 'QRPNHead':
        q = clone_as(head, cls)
        q.num_levels = L = head.prior_generator.num_levels
        conv = head.rpn_conv
        if isinstance(conv, nn.Sequential):
            q.rpn_conv = nn.ModuleList(qb.conv_module(m, f'{name}.rpn_conv.{i}', L)
                                       for i, m in enumerate(conv))
        elif type(conv) is nn.Conv2d:
            # mmdet applies F.relu after a single rpn_conv: fused here.
            q.rpn_conv = nn.ModuleList([qb.conv(conv, None, True, f'{name}.rpn_conv', L)])
        else:
            raise UnsupportedModuleError(f'{name}.rpn_conv', conv)
        q.rpn_cls = qb.conv(head.rpn_cls, None, False, f'{name}.rpn_cls', L, output=True)
        q.rpn_reg = qb.conv(head.rpn_reg, None, False, f'{name}.rpn_reg', L, output=True)
        return q

    def walk_level(self, b: Builder, x, level: int):
        for conv in self.rpn_conv:
            x = b.conv(conv, x, level)
        return b.conv(self.rpn_cls, x, level), b.conv(self.rpn_reg, x, level)


__all__: List[str] = ['QRetinaHead', 'QRPNHead']
