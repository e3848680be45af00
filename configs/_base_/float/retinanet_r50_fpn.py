# mmdet's own retinanet/retinanet_r50_fpn_1x_coco.py, with the backbone's ImageNet init_cfg removed:
# QAT starts from a whole-detector checkpoint (load_from), and the
# torchvision:// init would import torchvision, which does not load beside the
# CPU torch build this project pins.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
model = dict(backbone=dict(init_cfg=None))
