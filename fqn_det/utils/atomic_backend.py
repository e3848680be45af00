"""Atomic local writes for mmengine's file backend (checkpoints, ``last_checkpoint``).

mmengine writes checkpoints with a plain ``open(path, 'wb')``: a kill during
the write leaves a truncated file where the previous checkpoint was. This
backend writes to a temporary sibling, fsyncs and renames, so the previous
file stays intact until the new one is complete.

mmengine's CheckpointHook (``max_keep_ckpts``) also removes the oldest
checkpoint *before* it writes the new one, so a kill in between leaves none;
this backend defers such a removal until the next checkpoint in the same
directory is complete.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Union

from mmengine.fileio import LocalBackend

from .atomic import atomic_write_bytes


#: directory -> checkpoint files whose removal waits for the next checkpoint written there
_PENDING_REMOVALS: Dict[str, List[str]] = {}


def _is_checkpoint(filepath) -> bool:
    return str(filepath).endswith('.pth')


class AtomicLocalBackend(LocalBackend):
    """LocalBackend whose ``put``/``put_text`` are atomic (temp file + rename), and whose
    ``remove`` of a checkpoint waits until the next checkpoint in its directory is written."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write_bytes(filepath, lambda f: f.write(obj))
        if _is_checkpoint(filepath):
            d = os.path.dirname(os.path.abspath(filepath))
            for old in _PENDING_REMOVALS.pop(d, []):
                if old != os.path.abspath(filepath) and os.path.isfile(old):
                    os.remove(old)

    def remove(self, filepath: Union[str, Path]) -> None:
        if not _is_checkpoint(filepath):
            return super().remove(filepath)
        if not os.path.isfile(filepath):
            raise FileNotFoundError(f'no such checkpoint: {filepath}')  # as LocalBackend.remove
        path = os.path.abspath(filepath)
        _PENDING_REMOVALS.setdefault(os.path.dirname(path), []).append(path)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)


def use_atomic_local_writes() -> bool:
    """Make mmengine's ``'local'`` backend atomic for this process (the version-guarded patch is
    :mod:`fqn_det.compat.file_backend`)."""
    from ..compat.file_backend import install_atomic_local_backend
    return install_atomic_local_backend()
