# FQN W4A4 Faster R-CNN R18-FPN on COCO (same schedule as faster_rcnn_int4.py).
#   python tools/train.py configs/faster_rcnn_r18_int4.py --cfg-options \
#       train_dataloader.dataset.data_root=data/coco/ val_dataloader.dataset.data_root=data/coco/ \
#       test_dataloader.dataset.data_root=data/coco/ \
#       val_evaluator.ann_file=data/coco/annotations/instances_val2017.json \
#       test_evaluator.ann_file=data/coco/annotations/instances_val2017.json
_base_ = './faster_rcnn_int4.py'

model = dict(detector=dict(backbone=dict(depth=18), neck=dict(in_channels=[64, 128, 256, 512])))

# No official full-precision Faster R-CNN R18 checkpoint exists: pass your own with
#   --cfg-options load_from=path/to/faster_rcnn_r18_fpn_fp32.pth
load_from = None
