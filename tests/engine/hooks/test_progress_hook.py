"""FQNProgressBarHook: one bar over the run's iterations, resumed runs start where they left off."""
from types import SimpleNamespace

import torch

from fqn_det.engine.hooks import FQNProgressBarHook


def test_bar_counts_iterations_and_shows_loss(capsys):
    hook = FQNProgressBarHook(desc='QAT')
    runner = SimpleNamespace(max_iters=10, iter=4, epoch=1)
    hook.before_train(runner)
    assert hook._bar.n == 4 and hook._bar.total == 10
    for _ in range(6):
        hook.after_train_iter(runner, 0, outputs={'loss': torch.tensor(0.5)})
    assert hook._bar.n == 10
    assert hook._bar.postfix and 'loss=0.500' in hook._bar.postfix
    hook.after_train(runner)
    assert hook._bar is None
    assert 'QAT' in capsys.readouterr().err
