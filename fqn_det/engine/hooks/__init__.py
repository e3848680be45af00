from .fqn_calibration_hook import FQNCalibrationHook, calibrate

__all__ = ['FQNCalibrationHook', 'calibrate']
