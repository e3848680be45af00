from .quantized_detector import CheckpointMismatchError, QuantizedDetector

__all__ = ['QuantizedDetector', 'CheckpointMismatchError']
