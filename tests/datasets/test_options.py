"""Config options for the synthetic reference task: data paths and the FP32 reference schedule."""
from pathlib import Path

import pytest
from mmengine.config import Config

from fqn_det.datasets import reference_schedule_options, synthetic_data_options

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize('epochs,milestones', [(1, []), (2, [1]), (4, [3]), (6, [4, 5]),
                                               (11, [8, 10]), (20, [15, 19])])
def test_reference_schedule(epochs, milestones):
    opts = reference_schedule_options(epochs)
    assert opts['param_scheduler.1.milestones'] == milestones
    assert opts['train_cfg.max_epochs'] == opts['train_cfg.val_interval'] == opts['param_scheduler.1.end'] == epochs


def test_reference_schedule_applies_to_the_fp32_configs(tmp_path):
    for name in ('retinanet_r18-tiny_fpn_12e_synthetic.py', 'faster-rcnn_r18-tiny_fpn_12e_synthetic.py'):
        cfg = Config.fromfile(str(REPO / 'configs' / 'fqn' / name))
        cfg.merge_from_dict({**synthetic_data_options(tmp_path, 96, num_workers=0), **reference_schedule_options(11)})
        assert cfg.train_cfg.max_epochs == 11
        step = cfg.param_scheduler[1]
        assert step.type == 'MultiStepLR' and step.milestones == [8, 10] and step.end == 11
        assert cfg.train_dataloader.num_workers == 0 and not cfg.train_dataloader.persistent_workers
        assert cfg.train_dataloader.dataset.pipeline[2].scale == (96, 96)
        assert cfg.val_evaluator.ann_file == str(tmp_path / 'annotations' / 'instances_val.json')


@pytest.mark.parametrize('bad', [0, -1, 2.5, True, '3'])
def test_reference_schedule_bad_epochs(bad):
    with pytest.raises(ValueError, match='epochs must be an integer >= 1'):
        reference_schedule_options(bad)
