"""FQN calibration steps on any module tree (the hook decides when to call them)."""
from __future__ import annotations

import warnings
from typing import Iterator, List, Tuple

from torch import nn

from .distributed import sync_histograms
from .fake_quantize import ActQuantizer


def iter_act_quantizers(model: nn.Module) -> Iterator[Tuple[str, ActQuantizer]]:
    for name, m in model.named_modules():
        if isinstance(m, ActQuantizer):
            yield name, m


def start_calibration(model: nn.Module) -> int:
    """Put every activation quantizer in histogram mode; returns their count."""
    n = 0
    for _, q in iter_act_quantizers(model):
        q.start_calibration()
        n += 1
    return n


def finish_calibration(model: nn.Module, gamma: float | None = None) -> List[str]:
    """Set every range from its histogram; returns the quantizers that saw no data.

    A quantizer that saw nothing (e.g. a branch no calibration batch reached)
    keeps no range; it is initialized by the first training batch instead.
    In a distributed run the histograms of all ranks are merged first, so every
    rank sets the same ranges (those of the union of all ranks' batches).
    """
    sync_histograms([h for _, q in iter_act_quantizers(model) for h in q.histograms()])
    unseen = [name for name, q in iter_act_quantizers(model) if not q.finish_calibration(gamma)]
    if unseen:
        warnings.warn(f'{len(unseen)} activation quantizer(s) saw no calibration data and will be '
                      f'initialized from the first training batch: {unseen[:5]}')
    return unseen


def abort_calibration(model: nn.Module) -> None:
    """Leave calibration mode without touching any range (after a failure)."""
    for _, q in iter_act_quantizers(model):
        q._hist = None


def set_fake_quant(model: nn.Module, weights: bool, acts: bool) -> None:
    """Turn weight / activation fake quantization on or off (float model when both off)."""
    from .fake_quantize import WeightQuantizer
    for m in model.modules():
        if isinstance(m, WeightQuantizer):
            m.fake_quant_enabled.fill_(int(weights))
        elif isinstance(m, ActQuantizer):
            m.fake_quant_enabled.fill_(int(acts))
