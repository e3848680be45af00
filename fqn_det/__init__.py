"""fqn_det: fully quantized (4-bit) MMDetection detectors.

Importing the package with mmdet installed registers the quantized detector
wrapper and the hooks into mmdet's registries (configs load it with
``custom_imports=dict(imports=['fqn_det'], allow_failed_imports=False)``) and
installs the version-guarded patches of :mod:`fqn_det.compat` (mmengine's
checkpoint loader for torch's ``weights_only`` loading, atomic checkpoint
writes), so mmdet's own ``tools/train.py`` / ``--resume`` / ``tools/test.py`` work.
The quantization maths in :mod:`fqn_det.quant` is plain PyTorch and imports
without mmengine/mmdet installed.
"""
__version__ = '0.1.0'

try:
    import mmdet  # noqa: F401
except ModuleNotFoundError:  # plain-PyTorch use of fqn_det.quant / fqn_det.dfq
    pass
else:
    from . import compat
    from .engine import *  # noqa: F401,F403
    from .models import *  # noqa: F401,F403
    compat.install()
