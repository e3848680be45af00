"""DFQ (Nagel et al., ICCV 2019): equalization, high-bias absorption, bias correction.

The maths here is plain PyTorch on weight/bias tensors; :mod:`fqn_det.dfq.detector`
applies it to quantized mmdet detectors.
"""
from .absorb import absorb, absorption_amount
from .bias_correction import corrected_bias, expected_output_shift
from .equalize import apply_scales, equalization_scales, in_channel_ranges, out_channel_ranges
from .stats import relu_moments

__all__ = ['equalization_scales', 'apply_scales', 'in_channel_ranges', 'out_channel_ranges',
           'absorption_amount', 'absorb', 'corrected_bias', 'expected_output_shift', 'relu_moments']
