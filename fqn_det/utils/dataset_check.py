"""A clear error for a dataloader whose dataset has no samples.

mmengine fails on an empty dataset with ``ValueError: need at least one array
to concatenate`` (serializing an empty data list), or, without serialization,
trains zero iterations; the calibration hook then finds no batch. An
annotation file with zero images and one whose images all lack annotations
(``filter_empty_gt=True`` drops them) both end up there.
"""
from __future__ import annotations

import copy
from typing import Optional


class EmptyDatasetError(ValueError):
    """A dataset with no samples: no images, or every image removed by ``filter_cfg``."""


def empty_dataset_error(dataloader) -> Optional[EmptyDatasetError]:
    """The error describing ``dataloader``'s (config's) dataset if it is empty, else None.

    Re-reads the annotation file (only called on the error path).
    """
    ds_cfg = dataloader.get('dataset') if isinstance(dataloader, dict) else None
    if not isinstance(ds_cfg, dict) or not ds_cfg.get('ann_file'):
        return None
    from mmengine.registry import DATASETS
    try:
        ds = DATASETS.build(dict(copy.deepcopy(ds_cfg), lazy_init=True))
        ds.data_list = raw = ds.load_data_list()
        kept = ds.filter_data()
    except Exception:  # cannot tell; the caller re-raises its own error
        return None
    if kept:
        return None
    name = f"{type(ds).__name__} ({ds.ann_file})"
    if not raw:
        return EmptyDatasetError(f'the dataset is empty: {name} lists no images')
    bare = sum(1 for d in raw if not d.get('instances'))
    return EmptyDatasetError(
        f'the dataset is empty: filter_cfg={ds.filter_cfg} removed all {len(raw)} images of {name}; '
        f'{bare} of them have no annotations (filter_empty_gt=True drops images without annotations)')


def checked_build_dataloader(dataloader, seed=None, diff_rank_seed=False):
    """``Runner.build_dataloader``, raising :class:`EmptyDatasetError` for an empty dataset."""
    from mmengine.runner import Runner
    try:
        loader = Runner.build_dataloader(dataloader, seed=seed, diff_rank_seed=diff_rank_seed)
    except ValueError as e:  # mmengine cannot serialize an empty data list
        err = empty_dataset_error(dataloader)
        if err is None:
            raise
        raise err from e
    dataset = getattr(loader, 'dataset', None)
    if hasattr(dataset, '__len__') and len(dataset) == 0:
        raise empty_dataset_error(dataloader) or EmptyDatasetError(
            f'the dataset is empty: {type(dataset).__name__} has no samples')
    return loader
