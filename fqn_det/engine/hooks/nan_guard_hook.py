"""Stop quantization-aware training as soon as the loss is not finite."""
from __future__ import annotations

import math
from typing import Optional

from mmdet.registry import HOOKS
from mmengine.hooks import Hook


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf."""


@HOOKS.register_module()
class FQNNaNGuardHook(Hook):
    """Raise naming the iteration when the loss becomes NaN/inf.

    It runs before the checkpoint hook of the same iteration, so no checkpoint
    is written from the broken state: the last one saved stays the last good one.
    """

    priority = 'VERY_HIGH'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs: Optional[dict] = None) -> None:
        if not outputs:
            return
        # mmengine's log_vars: the total 'loss' is still the graph's tensor (detach: no autograd warning)
        values = {k: float(v.detach() if hasattr(v, 'detach') else v) for k, v in outputs.items()
                  if k.startswith('loss') and hasattr(v, '__float__')}
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            last = runner.message_hub.get_info('last_ckpt') if hasattr(runner, 'message_hub') else None
            raise NonFiniteLossError(
                f'non-finite loss at iteration {runner.iter + 1} (epoch {runner.epoch + 1}): {bad}; training '
                f'stopped, no checkpoint was written from this state'
                + (f'; the last good checkpoint is {last}' if last else ''))
