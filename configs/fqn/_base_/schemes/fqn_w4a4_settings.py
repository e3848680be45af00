# FQN W4A4 quantization settings (Li et al., CVPR 2019), the paper's, without custom_imports: for configs
# whose float base already imports fqn_det (e.g. the ImageNet-initialized MobileNetV2 ones). Every other
# *_fqn-w4a4* config takes them through fqn_w4a4.py. Override from the command line, e.g.
#   --cfg-options model.quant_cfg.weight.bits=8 model.quant_cfg.calib.num_batches=5
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
