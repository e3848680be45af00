"""Quantization core in plain PyTorch (no mmengine/mmdet imports)."""
from .calibration import finish_calibration, iter_act_quantizers, start_calibration
from .config import QuantConfig
from .fake_quantize import ActQuantizer, NotCalibratedError, WeightQuantizer
from .functional import calc_qparams, fake_quantize, quantize
from .observers import NonFiniteActivationError, StreamingHistogram, batch_range
from .qscheme import QScheme

__all__ = [
    'QScheme', 'QuantConfig', 'fake_quantize', 'quantize', 'calc_qparams', 'StreamingHistogram',
    'batch_range', 'NonFiniteActivationError', 'ActQuantizer', 'WeightQuantizer',
    'NotCalibratedError', 'start_calibration', 'finish_calibration', 'iter_act_quantizers'
]
