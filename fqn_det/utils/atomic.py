"""Atomic file writes: temporary sibling, fsync, rename (plain Python)."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

#: marks this package's temporary siblings: ``.NAME.fqntmp-PID-RANDOM``
_TMP_TAG = 'fqntmp'


def temp_prefix(path: Path) -> str:
    """Prefix of a temporary sibling of ``path`` written by this process."""
    return f'.{path.name}.{_TMP_TAG}-{os.getpid()}-'


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def remove_stale_temps(path) -> list:
    """Remove temporary siblings of ``path`` left by killed writers of this package.

    Only names of the form ``.NAME.fqntmp-PID-*`` whose process ``PID`` no longer
    runs are removed (a concurrent writer's files are kept); nothing else is touched.

    Returns:
        list: The removed paths.
    """
    path = Path(path)
    pattern = re.compile(rf'^\.{re.escape(path.name)}\.{_TMP_TAG}-(\d+)-')
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = pattern.match(p.name)
        if m is None or _alive(int(m.group(1))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                p.unlink()
            except OSError:
                continue
        removed.append(p)
    return removed


def atomic_write_bytes(path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(fileobj)`` on a temporary sibling of ``path``, then rename it into place.

    A failure (or a kill) before the rename leaves any previous ``path`` intact
    and no temporary file behind; a hidden ``.name.fqntmp-PID-*`` file left by a
    killed writer is removed by the next write of the same path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), dir=path.parent)
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
