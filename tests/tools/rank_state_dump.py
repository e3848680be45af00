"""Test-only hook: every rank saves the model state it holds after training (rank_<r>.pth)."""
import os.path as osp

import torch
from mmdet.registry import HOOKS
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper


@HOOKS.register_module()
class RankStateDumpHook(Hook):
    priority = 'LOWEST'

    def after_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                   osp.join(runner.work_dir, f'rank_{get_rank()}.pth'))
