"""A progress bar over training iterations (with the current loss), for interactive runs."""
from __future__ import annotations

from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from ...utils.progress import progress_bar


@HOOKS.register_module()
class FQNProgressBarHook(Hook):
    """tqdm bar over all training iterations of the run; loss and epoch in the postfix.

    mmengine reports training through its logger only; this hook adds a bar for
    people watching a terminal (the demo uses it). Rank 0 only. When stderr is
    not a terminal (a log file, CI), the bar is redrawn at most every
    ``log_interval`` seconds, each time on a line of its own.

    Args:
        desc (str): Label in front of the bar.
        log_interval (float): Seconds between updates when stderr is not a terminal.
    """

    priority = 'LOW'

    def __init__(self, desc: str = 'train', log_interval: float = 30.0) -> None:
        if log_interval <= 0:
            raise ValueError(f'log_interval must be > 0, got {log_interval}')
        self.desc = desc
        self.log_interval = log_interval
        self._bar = None

    def before_train(self, runner) -> None:
        if is_main_process():
            self._bar = progress_bar(self.log_interval, total=runner.max_iters, initial=runner.iter,
                                     desc=self.desc, unit='it', leave=True)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        loss = (outputs or {}).get('loss')
        if loss is not None:
            self._bar.set_postfix(epoch=runner.epoch + 1, loss=f'{float(loss.detach()):.3f}', refresh=False)

    def after_train(self, runner) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

