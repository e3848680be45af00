"""Version guards of the compat patches: applied on the pinned versions, skipped or refused on others."""
import warnings
from types import SimpleNamespace

import pytest

from fqn_det import compat
from fqn_det.compat import (checkpoint_loader, dataloader_workers, file_backend, guard, runner_dataloader,
                            runner_resume, sampler_buckets, ssd_head)

PATCHES = (checkpoint_loader, file_backend, runner_dataloader, dataloader_workers, sampler_buckets, ssd_head,
           runner_resume)


@pytest.fixture
def fresh(monkeypatch):
    """Forget which patches warned and which are installed (restored after the test)."""
    monkeypatch.setattr(guard, '_WARNED', set())
    monkeypatch.setattr(checkpoint_loader, '_DONE', False)
    monkeypatch.setattr(file_backend, '_DONE', False)


def fake_versions(monkeypatch, **versions):
    real = guard.installed_version
    monkeypatch.setattr(guard, 'installed_version', lambda p: versions.get(p, real(p)))


def test_version_arithmetic():
    assert guard.release('2.13.0+cpu') == (2, 13, 0)
    assert guard.in_range('2.13.0+cpu', '2.6', '2.14')
    assert guard.in_range('0.10.7', '0.10', '0.11')
    assert not guard.in_range('0.11.0', '0.10', '0.11')
    assert not guard.in_range('2.5.1', '2.6', '2.14')
    assert guard.in_range('3.3.0', '3.0', '3.4') and not guard.in_range('3.4.0rc1', '3.0', '3.4')
    with pytest.raises(ValueError, match='not a version'):
        guard.release('dev')


@pytest.mark.parametrize('patch', PATCHES, ids=lambda m: m.NAME)
def test_every_patch_supports_the_pinned_versions(patch):
    assert guard.mismatches(patch.REQUIRES) == {}, patch.NAME


def test_install_applies_on_the_pinned_versions(fresh):
    from mmengine.fileio import get_file_backend
    from mmengine.runner import CheckpointLoader

    from fqn_det.utils.atomic_backend import AtomicLocalBackend
    from fqn_det.utils.checkpoint import load_from_local
    with warnings.catch_warnings():
        warnings.simplefilter('error', guard.CompatWarning)
        assert compat.install() == {'checkpoint-loader': True, 'atomic-local-backend': True,
                                    'ssd-head-loss-cls': True}
    assert isinstance(get_file_backend('/tmp/x.pth'), AtomicLocalBackend)
    assert CheckpointLoader._schemes[''] is load_from_local
    runner = SimpleNamespace()
    assert compat.patch_runner_dataloader(runner)
    assert runner.build_dataloader.__name__ == 'checked_build_dataloader'


def test_other_mmengine_warns_once_and_skips(fresh, monkeypatch):
    fake_versions(monkeypatch, mmengine='0.11.0')
    calls = []
    import mmengine.fileio
    monkeypatch.setattr(mmengine.fileio, 'register_backend', lambda *a, **k: calls.append(a))
    with pytest.warns(guard.CompatWarning, match=r"'atomic-local-backend' patch was written for mmengine "
                      r'>=0.10,<0.11; found mmengine 0.11.0\. Skipped: .*truncated checkpoint'):
        assert file_backend.install_atomic_local_backend() is False
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the second time: skipped without a second warning
        assert file_backend.install_atomic_local_backend() is False
    assert calls == []
    runner = SimpleNamespace()
    with pytest.warns(guard.CompatWarning, match='runner-build-dataloader'):
        assert compat.patch_runner_dataloader(runner) is False
    assert not hasattr(runner, 'build_dataloader')


def test_other_torch_skips_the_checkpoint_loader(fresh, monkeypatch):
    fake_versions(monkeypatch, torch='2.5.1')
    import torch
    added = []
    monkeypatch.setattr(torch.serialization, 'add_safe_globals', lambda g: added.append(g))
    with pytest.warns(guard.CompatWarning, match="'checkpoint-loader'.*found torch 2.5.1"):
        assert compat.install()['checkpoint-loader'] is False
    assert added == []


def test_other_torch_skips_the_worker_shutdown(fresh, monkeypatch):
    fake_versions(monkeypatch, torch='3.0.0')
    loop = SimpleNamespace(dataloader=SimpleNamespace(_iterator=object()))
    with pytest.warns(guard.CompatWarning, match='dataloader-worker-shutdown'):
        assert compat.release_dataloader_workers(SimpleNamespace(_train_loop=loop)) == 0


def test_other_mmdet_refuses_to_skip_the_sampler_buckets(fresh, monkeypatch):
    from mmdet.datasets.samplers import AspectRatioBatchSampler
    from torch.utils.data import SequentialSampler
    sampler = AspectRatioBatchSampler.__new__(AspectRatioBatchSampler)
    sampler._aspect_ratio_buckets = [[1], []]
    loader = SimpleNamespace(batch_sampler=sampler)
    fake_versions(monkeypatch, mmdet='3.4.0')
    with pytest.raises(guard.CompatError, match=r"'sampler-buckets' patch was written for mmdet >=3.0,<3.4; "
                       r'found mmdet 3.4.0\. Running without it is unsafe'):
        compat.release_partial_epoch(loader)
    # a batch sampler that is not mmdet's has no buckets to empty: nothing to refuse
    compat.release_partial_epoch(SimpleNamespace(batch_sampler=SequentialSampler([1, 2])))
    monkeypatch.undo()
    compat.release_partial_epoch(loader)
    assert sampler._aspect_ratio_buckets == [[], []]


def test_building_a_model_installs_nothing(fresh, monkeypatch):
    """The patches are installed by the tools and the plugin's import, never by a constructor."""
    from conftest import build_quantized, tiny_model_cfg
    monkeypatch.setattr(checkpoint_loader, 'install_checkpoint_loader', lambda: pytest.fail('installed'))
    monkeypatch.setattr(file_backend, 'install_atomic_local_backend', lambda: pytest.fail('installed'))
    build_quantized(tiny_model_cfg('retina'))
    assert checkpoint_loader._DONE is False and file_backend._DONE is False
