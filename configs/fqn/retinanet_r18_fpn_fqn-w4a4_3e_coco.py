# FQN W4A4 RetinaNet R18-FPN on COCO (the schedule of retinanet_r50_fpn_fqn-w4a4_3e_coco.py).
_base_ = './retinanet_r50_fpn_fqn-w4a4_3e_coco.py'

model = dict(detector=dict(backbone=dict(depth=18), neck=dict(in_channels=[64, 128, 256, 512])))

load_from = 'https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_r18_fpn_1x_coco/retinanet_r18_fpn_1x_coco_20220407_171055-614fd399.pth'  # noqa: E501
