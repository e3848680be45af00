"""Whether an mmengine runner asked to resume found nothing to resume (reads two private attributes).

``Runner.load_or_resume`` with ``resume=True`` and no ``load_from`` looks for
the latest checkpoint in the work dir; when there is none it only logs "Auto
resumed from the latest checkpoint None." and trains from the model's initial
weights. mmengine keeps the request in ``runner._resume`` and whether anything
was loaded in ``runner._has_loaded``; read here for the versions they were
checked on.
"""
from __future__ import annotations

from .guard import check

NAME = 'runner-resume-state'
REQUIRES = {'mmengine': ('0.10.0', '0.11.0')}


def resumed_nothing(runner) -> bool:
    """True if ``runner`` was asked to resume and loaded no checkpoint."""
    if not check(NAME, REQUIRES, 'a resume that finds no checkpoint is not detected'):
        return False
    return bool(getattr(runner, '_resume', False)) and not bool(getattr(runner, '_has_loaded', True))
