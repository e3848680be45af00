"""The registered model wrapper: an ordinary mmdet detector config + a quant config.

Usage in an mmdet config::

    model = dict(type='QuantizedDetector', detector=<any supported mmdet detector>,
                 quant_cfg=dict(weight=dict(bits=4), act=dict(bits=4)))
    load_from = '<an ordinary full-precision mmdet checkpoint>'

The wrapper builds the float detector and converts it (the two share every
tensor). Its ``state_dict`` loader accepts either a quantized checkpoint of this
very model or an ordinary float checkpoint of the inner detector (as mmengine's
``load_from`` passes it), and in both cases refuses missing, unexpected or
mis-shaped keys with an error instead of the runner's warnings.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Union

import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.model import BaseModel
from torch import Tensor

from ..convert import iter_quantizers, quantize_detector
from ..quant import QuantConfig
from . import quant_scheme


class CheckpointMismatchError(RuntimeError):
    """A checkpoint that does not fit the model built from the config."""


def _keys_summary(keys: List[str], limit: int = 8) -> str:
    keys = sorted(keys)
    more = f' ... (+{len(keys) - limit} more)' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


@MODELS.register_module()
class QuantizedDetector(BaseModel):
    """FQN fully quantized wrapper around an mmdet detector.

    Args:
        detector (dict): Config of the float mmdet detector (RetinaNet, Faster R-CNN).
        quant_cfg (dict, optional): Quantization settings, see :class:`QuantConfig`.
        init_cfg (dict, optional): Unused; weights come from the float detector's
            own init and ``load_from``.
    """

    def __init__(self, detector: dict, quant_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        float_det = MODELS.build(detector)
        super().__init__(data_preprocessor=float_det.data_preprocessor, init_cfg=init_cfg)
        self.quant_config = QuantConfig.from_dict(quant_cfg)
        self.detector = quantize_detector(float_det, self.quant_config)
        # The float detector is kept (unregistered) to initialize and to map
        # float checkpoint keys; it shares all tensors with ``self.detector``.
        self.__dict__['float_detector'] = float_det
        self.register_buffer('calibrated', torch.tensor(0, dtype=torch.uint8))
        # bits, symmetry, granularity and overrides, checked when a quantized checkpoint loads
        self.register_buffer(quant_scheme.BUFFER, quant_scheme.encode(self.scheme_record()))

    # -- mmengine model API ------------------------------------------------
    def forward(self, inputs: Tensor, data_samples: Optional[List[DetDataSample]] = None,
                mode: str = 'tensor') -> Union[Dict[str, Tensor], list, tuple]:
        return self.detector(inputs, data_samples, mode)

    def init_weights(self) -> None:
        """Initialize as the float detector would be (tensors are shared)."""
        self.float_detector.init_weights()

    @property
    def with_rpn(self) -> bool:
        return getattr(self.detector, 'with_rpn', False)

    def quantizers(self):
        return iter_quantizers(self.detector)

    def scheme_record(self) -> dict:
        """This model's quantization scheme (also ``meta['quant_scheme']`` of its checkpoints)."""
        return quant_scheme.scheme_record(self.quant_config, self.detector)

    # -- checkpoints -------------------------------------------------------
    def float_to_quant_keys(self) -> Dict[str, str]:
        """Float checkpoint key -> key in this model's ``state_dict`` (same tensor)."""
        by_id = {id(t): k for k, t in self.state_dict(keep_vars=True).items()}
        out = {}
        for k, t in self.float_detector.state_dict(keep_vars=True).items():
            if id(t) in by_id:
                out[k] = by_id[id(t)]
        return out

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        own = self.state_dict(keep_vars=True)
        given = {k[len(prefix):] for k in state_dict if k.startswith(prefix)}
        f2q = self.float_to_quant_keys()
        is_float = not any(k in own for k in given) and any(k in f2q for k in given)
        if is_float:
            missing = [k for k in set(f2q) - given if not k.endswith('num_batches_tracked')]
            unexpected = given - set(f2q)
            self._raise_mismatch('float detector', missing, unexpected)
            for fk in given:
                state_dict[prefix + f2q[fk]] = state_dict.pop(prefix + fk)
            # Quantizer state cannot be in a float checkpoint: keep the current values.
            for k, t in own.items():
                state_dict.setdefault(prefix + k, t.detach())
        else:
            self._check_scheme(state_dict, prefix)
            missing = set(own) - given
            unexpected = given - set(own)
            self._raise_mismatch('quantized model', missing, unexpected)
        bad = [f'{k}: checkpoint {tuple(state_dict[prefix + k].shape)} vs model {tuple(t.shape)}'
               for k, t in own.items()
               if prefix + k in state_dict and tuple(state_dict[prefix + k].shape) != tuple(t.shape)]
        if bad:
            raise CheckpointMismatchError(
                f'checkpoint does not match the model built from the config '
                f'({type(self.float_detector).__name__}); shape mismatch: {_keys_summary(bad, 4)}')
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _check_scheme(self, state_dict, prefix: str) -> None:
        """Refuse a quantized checkpoint of another scheme (before any shape check names a symptom)."""
        key = prefix + quant_scheme.BUFFER
        own = getattr(self, quant_scheme.BUFFER)
        if key in state_dict:
            quant_scheme.check_same_scheme(quant_scheme.decode(state_dict[key]), self.scheme_record())
        quant_scheme.check_zero_points(state_dict, prefix + 'detector.', self.detector)
        state_dict[key] = own.detach().clone()  # a checkpoint written before the record existed

    def _raise_mismatch(self, kind: str, missing, unexpected) -> None:
        if not missing and not unexpected:
            return
        parts = []
        if missing:
            parts.append(f'missing keys: {_keys_summary(list(missing))}')
        if unexpected:
            parts.append(f'unexpected keys: {_keys_summary(list(unexpected))}')
        raise CheckpointMismatchError(
            f'checkpoint does not match the {kind} built from the config '
            f'({type(self.float_detector).__name__}); ' + '; '.join(parts))
