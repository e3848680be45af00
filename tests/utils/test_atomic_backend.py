"""Atomic local writes: a failed or killed write leaves the previous file intact."""
import os
import signal
import subprocess
import sys
import time

import pytest

from fqn_det.utils import atomic
from fqn_det.utils.atomic_backend import AtomicLocalBackend, use_atomic_local_writes


def test_put_and_put_text(tmp_path):
    b = AtomicLocalBackend()
    b.put(b'abc', tmp_path / 'sub' / 'f.bin')
    b.put_text('xyz', tmp_path / 'last_checkpoint')
    assert (tmp_path / 'sub' / 'f.bin').read_bytes() == b'abc'
    assert (tmp_path / 'last_checkpoint').read_text() == 'xyz'


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    p = tmp_path / 'epoch_1.pth'
    AtomicLocalBackend().put(b'old checkpoint', p)

    def boom(fd):
        raise OSError('disk full')

    monkeypatch.setattr(atomic.os, 'fsync', boom)
    with pytest.raises(OSError):
        AtomicLocalBackend().put(b'new' * 1000, p)
    assert p.read_bytes() == b'old checkpoint'
    assert [x.name for x in tmp_path.iterdir()] == ['epoch_1.pth']


def test_killed_write_leaves_old_or_complete_new_file(tmp_path):
    p = tmp_path / 'ckpt.pth'
    p.write_bytes(b'old')
    size = 300 * 1024 * 1024
    code = (f'from fqn_det.utils.atomic_backend import AtomicLocalBackend\n'
            f'import sys; sys.stdout.write("go\\n"); sys.stdout.flush()\n'
            f'AtomicLocalBackend().put(b"n" * {size}, {str(p)!r})\n')
    proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE)
    proc.stdout.readline()
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    data = p.read_bytes()
    assert data == b'old' or len(data) == size  # never a truncated file


def test_mmengine_local_backend_is_replaced():
    from mmengine.fileio import get_file_backend
    use_atomic_local_writes()
    assert isinstance(get_file_backend('/tmp/x.pth'), AtomicLocalBackend)
