"""The whole post-training quantization recipe on a quantized detector (plain PyTorch).

``tools/ptq.py`` and ``benchmarks/bench_dfq.py`` both call
:func:`post_training_quantize`; they only decide the options and where the
batches come from.
"""
from __future__ import annotations

import warnings
from typing import Callable, Optional

import torch
from torch import nn

from ..quant.calibration import abort_calibration, finish_calibration, start_calibration
from ..compat.sampler_buckets import release_partial_epoch
from .detector import (DFQError, analytic_bias_correction, apply_dfq, empirical_bias_correction,
                       find_pairs, fold_bn_permanently)
from .ranges import data_free_ranges

BIAS_CORRECTIONS = ('none', 'analytic', 'empirical')
RANGES = ('data-free', 'calibrated')


class BadFloatWeightsError(ValueError):
    """A float checkpoint with a NaN/inf weight or a negative BatchNorm variance."""


def check_float_weights(det: nn.Module) -> None:
    """Refuse NaN/inf parameters or BN statistics and negative BN variances, naming the tensor.

    QAT meets such weights as NaN activations during calibration; data-free PTQ
    would quantize them silently into a NaN checkpoint.
    """
    for name, t in list(det.named_parameters()) + list(det.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise BadFloatWeightsError(f'{name}: {int((~torch.isfinite(t)).sum())} non-finite value(s) '
                                       'in the float checkpoint')
    for name, m in det.named_modules():
        var = getattr(m, 'running_var', None)
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and var is not None and bool((var < 0).any()):
            raise BadFloatWeightsError(f'{name}.running_var: {int((var < 0).sum())} negative BatchNorm '
                                       'variance(s) in the float checkpoint')


def batch_runner(model: nn.Module, loader, num_batches: int, seed: Optional[int] = None) -> Callable[[], int]:
    """A ``run_batches`` for :func:`post_training_quantize`: the first ``num_batches`` of ``loader``.

    Each batch goes through ``model.data_preprocessor`` and ``model(..., mode='tensor')``
    without gradients. With ``seed``, the NumPy/torch generators are reseeded first, so
    every call sees the same augmented batches. The callable returns the number of
    batches run (fewer than asked when the loader is shorter; a warning says so).
    """
    def run() -> int:
        if seed is not None:
            import numpy as np
            np.random.seed(seed)
            torch.manual_seed(seed)
        used = 0
        it = iter(loader)
        try:
            with torch.no_grad():
                for _ in range(num_batches):
                    data = next(it, None)
                    if data is None:
                        break
                    model(**model.data_preprocessor(data, False), mode='tensor')
                    used += 1
        finally:
            release_partial_epoch(loader)  # or the next call would start from a stale batch
        if used < num_batches:
            warnings.warn(f'asked for {num_batches} batches but the dataloader has only {used}')
        return used
    return run


def post_training_quantize(model: nn.Module, *, equalization: bool = False, absorption: bool = False,
                           bias_correction: str = 'none', ranges: str = 'data-free',
                           run_batches: Optional[Callable[[], None]] = None,
                           gamma: Optional[float] = None) -> dict:
    """Quantize ``model`` (a ``QuantizedDetector`` holding float weights) without training.

    Steps, in place: BN folding (made permanent), optional cross-layer
    equalization and high-bias absorption, optional bias correction, then
    activation ranges (data-free from BN statistics, or FQN percentile
    calibration on ``run_batches()``). Sets ``model.calibrated``.

    Args:
        model: Has ``.detector`` (the converted detector) and a ``calibrated`` buffer.
        equalization, absorption: The DFQ transforms.
        bias_correction: ``'none'``, ``'analytic'`` (from BN statistics) or
            ``'empirical'`` (input means measured with ``run_batches``).
        ranges: ``'data-free'`` or ``'calibrated'``.
        run_batches: Runs the calibration batches through ``model`` (no grad);
            needed for calibrated ranges and empirical correction.
        gamma: Calibration percentile for all quantizers (default: each its own).

    Returns:
        A report dict (pairs equalized, places skipped, biases corrected).
    """
    if bias_correction not in BIAS_CORRECTIONS:
        raise DFQError(f'bias_correction must be one of {BIAS_CORRECTIONS}, got {bias_correction!r}')
    if ranges not in RANGES:
        raise DFQError(f'ranges must be one of {RANGES}, got {ranges!r}')
    if (ranges == 'calibrated' or bias_correction == 'empirical') and run_batches is None:
        raise DFQError(f'ranges={ranges!r} / bias_correction={bias_correction!r} need data (run_batches)')
    det = model.detector
    check_float_weights(getattr(model, 'float_detector', det))  # same tensors, the checkpoint's names
    report: dict = {}
    if equalization or absorption:
        rep = apply_dfq(det, equalization=equalization, absorption=absorption)
        report.update(pairs=rep.pairs, skipped=rep.skipped, sweeps=rep.sweeps, absorbed=rep.absorbed,
                      relu6_replaced=rep.relu6_replaced)
    else:
        fold_bn_permanently(det)
    if bias_correction == 'analytic':
        report['bias_corrected'] = analytic_bias_correction(find_pairs(det)[0])
    elif bias_correction == 'empirical':
        report['bias_corrected'] = empirical_bias_correction(model, run_batches)
    if ranges == 'data-free':
        data_free_ranges(det)
    else:
        was_training = model.training
        model.eval()
        start_calibration(det)
        try:
            run_batches()
            finish_calibration(det, gamma)
        except BaseException:
            abort_calibration(det)
            raise
        finally:
            model.train(was_training)
    model.calibrated.fill_(1)
    return report
