from .channels_last_hook import ChannelsLastHook
from .fqn_calibration_hook import FQNCalibrationHook, calibrate
from .nan_guard_hook import FQNNaNGuardHook, NonFiniteLossError
from .progress_hook import FQNProgressBarHook
from .rng_state_hook import FQNRNGStateHook

__all__ = ['FQNCalibrationHook', 'calibrate', 'FQNNaNGuardHook', 'NonFiniteLossError', 'FQNRNGStateHook',
           'FQNProgressBarHook', 'ChannelsLastHook']
