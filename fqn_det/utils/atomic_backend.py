"""Atomic local writes for mmengine's file backend (checkpoints, ``last_checkpoint``).

mmengine writes checkpoints with a plain ``open(path, 'wb')``: a kill during
the write leaves a truncated file where the previous checkpoint was. This
backend writes to a temporary sibling, fsyncs and renames, so the previous
file stays intact until the new one is complete.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend


class AtomicLocalBackend(LocalBackend):
    """LocalBackend whose ``put``/``put_text`` are atomic (temp file + rename)."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        path = Path(filepath)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', dir=path.parent)
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(obj)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)


def use_atomic_local_writes() -> None:
    """Make mmengine's ``'local'`` backend atomic for this process (the tools call this)."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
