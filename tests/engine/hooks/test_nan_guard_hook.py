"""FQNNaNGuardHook: stop on a non-finite loss, naming the iteration."""
from unittest.mock import Mock

import pytest
import torch

from fqn_det.engine.hooks import FQNNaNGuardHook, NonFiniteLossError


def _runner(it=41, epoch=2, last='work/epoch_2.pth'):
    r = Mock(iter=it, epoch=epoch)
    r.message_hub.get_info.return_value = last
    return r


def test_finite_loss_passes():
    FQNNaNGuardHook().after_train_iter(_runner(), 0, None, dict(loss=torch.tensor(1.5), loss_cls=torch.tensor(1.0)))


@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_non_finite_loss_names_iteration_and_last_checkpoint(bad):
    with pytest.raises(NonFiniteLossError, match=r'iteration 42 \(epoch 3\).*loss_bbox.*work/epoch_2\.pth'):
        FQNNaNGuardHook().after_train_iter(_runner(), 0, None,
                                           dict(loss=torch.tensor(1.0), loss_bbox=torch.tensor(bad)))


def test_runs_before_the_checkpoint_hook():
    from mmengine.hooks import CheckpointHook
    from mmengine.runner import get_priority
    assert get_priority(FQNNaNGuardHook.priority) < get_priority(CheckpointHook.priority)


def test_loss_with_graph_is_read_without_autograd_warning():
    """mmengine passes the total loss still attached to the graph; reading it must not warn."""
    import warnings
    w = torch.ones(1, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        FQNNaNGuardHook().after_train_iter(_runner(), 0, None, dict(loss=(w * 2).sum(), loss_cls=0.5))
    with pytest.raises(NonFiniteLossError, match='loss'):
        FQNNaNGuardHook().after_train_iter(_runner(), 0, None, dict(loss=(w * float('nan')).sum()))
