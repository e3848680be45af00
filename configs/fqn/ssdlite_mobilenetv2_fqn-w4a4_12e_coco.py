# FQN W4A4 SSDLite-MobileNetV2 (320 px) on COCO: calibration on 20 training batches, then a
# short quantization-aware fine-tuning from mmdet's published full-precision checkpoint.
#   python tools/train.py configs/fqn/ssdlite_mobilenetv2_fqn-w4a4_12e_coco.py
# Depthwise 3x3 convs export as grouped QLinearConv; ReLU6 is an activation range capped at 6.
# mmdet's SSDLite config has its own custom_hooks, so the FQN settings of ./_base_/schemes/fqn_w4a4.py are
# repeated here rather than inherited (mmengine refuses a key defined in two bases).
_base_ = ['./_base_/models/ssdlite_mobilenetv2_320.py']
custom_imports = dict(imports=['fqn_det'], allow_failed_imports=False)
quant_cfg = dict(
    weight=dict(bits=4, symmetric=False, per_channel=True),
    act=dict(bits=4, symmetric=False),
    calib=dict(num_batches=20, gamma=0.999, bins=2048),
    ema=dict(momentum=0.01, stat='percentile'),
    freeze_bn=True,
    overrides=[])
custom_hooks = [
    dict(type='NumClassCheckHook'), dict(type='CheckInvalidLossHook', interval=50, priority='VERY_LOW'),
    dict(type='FQNCalibrationHook'), dict(type='FQNNaNGuardHook'), dict(type='FQNRNGStateHook')]

model = dict(_delete_=True, type='QuantizedDetector', detector={{_base_.model}}, quant_cfg=quant_cfg)

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=2)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8], gamma=0.1),
]
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.0015, momentum=0.9, weight_decay=4.0e-5))
load_from = 'https://download.openmmlab.com/mmdetection/v2.0/ssd/ssdlite_mobilenetv2_scratch_600e_coco/ssdlite_mobilenetv2_scratch_600e_coco_20210629_110627-974d9307.pth'  # noqa: E501
