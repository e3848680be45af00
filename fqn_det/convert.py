"""Float mmdet detector -> FQN fake-quantized detector, by explicit module swap.

mmdet detectors do not trace with torch.fx (the most common failure of
FX-based tools on dense heads), so conversion walks the module tree with a
mapping from mmdet classes to quantized counterparts (:data:`QUANT_MAPPING`).
Any module with parameters that has no counterpart raises
:class:`UnsupportedModuleError` naming its path and type: nothing stays float
silently.

The float detector is left intact and shares every parameter and buffer
tensor with the quantized one, so loading float weights into either, or
initializing the float one, updates both.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Mapping, Type

from mmdet.models.backbones import MobileNetV2, ResNet, ResNeXt
from mmdet.models.dense_heads import FCOSHead, RetinaHead, RPNHead, SSDHead
from mmdet.models.detectors import SingleStageDetector, TwoStageDetector
from mmdet.models.necks import FPN, SSDNeck
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.models.roi_heads.bbox_heads import BBoxHead, ConvFCBBoxHead, Shared2FCBBoxHead, Shared4Conv1FCBBoxHead
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from mmdet.models.roi_heads.shared_heads import ResLayer
from torch import nn

from .nn import QBuilder, QConv2d, QGroupNorm, QLinear, UnsupportedModuleError, clone_as
from .nn.link import link_input_quantizers
from .nn.qfcos import QFCOSHead
from .nn.qfpn import QFPN
from .nn.qheads import QRetinaHead, QRPNHead
from .nn.qmobilenet import QMobileNetV2
from .nn.qssd import QSSDHead, QSSDNeck
from .nn.qresnet import QResNet
from .nn.qroi_head import QBBoxHead, QConvFCBBoxHead, QResLayerHead, QSingleRoIExtractor
from .quant import ActQuantizer, QuantConfig

Converter = Callable[[nn.Module, QBuilder, str], nn.Module]

#: Children of containers that hold no computation of the network itself.
_PASS_THROUGH = ('data_preprocessor',)


def _container(children: Iterable[str]) -> Converter:
    """Clone a container (detector, RoI head) and quantize the named children."""
    allowed = set(children)

    def convert(module: nn.Module, qb: QBuilder, name: str) -> nn.Module:
        q = clone_as(module, type(module))
        for child_name, child in module._modules.items():
            path = f'{name}.{child_name}' if name else child_name
            if child is None or child_name in _PASS_THROUGH:
                continue
            if child_name not in allowed:
                raise UnsupportedModuleError(path, child, f'no quantized counterpart for '
                                             f'{type(module).__name__}.{child_name} (supported children: '
                                             f'{", ".join(children)})')
            q._modules[child_name] = quantize_module(child, qb, path)
        return q

    return convert


_DETECTOR = _container(['backbone', 'neck', 'bbox_head', 'rpn_head', 'roi_head'])

#: mmdet class -> converter. Exact types: a subclass may change ``forward``.
#: Detectors are the exception (:data:`DETECTOR_BASES`): they only route data
#: between their children, which are matched exactly.
QUANT_MAPPING: Dict[Type[nn.Module], Converter] = {
    ResNet: QResNet.from_float,
    ResNeXt: QResNet.from_float,
    MobileNetV2: QMobileNetV2.from_float,
    SSDNeck: QSSDNeck.from_float,
    SSDHead: QSSDHead.from_float,
    FPN: QFPN.from_float,
    RetinaHead: QRetinaHead.from_float,
    RPNHead: QRPNHead.from_float,
    FCOSHead: QFCOSHead.from_float,
    StandardRoIHead: _container(['bbox_roi_extractor', 'shared_head', 'bbox_head']),
    SingleRoIExtractor: QSingleRoIExtractor.from_float,
    ResLayer: QResLayerHead.from_float,
    BBoxHead: QBBoxHead.from_float,
    ConvFCBBoxHead: QConvFCBBoxHead.from_float,
    Shared2FCBBoxHead: QConvFCBBoxHead.from_float,
    Shared4Conv1FCBBoxHead: QConvFCBBoxHead.from_float,
}


DETECTOR_BASES = (SingleStageDetector, TwoStageDetector)


def quantize_module(module: nn.Module, qb: QBuilder, name: str) -> nn.Module:
    """Quantized counterpart of ``module`` (at path ``name``) from :data:`QUANT_MAPPING`."""
    convert = QUANT_MAPPING.get(type(module))
    if convert is None and isinstance(module, DETECTOR_BASES):
        convert = _DETECTOR
    if convert is None:
        supported = ', '.join(sorted(t.__name__ for t in (*QUANT_MAPPING, *DETECTOR_BASES)))
        raise UnsupportedModuleError(name, module, f'no quantized counterpart (supported: {supported})')
    return convert(module, qb, name)


def check_fully_quantized(model: nn.Module) -> None:
    """Raise if any layer with parameters sits outside a quantized layer.

    A block's ``OUTPUT_FACTORS`` children (FCOS's ``scales``) are exempt: they only
    multiply dequantized head outputs (``b.output(..., factor=...)``).
    """

    def visit(m: nn.Module, path: str) -> None:
        if isinstance(m, (QConv2d, QLinear, QGroupNorm)):
            return
        if m._parameters and any(p is not None for p in m._parameters.values()):
            raise UnsupportedModuleError(path, m, 'layer with parameters left unquantized')
        exempt = getattr(m, 'OUTPUT_FACTORS', ())
        for n, c in m._modules.items():
            if c is not None and n not in _PASS_THROUGH and n not in exempt:
                visit(c, f'{path}.{n}' if path else n)

    visit(model, '')


def quantize_detector(detector: nn.Module, cfg: QuantConfig | Mapping | None = None) -> nn.Module:
    """Convert a float mmdet detector into its FQN fake-quantized counterpart.

    Args:
        detector (nn.Module): A float RetinaNet / Faster R-CNN style detector.
        cfg (QuantConfig | dict, optional): Quantization settings.

    Returns:
        nn.Module: The quantized detector (same class for the detector itself);
        ``detector`` is left unchanged and shares its tensors with it.

    Raises:
        UnsupportedModuleError: A layer has no quantized counterpart.
        ValueError: An override pattern matches no quantized module.
    """
    cfg = QuantConfig.from_dict(cfg)
    # Building quantized layers freezes BN in the shared float modules: undone if conversion fails.
    grads = [(p, p.requires_grad) for p in detector.parameters()]
    modes = [(m, m.training) for m in detector.modules()]
    try:
        q = quantize_module(detector, QBuilder(cfg), '')
        check_fully_quantized(q)
        link_input_quantizers(q)
    except BaseException:
        for p, r in grads:
            p.requires_grad_(r)
        for m, t in modes:
            m.training = t
        raise
    unmatched = cfg.unmatched_overrides()
    if unmatched:
        names = sorted({qz.name.split('[')[0] for _, qz in iter_quantizers(q)})
        raise ValueError(f'quant_cfg.overrides pattern(s) {[p for _, p in unmatched]} match no '
                         f'quantized module; module names look like {names[:6]}')
    return q


def iter_quantizers(model: nn.Module):
    """``(path, ActQuantizer)`` pairs of a model."""
    for n, m in model.named_modules():
        if isinstance(m, ActQuantizer):
            yield n, m
