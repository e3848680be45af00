"""Quantized layers. ``qconv``/``builder``/``dataflow``/``qdetector``/``link`` are plain
PyTorch; the mmdet counterparts (``qresnet``, ``qfpn``, ``qheads``, ``qroi_head``) import mmdet."""
from .builder import QBuilder, UnsupportedModuleError, clone_as
from .dataflow import RUN, Builder
from .qconv import (QAdd, QAvgPool2d, QConv2d, QGroupNorm, QLinear, QMaxPool2d, QUpsampleNearest, UnlinkedInputError,
                    fold_bn, refresh_weight_qparams, shared_weight_quantization)

__all__ = ['QBuilder', 'UnsupportedModuleError', 'clone_as', 'QConv2d', 'QLinear', 'QAdd',
           'QMaxPool2d', 'QAvgPool2d', 'QGroupNorm', 'QUpsampleNearest', 'UnlinkedInputError', 'RUN', 'Builder',
           'fold_bn', 'refresh_weight_qparams', 'shared_weight_quantization']
