"""Where an export may be written, and how it replaces a previous one.

An export never deletes what it did not write: the output directory must be
new, empty, or a previous export of this package (marked by its
``report.json``) holding nothing but the files that report lists.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..utils.atomic import remove_stale_temps, temp_prefix

#: ``report.json['written_by']`` of every export
EXPORT_MARK = 'fqn_det.export'


class ExportTargetError(ValueError):
    """The output path of an export is a file, or a directory the export did not write."""


def _own_files(d: Path):
    """The file names a previous export in ``d`` wrote, or None if ``d`` holds no export of ours."""
    try:
        report = json.loads((d / 'report.json').read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or report.get('written_by') != EXPORT_MARK or \
            not isinstance(report.get('files'), dict):
        return None
    return {'report.json', 'report.md', *map(str, report['files'])}


def check_out_dir(out_dir) -> Path:
    """The absolute output directory, refused before any work if writing it could destroy data.

    Raises:
        ExportTargetError: ``out_dir`` is an existing file (or other non-directory),
            the current directory (or holds it), or a non-empty directory that is
            not a previous export of this package holding only its own files.
    """
    given = out_dir
    out_dir = Path(os.path.abspath(out_dir))
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ExportTargetError(f'export output {given} exists and is not a directory; give a new directory '
                                '(the export writes model.fqnint, model.onnx and report.* into it)')
    cwd = Path.cwd().resolve()
    if out_dir.exists() and (out_dir.resolve() == cwd or out_dir.resolve() in cwd.parents):
        raise ExportTargetError(f'export output {given} is the current directory (or holds it): an export '
                                'replaces its directory as a whole; give a subdirectory, e.g. --out exported')
    if out_dir.is_dir() and any(out_dir.iterdir()):
        own = _own_files(out_dir)
        if own is None:
            raise ExportTargetError(f'export output {given} is a non-empty directory that is not a previous '
                                    'export (no report.json written by fqn_det); the export would replace it. '
                                    'Give a new or empty directory')
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in own or not p.is_file())
        if foreign:
            raise ExportTargetError(f'export output {given} is a previous export but also holds other files '
                                    f'({", ".join(foreign[:5])}); the export would delete them. Move them out '
                                    'or give a new directory')
    return out_dir


def staging_dir(out_dir: Path) -> Path:
    """A new hidden sibling of ``out_dir`` to write the export into (stale ones of killed exports removed)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out_dir), dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp creates it 0o700; an export is like any new directory
    return tmp


def install_export(tmp: Path, out_dir: Path) -> None:
    """Rename the complete export ``tmp`` to ``out_dir``, replacing a previous export (checked again)."""
    check_out_dir(out_dir)  # the directory may have changed while exporting
    if out_dir.is_dir() and any(out_dir.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=temp_prefix(out_dir), dir=out_dir.parent))
        out_dir.rename(old / 'export')
        try:
            tmp.rename(out_dir)
        except BaseException:
            (old / 'export').rename(out_dir)  # put the previous export back
            old.rmdir()
            raise
        shutil.rmtree(old)  # holds only the previous export's own files (checked above)
    else:
        tmp.rename(out_dir)  # new, or an empty directory (replaced by rename)
