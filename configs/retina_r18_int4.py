# FQN W4A4 RetinaNet R18-FPN on COCO (same schedule as retina_int4.py).
#   python tools/train.py configs/retina_r18_int4.py --cfg-options \
#       train_dataloader.dataset.data_root=data/coco/ val_dataloader.dataset.data_root=data/coco/ \
#       test_dataloader.dataset.data_root=data/coco/ \
#       val_evaluator.ann_file=data/coco/annotations/instances_val2017.json \
#       test_evaluator.ann_file=data/coco/annotations/instances_val2017.json
_base_ = './retina_int4.py'

model = dict(detector=dict(backbone=dict(depth=18), neck=dict(in_channels=[64, 128, 256, 512])))

load_from = 'https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_r18_fpn_1x_coco/retinanet_r18_fpn_1x_coco_20220407_171055-614fd399.pth'  # noqa: E501
