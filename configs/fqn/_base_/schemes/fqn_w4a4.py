# FQN W4A4 quantization settings (Li et al., CVPR 2019), the paper's: shared by every *_fqn-w4a4* config.
# Override from the command line, e.g.
#   --cfg-options model.quant_cfg.weight.bits=8 model.quant_cfg.calib.num_batches=5
custom_imports = dict(imports=['fqn_det'], allow_failed_imports=False)

quant_cfg = dict(
    weight=dict(bits=4, symmetric=False, per_channel=True),  # per-channel asymmetric weights
    act=dict(bits=4, symmetric=False),                       # per-tensor asymmetric activations
    calib=dict(num_batches=20, gamma=0.999, bins=2048),      # n=20 batches, [1-g, g] percentiles
    ema=dict(momentum=0.01, stat='percentile'),              # ranges after calibration
    freeze_bn=True,                                          # frozen, folded BN
    overrides=[],  # e.g. [dict(pattern='backbone.conv1', w_bits=8, a_bits=8)]
)

# calibration before QAT; stop on a NaN loss; RNG states in checkpoints (exact --resume)
custom_hooks = [dict(type='FQNCalibrationHook'), dict(type='FQNNaNGuardHook'), dict(type='FQNRNGStateHook')]
