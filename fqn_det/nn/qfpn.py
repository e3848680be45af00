"""Quantized counterpart of mmdet's FPN.

Lateral and output convs, nearest upsampling and the top-down adds are all
quantized; extra levels come from a quantized stride-2 max-pool (Faster R-CNN)
or quantized extra convs (RetinaNet). Non-nearest upsampling is replaced by
nearest, which is exact on integers (FQN sec. 3.4).
"""
from __future__ import annotations

import warnings
from typing import Tuple

from mmdet.models.necks import FPN
from torch import Tensor, nn

from .builder import QBuilder, clone_as
from .dataflow import RUN, Builder
from .qconv import QMaxPool2d, QUpsampleNearest


class QFPN(FPN):
    """mmdet FPN with every activation quantized and nearest upsampling."""

    @classmethod
    def from_float(cls, fpn: FPN, qb: QBuilder, name: str) -> 'QFPN':
        mode = fpn.upsample_cfg.get('mode', 'nearest')
        if mode != 'nearest':
            warnings.warn(f'{name}: upsample mode {mode!r} replaced by nearest for integer inference')
        q = clone_as(fpn, cls)
        q.q_name = name
        q.lateral_convs = nn.ModuleList(
            qb.conv_module(m, f'{name}.lateral_convs.{i}') for i, m in enumerate(fpn.lateral_convs))
        q.fpn_convs = nn.ModuleList(
            qb.conv_module(m, f'{name}.fpn_convs.{i}') for i, m in enumerate(fpn.fpn_convs))
        n_lat = len(fpn.lateral_convs)
        q.upsamples = nn.ModuleList(
            QUpsampleNearest(qb.act(f'{name}.upsamples.{i}')) for i in range(n_lat - 1))
        q.adds = nn.ModuleList(qb.add(False, f'{name}.adds.{i}') for i in range(n_lat - 1))
        n_extra = fpn.num_outs - n_lat if not fpn.add_extra_convs else 0
        q.extra_pools = nn.ModuleList(
            QMaxPool2d(1, 2, 0, out_quant=qb.act(f'{name}.extra_pools.{i}'))
            for i in range(max(n_extra, 0)))
        return q

    def walk(self, b: Builder, inputs) -> tuple:
        assert len(inputs) == len(self.in_channels)
        laterals = [b.conv(conv, inputs[i + self.start_level]) for i, conv in enumerate(self.lateral_convs)]
        used = len(laterals)
        # Top-down step i (from level i to i - 1) uses upsamples/adds[i - 1].
        for i in range(used - 1, 0, -1):
            up = b.upsample(self.upsamples[i - 1], laterals[i], laterals[i - 1])
            laterals[i - 1] = b.add(self.adds[i - 1], laterals[i - 1], up)
        outs = [b.conv(self.fpn_convs[i], laterals[i]) for i in range(used)]
        if self.num_outs > used:
            if not self.add_extra_convs:
                for pool in self.extra_pools:
                    outs.append(b.maxpool(pool, outs[-1]))
            else:
                src = {'on_input': lambda: inputs[self.backbone_end_level - 1],
                       'on_lateral': lambda: laterals[-1],
                       'on_output': lambda: outs[-1]}[self.add_extra_convs]()
                outs.append(b.conv(self.fpn_convs[used], src))
                for i in range(used + 1, self.num_outs):
                    # ReLU of a quantized tensor stays on its grid (0 is a level).
                    x = b.relu(outs[-1], f'{self.q_name}.extra_relu.{i}') if self.relu_before_extra_convs \
                        else outs[-1]
                    outs.append(b.conv(self.fpn_convs[i], x))
        return tuple(outs)

    def forward(self, inputs: Tuple[Tensor]) -> tuple:
        return self.walk(RUN, inputs)
