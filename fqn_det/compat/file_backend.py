"""Patch: mmengine's ``'local'`` file backend replaced by an atomic one.

mmengine writes checkpoints and ``last_checkpoint`` with a plain ``open(path,
'wb')``; :class:`fqn_det.utils.atomic_backend.AtomicLocalBackend` writes a
temporary sibling and renames it, so a kill never leaves a truncated file.
"""
from __future__ import annotations

from .guard import check

NAME = 'atomic-local-backend'
#: mmengine.fileio.LocalBackend's put/put_text signatures and register_backend(force=, prefixes=)
REQUIRES = {'mmengine': ('0.10', '0.11')}
SKIPPED = "mmengine's own local backend is used: a process killed while saving may leave a truncated checkpoint"

_DONE = False


def install_atomic_local_backend() -> bool:
    """Apply the patch once per process; returns whether it is applied."""
    global _DONE
    if _DONE:
        return True
    if not check(NAME, REQUIRES, SKIPPED):
        return False
    from mmengine.fileio import register_backend

    from ..utils.atomic_backend import AtomicLocalBackend
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
    _DONE = True
    return True
