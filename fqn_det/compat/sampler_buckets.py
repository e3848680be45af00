"""Leave a dataloader as a full epoch would after reading only its first batches (plain Python).

FQN calibration and post-training quantization read the first n batches of the
training loader and stop. mmdet's aspect-ratio batch samplers
(``AspectRatioBatchSampler``, ``TrackAspectRatioBatchSampler``,
``MultiDataAspectRatioBatchSampler``) fill per-group buckets as instance state
and empty a full bucket only when their generator is resumed after yielding
it, which a stopped pass never does. The last yielded batch then stays in its
bucket, and the loader's next pass starts from a bucket that is never exactly
full again: every batch of that aspect-ratio group comes out only at the end
of the pass, where groups are mixed, and the stale batch comes again (one
batch more than ``len(loader)``). :func:`release_partial_epoch` empties the
buckets.

The bucket attributes are mmdet's private state, so this is version-guarded;
on another mmdet it raises :class:`~fqn_det.compat.guard.CompatError` rather
than let QAT start from a stale batch.
"""
from __future__ import annotations

from .guard import check

#: Batch-sampler attributes that hold partly filled batches between ``__iter__`` calls.
BUCKET_ATTRS = ('_aspect_ratio_buckets', '_buckets')
NAME = 'sampler-buckets'
#: mmdet.datasets.samplers' AspectRatioBatchSampler and relatives keep their buckets in BUCKET_ATTRS
REQUIRES = {'mmdet': ('3.0', '3.4')}
SKIPPED = ("a stopped-early pass (calibration, PTQ) would leave a batch in mmdet's batch-sampler buckets: the "
           'next epoch would repeat it and keep its aspect-ratio group to the end, unlike an uninterrupted run')


def release_partial_epoch(dataloader) -> None:
    """Forget the batches a stopped-early pass left in ``dataloader``'s batch sampler (in place)."""
    if type(getattr(dataloader, 'batch_sampler', None)).__module__.startswith('mmdet.'):
        check(NAME, REQUIRES, SKIPPED, unsafe=True)
    sampler = getattr(dataloader, 'batch_sampler', None)
    for attr in BUCKET_ATTRS:
        buckets = getattr(sampler, attr, None)
        if isinstance(buckets, list) and all(isinstance(b, list) for b in buckets):
            for b in buckets:
                b.clear()
