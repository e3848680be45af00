"""Patch: torch's ``weights_only`` allowlist and mmengine's local checkpoint loader.

torch >= 2.6 loads with ``weights_only=True``, which refuses the ``MessageHub``
objects in mmengine's checkpoints (``--resume`` fails). This allowlists exactly
the globals they need (:func:`fqn_det.utils.checkpoint.safe_checkpoint_globals`)
and registers :func:`fqn_det.utils.checkpoint.load_from_local` as mmengine's
loader for local paths (clear :class:`CheckpointError` for damaged files).
"""
from __future__ import annotations

from .guard import check

NAME = 'checkpoint-loader'
#: torch.serialization.add_safe_globals with (object, name) pairs; mmengine's CheckpointLoader schemes
REQUIRES = {'torch': ('2.6', '2.14'), 'mmengine': ('0.10', '0.11')}
SKIPPED = ("mmengine's own loader is used: --resume of an mmengine checkpoint may fail in torch's "
           'weights_only loader, and damaged checkpoint files give torch\'s own errors')

_DONE = False


def install_checkpoint_loader() -> bool:
    """Apply the patch once per process; returns whether it is applied."""
    global _DONE
    if _DONE:
        return True
    if not check(NAME, REQUIRES, SKIPPED):
        return False
    import torch
    from mmengine.runner import CheckpointLoader

    from ..utils.checkpoint import load_from_local, safe_checkpoint_globals
    torch.serialization.add_safe_globals(safe_checkpoint_globals())
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
    _DONE = True
    return True
