"""Real-photo ImageNet evaluation of a quantized classifier against its FP32 original.

There is no ImageNet validation set offline, so the samples are random square
crops (with horizontal flips) of the photographs scikit-image ships
(``skimage.data``), resized and normalized as torchvision's ImageNet models
expect. The measures compare a quantized model with the FP32 one on the same
samples: logit SQNR (dB) and top-1 agreement.
"""
from __future__ import annotations

import math
from typing import List, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: Photographs in scikit-image's wheel (no download); grey ones are repeated over RGB.
PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'motorcycle_left', 'motorcycle_right', 'hubble_deep_field',
          'camera', 'coins')
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _photo(name: str) -> np.ndarray:
    try:
        import skimage.data as data
    except ImportError:
        raise ImportError('scikit-image is not installed: run scripts/setup_env.sh') from None
    if name.startswith('motorcycle_'):
        img = data.stereo_motorcycle()[0 if name.endswith('left') else 1]
    else:
        img = getattr(data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3]


def photo_crops(n: int, size: int = 224, seed: int = 0, photos: Sequence[str] = PHOTOS,
                min_scale: float = 0.35) -> Tensor:
    """``(n, 3, size, size)`` ImageNet-normalized crops of real photos.

    Sample ``i`` comes from photo ``i % len(photos)``: a square crop of side
    ``U(min_scale, 1)`` times the short side at a uniform position, flipped
    left-right with probability 1/2, resized bilinearly (antialiased).
    """
    if n < 1:
        raise ValueError(f'n must be >= 1, got {n}')
    rng = np.random.default_rng(seed)
    imgs = [torch.from_numpy(_photo(p)).permute(2, 0, 1).float().div(255) for p in photos]
    mean = torch.tensor(IMAGENET_MEAN).reshape(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).reshape(3, 1, 1)
    out: List[Tensor] = []
    for i in range(n):
        img = imgs[i % len(imgs)]
        h, w = img.shape[1:]
        side = max(8, int(round(min(h, w) * rng.uniform(min_scale, 1.0))))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = img[:, top:top + side, left:left + side]
        if rng.random() < 0.5:
            crop = crop.flip(2)
        crop = F.interpolate(crop[None], size=(size, size), mode='bilinear', align_corners=False, antialias=True)[0]
        out.append((crop - mean) / std)
    return torch.stack(out)


def logit_sqnr(ref: Tensor, out: Tensor) -> float:
    """``10 log10(sum ref^2 / sum (out - ref)^2)`` in dB over all samples (inf when equal)."""
    noise = float((out.double() - ref.double()).pow(2).sum())
    signal = float(ref.double().pow(2).sum())
    return math.inf if noise == 0 else 10.0 * math.log10(signal / noise)


def top1_agreement(ref: Tensor, out: Tensor) -> float:
    """Fraction of samples whose top-1 class equals the reference's."""
    return float((ref.argmax(1) == out.argmax(1)).double().mean())
