"""Atomic local writes for mmengine's file backend (checkpoints, ``last_checkpoint``).

mmengine writes checkpoints with a plain ``open(path, 'wb')``: a kill during
the write leaves a truncated file where the previous checkpoint was. This
backend writes to a temporary sibling, fsyncs and renames, so the previous
file stays intact until the new one is complete.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend

from .atomic import atomic_write_bytes


class AtomicLocalBackend(LocalBackend):
    """LocalBackend whose ``put``/``put_text`` are atomic (temp file + rename)."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write_bytes(filepath, lambda f: f.write(obj))

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)


def use_atomic_local_writes() -> bool:
    """Make mmengine's ``'local'`` backend atomic for this process (the version-guarded patch is
    :mod:`fqn_det.compat.file_backend`)."""
    from ..compat.file_backend import install_atomic_local_backend
    return install_atomic_local_backend()
