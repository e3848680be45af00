"""Quantized layers. ``qconv``/``builder`` are plain PyTorch; the mmdet
counterparts (``qresnet``, ``qfpn``, ``qheads``, ``qroi_head``) import mmdet."""
from .builder import QBuilder, UnsupportedModuleError, clone_as
from .qconv import (QAdd, QConv2d, QLinear, QMaxPool2d, QUpsampleNearest, fold_bn,
                    refresh_weight_qparams, shared_weight_quantization)

__all__ = ['QBuilder', 'UnsupportedModuleError', 'clone_as', 'QConv2d', 'QLinear', 'QAdd',
           'QMaxPool2d', 'QUpsampleNearest', 'fold_bn', 'refresh_weight_qparams', 'shared_weight_quantization']
