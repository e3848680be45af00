# Full-precision RetinaNet with a MobileNetV2 backbone (width 1, ReLU6) on the generated reference
# dataset, the backbone initialized from torchvision's ImageNet weights (installed by
# scripts/setup_env.sh; nothing is downloaded). BN trains.
#   python tools/train.py configs/fqn/retinanet_mobilenetv2-imagenet_fpn_12e_synthetic.py
_base_ = ['./retinanet_mobilenetv2_fpn_12e_synthetic.py']

custom_imports = dict(imports=['fqn_det'], allow_failed_imports=False)
model = dict(
    # strides 8, 16, 32 from the backbone, 64 and 128 from the extra convs
    backbone=dict(_delete_=True, type='ImageNetMobileNetV2', out_indices=(2, 4, 6), act_cfg=dict(type='ReLU6'),
                  norm_eval=False),
    neck=dict(in_channels=[32, 96, 320]))
# a pretrained backbone: half the from-scratch learning rate
optim_wrapper = dict(optimizer=dict(lr=0.001))
