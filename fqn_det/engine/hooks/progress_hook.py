"""A progress bar over training iterations (with the current loss), for interactive runs."""
from __future__ import annotations

from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import Hook


@HOOKS.register_module()
class FQNProgressBarHook(Hook):
    """tqdm bar over all training iterations of the run; loss and epoch in the postfix.

    mmengine reports training through its logger only; this hook adds a bar for
    people watching a terminal (the demo uses it). Rank 0 only.
    """

    priority = 'LOW'

    def __init__(self, desc: str = 'train') -> None:
        self.desc = desc
        self._bar = None

    def before_train(self, runner) -> None:
        if is_main_process():
            from tqdm import tqdm
            self._bar = tqdm(total=runner.max_iters, initial=runner.iter, desc=self.desc, unit='it',
                             dynamic_ncols=True, leave=True)

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
