from .fqn_calibration_hook import FQNCalibrationHook, calibrate
from .nan_guard_hook import FQNNaNGuardHook, NonFiniteLossError

__all__ = ['FQNCalibrationHook', 'calibrate', 'FQNNaNGuardHook', 'NonFiniteLossError']
