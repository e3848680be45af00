"""Distributed launch on machines without CUDA (gloo), for mmengine 0.10.7.

mmengine's ``pytorch`` launcher calls ``torch.cuda.set_device`` and wraps the
model in DDP with ``device_ids=[LOCAL_RANK]``; both fail on a CPU-only build.
On such machines the tools initialize the gloo process group themselves (the
runner then skips its own initialization) and wrap without device ids. On
CUDA machines nothing changes.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def prepare_cpu_distributed(cfg) -> bool:
    """Adapt ``cfg`` (and init gloo) for a CPU-only distributed run; returns True if it did."""
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher != 'pytorch':
        raise SystemExit(f"error: --launcher {launcher} needs CUDA; on a CPU-only machine use "
                         "--launcher pytorch (torchrun), which runs on the gloo backend")
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT') if k not in os.environ]
    if missing:
        raise SystemExit(f'error: --launcher pytorch expects torchrun\'s environment ({", ".join(missing)} '
                         'not set); start with tools/dist_train.sh CONFIG NUM_PROCS or torchrun')
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        dist_cfg['backend'] = 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(backend=dist_cfg['backend'])
    wrapper = dict(cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel',
                                                         broadcast_buffers=False))
    wrapper.setdefault('device_ids', None)  # CPU module: DDP must not be given device ids
    cfg.model_wrapper_cfg = wrapper
    return True
