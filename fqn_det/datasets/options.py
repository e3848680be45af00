"""``--cfg-options`` that point the synthetic reference configs at a generated dataset."""
from __future__ import annotations

from pathlib import Path


def synthetic_data_options(data, img_size: int, num_workers: int = 2) -> dict:
    """Data roots, annotation files, worker count and image scale for ``configs/synthetic/*``."""
    data = Path(data)
    opts = {}
    for split in ('train', 'val', 'test'):
        opts[f'{split}_dataloader.dataset.data_root'] = str(data) + '/'
        opts[f'{split}_dataloader.num_workers'] = num_workers
        if num_workers == 0:
            opts[f'{split}_dataloader.persistent_workers'] = False
    for ev in ('val', 'test'):
        opts[f'{ev}_evaluator.ann_file'] = str(data / 'annotations' / 'instances_val.json')
    # pipeline index of Resize: after LoadImage+LoadAnnotations in train, after LoadImage in test
    for pipe, idx in (('train_dataloader.dataset.pipeline', 2), ('val_dataloader.dataset.pipeline', 1),
                      ('test_dataloader.dataset.pipeline', 1)):
        opts[f'{pipe}.{idx}.scale'] = (img_size, img_size)
    return opts
