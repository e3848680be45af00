# FQN W4A4 Faster R-CNN R18-FPN on COCO (the schedule of faster-rcnn_r50_fpn_fqn-w4a4_3e_coco.py).
_base_ = './faster-rcnn_r50_fpn_fqn-w4a4_3e_coco.py'

model = dict(detector=dict(backbone=dict(depth=18), neck=dict(in_channels=[64, 128, 256, 512])))

# No official full-precision Faster R-CNN R18 checkpoint exists: pass your own with
#   --cfg-options load_from=path/to/faster_rcnn_r18_fpn_fp32.pth
load_from = None
