import time
from types import SimpleNamespace

import pytest
from torch.utils.data import DataLoader

from fqn_det.compat.dataloader_workers import release_dataloader_workers, releasing_workers


def _loop(persistent=True, workers=2):
    loader = DataLoader(list(range(16)), batch_size=4, num_workers=workers, persistent_workers=persistent)
    assert sum(len(b) for b in loader) == 16  # one full epoch: the persistent workers stay alive
    return SimpleNamespace(dataloader=loader)


def test_release_ends_persistent_workers_promptly():
    train, val = _loop(), _loop()
    runner = SimpleNamespace(_train_loop=train, _val_loop=val, _test_loop=dict(type='TestLoop'))  # unbuilt loop
    procs = train.dataloader._iterator._workers + val.dataloader._iterator._workers
    assert all(p.is_alive() for p in procs)
    t = time.monotonic()
    assert release_dataloader_workers(runner) == 4
    # torch alone joins each persistent worker for 5 s (pytorch#81794): 20 s here
    assert time.monotonic() - t < 4.5
    assert not any(p.is_alive() for p in procs)
    assert train.dataloader._iterator is None and val.dataloader._iterator is None
    assert release_dataloader_workers(runner) == 0  # idempotent
    assert sum(len(b) for b in train.dataloader) == 16  # the loader still works: new workers


@pytest.mark.parametrize('persistent,workers', [(False, 2), (False, 0)])
def test_release_ignores_loaders_without_live_workers(persistent, workers):
    loop = _loop(persistent, workers)
    assert release_dataloader_workers(SimpleNamespace(_train_loop=loop)) == 0


def test_releasing_workers_releases_on_error():
    loop = _loop()
    procs = loop.dataloader._iterator._workers
    with pytest.raises(RuntimeError):
        with releasing_workers(SimpleNamespace(_train_loop=loop)):
            raise RuntimeError('training failed')
    assert not any(p.is_alive() for p in procs)
