"""Let mmengine 0.10.7 resume from its own checkpoints under torch >= 2.6.

torch >= 2.6 loads with ``weights_only=True``; mmengine's checkpoints carry a
``MessageHub`` whose ``HistoryBuffer`` objects pickle numpy arrays and bound
methods (``getattr(buffer, 'mean')``), so ``--resume`` fails with an
UnpicklingError. Instead of turning the safe loader off (``weights_only=False``
would execute arbitrary pickled code), this allowlists exactly those globals,
and maps ``builtins.getattr`` to a getattr that only returns a HistoryBuffer's
statistics methods.
"""
from __future__ import annotations

import codecs

import numpy as np
import torch

_DONE = False


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


def allow_mmengine_checkpoints() -> None:
    """Allowlist mmengine's checkpoint contents for ``torch.load(weights_only=True)``."""
    global _DONE
    if not _DONE:
        torch.serialization.add_safe_globals(safe_checkpoint_globals())
        _DONE = True
