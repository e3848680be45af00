"""fqn_det: fully quantized (4-bit) MMDetection detectors, FQN + DFQ."""
from setuptools import find_packages, setup

setup(
    name='fqn_det',
    version='0.1.0',
    description='Fully quantized 4-bit MMDetection detectors (FQN QAT, DFQ PTQ, integer export)',
    packages=find_packages(include=['fqn_det', 'fqn_det.*']),
    package_data={'fqn_det.quant': ['csrc/*.cpp']},  # built at first use (fqn_det/quant/fused.py)
    python_requires='>=3.9',
    install_requires=['torch', 'mmengine>=0.10,<0.11', 'mmcv>=2.0,<2.2', 'mmdet>=3.3,<3.4'],
)
