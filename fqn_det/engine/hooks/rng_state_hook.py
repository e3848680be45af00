"""Carry the random number generators through checkpoints, so ``--resume`` is exact."""
from __future__ import annotations

import random

import numpy as np
import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook

KEY = 'fqn_rng_state'


def get_rng_state() -> dict:
    """Python, NumPy and torch (CPU and CUDA) generator states, as checkpoint-safe types.

    Only tensors, ints, floats, strings, tuples and lists, so torch's
    ``weights_only`` loader reads them without extra allowlisting.
    """
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = dict(python=random.getstate(),
                 numpy=(name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`get_rng_state` returned."""
    py = state['python']
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@HOOKS.register_module()
class FQNRNGStateHook(Hook):
    """Save the RNG states with every checkpoint and restore them on resume.

    mmengine restores the model, optimizer, schedulers and epoch, but reseeds
    the generators from the seed, so data augmentation (e.g. ``RandomFlip``) and
    proposal sampling after a resume differ from the uninterrupted run. With
    this hook a run resumed from a checkpoint continues with exactly the
    states the uninterrupted run had when it saved that checkpoint.

    Augmentations drawn in dataloader worker processes use the workers' own
    generators: with ``persistent_workers=True`` they carry on across epochs
    and cannot be restored; ``num_workers=0`` or non-persistent workers (which
    mmengine reseeds the same way every epoch) resume exactly.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._pending = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[KEY] = get_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Only on --resume (not load_from). Restored in before_train: mmengine's resume
        # reseeds from the checkpoint's seed after this hook runs.
        if KEY in checkpoint and getattr(runner, '_resume', False):
            self._pending = checkpoint[KEY]

    def before_train(self, runner) -> None:
        if self._pending is not None:
            set_rng_state(self._pending)
            self._pending = None
            runner.logger.info('resume: random number generator states restored from the checkpoint')
