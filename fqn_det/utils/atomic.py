"""Atomic file writes: temporary sibling, fsync, rename (plain Python)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write_bytes(path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(fileobj)`` on a temporary sibling of ``path``, then rename it into place.

    A failure (or a kill) before the rename leaves any previous ``path`` intact
    and no temporary file behind (except after a kill, a hidden ``.name.*`` file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
