"""A progress bar over training iterations (with the current loss), for interactive runs."""
from __future__ import annotations

import sys

from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import Hook


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
            from tqdm import tqdm
            tty = sys.stderr.isatty()
            self._bar = tqdm(total=runner.max_iters, initial=runner.iter, desc=self.desc, unit='it',
                             dynamic_ncols=tty, leave=True, file=sys.stderr if tty else _Lines(sys.stderr),
                             mininterval=0.1 if tty else self.log_interval, ascii=not tty)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        loss = (outputs or {}).get('loss')
        if loss is not None:
            self._bar.set_postfix(epoch=runner.epoch + 1, loss=f'{float(loss):.3f}', refresh=False)

    def after_train(self, runner) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _Lines:
    """A non-terminal stream for tqdm: each redraw ends its line instead of returning the carriage."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace('\r', '')
        if text.strip():
            self.stream.write(text.rstrip('\n') + '\n')

    def flush(self) -> None:
        self.stream.flush()
