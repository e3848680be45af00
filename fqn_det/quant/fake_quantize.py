"""Fake-quantizer modules for weights and activations; all state in buffers.

``scale``, ``zero_point``, the observed range (``min_val``/``max_val``) and the
mode flags (``fake_quant_enabled``, ``observer_enabled``, ``initialized``) are
registered buffers, as in ``torch.ao.quantization.FakeQuantize``, so that
checkpoints and DDP broadcasts carry them.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .distributed import reduce_batch_range
from . import fused
from .functional import calc_qparams, calc_qparams_scalar, fake_quantize
from .observers import (NonFiniteActivationError, StreamingHistogram, batch_range, batch_range_per_channel,
                        channel_rows, update_per_row)
from .qscheme import QScheme


class NotCalibratedError(RuntimeError):
    """A quantizer was used for inference before its range was set."""


def _flag(value: int) -> Tensor:
    return torch.tensor(value, dtype=torch.uint8)


class WeightQuantizer(nn.Module):
    """Per-channel (default) weight fake quantizer with min/max ranges.

    The range of each output channel is the min/max of the weight as it is at
    this step (after BN folding), so the fake-quantized weights are exactly
    the integers that integer inference will use.

    Args:
        scheme (QScheme): Weight scheme; ``ch_axis`` is the output-channel axis.
        num_channels (int): Output channels (size of per-channel buffers).
    """

    _version = 1

    def __init__(self, scheme: QScheme, num_channels: int) -> None:
        super().__init__()
        self.scheme = scheme
        n = num_channels if scheme.per_channel else 1
        self.register_buffer('scale', torch.ones(n))
        self.register_buffer('zero_point', torch.zeros(n, dtype=torch.int32))
        self.register_buffer('fake_quant_enabled', _flag(1))

    def forward(self, w: Tensor) -> Tensor:
        if not self.fake_quant_enabled:
            return w
        s = self.scheme
        wd = w.detach()
        if (s.ch_axis == 0 or not s.per_channel) and wd.numel() and wd.is_contiguous() \
                and fused.qparams_usable(self.scale, self.zero_point, wd):
            # one call: per-channel min/max and qparams, the values of the lines below
            fused.minmax_qparams_(wd, self.scale, self.zero_point, s.quant_min, s.quant_max, s.symmetric)
        else:
            self._set_qparams(wd)
        axis = s.ch_axis if s.per_channel else None
        return fake_quantize(w, self.scale, self.zero_point, s.quant_min, s.quant_max, axis)

    @torch.no_grad()
    def _set_qparams(self, w: Tensor) -> None:
        s = self.scheme
        if s.per_channel:
            flat = w.transpose(0, s.ch_axis).reshape(w.shape[s.ch_axis], -1)
            # amin + amax: aminmax(dim=1) is ~20x slower on CPU for conv-sized weights
            lo, hi = flat.amin(1), flat.amax(1)
        else:
            lo, hi = torch.aminmax(w)
        scale, zp = calc_qparams(lo, hi, s)
        self.scale.copy_(scale.reshape(self.scale.shape))
        self.zero_point.copy_(zp.reshape(self.zero_point.shape))

    def extra_repr(self) -> str:
        return str(self.scheme)


def floored_min(floor: float, hi, scheme: QScheme):
    """The lowest range minimum that still maps everything at or below ``floor`` below ``floor``.

    With the range ``[m, hi]`` (``hi`` widened to 0 as :func:`calc_qparams` does),
    ``m = floor - (max(hi, 0) - floor) / (qmax - qmin)`` puts ``floor`` one step
    (of the range ``[floor, hi]``) above ``m``. The scale of ``[m, hi]`` is
    ``L / (L - 1)`` of that step (``L = qmax - qmin``), and rounding the zero-point
    moves the lowest level by at most half a scale, so the lowest level is below
    ``floor`` by at least ``(1 - L / (2 (L - 1)))`` steps (0.47 at 4 bits): a value
    clipped there still falls under a threshold at ``floor``. Works on floats and tensors.
    """
    levels = scheme.quant_max - scheme.quant_min
    top = hi.clamp(min=0.0) if isinstance(hi, Tensor) else max(hi, 0.0)
    return floor - (top - floor) / levels


class ActQuantizer(nn.Module):
    """Activation fake quantizer: FQN calibration, then EMA ranges.

    Per tensor, as in the paper. A per-channel scheme (``ch_axis=1``: one range per
    output channel, ``num_channels`` of them) is for head outputs only, which are
    dequantized for box decoding and NMS rather than consumed by an integer layer
    (:class:`fqn_det.nn.builder.QBuilder` enforces it); every statistic below is
    then taken per channel.

    Modes:
      * calibrating (set by :func:`fqn_det.quant.calibration.start_calibration`):
        values pass through unchanged and feed a streaming histogram;
      * training: the range follows an EMA of each batch's range statistic
        (the first batch initializes it when no calibration was run, as in
        Jacob et al.'s QAT), then values are fake-quantized;
      * eval: fixed range; using an uncalibrated quantizer raises
        :class:`NotCalibratedError`.

    Args:
        scheme (QScheme): Activation scheme (per tensor).
        momentum (float): EMA weight of the new batch, in (0, 1). Defaults to 0.01.
        ema_stat (str): Batch statistic the EMA follows: ``'percentile'``
            (``[1 - gamma, gamma]`` order statistics, FQN) or ``'minmax'`` (IAO).
        gamma (float): Percentile for calibration and the EMA statistic.
        hist_bins (int): Histogram bins per side of zero during calibration.
        floor (float, optional): Values at or below ``floor`` carry no information
            downstream (e.g. classification logits under the detector's score
            threshold, which are discarded): the range's lower end is raised
            towards it, so the levels go to what is kept, while the lowest level
            stays strictly below ``floor`` (see :func:`floored_min`).
        ceiling (float, optional): Inputs are clipped at ``ceiling`` and ranges never
            exceed it: a ReLU6 before this quantizer is expressed as ``ceiling=6`` (the
            integer clamp at the top of the range then is the ReLU6).
        name (str): Module path, used in error messages.
        num_channels (int): Channels of a per-channel scheme (ignored per tensor).
    """

    _version = 1

    def __init__(self, scheme: QScheme, momentum: float = 0.01, ema_stat: str = 'percentile',
                 gamma: float = 0.999, hist_bins: int = 2048, name: str = '',
                 floor: float | None = None, num_channels: int = 1, ceiling: float | None = None) -> None:
        super().__init__()
        shape: tuple = ()
        if scheme.per_channel:
            if scheme.ch_axis != 1:
                raise ValueError(f'per-channel activation ranges are along dim 1 (N, C, ...), got ch_axis='
                                 f'{scheme.ch_axis} at {name or "quantizer"}')
            if isinstance(num_channels, bool) or not isinstance(num_channels, int) or num_channels < 1:
                raise ValueError(f'per-channel activation ranges need num_channels >= 1, got {num_channels!r} '
                                 f'at {name or "quantizer"}')
            shape = (num_channels,)
        self.scheme = scheme
        self.momentum = momentum
        self.ema_stat = ema_stat
        self.gamma = gamma
        self.hist_bins = hist_bins
        self.name = name
        self.floor = None if floor is None else float(floor)
        self.ceiling = None if ceiling is None else float(ceiling)
        self.register_buffer('scale', torch.ones(shape))
        self.register_buffer('zero_point', torch.zeros(shape, dtype=torch.int32))
        self.register_buffer('min_val', torch.zeros(shape))
        self.register_buffer('max_val', torch.zeros(shape))
        self.register_buffer('initialized', _flag(0))
        self.register_buffer('fake_quant_enabled', _flag(1))
        self.register_buffer('observer_enabled', _flag(1))
        # calibration histograms: one, or one per channel
        self._hist: StreamingHistogram | list | None = None

    @property
    def per_channel(self) -> bool:
        return self.scheme.per_channel

    @property
    def axis(self) -> int | None:
        """The channel axis of per-channel ranges, None per tensor."""
        return self.scheme.ch_axis if self.scheme.per_channel else None

    # -- calibration -------------------------------------------------------
    @property
    def calibrating(self) -> bool:
        return self._hist is not None

    def start_calibration(self) -> None:
        if self.per_channel:
            self._hist = [StreamingHistogram(self.hist_bins) for _ in range(self.min_val.numel())]
        else:
            self._hist = StreamingHistogram(self.hist_bins)

    def histograms(self) -> list:
        """The calibration histograms (one per channel for per-channel ranges); [] when not calibrating."""
        if self._hist is None:
            return []
        return list(self._hist) if isinstance(self._hist, list) else [self._hist]

    def finish_calibration(self, gamma: float | None = None) -> bool:
        """Set the range to the histogram's percentiles; False if nothing was seen."""
        hists, self._hist = self.histograms(), None
        if not hists or any(h.total == 0 for h in hists):
            return False
        g = self.gamma if gamma is None else gamma
        ranges = [h.percentile_range(g) for h in hists]
        if self.per_channel:
            lo, hi = (torch.tensor(v, dtype=torch.float32) for v in zip(*ranges))
            self.set_range(self.floored(lo, hi), hi)
        else:
            lo, hi = ranges[0]
            self.set_range(torch.tensor(self.floored(lo, hi)), torch.tensor(hi))
        return True

    def _calibrate(self, x: Tensor) -> None:
        if not self.per_channel:
            self._hist.update(x)
            return
        rows = channel_rows(x, self.scheme.ch_axis)
        if rows.shape[0] != len(self._hist):
            raise ValueError(f'{self.name or "quantizer"}: per-channel ranges for {len(self._hist)} channels, '
                             f'got a tensor of shape {tuple(x.shape)}')
        update_per_row(self._hist, rows)

    # -- range -------------------------------------------------------------
    def floored(self, lo, hi):
        """A measured range minimum ``lo`` raised to :func:`floored_min` when ``floor`` is set.

        Applied wherever a range comes from a statistic (calibration, each EMA step,
        DFQ's data-free ranges); floats or tensors.
        """
        if self.floor is None:
            return lo
        bound = floored_min(self.floor, hi, self.scheme)
        return torch.maximum(lo, bound) if isinstance(lo, Tensor) else max(lo, bound)

    @torch.no_grad()
    def set_range(self, lo: Tensor, hi: Tensor) -> None:
        self.min_val.copy_(lo)
        self.max_val.copy_(hi)
        if self.ceiling is not None:
            self.max_val.clamp_(max=self.ceiling)
        qparams = None
        if self.per_channel:
            qparams = calc_qparams(self.min_val, self.max_val, self.scheme)
        elif self.min_val.device.type == 'cpu':  # on an accelerator, float() would wait for it
            qparams = calc_qparams_scalar(float(self.min_val), float(self.max_val), self.scheme)
        if qparams is None:  # NaN, beyond float32 or not on the CPU: the tensor version
            qparams = calc_qparams(self.min_val, self.max_val, self.scheme)
        self.scale.copy_(torch.as_tensor(qparams[0]))
        self.zero_point.copy_(torch.as_tensor(qparams[1]))
        self.initialized.fill_(1)

    @torch.no_grad()
    def _observe(self, x: Tensor) -> None:
        # every element is checked, not only the percentile statistic's subsample
        try:
            if self.per_channel:
                lo, hi = batch_range_per_channel(x, self.ema_stat, self.gamma, self.scheme.ch_axis,
                                                 check_finite=True)
            else:
                lo, hi = batch_range(x, self.ema_stat, self.gamma, check_finite=True)
        except NonFiniteActivationError:
            raise NonFiniteActivationError(f'NaN or inf activation at {self.name or "quantizer"}') from None
        # identical updates on every data-parallel rank (no-op in a single process)
        lo, hi = reduce_batch_range(lo, hi, exact_extremes=self.ema_stat == 'minmax' or self.gamma >= 1.0)
        self._update_range(self.floored(lo, hi), hi)

    @torch.no_grad()
    def _update_range(self, lo: Tensor, hi: Tensor) -> None:
        """EMA step towards this batch's statistic ``[lo, hi]`` (its first value when uninitialized)."""
        if not self.per_channel and self.initialized.dtype == torch.uint8 \
                and fused.qparams_usable(self.scale, self.zero_point, lo, hi, self.min_val, self.max_val):
            s = self.scheme  # the lines below in one call, with the same values
            fused.ema_qparams_(lo, hi, self.min_val, self.max_val, self.scale, self.zero_point, self.initialized,
                               self.momentum, s.quant_min, s.quant_max, s.symmetric)
            return
        if self.initialized:
            lo = torch.lerp(self.min_val, lo.to(self.min_val), self.momentum)
            hi = torch.lerp(self.max_val, hi.to(self.max_val), self.momentum)
        self.set_range(lo, hi)

    def forward(self, x: Tensor) -> Tensor:
        if self.ceiling is not None:
            x = x.clamp(max=self.ceiling)
        if self._hist is not None:
            try:
                self._calibrate(x)
            except NonFiniteActivationError as e:
                raise NonFiniteActivationError(
                    f'NaN or inf activation at {self.name or "quantizer"} during calibration') from e
            return x
        if self.training and self.observer_enabled:
            self._observe(x)
        if not self.fake_quant_enabled:
            return x
        if not self.initialized:
            raise NotCalibratedError(
                f'activation range of {self.name or "quantizer"} was never set: calibrate the model '
                '(FQNCalibrationHook) or load a fine-tuned checkpoint before inference')
        s = self.scheme
        return fake_quantize(x, self.scale, self.zero_point, s.quant_min, s.quant_max, self.axis)

    def extra_repr(self) -> str:
        return f'{self.scheme}, ema={self.ema_stat}@{self.momentum}' + \
            ('' if self.floor is None else f', floor={self.floor:g}') + \
            ('' if self.ceiling is None else f', ceiling={self.ceiling:g}')


__all__ = ['WeightQuantizer', 'ActQuantizer', 'NotCalibratedError']
