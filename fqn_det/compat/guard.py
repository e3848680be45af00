"""Version guards for fqn_det's patches of torch / mmengine / mmdet internals (plain Python).

Every patch names the package versions it was written and tested for. On
those it applies; on any other version it warns once (:class:`CompatWarning`)
and is skipped, or, where running without it would silently give wrong
results, raises :class:`CompatError` naming the patch and the versions.
"""
from __future__ import annotations

import re
import warnings
from importlib import metadata
from typing import Dict, Optional, Tuple

#: package -> (lowest version, first version above the range); the range is [low, high)
Requirements = Dict[str, Tuple[str, str]]

_WARNED = set()


class CompatWarning(UserWarning):
    """A patch of a dependency's internals skipped on a version it was not written for."""


class CompatError(RuntimeError):
    """A patch that cannot be skipped safely, on a version it was not written for."""


def installed_version(package: str) -> Optional[str]:
    """The installed version of ``package`` (a distribution name), or None if it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def release(version: str) -> Tuple[int, ...]:
    """``'2.13.0+cpu'`` -> ``(2, 13, 0)``: the leading numeric release of a version string."""
    m = re.match(r'\d+(?:\.\d+)*', version.strip())
    if m is None:
        raise ValueError(f'not a version: {version!r}')
    return tuple(int(p) for p in m.group().split('.'))


def in_range(version: str, low: str, high: str) -> bool:
    """``low <= version < high``, comparing numeric releases (``2.13.0+cpu`` is 2.13.0)."""
    def pad(v):
        return v + (0,) * (4 - len(v))
    return pad(release(low)) <= pad(release(version)) < pad(release(high))


def mismatches(requires: Requirements) -> Dict[str, Optional[str]]:
    """The required packages whose installed version lies outside its range (None: not installed)."""
    out = {}
    for package, (low, high) in requires.items():
        found = installed_version(package)
        if found is None or not in_range(found, low, high):
            out[package] = found
    return out


def describe(requires: Requirements) -> str:
    return ', '.join(f'{p} >={lo},<{hi}' for p, (lo, hi) in requires.items())


def check(name: str, requires: Requirements, skipped: str, unsafe: bool = False) -> bool:
    """Whether patch ``name`` may apply here.

    Args:
        name (str): The patch, as the warning and error name it.
        requires (dict): ``{package: (low, high)}``, the versions the patch was
            written and tested for (``low`` inclusive, ``high`` exclusive).
        skipped (str): What running without the patch means, for the message.
        unsafe (bool): Raise :class:`CompatError` instead of skipping.

    Returns:
        bool: True on the supported versions; False (after one warning per
        patch and process) on others.
    """
    bad = mismatches(requires)
    if not bad:
        return True
    found = ', '.join(f'{p} {v or "not installed"}' for p, v in bad.items())
    msg = f"fqn_det.compat: the '{name}' patch was written for {describe(requires)}; found {found}. "
    if unsafe:
        raise CompatError(msg + f'Running without it is unsafe: {skipped}. Install the versions in '
                          'requirements.txt, or check the patch against this version and widen its range.')
    if name not in _WARNED:
        _WARNED.add(name)
        warnings.warn(msg + f'Skipped: {skipped}.', CompatWarning, stacklevel=3)
    return False
