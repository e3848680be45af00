"""Every patch fqn_det makes to torch / mmengine / mmdet internals, each behind a version guard.

Process-wide patches (installed by :func:`install`; the tools and ``import
fqn_det`` with mmdet present call it, nothing else does):

- ``checkpoint-loader``: torch's ``weights_only`` allowlist for mmengine's
  checkpoints and mmengine's loader for local paths
  (:mod:`~fqn_det.compat.checkpoint_loader`);
- ``atomic-local-backend``: mmengine's ``'local'`` file backend writes atomically
  (:mod:`~fqn_det.compat.file_backend`);
- ``ssd-head-loss-cls``: mmdet's ``SSDHead`` gets the ``loss_cls`` its prediction reads
  (:mod:`~fqn_det.compat.ssd_head`).

Patches applied where they are needed:

- ``runner-build-dataloader``: one runner's dataloader builder
  (:func:`patch_runner_dataloader`, called by :func:`fqn_det.utils.cli.build_runner`);
- ``dataloader-worker-shutdown``: torch's private worker-status interval, to end a
  finished runner's dataloader workers at once (:func:`release_dataloader_workers`);
- ``sampler-buckets``: mmdet's aspect-ratio batch samplers emptied after a
  stopped-early pass (:func:`release_partial_epoch`).

Read, not patched: ``runner-resume-state``, whether a runner asked to resume
loaded nothing (:func:`~fqn_det.compat.runner_resume.resumed_nothing`, checked by
the calibration hook).

Each is written for the versions pinned in requirements.txt (torch 2.13,
mmengine 0.10.7, mmdet 3.3.0) and guarded by a version range
(:mod:`~fqn_det.compat.guard`): on other versions it warns once and is skipped,
or raises :class:`CompatError` where running without it is unsafe.
"""
from __future__ import annotations

from typing import Dict

from .checkpoint_loader import install_checkpoint_loader
from .dataloader_workers import release_dataloader_workers, releasing_workers
from .file_backend import install_atomic_local_backend
from .guard import CompatError, CompatWarning
from .runner_dataloader import patch_runner_dataloader
from .sampler_buckets import release_partial_epoch
from .ssd_head import install_ssd_head_loss_cls


def install() -> Dict[str, bool]:
    """Apply the process-wide patches (idempotent); returns ``{patch name: applied}``."""
    from . import checkpoint_loader, file_backend, ssd_head
    return {checkpoint_loader.NAME: install_checkpoint_loader(),
            file_backend.NAME: install_atomic_local_backend(),
            ssd_head.NAME: install_ssd_head_loss_cls()}


__all__ = ['install', 'install_checkpoint_loader', 'install_atomic_local_backend', 'install_ssd_head_loss_cls',
           'patch_runner_dataloader',
           'release_dataloader_workers', 'releasing_workers', 'release_partial_epoch', 'CompatError',
           'CompatWarning']
