"""Shared command-line plumbing for ``tools/*.py`` (mmdet's argument conventions)."""
from __future__ import annotations

import argparse
import difflib
import os
import os.path as osp

from mmengine.config import Config, DictAction


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--work-dir', help='the dir to save logs, checkpoints and metrics')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, e.g. model.quant_cfg.weight.bits=8 '
        'model.quant_cfg.calib.num_batches=5 train_dataloader.dataset.data_root=data/coco/')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def check_option_keys(cfg: Config, options: dict) -> None:
    """Refuse a ``--cfg-options`` key that is absent but a near miss of an existing one.

    mmengine adds unknown keys silently, so ``train_cfg.max_epoch=3`` would train
    for the configured number of epochs. Keys with no close sibling (genuinely
    new settings) are allowed.
    """
    root = dict(cfg.items())  # Config itself is not a dict
    for key in options:
        node, path = root, []
        for part in key.split('.'):
            if isinstance(node, (list, tuple)) and part.isdigit():
                node = node[int(part)] if int(part) < len(node) else None
            elif isinstance(node, dict):
                if part not in node:
                    close = difflib.get_close_matches(part, [str(k) for k in node], n=1, cutoff=0.75)
                    if close:
                        where = '.'.join(path) or 'the config'
                        raise SystemExit(f"error: --cfg-options key '{key}': {where} has no '{part}'; "
                                         f"did you mean '{close[0]}'?")
                    break
                node = node[part]
            else:
                break
            path.append(part)


def load_config(args: argparse.Namespace) -> Config:
    """Config from ``args.config`` with ``--cfg-options``, launcher and work dir applied."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if not osp.isfile(args.config):
        raise SystemExit(f'error: config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        check_option_keys(cfg, args.cfg_options)
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def check_resumable(work_dir: str) -> None:
    """``--resume`` without a path: the work dir must name an existing checkpoint.

    mmengine only logs "Did not find last_checkpoint" and trains from the
    config's initial weights (random ones for a quantized config, which has no
    ``load_from`` then), so an interrupted run that wrote no checkpoint yet
    must be an error.
    """
    last = osp.join(work_dir, 'last_checkpoint')
    ckpt = None
    if osp.isfile(last):
        with open(last) as f:
            ckpt = f.read().strip()
        if ckpt and osp.isfile(ckpt):
            return
    found = f'{last} names {ckpt!r}, which does not exist' if ckpt is not None else f'{last} does not exist'
    raise SystemExit(f'error: --resume: nothing to resume in {work_dir} ({found}). To start this run, drop '
                     '--resume (a quantized config needs --cfg-options load_from=FP32_CHECKPOINT), or '
                     'resume from a checkpoint file: --resume PATH')


def build_runner(cfg: Config):
    from mmdet.registry import RUNNERS
    from mmengine.runner import Runner

    from .. import compat
    from .dist_env import prepare_cpu_distributed
    compat.install()
    prepare_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    compat.patch_runner_dataloader(runner)  # EmptyDatasetError naming the annotation file
    return runner


def is_exported_model(path) -> bool:
    """An exported integer model (``.fqnint``, ``.onnx`` or an export directory)?"""
    from pathlib import Path
    p = Path(path)
    return p.suffix in ('.fqnint', '.onnx') or (p / 'model.fqnint').is_file()


def use_exported_model(cfg: Config, path) -> None:
    """Evaluate ``path`` (integer engine for .fqnint / export dirs, onnxruntime for .onnx) with ``cfg``."""
    from pathlib import Path
    backend = 'onnxruntime' if Path(path).suffix == '.onnx' else 'engine'
    det = cfg.model.get('detector', cfg.model)
    cfg.model = dict(type='IntegerDetector', model_file=str(path), backend=backend, test_cfg=det.get('test_cfg'),
                     config_detector=det.get('type'))
    cfg.load_from = None
