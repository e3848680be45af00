# FQN W4A4 Faster R-CNN R50-FPN on COCO: calibration on 20 training batches, then a short
# quantization-aware fine-tuning from the full-precision checkpoint below.
#   python tools/train.py configs/faster_rcnn_int4.py --cfg-options \
#       train_dataloader.dataset.data_root=data/coco/ val_dataloader.dataset.data_root=data/coco/ \
#       test_dataloader.dataset.data_root=data/coco/ \
#       val_evaluator.ann_file=data/coco/annotations/instances_val2017.json \
#       test_evaluator.ann_file=data/coco/annotations/instances_val2017.json
_base_ = ['./_base_/float/faster_rcnn_r50_fpn.py', './_base_/fqn_w4a4.py']

model = dict(_delete_=True, type='QuantizedDetector', detector={{_base_.model}}, quant_cfg={{_base_.quant_cfg}})

# A short quantization-aware fine-tuning schedule with a small learning rate.
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=3, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=3, by_epoch=True, milestones=[2], gamma=0.1),
]
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=0.0001),
    clip_grad=dict(max_norm=35, norm_type=2))

load_from = 'https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/faster_rcnn_r50_fpn_1x_coco/faster_rcnn_r50_fpn_1x_coco_20200130-047c8118.pth'  # noqa: E501
