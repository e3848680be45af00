# mmdet's RetinaNet R50-FPN model (mmdet::_base_/models/retinanet_r50_fpn.py), with the backbone's
# ImageNet init_cfg removed: QAT starts from a whole-detector checkpoint (load_from), and the
# torchvision:// init would import torchvision, which does not load beside the CPU torch build
# this project pins.
_base_ = 'mmdet::_base_/models/retinanet_r50_fpn.py'
model = dict(backbone=dict(init_cfg=None))
