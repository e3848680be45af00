# Full-precision SSDLite-MobileNetV2 (width 1, depthwise-separable SSD neck and head, ReLU6) on the
# generated reference dataset (128 px images), its backbone initialized from torchvision's ImageNet
# weights (installed by scripts/setup_env.sh; nothing is downloaded). BN trains.
#   python tools/train.py configs/fqn/ssdlite_mobilenetv2-imagenet_12e_synthetic.py
_base_ = ['./ssdlite_mobilenetv2_12e_synthetic.py']

custom_imports = dict(imports=['fqn_det'], allow_failed_imports=False)
model = dict(
    # BN eps 1e-5: the ImageNet checkpoint's (torchvision's)
    backbone=dict(_delete_=True, type='ImageNetMobileNetV2', out_indices=(4, 7),
                  norm_cfg=dict(type='BN', eps=1e-5, momentum=0.03), act_cfg=dict(type='ReLU6'), norm_eval=False),
    neck=dict(in_channels=(96, 1280), out_channels=(96, 1280, 512, 256)),
    bbox_head=dict(in_channels=(96, 1280, 512, 256)))
# a pretrained backbone: half the from-scratch learning rate
optim_wrapper = dict(optimizer=dict(lr=0.001))
