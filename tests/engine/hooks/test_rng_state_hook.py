"""RNG states survive a checkpoint round trip through torch's weights_only loader."""
import random
from types import SimpleNamespace
from unittest.mock import MagicMock

import numpy as np
import torch

from fqn_det.engine.hooks import FQNRNGStateHook
from fqn_det.engine.hooks.rng_state_hook import KEY


def _draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_round_trip_through_weights_only_checkpoint(tmp_path):
    hook = FQNRNGStateHook()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    _draw()
    ckpt = {'meta': {'epoch': 1}}
    hook.before_save_checkpoint(None, ckpt)
    expected = [_draw() for _ in range(3)]
    torch.save(ckpt, tmp_path / 'c.pth')
    loaded = torch.load(tmp_path / 'c.pth', weights_only=True)  # no allowlisting needed
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    runner = SimpleNamespace(_resume=True, logger=MagicMock())
    hook.after_load_checkpoint(runner, loaded)
    hook.before_train(runner)  # restored here: mmengine reseeds after loading
    assert [_draw() for _ in range(3)] == expected
    runner.logger.info.assert_called_once()


def test_load_from_does_not_restore():
    hook = FQNRNGStateHook()
    ckpt = {}
    hook.before_save_checkpoint(None, ckpt)
    assert KEY in ckpt
    np.random.seed(3)
    after_seed = np.random.get_state()[1].copy()
    runner = SimpleNamespace(_resume=False, logger=MagicMock())
    hook.after_load_checkpoint(runner, ckpt)
    hook.before_train(runner)
    assert np.array_equal(np.random.get_state()[1], after_seed)
