"""Shut down a finished runner's persistent dataloader workers now, not in the garbage collector.

A ``DataLoader`` with ``persistent_workers=True`` (mmdet's default) keeps its
worker processes until the loader is freed. An mmengine runner sits in
reference cycles, so its loaders are freed by the garbage collector at some
later, random moment; there the loader's queues can be finalized before its
``__del__`` asks the workers to stop, and torch waits out its 5 s join timeout
for every worker (as in pytorch/pytorch#81794): 20 s for a training run's train
and val loaders, paid inside whatever the process does next. Processes that
run several runners one after another (the demo, the benchmarks) therefore
end each runner's workers explicitly, which takes milliseconds.

This reads torch's private ``_MultiProcessingDataLoaderIter`` and sets
``torch.utils.data._utils.MP_STATUS_CHECK_INTERVAL`` for the shutdown, so it is
version-guarded: on another torch it is skipped (the workers end in the
garbage collector, as without it).
"""
from __future__ import annotations

import time
from contextlib import contextmanager

from .guard import check

LOOPS = ('_train_loop', '_val_loop', '_test_loop')
NAME = 'dataloader-worker-shutdown'
#: _MultiProcessingDataLoaderIter._workers/_shutdown/_shutdown_workers and _utils.MP_STATUS_CHECK_INTERVAL
REQUIRES = {'torch': ('2.0', '2.14')}
SKIPPED = 'finished runners keep their dataloader workers until the garbage collector ends them (seconds each)'


def release_dataloader_workers(runner, timeout: float = 0.5) -> int:
    """End the worker processes of ``runner``'s train, val and test dataloaders now.

    Args:
        runner: An mmengine ``Runner`` whose ``train()``/``test()`` has returned.
        timeout (float): Seconds to wait for all workers to exit on their own
            before terminating them.

    Returns:
        int: Number of worker processes that were shut down.
    """
    if not check(NAME, REQUIRES, SKIPPED):
        return 0
    from torch.utils.data import _utils
    from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

    released = 0
    for name in LOOPS:
        loader = getattr(getattr(runner, name, None), 'dataloader', None)  # unbuilt loops are dicts
        it = getattr(loader, '_iterator', None)
        if not isinstance(it, _MultiProcessingDataLoaderIter) or it._shutdown:
            continue
        released += len(it._workers)
        deadline = time.monotonic() + timeout
        old = _utils.MP_STATUS_CHECK_INTERVAL
        # torch joins each worker with this timeout, then terminates the ones still alive
        _utils.MP_STATUS_CHECK_INTERVAL = max(timeout / max(len(it._workers), 1), 0.01)
        try:
            it._shutdown_workers()
        finally:
            _utils.MP_STATUS_CHECK_INTERVAL = old
        for w in it._workers:  # terminated workers: reap them so none is left a zombie
            w.join(max(deadline - time.monotonic(), 0.1))
        loader._iterator = None
    return released


@contextmanager
def releasing_workers(runner):
    """``with releasing_workers(build_runner(cfg)) as runner:``; the workers end with the block."""
    try:
        yield runner
    finally:
        release_dataloader_workers(runner)


__all__ = ['release_dataloader_workers', 'releasing_workers']
