# FQN W4A4 quantization settings (Li et al., CVPR 2019), the paper's: shared by every *_fqn-w4a4* config.
# Override from the command line, e.g.
#   --cfg-options model.quant_cfg.weight.bits=8 model.quant_cfg.calib.num_batches=5
_base_ = ['./fqn_w4a4_settings.py']
custom_imports = dict(imports=['fqn_det'], allow_failed_imports=False)
