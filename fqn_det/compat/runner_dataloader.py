"""Patch: a runner's ``build_dataloader`` replaced by one with a clear empty-dataset error.

mmengine's loops build their dataloaders lazily through ``runner.build_dataloader``
(a static method); an empty dataset then fails deep inside with ``need at least
one array to concatenate``. The replacement
(:func:`fqn_det.utils.dataset_check.checked_build_dataloader`) raises
:class:`EmptyDatasetError` naming the annotation file. It is set on one runner
instance, never on mmengine's ``Runner`` class.
"""
from __future__ import annotations

from .guard import check

NAME = 'runner-build-dataloader'
#: Runner.build_dataloader(dataloader, seed=None, diff_rank_seed=False), called by the loops through the runner
REQUIRES = {'mmengine': ('0.10', '0.11')}
SKIPPED = "mmengine's own dataloader builder is used: an empty dataset fails with mmengine's own error"


def patch_runner_dataloader(runner) -> bool:
    """Give ``runner`` the checked dataloader builder; returns whether it did."""
    if not check(NAME, REQUIRES, SKIPPED):
        return False
    from ..utils.dataset_check import checked_build_dataloader
    runner.build_dataloader = checked_build_dataloader
    return True
