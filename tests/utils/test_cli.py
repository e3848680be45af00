"""--cfg-options key checks: typos are errors, new keys pass."""
import pytest
from mmengine.config import Config

from fqn_det.utils.cli import check_option_keys


def _cfg():
    return Config(dict(train_cfg=dict(max_epochs=3, val_interval=1), model=dict(
        type='QuantizedDetector', quant_cfg=dict(calib=dict(num_batches=20)),
        detector=dict(bbox_head=dict(norm_cfg=None, num_classes=5))),
        train_dataloader=dict(dataset=dict(pipeline=[dict(type='A'), dict(type='Resize', scale=(1, 1))]))))


@pytest.mark.parametrize('key, hint', [('train_cfg.max_epoch', "did you mean 'max_epochs'"),
                                       ('model.detector.bbox_head.num_clases', "did you mean 'num_classes'"),
                                       ('model.quant_cfg.calib.num_batch', "did you mean 'num_batches'"),
                                       ('trian_cfg.max_epochs', "did you mean 'train_cfg'")])
def test_typos_are_errors(key, hint):
    with pytest.raises(SystemExit, match=hint):
        check_option_keys(_cfg(), {key: 1})


@pytest.mark.parametrize('key', ['train_cfg.max_epochs', 'model.detector.bbox_head.norm_cfg.type',
                                 'train_dataloader.dataset.pipeline.1.scale', 'load_from',
                                 'default_hooks.checkpoint.backend_args', 'model.quant_cfg.overrides'])
def test_existing_and_new_keys_pass(key):
    check_option_keys(_cfg(), {key: 1})
