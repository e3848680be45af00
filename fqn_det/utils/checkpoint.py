"""Let mmengine 0.10.7 resume from its own checkpoints under torch >= 2.6.

torch >= 2.6 loads with ``weights_only=True``; mmengine's checkpoints carry a
``MessageHub`` whose ``HistoryBuffer`` objects pickle numpy arrays and bound
methods (``getattr(buffer, 'mean')``), so ``--resume`` fails with an
UnpicklingError. Instead of turning the safe loader off (``weights_only=False``
would execute arbitrary pickled code), this allowlists exactly those globals,
and maps ``builtins.getattr`` to a getattr that only returns a HistoryBuffer's
statistics methods.

Every local checkpoint mmengine loads (``load_from``, ``--resume``,
``load_checkpoint``) goes through :func:`load_checkpoint_file`, which turns a
truncated or corrupt file into a :class:`CheckpointError` naming the file
instead of a pickle/zip traceback that suggests ``weights_only=False``.
"""
from __future__ import annotations

import codecs
import errno
import os.path as osp
import re

import numpy as np
import torch


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read: truncated, corrupt, or not a checkpoint."""


# RuntimeErrors from torch.load that mean a damaged file (not, e.g., a device mismatch)
_CORRUPT = re.compile(r'PytorchStreamReader|unexpected EOF|corrupt|zip archive|invalid header', re.I)


def load_checkpoint_file(filename, map_location=None):
    """``torch.load(filename)`` (safe ``weights_only`` loader) with clear errors.

    Raises:
        FileNotFoundError: No such file.
        CheckpointError: The file is truncated or corrupt (or no checkpoint at all),
            or holds objects the safe loader refuses; the message names the file.
    """
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint not found: {filename}')
    try:
        return torch.load(filename, map_location=map_location)
    except Exception as e:  # a damaged pickle stream fails in many ways (EOF, Index, Key, Unicode, struct...)
        msg = str(e)
        if isinstance(e, RuntimeError) and not _CORRUPT.search(msg) or \
                isinstance(e, OSError) and e.errno != errno.EINVAL:  # EINVAL: a seek past a cut-off end
            raise  # not the file's content (e.g. a device mismatch, an I/O or permission error)
        m = re.search(r'WeightsUnpickler error:\s*([^\n]+)', msg)  # torch's safe unpickler: the cause only
        detail = m.group(1) if m else (msg.splitlines() or ['no data'])[0]
        reason = f'{type(e).__name__}: {detail.split(". ")[0].rstrip(".")}'
        if re.search(r'Unsupported global|refusing', reason):  # intact, but content the safe loader refuses
            raise CheckpointError(f'{filename} is not a readable checkpoint: it holds objects that torch\'s safe '
                                  f'loader (weights_only=True) refuses, or is damaged: {reason}') from e
        raise CheckpointError(f'{filename} is not a readable checkpoint (truncated or corrupt): {reason}') from e


def load_from_local(filename, map_location):
    """mmengine's loader for local paths (its name gives the log line "by local backend")."""
    return load_checkpoint_file(filename, map_location)


def _history_buffer_getattr(obj, name: str):
    from mmengine.logging.history_buffer import HistoryBuffer
    allowed = {'min', 'max', 'current', 'mean', *HistoryBuffer._statistics_methods}
    if (obj is HistoryBuffer or isinstance(obj, HistoryBuffer)) and name in allowed:
        return getattr(obj, name)
    raise AttributeError(f'refusing getattr({type(obj).__name__}, {name!r}) while loading a checkpoint')


def safe_checkpoint_globals() -> list:
    """The globals an mmengine training checkpoint needs beyond torch's defaults."""
    from mmengine.logging.history_buffer import HistoryBuffer
    try:
        from numpy.core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    # numpy >= 1.25 rebuilds dtypes through their DType classes.
    dtype_classes = [type(np.dtype(c)) for c in np.typecodes['All'] if c not in 'MmV']
    return [HistoryBuffer, _reconstruct, scalar, np.ndarray, np.dtype, codecs.encode,
            *dtype_classes, (_history_buffer_getattr, 'builtins.getattr')]


def allow_mmengine_checkpoints() -> bool:
    """Allowlist mmengine's checkpoint contents for ``torch.load(weights_only=True)``, and
    load mmengine's local checkpoints with :func:`load_checkpoint_file` (clear errors).

    The version-guarded patch lives in :mod:`fqn_det.compat.checkpoint_loader`.
    """
    from ..compat.checkpoint_loader import install_checkpoint_loader
    return install_checkpoint_loader()
