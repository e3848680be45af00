"""Builds quantized layers from float ones under one :class:`QuantConfig`.

Every quantized module is named by its path in the float detector (e.g.
``backbone.layer1.0.conv1``), which is what per-module precision overrides
match against.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import List, Optional, Type, TypeVar

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..quant import ActQuantizer, QuantConfig, WeightQuantizer
from ..quant.config import SCORE_THR
from .qconv import QAdd, QConv2d, QLinear

M = TypeVar('M', bound=nn.Module)
#: The activation-range ceiling that expresses a ReLU6.
RELU6_CEILING = 6.0


class UnsupportedModuleError(TypeError):
    """A module the converter has no quantized counterpart for."""

    def __init__(self, path: str, module: nn.Module, why: str = '') -> None:
        self.path, self.module_type = path, type(module).__name__
        msg = f'cannot quantize module {path or "<root>"!r} of type {type(module).__module__}.' \
              f'{type(module).__name__}'
        super().__init__(msg + (f': {why}' if why else ''))


def clone_as(module: nn.Module, cls: Type[M]) -> M:
    """A ``cls`` instance sharing ``module``'s attributes, parameters and buffers.

    Only the child-module table is copied, so children can be swapped for
    quantized ones while ``module`` itself (the float model) stays intact and
    keeps referencing the very same parameter and buffer tensors.
    """
    new = cls.__new__(cls)
    new.__dict__.update(module.__dict__)
    new._modules = OrderedDict(module._modules)
    return new


class QBuilder:
    """Creates quantizers and quantized layers for module paths."""

    def __init__(self, cfg: QuantConfig) -> None:
        self.cfg = cfg

    def act(self, name: str, sites: int = 1, score_thr: Optional[float] = None, channels: int = 0,
            output: bool = False) -> List[ActQuantizer]:
        """``sites`` quantizers for the output of ``name``.

        ``score_thr``: the detector's test-time score threshold when ``name`` gives
        sigmoid classification logits; ``floor='score_thr'`` resolves to its logit.
        ``output``: ``name`` is a head output (dequantized for box decoding and NMS, not
        consumed by an integer layer), the only place per-channel ranges are allowed;
        ``channels`` is then its number of output channels.
        """
        scheme = self.cfg.act_scheme(name)
        if scheme.per_channel and not (output and channels >= 1):
            raise ValueError(f'quant_cfg overrides: a_per_channel=True at {name!r}, which is not a head output: '
                             'per-channel activation ranges are only allowed on the head outputs that feed box '
                             "decoding and NMS (e.g. 'bbox_head.retina_cls', 'bbox_head.retina_reg', "
                             "'rpn_head.rpn_cls', 'rpn_head.rpn_reg', 'roi_head.bbox_head.fc_*'), since an integer "
                             'layer needs one range per input tensor')
        kw = self.cfg.act_kwargs(name)
        if kw['floor'] == SCORE_THR:
            if score_thr is None or not 0.0 < score_thr < 1.0:
                raise ValueError(f"quant_cfg overrides: floor='{SCORE_THR}' at {name!r} needs the classification "
                                 f'output of a sigmoid head with a test_cfg.score_thr in (0, 1) (e.g. '
                                 f"'bbox_head.retina_cls'); got score_thr={score_thr!r}")
            kw['floor'] = math.log(score_thr / (1.0 - score_thr))
        return [ActQuantizer(scheme, name=name if sites == 1 else f'{name}[site {i}]', num_channels=channels, **kw)
                for i in range(sites)]

    def weight(self, name: str, out_channels: int) -> WeightQuantizer:
        return WeightQuantizer(self.cfg.weight_scheme(name), out_channels)

    def conv(self, conv: nn.Module, bn: Optional[nn.Module], relu: bool, name: str,
             sites: int = 1, score_thr: Optional[float] = None, output: bool = False) -> QConv2d:
        """A quantized conv; ``output``: a head output (see :meth:`act`)."""
        if type(conv) is not nn.Conv2d:
            raise UnsupportedModuleError(name, conv, 'only plain nn.Conv2d convolutions are supported')
        if bn is not None and not isinstance(bn, _BatchNorm):
            raise UnsupportedModuleError(name, bn, 'only BatchNorm can be folded into a conv')
        acts = self.act(name, sites, score_thr, conv.out_channels, output and not relu)
        return QConv2d(conv, bn, relu, self.weight(name, conv.out_channels), acts, freeze_bn=self.cfg.freeze_bn)

    def linear(self, linear: nn.Module, relu: bool, name: str, sites: int = 1, output: bool = False) -> QLinear:
        """A quantized linear layer; ``output``: a head output (see :meth:`act`)."""
        if type(linear) is not nn.Linear:
            raise UnsupportedModuleError(name, linear, 'only plain nn.Linear is supported')
        acts = self.act(name, sites, None, linear.out_features, output and not relu)
        return QLinear(linear, relu, self.weight(name, linear.out_features), acts)

    def add(self, relu: bool, name: str, sites: int = 1) -> QAdd:
        return QAdd(relu, self.act(name, sites))

    def conv_module(self, cm: nn.Module, name: str, sites: int = 1) -> QConv2d:
        """Quantize an mmcv ``ConvModule`` (conv -> BN -> ReLU) or a bare ``nn.Conv2d``."""
        if type(cm) is nn.Conv2d:
            return self.conv(cm, None, False, name, sites)
        from mmcv.cnn import ConvModule
        if not isinstance(cm, ConvModule):
            raise UnsupportedModuleError(name, cm, 'expected an mmcv ConvModule or nn.Conv2d')
        if tuple(cm.order) != ('conv', 'norm', 'act'):
            raise UnsupportedModuleError(name, cm, f'ConvModule order {cm.order} is not conv-norm-act')
        if cm.with_explicit_padding:
            raise UnsupportedModuleError(name, cm, 'explicit padding layers are not supported')
        relu, relu6 = False, False
        if cm.with_activation:
            if type(cm.activate) not in (nn.ReLU, nn.ReLU6):
                raise UnsupportedModuleError(f'{name}.activate', cm.activate,
                                             'only ReLU / ReLU6 activations can be fused')
            relu, relu6 = True, type(cm.activate) is nn.ReLU6
        q = self.conv(cm.conv, cm.norm if cm.with_norm else None, relu, name, sites)
        if relu6:  # ReLU6 = ReLU, then an activation range that never exceeds 6
            for aq in q.out_quant:
                aq.ceiling = RELU6_CEILING
        return q
