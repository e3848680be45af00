"""The quantization scheme a checkpoint was written with, and the check against a config.

A quantized checkpoint carries its scheme twice: in the model's
``quant_scheme`` buffer (UTF-8 JSON bytes, so every ``state_dict`` has it) and
in the checkpoint's ``meta['quant_scheme']``. Loading it into a model built
with another scheme (bits, symmetry, granularity, per-module overrides) is
refused: the integer ranges would be read on the wrong grid. A float
checkpoint has no scheme and loads into any.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Optional

import torch
from torch import Tensor

from ..quant import ActQuantizer
from ..quant.fake_quantize import WeightQuantizer

BUFFER = 'quant_scheme'


class QuantSchemeMismatchError(RuntimeError):
    """A quantized checkpoint written with another quantization scheme than the config's."""


def scheme_record(quant_config, detector) -> Dict[str, Any]:
    """The scheme settings of ``quant_config`` and each quantizer's resolved scheme in ``detector``."""
    cfg = quant_config.to_dict()
    modules = {n: [m.scheme.bits, m.scheme.symmetric, m.scheme.per_channel]
               for n, m in detector.named_modules() if isinstance(m, (WeightQuantizer, ActQuantizer))}
    return dict(weight=cfg['weight'], act=dict(cfg['act']), overrides=cfg['overrides'], modules=modules)


def encode(record: Dict[str, Any]) -> Tensor:
    return torch.tensor(list(json.dumps(record, sort_keys=True).encode()), dtype=torch.uint8)


def decode(t: Tensor) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(bytes(t.to(torch.uint8).tolist()).decode())
    except (ValueError, UnicodeDecodeError):
        return None


def _fmt(bits, sym, pc) -> str:
    return f"{bits}-bit {'symmetric' if sym else 'asymmetric'} {'per-channel' if pc else 'per-tensor'}"


def check_same_scheme(saved: Optional[Dict[str, Any]], own: Dict[str, Any]) -> None:
    """Raise :class:`QuantSchemeMismatchError` naming the settings where ``saved`` and ``own`` differ."""
    if saved is None:
        raise QuantSchemeMismatchError(f'the checkpoint\'s {BUFFER} record is unreadable (corrupt checkpoint)')
    diffs = []
    for key in ('weight', 'act'):
        for k in sorted(set(saved.get(key, {})) | set(own[key])):
            a, b = saved.get(key, {}).get(k), own[key].get(k)
            if a != b:
                diffs.append(f'quant_cfg.{key}.{k}: checkpoint {a!r}, config {b!r}')
    if saved.get('overrides') != own['overrides']:
        diffs.append(f"quant_cfg.overrides: checkpoint {saved.get('overrides')!r}, config {own['overrides']!r}")
    s_mod, o_mod = saved.get('modules', {}), own['modules']
    mods = [f'{n}: checkpoint {_fmt(*s_mod[n])}, config {_fmt(*o_mod[n])}'
            for n in sorted(o_mod) if n in s_mod and list(s_mod[n]) != list(o_mod[n])]
    if mods:
        diffs.append(f'{len(mods)} quantizer(s) differ, e.g. ' + '; '.join(mods[:3]))
    if diffs:
        raise QuantSchemeMismatchError(
            'the checkpoint was quantized with another scheme than the config\'s: ' + '; '.join(diffs)
            + '. Use the config (and --cfg-options) it was trained with; to train another scheme, start '
            'from the float checkpoint (load_from)')


def check_zero_points(state_dict: dict, prefix: str, detector) -> None:
    """Every loaded zero-point must lie on its quantizer's integer grid (checkpoints without a record)."""
    for n, m in detector.named_modules():
        if not isinstance(m, (WeightQuantizer, ActQuantizer)):
            continue
        z = state_dict.get(f'{prefix}{n}.zero_point')
        if z is None or not z.numel():
            continue
        lo, hi = int(z.min()), int(z.max())
        if lo < m.scheme.quant_min or hi > m.scheme.quant_max:
            raise QuantSchemeMismatchError(
                f'{n}: the checkpoint\'s zero-points span [{lo}, {hi}], outside the config\'s '
                f'{m.scheme} grid [{m.scheme.quant_min}, {m.scheme.quant_max}]: the checkpoint was quantized '
                'with another scheme; use the config it was trained with')
