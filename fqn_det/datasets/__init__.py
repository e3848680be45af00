"""Dataset utilities for fqn_det (synthetic COCO-format data generation)."""
from .options import reference_schedule_options, synthetic_data_options
from .synthetic import DEFAULT_CLASSES, generate_synthetic_coco

__all__ = ['DEFAULT_CLASSES', 'generate_synthetic_coco', 'synthetic_data_options', 'reference_schedule_options']
