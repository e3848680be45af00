from .imagenet_mobilenet import ImageNetMobileNetV2
from .integer_detector import IntegerDetector
from .quantized_detector import CheckpointMismatchError, QuantizedDetector

__all__ = ['QuantizedDetector', 'IntegerDetector', 'CheckpointMismatchError', 'ImageNetMobileNetV2']
