"""torch >= 2.6 weights_only loading of mmengine checkpoints, without unsafe globals; unreadable files."""
import io
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub

from fqn_det.utils.checkpoint import (CheckpointError, _history_buffer_getattr, allow_mmengine_checkpoints,
                                      load_checkpoint_file)


def test_message_hub_checkpoint_loads_with_weights_only(tmp_path):
    hub = MessageHub.get_instance('ckpt-test')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/lr', np.float64(0.1))
    hub.update_info('iter', 7)
    path = tmp_path / 'c.pth'
    torch.save(dict(meta=dict(seed=np.int64(3)), message_hub=hub.state_dict(),
                    state_dict={'w': torch.ones(2)}), path)
    allow_mmengine_checkpoints()
    ck = torch.load(path, map_location='cpu', weights_only=True)
    assert ck['message_hub']['log_scalars']['train/loss'].mean() == 1.5
    assert ck['meta']['seed'] == 3


def test_getattr_stays_restricted():
    allow_mmengine_checkpoints()
    with pytest.raises(AttributeError, match='refusing'):
        _history_buffer_getattr(subprocess, 'Popen')

    from mmengine.logging import HistoryBuffer

    class Evil:  # getattr on an allowlisted class, but not one of its statistics
        def __reduce__(self):
            return (getattr, (HistoryBuffer, '__init__'))

    buf = io.BytesIO()
    torch.save({'x': Evil()}, buf, pickle_protocol=2)
    buf.seek(0)
    with pytest.raises((AttributeError, pickle.UnpicklingError), match='refusing|getattr'):
        torch.load(buf, weights_only=True)


def test_quant_core_imports_without_mmengine():
    code = ('import sys\n'
            'class Block:\n'
            '    def find_spec(self, name, path=None, target=None):\n'
            '        if name.split(".")[0] in ("mmengine", "mmdet", "mmcv"):\n'
            '            raise ModuleNotFoundError(name)\n'
            'sys.meta_path.insert(0, Block())\n'
            'import torch\n'
            'from fqn_det.quant import ActQuantizer, QScheme, fake_quantize\n'
            'q = ActQuantizer(QScheme(4)).train()\n'
            'print(float(q(torch.randn(100)).unique().numel()))\n'
            'assert not any(m.startswith(("mmengine", "mmdet", "mmcv")) for m in sys.modules)\n')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert float(res.stdout) <= 16


def _saved(legacy=False):
    buf = io.BytesIO()
    torch.save({'state_dict': {f'w{i}': torch.randn(64, 64) for i in range(3)}, 'meta': {}}, buf,
               _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


@pytest.mark.parametrize('damage', ['empty', 'text', 'garbage', 'truncated', 'truncated-legacy', 'tail-cut'])
def test_unreadable_checkpoint_is_a_clear_error_naming_the_file(tmp_path, damage):
    full, legacy = _saved(), _saved(legacy=True)
    data = {'empty': b'', 'text': b'hello\n', 'garbage': bytes(range(256)) * 8, 'truncated': full[:len(full) // 2],
            'truncated-legacy': legacy[:len(legacy) // 2], 'tail-cut': full[:-10]}[damage]
    path = tmp_path / 'bad.pth'
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=r'bad\.pth is not a readable checkpoint \(truncated or corrupt\)'):
        load_checkpoint_file(path)
    # mmengine's loader (load_from, --resume, load_checkpoint) goes through it
    allow_mmengine_checkpoints()
    from mmengine.runner import CheckpointLoader
    with pytest.raises(CheckpointError, match='bad.pth'):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')


def test_checkpoint_with_refused_objects_and_other_errors(tmp_path, monkeypatch):
    path = tmp_path / 'c.pth'
    torch.save({'x': subprocess.CompletedProcess(['a'], 0)}, path)
    with pytest.raises(CheckpointError, match=r'c\.pth is not a readable checkpoint: .*safe loader.*'
                                              r'Unsupported global.*CompletedProcess'):
        load_checkpoint_file(path)
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_checkpoint_file(tmp_path / 'missing.pth')
    torch.save({'w': torch.ones(2)}, path)
    assert torch.equal(load_checkpoint_file(path)['w'], torch.ones(2))

    def device_error(*a, **k):
        raise RuntimeError('Attempting to deserialize object on a CUDA device')
    monkeypatch.setattr(torch, 'load', device_error)  # not a damaged file: passed on as it is
    with pytest.raises(RuntimeError, match='CUDA device') as info:
        load_checkpoint_file(path)
    assert not isinstance(info.value, CheckpointError)
