# FQN W4A4 fine-tuning (the paper's settings) of ssdlite_mobilenetv2-imagenet_12e_synthetic.py.
#   python tools/train.py configs/fqn/ssdlite_mobilenetv2-imagenet_12e_synthetic.py   # full precision first
#   python tools/train.py configs/fqn/ssdlite_mobilenetv2-imagenet_fqn-w4a4_2e_synthetic.py
_base_ = ['./ssdlite_mobilenetv2-imagenet_12e_synthetic.py', './_base_/schemes/fqn_w4a4_settings.py']

model = dict(_delete_=True, type='QuantizedDetector', detector={{_base_.model}}, quant_cfg={{_base_.quant_cfg}})

train_cfg = dict(max_epochs=2, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=2, by_epoch=True, milestones=[1], gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(lr=0.0002))  # AdamW, as for the other reference detectors' QAT
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2))
load_from = 'work_dirs/ssdlite_mobilenetv2-imagenet_12e_synthetic/epoch_12.pth'
