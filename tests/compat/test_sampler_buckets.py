"""A stopped-early pass over mmdet's aspect-ratio batch sampler, and what release_partial_epoch restores."""
import torch

from conftest import DropIdx, SampleSet, aspect_ratio_loader, build_quantized, tiny_model_cfg
from fqn_det.dfq.ptq import batch_runner
from fqn_det.compat.sampler_buckets import release_partial_epoch


def _epoch(loader):
    return [b['idx'] for b in loader]


def _whole(epoch, n):
    return sorted(i for b in epoch for i in b) == list(range(n)) and all(len({i % 2 for i in b}) == 1 for b in epoch)


def test_stopped_pass_leaves_a_stale_batch_and_release_removes_it():
    loader = aspect_ratio_loader(SampleSet(12))
    it = iter(loader)
    first = [next(it)['idx'], next(it)['idx']]
    stale = _epoch(loader)  # the upstream behaviour: the last yielded batch comes again, one batch too many
    assert len(stale) == len(loader) + 1 and stale.count(first[-1]) == 2

    loader = aspect_ratio_loader(SampleSet(12))
    it = iter(loader)
    next(it), next(it)
    release_partial_epoch(loader)
    epoch = _epoch(loader)
    assert len(epoch) == len(loader) and _whole(epoch, 12)


def test_release_leaves_other_loaders_alone():
    plain = torch.utils.data.DataLoader(list(range(10)), batch_size=4)
    release_partial_epoch(plain)
    release_partial_epoch([1, 2, 3])  # not a loader at all
    assert [len(b) for b in plain] == [4, 4, 2]


def test_ptq_batch_runner_sees_the_same_batches_on_every_call():
    # bias correction and calibrated ranges call the runner several times: each call the first n batches
    model = build_quantized(tiny_model_cfg('retina'))
    model.data_preprocessor = DropIdx(model.data_preprocessor)
    seen = []
    inner = model.data_preprocessor.forward
    model.data_preprocessor.forward = lambda data, training=False: (seen.append(tuple(data['idx'])),
                                                                    inner(data, training))[1]
    loader = aspect_ratio_loader(SampleSet(12))
    run = batch_runner(model, loader, 2, seed=0)
    assert run() == 2 and run() == 2 and run() == 2
    assert seen[:2] == seen[2:4] == seen[4:6], seen
    assert _whole(_epoch(loader), 12)
