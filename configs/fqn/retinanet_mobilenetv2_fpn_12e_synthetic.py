# Small full-precision RetinaNet with a MobileNetV2 backbone (width 0.5: inverted residuals,
# depthwise 3x3, ReLU6) for the generated reference dataset; from scratch (BN trains).
#   python tools/train.py configs/fqn/retinanet_mobilenetv2_fpn_12e_synthetic.py
_base_ = ['./retinanet_r18-tiny_fpn_12e_synthetic.py']

model = dict(
    backbone=dict(_delete_=True, type='MobileNetV2', widen_factor=0.5, out_indices=(2, 4, 6),
                  act_cfg=dict(type='ReLU6'), norm_eval=False, init_cfg=None),
    # strides 8, 16, 32 from the backbone, 64 and 128 from the extra convs
    neck=dict(in_channels=[16, 48, 160], start_level=0))
