"""``--cfg-options`` that point the synthetic reference configs at a generated dataset."""
from __future__ import annotations

from pathlib import Path


def synthetic_data_options(data, img_size: int, num_workers: int = 2) -> dict:
    """Data roots, annotation files, worker count and image scale for ``configs/fqn/*``."""
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


def reference_schedule_options(epochs: int) -> dict:
    """``--cfg-options`` for training the FP32 reference detectors for ``epochs`` epochs.

    The schedule of ``configs/fqn/_base_/schedules/fp32_12e_synthetic.py`` (warm-up, AdamW),
    stretched to ``epochs``: LR x0.1 after ``floor(3/4)`` of the epochs and again
    before the last one (one step when they coincide, none for a single epoch);
    validation and a checkpoint (the last one kept) at the end.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f'epochs must be an integer >= 1, got {epochs!r}')
    milestones = sorted(m for m in {3 * epochs // 4, epochs - 1} if 0 < m < epochs)
    return {'train_cfg.max_epochs': epochs, 'train_cfg.val_interval': epochs,
            'param_scheduler.1.end': epochs, 'param_scheduler.1.milestones': milestones,
            'default_hooks.checkpoint.interval': 1, 'default_hooks.checkpoint.max_keep_ckpts': 1}
