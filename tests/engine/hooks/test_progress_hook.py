"""FQNProgressBarHook: one bar over the run's iterations, resumed runs start where they left off."""
import warnings
from types import SimpleNamespace

import torch

from fqn_det.engine.hooks import FQNProgressBarHook


def test_bar_counts_iterations_and_shows_loss(capsys):
    hook = FQNProgressBarHook(desc='QAT')
    runner = SimpleNamespace(max_iters=10, iter=4, epoch=1)
    hook.before_train(runner)
    assert hook._bar.n == 4 and hook._bar.total == 10
    for _ in range(6):  # a loss that requires grad, as in training: no warning converting it
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            hook.after_train_iter(runner, 0, outputs={'loss': torch.tensor(0.5, requires_grad=True) * 1})
    assert hook._bar.n == 10
    assert hook._bar.postfix and 'loss=0.500' in hook._bar.postfix
    hook.after_train(runner)
    assert hook._bar is None
    assert 'QAT' in capsys.readouterr().err


def test_bar_does_not_flood_a_log(capsys):
    """stderr is not a terminal here (captured): a redraw at most every log_interval seconds, one per line."""
    hook = FQNProgressBarHook(desc='QAT', log_interval=60)
    runner = SimpleNamespace(max_iters=2000, iter=0, epoch=0)
    hook.before_train(runner)
    for _ in range(2000):
        hook.after_train_iter(runner, 0, outputs={'loss': torch.tensor(0.5)})
    hook.after_train(runner)
    err = capsys.readouterr().err
    assert '\r' not in err
    lines = [ln for ln in err.splitlines() if 'QAT' in ln]
    assert 1 <= len(lines) <= 3, lines  # the start, the end (and no redraw in between)
    assert '2000/2000' in lines[-1]


def test_bad_log_interval():
    import pytest
    with pytest.raises(ValueError, match='log_interval'):
        FQNProgressBarHook(log_interval=0)
