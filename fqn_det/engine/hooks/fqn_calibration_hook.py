"""FQN calibration before quantization-aware fine-tuning starts."""
from __future__ import annotations

import json
import os.path as osp
import time
import warnings
from typing import Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.utils import ProgressBar
from mmdet.registry import HOOKS

from ...nn import refresh_weight_qparams
from ...quant import iter_act_quantizers, start_calibration
from ...quant.distributed import assert_ranks_agree
from ...quant.calibration import abort_calibration, finish_calibration
from ...compat.runner_resume import resumed_nothing
from ...compat.sampler_buckets import release_partial_epoch
from ...utils.atomic import atomic_write_bytes


@HOOKS.register_module()
class FQNCalibrationHook(Hook):
    """Calibrate activation ranges on n training batches (FQN sec. 3.3).

    Before training, runs ``n`` batches of the (shuffled) training loader
    through the model in eval mode without gradients, collecting a histogram
    per activation quantizer, and sets each range to the ``[1 - gamma, gamma]``
    percentiles. Afterwards ranges follow the EMA during training. A model that
    is already calibrated (e.g. resumed) is left alone.

    Args:
        num_batches (int, optional): n; defaults to the model's
            ``quant_cfg.calib.num_batches`` (20).
        gamma (float, optional): One percentile for every quantizer; by default each
            uses its own (``quant_cfg.calib.gamma``, or a per-module ``gamma`` override).
        save_ranges (bool): Write ``calibration_ranges.json`` to the work dir (atomically,
            with the first checkpoint).
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, num_batches: Optional[int] = None, gamma: Optional[float] = None,
                 save_ranges: bool = True) -> None:
        if num_batches is not None and (isinstance(num_batches, bool) or not isinstance(num_batches, int)
                                        or num_batches < 1):
            raise ValueError(f'FQNCalibrationHook num_batches must be an integer >= 1, got {num_batches!r}')
        if gamma is not None and not 0.5 < gamma <= 1.0:
            raise ValueError(f'FQNCalibrationHook gamma must be in (0.5, 1], got {gamma!r}')
        self.num_batches = num_batches
        self.gamma = gamma
        self.save_ranges = save_ranges

    def before_train(self, runner) -> None:
        if resumed_nothing(runner):
            # e.g. mmdet's tools/train.py --resume before the run's first checkpoint: mmengine drops
            # load_from and would quantize the randomly initialized detector
            raise RuntimeError(f'resume was requested but {runner.work_dir} has no checkpoint to resume from, '
                               'so training would start from random weights. Drop --resume (with load_from='
                               'FP32_CHECKPOINT), or resume from a checkpoint file: --resume PATH')
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, 'quant_config') or not hasattr(model, 'calibrated'):
            raise TypeError(f'FQNCalibrationHook needs a QuantizedDetector model, got {type(model).__name__}')
        if bool(model.calibrated):
            runner.logger.info('FQN calibration: model already calibrated (resumed or loaded); skipped')
            return
        n = self.num_batches or model.quant_config.calib_batches
        gamma = self.gamma  # None: each quantizer's own (quant_cfg.calib.gamma or an override)
        if model.quant_config.dfq_init:
            from ...dfq.detector import apply_dfq
            rep = apply_dfq(model.detector)
            runner.logger.info(f'DFQ initialization: {len(rep.pairs)} pairs equalized in {rep.sweeps} sweeps, '
                               f'{len(rep.absorbed)} high biases absorbed')
        calibrate(runner.model, model, runner.train_dataloader, n, gamma, runner.logger)
        assert_ranks_agree(model.detector, 'calibrated activation ranges')  # no-op in one process
        if self.save_ranges and is_main_process():
            # written with the first checkpoint (atomically): a run that fails before it leaves none
            self._ranges = {name: dict(min=q.min_val.tolist(), max=q.max_val.tolist(), scale=q.scale.tolist(),
                                       zero_point=q.zero_point.tolist(), bits=q.scheme.bits)  # lists per channel
                            for name, q in iter_act_quantizers(model.detector) if q.initialized}

    def after_train_epoch(self, runner) -> None:
        """Distributed runs: every rank must hold the same ranges before the epoch's checkpoint.

        Runs on all ranks before mmengine's CheckpointHook (rank 0 only saves), so
        a checkpoint always equals what every rank holds.
        """
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if hasattr(model, 'detector'):
            refresh_weight_qparams(model.detector)
            assert_ranks_agree(model.detector, 'activation ranges at checkpoint time')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Weight scales/zero-points in the checkpoint match its weights (not the pre-step ones).

        Rank 0 only (mmengine saves there); no collective here.
        """
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if hasattr(model, 'scheme_record'):
            checkpoint.setdefault('meta', {})['quant_scheme'] = model.scheme_record()
        ranges, self._ranges = getattr(self, '_ranges', None), None
        if ranges is not None:
            text = json.dumps(ranges, indent=1).encode()
            atomic_write_bytes(osp.join(runner.work_dir, 'calibration_ranges.json'), lambda f: f.write(text))
        if hasattr(model, 'detector') and refresh_weight_qparams(model.detector):
            sd = checkpoint['state_dict']
            for k, v in model.state_dict().items():
                if '.w_quant.' in k and k in sd:
                    sd[k] = v.detach().cpu().clone()


def calibrate(runner_model, model, dataloader, n: int, gamma: Optional[float] = None, logger=None) -> int:
    """Run FQN calibration; returns the number of batches used.

    Args:
        runner_model: The model to call (possibly DDP-wrapped).
        model: The unwrapped :class:`QuantizedDetector`.
        dataloader: Training dataloader (shuffled).
        n (int): Batches to use.
        gamma (float, optional): Percentile for all quantizers (default: each its own).
        logger: Optional logger.
    """
    was_training = model.training
    model.eval()
    num_q = start_calibration(model.detector)
    bar = ProgressBar(n) if is_main_process() else None
    used = 0
    t0 = time.time()
    try:
        with torch.no_grad():
            it = iter(dataloader)
            for _ in range(n):
                try:
                    data = next(it)
                except StopIteration:
                    break
                data = model.data_preprocessor(data, False)
                runner_model(**data, mode='tensor')
                used += 1
                if bar is not None:
                    bar.update()
        if used == 0:
            raise RuntimeError('FQN calibration got no batch: the training dataloader is empty')
        if used < n:
            warnings.warn(f'FQN calibration asked for {n} batches but the training dataloader has '
                          f'only {used}; calibrating on {used}')
        finish_calibration(model.detector, gamma)
    except BaseException:
        abort_calibration(model.detector)
        raise
    finally:
        model.train(was_training)
        release_partial_epoch(dataloader)  # the first QAT epoch must be a whole one
    model.calibrated.fill_(1)
    if logger is not None:
        overridden = any('gamma' in o for o in model.quant_config.overrides) and gamma is None
        shown = gamma if gamma is not None else model.quant_config.gamma
        logger.info(f'FQN calibration: {num_q} activation ranges from {used} batches '
                    f'(gamma={shown}{" + per-module overrides" if overridden else ""}) '
                    f'in {time.time() - t0:.1f}s')
    return used
